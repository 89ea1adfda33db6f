"""Customers over HTTP: the agent's customer panel (profile, identities, consent, one
timeline of every contact on every channel) and merging or splitting customer records.

Any user who handles contacts may read and edit a customer of the tenant (the desk opens the
panel from a conversation, and agents look customers up by phone or email); merge and split
need `customers:merge` and are written to the customer's audit trail with the user's id.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query, Request
from pydantic import BaseModel, ConfigDict, Field

from omnicc.api.auth import require_permission
from omnicc.api.center import tenant_runtime
from omnicc.api.database import request_database
from omnicc.api.desk import agent_of
from omnicc.api.emails import email_desk
from omnicc.app.crm import CrmDirectory
from omnicc.app.customers import CHANNELS, IDENTITY_KINDS, Changes, CustomerBook
from omnicc.app.permissions import Permission
from omnicc.app.principals import Principal
from omnicc.app.reply_channels import ReplyChannels, Sender, email_sender
from omnicc.core.errors import NotFound

router = APIRouter(prefix="/api/customers", tags=["customers"])

Handler = Annotated[Principal, Depends(require_permission(Permission.HANDLE_CONTACTS))]
Merger = Annotated[Principal, Depends(require_permission(Permission.MERGE_CUSTOMERS))]
Channel = Literal["voice", "chat", "email", "sms", "whatsapp", "telegram", "messenger"]
FindableKind = Literal["phone", "email", "whatsapp", "telegram", "messenger"]
"""Identity kinds one can look up or add by hand (a chat visitor's token is a secret)."""

assert set(Channel.__args__) == set(CHANNELS)  # type: ignore[attr-defined]
assert set(FindableKind.__args__) < set(IDENTITY_KINDS)  # type: ignore[attr-defined]

ERRORS: dict[int | str, dict[str, Any]] = {
    404: {"description": "No such customer in the tenant (or it was merged into another)."},
    409: {"description": "The identity belongs to another customer."},
    422: {"description": "Invalid input; the problem says which field and why."},
}


def book(request: Request, principal: Principal) -> CustomerBook:
    return CustomerBook(request_database(request), principal.tenant_id)


async def reply_channels(request: Request, principal: Principal) -> ReplyChannels:
    """Email is built in; another channel's outbound registers a `Sender` in
    `app.state.reply_senders` under its channel name."""
    runtime = await tenant_runtime(request, principal)
    database = request_database(request)
    senders: dict[str, Sender] = dict(getattr(request.app.state, "reply_senders", {}))
    senders["email"] = email_sender(database, principal.tenant_id, runtime.routing,
                                    await email_desk(request, principal))
    return ReplyChannels(database, principal.tenant_id, runtime.routing, senders)


def actor(principal: Principal) -> str:
    """Who the audit trail names: a person, or an integration's API token (a CRM's rule)."""
    return f"{'user' if principal.is_session else 'token'}:{principal.subject_id}"


class CustomerChangesIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str | None = Field(default=None, max_length=200)
    segment: str | None = Field(default=None, max_length=64)
    vip: bool | None = None
    account_manager: str | None = Field(default=None, max_length=36,
                                        description="Agent id; \"\" removes it.")
    language: str | None = Field(default=None, max_length=16)
    preferred_channel: Channel | Literal[""] | None = None


class ConsentIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    opted_in: bool
    source: str = Field(default="agent", min_length=1, max_length=200,
                        description="Where the customer said so (agent, web form, call...).")


class IdentityIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    kind: FindableKind
    value: str = Field(min_length=1, max_length=320)


class MergeIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    other_id: str = Field(min_length=1, max_length=36,
                          description="The customer to absorb into this one.")
    reason: str = Field(default="", max_length=500)


class ChannelReplyIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    channel: Channel
    address: str = Field(min_length=1, max_length=320,
                         description="One of the conversation's reachable channels' addresses.")
    text: str = Field(min_length=1, max_length=100_000)
    id: str | None = Field(default=None, max_length=128, description="Idempotency key.")


class SplitIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    identity_ids: list[str] = Field(min_length=1, max_length=100)
    conversation_ids: list[str] = Field(default_factory=list, max_length=1000)
    reason: str = Field(default="", max_length=500)


@router.get("", summary="Find the customer with an identity (phone, email, messaging id)",
            responses=ERRORS)
async def find(request: Request, principal: Handler, kind: Annotated[FindableKind, Query()],
               value: Annotated[str, Query(min_length=1, max_length=320)]) -> dict[str, Any]:
    found = await book(request, principal).find(kind, value)
    if found is None:
        raise NotFound(f"no customer has {kind} {value}")
    return found


@router.get("/{customer_id}", summary="The customer panel: profile, identities, reachable "
            "channels, consent and audit trail", responses=ERRORS)
async def view(customer_id: str, request: Request, principal: Handler) -> dict[str, Any]:
    return await book(request, principal).view(customer_id)


@router.get("/{customer_id}/timeline", summary="Every contact on every channel, newest first",
            responses=ERRORS)
async def timeline(customer_id: str, request: Request, principal: Handler,
                   limit: Annotated[int, Query(ge=1, le=500)] = 200) -> list[dict[str, Any]]:
    return await book(request, principal).timeline(customer_id, limit=limit)


@router.get("/{customer_id}/crm", summary="What the tenant's CRM says about the customer "
            "(state found, not_found, timeout, error or off; mapped fields; link)",
            responses=ERRORS)
async def crm_record(customer_id: str, request: Request, principal: Handler,
                     fresh: bool = False) -> dict[str, Any]:
    """Asked apart from the panel, so a slow CRM never holds the desk up; the attributes the
    connector maps (segment, VIP, account manager, language) are written onto the customer."""
    await book(request, principal).view(customer_id)  # 404 for another tenant's or a merged one
    directory: CrmDirectory = request.app.state.crm_directory
    return await directory.lookup(principal.tenant_id, customer_id, fresh=fresh)


@router.patch("/{customer_id}", summary="Edit name and routing attributes (segment, VIP, "
              "account manager, language, preferred channel)", responses=ERRORS)
async def edit(customer_id: str, body: CustomerChangesIn, request: Request,
               principal: Handler) -> dict[str, Any]:
    return await book(request, principal).update(customer_id, Changes(**body.model_dump()))


@router.put("/{customer_id}/consent/{channel}", summary="Record an opt-in or opt-out",
            responses=ERRORS)
async def consent(customer_id: str, channel: Channel, body: ConsentIn, request: Request,
                  principal: Handler) -> dict[str, Any]:
    return await book(request, principal).set_consent(
        customer_id, channel, opted_in=body.opted_in, source=body.source)


@router.post("/{customer_id}/identities", status_code=201,
             summary="Add a phone, email or messaging id", responses=ERRORS)
async def add_identity(customer_id: str, body: IdentityIn, request: Request,
                       principal: Handler) -> dict[str, Any]:
    return await book(request, principal).add_identity(customer_id, body.kind, body.value)


@router.post("/{customer_id}/merge", summary="Absorb another customer into this one",
             responses=ERRORS)
async def merge(customer_id: str, body: MergeIn, request: Request,
                principal: Merger) -> dict[str, Any]:
    return await book(request, principal).merge(customer_id, body.other_id,
                                                 actor=actor(principal), reason=body.reason)


@router.post("/{customer_id}/split", summary="Move identities and their conversations out "
             "to a customer of their own (back to where a merge brought them from)",
             responses=ERRORS)
async def split(customer_id: str, body: SplitIn, request: Request,
                principal: Merger) -> dict[str, Any]:
    return await book(request, principal).split(
        customer_id, body.identity_ids, actor=actor(principal),
        conversation_ids=body.conversation_ids, reason=body.reason)


@router.get("/conversations/{conversation_id}/channels",
            summary="The channels the conversation's customer can be answered on",
            responses=ERRORS)
async def channels(conversation_id: str, request: Request,
                   principal: Handler) -> list[dict[str, Any]]:
    return await (await reply_channels(request, principal)).choices(conversation_id)


@router.post("/conversations/{conversation_id}/replies", status_code=201,
             summary="Answer the conversation on another channel (e.g. a quiet chat by "
             "email); the customer's answer comes back to the same conversation",
             responses={**ERRORS, 403: {"description": "Not the agent's conversation."},
                        409: {"description": "No outbound on this channel yet, or no "
                                             "mailbox to send from."}})
async def reply_on_channel(conversation_id: str, body: ChannelReplyIn, request: Request,
                           principal: Handler) -> dict[str, Any]:
    agent_id = await agent_of(request, principal)
    return await (await reply_channels(request, principal)).reply(
        agent_id, conversation_id, channel=body.channel, address=body.address,
        text=body.text, key=body.id)
