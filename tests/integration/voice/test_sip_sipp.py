"""The SIP stack against the real sipp (3.6) on loopback, over UDP and TCP.

sipp must be installed (scripts/test_packages.sh): a missing sipp fails these tests.  Each sipp
run has a global timeout (``-timeout ... -timeout_error``) so it never hangs, and the test
reads sipp's exit code (0 = every call succeeded) and its unexpected-message log.
"""

from __future__ import annotations

import asyncio
import shutil
import socket
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from omnicc.channels.voice.sip.digest import HA1Store
from omnicc.channels.voice.sip.message import SipRequest, SipResponse
from omnicc.channels.voice.sip.registrar import Registrar, ha1_lookup
from omnicc.channels.voice.sip.stack import IncomingRequest, SipStack
from omnicc.channels.voice.sip.transaction import Timers, TransportFailure
from omnicc.channels.voice.sip.transport import Peer
from tests.integration.voice.harness import free_port

pytestmark = pytest.mark.anyio

SDP = (
    b"v=0\r\no=omnicc 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
    b"m=audio 40000 RTP/AVP 8\r\na=rtpmap:8 PCMA/8000\r\n"
)
SIPP_TIMEOUT_S = 30
TRANSPORTS = {"udp": "u1", "tcp": "t1"}
UDP_AND_TCP = (socket.SOCK_DGRAM, socket.SOCK_STREAM)  # the tests' ports are free for both


def sipp_binary() -> str:
    found = shutil.which("sipp")
    assert found, "sipp is not installed: run scripts/test_packages.sh"
    return found


class SippRun:
    def __init__(self, code: int, output: str, errors: str) -> None:
        self.code = code
        self.output = output
        self.errors = errors

    def explain(self) -> str:
        return f"sipp exit {self.code}\n{self.output[-3000:]}\nerrors:\n{self.errors[-3000:]}"


async def sipp(workdir: Path, *args: str) -> SippRun:
    errors = workdir / f"sipp-errors-{free_port(*UDP_AND_TCP)}.log"
    process = await asyncio.create_subprocess_exec(
        sipp_binary(),
        *args,
        "-nostdin",
        "-m",
        "1",
        "-mp",
        str(free_port(*UDP_AND_TCP)),
        "-timeout",
        f"{SIPP_TIMEOUT_S}s",
        "-timeout_error",
        "-max_recv_loops",
        "1000",
        "-trace_err",
        "-error_file",
        str(errors),
        cwd=workdir,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    output, _ = await asyncio.wait_for(process.communicate(), SIPP_TIMEOUT_S + 30)
    text = errors.read_text(errors="replace") if errors.exists() else ""
    assert process.returncode is not None
    return SippRun(process.returncode, output.decode(errors="replace"), text)


@pytest.fixture
async def stack() -> AsyncIterator[SipStack]:
    sip = SipStack(timers=Timers(t1=0.1, t2=1.0, t4=1.0, d=2.0))
    await sip.start()
    try:
        yield sip
    finally:
        await sip.stop()


@pytest.mark.parametrize("transport", ["udp", "tcp"])
async def test_sipp_uac_calls_the_stack_which_answers_then_gets_bye(
    stack: SipStack, tmp_path: Path, transport: str
) -> None:
    invites: list[IncomingRequest] = []

    async def answer(incoming: IncomingRequest) -> None:
        assert incoming.method == "INVITE"
        invites.append(incoming)
        await incoming.respond(180)
        await incoming.respond(200, body=SDP, content_type="application/sdp")

    stack.set_handler(answer)
    local = getattr(stack, transport)
    run = await sipp(
        tmp_path, "-sn", "uac", f"127.0.0.1:{local.port}", "-t", TRANSPORTS[transport], "-d", "100"
    )
    assert run.code == 0, run.explain()
    assert len(invites) == 1
    dialog = invites[0].dialog
    assert dialog is not None
    await asyncio.wait_for(dialog.terminated.wait(), 10)
    assert dialog.termination_reason == "bye received"
    assert dialog.ack_received.is_set()


@pytest.mark.parametrize("transport", ["udp", "tcp"])
async def test_the_stack_calls_sipp_uas_acks_and_hangs_up(
    stack: SipStack, tmp_path: Path, transport: str
) -> None:
    port = free_port(*UDP_AND_TCP)
    server = asyncio.ensure_future(
        sipp(
            tmp_path, "-sn", "uas", "-i", "127.0.0.1", "-p", str(port), "-t", TRANSPORTS[transport]
        )
    )
    peer = Peer(transport.upper(), "127.0.0.1", port)
    response: SipResponse | None = None
    call = None
    for _ in range(100):  # sipp takes a moment to listen; UDP retransmits, TCP must retry
        request = stack.request(
            "INVITE",
            f"sip:service@127.0.0.1:{port}",
            to=peer,
            from_uri="sip:omnicc@127.0.0.1",
            to_uri="sip:service@127.0.0.1",
            body=SDP,
            content_type="application/sdp",
        )
        call = stack.invite(request, peer)
        try:
            response = await asyncio.wait_for(call.final(), 20)
            break
        except TransportFailure:
            await asyncio.sleep(0.1)
    assert call is not None and response is not None
    assert response.status == 200
    statuses = [r.status async for r in call.responses()]
    assert statuses[-1] == 200
    assert call.dialog is not None
    await asyncio.sleep(0.2)  # let sipp's scenario reach its BYE wait
    bye = await asyncio.wait_for(call.dialog.request("BYE"), 20)
    assert bye.status == 200
    run = await server
    assert run.code == 0, run.explain()


DUPLICATE_INVITE = """<?xml version="1.0" encoding="ISO-8859-1" ?>
<scenario name="INVITE sent twice with the same branch">
  <send>
    <![CDATA[
      INVITE sip:service@[remote_ip]:[remote_port] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=z9hG4bK-dup-[call_number]
      From: sipp <sip:sipp@[local_ip]:[local_port]>;tag=[pid]SIPpTag09[call_number]
      To: <sip:service@[remote_ip]:[remote_port]>
      Call-ID: [call_id]
      CSeq: 1 INVITE
      Contact: sip:sipp@[local_ip]:[local_port]
      Max-Forwards: 70
      Content-Length: 0

    ]]>
  </send>
  <recv response="100" />
  <send>
    <![CDATA[
      INVITE sip:service@[remote_ip]:[remote_port] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=z9hG4bK-dup-[call_number]
      From: sipp <sip:sipp@[local_ip]:[local_port]>;tag=[pid]SIPpTag09[call_number]
      To: <sip:service@[remote_ip]:[remote_port]>
      Call-ID: [call_id]
      CSeq: 1 INVITE
      Contact: sip:sipp@[local_ip]:[local_port]
      Max-Forwards: 70
      Content-Length: 0

    ]]>
  </send>
  <recv response="100" optional="true" />
  <recv response="200" />
  <send>
    <![CDATA[
      ACK sip:service@[remote_ip]:[remote_port] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      From: sipp <sip:sipp@[local_ip]:[local_port]>;tag=[pid]SIPpTag09[call_number]
      To: <sip:service@[remote_ip]:[remote_port]>[peer_tag_param]
      Call-ID: [call_id]
      CSeq: 1 ACK
      Max-Forwards: 70
      Content-Length: 0

    ]]>
  </send>
  <send retrans="500">
    <![CDATA[
      BYE sip:service@[remote_ip]:[remote_port] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      From: sipp <sip:sipp@[local_ip]:[local_port]>;tag=[pid]SIPpTag09[call_number]
      To: <sip:service@[remote_ip]:[remote_port]>[peer_tag_param]
      Call-ID: [call_id]
      CSeq: 2 BYE
      Max-Forwards: 70
      Content-Length: 0

    ]]>
  </send>
  <recv response="200" crlf="true" />
</scenario>
"""


async def test_a_retransmitted_invite_reaches_the_application_once(
    stack: SipStack, tmp_path: Path
) -> None:
    received: list[str] = []
    handled: list[IncomingRequest] = []
    duplicate = asyncio.Event()
    deliver = stack.transport.on_message

    def count(message: SipRequest | SipResponse, source: Peer) -> None:
        if isinstance(message, SipRequest):
            received.append(message.method)
            if received.count("INVITE") >= 2:
                duplicate.set()
        deliver(message, source)

    stack.transport.on_message = count

    async def answer(incoming: IncomingRequest) -> None:
        handled.append(incoming)
        # Answer once the duplicate arrived (and was absorbed by the transaction).  sipp
        # re-sends its last INVITE whenever it sees our 100 again, so answer at once.
        await asyncio.wait_for(duplicate.wait(), 20)
        await incoming.respond(200, body=SDP, content_type="application/sdp")

    stack.set_handler(answer)
    scenario = tmp_path / "duplicate.xml"
    scenario.write_text(DUPLICATE_INVITE)
    run = await sipp(tmp_path, "-sf", str(scenario), f"127.0.0.1:{stack.udp.port}", "-t", "u1")
    assert run.code == 0, run.explain()
    assert received.count("INVITE") >= 2
    assert len(handled) == 1


REGISTER = """<?xml version="1.0" encoding="ISO-8859-1" ?>
<scenario name="REGISTER with digest">
  <send retrans="500">
    <![CDATA[
      REGISTER sip:[remote_ip]:[remote_port] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      From: <sip:{user}@[remote_ip]>;tag=[pid]SIPpTag01[call_number]
      To: <sip:{user}@[remote_ip]>
      Call-ID: [call_id]
      CSeq: 1 REGISTER
      Contact: <sip:{user}@[local_ip]:[local_port];transport=[transport]>
      Max-Forwards: 70
      Expires: 300
      User-Agent: sipp
      Content-Length: 0

    ]]>
  </send>
  <recv response="401" auth="true" />
  <send retrans="500">
    <![CDATA[
      REGISTER sip:[remote_ip]:[remote_port] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      From: <sip:{user}@[remote_ip]>;tag=[pid]SIPpTag01[call_number]
      To: <sip:{user}@[remote_ip]>
      Call-ID: [call_id]
      CSeq: 2 REGISTER
      Contact: <sip:{user}@[local_ip]:[local_port];transport=[transport]>
      [authentication username={user} password={password}]
      Max-Forwards: 70
      Expires: 300
      User-Agent: sipp
      Content-Length: 0

    ]]>
  </send>
  <recv response="{expected}" />
</scenario>
"""


@pytest.mark.parametrize("transport", ["udp", "tcp"])
async def test_sipp_registers_with_digest_and_a_wrong_password_is_refused(
    stack: SipStack, tmp_path: Path, transport: str
) -> None:
    store = HA1Store("omnicc.test")
    store.set_password("alice", "s3cret")
    registrar = Registrar("omnicc.test", ha1_lookup(store))
    changes: list[tuple[str, int]] = []
    registrar.on_change = lambda user, bindings: changes.append((user, len(bindings)))

    async def handle(incoming: IncomingRequest) -> None:
        if incoming.method == "REGISTER":
            await registrar.handle(incoming)

    stack.set_handler(handle)
    local = getattr(stack, transport)
    for password, expected in (("wrong", 403), ("s3cret", 200)):
        scenario = tmp_path / f"register-{expected}.xml"
        scenario.write_text(REGISTER.format(user="alice", password=password, expected=expected))
        run = await sipp(
            tmp_path, "-sf", str(scenario), f"127.0.0.1:{local.port}", "-t", TRANSPORTS[transport]
        )
        assert run.code == 0, run.explain()
    bindings = registrar.bindings("alice")
    assert len(bindings) == 1
    assert bindings[0].user_agent == "sipp"
    assert bindings[0].peer.transport == transport.upper()
    assert changes == [("alice", 1)]
