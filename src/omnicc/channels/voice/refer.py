"""Blind transfer from an agent's SIP desk phone: REFER (RFC 3515) in the agent's dialog.

A desk phone's Transfer key sends REFER with `Refer-To: <sip:TARGET@...>`. OmniCC is a
B2BUA, so it does not pass the REFER on: it makes the same blind transfer the desk's REST does,
where TARGET is another agent's SIP user name, a queue's name, or a number dialled through
the carrier trunk. The phone gets `202 Accepted`, then NOTIFYs carrying a `message/sipfrag`
(`SIP/2.0 100 Trying`, then `200 OK` or the failure) before its leg is hung up, as RFC 3515
expects. An attended REFER (`Refer-To` with `Replaces`, naming the phone's consult dialog)
is refused with 501: the phone's own consult call does not pass through a routing task, so
attended transfers are made from the desk (`/consult`).
"""

from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING

from omnicc.channels.voice.devices import SipLeg
from omnicc.channels.voice.sip.message import parse_name_addr, uri_user
from omnicc.channels.voice.sip.stack import IncomingRequest
from omnicc.channels.voice.trunk import InvalidNumber
from omnicc.core.errors import Conflict, InvalidConfiguration, NotFound
from omnicc.store.repositories import Queues, SipAccounts

if TYPE_CHECKING:
    from omnicc.channels.voice.calls import InboundCall

__all__ = ["ReferTarget", "agent_phone_requests"]

log = logging.getLogger("omnicc.voice.refer")

SIPFRAG = "message/sipfrag;version=2.0"


@dataclass(frozen=True, slots=True)
class ReferTarget:
    agent_id: str | None = None
    queue_id: str | None = None
    number: str | None = None


def agent_phone_requests(call: InboundCall, leg: SipLeg) -> None:
    """Handle the in-dialog requests of the agent's SIP phone: REFER transfers the call,
    a re-INVITE is refused (the media path is OmniCC's), the rest get the stack's defaults."""
    async def on_request(incoming: IncomingRequest) -> None:
        if incoming.method == "INVITE":
            await incoming.respond(488, "Not Acceptable Here")
        elif incoming.method == "REFER":
            await _refer(call, leg, incoming)

    leg.dialog.on_request = on_request


async def _refer(call: InboundCall, leg: SipLeg, incoming: IncomingRequest) -> None:
    refer_to = incoming.message.headers.get("Refer-To")
    if refer_to is None:
        await incoming.respond(400, "Refer-To Missing")
        return
    try:
        uri = parse_name_addr(refer_to).uri
    except ValueError:
        await incoming.respond(400, "Bad Refer-To")
        return
    if "replaces=" in uri.lower():
        await incoming.respond(501, "Attended Transfer Not Supported")
        return
    if (call.agent_leg is not leg or not call.connected.is_set() or call.ended.is_set()
            or (call.consult is not None and call.consult.active)):
        await incoming.respond(403, "Call Not Transferable Now")
        return
    target = await _target(call, uri_user(uri) or "")
    if target is None:
        await incoming.respond(404, "Unknown Transfer Target")
        return
    await incoming.respond(202, "Accepted")
    await _notify(leg, "SIP/2.0 100 Trying", "active;expires=60")
    try:
        if target.number is not None:
            # The leg ends once the number answers: the phone hears of it by the BYE.
            await call.transfer_to_number(target.number)
        else:
            await _notify(leg, "SIP/2.0 200 OK", "terminated;reason=noresource")
            await call.transfer(queue_id=target.queue_id, agent_id=target.agent_id)
    except (Conflict, NotFound, InvalidConfiguration) as error:
        log.info("voice: REFER on call %s failed: %s", call.call_id, error)
        await _notify(leg, "SIP/2.0 503 Service Unavailable", "terminated;reason=noresource")


async def _target(call: InboundCall, user: str) -> ReferTarget | None:
    """The agent whose SIP user name, or the queue whose name, is `user`; else a number
    the trunk can dial; else None."""
    if not user:
        return None
    async with call.service.database.session() as session:
        with contextlib.suppress(NotFound):
            account = await SipAccounts(session, call.runtime.tenant_id).by_username(user)
            return ReferTarget(agent_id=account.agent_id)
        with contextlib.suppress(NotFound):
            queue = await Queues(session, call.runtime.tenant_id).by_name(user)
            return ReferTarget(queue_id=queue.id)
    outbound = call.service.outbound
    if outbound is not None:
        with contextlib.suppress(InvalidNumber):
            return ReferTarget(number=outbound.trunk.dialable(user))
    return None


async def _notify(leg: SipLeg, sipfrag: str, state: str) -> None:
    """The REFER's implicit subscription: how the transfer goes (best effort)."""
    if leg.terminated.is_set():
        return
    with contextlib.suppress(Exception):
        await leg.dialog.request("NOTIFY", body=f"{sipfrag}\r\n".encode(),
                                 content_type=SIPFRAG,
                                 headers={"Event": "refer", "Subscription-State": state})
