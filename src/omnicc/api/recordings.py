"""Playing a call's recording: `GET /api/recordings/{call_record_id}` streams its WAV.

Who may hear it: supervisors and admins of the tenant (`conversations:monitor`), and the agent
who handled the call (the call record's agent, or an agent of a contact in the call's
conversation, e.g. after a transfer). Another agent gets 403; a call of another tenant is 404.
The answer supports byte ranges (206), so a player can seek.
"""

from __future__ import annotations

import logging
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import FileResponse

from omnicc.api.auth import require_permission
from omnicc.api.database import request_database
from omnicc.api.desk import agent_of
from omnicc.app.permissions import Permission, has_permission
from omnicc.app.principals import Forbidden, Principal
from omnicc.app.recordings import handled_by, recording_file, recordings_dir
from omnicc.core.errors import NotFound
from omnicc.store.repositories import CallRecords

log = logging.getLogger("omnicc.recordings")

router = APIRouter(prefix="/api/recordings", tags=["recordings"])

Listener = Annotated[Principal, Depends(require_permission(Permission.HANDLE_CONTACTS))]

WAV: dict[int | str, dict[str, Any]] = {
    200: {"content": {"audio/wav": {"schema": {"type": "string", "format": "binary"}}},
          "description": "The recording: stereo WAV, left the caller, right the other side."},
    206: {"description": "A byte range of the recording (`Range` request)."},
    403: {"description": "An agent who did not handle this call."},
    404: {"description": "No such call in the tenant, or it has no recording (any more)."},
}


@router.get("/{call_record_id}", response_class=FileResponse, responses=WAV,
            summary="Play a call's recording (WAV, byte ranges supported)")
async def recording(call_record_id: str, request: Request, principal: Listener) -> FileResponse:
    agent_id = (None if has_permission(principal.role, Permission.MONITOR_CONVERSATIONS)
                else await agent_of(request, principal))
    async with request_database(request).session() as session:
        record = await CallRecords(session, principal.tenant_id).get(call_record_id)
        if agent_id is not None and not await handled_by(session, principal.tenant_id,
                                                         record, agent_id):
            raise Forbidden("only the agent who handled the call, supervisors and admins "
                            "may hear its recording")
    if record.recording_path is None:
        raise NotFound(f"call record {call_record_id} has no recording")
    path = recording_file(recordings_dir(request.app.state.settings.data_dir),
                          record.recording_path)
    if path is None:
        log.warning("call record %s names a recording outside the recordings directory",
                    record.id)
        raise NotFound(f"call record {call_record_id} has no recording")
    if not path.is_file():
        raise NotFound(f"the recording of call record {call_record_id} is gone")
    # Who listened to which call: recordings are personal data, their use is accountable.
    log.info("recording of call record %s played by %s %s", record.id,
             "user" if principal.is_session else "token", principal.subject_id,
             extra={"tenant_id": principal.tenant_id, "range": request.headers.get("range")})
    return FileResponse(path, media_type="audio/wav", filename=f"call-{record.id}.wav",
                        content_disposition_type="inline",
                        headers={"X-Content-Type-Options": "nosniff",
                                 "Cache-Control": "private, no-store"})
