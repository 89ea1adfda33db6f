"""The audit trail of changes to who a customer is: merges and splits."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import CheckConstraint, ForeignKey, Index, String
from sqlalchemy.orm import Mapped, mapped_column

from omnicc.store.tables.accounts import TenantOwned
from omnicc.store.tables.base import ID_LENGTH, Base, JsonObject, choice, created_column, id_column

CUSTOMER_CHANGES = ("merge", "split")


class CustomerChange(TenantOwned, Base):
    """One merge or split: who did it, when, and every row it moved (`moved` maps a table
    name to the ids), so a later split can put back what a merge brought in.

    `customer_id` is the customer that kept (merge) or gave up (split) the rows; `other_id`
    the one absorbed (merge) or made (split). Neither is a foreign key: the trail outlives them.
    """

    __tablename__ = "customer_changes"
    __table_args__ = (
        CheckConstraint(choice("kind", CUSTOMER_CHANGES), name="kind"),
        Index("ix_customer_changes_customer", "tenant_id", "customer_id"),
        Index("ix_customer_changes_other", "tenant_id", "other_id"),
    )

    id: Mapped[str] = id_column()
    kind: Mapped[str] = mapped_column(String(16))
    customer_id: Mapped[str] = mapped_column(String(ID_LENGTH))
    other_id: Mapped[str] = mapped_column(String(ID_LENGTH))
    actor: Mapped[str] = mapped_column(String(200))
    """Who: "user:<id>" for a person, "rule:<name>" for an automatic merge."""
    reason: Mapped[str] = mapped_column(String(500), default="")
    moved: Mapped[dict[str, Any]] = mapped_column(JsonObject, default=dict)
    reverted_by: Mapped[str | None] = mapped_column(
        String(ID_LENGTH), ForeignKey("customer_changes.id", ondelete="SET NULL"))
    """The split that undid this merge."""
    created_at: Mapped[datetime] = created_column()
