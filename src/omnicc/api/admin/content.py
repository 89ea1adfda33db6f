"""Administration of what agents pick from while they work: wrap-up codes and canned responses."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request, Response
from pydantic import Field, StringConstraints

from omnicc.api.admin.changes import changing, ensure_free, reading, referenced
from omnicc.api.admin.routing import CHANGE_ERRORS, NOT_FOUND, RowId
from omnicc.api.auth import require_permission
from omnicc.app.configuration import Section
from omnicc.app.permissions import Permission
from omnicc.app.principals import Principal
from omnicc.store.repositories import CannedResponses, Queues, WrapUpCodes
from omnicc.store.tables import CannedResponse, WrapUpCode

router = APIRouter(prefix="/api/admin", tags=["administration"])

CodeAdmin = Annotated[Principal, Depends(require_permission(Permission.MANAGE_WRAP_UP_CODES))]
ResponseAdmin = Annotated[Principal,
                          Depends(require_permission(Permission.MANAGE_CANNED_RESPONSES))]


# --- wrap-up codes -----------------------------------------------------------------------------

class WrapUpCodeIn(Section):
    code: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=64)]
    label: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]
    enabled: bool = True


class WrapUpCodeOut(WrapUpCodeIn):
    id: str


def _code_out(row: WrapUpCode) -> WrapUpCodeOut:
    return WrapUpCodeOut(id=row.id, code=row.code, label=row.label, enabled=row.is_enabled)


@router.get("/wrap-up-codes", response_model=list[WrapUpCodeOut], summary="List wrap-up codes")
async def list_codes(request: Request, principal: CodeAdmin) -> list[WrapUpCodeOut]:
    async with reading(request) as session:
        codes = WrapUpCodes(session, principal.tenant_id)
        return [_code_out(r) for r in await codes.all(codes.select().order_by(WrapUpCode.code))]


@router.get("/wrap-up-codes/{code_id}", response_model=WrapUpCodeOut, responses=NOT_FOUND,
            summary="Get a wrap-up code")
async def get_code(code_id: str, request: Request, principal: CodeAdmin) -> WrapUpCodeOut:
    async with reading(request) as session:
        return _code_out(await WrapUpCodes(session, principal.tenant_id).get(code_id))


@router.post("/wrap-up-codes", status_code=201, response_model=WrapUpCodeOut,
             responses=CHANGE_ERRORS, summary="Create a wrap-up code")
async def create_code(body: WrapUpCodeIn, request: Request,
                      principal: CodeAdmin) -> WrapUpCodeOut:
    async with changing(request, principal, affects_routing=False) as session:
        codes = WrapUpCodes(session, principal.tenant_id)
        await ensure_free(codes, WrapUpCode.code, body.code, "wrap-up code")
        return _code_out(await codes.add(WrapUpCode(code=body.code, label=body.label,
                                                    is_enabled=body.enabled)))


@router.put("/wrap-up-codes/{code_id}", response_model=WrapUpCodeOut, responses=CHANGE_ERRORS,
            summary="Change a wrap-up code (disable it to retire it)")
async def update_code(code_id: str, body: WrapUpCodeIn, request: Request,
                      principal: CodeAdmin) -> WrapUpCodeOut:
    async with changing(request, principal, affects_routing=False) as session:
        codes = WrapUpCodes(session, principal.tenant_id)
        row = await codes.get(code_id)
        await ensure_free(codes, WrapUpCode.code, body.code, "wrap-up code", except_id=row.id)
        row.code, row.label, row.is_enabled = body.code, body.label, body.enabled
        return _code_out(await codes.save(row))


@router.delete("/wrap-up-codes/{code_id}", status_code=204, responses=NOT_FOUND,
               summary="Delete a wrap-up code (contacts keep the code they were given)")
async def delete_code(code_id: str, request: Request, principal: CodeAdmin) -> Response:
    async with changing(request, principal, affects_routing=False) as session:
        await WrapUpCodes(session, principal.tenant_id).delete(code_id)
    return Response(status_code=204)


# --- canned responses --------------------------------------------------------------------------

class CannedResponseIn(Section):
    title: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]
    shortcut: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1,
                                               max_length=64)] | None = None
    text: Annotated[str, StringConstraints(min_length=1, max_length=20_000)]
    queue_id: RowId | None = Field(default=None, description="Offered on this queue only; none: "
                                                     "everywhere.")


class CannedResponseOut(CannedResponseIn):
    id: str


def _response_out(row: CannedResponse) -> CannedResponseOut:
    return CannedResponseOut(id=row.id, title=row.title, shortcut=row.shortcut, text=row.text,
                             queue_id=row.queue_id)


async def _fill_response(responses: CannedResponses, row: CannedResponse,
                         body: CannedResponseIn) -> None:
    # Titles are unique too: the configuration file names canned responses by title.
    await ensure_free(responses, CannedResponse.title, body.title, "canned response",
                      except_id=row.id)
    await ensure_free(responses, CannedResponse.shortcut, body.shortcut,
                      "canned response shortcut", except_id=row.id)
    if body.queue_id is not None:
        await referenced(Queues(responses.session, responses.tenant_id), body.queue_id,
                         f"canned response {body.title}")
    row.title, row.shortcut, row.text, row.queue_id = (body.title, body.shortcut, body.text,
                                                       body.queue_id)


@router.get("/canned-responses", response_model=list[CannedResponseOut],
            summary="List canned responses")
async def list_responses(request: Request, principal: ResponseAdmin) -> list[CannedResponseOut]:
    async with reading(request) as session:
        responses = CannedResponses(session, principal.tenant_id)
        return [_response_out(r) for r in
                await responses.all(responses.select().order_by(CannedResponse.title))]


@router.get("/canned-responses/{response_id}", response_model=CannedResponseOut,
            responses=NOT_FOUND, summary="Get a canned response")
async def get_response(response_id: str, request: Request,
                       principal: ResponseAdmin) -> CannedResponseOut:
    async with reading(request) as session:
        return _response_out(await CannedResponses(session, principal.tenant_id)
                             .get(response_id))


@router.post("/canned-responses", status_code=201, response_model=CannedResponseOut,
             responses=CHANGE_ERRORS, summary="Create a canned response")
async def create_response(body: CannedResponseIn, request: Request,
                          principal: ResponseAdmin) -> CannedResponseOut:
    async with changing(request, principal, affects_routing=False) as session:
        responses = CannedResponses(session, principal.tenant_id)
        row = CannedResponse()
        await _fill_response(responses, row, body)
        return _response_out(await responses.add(row))


@router.put("/canned-responses/{response_id}", response_model=CannedResponseOut,
            responses=CHANGE_ERRORS, summary="Change a canned response")
async def update_response(response_id: str, body: CannedResponseIn, request: Request,
                          principal: ResponseAdmin) -> CannedResponseOut:
    async with changing(request, principal, affects_routing=False) as session:
        responses = CannedResponses(session, principal.tenant_id)
        row = await responses.get(response_id)
        await _fill_response(responses, row, body)
        return _response_out(await responses.save(row))


@router.delete("/canned-responses/{response_id}", status_code=204, responses=NOT_FOUND,
               summary="Delete a canned response")
async def delete_response(response_id: str, request: Request,
                          principal: ResponseAdmin) -> Response:
    async with changing(request, principal, affects_routing=False) as session:
        await CannedResponses(session, principal.tenant_id).delete(response_id)
    return Response(status_code=204)
