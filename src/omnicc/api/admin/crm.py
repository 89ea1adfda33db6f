"""Administration of the CRM connector (lookup and push), the client contact of each queue
(client notifications), and the two outboxes: what failed, and sending it again.

The CRM's auth value and the push's signing secret are write-only: answers say `has_auth_value`
and `has_push_secret`. A push secret is made when the push is first enabled without one and
shown once, in that answer (like a webhook's).
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query, Request, Response
from pydantic import BaseModel, Field, StringConstraints
from sqlalchemy import select

from omnicc.api.admin.changes import changing, reading, referenced
from omnicc.api.admin.routing import CHANGE_ERRORS, NOT_FOUND
from omnicc.api.auth import require_permission
from omnicc.app.configuration import Section
from omnicc.app.crm import (
    ClientContactSettings,
    CrmDirectory,
    CrmSettings,
    blank_connector,
    save_client_contact,
    save_connector,
)
from omnicc.app.customers import normal_identity
from omnicc.app.permissions import Permission
from omnicc.app.principals import Principal
from omnicc.core.errors import InvalidConfiguration, NotFound
from omnicc.store.repositories import Queues
from omnicc.store.tables import ClientContact, ClientNotification, CrmConnector, CrmPush, utc_now

router = APIRouter(prefix="/api/admin", tags=["crm"])

Admin = Annotated[Principal, Depends(require_permission(Permission.CONFIGURE_TENANT))]
Text = Annotated[str, StringConstraints(strip_whitespace=True, max_length=300)]
MAX_LISTED = 200


def directory_of(request: Request) -> CrmDirectory:
    directory: CrmDirectory = request.app.state.crm_directory
    return directory


# --- the connector -------------------------------------------------------------------------------

class ConnectorOut(BaseModel):
    lookup_enabled: bool
    lookup_url: str
    lookup_method: str
    lookup_body: str
    auth_header: str
    has_auth_value: bool
    mapping: dict[str, Any]
    timeout_s: float
    cache_ttl_s: int
    push_enabled: bool
    push_url: str
    has_push_secret: bool
    push_secret: str | None = Field(default=None, description="Only when just made.")

    @classmethod
    def of(cls, row: CrmConnector, secret: str | None = None) -> ConnectorOut:
        return cls(lookup_enabled=row.lookup_enabled, lookup_url=row.lookup_url,
                   lookup_method=row.lookup_method, lookup_body=row.lookup_body,
                   auth_header=row.auth_header, has_auth_value=bool(row.auth_value),
                   mapping=dict(row.mapping), timeout_s=row.timeout_s,
                   cache_ttl_s=row.cache_ttl_s, push_enabled=row.push_enabled,
                   push_url=row.push_url, has_push_secret=bool(row.push_secret),
                   push_secret=secret)


@router.get("/crm", response_model=ConnectorOut, summary="The CRM connector")
async def get_connector(request: Request, principal: Admin) -> ConnectorOut:
    async with reading(request) as session:
        row = await session.get(CrmConnector, principal.tenant_id)
    return ConnectorOut.of(row or blank_connector(principal.tenant_id))


@router.put("/crm", response_model=ConnectorOut, responses=CHANGE_ERRORS,
            summary="Set the CRM connector (lookup and push)")
async def put_connector(body: CrmSettings, request: Request, principal: Admin) -> ConnectorOut:
    async with changing(request, principal, affects_routing=False) as session:
        row, made = await save_connector(session, principal.tenant_id, body)
        answer = ConnectorOut.of(row, made)
    directory_of(request).cache.forget(principal.tenant_id)
    return answer


class LookupTrial(Section):
    phone: Text = ""
    email: Text = ""


@router.post("/crm/test-lookup", summary="Ask the CRM now with the saved connector (nothing "
             "cached or written)")
async def test_lookup(body: LookupTrial, request: Request, principal: Admin) -> dict[str, Any]:
    async with reading(request) as session:
        row = await session.get(CrmConnector, principal.tenant_id)
    if row is None or not row.lookup_url:
        raise NotFound("no CRM lookup is configured")
    phone = normal_identity("phone", body.phone) if body.phone else ""
    email = normal_identity("email", body.email) if body.email else ""
    return await directory_of(request).test(row, phone, email)


# --- the push outbox -----------------------------------------------------------------------------

State = Literal["pending", "delivered", "failed"]


class PushOut(BaseModel):
    id: str
    task_id: str
    idempotency_key: str
    state: State
    attempts: int
    next_attempt_at: datetime
    last_status_code: int | None
    last_error: str | None
    created_at: datetime
    delivered_at: datetime | None
    payload: dict[str, Any]


@router.get("/crm/pushes", response_model=list[PushOut],
            summary="Finished contacts pushed to the CRM, newest first")
async def list_pushes(request: Request, principal: Admin,
                      state: Annotated[State | None, Query()] = None) -> list[PushOut]:
    statement = select(CrmPush).where(CrmPush.tenant_id == principal.tenant_id)
    if state is not None:
        statement = statement.where(CrmPush.state == state)
    async with reading(request) as session:
        rows = (await session.scalars(statement.order_by(CrmPush.created_at.desc(),
                                                         CrmPush.id).limit(MAX_LISTED))).all()
        return [PushOut.model_validate(row, from_attributes=True) for row in rows]


@router.post("/crm/pushes/{push_id}/retry", status_code=204, responses=NOT_FOUND,
             summary="Try a failed push again (same idempotency key)")
async def retry_push(push_id: str, request: Request, principal: Admin) -> Response:
    async with changing(request, principal, affects_routing=False) as session:
        row = (await session.scalars(select(CrmPush).where(
            CrmPush.tenant_id == principal.tenant_id, CrmPush.id == push_id))).first()
        if row is None:
            raise NotFound(f"push {push_id} not found")
        if row.state != "delivered":
            row.state, row.attempts, row.next_attempt_at = "pending", 0, utc_now()
    return Response(status_code=204)


# --- client contacts and their notifications -----------------------------------------------------

class ClientContactIn(ClientContactSettings):
    queue_id: str | None = Field(default=None, max_length=36, description=(
        "The queue (required on POST; on PUT the address names it)."))


class ClientContactOut(ClientContactIn):
    id: str = Field(description="The queue's id: a queue has at most one client contact.")
    queue_id: str
    queue_name: str


@router.get("/client-contacts", response_model=list[ClientContactOut],
            summary="Each queue's client contact")
async def list_client_contacts(request: Request, principal: Admin) -> list[ClientContactOut]:
    async with reading(request) as session:
        names = {queue.id: queue.name
                 for queue in await Queues(session, principal.tenant_id).list_all()}
        rows = (await session.scalars(select(ClientContact).where(
            ClientContact.tenant_id == principal.tenant_id))).all()
    return sorted((_contact_out(row, names.get(row.queue_id, "")) for row in rows),
                  key=lambda out: out.queue_name)


def _contact_out(row: ClientContact, queue_name: str) -> ClientContactOut:
    return ClientContactOut(id=row.queue_id, queue_id=row.queue_id, queue_name=queue_name,
                            email=row.email, is_enabled=row.is_enabled,
                            urgent_priority=row.urgent_priority,
                            urgent_codes=list(row.urgent_codes),
                            batch_minutes=row.batch_minutes)


@router.post("/client-contacts", status_code=201, response_model=ClientContactOut,
             responses=CHANGE_ERRORS, summary="Set a queue's client contact (body names the queue)")
async def post_client_contact(body: ClientContactIn, request: Request,
                              principal: Admin) -> ClientContactOut:
    if not body.queue_id:
        raise InvalidConfiguration("client contact: queue_id is required")
    return await _save_client_contact(body.queue_id, body, request, principal)


@router.put("/client-contacts/{queue_id}", response_model=ClientContactOut,
            responses=CHANGE_ERRORS, summary="Set a queue's client contact")
async def put_client_contact(queue_id: str, body: ClientContactIn, request: Request,
                             principal: Admin) -> ClientContactOut:
    if body.queue_id not in (None, queue_id):
        raise InvalidConfiguration("client contact: queue_id differs from the address's")
    return await _save_client_contact(queue_id, body, request, principal)


async def _save_client_contact(queue_id: str, body: ClientContactIn, request: Request,
                               principal: Admin) -> ClientContactOut:
    email = normal_identity("email", body.email)
    async with changing(request, principal, affects_routing=False) as session:
        queue = await referenced(Queues(session, principal.tenant_id), queue_id,
                                 "client contact")
        row = await save_client_contact(session, principal.tenant_id, queue.id, body, email)
        return _contact_out(row, queue.name)


@router.delete("/client-contacts/{queue_id}", status_code=204, responses=NOT_FOUND,
               summary="Stop notifying a queue's client contact")
async def delete_client_contact(queue_id: str, request: Request, principal: Admin) -> Response:
    async with changing(request, principal, affects_routing=False) as session:
        row = await session.get(ClientContact, queue_id)
        if row is None or row.tenant_id != principal.tenant_id:
            raise NotFound(f"no client contact for queue {queue_id}")
        await session.delete(row)
    return Response(status_code=204)


NotificationState = Literal["pending", "sent", "failed"]


class NotificationOut(BaseModel):
    id: str
    queue_id: str | None
    task_id: str
    recipient: str
    is_urgent: bool
    state: NotificationState
    attempts: int
    next_attempt_at: datetime
    message_id: str | None
    last_error: str | None
    created_at: datetime
    sent_at: datetime | None


@router.get("/client-notifications", response_model=list[NotificationOut],
            summary="Emails to client contacts, newest first")
async def list_notifications(
        request: Request, principal: Admin,
        state: Annotated[NotificationState | None, Query()] = None) -> list[NotificationOut]:
    statement = select(ClientNotification).where(
        ClientNotification.tenant_id == principal.tenant_id)
    if state is not None:
        statement = statement.where(ClientNotification.state == state)
    async with reading(request) as session:
        rows = (await session.scalars(statement.order_by(
            ClientNotification.created_at.desc(), ClientNotification.id)
            .limit(MAX_LISTED))).all()
        return [NotificationOut.model_validate(row, from_attributes=True) for row in rows]


@router.post("/client-notifications/{notification_id}/retry", status_code=204,
             responses=NOT_FOUND, summary="Send a failed notification again")
async def retry_notification(notification_id: str, request: Request,
                             principal: Admin) -> Response:
    async with changing(request, principal, affects_routing=False) as session:
        row = (await session.scalars(select(ClientNotification).where(
            ClientNotification.tenant_id == principal.tenant_id,
            ClientNotification.id == notification_id))).first()
        if row is None:
            raise NotFound(f"notification {notification_id} not found")
        if row.state == "failed":
            row.state, row.attempts, row.next_attempt_at = "pending", 0, utc_now()
    return Response(status_code=204)
