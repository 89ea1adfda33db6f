"""Messaging accounts, threads and messages of one tenant."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from omnicc.store.repositories.base import TenantRepository
from omnicc.store.tables import MessagingAccount, MessagingMessage, MessagingThread


async def find_messaging_account(session: AsyncSession, account_id: str) -> MessagingAccount | None:
    """The account a provider's webhook names in its URL, of any tenant."""
    return await session.get(MessagingAccount, account_id)


class MessagingAccounts(TenantRepository[MessagingAccount]):
    table = MessagingAccount
    noun = "messaging account"


class MessagingThreads(TenantRepository[MessagingThread]):
    table = MessagingThread
    noun = "messaging thread"

    async def of_peer(self, account_id: str, peer: str) -> MessagingThread | None:
        return await self.first(self.select().where(MessagingThread.account_id == account_id,
                                                    MessagingThread.peer == peer))

    async def of_conversation(self, conversation_id: str) -> MessagingThread | None:
        return await self.first(self.select().where(
            MessagingThread.conversation_id == conversation_id)
            .order_by(MessagingThread.created_at.desc()))


class MessagingMessages(TenantRepository[MessagingMessage]):
    table = MessagingMessage
    noun = "messaging message"

    async def by_provider_id(self, account_id: str,
                             provider_message_id: str) -> MessagingMessage | None:
        return await self.first(self.select().where(
            MessagingMessage.account_id == account_id,
            MessagingMessage.provider_message_id == provider_message_id))

    async def of_conversation(self, conversation_id: str) -> list[MessagingMessage]:
        return await self.all(self.select().where(
            MessagingMessage.conversation_id == conversation_id)
            .order_by(MessagingMessage.created_at, MessagingMessage.id))

    async def due(self, at: datetime) -> list[MessagingMessage]:
        """The outbox: pending messages whose next attempt is due, oldest first."""
        return await self.all(self.select().where(
            MessagingMessage.status == "pending",
            (MessagingMessage.next_attempt_at.is_(None))
            | (MessagingMessage.next_attempt_at <= at))
            .order_by(MessagingMessage.created_at))

    async def next_due_at(self) -> datetime | None:
        statement = select(MessagingMessage.next_attempt_at).where(
            MessagingMessage.tenant_id == self.tenant_id, MessagingMessage.status == "pending",
            MessagingMessage.next_attempt_at.is_not(None)).order_by(
            MessagingMessage.next_attempt_at).limit(1)
        return (await self.session.execute(statement)).scalar_one_or_none()
