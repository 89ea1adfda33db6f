"""One customer across channels: identities, attributes that steer routing, consent, the
timeline of every contact, and merging or splitting customers with an audit trail.

A customer is found by any of their identities (E.164 phone, lower-case email, chat visitor
token, messaging ids). Two records of one person are merged into a survivor; every row that
names the absorbed customer moves, and the move is written to `customer_changes` so a split
can put back exactly what that merge brought in.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from omnicc.core.errors import Conflict, InvalidConfiguration, NotFound
from omnicc.store.database import Database
from omnicc.store.repositories import Agents, Customers, Identities
from omnicc.store.tables import (
    CallbackRequest,
    CallRecord,
    Contact,
    Conversation,
    Customer,
    CustomerChange,
    Identity,
    Message,
)

IDENTITY_KINDS: Final = ("phone", "email", "chat_visitor", "whatsapp", "telegram", "messenger",
                          "crm")
"""`crm`: the customer's record id in the tenant's CRM (app/crm.py), which names one person."""
CHANNELS: Final = ("voice", "chat", "email", "sms", "whatsapp", "telegram", "messenger")
"""Channels a customer can prefer or consent to."""
SEGMENT_KEYS: Final = ("segment", "vip", "account_manager", "language")
"""Attributes that flow into every task made for the customer (routing by customer data)."""
_REACH: Final[Mapping[str, tuple[str, ...]]] = {
    "email": ("email",), "phone": ("sms", "whatsapp", "voice"), "whatsapp": ("whatsapp",),
    "telegram": ("telegram",), "messenger": ("messenger",),
}
_MOVABLE: Final[tuple[tuple[str, Any], ...]] = (
    ("conversations", Conversation), ("contacts", Contact), ("call_records", CallRecord),
    ("callback_requests", CallbackRequest))


def now_utc() -> datetime:
    return datetime.now(UTC)


def normal_identity(kind: str, value: str, default_region: str | None = None) -> str:
    """The one stored spelling of an identity, so the same person is found on every channel."""
    if kind not in IDENTITY_KINDS:
        raise InvalidConfiguration(f"unknown identity kind {kind!r}; use one of "
                                   f"{', '.join(IDENTITY_KINDS)}")
    text = value.strip()
    if not text:
        raise InvalidConfiguration(f"an identity of kind {kind} needs a value")
    if kind == "phone":
        from omnicc.app.voice import normalize_phone  # voice imports routing_attributes

        return normalize_phone(text, default_region)
    if kind == "email":
        address = text.strip("<>").lower()
        local, at, domain = address.partition("@")
        if not at or not local or "." not in domain or len(address) > 320:
            raise InvalidConfiguration(f"{value!r} is not an email address")
        return address
    return text[:320]


def routing_attributes(customer: Customer | None) -> dict[str, Any]:
    """The task attributes a customer brings: their segment keys, their id, and
    `preferred_agents` (their account manager) for a policy's preferred-agent step."""
    if customer is None:
        return {}
    attributes: dict[str, Any] = {"customer_id": customer.id}
    for key in SEGMENT_KEYS:
        value = customer.attributes.get(key)
        if value not in (None, ""):
            attributes[key] = value
    manager = customer.attributes.get("account_manager")
    if manager:
        attributes["preferred_agents"] = [str(manager)]
    return attributes


@dataclass(frozen=True, slots=True)
class Changes:
    """An edit of a customer: only fields given (not None) change; "" clears a text field."""

    name: str | None = None
    segment: str | None = None
    vip: bool | None = None
    account_manager: str | None = None
    language: str | None = None
    preferred_channel: str | None = None


def _iso(at: datetime | None) -> str | None:
    return at.isoformat() if at is not None else None


class CustomerBook:
    """The use cases on a tenant's customers."""

    def __init__(self, database: Database, tenant_id: str) -> None:
        self._database = database
        self.tenant_id = tenant_id

    # --- reading -----------------------------------------------------------------------------

    async def view(self, customer_id: str) -> dict[str, Any]:
        """The customer panel: who they are, how to reach them, and their audit trail."""
        async with self._database.session() as session:
            customer = await self._live(session, customer_id)
            identities = await self._identities(session, customer.id)
            changes = await self._changes(session, customer.id)
        return {**self._summary(customer), "identities": identities,
                "reachable": self._reachable(customer, identities), "changes": changes}

    async def find(self, kind: str, value: str) -> dict[str, Any] | None:
        """The customer with this identity, if any."""
        normal = normal_identity(kind, value)
        async with self._database.session() as session:
            identity = await Identities(session, self.tenant_id).by_value(kind, normal)
            if identity is None:
                return None
            return self._summary(await Customers(session, self.tenant_id).get(identity.customer_id))

    async def timeline(self, customer_id: str, *, limit: int = 200) -> list[dict[str, Any]]:
        """Every contact on every channel, newest first: calls with their figures and
        recording link, chats, emails and messages with their last public words."""
        async with self._database.session() as session:
            await self._live(session, customer_id)
            rows = (await session.execute(
                select(Contact, Conversation.subject).join(
                    Conversation, Conversation.id == Contact.conversation_id)
                .where(Contact.tenant_id == self.tenant_id,
                       Contact.customer_id == customer_id)
                .order_by(Contact.started_at.desc(), Contact.id).limit(limit))).all()
            contact_ids = [contact.id for contact, _ in rows]
            calls = {row.contact_id: row for row in (await session.scalars(
                select(CallRecord).where(CallRecord.tenant_id == self.tenant_id,
                                         CallRecord.contact_id.in_(contact_ids)))).all()}
            last: dict[str, Message] = {}
            for message in (await session.scalars(
                    select(Message).where(Message.tenant_id == self.tenant_id,
                                          Message.contact_id.in_(contact_ids),
                                          Message.visibility == "public")
                    .order_by(Message.created_at, Message.id))).all():
                last[message.contact_id or ""] = message
        entries = []
        for contact, subject in rows:
            entry: dict[str, Any] = {
                "contact_id": contact.id, "conversation_id": contact.conversation_id,
                "channel": contact.channel, "direction": contact.direction,
                "queue_id": contact.queue_id, "agent_id": contact.agent_id,
                "subject": subject, "started_at": _iso(contact.started_at),
                "ended_at": _iso(contact.ended_at), "csat_score": contact.csat_score}
            words = last.get(contact.id)
            if words is not None:
                entry["last_message"] = {"author_kind": words.author_kind,
                                         "text": words.text[:300],
                                         "at": _iso(words.created_at)}
            call = calls.get(contact.id)
            if call is not None:
                entry["call"] = {
                    "call_record_id": call.id, "from": call.from_number, "to": call.to_number,
                    "outcome": call.outcome, "queue_s": call.queue_s, "talk_s": call.talk_s,
                    "hold_s": call.hold_s, "transfers": call.transfers,
                    "recording_url": (f"/api/recordings/{call.id}"
                                      if call.recording_path else None)}
            entries.append(entry)
        return entries

    # --- editing -----------------------------------------------------------------------------

    async def update(self, customer_id: str, changes: Changes) -> dict[str, Any]:
        """Edit the name and the routing attributes; they apply to tasks made from now on."""
        if changes.preferred_channel not in (None, "", *CHANNELS):
            raise InvalidConfiguration(f"unknown channel {changes.preferred_channel!r}")
        async with self._database.session() as session:
            customer = await self._live(session, customer_id)
            if changes.account_manager:
                await self._check_agent(session, changes.account_manager)
            if changes.name is not None:
                customer.name = changes.name.strip()[:200]
            attributes = dict(customer.attributes)
            for key in ("segment", "account_manager", "language", "preferred_channel"):
                value = getattr(changes, key)
                if value is not None:
                    if value.strip():
                        attributes[key] = value.strip()
                    else:
                        attributes.pop(key, None)
            if changes.vip is not None:
                attributes["vip"] = changes.vip
            customer.attributes = attributes
            await Customers(session, self.tenant_id).save(customer)
            return self._summary(customer)

    async def set_consent(self, customer_id: str, channel: str, *, opted_in: bool,
                          source: str) -> dict[str, Any]:
        """Record an opt-in or opt-out for one channel, with when and where it came from."""
        if channel not in CHANNELS:
            raise InvalidConfiguration(f"unknown channel {channel!r}")
        async with self._database.session() as session:
            customer = await self._live(session, customer_id)
            consent = dict(customer.attributes.get("consent") or {})
            consent[channel] = {"state": "opt_in" if opted_in else "opt_out",
                                "at": now_utc().isoformat(), "source": source[:200]}
            customer.attributes = {**customer.attributes, "consent": consent}
            await Customers(session, self.tenant_id).save(customer)
            return self._summary(customer)

    async def add_identity(self, customer_id: str, kind: str, value: str) -> dict[str, Any]:
        """Give the customer another way to be found; an identity another customer holds is
        a conflict (merge them instead)."""
        normal = normal_identity(kind, value)
        async with self._database.session() as session:
            customer = await self._live(session, customer_id)
            identities = Identities(session, self.tenant_id)
            existing = await identities.by_value(kind, normal)
            if existing is not None:
                if existing.customer_id == customer.id:
                    return _identity_view(existing)
                raise IdentityTaken(f"{kind} {normal} belongs to customer "
                                    f"{existing.customer_id}; merge the two customers")
            row = await identities.add(Identity(customer_id=customer.id, kind=kind,
                                                value=normal))
            if kind in ("email", "phone") and not customer.attributes.get(kind):
                customer.attributes = {**customer.attributes, kind: normal}
                await Customers(session, self.tenant_id).save(customer)
            return _identity_view(row)

    # --- merge and split -----------------------------------------------------------------------

    async def merge(self, survivor_id: str, absorbed_id: str, *, actor: str,
                    reason: str = "") -> dict[str, Any]:
        """Make `absorbed_id` part of `survivor_id`: identities, conversations, contacts, call
        records and callback requests move; the absorbed record stays, marked merged, so a
        split can bring it back. Attributes the survivor lacks are taken over."""
        if survivor_id == absorbed_id:
            raise InvalidConfiguration("a customer cannot be merged into itself")
        async with self._database.session() as session:
            survivor = await self._live(session, survivor_id)
            absorbed = await self._live(session, absorbed_id)
            moved: dict[str, list[str]] = {"identities": await self._move(
                session, Identity, absorbed.id, survivor.id)}
            for name, table in _MOVABLE:
                moved[name] = await self._move(session, table, absorbed.id, survivor.id)
            taken = {key: value for key, value in absorbed.attributes.items()
                     if key not in survivor.attributes and key != "merged_into"}
            if not survivor.name and absorbed.name:
                survivor.name = absorbed.name
                taken["name"] = absorbed.name
            survivor.attributes = {**survivor.attributes, **{
                key: value for key, value in taken.items() if key != "name"}}
            moved["attributes"] = sorted(taken)
            absorbed.attributes = {**absorbed.attributes, "merged_into": survivor.id}
            customers = Customers(session, self.tenant_id)
            await customers.save(survivor)
            await customers.save(absorbed)
            change = CustomerChange(tenant_id=self.tenant_id, kind="merge", customer_id=survivor.id,
                                    other_id=absorbed.id, actor=actor[:200], reason=reason[:500],
                                    moved=moved, created_at=now_utc())
            session.add(change)
            await session.flush()
            return _change_view(change)

    async def split(self, customer_id: str, identity_ids: list[str], *, actor: str,
                    conversation_ids: list[str] | None = None,
                    reason: str = "") -> dict[str, Any]:
        """Move the chosen identities, and the conversations that came with them, out to a
        customer of their own. Identities a merge brought in go back to the customer they came
        from with everything that merge moved (the merge is marked reverted); others go to a
        new customer with the conversations named in `conversation_ids`."""
        if not identity_ids:
            raise InvalidConfiguration("choose at least one identity to split off")
        async with self._database.session() as session:
            customer = await self._live(session, customer_id)
            rows = {row.id: row for row in (await session.scalars(
                select(Identity).where(Identity.tenant_id == self.tenant_id,
                                       Identity.customer_id == customer.id))).all()}
            unknown = [i for i in identity_ids if i not in rows]
            if unknown:
                raise InvalidConfiguration(f"identities {', '.join(unknown)} are not this "
                                           "customer's")
            merge = await self._merge_that_brought(session, customer.id, identity_ids)
            customers = Customers(session, self.tenant_id)
            if merge is not None:
                target = await customers.get(merge.other_id)
                target.attributes = {key: value for key, value in target.attributes.items()
                                     if key != "merged_into"}
                ids: dict[str, list[str]] = {
                    name: list(merge.moved.get(name, [])) for name, _ in _MOVABLE}
                ids["identities"] = list(merge.moved.get("identities", []))
            else:
                target = Customer(name="", attributes={})
                ids = {name: [] for name, _ in _MOVABLE}
                ids["identities"] = []
                if conversation_ids:
                    ids["conversations"] = list(conversation_ids)
                    ids["contacts"] = list((await session.scalars(select(Contact.id).where(
                        Contact.tenant_id == self.tenant_id,
                        Contact.conversation_id.in_(conversation_ids)))).all())
                    ids["call_records"] = list((await session.scalars(
                        select(CallRecord.id).where(
                            CallRecord.tenant_id == self.tenant_id,
                            CallRecord.conversation_id.in_(conversation_ids)))).all())
                    ids["callback_requests"] = list((await session.scalars(
                        select(CallbackRequest.id).where(
                            CallbackRequest.tenant_id == self.tenant_id,
                            CallbackRequest.call_record_id.in_(ids["call_records"])))).all())
            ids["identities"] = sorted(set(ids["identities"]) | set(identity_ids))
            if len(set(rows) - set(ids["identities"])) == 0:
                raise InvalidConfiguration("a split must leave the customer one identity")
            target = await customers.save(target) if target.id else await customers.add(target)
            for identity_id in ids["identities"]:
                if identity_id in rows:
                    rows[identity_id].customer_id = target.id
            moved: dict[str, list[str]] = {"identities": [
                i for i in ids["identities"] if i in rows]}
            for name, table in _MOVABLE:
                moved[name] = await self._move(session, table, customer.id, target.id,
                                               only=ids[name])
            if "email" in customer.attributes or "phone" in customer.attributes:
                kept = {row.kind: row.value for row in rows.values()
                        if row.id not in moved["identities"]}
                for kind in ("email", "phone"):
                    if customer.attributes.get(kind) and kind not in kept:
                        customer.attributes = {key: value for key, value
                                               in customer.attributes.items() if key != kind}
                for row in rows.values():
                    if row.id in moved["identities"] and row.kind in ("email", "phone") \
                            and not target.attributes.get(row.kind):
                        target.attributes = {**target.attributes, row.kind: row.value}
            await customers.save(customer)
            await customers.save(target)
            change = CustomerChange(tenant_id=self.tenant_id, kind="split", customer_id=customer.id,
                                    other_id=target.id, actor=actor[:200], reason=reason[:500],
                                    moved=moved, created_at=now_utc())
            session.add(change)
            await session.flush()
            if merge is not None:
                merge.reverted_by = change.id
            return _change_view(change)

    # --- helpers -------------------------------------------------------------------------------

    async def _live(self, session: AsyncSession, customer_id: str) -> Customer:
        """The customer; one that was merged away answers as not found (its rows moved)."""
        customer = await Customers(session, self.tenant_id).get(customer_id)
        if customer.attributes.get("merged_into"):
            raise NotFound(f"customer {customer_id} was merged into "
                           f"{customer.attributes['merged_into']}")
        return customer

    async def _check_agent(self, session: AsyncSession, agent_id: str) -> None:
        if await Agents(session, self.tenant_id).find(agent_id) is None:
            raise InvalidConfiguration(f"account manager {agent_id} is not an agent of the "
                                       "tenant")

    async def _move(self, session: AsyncSession, table: Any, from_id: str, to_id: str,
                    *, only: list[str] | None = None) -> list[str]:
        statement = select(table.id).where(table.tenant_id == self.tenant_id,
                                           table.customer_id == from_id)
        if only is not None:
            if not only:
                return []
            statement = statement.where(table.id.in_(only))
        ids = sorted((await session.scalars(statement)).all())
        if ids:
            await session.execute(update(table).where(
                table.tenant_id == self.tenant_id, table.id.in_(ids))
                .values(customer_id=to_id).execution_options(synchronize_session="fetch"))
        return ids

    async def _merge_that_brought(self, session: AsyncSession, customer_id: str,
                                  identity_ids: list[str]) -> CustomerChange | None:
        """The newest unreverted merge into this customer that moved any chosen identity."""
        merges = (await session.scalars(select(CustomerChange).where(
            CustomerChange.tenant_id == self.tenant_id, CustomerChange.kind == "merge",
            CustomerChange.customer_id == customer_id, CustomerChange.reverted_by.is_(None))
            .order_by(CustomerChange.created_at.desc()))).all()
        chosen = set(identity_ids)
        return next((m for m in merges if chosen & set(m.moved.get("identities", []))), None)

    async def _identities(self, session: AsyncSession, customer_id: str) -> list[dict[str, Any]]:
        rows = (await session.scalars(select(Identity).where(
            Identity.tenant_id == self.tenant_id, Identity.customer_id == customer_id)
            .order_by(Identity.created_at, Identity.id))).all()
        return [_identity_view(row) for row in rows]

    async def _changes(self, session: AsyncSession, customer_id: str) -> list[dict[str, Any]]:
        rows = (await session.scalars(select(CustomerChange).where(
            CustomerChange.tenant_id == self.tenant_id,
            (CustomerChange.customer_id == customer_id)
            | (CustomerChange.other_id == customer_id))
            .order_by(CustomerChange.created_at.desc()))).all()
        return [_change_view(row) for row in rows]

    @staticmethod
    def _summary(customer: Customer) -> dict[str, Any]:
        attributes = customer.attributes
        return {"id": customer.id, "name": customer.name,
                "segment": attributes.get("segment", ""), "vip": bool(attributes.get("vip")),
                "account_manager": attributes.get("account_manager"),
                "language": attributes.get("language", ""),
                "preferred_channel": attributes.get("preferred_channel", ""),
                "consent": dict(attributes.get("consent") or {}),
                "email": attributes.get("email", ""), "phone": attributes.get("phone", ""),
                "created_at": _iso(customer.created_at)}

    @staticmethod
    def _reachable(customer: Customer,
                   identities: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """The channels an agent may answer on: one per identity that reaches (and the
        address the customer typed into the chat widget), minus the channels they opted out
        of."""
        consent = customer.attributes.get("consent") or {}
        reachable = []
        known = {(i["kind"], i["value"]) for i in identities}
        given = [{"kind": kind, "value": str(customer.attributes[kind])}
                 for kind in ("email", "phone") if customer.attributes.get(kind)
                 and (kind, customer.attributes[kind]) not in known]
        for identity in [*identities, *given]:
            for channel in _REACH.get(identity["kind"], ()):
                if (consent.get(channel) or {}).get("state") == "opt_out":
                    continue
                reachable.append({"channel": channel, "address": identity["value"],
                                  "preferred": channel == customer.attributes.get(
                                      "preferred_channel")})
        return reachable


class IdentityTaken(Conflict):
    """The identity is another customer's."""


def _identity_view(row: Identity) -> dict[str, Any]:
    """A chat visitor's value is the widget's secret token: never shown."""
    return {"id": row.id, "kind": row.kind,
            "value": "web visitor" if row.kind == "chat_visitor" else row.value,
            "created_at": _iso(row.created_at)}


def _change_view(row: CustomerChange) -> dict[str, Any]:
    return {"id": row.id, "kind": row.kind, "customer_id": row.customer_id,
            "other_id": row.other_id, "actor": row.actor, "reason": row.reason,
            "moved": dict(row.moved), "reverted_by": row.reverted_by,
            "at": _iso(row.created_at)}
