"""The store's tables (SQLAlchemy 2 declarative models), one module per group of nouns."""

from omnicc.store.tables.accounts import ROLES, ApiToken, Tenant, User
from omnicc.store.tables.base import Base, utc_now
from omnicc.store.tables.conversations import (
    OPEN_TASK_PHASES,
    Attachment,
    Contact,
    Conversation,
    Customer,
    Identity,
    Message,
    Task,
)
from omnicc.store.tables.events import Event, WebhookDelivery, WebhookSubscription
from omnicc.store.tables.routing import (
    Agent,
    BusinessHours,
    CannedResponse,
    Queue,
    RoutingPolicy,
    Skill,
    WrapUpCode,
)

metadata = Base.metadata

__all__ = [
    "OPEN_TASK_PHASES",
    "ROLES",
    "Agent",
    "ApiToken",
    "Attachment",
    "Base",
    "BusinessHours",
    "CannedResponse",
    "Contact",
    "Conversation",
    "Customer",
    "Event",
    "Identity",
    "Message",
    "Queue",
    "RoutingPolicy",
    "Skill",
    "Task",
    "Tenant",
    "User",
    "WebhookDelivery",
    "WebhookSubscription",
    "WrapUpCode",
    "metadata",
    "utc_now",
]
