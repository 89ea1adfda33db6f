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
from omnicc.store.repositories.events import (
    Events,
    NewEvent,
    WebhookDeliveries,
    WebhookSubscriptions,
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

__all__ = [
    "Agents",
    "ApiTokens",
    "Attachments",
    "BusinessHoursRepository",
    "CannedResponses",
    "Contacts",
    "Conversations",
    "Customers",
    "Events",
    "Identities",
    "Messages",
    "NewEvent",
    "Queues",
    "RoutingPolicies",
    "Skills",
    "Tasks",
    "TenantRepository",
    "Tenants",
    "Users",
    "WebhookDeliveries",
    "WebhookSubscriptions",
    "WrapUpCodes",
    "authenticate_api_token",
    "take_sequence",
]
