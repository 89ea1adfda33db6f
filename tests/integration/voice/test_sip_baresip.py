"""A real phone (baresip 1.0) against the SIP stack and registrar, over UDP and TCP.

baresip registers with digest credentials; the stack then calls the phone through the flow
the REGISTER came from (over TCP the phone's own connection: its Contact port is not where it
listens for us), the phone auto-answers, and the stack hangs up.  Stopping the phone
unregisters it, which the registrar reports.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from pathlib import Path

import pytest

from omnicc.channels.voice.sip.digest import Algorithm
from omnicc.channels.voice.sip.registrar import Binding, Registrar, ha1_for_password
from omnicc.channels.voice.sip.stack import IncomingRequest, SipStack

from .peers import Baresip

pytestmark = pytest.mark.anyio

REALM = "omnicc.test"
SDP = (
    b"v=0\r\no=omnicc 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
    b"m=audio 40000 RTP/AVP 0 8\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:8 PCMA/8000\r\n"
)


@pytest.mark.parametrize("transport", ["udp", "tcp"])
async def test_baresip_registers_and_is_called_through_its_flow(
    tmp_path: Path, transport: str
) -> None:
    async def credentials(username: str) -> Mapping[Algorithm, str] | None:
        return ha1_for_password(username, REALM, "agent-pw") if username == "agent1" else None

    registrar = Registrar(REALM, credentials)
    changes: list[list[Binding]] = []
    changed = asyncio.Event()

    def on_change(username: str, bindings: list[Binding]) -> None:
        assert username == "agent1"
        changes.append(bindings)
        changed.set()

    registrar.on_change = on_change

    async def handler(incoming: IncomingRequest) -> None:
        if incoming.method == "REGISTER":
            await registrar.handle(incoming)

    stack = SipStack()
    stack.set_handler(handler)
    await stack.start()
    local = getattr(stack, transport)
    phone = Baresip(
        tmp_path / "phone",
        user="agent1",
        password="agent-pw",
        registrar=("127.0.0.1", local.port),
        transport=transport,
    )
    try:
        await phone.start()
        await asyncio.wait_for(changed.wait(), 20)
        [binding] = registrar.bindings("agent1")
        assert binding.peer.transport == transport.upper()
        assert binding.user_agent is not None and "baresip" in binding.user_agent
        request = stack.request(
            "INVITE",
            binding.contact,
            to=binding.peer,
            from_uri="sip:queue@127.0.0.1",
            to_uri=f"sip:agent1@{REALM}",
            body=SDP,
            content_type="application/sdp",
        )
        call = stack.invite(request, binding.peer)
        statuses = [response.status async for response in call.responses()]
        assert statuses[-1] == 200, statuses
        assert b"m=audio" in (await call.final()).body
        await phone.wait_for("CALL_ESTABLISHED")
        assert call.dialog is not None
        assert (await asyncio.wait_for(call.dialog.request("BYE"), 20)).status == 200
        await phone.wait_for("CALL_CLOSED")
        changed.clear()
        await phone.stop()  # baresip unregisters on the way out
        await asyncio.wait_for(changed.wait(), 20)
        assert changes[-1] == []
        assert registrar.bindings("agent1") == []
    finally:
        await phone.stop()
        registrar.close()
        await stack.stop()
