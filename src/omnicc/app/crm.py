"""The generic CRM connector: look a customer up in the tenant's CRM for the agent, and push
every finished contact to it.

Lookup. The connector's URL template gets the customer's phone (E.164) and email; the answer's
JSON is read with the connector's mapping (paths such as `results[0].properties.company`) into
fields shown in the customer panel and into customer attributes (segment, VIP, account manager,
language) written onto the customer, so routing by customer data follows the CRM. Answers are
cached per tenant (TTL, bounded); a CRM slower than the timeout is reported as "did not answer"
and the desk never waits longer than that.

Push. A reader of the event log, with its own cursor (`event_cursors`, reader `crm_push`): each
`task.ended` with outcome `completed` becomes one `crm_pushes` row holding the finished contact
(summary, disposition, channel, times, recording link), in the transaction that moves the
cursor. The rows are POSTed signed exactly like webhooks (`app.webhooks.post`: the same headers,
HMAC and idempotency key header) and retried with the webhooks' backoff. The log and not the
contact's completion feeds the outbox because every channel ends its tasks through the routing
engine, whose events are committed with the task rows: one reader covers chat, calls, email and
messaging without touching them. Rows of our own instead of `webhook_deliveries`: a delivery is
an event of the log, while a push carries a document built from several tables at the moment
the contact finished.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
import re
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal
from urllib.parse import quote

import httpx
from pydantic import AnyHttpUrl, BaseModel, ConfigDict, Field, StringConstraints, field_validator
from sqlalchemy import delete, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from omnicc.app.customers import CustomerBook, IdentityTaken, normal_identity
from omnicc.app.event_feed import EVENTS_TOPIC
from omnicc.app.webhooks import DeliveryPolicy, new_secret, post
from omnicc.bus import Bus
from omnicc.core.clock import Clock
from omnicc.core.errors import InvalidConfiguration
from omnicc.store.database import Database
from omnicc.store.repositories import Identities, Tenants
from omnicc.store.tables import (
    Agent,
    CallRecord,
    ClientContact,
    ClientNotification,
    Contact,
    Conversation,
    CrmConnector,
    CrmPush,
    Customer,
    Event,
    EventCursor,
    Identity,
    Message,
    Queue,
    Task,
    User,
    WrapUpCode,
)

log = logging.getLogger("omnicc.crm")

PUSH_READER = "crm_push"
NOTIFY_READER = "client_notifications"
PUSH_EVENT = "contact.finished"
MAX_ERROR_CHARS = 500
MAX_FIELD_CHARS = 500
SUMMARY_CHARS = 2000
ROUTING_ATTRIBUTES = ("segment", "vip", "account_manager", "language")
_PATH_PART = re.compile(r"([^.\[\]]+)|\[(\d+)\]")


# --- reading a CRM's answer ---------------------------------------------------------------------

def pick(document: Any, path: str) -> Any:
    """The value at a path such as `results[0].properties.email` (a number between dots is an
    index too: `records.0.Name`); None when any step is missing."""
    value = document
    for name, index in _PATH_PART.findall(path.strip()):
        if index or (name.isdigit() and isinstance(value, list)):
            position = int(index or name)
            if not isinstance(value, list) or position >= len(value):
                return None
            value = value[position]
        elif isinstance(value, Mapping):
            value = value.get(name)
        else:
            return None
        if value is None:
            return None
    return value


def as_text(value: Any) -> str:
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, dict | list):
        return json.dumps(value, ensure_ascii=False)[:MAX_FIELD_CHARS]
    return str(value)[:MAX_FIELD_CHARS]


def as_flag(value: Any) -> bool:
    """A CRM's idea of yes: true, 1, "true", "yes", "y", "x", "vip"."""
    if isinstance(value, bool):
        return value
    if isinstance(value, int | float):
        return value != 0
    return str(value).strip().lower() in ("true", "1", "yes", "y", "x", "vip")


@dataclass(frozen=True, slots=True)
class Lookup:
    """What the CRM said about a customer. `state`: found, not_found, timeout (it did not
    answer in time), error (it answered badly), off (no lookup configured)."""

    state: str
    fields: list[dict[str, str]] = field(default_factory=list)
    attributes: dict[str, Any] = field(default_factory=dict)
    link: str | None = None
    error: str | None = None
    fetched_at: float = 0.0
    record_id: str = ""
    """The CRM's own id of the record, when the mapping names it: customers it finds are one."""

    def view(self, *, cached: bool) -> dict[str, Any]:
        return {"state": self.state, "fields": self.fields, "attributes": self.attributes,
                "link": self.link, "error": self.error, "cached": cached,
                "fetched_at": datetime.fromtimestamp(self.fetched_at, UTC).isoformat()
                if self.fetched_at else None}


def read_answer(mapping: Mapping[str, Any], answer: Any, fetched_at: float) -> Lookup:
    """The connector's mapping applied to the CRM's JSON answer."""
    record_path = str(mapping.get("record") or "")
    record = pick(answer, record_path) if record_path else answer
    if record is None or record == [] or record == {}:
        return Lookup("not_found", fetched_at=fetched_at)
    fields = []
    for item in mapping.get("fields") or []:
        value = pick(record, str(item.get("path", "")))
        if value is not None and value != "":
            fields.append({"label": str(item.get("label") or item.get("path")),
                           "value": as_text(value)})
    attributes: dict[str, Any] = {}
    for name, path in (mapping.get("attributes") or {}).items():
        if name not in ROUTING_ATTRIBUTES:
            continue
        value = pick(record, str(path))
        if value is not None:
            attributes[name] = as_flag(value) if name == "vip" else as_text(value)
    link = pick(record, str(mapping["link"])) if mapping.get("link") else None
    record_id = pick(record, str(mapping["record_id"])) if mapping.get("record_id") else None
    return Lookup("found", fields, attributes,
                  link if isinstance(link, str) and link.startswith(("http://", "https://"))
                  else None, fetched_at=fetched_at,
                  record_id=as_text(record_id)[:300] if record_id not in (None, "") else "")


def lookup_request(connector: CrmConnector, phone: str, email: str) -> httpx.Request:
    """The HTTP request of a lookup: the URL template filled URL-encoded, a POST body template
    filled JSON-escaped, the auth header when set."""
    url = connector.lookup_url.replace("{phone}", quote(phone, safe="")).replace(
        "{email}", quote(email, safe=""))
    headers = {"Accept": "application/json", "User-Agent": "OmniCC-CRM/1"}
    if connector.auth_header and connector.auth_value:
        headers[connector.auth_header] = connector.auth_value
    content = None
    if connector.lookup_method == "POST":
        content = connector.lookup_body.replace("{phone}", json.dumps(phone)[1:-1]).replace(
            "{email}", json.dumps(email)[1:-1]).encode()
        headers["Content-Type"] = "application/json"
    return httpx.Request(connector.lookup_method, url, headers=headers, content=content)


class LookupCache:
    """Answers per (tenant, phone, email), kept `ttl` seconds, at most `per_tenant` per tenant
    (the least recently used goes first). Only found and not-found answers are kept: a CRM that
    failed is asked again next time."""

    def __init__(self, *, per_tenant: int = 1000) -> None:
        self._per_tenant = per_tenant
        self._entries: dict[str, OrderedDict[tuple[str, str], Lookup]] = {}

    def get(self, tenant_id: str, key: tuple[str, str], ttl_s: float, now: float) -> Lookup | None:
        entries = self._entries.get(tenant_id)
        found = entries.get(key) if entries is not None else None
        if entries is None or found is None:
            return None
        if now - found.fetched_at >= ttl_s:
            del entries[key]
            return None
        entries.move_to_end(key)
        return found

    def put(self, tenant_id: str, key: tuple[str, str], answer: Lookup) -> None:
        if answer.state not in ("found", "not_found"):
            return
        entries = self._entries.setdefault(tenant_id, OrderedDict())
        entries[key] = answer
        entries.move_to_end(key)
        while len(entries) > self._per_tenant:
            entries.popitem(last=False)

    def forget(self, tenant_id: str) -> None:
        """The connector changed: its old answers may be mapped differently."""
        self._entries.pop(tenant_id, None)

    def size(self, tenant_id: str) -> int:
        return len(self._entries.get(tenant_id, ()))


async def ask_crm(client: httpx.AsyncClient, connector: CrmConnector, phone: str, email: str,
                  now: float) -> Lookup:
    """One lookup; never raises for what the network or the CRM does."""
    request = lookup_request(connector, phone, email)
    try:
        # The whole exchange within the timeout, whatever httpx's own per-phase timeouts do.
        async with asyncio.timeout(connector.timeout_s):
            response = await client.send(request)
    except (TimeoutError, httpx.TimeoutException):
        return Lookup("timeout", error=f"no answer within {connector.timeout_s:g} s",
                      fetched_at=now)
    except httpx.HTTPError as error:
        return Lookup("error", error=f"{type(error).__name__}: {error}"[:MAX_ERROR_CHARS],
                      fetched_at=now)
    if response.status_code == 404:
        return Lookup("not_found", fetched_at=now)
    if not 200 <= response.status_code < 300:
        return Lookup("error", error=f"HTTP {response.status_code}", fetched_at=now)
    try:
        answer = response.json()
    except ValueError:
        return Lookup("error", error="the answer is not JSON", fetched_at=now)
    return read_answer(connector.mapping, answer, now)


# --- finished contacts --------------------------------------------------------------------------

def _iso(at: datetime | None) -> str | None:
    return at.isoformat() if at is not None else None


def _seconds(start: datetime | None, end: datetime | None) -> float | None:
    if start is None or end is None:
        return None
    return round((end - start).total_seconds(), 1)


async def finished_contact(session: AsyncSession, tenant_id: str, task_id: str,
                           base_url: str = "") -> dict[str, Any] | None:
    """The document of a finished contact (what a CRM and the client company are told), or
    None when its task is unknown. Times follow /work/shared/METRICS.md: `wait_s` from arrival
    to acceptance, `handle_s` from acceptance to the end of wrap-up (talk + wrap-up)."""
    task = (await session.scalars(select(Task).where(
        Task.tenant_id == tenant_id, Task.id == task_id))).first()
    if task is None:
        return None
    contact = None if task.contact_id is None else (await session.scalars(select(Contact).where(
        Contact.tenant_id == tenant_id, Contact.id == task.contact_id))).first()
    conversation_id = task.conversation_id or (contact.conversation_id if contact else None)
    conversation = None if conversation_id is None else (await session.scalars(
        select(Conversation).where(Conversation.tenant_id == tenant_id,
                                   Conversation.id == conversation_id))).first()
    customer_id = (contact.customer_id if contact else None) or (
        conversation.customer_id if conversation else None)
    customer = None if customer_id is None else (await session.scalars(select(Customer).where(
        Customer.tenant_id == tenant_id, Customer.id == customer_id))).first()
    identities = [] if customer is None else list((await session.execute(
        select(Identity.kind, Identity.value).where(
            Identity.tenant_id == tenant_id, Identity.customer_id == customer.id,
            Identity.kind.in_(("phone", "email"))).order_by(Identity.created_at))).all())
    queue = None if task.queue_id is None else (await session.scalars(select(Queue).where(
        Queue.tenant_id == tenant_id, Queue.id == task.queue_id))).first()
    agent_name = None
    if task.agent_id is not None:
        agent_name = (await session.execute(select(Agent.name).where(
            Agent.tenant_id == tenant_id, Agent.id == task.agent_id))).scalar()
    code = None
    if contact is not None and contact.wrap_up_code_id is not None:
        code = (await session.scalars(select(WrapUpCode).where(
            WrapUpCode.tenant_id == tenant_id, WrapUpCode.id == contact.wrap_up_code_id))).first()
    call = None if contact is None else (await session.scalars(select(CallRecord).where(
        CallRecord.tenant_id == tenant_id, CallRecord.contact_id == contact.id))).first()
    notes: list[str] = []
    last_words = ""
    if contact is not None:
        rows = (await session.execute(
            select(Message.visibility, Message.author_kind, Message.text).where(
                Message.tenant_id == tenant_id, Message.contact_id == contact.id,
                Message.visibility.in_(("public", "internal")))
            .order_by(Message.created_at, Message.id))).all()
        notes = [text for visibility, author, text in rows
                 if visibility == "internal" and author == "agent"]
        customer_words = [text for visibility, author, text in rows
                          if visibility == "public" and author == "customer"]
        last_words = customer_words[0] if customer_words else ""
    subject = conversation.subject if conversation else ""
    summary = "\n".join(notes) or last_words or subject
    recording = None
    if call is not None and call.recording_path:
        recording = f"{base_url.rstrip('/')}/api/recordings/{call.id}"
    return {
        "task_id": task.id,
        "contact_id": task.contact_id,
        "conversation_id": conversation_id,
        "channel": task.channel,
        "direction": contact.direction if contact else "inbound",
        "queue": {"id": queue.id, "name": queue.name} if queue else None,
        "agent": {"id": task.agent_id, "name": agent_name} if task.agent_id else None,
        "customer": None if customer is None else {
            "id": customer.id, "name": customer.name,
            "phone": next((value for kind, value in identities if kind == "phone"), None),
            "email": next((value for kind, value in identities if kind == "email"), None),
            "segment": customer.attributes.get("segment", ""),
            "vip": bool(customer.attributes.get("vip"))},
        "subject": subject,
        "summary": summary[:SUMMARY_CHARS],
        "disposition": None if code is None else {"code": code.code, "label": code.label},
        "priority": task.priority,
        "outcome": task.outcome,
        "transferred": task.transferred,
        "arrived_at": _iso(task.created_at),
        "answered_at": _iso(task.accepted_at),
        "completed_at": _iso(task.completed_at),
        "ended_at": _iso(task.ended_at),
        "wait_s": _seconds(task.enqueued_at, task.accepted_at),
        "handle_s": _seconds(task.accepted_at, task.ended_at),
        "csat_score": contact.csat_score if contact else None,
        "recording_url": recording,
    }


async def last_seq(session: AsyncSession, tenant_id: str) -> int:
    seq: int | None = (await session.execute(select(func.max(Event.seq)).where(
        Event.tenant_id == tenant_id))).scalar()
    return seq or 0


async def start_reading(session: AsyncSession, tenant_id: str, reader: str) -> None:
    """A reader starts at the log's end the first time it is wanted (a newly configured push
    or client contact reports what happens from now on, not the past)."""
    found = await session.get(EventCursor, (tenant_id, reader))
    if found is None:
        session.add(EventCursor(tenant_id=tenant_id, reader=reader,
                                seq=await last_seq(session, tenant_id)))


FinishedHandler = Callable[[AsyncSession, int, str, datetime], Awaitable[None]]
"""Adds the outbox rows of one finished task (session, event seq, task id, now)."""


async def read_finished(database: Database, tenant_id: str, reader: str, handler: FinishedHandler,
                        now: datetime, *, batch: int = 200) -> int:
    """One batch of the log after the reader's cursor: each completed `task.ended` handed to
    `handler`, and the cursor moved, in one transaction. Returns how many events were read
    (0 as well when the reader was never started)."""
    async with database.session() as session:
        cursor = await session.get(EventCursor, (tenant_id, reader))
        if cursor is None:
            return 0
        rows = list((await session.scalars(select(Event).where(
            Event.tenant_id == tenant_id, Event.seq > cursor.seq).order_by(Event.seq)
            .limit(batch))).all())
        for row in rows:
            if row.type == "task.ended" and row.payload.get("outcome") == "completed":
                await handler(session, row.seq, str(row.payload["task_id"]), now)
        if rows:
            cursor.seq = rows[-1].seq
        return len(rows)


def _datetime(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, UTC)


class CrmPusher:
    """One tenant's push: the log to `crm_pushes`, and the due rows to the CRM."""

    def __init__(self, database: Database, tenant_id: str, tenant_slug: str, clock: Clock, *,
                 base_url: str = "", policy: DeliveryPolicy | None = None,
                 rng: random.Random | None = None) -> None:
        self._database = database
        self.tenant_id = tenant_id
        self._slug = tenant_slug
        self._clock = clock
        self._base_url = base_url
        self.policy = policy or DeliveryPolicy()
        self._rng = rng or random.Random()

    async def step(self, client: httpx.AsyncClient) -> None:
        now = _datetime(self._clock.now())
        while await read_finished(self._database, self.tenant_id, PUSH_READER, self._add, now):
            pass
        while await self.deliver_due(client):
            pass

    async def _add(self, session: AsyncSession, seq: int, task_id: str, now: datetime) -> None:
        connector = await session.get(CrmConnector, self.tenant_id)
        if connector is None or not connector.push_enabled or not connector.push_url:
            return
        payload = await finished_contact(session, self.tenant_id, task_id, self._base_url)
        if payload is None:
            return
        session.add(CrmPush(tenant_id=self.tenant_id, task_id=task_id, event_seq=seq,
                            idempotency_key=f"contact.{task_id}", payload=payload,
                            next_attempt_at=now))

    async def deliver_due(self, client: httpx.AsyncClient) -> int:
        """POST the pushes due now (one batch); returns how many were tried."""
        now_s = self._clock.now()
        async with self._database.session() as session:
            connector = await session.get(CrmConnector, self.tenant_id)
            if connector is None or not connector.push_enabled or not connector.push_url:
                return 0
            url, secret = connector.push_url, connector.push_secret
            due = list((await session.scalars(select(CrmPush).where(
                CrmPush.tenant_id == self.tenant_id, CrmPush.state == "pending",
                CrmPush.next_attempt_at <= _datetime(now_s))
                .order_by(CrmPush.next_attempt_at).limit(self.policy.batch))).all())
            work = [(row.id, row.idempotency_key, row.event_seq, dict(row.payload))
                    for row in due]
        gate = asyncio.Semaphore(self.policy.concurrency)

        async def attempt(push_id: str, key: str, seq: int, payload: dict[str, Any]) -> None:
            body = json.dumps({"id": key, "type": PUSH_EVENT, "seq": seq,
                               "at": payload.get("ended_at"), "tenant": self._slug,
                               "data": payload}, separators=(",", ":"),
                              ensure_ascii=False).encode()
            async with gate:
                result = await post(client, url, secret, key, PUSH_EVENT, body,
                                    self._clock.now())
            await self._record(push_id, result.status_code, result.error)

        await asyncio.gather(*(attempt(*item) for item in work))
        return len(work)

    async def _record(self, push_id: str, status_code: int | None, error: str | None) -> None:
        now_s = self._clock.now()
        async with self._database.session() as session:
            row = await session.get(CrmPush, push_id)
            if row is None:
                return
            row.last_status_code = status_code
            if self.policy.count_attempt(row, error, now_s, self._rng, done="delivered"):
                row.delivered_at = _datetime(now_s)
        if error is not None:
            log.info("crm push failed", extra={"tenant": self._slug, "push": push_id,
                                               "error": error})

    async def next_due_s(self) -> float | None:
        """Seconds until the next pending push is due (None: nothing pending)."""
        async with self._database.session() as session:
            next_at: datetime | None = (await session.execute(select(
                func.min(CrmPush.next_attempt_at)).where(
                CrmPush.tenant_id == self.tenant_id, CrmPush.state == "pending"))).scalar()
        if next_at is None:
            return None
        return max((next_at - _datetime(self._clock.now())) / timedelta(seconds=1), 0.0)


# --- settings (the admin API and the configuration file) ----------------------------------------

Text = Annotated[str, StringConstraints(strip_whitespace=True, max_length=300)]
Attribute = Literal["segment", "vip", "account_manager", "language"]
assert set(Attribute.__args__) == set(ROUTING_ATTRIBUTES)  # type: ignore[attr-defined]


class Strict(BaseModel):
    """Unknown fields are mistakes (a typo must not be silently ignored)."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


class MappedField(Strict):
    label: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1,
                                            max_length=100)]
    path: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1,
                                           max_length=300)]


class FieldMapping(Strict):
    record: Text = Field(default="", description="Path to the customer's record in the "
                         "answer, e.g. `results[0]`; empty: the answer is the record.")
    fields: list[MappedField] = Field(default_factory=list, max_length=50,
                                      description="Shown to the agent, in this order.")
    attributes: dict[Attribute, Text] = Field(
        default_factory=dict, description="Paths of customer attributes written onto the "
        "customer (routing uses them).")
    link: Text = Field(default="", description="Path of the record's web address in the CRM.")
    record_id: Text = Field(default="", description="Path of the record's id in the CRM. Set, "
                            "it is the merge rule: two customers the CRM answers with the same "
                            "record are merged (audited as `rule:crm-record`).")


class CrmSettings(Strict):
    """The connector as an admin writes it; the secrets are write-only."""

    lookup_enabled: bool = False
    lookup_url: str = Field(default="", max_length=2000, description=(
        "`{phone}` (E.164) and `{email}` are replaced, URL-encoded."))
    lookup_method: Literal["GET", "POST"] = "GET"
    lookup_body: str = Field(default="", max_length=10_000, description=(
        "POST: a JSON template; `{phone}` and `{email}` are replaced, JSON-escaped."))
    auth_header: str = Field(default="Authorization", max_length=100,
                             pattern=r"^[A-Za-z0-9-]*$")
    auth_value: str | None = Field(default=None, max_length=2000, description=(
        "Write-only. Absent: kept; \"\": removed."))
    mapping: FieldMapping = Field(default_factory=FieldMapping)
    timeout_s: float = Field(default=3.0, gt=0, le=30)
    cache_ttl_s: int = Field(default=300, ge=0, le=86_400)
    push_enabled: bool = False
    push_url: AnyHttpUrl | None = None
    push_secret: str | None = Field(default=None, min_length=16, max_length=200, description=(
        "Write-only. Absent: kept (made when the push is first enabled)."))

    @field_validator("lookup_url")
    @classmethod
    def _http(cls, value: str) -> str:
        if value and not value.startswith(("http://", "https://")):
            raise ValueError("the lookup URL must start with http:// or https://")
        return value


class ClientContactSettings(Strict):
    email: Annotated[str, StringConstraints(strip_whitespace=True, min_length=3,
                                            max_length=320)]
    is_enabled: bool = True
    urgent_priority: int | None = Field(default=None, ge=0, le=1_000_000, description=(
        "A contact whose task had at least this priority is urgent (emailed at once)."))
    urgent_codes: list[Annotated[str, StringConstraints(strip_whitespace=True, min_length=1,
                                                        max_length=64)]] = Field(
        default_factory=list, max_length=100, description="Wrap-up codes that are urgent.")
    batch_minutes: int = Field(default=0, ge=0, le=1440, description=(
        "0: one email per contact at once; N: the others together, at most every N minutes."))


class ClientContactEntry(ClientContactSettings):
    """A client contact in the configuration file: its queue by name."""

    queue: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1,
                                            max_length=100)]


def blank_connector(tenant_id: str) -> CrmConnector:
    return CrmConnector(tenant_id=tenant_id, lookup_enabled=False, lookup_url="",
                        lookup_method="GET", lookup_body="", auth_header="Authorization",
                        auth_value="", mapping={}, timeout_s=3.0, cache_ttl_s=300,
                        push_enabled=False, push_url="", push_secret="")


async def save_connector(session: AsyncSession, tenant_id: str,
                         settings: CrmSettings) -> tuple[CrmConnector, str | None]:
    """Write the tenant's connector; a push enabled without a secret gets one made (returned,
    to be shown once). Enabling the push starts its reader at the log's end."""
    row = await session.get(CrmConnector, tenant_id)
    if row is None:
        row = blank_connector(tenant_id)
        session.add(row)
    made = None
    row.lookup_enabled, row.lookup_url = settings.lookup_enabled, settings.lookup_url
    row.lookup_method, row.lookup_body = settings.lookup_method, settings.lookup_body
    row.auth_header = settings.auth_header
    if settings.auth_value is not None:
        row.auth_value = settings.auth_value
    row.mapping = settings.mapping.model_dump()
    row.timeout_s, row.cache_ttl_s = settings.timeout_s, settings.cache_ttl_s
    row.push_enabled = settings.push_enabled
    row.push_url = "" if settings.push_url is None else str(settings.push_url)
    if settings.push_secret is not None:
        row.push_secret = settings.push_secret
    elif row.push_enabled and not row.push_secret:
        row.push_secret = made = new_secret()
    row.updated_at = datetime.now(UTC)
    if row.push_enabled:
        await start_reading(session, tenant_id, PUSH_READER)
    await session.flush()
    return row, made


async def save_client_contact(session: AsyncSession, tenant_id: str, queue_id: str,
                              settings: ClientContactSettings, email: str) -> ClientContact:
    """Write a queue's client contact (`email` already normalised); its notifications start
    with the contacts that finish from now on."""
    row = await session.get(ClientContact, queue_id)
    if row is None:
        row = ClientContact(tenant_id=tenant_id, queue_id=queue_id, email=email)
        session.add(row)
    row.email, row.is_enabled = email, settings.is_enabled
    row.urgent_priority, row.urgent_codes = settings.urgent_priority, list(settings.urgent_codes)
    row.batch_minutes = settings.batch_minutes
    await start_reading(session, tenant_id, NOTIFY_READER)
    await session.flush()
    return row


async def export_crm(session: AsyncSession, tenant_id: str,
                     queue_names: Mapping[str, str]) -> dict[str, Any]:
    """The configuration file's `crm` (never its secrets) and `client_contacts` sections."""
    exported: dict[str, Any] = {}
    row = await session.get(CrmConnector, tenant_id)
    if row is not None:
        exported["crm"] = CrmSettings(
            lookup_enabled=row.lookup_enabled, lookup_url=row.lookup_url,
            lookup_method=row.lookup_method,  # type: ignore[arg-type]
            lookup_body=row.lookup_body, auth_header=row.auth_header,
            mapping=FieldMapping.model_validate(row.mapping), timeout_s=row.timeout_s,
            cache_ttl_s=row.cache_ttl_s, push_enabled=row.push_enabled,
            push_url=row.push_url or None,  # type: ignore[arg-type]
        ).model_dump(mode="json", exclude={"auth_value", "push_secret"})
    contacts = (await session.scalars(select(ClientContact).where(
        ClientContact.tenant_id == tenant_id))).all()
    exported["client_contacts"] = sorted((ClientContactEntry(
        queue=queue_names.get(c.queue_id, c.queue_id), email=c.email, is_enabled=c.is_enabled,
        urgent_priority=c.urgent_priority, urgent_codes=list(c.urgent_codes),
        batch_minutes=c.batch_minutes).model_dump(mode="json") for c in contacts),
        key=lambda entry: entry["queue"])
    return exported


async def import_crm(session: AsyncSession, tenant_id: str, crm: CrmSettings | None,
                     contacts: list[ClientContactEntry], queue_ids: Mapping[str, str], *,
                     replace: bool) -> None:
    """Apply the file's sections. A file without `crm` leaves the connector alone, even when
    replacing (its secrets are never in a file); with `replace`, queues the file gives no
    client contact lose theirs."""
    seen: set[str] = set()
    for entry in contacts:
        if entry.queue not in queue_ids:
            raise InvalidConfiguration(f"client_contacts: unknown queue {entry.queue!r}")
        if entry.queue in seen:
            raise InvalidConfiguration(f"client_contacts: {entry.queue!r} appears twice")
        seen.add(entry.queue)
        await save_client_contact(session, tenant_id, queue_ids[entry.queue], entry,
                                  normal_identity("email", entry.email))
    if replace:
        named = {queue_ids[name] for name in seen}
        for row in (await session.scalars(select(ClientContact).where(
                ClientContact.tenant_id == tenant_id))).all():
            if row.queue_id not in named:
                await session.delete(row)
    if crm is not None:
        await save_connector(session, tenant_id, crm)


# --- applying what the CRM said -------------------------------------------------------------------

async def apply_attributes(session: AsyncSession, tenant_id: str, customer: Customer,
                           attributes: Mapping[str, Any]) -> bool:
    """Write the CRM's routing attributes onto the customer (the CRM is their system of
    record). The account manager is the CRM's name or email of a person: it becomes the agent
    of that name, or whose user has that email or username (unknown: left as it was).
    Returns whether anything changed."""
    wanted = dict(attributes)
    manager = wanted.pop("account_manager", None)
    if isinstance(manager, str) and manager.strip():
        needle = manager.strip().lower()
        found = (await session.execute(
            select(Agent.id).outerjoin(User, User.id == Agent.user_id).where(
                Agent.tenant_id == tenant_id,
                (func.lower(Agent.name) == needle) | (func.lower(User.email) == needle)
                | (func.lower(User.username) == needle)).order_by(Agent.id))).scalar()
        if found is not None:
            wanted["account_manager"] = found
    changed = {key: value for key, value in wanted.items()
               if customer.attributes.get(key) != value}
    if changed:
        customer.attributes = {**customer.attributes, **changed}
    return bool(changed)


def _normal_or_empty(kind: str, value: object) -> str:
    if not isinstance(value, str) or not value.strip():
        return ""
    try:
        return normal_identity(kind, value)
    except InvalidConfiguration:
        return ""


class CrmDirectory:
    """The lookups of every tenant in this process, with one cache and one HTTP client."""

    def __init__(self, database: Database, clock: Clock | None = None, *,
                 cache: LookupCache | None = None) -> None:
        self._database = database
        self._clock = clock
        self.cache = cache or LookupCache()
        self._client: httpx.AsyncClient | None = None

    def _now(self) -> float:
        return self._clock.now() if self._clock is not None else time.time()

    def client(self) -> httpx.AsyncClient:
        if self._client is None:
            self._client = httpx.AsyncClient(follow_redirects=False, trust_env=False)
        return self._client

    async def close(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    async def lookup(self, tenant_id: str, customer_id: str, *,
                     fresh: bool = False) -> dict[str, Any]:
        """The CRM's view of a customer for the panel; mapped attributes are written onto the
        customer (`applied` says whether that changed it). The customer is asked for by their
        first phone and email identities, else by what they typed (a chat's email)."""
        async with self._database.session() as session:
            connector = await session.get(CrmConnector, tenant_id)
            typed = (await session.execute(select(Customer.attributes).where(
                Customer.tenant_id == tenant_id, Customer.id == customer_id))).scalar() or {}
            identities = list((await session.execute(
                select(Identity.kind, Identity.value).where(
                    Identity.tenant_id == tenant_id, Identity.customer_id == customer_id,
                    Identity.kind.in_(("phone", "email"))).order_by(Identity.created_at))).all())
        if connector is None or not connector.lookup_enabled or not connector.lookup_url:
            return {**Lookup("off").view(cached=False), "applied": False}
        phone = next((value for kind, value in identities if kind == "phone"),
                     _normal_or_empty("phone", typed.get("phone")))
        email = next((value for kind, value in identities if kind == "email"),
                     _normal_or_empty("email", typed.get("email")))
        if not phone and not email:
            return {**Lookup("not_found").view(cached=False), "applied": False}
        key = (phone, email)
        now = self._now()
        found = None if fresh else self.cache.get(tenant_id, key, connector.cache_ttl_s, now)
        cached = found is not None
        if found is None:
            found = await ask_crm(self.client(), connector, phone, email, now)
            self.cache.put(tenant_id, key, found)
        applied = False
        if found.state == "found" and found.attributes and not cached:
            async with self._database.session() as session:
                customer = (await session.scalars(select(Customer).where(
                    Customer.tenant_id == tenant_id, Customer.id == customer_id))).first()
                if customer is not None:
                    applied = await apply_attributes(session, tenant_id, customer,
                                                     found.attributes)
        merged = None
        if found.state == "found" and found.record_id and not cached:
            merged = await self._claim_record(tenant_id, customer_id, found.record_id)
        return {**found.view(cached=cached), "applied": applied or merged is not None,
                "merged": merged}

    async def _claim_record(self, tenant_id: str, customer_id: str,
                            record_id: str) -> str | None:
        """The merge rule: the CRM record becomes the customer's `crm` identity; when another
        customer holds it already, the CRM says both are one person and that one is merged
        into this one (the customer the agent is looking at stays). Returns the merged id."""
        book = CustomerBook(self._database, tenant_id)
        try:
            await book.add_identity(customer_id, "crm", record_id)
            return None
        except IdentityTaken:
            pass
        async with self._database.session() as session:
            holder = await Identities(session, tenant_id).by_value("crm", record_id)
        if holder is None or holder.customer_id == customer_id:
            return None
        await book.merge(customer_id, holder.customer_id, actor="rule:crm-record",
                         reason=f"the CRM answers with record {record_id} for both")
        return holder.customer_id

    async def test(self, connector: CrmConnector, phone: str, email: str) -> dict[str, Any]:
        """An admin's trial of a connector (saved or not): asked now, nothing cached or
        written."""
        found = await ask_crm(self.client(), connector, phone, email, self._now())
        return found.view(cached=False)


Step = Callable[[httpx.AsyncClient], Awaitable[None]]
NextDue = Callable[[], Awaitable[float | None]]


async def prune_outboxes(database: Database, tenant_id: str, before: datetime) -> int:
    """Forget delivered pushes and sent notifications made before `before` (failed and pending
    ones stay for the admin); returns how many rows went."""
    async with database.session() as session:
        pushes = await session.execute(delete(CrmPush).where(
            CrmPush.tenant_id == tenant_id, CrmPush.state == "delivered",
            CrmPush.created_at < before))
        sent = await session.execute(delete(ClientNotification).where(
            ClientNotification.tenant_id == tenant_id, ClientNotification.state == "sent",
            ClientNotification.created_at < before))
        return int(pushes.rowcount or 0) + int(sent.rowcount or 0)  # type: ignore[attr-defined]


class CrmService:
    """Runs every tenant's CRM push and client notifications in this process: one loop per
    tenant steps both whenever an event is committed, a retry is due or `poll_s` passed (the
    poll also catches events committed by another process)."""

    def __init__(self, database: Database, clock: Clock, bus: Bus | None, *,
                 base_url: str = "", poll_s: float = 5.0, refresh_s: float = 30.0,
                 keep_days: float = 30.0) -> None:
        self._database = database
        self._clock = clock
        self._bus = bus
        self._base_url = base_url
        self._poll_s = poll_s
        self._refresh_s = refresh_s
        self._keep_days = keep_days
        self._loops: dict[str, asyncio.Task[None]] = {}
        self._watch: asyncio.Task[None] | None = None

    def outboxes(self, tenant_id: str, slug: str) -> list[tuple[str, Step, NextDue]]:
        # Imported here: client notifications build on this module's log reader.
        from omnicc.app.client_notifications import ClientNotifier

        pusher = CrmPusher(self._database, tenant_id, slug, self._clock,
                           base_url=self._base_url)
        notifier = ClientNotifier(self._database, tenant_id, self._clock,
                                  base_url=self._base_url)
        return [(PUSH_READER, pusher.step, pusher.next_due_s),
                (NOTIFY_READER, notifier.step, notifier.next_due_s)]

    async def start(self) -> None:
        await self.refresh()
        self._watch = asyncio.create_task(self._watch_tenants(), name="crm-tenants")

    async def stop(self) -> None:
        tasks = list(self._loops.values()) + ([self._watch] if self._watch else [])
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._loops.clear()
        self._watch = None

    async def refresh(self) -> None:
        """A loop for every tenant (a tenant created since gets one)."""
        async with self._database.session() as session:
            tenants = await Tenants(session).list_all()
        for tenant in tenants:
            if tenant.id not in self._loops:
                self._loops[tenant.id] = asyncio.create_task(
                    self._run(tenant.id, self.outboxes(tenant.id, tenant.slug)),
                    name=f"crm-{tenant.slug}")

    async def _watch_tenants(self) -> None:
        """New tenants every `refresh_s`; old delivered rows pruned every hour."""
        pruned_at = float("-inf")
        while True:
            await asyncio.sleep(self._refresh_s)
            try:
                await self.refresh()
                if self._clock.now() - pruned_at >= 3600:
                    pruned_at = self._clock.now()
                    before = _datetime(pruned_at - self._keep_days * 86_400)
                    for tenant_id in list(self._loops):
                        await prune_outboxes(self._database, tenant_id, before)
            except Exception:  # the database may be away for a moment
                log.exception("crm: tenant refresh failed")

    async def _readers(self, tenant_id: str) -> set[str]:
        """The outboxes the tenant ever configured (a reader's cursor exists): one query per
        wake-up for a tenant that uses neither, whatever its traffic."""
        async with self._database.session() as session:
            return set((await session.scalars(select(EventCursor.reader).where(
                EventCursor.tenant_id == tenant_id))).all())

    async def _run(self, tenant_id: str, outboxes: list[tuple[str, Step, NextDue]]) -> None:
        subscription = None
        async with httpx.AsyncClient(timeout=DeliveryPolicy().timeout_s,
                                     follow_redirects=False, trust_env=False) as client:
            try:
                while True:
                    # Subscribed before the step: an event committed during it wakes the next.
                    if self._bus is not None and (subscription is None or
                                                  subscription.is_closed):
                        subscription = self._bus.subscribe(tenant_id, EVENTS_TOPIC)
                    wait_s = self._poll_s
                    try:
                        readers = await self._readers(tenant_id)
                    except Exception:  # the database may be away for a moment
                        log.exception("crm: outbox check failed", extra={"tenant": tenant_id})
                        readers = set()
                    for reader, step, next_due in outboxes:
                        if reader not in readers:
                            continue
                        try:
                            await step(client)
                            due = await next_due()
                            if due is not None:
                                wait_s = min(wait_s, due)
                        except Exception:  # a bad moment of the database must not end it
                            log.exception("crm: outbox step failed", extra={"tenant": tenant_id})
                    with contextlib.suppress(TimeoutError):
                        async with asyncio.timeout(max(wait_s, 0.05)):
                            if subscription is None:
                                await asyncio.sleep(wait_s)
                            else:
                                await subscription.get()
                                await asyncio.sleep(0.1)  # let the moment's events gather
                                subscription.drain()
            finally:
                if subscription is not None:
                    subscription.close()
