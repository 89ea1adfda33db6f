"""Probes and metrics: `/healthz` (the process answers), `/readyz` (it can serve), `/metrics`."""

from __future__ import annotations

import asyncio
import logging
from typing import Final

from fastapi import APIRouter, Request, Response

from omnicc.api.problems import problem, problem_type

READINESS_TIMEOUT_S: Final = 2.0

router = APIRouter(tags=["operations"])
log = logging.getLogger("omnicc.api")


@router.get("/healthz", summary="Liveness: the process is up")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get(
    "/readyz",
    summary="Readiness: the database answers and routing is loaded; with voice, the media "
            "engines' health (reported, not required)",
    response_model=None,
    responses={503: {"description": "Not ready; a problem names the failing check."}},
)
async def readyz(request: Request) -> Response | dict[str, object]:
    try:
        async with asyncio.timeout(READINESS_TIMEOUT_S):
            await request.app.state.database.ping()
    except Exception as error:  # any failure means "not ready", whatever the driver raised
        reason = "timed out" if isinstance(error, TimeoutError) else type(error).__name__
        log.warning("not ready: database %s", reason, extra={"check": "database"})
        return problem(
            503,
            type_=problem_type("not-ready"),
            title="Not ready",
            detail=f"The database did not answer ({reason}).",
            instance=request.url.path,
            checks={"database": "failing"},
        )
    center = getattr(request.app.state, "center", None)
    if center is None or not center.is_started:
        return problem(
            503,
            type_=problem_type("not-ready"),
            title="Not ready",
            detail="The contact center is still loading its tenants from the database.",
            instance=request.url.path,
            checks={"database": "ok", "routing": "starting"},
        )
    ready: dict[str, object] = {"status": "ready", "checks": {"database": "ok", "routing": "ok"}}
    voice = getattr(request.app.state, "voice", None)
    if voice is not None:
        # Media is reported, not required: chat and the desks serve without it, and calls
        # are refused (503) by the SIP side while no rtpengine is healthy.
        engines = voice.engines.status()
        up = sum(1 for engine in engines if engine["up"])
        ready["checks"] = {"database": "ok", "routing": "ok", "media": (
            "starting" if not engines else "ok" if up == len(engines)
            else "degraded" if up else "failing")}
        ready["media_engines"] = engines
    return ready


@router.get("/metrics", summary="Prometheus metrics", response_class=Response)
async def metrics(request: Request) -> Response:
    body, content_type = request.app.state.metrics.render()
    return Response(body, media_type=content_type)
