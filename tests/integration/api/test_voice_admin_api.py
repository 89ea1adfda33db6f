"""The voice administration API on SQLite and PostgreSQL: IVR flows checked whole (422 lists
every problem), numbers, SIP accounts whose password is shown once and kept only as HA1,
WAV prompt uploads, permissions and tenant isolation, and flows and numbers in the YAML file."""

from __future__ import annotations

import asyncio
import io
import math
import struct
import wave
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from fastapi import FastAPI

from omnicc.api.app import create_app
from omnicc.app.passwords import HashParameters, Passwords
from omnicc.channels.voice.sip.digest import Algorithm, compute_ha1
from omnicc.config import load_settings
from omnicc.store.database import Database
from omnicc.store.repositories import (
    CallRecords,
    Customers,
    SipAccounts,
    Tenants,
    Users,
    find_sip_account,
    sip_ha1,
)
from omnicc.store.tables import CallRecord, Customer, User

pytestmark = pytest.mark.anyio
PASSWORD = "correct horse battery"
FAST = Passwords(HashParameters(time_cost=1, memory_kib=8, parallelism=1))


@dataclass
class Center:
    app: FastAPI
    client: httpx.AsyncClient
    database: Database
    tenant_id: str = ""

    async def login(self, username: str, tenant: str = "a") -> dict[str, str]:
        """Session cookie set on the client; returns the CSRF header for unsafe requests."""
        self.client.cookies.clear()
        answer = await self.client.post("/api/auth/login", json={
            "username": username, "password": PASSWORD, "tenant": tenant})
        assert answer.status_code == 200, answer.text
        self.tenant_id = answer.json()["tenant_id"]
        return {"X-CSRF-Token": answer.json()["csrf_token"]}


@pytest.fixture
async def center(migrated_database_url: str, tmp_path: Path,
                 monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Center]:
    for name in ("OMNICC_CONFIG", "OMNICC_DATABASE_URL", "OMNICC_SECRET_KEY"):
        monkeypatch.delenv(name, raising=False)
    settings = load_settings(data_dir=tmp_path / "data", database_url=migrated_database_url)
    app = create_app(settings)
    app.state.security.passwords = FAST
    app.state.security.logins.passwords = FAST
    async with app.router.lifespan_context(app):
        database: Database = app.state.database
        async with database.session() as session:
            for slug in ("a", "b"):
                tenant = await Tenants(session).create(slug, f"Tenant {slug}", "Europe/Berlin")
                users = Users(session, tenant.id)
                for role in ("admin", "supervisor", "agent"):
                    await users.add(User(username=role, role=role,
                                         password_hash=FAST.hash(PASSWORD)))
        while not app.state.center.is_started:
            await asyncio.sleep(0.01)
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://omnicc.test") as client:
            yield Center(app, client, database)


async def _ok(response: httpx.Response, status: int = 200) -> Any:
    assert response.status_code == status, response.text
    return response.json() if response.content else None


def _problem(response: httpx.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    body: dict[str, Any] = response.json()
    return body


def _wav(*, seconds: float = 0.5, rate: int = 8000, channels: int = 1, width: int = 2) -> bytes:
    """A 440 Hz tone."""
    frames = int(seconds * rate)
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as writer:
        writer.setnchannels(channels)
        writer.setsampwidth(width)
        writer.setframerate(rate)
        if width == 2:
            samples = (int(8000 * math.sin(2 * math.pi * 440 * i / rate)) for i in range(frames))
            writer.writeframes(b"".join(struct.pack("<h", s) * channels for s in samples))
        else:
            writer.writeframes(bytes(frames * channels * width))
    return buffer.getvalue()


async def _routing(center: Center, h: dict[str, str]) -> tuple[str, str, str]:
    """Two queues and business hours; returns their ids (support, billing, hours)."""
    c = center.client
    support = await _ok(await c.post("/api/admin/queues", headers=h, json={"name": "support"}),
                        201)
    billing = await _ok(await c.post("/api/admin/queues", headers=h, json={"name": "billing"}),
                        201)
    hours = await _ok(await c.post("/api/admin/business-hours", headers=h, json={
        "name": "office", "weekly": {"mon": [["09:00", "17:00"]]}}), 201)
    return support["id"], billing["id"], hours["id"]


def _flow(support: str, billing: str, hours: str, name: str = "main") -> dict[str, Any]:
    return {
        "name": name,
        "entry": "welcome",
        "nodes": {
            "welcome": {"kind": "play", "prompt": {"text": "Welcome."}, "next": "hours"},
            "hours": {"kind": "hours", "business_hours_id": hours, "open": "menu",
                      "closed": "voicemail"},
            "menu": {"kind": "menu", "prompt": {"text": "1 support, 2 billing"},
                     "choices": {"1": "support", "2": "billing"}, "fallback": "support"},
            "support": {"kind": "queue", "queue_id": support},
            "billing": {"kind": "queue", "queue_id": billing},
            "voicemail": {"kind": "voicemail", "queue_id": support, "max_s": 60},
        },
    }


async def test_flows_and_numbers_crud(center: Center) -> None:
    h = await center.login("admin")
    c = center.client
    support, billing, hours = await _routing(center, h)
    flow = await _ok(await c.post("/api/admin/voice/ivr-flows", headers=h,
                                  json=_flow(support, billing, hours)), 201)
    assert flow["name"] == "main" and flow["numbers"] == []
    assert flow["nodes"]["menu"]["retries"] == 2  # defaults are filled in
    assert await _ok(await c.get(f"/api/admin/voice/ivr-flows/{flow['id']}")) == flow

    number = await _ok(await c.post("/api/admin/voice/numbers", headers=h, json={
        "number": "+4930100200", "name": "Hotline", "flow_id": flow["id"],
        "outbound_queue_id": support}), 201)
    assert number["enabled"] and number["flow_id"] == flow["id"]
    assert await _ok(await c.get("/api/admin/voice/numbers")) == [number]
    listed = await _ok(await c.get("/api/admin/voice/ivr-flows"))
    assert listed[0]["numbers"] == ["+4930100200"]

    changed = _flow(support, billing, hours)
    changed["nodes"]["menu"]["choices"] = {"1": "billing", "2": "support"}
    updated = await _ok(await c.put(f"/api/admin/voice/ivr-flows/{flow['id']}", headers=h,
                                    json=changed))
    assert updated["nodes"]["menu"]["choices"] == {"1": "billing", "2": "support"}
    assert updated["updated_at"] >= flow["updated_at"]

    # A flow a number runs stays; a duplicate name is a conflict.
    busy = _problem(await c.delete(f"/api/admin/voice/ivr-flows/{flow['id']}", headers=h), 409)
    assert "+4930100200" in busy["detail"]
    _problem(await c.post("/api/admin/voice/ivr-flows", headers=h,
                          json=_flow(support, billing, hours)), 409)

    moved = await _ok(await c.put(f"/api/admin/voice/numbers/{number['id']}", headers=h, json={
        "number": "+4930100200", "flow_id": None, "enabled": False}))
    assert (moved["flow_id"], moved["enabled"]) == (None, False)
    await _ok(await c.delete(f"/api/admin/voice/ivr-flows/{flow['id']}", headers=h), 204)
    await _ok(await c.delete(f"/api/admin/voice/numbers/{number['id']}", headers=h), 204)
    _problem(await c.get(f"/api/admin/voice/numbers/{number['id']}"), 404)


async def test_queues_and_business_hours_a_flow_uses_cannot_be_deleted(center: Center) -> None:
    h = await center.login("admin")
    c = center.client
    support, billing, hours = await _routing(center, h)
    first = await _ok(await c.post("/api/admin/voice/ivr-flows", headers=h,
                                   json=_flow(support, billing, hours)), 201)
    await _ok(await c.post("/api/admin/voice/ivr-flows", headers=h,
                           json=_flow(support, billing, hours, name="night")), 201)
    busy = _problem(await c.delete(f"/api/admin/queues/{billing}", headers=h), 409)
    assert busy["detail"] == "queue billing is in use by IVR flow main, IVR flow night"
    busy = _problem(await c.delete(f"/api/admin/business-hours/{hours}", headers=h), 409)
    assert busy["detail"] == "business hours office is in use by IVR flow main, IVR flow night"
    # A policy and a flow together are both named.
    await _ok(await c.post("/api/admin/routing-policies", headers=h, json={
        "name": "overflow", "steps": [{"queue": billing}]}), 201)
    busy = _problem(await c.delete(f"/api/admin/queues/{billing}", headers=h), 409)
    assert "routing policy overflow" in busy["detail"] and "IVR flow night" in busy["detail"]

    # Once no flow names them, they go.
    night = _flow(support, support, hours, name="night")
    night["nodes"]["hours"] = {"kind": "play", "prompt": {"text": "Hello."}, "next": "menu"}
    del night["nodes"]["voicemail"]
    await _ok(await c.delete(f"/api/admin/voice/ivr-flows/{first['id']}", headers=h), 204)
    flows = await _ok(await c.get("/api/admin/voice/ivr-flows"))
    await _ok(await c.put(f"/api/admin/voice/ivr-flows/{flows[0]['id']}", headers=h,
                          json=night))
    await _ok(await c.delete(f"/api/admin/business-hours/{hours}", headers=h), 204)
    policy = (await _ok(await c.get("/api/admin/routing-policies")))[0]
    await _ok(await c.delete(f"/api/admin/routing-policies/{policy['id']}", headers=h), 204)
    await _ok(await c.delete(f"/api/admin/queues/{billing}", headers=h), 204)
    busy = _problem(await c.delete(f"/api/admin/queues/{support}", headers=h), 409)
    assert busy["detail"] == "queue support is in use by IVR flow night"


async def test_an_invalid_flow_is_a_422_listing_every_problem(center: Center) -> None:
    h = await center.login("admin")
    c = center.client
    support, billing, hours = await _routing(center, h)
    flow = _flow(support, "no-such-queue", hours)
    flow["nodes"]["menu"]["choices"]["3"] = "nowhere"
    flow["nodes"]["orphan"] = {"kind": "hangup"}
    problem = _problem(await c.post("/api/admin/voice/ivr-flows", headers=h, json=flow), 422)
    assert problem["type"] == "urn:omnicc:problem:invalid-flow"
    assert {(e["field"], e["message"]) for e in problem["errors"]} == {
        ("nodes.menu.choices.3", "'nowhere' is not a node of this flow"),
        ("nodes.orphan", "no path from the entry reaches this node"),
        ("nodes.billing.queue_id", "no queue no-such-queue"),
    }
    loop = _flow(support, billing, hours)
    loop["nodes"]["menu"]["fallback"] = "menu"
    problem = _problem(await c.post("/api/admin/voice/ivr-flows", headers=h, json=loop), 422)
    assert "never end" in problem["errors"][0]["message"]
    # The shape is checked by the request's model: field errors as for every endpoint.
    typo = _flow(support, billing, hours)
    typo["nodes"]["welcome"]["nxt"] = "hours"
    problem = _problem(await c.post("/api/admin/voice/ivr-flows", headers=h, json=typo), 422)
    assert problem["type"] == "urn:omnicc:problem:validation-error"
    assert await _ok(await c.get("/api/admin/voice/ivr-flows")) == []


async def test_numbers_are_unique_across_tenants_and_reference_own_rows_only(
    center: Center,
) -> None:
    c = center.client
    ha = await center.login("admin")
    support, billing, hours = await _routing(center, ha)
    flow = await _ok(await c.post("/api/admin/voice/ivr-flows", headers=ha,
                                  json=_flow(support, billing, hours)), 201)
    await _ok(await c.post("/api/admin/voice/numbers", headers=ha,
                           json={"number": "+4930100200"}), 201)
    _problem(await c.post("/api/admin/voice/numbers", headers=ha,
                          json={"number": "not a number!"}), 422)
    hb = await center.login("admin", tenant="b")
    assert await _ok(await c.get("/api/admin/voice/numbers")) == []
    _problem(await c.get(f"/api/admin/voice/ivr-flows/{flow['id']}"), 404)
    _problem(await c.post("/api/admin/voice/numbers", headers=hb,
                          json={"number": "+4930100200"}), 409)
    unknown = _problem(await c.post("/api/admin/voice/numbers", headers=hb, json={
        "number": "+4930999", "flow_id": flow["id"]}), 422)
    assert "unknown IVR flow" in unknown["detail"]


async def test_a_sip_password_is_shown_once_and_kept_as_ha1_only(center: Center) -> None:
    h = await center.login("admin")
    c = center.client
    agent = await _ok(await c.post("/api/admin/agents", headers=h, json={"name": "Alice"}), 201)
    created = await _ok(await c.post("/api/admin/voice/sip-accounts", headers=h, json={
        "agent_id": agent["id"], "username": "alice"}), 201)
    password = created["password"]
    assert len(password) >= 20 and created["realm"] == "a"
    shown = await _ok(await c.get(f"/api/admin/voice/sip-accounts/{created['id']}"))
    assert "password" not in shown
    assert await _ok(await c.get("/api/admin/voice/sip-accounts")) == [shown]
    async with center.database.session() as session:
        account = await find_sip_account(session, "a", "alice")
        assert account is not None
        assert sip_ha1(account, Algorithm.SHA256) == compute_ha1(
            Algorithm.SHA256, "alice", "a", password)
        assert password not in repr([getattr(account, k) for k in
                                     ("username", "realm", "ha1_md5", "ha1_sha256")])

    rotated = await _ok(await c.post(f"/api/admin/voice/sip-accounts/{created['id']}/password",
                                     headers=h, json={"password": "a much longer secret"}))
    assert rotated["password"] == "a much longer secret"
    async with center.database.session() as session:
        account = await SipAccounts(session, center.tenant_id).by_username("alice")
        assert account.ha1_md5 == compute_ha1(Algorithm.MD5, "alice", "a", "a much longer secret")
    _problem(await c.post(f"/api/admin/voice/sip-accounts/{created['id']}/password", headers=h,
                          json={"password": "short"}), 422)
    _problem(await c.post("/api/admin/voice/sip-accounts", headers=h, json={
        "agent_id": agent["id"], "username": "alice2"}), 409)  # one account per agent

    disabled = await _ok(await c.put(f"/api/admin/voice/sip-accounts/{created['id']}",
                                     headers=h, json={"enabled": False}))
    assert disabled["enabled"] is False
    async with center.database.session() as session:
        assert await find_sip_account(session, "a", "alice") is None
    await _ok(await c.delete(f"/api/admin/voice/sip-accounts/{created['id']}", headers=h), 204)

    hb = await center.login("admin", tenant="b")
    foreign = _problem(await c.post("/api/admin/voice/sip-accounts", headers=hb, json={
        "agent_id": agent["id"], "username": "mallory"}), 422)
    assert "unknown agent" in foreign["detail"]


async def test_prompt_uploads_are_checked_wav_files(center: Center) -> None:
    h = await center.login("admin")
    c = center.client

    async def upload(name: str, data: bytes) -> httpx.Response:
        return await c.post("/api/admin/voice/prompts", headers=h, params={"name": name},
                            files={"file": (f"{name}.wav", data, "audio/wav")})

    tone = _wav(seconds=0.5, rate=16000)
    prompt = await _ok(await upload("welcome", tone), 201)
    assert (prompt["sample_rate"], prompt["duration_ms"], prompt["size_bytes"]) == (
        16000, 500, len(tone))
    audio = await c.get(f"/api/admin/voice/prompts/{prompt['id']}/audio")
    assert audio.status_code == 200 and audio.content == tone
    assert audio.headers["content-type"] == "audio/wav"
    assert await _ok(await c.get("/api/admin/voice/prompts")) == [prompt]

    assert "mono" in _problem(await upload("stereo", _wav(channels=2)), 422)["detail"]
    assert "44100 Hz" in _problem(await upload("cd", _wav(rate=44100)), 422)["detail"]
    assert "8-bit" in _problem(await upload("narrow", _wav(width=1)), 422)["detail"]
    assert "not a PCM WAV" in _problem(await upload("text", b"hello, world"), 422)["detail"]
    # A chunk whose size runs past the end of the file (the wave module raises RuntimeError).
    damaged = bytearray(tone)
    damaged[36:40] = b" ata"
    assert "not a PCM WAV" in _problem(await upload("damaged", bytes(damaged)), 422)["detail"]
    assert "at most 60 s" in _problem(await upload("long", _wav(seconds=61)), 422)["detail"]
    _problem(await upload("welcome", tone), 409)

    # A flow that plays it keeps it.
    support = await _ok(await c.post("/api/admin/queues", headers=h, json={"name": "support"}),
                        201)
    flow = await _ok(await c.post("/api/admin/voice/ivr-flows", headers=h, json={
        "name": "main", "entry": "q", "nodes": {"q": {
            "kind": "queue", "queue_id": support["id"], "prompt": {"file_id": prompt["id"]}}}}),
        201)
    assert "IVR flow main" in _problem(
        await c.delete(f"/api/admin/voice/prompts/{prompt['id']}", headers=h), 409)["detail"]
    await _ok(await c.delete(f"/api/admin/voice/ivr-flows/{flow['id']}", headers=h), 204)
    await _ok(await c.delete(f"/api/admin/voice/prompts/{prompt['id']}", headers=h), 204)


@pytest.mark.parametrize("role", ["supervisor", "agent"])
async def test_only_admins_manage_voice(center: Center, role: str) -> None:
    h = await center.login(role)
    c = center.client
    for path in ("ivr-flows", "numbers", "prompts"):
        assert _problem(await c.get(f"/api/admin/voice/{path}"),
                        403)["detail"] == "not allowed: voice:manage"
    assert _problem(await c.get("/api/admin/voice/sip-accounts"),
                    403)["detail"] == "not allowed: agents:manage"
    _problem(await c.post("/api/admin/voice/numbers", headers=h,
                          json={"number": "+4930100200"}), 403)
    _problem(await c.post("/api/admin/voice/sip-accounts", headers=h, json={
        "agent_id": "x", "username": "me"}), 403)


async def test_flows_and_numbers_travel_in_the_yaml_file_by_name(center: Center) -> None:
    c = center.client
    ha = await center.login("admin")
    support, billing, hours = await _routing(center, ha)
    flow = await _ok(await c.post("/api/admin/voice/ivr-flows", headers=ha,
                                  json=_flow(support, billing, hours)), 201)
    await _ok(await c.post("/api/admin/voice/numbers", headers=ha, json={
        "number": "+4930100200", "name": "Hotline", "flow_id": flow["id"],
        "outbound_queue_id": support, "is_default_outbound": True}), 201)
    agent = await _ok(await c.post("/api/admin/agents", headers=ha, json={"name": "Alice"}), 201)
    await _ok(await c.post("/api/admin/voice/sip-accounts", headers=ha, json={
        "agent_id": agent["id"], "username": "alice"}), 201)

    exported = (await c.get("/api/admin/config")).text
    document = yaml.safe_load(exported)
    (flow_entry,) = document["ivr_flows"]
    assert flow_entry["name"] == "main"
    assert flow_entry["nodes"]["support"] == {"kind": "queue", "queue_id": "support"}
    assert flow_entry["nodes"]["hours"]["business_hours_id"] == "office"
    assert document["voice_numbers"] == [{
        "number": "+4930100200", "name": "Hotline", "flow": "main", "outbound_queue": "support",
        "is_default_outbound": True, "enabled": True}]
    assert "ha1" not in exported and "sip_accounts" not in document

    # Tenant b imports it with its own ids; the number itself belongs to tenant a.
    hb = await center.login("admin", tenant="b")
    elsewhere = exported.replace("+4930100200", "+4930100300")
    await _ok(await c.put("/api/admin/config", headers=hb, content=elsewhere))
    again = yaml.safe_load((await c.get("/api/admin/config")).text)
    assert again["ivr_flows"] == document["ivr_flows"]
    assert again["voice_numbers"][0]["number"] == "+4930100300"
    flows_b = await _ok(await c.get("/api/admin/voice/ivr-flows"))
    queues_b = {q["name"]: q["id"] for q in await _ok(await c.get("/api/admin/queues"))}
    assert flows_b[0]["nodes"]["support"]["queue_id"] == queues_b["support"]
    assert flows_b[0]["numbers"] == ["+4930100300"]

    broken = elsewhere.replace("queue_id: billing", "queue_id: nowhere")
    problem = _problem(await c.put("/api/admin/config", headers=hb, content=broken), 422)
    assert "no queue nowhere" in problem["detail"]
    # Replacing with a file without voice sections removes tenant b's flows and numbers.
    document_b = yaml.safe_load(elsewhere)
    del document_b["ivr_flows"], document_b["voice_numbers"]
    await _ok(await c.put("/api/admin/config", headers=hb, params={"replace": "true"},
                          content=yaml.safe_dump(document_b)))
    assert await _ok(await c.get("/api/admin/voice/ivr-flows")) == []
    assert await _ok(await c.get("/api/admin/voice/numbers")) == []


async def test_supervisors_read_call_records_of_their_tenant(center: Center) -> None:
    c = center.client
    await center.login("admin", tenant="b")
    tenant_b = center.tenant_id
    await center.login("supervisor")
    start = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)
    async with center.database.session() as session:
        customer = await Customers(session, center.tenant_id).add(Customer(name="Carl"))
        records = CallRecords(session, center.tenant_id)
        for minute in range(3):
            await records.add(CallRecord(
                call_id=f"call-{minute}", started_at=start + timedelta(minutes=minute),
                customer_id=customer.id if minute else None, outcome="answered",
                ivr_path=[{"node": "menu", "kind": "menu", "input": str(minute)}],
                recording_path="r.wav" if minute == 2 else None))
        await CallRecords(session, tenant_b).add(CallRecord(call_id="elsewhere",
                                                            started_at=start))
    listed = await _ok(await c.get("/api/admin/voice/call-records"))
    assert [r["call_id"] for r in listed] == ["call-2", "call-1", "call-0"]
    assert listed[0]["has_recording"] and "recording_path" not in listed[0]
    assert listed[0]["recording_url"] == f"/api/recordings/{listed[0]['id']}"
    assert listed[1]["recording_url"] is None
    assert listed[2]["ivr_path"] == [{"node": "menu", "kind": "menu", "input": "0"}]
    mine = await _ok(await c.get("/api/admin/voice/call-records",
                                 params={"customer_id": customer.id, "limit": 1}))
    assert [r["call_id"] for r in mine] == ["call-2"]
    window = await _ok(await c.get("/api/admin/voice/call-records", params={
        "since": "2026-11-23T09:01:00Z", "until": "2026-11-23T10:02:00+01:00"}))
    assert [r["call_id"] for r in window] == ["call-1"]
    _problem(await c.get("/api/admin/voice/call-records",
                         params={"since": "2026-11-23T09:01:00"}), 422)
    _problem(await c.get("/api/admin/voice/call-records",
                         params={"since": "0001-01-01T00:00:00+05:00"}), 422)
    await center.login("agent")
    _problem(await c.get("/api/admin/voice/call-records"), 403)
