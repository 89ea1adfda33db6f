"""Administration of the voice channel: IVR flows, the numbers that run them, agents' SIP
accounts and uploaded prompts.

A flow is checked whole before it is saved (its graph, and its references to the tenant's
queues, business hours and prompt files): a 422 lists every problem with where it is. A SIP
password is shown once, when it is set; only its digest hashes are kept.
"""

from __future__ import annotations

import hashlib
import io
import secrets
import struct
import wave
from datetime import UTC, datetime
from typing import Annotated, Any, Final

from fastapi import APIRouter, Depends, Query, Request, Response
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.datastructures import UploadFile

from omnicc.api.admin.changes import changing, ensure_free, in_use, reading, referenced
from omnicc.api.auth import require_permission
from omnicc.api.problems import ProblemResponse, problem, problem_type
from omnicc.app.permissions import Permission
from omnicc.app.principals import Principal
from omnicc.app.recordings import recording_url
from omnicc.channels.voice.ivr import Flow, InvalidFlow, reference_problems
from omnicc.channels.voice.ivr.configuration import flows_using
from omnicc.core.errors import InvalidConfiguration
from omnicc.store.repositories import (
    Agents,
    BusinessHoursRepository,
    CallRecords,
    IvrFlows,
    Queues,
    SipAccounts,
    Tenants,
    VoiceNumbers,
    VoicePrompts,
)
from omnicc.store.tables import (
    CallRecord,
    IvrFlow,
    SipAccount,
    VoiceNumber,
    VoicePrompt,
    utc_now,
)

router = APIRouter(prefix="/api/admin/voice", tags=["voice administration"])

# Flows, numbers and prompts decide where calls go; SIP accounts are agents' logins.
VoiceAdmin = Annotated[Principal, Depends(require_permission(Permission.MANAGE_VOICE))]
AgentAdmin = Annotated[Principal, Depends(require_permission(Permission.MANAGE_AGENTS))]
Monitor = Annotated[Principal, Depends(require_permission(Permission.MONITOR_CONVERSATIONS))]
RowId = Annotated[str, Field(max_length=36)]
Name = Annotated[str, Field(min_length=1, max_length=100)]

NUMBER_PATTERN: Final = r"^(\+[1-9][0-9]{3,14}|[A-Za-z0-9][A-Za-z0-9._-]{0,63})$"
SIP_USER_PATTERN: Final = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"
MIN_SIP_PASSWORD: Final = 12
PROMPT_RATES: Final = (8000, 16000)
MAX_PROMPT_S: Final = 60
WAV_TYPES: Final = ("audio/wav", "audio/x-wav", "audio/wave", "audio/vnd.wave")

NOT_FOUND: dict[int | str, dict[str, Any]] = {404: {"description": "No such row in the tenant."}}
CHANGE_ERRORS: dict[int | str, dict[str, Any]] = {
    404: {"description": "No such row in the tenant."},
    409: {"description": "A duplicate name or number, or the row is in use."},
    422: {"description": "Invalid input; the problem lists each field at fault."},
}
PROMPT_UPLOAD: Final[dict[str, Any]] = {"requestBody": {"required": True, "content": {
    "multipart/form-data": {"schema": {
        "type": "object", "required": ["file"],
        "properties": {"file": {
            "type": "string", "format": "binary",
            "description": f"A WAV file: mono 16-bit PCM at 8 or 16 kHz, at most "
                           f"{MAX_PROMPT_S} s."}}}}}}}


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


def _invalid_flow(error: InvalidFlow, instance: str) -> ProblemResponse:
    """The 422 that lists every problem of a flow, each with where it is."""
    fields = ", ".join(p.field for p in error.problems[:5])
    return problem(422, type_=problem_type("invalid-flow"), title="Invalid IVR flow",
                   detail=f"{len(error.problems)} problem(s): {fields}", instance=instance,
                   errors=[p.as_json() for p in error.problems])


# --- IVR flows ---------------------------------------------------------------------------------

class FlowIn(Flow):
    """A flow and its name. References are ids: `queue_id`, `business_hours_id`, `file_id`."""

    name: Name


class FlowOut(FlowIn):
    id: str
    updated_at: datetime
    numbers: list[str] = Field(description="The numbers that run this flow.")


async def _flow_out(session: AsyncSession, tenant_id: str, row: IvrFlow) -> FlowOut:
    numbers = await VoiceNumbers(session, tenant_id).using_flow(row.id)
    return FlowOut.model_validate({**row.definition, "id": row.id, "name": row.name,
                                   "updated_at": row.updated_at,
                                   "numbers": [n.number for n in numbers]})


async def check_flow(session: AsyncSession, tenant_id: str, flow: Flow) -> None:
    """InvalidFlow listing the graph's problems and its unknown references."""
    queues = {q.id for q in await Queues(session, tenant_id).list_all()}
    hours = {h.id for h in await BusinessHoursRepository(session, tenant_id).list_all()}
    prompts = {p.id for p in await VoicePrompts(session, tenant_id).list_all()}
    problems = flow.problems() + reference_problems(
        flow, queue_ids=queues, business_hours_ids=hours, prompt_ids=prompts)
    if problems:
        raise InvalidFlow(problems)


def _definition(body: FlowIn) -> dict[str, Any]:
    return Flow.model_validate(body.model_dump(exclude={"name"})).as_json()


@router.get("/ivr-flows", response_model=list[FlowOut], summary="List IVR flows")
async def list_flows(request: Request, principal: VoiceAdmin) -> list[FlowOut]:
    async with reading(request) as session:
        flows = IvrFlows(session, principal.tenant_id)
        rows = await flows.all(flows.select().order_by(IvrFlow.name))
        return [await _flow_out(session, principal.tenant_id, row) for row in rows]


@router.get("/ivr-flows/{flow_id}", response_model=FlowOut, responses=NOT_FOUND,
            summary="Get an IVR flow")
async def get_flow(flow_id: str, request: Request, principal: VoiceAdmin) -> FlowOut:
    async with reading(request) as session:
        row = await IvrFlows(session, principal.tenant_id).get(flow_id)
        return await _flow_out(session, principal.tenant_id, row)


@router.post("/ivr-flows", status_code=201, response_model=FlowOut, responses=CHANGE_ERRORS,
             summary="Create an IVR flow (checked whole: graph and references)")
async def create_flow(body: FlowIn, request: Request,
                      principal: VoiceAdmin) -> FlowOut | Response:
    try:
        async with changing(request, principal, affects_routing=False) as session:
            flows = IvrFlows(session, principal.tenant_id)
            await ensure_free(flows, IvrFlow.name, body.name, "IVR flow")
            await check_flow(session, principal.tenant_id, body)
            row = await flows.add(IvrFlow(name=body.name, definition=_definition(body)))
            return await _flow_out(session, principal.tenant_id, row)
    except InvalidFlow as error:
        return _invalid_flow(error, request.url.path)


@router.put("/ivr-flows/{flow_id}", response_model=FlowOut, responses=CHANGE_ERRORS,
            summary="Change an IVR flow; calls already in it finish the version they started")
async def update_flow(flow_id: str, body: FlowIn, request: Request,
                      principal: VoiceAdmin) -> FlowOut | Response:
    try:
        async with changing(request, principal, affects_routing=False) as session:
            flows = IvrFlows(session, principal.tenant_id)
            row = await flows.get(flow_id)
            await ensure_free(flows, IvrFlow.name, body.name, "IVR flow", except_id=row.id)
            await check_flow(session, principal.tenant_id, body)
            row.name, row.definition, row.updated_at = body.name, _definition(body), utc_now()
            return await _flow_out(session, principal.tenant_id, await flows.save(row))
    except InvalidFlow as error:
        return _invalid_flow(error, request.url.path)


@router.delete("/ivr-flows/{flow_id}", status_code=204, responses=CHANGE_ERRORS,
               summary="Delete an IVR flow no number runs")
async def delete_flow(flow_id: str, request: Request, principal: VoiceAdmin) -> Response:
    async with changing(request, principal, affects_routing=False) as session:
        flows = IvrFlows(session, principal.tenant_id)
        row = await flows.get(flow_id)
        numbers = await VoiceNumbers(session, principal.tenant_id).using_flow(row.id)
        in_use("IVR flow", row.name, (f"number {n.number}" for n in numbers))
        await flows.delete(row.id)
    return Response(status_code=204)


# --- numbers -----------------------------------------------------------------------------------

class NumberIn(_Body):
    number: str = Field(pattern=NUMBER_PATTERN, max_length=64,
                        description="E.164 (+4930...) or the user part of a SIP URI.")
    name: str = Field(default="", max_length=100)
    flow_id: RowId | None = Field(default=None, description="The IVR flow callers hear.")
    outbound_queue_id: RowId | None = Field(
        default=None, description="Outbound calls from this queue show this number.")
    is_default_outbound: bool = Field(
        default=False, description="Shown by outbound calls of queues without their own.")
    enabled: bool = True


class NumberOut(NumberIn):
    id: str


def _number_out(row: VoiceNumber) -> NumberOut:
    return NumberOut(id=row.id, number=row.number, name=row.name, flow_id=row.flow_id,
                     outbound_queue_id=row.outbound_queue_id,
                     is_default_outbound=row.is_default_outbound, enabled=row.is_enabled)


async def _fill_number(session: AsyncSession, tenant_id: str, row: VoiceNumber,
                       body: NumberIn) -> None:
    owner = f"number {body.number}"
    if body.flow_id is not None:
        await referenced(IvrFlows(session, tenant_id), body.flow_id, owner)
    if body.outbound_queue_id is not None:
        await referenced(Queues(session, tenant_id), body.outbound_queue_id, owner)
    row.number, row.name, row.flow_id = body.number, body.name, body.flow_id
    row.outbound_queue_id, row.is_enabled = body.outbound_queue_id, body.enabled
    row.is_default_outbound = body.is_default_outbound


@router.get("/numbers", response_model=list[NumberOut], summary="List voice numbers")
async def list_numbers(request: Request, principal: VoiceAdmin) -> list[NumberOut]:
    async with reading(request) as session:
        numbers = VoiceNumbers(session, principal.tenant_id)
        rows = await numbers.all(numbers.select().order_by(VoiceNumber.number))
        return [_number_out(row) for row in rows]


@router.get("/numbers/{number_id}", response_model=NumberOut, responses=NOT_FOUND,
            summary="Get a voice number")
async def get_number(number_id: str, request: Request, principal: VoiceAdmin) -> NumberOut:
    async with reading(request) as session:
        return _number_out(await VoiceNumbers(session, principal.tenant_id).get(number_id))


@router.post("/numbers", status_code=201, response_model=NumberOut, responses=CHANGE_ERRORS,
             summary="Add a number callers dial (unique across the installation)")
async def create_number(body: NumberIn, request: Request, principal: VoiceAdmin) -> NumberOut:
    async with changing(request, principal, affects_routing=False) as session:
        row = VoiceNumber()
        await _fill_number(session, principal.tenant_id, row, body)
        return _number_out(await VoiceNumbers(session, principal.tenant_id).add(row))


@router.put("/numbers/{number_id}", response_model=NumberOut, responses=CHANGE_ERRORS,
            summary="Change a voice number: its flow, caller-ID use, or whether it is enabled")
async def update_number(number_id: str, body: NumberIn, request: Request,
                        principal: VoiceAdmin) -> NumberOut:
    async with changing(request, principal, affects_routing=False) as session:
        numbers = VoiceNumbers(session, principal.tenant_id)
        row = await numbers.get(number_id)
        await _fill_number(session, principal.tenant_id, row, body)
        return _number_out(await numbers.save(row))


@router.delete("/numbers/{number_id}", status_code=204, responses=CHANGE_ERRORS,
               summary="Remove a voice number (its call records keep the dialled digits)")
async def delete_number(number_id: str, request: Request, principal: VoiceAdmin) -> Response:
    async with changing(request, principal, affects_routing=False) as session:
        await VoiceNumbers(session, principal.tenant_id).delete(number_id)
    return Response(status_code=204)


# --- SIP accounts ------------------------------------------------------------------------------

class SipAccountIn(_Body):
    agent_id: RowId
    username: str = Field(pattern=SIP_USER_PATTERN, max_length=64,
                          description="The SIP user name the agent's phone registers with.")
    password: str | None = Field(
        default=None, min_length=MIN_SIP_PASSWORD, max_length=128,
        description="None: a strong password is generated and returned once.")


class PasswordIn(_Body):
    password: str | None = Field(
        default=None, min_length=MIN_SIP_PASSWORD, max_length=128,
        description="None: a strong password is generated and returned once.")


class SipAccountChange(_Body):
    enabled: bool


class SipAccountOut(BaseModel):
    id: str
    agent_id: str
    username: str
    realm: str = Field(description="The digest realm (the tenant's slug) phones answer in.")
    enabled: bool
    password_changed_at: datetime


class SipAccountWithPassword(SipAccountOut):
    password: str = Field(description="Shown this once; only digest hashes are kept.")


def _account_out(row: SipAccount) -> SipAccountOut:
    return SipAccountOut(id=row.id, agent_id=row.agent_id, username=row.username,
                         realm=row.realm, enabled=row.is_enabled,
                         password_changed_at=row.password_changed_at)


def _password(given: str | None) -> str:
    if given is not None and not given.strip():
        raise InvalidConfiguration("a SIP password cannot be blank")
    return given if given is not None else secrets.token_urlsafe(18)


async def _realm(session: AsyncSession, tenant_id: str) -> str:
    return (await Tenants(session).get(tenant_id)).slug


@router.get("/sip-accounts", response_model=list[SipAccountOut],
            summary="List agents' SIP accounts (no secrets)")
async def list_sip_accounts(request: Request, principal: AgentAdmin) -> list[SipAccountOut]:
    async with reading(request) as session:
        accounts = SipAccounts(session, principal.tenant_id)
        rows = await accounts.all(accounts.select().order_by(SipAccount.username))
        return [_account_out(row) for row in rows]


@router.get("/sip-accounts/{account_id}", response_model=SipAccountOut, responses=NOT_FOUND,
            summary="Get a SIP account (no secrets)")
async def get_sip_account(account_id: str, request: Request,
                          principal: AgentAdmin) -> SipAccountOut:
    async with reading(request) as session:
        return _account_out(await SipAccounts(session, principal.tenant_id).get(account_id))


@router.post("/sip-accounts", status_code=201, response_model=SipAccountWithPassword,
             responses=CHANGE_ERRORS,
             summary="Give an agent a SIP account; the password is returned this once")
async def create_sip_account(body: SipAccountIn, request: Request,
                             principal: AgentAdmin) -> SipAccountWithPassword:
    password = _password(body.password)
    async with changing(request, principal, affects_routing=False) as session:
        accounts = SipAccounts(session, principal.tenant_id)
        agent = await referenced(Agents(session, principal.tenant_id), body.agent_id,
                                 f"SIP account {body.username}")
        existing = await accounts.of_agent(agent.id)
        if existing is not None:
            in_use("agent", agent.name, [f"SIP account {existing.username}"])
        await ensure_free(accounts, SipAccount.username, body.username, "SIP account")
        row = await accounts.set_password(agent.id, body.username,
                                          await _realm(session, principal.tenant_id), password)
        return SipAccountWithPassword(**_account_out(row).model_dump(), password=password)


@router.post("/sip-accounts/{account_id}/password", response_model=SipAccountWithPassword,
             responses=CHANGE_ERRORS,
             summary="Set or rotate a SIP password; the new one is returned this once")
async def set_sip_password(account_id: str, body: PasswordIn, request: Request,
                           principal: AgentAdmin) -> SipAccountWithPassword:
    password = _password(body.password)
    async with changing(request, principal, affects_routing=False) as session:
        accounts = SipAccounts(session, principal.tenant_id)
        row = await accounts.get(account_id)
        row = await accounts.set_password(row.agent_id, row.username,
                                          await _realm(session, principal.tenant_id), password)
        return SipAccountWithPassword(**_account_out(row).model_dump(), password=password)


@router.put("/sip-accounts/{account_id}", response_model=SipAccountOut, responses=CHANGE_ERRORS,
            summary="Enable or disable a SIP account")
async def update_sip_account(account_id: str, body: SipAccountChange, request: Request,
                             principal: AgentAdmin) -> SipAccountOut:
    async with changing(request, principal, affects_routing=False) as session:
        accounts = SipAccounts(session, principal.tenant_id)
        row = await accounts.get(account_id)
        row.is_enabled = body.enabled
        return _account_out(await accounts.save(row))


@router.delete("/sip-accounts/{account_id}", status_code=204, responses=CHANGE_ERRORS,
               summary="Delete a SIP account (the agent's phone can no longer register)")
async def delete_sip_account(account_id: str, request: Request,
                             principal: AgentAdmin) -> Response:
    async with changing(request, principal, affects_routing=False) as session:
        await SipAccounts(session, principal.tenant_id).delete(account_id)
    return Response(status_code=204)


# --- prompts -----------------------------------------------------------------------------------

class PromptOut(BaseModel):
    id: str
    name: str
    sample_rate: int
    duration_ms: int
    size_bytes: int
    sha256: str
    created_at: datetime


def _prompt_out(row: VoicePrompt) -> PromptOut:
    return PromptOut(id=row.id, name=row.name, sample_rate=row.sample_rate,
                     duration_ms=row.duration_ms, size_bytes=row.size_bytes, sha256=row.sha256,
                     created_at=row.created_at)


def wav_facts(data: bytes) -> tuple[int, int]:
    """(sample rate, duration in ms) of a prompt WAV, or InvalidConfiguration saying what is
    wrong: mono 16-bit PCM at 8 or 16 kHz, at most MAX_PROMPT_S seconds."""
    try:
        with wave.open(io.BytesIO(data), "rb") as reader:
            channels, width, rate = (reader.getnchannels(), reader.getsampwidth(),
                                     reader.getframerate())
            frames = reader.getnframes()
    except (wave.Error, EOFError, RuntimeError, ValueError, struct.error) as error:
        # The wave module reports a damaged header in several ways (a RuntimeError for a
        # chunk size past the end of the data).
        raise InvalidConfiguration(f"not a PCM WAV file: {error or 'damaged header'}") from None
    if channels != 1 or width != 2 or rate not in PROMPT_RATES:
        raise InvalidConfiguration(
            f"a prompt is mono 16-bit PCM at 8 or 16 kHz; this file has {channels} channel(s), "
            f"{width * 8}-bit samples at {rate} Hz")
    if frames == 0:
        raise InvalidConfiguration("the WAV file holds no audio")
    duration_ms = frames * 1000 // rate
    if duration_ms > MAX_PROMPT_S * 1000:
        raise InvalidConfiguration(f"a prompt lasts at most {MAX_PROMPT_S} s; this one "
                                   f"{duration_ms / 1000:.1f} s")
    return rate, duration_ms


async def _uploaded_wav(request: Request) -> bytes:
    limit = 44 + max(PROMPT_RATES) * 2 * MAX_PROMPT_S + 65_536  # header, audio, other chunks
    form = await request.form(max_files=1, max_fields=1)
    file = form.get("file")
    if not isinstance(file, UploadFile):
        raise InvalidConfiguration("send the WAV file as the multipart part named 'file'")
    try:
        data = await file.read(limit + 1)
    finally:
        await file.close()
    if len(data) > limit:
        raise InvalidConfiguration(f"a prompt file is at most {limit} bytes")
    return data


@router.get("/prompts", response_model=list[PromptOut], summary="List uploaded prompts")
async def list_prompts(request: Request, principal: VoiceAdmin) -> list[PromptOut]:
    async with reading(request) as session:
        prompts = VoicePrompts(session, principal.tenant_id)
        return [_prompt_out(r) for r in await prompts.all(prompts.select()
                                                          .order_by(VoicePrompt.name))]


@router.get("/prompts/{prompt_id}", response_model=PromptOut, responses=NOT_FOUND,
            summary="Get an uploaded prompt's details")
async def get_prompt(prompt_id: str, request: Request, principal: VoiceAdmin) -> PromptOut:
    async with reading(request) as session:
        return _prompt_out(await VoicePrompts(session, principal.tenant_id).get(prompt_id))


@router.get("/prompts/{prompt_id}/audio", response_class=Response, responses={
    200: {"content": {"audio/wav": {}}}, **NOT_FOUND}, summary="Download a prompt's WAV file")
async def get_prompt_audio(prompt_id: str, request: Request,
                           principal: VoiceAdmin) -> Response:
    async with reading(request) as session:
        _, audio = await VoicePrompts(session, principal.tenant_id).audio(prompt_id)
    return Response(audio, media_type="audio/wav")


@router.post("/prompts", status_code=201, response_model=PromptOut, responses=CHANGE_ERRORS,
             openapi_extra=PROMPT_UPLOAD,
             summary="Upload a WAV prompt (mono 16-bit PCM, 8 or 16 kHz, at most 60 s)")
async def upload_prompt(request: Request, principal: VoiceAdmin,
                        name: Annotated[str, Query(min_length=1, max_length=100)]) -> PromptOut:
    data = await _uploaded_wav(request)
    rate, duration_ms = wav_facts(data)
    async with changing(request, principal, affects_routing=False) as session:
        prompts = VoicePrompts(session, principal.tenant_id)
        await ensure_free(prompts, VoicePrompt.name, name, "prompt")
        row = await prompts.add(VoicePrompt(
            name=name, sample_rate=rate, duration_ms=duration_ms, size_bytes=len(data),
            sha256=hashlib.sha256(data).hexdigest(), audio=data))
        return _prompt_out(row)


@router.delete("/prompts/{prompt_id}", status_code=204, responses=CHANGE_ERRORS,
               summary="Delete a prompt no IVR flow plays")
async def delete_prompt(prompt_id: str, request: Request, principal: VoiceAdmin) -> Response:
    async with changing(request, principal, affects_routing=False) as session:
        prompts = VoicePrompts(session, principal.tenant_id)
        row = await prompts.get(prompt_id)
        in_use("prompt", row.name,
               await flows_using(session, principal.tenant_id, prompt_id=row.id))
        await prompts.delete(row.id)
    return Response(status_code=204)



# --- call records ------------------------------------------------------------------------------

class CallRecordOut(BaseModel):
    id: str
    call_id: str
    direction: str
    from_number: str
    to_number: str
    number_id: str | None
    flow_id: str | None
    ivr_path: list[dict[str, Any]]
    contact_id: str | None
    conversation_id: str | None
    customer_id: str | None
    queue_id: str | None
    agent_id: str | None
    started_at: datetime
    answered_at: datetime | None
    ended_at: datetime | None
    queue_s: float
    talk_s: float
    hold_s: float
    transfers: int
    hangup_side: str | None
    outcome: str
    has_recording: bool
    recording_url: str | None = Field(description="Where to play the recording (WAV).")
    details: dict[str, Any]


def _record_out(row: CallRecord) -> CallRecordOut:
    return CallRecordOut(
        id=row.id, call_id=row.call_id, direction=row.direction, from_number=row.from_number,
        to_number=row.to_number, number_id=row.number_id, flow_id=row.flow_id,
        ivr_path=list(row.ivr_path), contact_id=row.contact_id,
        conversation_id=row.conversation_id, customer_id=row.customer_id, queue_id=row.queue_id,
        agent_id=row.agent_id, started_at=row.started_at, answered_at=row.answered_at,
        ended_at=row.ended_at, queue_s=row.queue_s, talk_s=row.talk_s, hold_s=row.hold_s,
        transfers=row.transfers, hangup_side=row.hangup_side, outcome=row.outcome,
        has_recording=row.recording_path is not None, recording_url=recording_url(row),
        details=dict(row.details))


def _utc(moment: datetime | None) -> datetime | None:
    if moment is None:
        return None
    if moment.tzinfo is None:
        raise InvalidConfiguration("since and until need a time zone (e.g. 2026-11-23T09:00Z)")
    try:
        return moment.astimezone(UTC)
    except OverflowError:
        raise InvalidConfiguration(f"{moment.isoformat()} is out of range") from None


@router.get("/call-records", response_model=list[CallRecordOut],
            summary="Call detail records, newest first (supervisors and admins)")
async def list_call_records(
    request: Request, principal: Monitor,
    customer_id: Annotated[str | None, Query(max_length=36)] = None,
    contact_id: Annotated[str | None, Query(max_length=36)] = None,
    since: Annotated[datetime | None, Query(description="Started at or after (ISO 8601).")] = None,
    until: Annotated[datetime | None, Query(description="Started before (ISO 8601).")] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> list[CallRecordOut]:
    since, until = _utc(since), _utc(until)
    async with reading(request) as session:
        records = CallRecords(session, principal.tenant_id)
        statement = records.select()
        if customer_id is not None:
            statement = statement.where(CallRecord.customer_id == customer_id)
        if contact_id is not None:
            statement = statement.where(CallRecord.contact_id == contact_id)
        if since is not None:
            statement = statement.where(CallRecord.started_at >= since)
        if until is not None:
            statement = statement.where(CallRecord.started_at < until)
        rows = await records.all(statement.order_by(CallRecord.started_at.desc(), CallRecord.id)
                                 .limit(limit))
        return [_record_out(row) for row in rows]


# --- recording retention -----------------------------------------------------------------------

class RecordingRetentionIn(_Body):
    days: int | None = Field(
        ge=0, le=36_500,
        description="Days this tenant's call recordings are kept (0: forever); null: the "
                    "installation's `recording_retention_days`.")


class RecordingRetentionOut(RecordingRetentionIn):
    installation_days: int = Field(description="The installation's setting (0: forever).")
    effective_days: int = Field(description="What applies to this tenant (0: forever).")


def _retention_out(request: Request, days: int | None) -> RecordingRetentionOut:
    installation: int = request.app.state.settings.recording_retention_days
    return RecordingRetentionOut(days=days, installation_days=installation,
                                 effective_days=installation if days is None else days)


@router.get("/recording-retention", response_model=RecordingRetentionOut,
            summary="How long the tenant's call recordings are kept")
async def get_recording_retention(request: Request,
                                  principal: VoiceAdmin) -> RecordingRetentionOut:
    async with reading(request) as session:
        tenant = await Tenants(session).get(principal.tenant_id)
        return _retention_out(request, tenant.recording_retention_days)


@router.put("/recording-retention", response_model=RecordingRetentionOut,
            responses={422: CHANGE_ERRORS[422]},
            summary="Set the tenant's own recording retention (null: the installation's); "
                    "applied by the next daily retention run")
async def set_recording_retention(body: RecordingRetentionIn, request: Request,
                                  principal: VoiceAdmin) -> RecordingRetentionOut:
    async with changing(request, principal, affects_routing=False) as session:
        tenant = await Tenants(session).get(principal.tenant_id)
        tenant.recording_retention_days = body.days
    return _retention_out(request, body.days)
