"""A customer's phone for voice tests: OmniCC's own SIP stack as the caller's user agent and
an RTP endpoint that talks (a sine tone, so what the other side hears can be measured) and
keeps everything it hears; and the phone line it calls."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import numpy as np

from omnicc.channels.voice.ivr.flow import parse_flow
from omnicc.channels.voice.media.rtp import RtpEndpoint
from omnicc.channels.voice.media.tones import tone_share
from omnicc.channels.voice.sip.dialog import Dialog
from omnicc.channels.voice.sip.stack import SipStack
from omnicc.channels.voice.sip.transaction import Timers
from omnicc.channels.voice.sip.transport import Peer
from omnicc.store.database import Database
from omnicc.store.repositories import IvrFlows, SipAccounts, VoiceNumbers
from omnicc.store.tables import IvrFlow, VoiceNumber
from tests.integration.api.live import Seeded

CALLER_NUMBER = "+358401234567"
CALLER_NAME = "Maija"


Sound = Callable[[np.ndarray], bool]


def tone(hz: float) -> Sound:
    """The other side's sine tone at `hz`."""
    return lambda samples: tone_share(samples, hz) > 0.5


def music_instead_of(hz: float) -> Sound:
    """Music on hold: loud, and not the other side's tone."""
    return lambda samples: tone_share(samples, hz) < 0.05 and float(np.abs(samples).mean()) > 100


class Caller:
    """Calls a number on OmniCC's SIP port (UDP, loopback)."""

    def __init__(self, sip_port: int, *, tone_hz: float = 1000.0) -> None:
        self.sip_port = sip_port
        self.tone_hz = tone_hz
        self.stack = SipStack("127.0.0.1", udp_port=0, tcp_port=None, timers=Timers(t1=0.1))
        self.rtp = RtpEndpoint()
        self.dialog: Dialog | None = None
        self._talking: asyncio.Task[None] | None = None

    async def call(self, number: str) -> None:
        await self.stack.start()
        await self.rtp.open()
        server = Peer("UDP", "127.0.0.1", self.sip_port)
        request = self.stack.request(
            "INVITE", f"sip:{number}@127.0.0.1:{self.sip_port}", to=server,
            from_uri=f"sip:{CALLER_NUMBER}@127.0.0.1", from_display=CALLER_NAME,
            to_uri=f"sip:{number}@127.0.0.1", body=self.rtp.sdp().encode(),
            content_type="application/sdp")
        invite = self.stack.invite(request, server)
        final = await invite.final()
        assert final.status == 200, final.status
        self.dialog = invite.dialog
        self.rtp.connect(final.body.decode())

    async def press(self, digit: str) -> None:
        await self.rtp.send_dtmf(digit)

    def talk(self) -> None:
        """Send the tone from now until hanging up."""
        async def keep_sending() -> None:
            while True:
                await self.rtp.send_tone(self.tone_hz, 1.0)

        self._talking = asyncio.create_task(keep_sending())

    async def heard(self, seconds: float) -> np.ndarray:
        """What the caller hears during the next `seconds` (after a short settling time)."""
        await asyncio.sleep(0.4)
        start = len(self.rtp.packets)
        await asyncio.sleep(seconds)
        return self.rtp.audio(since=start)

    async def hears(self, sound: Sound, what: str, *, windows: int = 15) -> None:
        """Listen in one-second windows until `sound` is heard (media takes a moment to move
        after a change, longer on a busy machine); fails after `windows` windows."""
        for _ in range(windows):
            if sound(await self.heard(1.0)):
                return
        raise AssertionError(f"the caller never heard {what}")

    async def hung_up_on(self, timeout_s: float = 20) -> None:
        """Until OmniCC sends BYE (the dialog ends)."""
        assert self.dialog is not None
        await asyncio.wait_for(self.dialog.terminated.wait(), timeout_s)

    async def hang_up(self) -> None:
        assert self.dialog is not None
        await self.dialog.bye()

    async def close(self) -> None:
        if self._talking is not None:
            self._talking.cancel()
        await self.rtp.close()
        await self.stack.stop()


SUPPORT_LINE = "1000"
PHONE_PASSWORD = "phone-secret-1"


async def open_support_line(database_url: str, seeded: Seeded) -> None:
    """Number 1000 goes straight to the support queue; alice and bob get SIP accounts."""
    database = Database(database_url)
    try:
        async with database.session() as session:
            for name in ("alice", "bob"):
                await SipAccounts(session, seeded.tenant_id).set_password(
                    seeded.agents[name], name, "acme", PHONE_PASSWORD)
            flow = await IvrFlows(session, seeded.tenant_id).add(IvrFlow(
                name="support line", definition=parse_flow({
                    "entry": "support",
                    "nodes": {"support": {"kind": "queue",
                                          "queue_id": seeded.queues["support"]}},
                }).as_json()))
            await VoiceNumbers(session, seeded.tenant_id).add(
                VoiceNumber(number=SUPPORT_LINE, flow_id=flow.id))
    finally:
        await database.dispose()
