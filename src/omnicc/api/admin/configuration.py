"""The whole configuration as one YAML file: GET to export, PUT to import."""

from __future__ import annotations

from typing import Annotated, Any

import yaml
from fastapi import APIRouter, Depends, Query, Request, Response
from sqlalchemy.exc import IntegrityError

from omnicc.api.admin.changes import center_of, database_of
from omnicc.api.auth import require_permission
from omnicc.api.problems import problem, problem_type
from omnicc.app.configuration import (
    ConfigurationDocument,
    InvalidDocument,
    export_configuration,
    import_configuration,
)
from omnicc.app.permissions import Permission, require_may_grant
from omnicc.app.principals import Principal, Role
from omnicc.core.errors import Conflict

router = APIRouter(prefix="/api/admin", tags=["administration"])

YAML_MEDIA_TYPE = "application/yaml"
Exporter = Annotated[Principal, Depends(require_permission(Permission.EXPORT_CONFIG))]
Importer = Annotated[Principal, Depends(require_permission(Permission.IMPORT_CONFIG))]


def dump_yaml(document: dict[str, Any]) -> str:
    return yaml.safe_dump(document, sort_keys=False, allow_unicode=True, width=100)


def _count(section: object) -> int:
    """Entries of a list section; 1 or 0 for a single one (the CRM connector)."""
    return len(section) if isinstance(section, list) else int(section is not None)


@router.get("/config", summary="Export the tenant's configuration as one YAML file",
            response_class=Response,
            responses={200: {"content": {YAML_MEDIA_TYPE: {"schema": {
                "$ref": "#/components/schemas/ConfigurationDocument"}}}}})
async def export_config(request: Request, principal: Exporter) -> Response:
    async with database_of(request).session() as session:
        document = await export_configuration(session, principal.tenant_id)
    return Response(dump_yaml(document), media_type=YAML_MEDIA_TYPE, headers={
        "Content-Disposition": 'attachment; filename="omnicc-configuration.yaml"'})


async def _import(request: Request, principal: Principal, document: object, *, replace: bool,
                  dry_run: bool) -> dict[str, Any] | Response:
    """Run the import in one transaction: committed and reloaded, or (dry run) rolled back."""
    try:
        async with database_of(request).sessions() as session:
            try:
                parsed = await import_configuration(
                    session, principal.tenant_id, document, replace=replace,
                    passwords=request.app.state.security.passwords,
                    keep_user_id=principal.subject_id if principal.is_session else None)
                for user in parsed.users:
                    require_may_grant(principal, Role(user.role))
            except BaseException:
                await session.rollback()
                raise
            if dry_run:
                await session.rollback()
            else:
                await session.commit()
    except InvalidDocument as error:
        return problem(422, type_=problem_type("validation-error"),
                       title="Invalid configuration file", detail=str(error),
                       instance=request.url.path, errors=error.errors)
    except IntegrityError as error:
        raise Conflict("the file conflicts with existing data (a duplicate name or email)"
                       ) from error
    if not dry_run:
        runtime = await center_of(request).tenant(principal.tenant_id)
        await runtime.routing.reload()
        request.app.state.crm_directory.cache.forget(principal.tenant_id)  # its mapping may differ
    return {"imported": {section: _count(getattr(parsed, section))
                         for section in ConfigurationDocument.model_fields
                         if section != "version"},
            "replace": replace, "dry_run": dry_run}


IMPORT_ERRORS: dict[int | str, dict[str, Any]] = {
    409: {"description": "Something the file deletes is in use, or a name is taken."},
    422: {"description": "The file is not valid; nothing was changed."},
}
ReplaceFlag = Annotated[bool, Query(description="Delete what the file does not name.")]


@router.put(
    "/config",
    summary="Import a configuration file (YAML or JSON): all of it or nothing",
    description="Creates or updates by name. With `replace=true`, deletes what the file does "
                "not name (never your own user). Users are created without a password unless "
                "the file gives one.",
    openapi_extra={"requestBody": {"required": True, "content": {
        YAML_MEDIA_TYPE: {"schema": {"$ref": "#/components/schemas/ConfigurationDocument"}},
        "application/json": {"schema": {"$ref": "#/components/schemas/ConfigurationDocument"}},
    }}},
    response_model=None, responses=IMPORT_ERRORS,
)
async def import_config(request: Request, principal: Importer,
                        replace: ReplaceFlag = False) -> dict[str, Any] | Response:
    try:
        document = yaml.safe_load(await request.body())
    except yaml.YAMLError as error:
        return problem(422, type_=problem_type("invalid-yaml"), title="Invalid YAML",
                       detail=str(error), instance=request.url.path)
    return await _import(request, principal, document, replace=replace, dry_run=False)


@router.post("/config/check", response_model=None, responses=IMPORT_ERRORS,
             summary="Check a configuration (as JSON) without changing anything")
async def check_config(body: ConfigurationDocument, request: Request, principal: Importer,
                       replace: ReplaceFlag = False) -> dict[str, Any] | Response:
    return await _import(request, principal, body.model_dump(mode="json"), replace=replace,
                         dry_run=True)
