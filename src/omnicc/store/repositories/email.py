"""Mailboxes, email tickets and email messages of one tenant."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from datetime import datetime

from sqlalchemy import func, select

from omnicc.store.repositories.base import TenantRepository
from omnicc.store.tables import EmailMailbox, EmailMessage, EmailTicket


class EmailMailboxes(TenantRepository[EmailMailbox]):
    table = EmailMailbox
    noun = "mailbox"

    async def enabled(self) -> list[EmailMailbox]:
        statement = self.select().where(EmailMailbox.is_enabled.is_(True))
        return await self.all(statement.order_by(EmailMailbox.name))


class EmailTickets(TenantRepository[EmailTicket]):
    table = EmailTicket
    noun = "email ticket"

    async def by_reference(self, reference: str) -> EmailTicket | None:
        return await self.first(self.select().where(EmailTicket.reference == reference.upper()))

    async def of_conversation(self, conversation_id: str) -> EmailTicket | None:
        return await self.first(
            self.select().where(EmailTicket.conversation_id == conversation_id))

    async def opened_by_each(self, addresses: Collection[str],
                             since: datetime) -> dict[str, int]:
        """How many tickets each address opened since then, in one query (an address with
        none is left out)."""
        if not addresses:
            return {}
        statement = (select(EmailTicket.customer_address, func.count())
                     .where(EmailTicket.tenant_id == self.tenant_id,
                            EmailTicket.customer_address.in_(list(addresses)),
                            EmailTicket.created_at >= since)
                     .group_by(EmailTicket.customer_address))
        return {address: int(n) for address, n in (await self.session.execute(statement)).all()}

    async def awaiting_first_response(self) -> list[EmailTicket]:
        """Tickets with an open task and no answer yet: what the service level watches."""
        statement = self.select().where(EmailTicket.first_responded_at.is_(None),
                                        EmailTicket.first_response_due_at.is_not(None),
                                        EmailTicket.task_id.is_not(None))
        return await self.all(statement.order_by(EmailTicket.first_response_due_at))


class EmailMessages(TenantRepository[EmailMessage]):
    table = EmailMessage
    noun = "email"

    async def by_dedup_key(self, mailbox_id: str, dedup_key: str) -> EmailMessage | None:
        return await self.first(self.select().where(EmailMessage.mailbox_id == mailbox_id,
                                                    EmailMessage.dedup_key == dedup_key))

    async def by_message_id_hashes(self, hashes: Sequence[str]) -> list[EmailMessage]:
        """The stored emails (either direction) with one of these Message-ID hashes."""
        if not hashes:
            return []
        statement = self.select().where(EmailMessage.message_id_hash.in_(list(hashes)))
        return await self.all(statement.order_by(EmailMessage.created_at.desc()))

    async def of_conversation(self, conversation_id: str) -> list[EmailMessage]:
        statement = self.select().where(EmailMessage.conversation_id == conversation_id)
        return await self.all(statement.order_by(EmailMessage.created_at, EmailMessage.id))

    async def pending(self) -> list[EmailMessage]:
        """Outbound emails not sent yet (after a restart, or waiting for a retry)."""
        statement = self.select().where(EmailMessage.direction == "outbound",
                                        EmailMessage.status == "pending")
        return await self.all(statement.order_by(EmailMessage.created_at))

    async def thread_message_ids(self, conversation_id: str) -> list[str]:
        """Every Message-ID of the conversation's emails, oldest first: a reply's
        References."""
        statement = (select(EmailMessage.header_message_id)
                     .where(EmailMessage.tenant_id == self.tenant_id,
                            EmailMessage.conversation_id == conversation_id,
                            EmailMessage.header_message_id != "",
                            EmailMessage.kind.in_(("customer", "reply", "acknowledgement")))
                     .order_by(EmailMessage.created_at, EmailMessage.id))
        return [value for value in (await self.session.execute(statement)).scalars()]


__all__ = ["EmailMailboxes", "EmailMessages", "EmailTickets"]
