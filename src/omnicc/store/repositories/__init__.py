"""Repositories: each made with a session and a tenant id, each query filtered by that tenant."""

from omnicc.store.repositories.accounts import ApiTokens, Tenants, Users, authenticate_api_token
from omnicc.store.repositories.base import TenantRepository, take_sequence
from omnicc.store.repositories.conversations import (
    Attachments,
    Contacts,
    Conversations,
    Customers,
    Identities,
    Messages,
    Tasks,
)
from omnicc.store.repositories.email import EmailMailboxes, EmailMessages, EmailTickets
from omnicc.store.repositories.events import (
    Events,
    NewEvent,
    WebhookDeliveries,
    WebhookSubscriptions,
)
from omnicc.store.repositories.messaging import (
    MessagingAccounts,
    MessagingMessages,
    MessagingThreads,
    find_messaging_account,
)
from omnicc.store.repositories.routing import (
    Agents,
    BusinessHoursRepository,
    CannedResponses,
    Queues,
    RoutingPolicies,
    Skills,
    WrapUpCodes,
)
from omnicc.store.repositories.voice import (
    CallbackRequests,
    CallRecords,
    IvrFlows,
    SipAccounts,
    VoiceNumbers,
    VoicePrompts,
    find_number,
    find_sip_account,
    sip_ha1,
)

__all__ = [
    "Agents",
    "ApiTokens",
    "Attachments",
    "BusinessHoursRepository",
    "CallRecords",
    "CallbackRequests",
    "CannedResponses",
    "Contacts",
    "Conversations",
    "Customers",
    "EmailMailboxes",
    "EmailMessages",
    "EmailTickets",
    "Events",
    "Identities",
    "IvrFlows",
    "Messages",
    "MessagingAccounts",
    "MessagingMessages",
    "MessagingThreads",
    "NewEvent",
    "Queues",
    "RoutingPolicies",
    "SipAccounts",
    "Skills",
    "Tasks",
    "TenantRepository",
    "Tenants",
    "Users",
    "VoiceNumbers",
    "VoicePrompts",
    "WebhookDeliveries",
    "WebhookSubscriptions",
    "WrapUpCodes",
    "authenticate_api_token",
    "find_messaging_account",
    "find_number",
    "find_sip_account",
    "sip_ha1",
    "take_sequence",
]
