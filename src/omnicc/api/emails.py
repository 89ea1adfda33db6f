"""Email over HTTP: the agent's side of an email conversation (its emails, sanitised; reply;
done) and the administration of mailboxes.

A mailbox's IMAP and SMTP passwords are written, never read back: the API says only whether
one is set. After a change the email service restarts that mailbox's reader.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Final, Literal

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, ConfigDict, Field

from omnicc.api.admin.changes import changing, reading
from omnicc.api.admin.channel_sources import get_source, list_sources, save_source
from omnicc.api.auth import require_permission
from omnicc.api.center import tenant_runtime
from omnicc.api.desk import Transfer, agent_of, check_conversation_access, desk_state
from omnicc.app.emails import EmailDesk
from omnicc.app.permissions import Permission
from omnicc.app.principals import Principal
from omnicc.channels.email.service import EmailService
from omnicc.store.repositories import EmailMailboxes
from omnicc.store.tables import EmailMailbox

router = APIRouter(tags=["email"])

Handler = Annotated[Principal, Depends(require_permission(Permission.HANDLE_CONTACTS))]
Admin = Annotated[Principal, Depends(require_permission(Permission.CONFIGURE_TENANT))]
Security = Literal["tls", "starttls", "plain"]
ADDRESS: Final = r"^[^@\s<>]+@[^@\s<>]+$"
HOST: Final = r"^[A-Za-z0-9.:\[\]-]{1,255}$"

NOT_FOUND: dict[int | str, dict[str, Any]] = {404: {"description": "No such row in the tenant."}}
CHANGE_ERRORS: dict[int | str, dict[str, Any]] = {
    404: {"description": "No such mailbox in the tenant."},
    409: {"description": "A mailbox with this name exists already."},
    422: {"description": "Invalid input; the problem lists each field at fault."},
}


def email_service(request: Request) -> EmailService:
    service: EmailService = request.app.state.email
    return service


async def email_desk(request: Request, principal: Principal) -> EmailDesk:
    return await email_service(request).desk(principal.tenant_id)


# --- the agent ---------------------------------------------------------------------------------

class ReplyIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    text: str = Field(min_length=1, max_length=100_000)
    id: str | None = Field(default=None, max_length=128, description="Idempotency key.")


@router.get("/api/emails/conversations/{conversation_id}",
            summary="The emails of a conversation (HTML sanitised) and its ticket",
            responses=NOT_FOUND)
async def thread(conversation_id: str, request: Request, principal: Handler) -> dict[str, Any]:
    await check_conversation_access(request, principal, conversation_id)
    return await (await email_desk(request, principal)).thread(conversation_id)


@router.post("/api/emails/conversations/{conversation_id}/replies", status_code=201,
             summary="Answer the customer by email, in the thread", responses=NOT_FOUND)
async def reply(conversation_id: str, body: ReplyIn, request: Request,
                principal: Handler) -> dict[str, Any]:
    agent_id = await agent_of(request, principal)
    desk = await email_desk(request, principal)
    return await desk.reply(agent_id, conversation_id, body.text, body.id)


@router.post("/api/emails/conversations/{conversation_id}/finish",
             summary="Done with the email for now (wrap-up follows when the queue asks)",
             responses=NOT_FOUND)
async def finish(conversation_id: str, request: Request, principal: Handler) -> dict[str, str]:
    agent_id = await agent_of(request, principal)
    await (await email_desk(request, principal)).finish(agent_id, conversation_id)
    return {"status": "finished"}


@router.post("/api/emails/conversations/{conversation_id}/transfer",
             summary="Hand the email to a queue or a colleague; answers the desk's state",
             responses=NOT_FOUND)
async def transfer(conversation_id: str, body: Transfer, request: Request,
                   principal: Handler) -> dict[str, Any]:
    agent_id = await agent_of(request, principal)
    await (await email_desk(request, principal)).transfer(
        agent_id, conversation_id, queue_id=body.queue_id, to_agent_id=body.agent_id)
    return desk_state(await tenant_runtime(request, principal), agent_id)


# --- mailboxes ---------------------------------------------------------------------------------

class MailboxIn(BaseModel):
    """A mailbox; the passwords may be left out of a change to keep them."""

    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1, max_length=100)
    address: str = Field(pattern=ADDRESS, max_length=320,
                         description="The From address of replies and acknowledgements.")
    queue_id: str = Field(max_length=36, description="Where its emails are routed.")
    imap_host: str = Field(pattern=HOST)
    imap_port: int = Field(default=993, ge=1, le=65535)
    imap_security: Security = "tls"
    imap_username: str = Field(min_length=1, max_length=320)
    imap_password: str | None = Field(default=None, min_length=1, max_length=500)
    imap_folder: str = Field(default="INBOX", min_length=1, max_length=200)
    smtp_host: str = Field(pattern=HOST)
    smtp_port: int = Field(default=465, ge=1, le=65535)
    smtp_security: Security = "tls"
    smtp_username: str = Field(default="", max_length=320)
    smtp_password: str | None = Field(default=None, max_length=500)
    auto_acknowledge: bool = True
    first_response_s: int = Field(default=8 * 3600, ge=60, le=30 * 24 * 3600,
                                  description="First-response target, business seconds.")
    poll_interval_s: int = Field(default=60, ge=5, le=3600,
                                 description="Used when the server has no IDLE.")
    is_enabled: bool = True


class MailboxOut(BaseModel):
    id: str
    name: str
    address: str
    queue_id: str | None
    imap_host: str
    imap_port: int
    imap_security: str
    imap_username: str
    has_imap_password: bool
    imap_folder: str
    smtp_host: str
    smtp_port: int
    smtp_security: str
    smtp_username: str
    has_smtp_password: bool
    auto_acknowledge: bool
    first_response_s: int
    poll_interval_s: int
    is_enabled: bool
    last_uid: int
    last_error: str | None
    last_checked_at: datetime | None


def _out(row: EmailMailbox) -> MailboxOut:
    return MailboxOut(
        id=row.id, name=row.name, address=row.address, queue_id=row.queue_id,
        imap_host=row.imap_host, imap_port=row.imap_port, imap_security=row.imap_security,
        imap_username=row.imap_username, has_imap_password=bool(row.imap_password),
        imap_folder=row.imap_folder, smtp_host=row.smtp_host, smtp_port=row.smtp_port,
        smtp_security=row.smtp_security, smtp_username=row.smtp_username,
        has_smtp_password=bool(row.smtp_password), auto_acknowledge=row.auto_acknowledge,
        first_response_s=row.first_response_s, poll_interval_s=row.poll_interval_s,
        is_enabled=row.is_enabled, last_uid=row.last_uid, last_error=row.last_error,
        last_checked_at=row.last_checked_at)


def _apply(row: EmailMailbox, body: MailboxIn) -> None:
    for key, value in body.model_dump(exclude={"imap_password", "smtp_password"}).items():
        setattr(row, key, value)
    if body.imap_password is not None:
        row.imap_password = body.imap_password
    if body.smtp_password is not None:
        row.smtp_password = body.smtp_password
    row.address = row.address.strip().lower()


async def _save(request: Request, principal: Principal, body: MailboxIn,
                mailbox_id: str | None) -> MailboxOut:
    return await save_source(
        request, principal, EmailMailboxes, body, row_id=mailbox_id,
        new=lambda: EmailMailbox(imap_password="", smtp_password=""), apply=_apply, out=_out,
        name_column=EmailMailbox.name, owner="mailbox")


ADMIN = "/api/admin/email/mailboxes"


@router.get(ADMIN, response_model=list[MailboxOut], summary="List mailboxes (no passwords)")
async def list_mailboxes(request: Request, principal: Admin) -> list[MailboxOut]:
    return await list_sources(request, principal, EmailMailboxes, EmailMailbox.name, _out)


@router.get(ADMIN + "/{mailbox_id}", response_model=MailboxOut, responses=NOT_FOUND,
            summary="Get a mailbox (no passwords)")
async def get_mailbox(mailbox_id: str, request: Request, principal: Admin) -> MailboxOut:
    return await get_source(request, principal, EmailMailboxes, mailbox_id, _out)


@router.post(ADMIN, status_code=201, response_model=MailboxOut, responses=CHANGE_ERRORS,
             summary="Add a mailbox to read and send from")
async def create_mailbox(body: MailboxIn, request: Request, principal: Admin) -> MailboxOut:
    out = await _save(request, principal, body, None)
    await email_service(request).refresh()
    return out


@router.put(ADMIN + "/{mailbox_id}", response_model=MailboxOut, responses=CHANGE_ERRORS,
            summary="Change a mailbox (left-out passwords are kept)")
async def update_mailbox(mailbox_id: str, body: MailboxIn, request: Request,
                         principal: Admin) -> MailboxOut:
    out = await _save(request, principal, body, mailbox_id)
    await email_service(request).refresh()
    return out


@router.delete(ADMIN + "/{mailbox_id}", status_code=204, responses=NOT_FOUND,
               summary="Remove a mailbox and the record of its emails")
async def delete_mailbox(mailbox_id: str, request: Request, principal: Admin) -> None:
    async with changing(request, principal, affects_routing=False) as session:
        await EmailMailboxes(session, principal.tenant_id).delete(mailbox_id)
    await email_service(request).refresh()


@router.post(ADMIN + "/{mailbox_id}/import", responses=NOT_FOUND,
             summary="Read the whole folder again (emails already stored are skipped)")
async def import_mailbox(mailbox_id: str, request: Request,
                         principal: Admin) -> dict[str, int]:
    async with reading(request) as session:
        await EmailMailboxes(session, principal.tenant_id).get(mailbox_id)
    new = await email_service(request).import_mailbox(principal.tenant_id, mailbox_id)
    return {"new": new}
