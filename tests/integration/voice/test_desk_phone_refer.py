"""A blind transfer from the agent's SIP desk phone (REFER, RFC 3515): alice's phone is made of
OmniCC's own SIP stack (registered with digest, answering with an RTP endpoint sending
440 Hz) so the test can send REFER the way a desk phone's Transfer key does; bob's baresip
phone (660 Hz) takes the call. Unknown targets and attended REFERs (Replaces) are refused."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from omnicc.channels.voice.media.rtp import RtpEndpoint
from omnicc.channels.voice.sip.dialog import Dialog
from omnicc.channels.voice.sip.digest import DigestClient
from omnicc.channels.voice.sip.stack import IncomingRequest, SipStack
from omnicc.channels.voice.sip.transaction import Timers
from omnicc.channels.voice.sip.transport import Peer
from omnicc.core.model import TaskPhase
from omnicc.store.repositories import CallRecords
from tests.integration.voice.harness import (
    PHONE_PASSWORD,
    SUPPORT_LINE,
    Caller,
    Exchange,
    registered,
    start_phone,
    tone,
    wait_until,
)

pytestmark = pytest.mark.anyio


@pytest.fixture
def exchange(support_exchange: Exchange) -> Exchange:
    return support_exchange


class DeskPhone:
    """A SIP desk phone: registers, auto-answers with a 440 Hz tone, keeps the NOTIFYs."""

    def __init__(self, sip_port: int, user: str) -> None:
        self.user = user
        self.server = Peer("UDP", "127.0.0.1", sip_port)
        self.stack = SipStack("127.0.0.1", udp_port=0, tcp_port=None, timers=Timers(t1=0.1))
        self.rtp = RtpEndpoint()
        self.dialog: Dialog | None = None
        self.notifies: list[str] = []
        self._talking: asyncio.Task[Any] | None = None

    async def start(self) -> None:
        await self.stack.start()
        await self.rtp.open()
        self.stack.set_handler(self._on_request)
        domain = f"127.0.0.1:{self.server.port}"
        request = self.stack.request(
            "REGISTER", f"sip:{domain}", to=self.server, from_uri=f"sip:{self.user}@{domain}",
            to_uri=f"sip:{self.user}@{domain}", headers={"Expires": "300"})
        request.headers.set("Contact", f"<sip:{self.user}@127.0.0.1:{self.stack.udp.port}>")
        response = await self.stack.send(request, self.server,
                                         credentials=DigestClient(self.user, PHONE_PASSWORD))
        assert response.status == 200, response.status

    async def _on_request(self, incoming: IncomingRequest) -> None:
        if incoming.method != "INVITE":
            return
        self.rtp.connect(incoming.message.body.decode())
        await incoming.respond(200, body=self.rtp.sdp().encode(),
                               content_type="application/sdp")
        self.dialog = incoming.dialog
        assert self.dialog is not None
        self.dialog.on_request = self._in_dialog

        async def talk() -> None:
            while True:
                await self.rtp.send_tone(440, 1.0)

        self._talking = asyncio.create_task(talk())

    async def _in_dialog(self, incoming: IncomingRequest) -> None:
        if incoming.method == "NOTIFY":
            assert incoming.message.headers.get("Event") == "refer"
            self.notifies.append(incoming.message.body.decode().strip())
            await incoming.respond(200)

    async def refer(self, target: str) -> int:
        assert self.dialog is not None
        response = await self.dialog.request("REFER", headers={
            "Refer-To": target, "Referred-By": f"<sip:{self.user}@127.0.0.1>"})
        return response.status

    async def stop(self) -> None:
        if self._talking is not None:
            self._talking.cancel()
        await self.rtp.close()
        await self.stack.stop()


async def test_the_desk_phone_transfers_the_call_to_bob_by_refer(exchange: Exchange) -> None:
    seeded, voice = exchange.seeded, exchange.voice
    alice, bob = seeded.agents["alice"], seeded.agents["bob"]
    runtime = await exchange.runtime()
    desk_phone = DeskPhone(voice.stack.udp.port, "alice")
    bob_phone = await start_phone(exchange.workdir, voice, "bob", tone_hz=660)
    caller = Caller(voice.stack.udp.port)
    try:
        await desk_phone.start()
        await registered(voice, "alice")
        await runtime.routing.run(lambda engine: engine.set_status(alice, "available"))
        await caller.call(SUPPORT_LINE)
        await wait_until(lambda: desk_phone.dialog is not None, "alice's desk phone to answer")
        await caller.hears(tone(440), "alice")
        [call] = list(voice.calls.values())
        assert call.contact is not None
        task_id = call.contact.task_id

        domain = f"127.0.0.1:{voice.stack.udp.port}"
        assert await desk_phone.refer(f"<sip:nobody@{domain}>") == 404
        assert await desk_phone.refer(
            f"<sip:bob@{domain}?Replaces=abc%3Bto-tag%3D1%3Bfrom-tag%3D2>") == 501
        await caller.hears(tone(440), "alice still")

        await runtime.routing.run(lambda engine: engine.set_status(bob, "available"))
        assert await desk_phone.refer(f"<sip:bob@{domain}>") == 202
        assert desk_phone.dialog is not None
        await asyncio.wait_for(desk_phone.dialog.terminated.wait(), 20)  # OmniCC's BYE
        assert desk_phone.notifies == ["SIP/2.0 100 Trying", "SIP/2.0 200 OK"]
        await caller.hears(tone(660), "bob after the REFER")
        task = runtime.routing.engine.task(task_id)
        assert (task.phase, task.agent_id) == (TaskPhase.ASSIGNED, bob)
        await caller.hang_up()
        await bob_phone.wait_for("CALL_CLOSED")
    finally:
        await caller.close()
        await desk_phone.stop()
        await bob_phone.stop()
    await wait_until(lambda: not voice.calls, "the call to end")
    async with exchange.database.session() as session:
        record = await CallRecords(session, seeded.tenant_id).get(call.record_id)
    assert record.transfers == 1
    assert record.details["transfer_log"][0]["kind"] == "blind"
