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
from omnicc.store.tables.crm import (
    ClientContact,
    ClientNotification,
    CrmConnector,
    CrmPush,
    EventCursor,
)
from omnicc.store.tables.customers import CustomerChange
from omnicc.store.tables.email import EmailMailbox, EmailMessage, EmailTicket
from omnicc.store.tables.events import Event, WebhookDelivery, WebhookSubscription
from omnicc.store.tables.messaging import MessagingAccount, MessagingMessage, MessagingThread
from omnicc.store.tables.reports import (
    ReportAgentStatus,
    ReportContact,
    ReportCursor,
    ReportDay,
    ReportInterval,
    ReportSchedule,
    ReportSend,
)
from omnicc.store.tables.routing import (
    Agent,
    BusinessHours,
    CannedResponse,
    Queue,
    RoutingPolicy,
    Skill,
    WrapUpCode,
)
from omnicc.store.tables.voice import (
    CallbackRequest,
    CallRecord,
    IvrFlow,
    SipAccount,
    VoiceNumber,
    VoicePrompt,
)
from omnicc.store.tables.wfm import WfmSchedule, WfmShift

metadata = Base.metadata

__all__ = [
    "OPEN_TASK_PHASES",
    "ROLES",
    "Agent",
    "ApiToken",
    "Attachment",
    "Base",
    "BusinessHours",
    "CallRecord",
    "CallbackRequest",
    "CannedResponse",
    "ClientContact",
    "ClientNotification",
    "Contact",
    "Conversation",
    "CrmConnector",
    "CrmPush",
    "Customer",
    "CustomerChange",
    "EmailMailbox",
    "EmailMessage",
    "EmailTicket",
    "Event",
    "EventCursor",
    "Identity",
    "IvrFlow",
    "Message",
    "MessagingAccount",
    "MessagingMessage",
    "MessagingThread",
    "Queue",
    "ReportAgentStatus",
    "ReportContact",
    "ReportCursor",
    "ReportDay",
    "ReportInterval",
    "ReportSchedule",
    "ReportSend",
    "RoutingPolicy",
    "SipAccount",
    "Skill",
    "Task",
    "Tenant",
    "User",
    "VoiceNumber",
    "VoicePrompt",
    "WebhookDelivery",
    "WebhookSubscription",
    "WfmSchedule",
    "WfmShift",
    "WrapUpCode",
    "metadata",
    "utc_now",
]
