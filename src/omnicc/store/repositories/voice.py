"""Voice: numbers, IVR flows, SIP accounts, prompts, call records and callback requests.

Two lookups cross tenants, because the SIP message is all there is to go by: the number an
INVITE was sent to (`find_number`) and the realm and user name a phone authenticates with
(`find_sip_account`). Everything else is tenant-scoped like every other repository.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import or_, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import undefer

from omnicc.channels.voice.sip.digest import Algorithm, compute_ha1
from omnicc.core.errors import NotFound
from omnicc.store.repositories.base import TenantRepository
from omnicc.store.tables import (
    CallbackRequest,
    CallRecord,
    IvrFlow,
    SipAccount,
    VoiceNumber,
    VoicePrompt,
    utc_now,
)


async def find_number(session: AsyncSession, number: str) -> VoiceNumber | None:
    """The enabled number `number` of any tenant (numbers are unique across tenants)."""
    statement = select(VoiceNumber).where(VoiceNumber.number == number, VoiceNumber.is_enabled)
    return (await session.execute(statement)).scalars().first()


async def find_sip_account(session: AsyncSession, realm: str, username: str) -> SipAccount | None:
    """The enabled SIP account `username` in `realm`, of any tenant."""
    statement = select(SipAccount).where(
        SipAccount.realm == realm, SipAccount.username == username, SipAccount.is_enabled
    )
    return (await session.execute(statement)).scalars().first()


def sip_ha1(account: SipAccount, algorithm: Algorithm) -> str:
    """The stored HA1 for a digest algorithm (its `-sess` variant uses the same)."""
    return account.ha1_sha256 if algorithm.base is Algorithm.SHA256 else account.ha1_md5


class IvrFlows(TenantRepository[IvrFlow]):
    table = IvrFlow
    noun = "IVR flow"

    async def by_name(self, name: str) -> IvrFlow:
        flow = await self.first(self.select().where(IvrFlow.name == name))
        if flow is None:
            raise NotFound(f"IVR flow {name} not found")
        return flow


class VoiceNumbers(TenantRepository[VoiceNumber]):
    table = VoiceNumber
    noun = "voice number"

    async def by_number(self, number: str) -> VoiceNumber:
        row = await self.first(self.select().where(VoiceNumber.number == number))
        if row is None:
            raise NotFound(f"voice number {number} not found")
        return row

    async def caller_id_for(self, queue_id: str | None) -> VoiceNumber | None:
        """The number outbound calls from `queue_id` show: the queue's own, else the default."""
        statement = self.select().where(VoiceNumber.is_enabled)
        if queue_id is not None:
            own = await self.first(statement.where(VoiceNumber.outbound_queue_id == queue_id))
            if own is not None:
                return own
        return await self.first(
            statement.where(VoiceNumber.is_default_outbound).order_by(VoiceNumber.number)
        )

    async def using_flow(self, flow_id: str) -> list[VoiceNumber]:
        return await self.all(
            self.select().where(VoiceNumber.flow_id == flow_id).order_by(VoiceNumber.number)
        )


class SipAccounts(TenantRepository[SipAccount]):
    table = SipAccount
    noun = "SIP account"

    async def by_username(self, username: str) -> SipAccount:
        account = await self.first(self.select().where(SipAccount.username == username))
        if account is None:
            raise NotFound(f"SIP account {username} not found")
        return account

    async def of_agent(self, agent_id: str) -> SipAccount | None:
        return await self.first(self.select().where(SipAccount.agent_id == agent_id))

    async def set_password(self, agent_id: str, username: str, realm: str,
                           password: str) -> SipAccount:
        """Create or update the agent's account with the HA1s of `password` (not kept)."""
        account = await self.of_agent(agent_id)
        if account is None:
            account = SipAccount(agent_id=agent_id)
        now = utc_now()
        account.username = username
        account.realm = realm
        account.ha1_md5 = compute_ha1(Algorithm.MD5, username, realm, password)
        account.ha1_sha256 = compute_ha1(Algorithm.SHA256, username, realm, password)
        account.password_changed_at = now
        return await self.add(account)


class VoicePrompts(TenantRepository[VoicePrompt]):
    table = VoicePrompt
    noun = "voice prompt"

    async def audio(self, prompt_id: str) -> tuple[VoicePrompt, bytes]:
        """The prompt and its WAV bytes (the one query that loads them)."""
        row = await self.first(
            self.select().where(VoicePrompt.id == prompt_id).options(undefer(VoicePrompt.audio))
        )
        if row is None:
            raise NotFound(f"voice prompt {prompt_id} not found")
        return row, row.audio


class CallRecords(TenantRepository[CallRecord]):
    table = CallRecord
    noun = "call record"

    async def by_call_id(self, call_id: str) -> CallRecord | None:
        """The latest record of the SIP Call-ID `call_id`."""
        return await self.first(
            self.select().where(CallRecord.call_id == call_id)
            .order_by(CallRecord.started_at.desc())
        )

    async def for_contact(self, contact_id: str) -> list[CallRecord]:
        return await self.all(
            self.select().where(CallRecord.contact_id == contact_id)
            .order_by(CallRecord.started_at, CallRecord.id)
        )

    async def for_customer(self, customer_id: str, limit: int = 100) -> list[CallRecord]:
        """The customer's calls, newest first."""
        return await self.all(
            self.select().where(CallRecord.customer_id == customer_id)
            .order_by(CallRecord.started_at.desc(), CallRecord.id).limit(limit)
        )

    async def between(self, start: datetime, end: datetime, limit: int = 1000) -> list[CallRecord]:
        """Calls started in [start, end), oldest first."""
        return await self.all(
            self.select().where(CallRecord.started_at >= start, CallRecord.started_at < end)
            .order_by(CallRecord.started_at, CallRecord.id).limit(limit)
        )


class CallbackRequests(TenantRepository[CallbackRequest]):
    table = CallbackRequest
    noun = "callback request"

    async def due(self, now: datetime, limit: int = 100) -> list[CallbackRequest]:
        """Pending requests whose time has come (or that asked for none), oldest first."""
        statement = self.select().where(
            CallbackRequest.state == "pending",
            or_(CallbackRequest.due_at.is_(None), CallbackRequest.due_at <= now),
        )
        return await self.all(statement.order_by(CallbackRequest.created_at).limit(limit))

    async def for_customer(self, customer_id: str) -> list[CallbackRequest]:
        return await self.all(
            self.select().where(CallbackRequest.customer_id == customer_id)
            .order_by(CallbackRequest.created_at.desc())
        )
