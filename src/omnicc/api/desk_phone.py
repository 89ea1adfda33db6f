"""The desk's browser softphone, signalled over the desk's WebSocket.

`DeskPhone` takes one desk socket's `phone.*` and `call.*` frames to the voice service's
`BrowserPhones` (see `omnicc.channels.voice.devices` for the protocol) and says the phone is
off when the socket closes, so a closed desk never rings. Without voice on the server it
answers that the phone cannot go online.
"""

from __future__ import annotations

from typing import Any

from omnicc.channels.voice.service import VoiceService

MAX_SDP_CHARS = 20_000
"""A browser's answer SDP is a few kilobytes; anything far larger is not one."""


class DeskPhone:
    """One desk socket's softphone. Frames it takes: `phone.online`, `phone.offline`,
    `call.answer` {ring_id, sdp}, `call.decline` {ring_id}, `call.hangup` {ring_id}. It
    answers `phone.status` {online, detail} to `phone.*`, and `call.cancelled` {ring_id} when
    an answer or decline came too late (the ring is over).

    An agent may have several desks open: all of them ring. When one answers, the others are
    told `call.answered` {ring_id}; when one declines, `call.cancelled` {ring_id}. The agent
    switching this desk's phone off hangs up the call it answered; its socket closing loses
    that call's agent leg (the caller goes back in line), even if another desk of the agent
    stays online, since nobody else holds the call's media."""

    def __init__(self, voice: VoiceService | None, tenant_id: str, agent_id: str) -> None:
        self.voice = voice
        self.tenant_id = tenant_id
        self.agent_id = agent_id
        self.online = False
        self.answered: set[str] = set()

    def frame(self, frame: dict[str, Any]) -> dict[str, Any] | None:
        """Handle one frame; the answer to send back, if any."""
        kind = frame.get("type")
        if kind == "phone.online":
            return self._switch(True)
        if kind == "phone.offline":
            return self._switch(False)
        ring_id = frame.get("ring_id")
        if self.voice is None or not self.online or not isinstance(ring_id, str):
            return None
        phones = self.voice.browser_phones
        if kind == "call.answer":
            sdp = frame.get("sdp")
            done = (isinstance(sdp, str) and 0 < len(sdp) <= MAX_SDP_CHARS
                    and phones.answer(self.tenant_id, self.agent_id, ring_id, sdp))
            if done:
                self.answered.add(ring_id)
                self._tell_desks("call.answered", ring_id)
        elif kind == "call.decline":
            done = phones.decline(self.tenant_id, self.agent_id, ring_id)
            if done:
                self._tell_desks("call.cancelled", ring_id)
        elif kind == "call.hangup":
            self.answered.discard(ring_id)
            done = phones.hang_up(self.tenant_id, self.agent_id, ring_id)
        else:
            return None
        return None if done else {"type": "call.cancelled", "ring_id": ring_id}

    def _tell_desks(self, kind: str, ring_id: str) -> None:
        assert self.voice is not None
        self.voice.browser_phones.tell(self.tenant_id, self.agent_id, kind, ring_id)

    def _switch(self, online: bool) -> dict[str, Any]:
        if self.voice is None:
            return {"type": "phone.status", "online": False,
                    "detail": "Voice is off on this server."}
        if online and not self.online:
            self.voice.browser_phones.online(self.tenant_id, self.agent_id)
        elif not online and self.online:
            for ring_id in self.answered:
                self.voice.browser_phones.hang_up(self.tenant_id, self.agent_id, ring_id)
            self.answered.clear()
            self.voice.browser_phones.offline(self.tenant_id, self.agent_id)
        self.online = online
        return {"type": "phone.status", "online": online, "detail": ""}

    def close(self) -> None:
        """The socket is gone: its phone is off, and the calls it answered lost their agent."""
        if self.online and self.voice is not None:
            phones = self.voice.browser_phones
            for ring_id in self.answered:
                phones.lose(self.tenant_id, self.agent_id, ring_id)
            phones.offline(self.tenant_id, self.agent_id)
        self.answered.clear()
        self.online = False
