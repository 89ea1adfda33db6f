"""The administration API end to end, on SQLite and PostgreSQL: CRUD, problems, RBAC, tenant
isolation, API tokens, the YAML file, and the running engine picking changes up."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from fastapi import FastAPI

from omnicc.api.app import create_app
from omnicc.app.passwords import HashParameters, Passwords
from omnicc.config import load_settings
from omnicc.core import events as ev
from omnicc.core.model import TaskRequest
from omnicc.store.database import Database
from omnicc.store.repositories import Tenants, Users
from omnicc.store.tables import User

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


async def _seed(database: Database) -> None:
    async with database.session() as session:
        for slug in ("a", "b"):
            tenant = await Tenants(session).create(slug, f"Tenant {slug}", "Europe/Helsinki")
            users = Users(session, tenant.id)
            for role in ("admin", "supervisor", "agent"):
                await users.add(User(username=role, role=role, password_hash=FAST.hash(PASSWORD)))


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
        await _seed(database)
        while not app.state.center.is_started:  # an external database starts in the background
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


async def test_crud_of_every_resource(center: Center) -> None:
    h = await center.login("admin")
    c = center.client
    skill = await _ok(await c.post("/api/admin/skills", headers=h,
                                   json={"name": "finnish", "description": "Suomi"}), 201)
    hours = await _ok(await c.post("/api/admin/business-hours", headers=h, json={
        "name": "office", "weekly": {"mon": [["09:00", "17:00"]]},
        "holidays": [{"date": "2026-12-24", "name": "Christmas Eve"}]}), 201)
    assert hours["timezone"] == "Europe/Helsinki"  # the tenant's zone by default
    agent = await _ok(await c.post("/api/admin/agents", headers=h, json={
        "name": "Aino", "skills": {"finnish": 4}, "capacity": {"voice": 1, "chat": 2}}), 201)
    queue = await _ok(await c.post("/api/admin/queues", headers=h, json={
        "name": "support", "expression": "skills.finnish >= 3",
        "business_hours_id": hours["id"], "strategy": "round_robin"}), 201)
    policy = await _ok(await c.post("/api/admin/routing-policies", headers=h, json={
        "name": "vip", "steps": [{"queue": queue["id"], "agents": [agent["id"]], "timeout_s": 30},
                                 {"queue": queue["id"]}]}), 201)
    code = await _ok(await c.post("/api/admin/wrap-up-codes", headers=h,
                                  json={"code": "sold", "label": "Sold"}), 201)
    response = await _ok(await c.post("/api/admin/canned-responses", headers=h, json={
        "title": "Hello", "shortcut": "hi", "text": "Hello!", "queue_id": queue["id"]}), 201)
    user = await _ok(await c.post("/api/admin/users", headers=h, json={
        "username": "aino", "role": "agent", "password": PASSWORD}), 201)
    assert user["has_password"] and "password" not in user

    for path, row in (("skills", skill), ("business-hours", hours), ("agents", agent),
                      ("queues", queue), ("routing-policies", policy), ("wrap-up-codes", code),
                      ("canned-responses", response), ("users", user)):
        assert await _ok(await c.get(f"/api/admin/{path}/{row['id']}")) == row
        assert row in await _ok(await c.get(f"/api/admin/{path}"))

    changed = await _ok(await c.put(f"/api/admin/agents/{agent['id']}", headers=h, json={
        "name": "Aino K", "skills": {"finnish": 5}, "user_id": user["id"]}))
    assert changed["skills"] == {"finnish": 5} and changed["user_id"] == user["id"]
    runtime = await center.app.state.center.tenant(center.tenant_id)
    assert runtime.routing.engine.agent(agent["id"]).skills == {"finnish": 5}

    await _ok(await c.delete(f"/api/admin/canned-responses/{response['id']}", headers=h), 204)
    await _ok(await c.delete(f"/api/admin/routing-policies/{policy['id']}", headers=h), 204)
    await _ok(await c.delete(f"/api/admin/queues/{queue['id']}", headers=h), 204)
    await _ok(await c.delete(f"/api/admin/business-hours/{hours['id']}", headers=h), 204)
    await _ok(await c.delete(f"/api/admin/agents/{agent['id']}", headers=h), 204)
    await _ok(await c.delete(f"/api/admin/skills/{skill['id']}", headers=h), 204)
    _problem(await c.get(f"/api/admin/queues/{queue['id']}"), 404)


async def test_bad_input_is_a_clear_problem(center: Center) -> None:
    h = await center.login("admin")
    c = center.client
    problem = _problem(await c.post("/api/admin/queues", headers=h,
                                    json={"name": "q", "expression": "skills.x >="}), 422)
    assert problem["type"] == "urn:omnicc:problem:invalid-expression"
    assert "position" in problem
    problem = _problem(await c.post("/api/admin/queues", headers=h,
                                    json={"name": "q", "expression": "task.language == 'sv'"}),
                       422)
    assert "policy step" in problem["detail"]
    _problem(await c.post("/api/admin/queues", headers=h,
                          json={"name": "q", "offer_timeout_s": 0}), 422)
    _problem(await c.post("/api/admin/queues", headers=h, json={"name": "q", "colour": 1}), 422)
    _problem(await c.post("/api/admin/queues", headers=h, json={"name": "x" * 101}), 422)
    assert "unknown time zone" in _problem(await c.post(
        "/api/admin/business-hours", headers=h,
        json={"name": "h", "timezone": "Mars/Olympus"}), 422)["detail"]
    assert "ends before it starts" in _problem(await c.post(
        "/api/admin/business-hours", headers=h,
        json={"name": "h", "weekly": {"mon": [["17:00", "09:00"]]}}), 422)["detail"]
    assert "unknown skill" in _problem(await c.post(
        "/api/admin/agents", headers=h, json={"name": "A", "skills": {"klingon": 3}}),
        422)["detail"]
    await _ok(await c.post("/api/admin/skills", headers=h, json={"name": "finnish"}), 201)
    assert "1-5" in _problem(await c.post(
        "/api/admin/agents", headers=h, json={"name": "A", "skills": {"finnish": 9}}),
        422)["detail"]
    assert "unknown queue" in _problem(await c.post(
        "/api/admin/routing-policies", headers=h,
        json={"name": "p", "steps": [{"queue": "nope"}]}), 422)["detail"]
    weak = _problem(await c.post("/api/admin/users", headers=h,
                                 json={"username": "u", "role": "agent", "password": "short"}),
                    422)
    assert weak["type"] == "urn:omnicc:problem:weak-password"
    queue = await _ok(await c.post("/api/admin/queues", headers=h, json={"name": "q"}), 201)
    assert "exists already" in _problem(await c.post("/api/admin/queues", headers=h,
                                                     json={"name": "q"}), 409)["detail"]
    await _ok(await c.post("/api/admin/routing-policies", headers=h,
                           json={"name": "p", "steps": [{"queue": queue["id"]}]}), 201)
    assert "in use" in _problem(await c.delete(f"/api/admin/queues/{queue['id']}",
                                               headers=h), 409)["detail"]
    assert "in use" in _problem(await c.put(f"/api/admin/queues/{queue['id']}", headers=h,
                                            json={"name": "q", "enabled": False}),
                                409)["detail"]
    _problem(await c.get("/api/admin/agents/0123456789abcdef"), 404)


async def test_roles_and_csrf(center: Center) -> None:
    c = center.client
    _problem(await c.get("/api/admin/queues"), 401)
    await center.login("supervisor")
    _problem(await c.get("/api/admin/queues"), 403)
    _problem(await c.get("/api/admin/config"), 403)
    assert await _ok(await c.get("/api/directory/queues")) == []
    await center.login("agent")
    _problem(await c.get("/api/admin/users"), 403)
    assert await _ok(await c.get("/api/directory/wrap-up-codes")) == []
    h = await center.login("admin")
    _problem(await c.post("/api/admin/skills", json={"name": "no-csrf"}), 403)
    await _ok(await c.post("/api/admin/skills", headers=h, json={"name": "csrf"}), 201)
    me = await _ok(await c.get("/api/auth/me"))
    assert "yourself" in _problem(await c.delete(f"/api/admin/users/{me['user_id']}",
                                                 headers=h), 409)["detail"]


async def test_tenant_b_cannot_see_or_change_tenant_a(center: Center) -> None:
    c = center.client
    h = await center.login("admin", tenant="a")
    queue = await _ok(await c.post("/api/admin/queues", headers=h, json={"name": "a-only"}), 201)
    h = await center.login("admin", tenant="b")
    _problem(await c.get(f"/api/admin/queues/{queue['id']}"), 404)
    _problem(await c.put(f"/api/admin/queues/{queue['id']}", headers=h,
                         json={"name": "stolen"}), 404)
    _problem(await c.delete(f"/api/admin/queues/{queue['id']}", headers=h), 404)
    assert await _ok(await c.get("/api/admin/queues")) == []
    assert "unknown queue" in _problem(await c.post(
        "/api/admin/routing-policies", headers=h,
        json={"name": "p", "steps": [{"queue": queue["id"]}]}), 422)["detail"]
    h = await center.login("admin", tenant="a")
    assert (await _ok(await c.get(f"/api/admin/queues/{queue['id']}")))["name"] == "a-only"


async def test_api_token_secret_is_shown_once_and_works(center: Center) -> None:
    c = center.client
    h = await center.login("admin")
    issued = await _ok(await c.post("/api/admin/api-tokens", headers=h,
                                    json={"name": "crm", "role": "supervisor"}), 201)
    secret = issued["token"]
    listed = await _ok(await c.get("/api/admin/api-tokens"))
    assert listed and all("token" not in t for t in listed)
    assert secret not in str(listed)
    c.cookies.clear()
    bearer = {"Authorization": f"Bearer {secret}"}
    assert await _ok(await c.get("/api/directory/queues", headers=bearer)) == []
    _problem(await c.get("/api/admin/queues", headers=bearer), 403)  # supervisor role
    h = await center.login("admin")
    await _ok(await c.delete(f"/api/admin/api-tokens/{issued['id']}", headers=h), 204)
    c.cookies.clear()
    _problem(await c.get("/api/directory/queues", headers=bearer), 401)


async def test_reload_keeps_agent_status_and_open_tasks(center: Center) -> None:
    c = center.client
    h = await center.login("admin")
    await _ok(await c.post("/api/admin/skills", headers=h, json={"name": "finnish"}), 201)
    agent = await _ok(await c.post("/api/admin/agents", headers=h, json={
        "name": "Aino", "skills": {"finnish": 3}, "capacity": {"chat": 2}}), 201)
    queue = await _ok(await c.post("/api/admin/queues", headers=h,
                                   json={"name": "chat", "expression": "skills.finnish >= 3"}),
                      201)
    routing = (await center.app.state.center.tenant(center.tenant_id)).routing
    await routing.run(lambda engine: engine.set_status(agent["id"], "available"))
    events = await routing.create_task(TaskRequest(channel="chat", queue=queue["id"]))
    offer = next(e for e in events if isinstance(e, ev.OfferCreated))
    await routing.run(lambda engine: engine.accept(offer.offer_id))
    task_id = offer.task_id

    await _ok(await c.put(f"/api/admin/agents/{agent['id']}", headers=h, json={
        "name": "Aino", "skills": {"finnish": 5}, "capacity": {"chat": 2}}))
    state = routing.engine.agent(agent["id"])
    assert state.status.name == "available"
    assert task_id in state.tasks
    assert state.skills == {"finnish": 5}
    # Disabling the queue while it has an open task would strand it: refused.
    assert "open task" in _problem(await c.put(f"/api/admin/queues/{queue['id']}", headers=h,
                                               json={"name": "chat", "enabled": False}),
                                   409)["detail"]
    assert "open task" in _problem(await c.delete(f"/api/admin/agents/{agent['id']}",
                                                  headers=h), 409)["detail"]
    # A new queue is served by the running engine at once.
    added = await _ok(await c.post("/api/admin/queues", headers=h, json={"name": "email"}), 201)
    assert routing.engine.queue(added["id"]).config.name == "email"


DOCUMENT = """
skills:
  - name: finnish
  - name: swedish
business_hours:
  - name: office
    weekly: {mon: [["08:00", "16:00"]], tue: [["08:00", "16:00"]]}
    holidays: [{date: "2026-12-24", name: Christmas Eve}]
users:
  - {username: aino, role: agent, display_name: Aino, password: "correct horse battery"}
agents:
  - {name: Aino, user: aino, skills: {finnish: 4}, capacity: {chat: 3}}
  - {name: Bo, skills: {swedish: 5}}
queues:
  - {name: finnish, expression: "skills.finnish >= 3", business_hours: office,
     hunt_order: [Aino]}
  - {name: swedish, expression: "skills.swedish >= 3", strategy: most_proficient,
     proficiency_skills: [swedish]}
routing_policies:
  - name: nordic
    steps:
      - {queue: finnish, agents: [Aino], timeout_s: 20}
      - {queue: swedish, expression: "languages contains task.language"}
    final_action: voicemail
wrap_up_codes:
  - {code: sold, label: Sold}
canned_responses:
  - {title: Greeting, shortcut: hi, text: "Hei!", queue: finnish}
"""


async def test_yaml_round_trip_between_tenants(center: Center) -> None:
    c = center.client
    h = await center.login("admin")
    result = await _ok(await c.put("/api/admin/config", headers={
        **h, "Content-Type": "application/yaml"}, content=DOCUMENT))
    assert result["imported"]["queues"] == 2
    exported = await c.get("/api/admin/config")
    assert exported.headers["content-type"].startswith("application/yaml")
    document = yaml.safe_load(exported.text)
    assert [q["name"] for q in document["queues"]] == ["finnish", "swedish"]
    assert document["queues"][0]["hunt_order"] == ["Aino"]
    assert document["routing_policies"][0]["steps"][0] == {
        "queue": "finnish", "agents": ["Aino"], "expression": None, "timeout_s": 20.0,
        "relax_proficiency": 0}
    assert "password" not in exported.text and "argon2" not in exported.text
    # Tenant b imports tenant a's file: same configuration, its own ids.
    hb = await center.login("admin", tenant="b")
    await _ok(await c.put("/api/admin/config", headers=hb, content=exported.text))
    again = yaml.safe_load((await c.get("/api/admin/config")).text)
    document_users = {u["username"] for u in document["users"]}
    assert {u["username"] for u in again["users"]} == document_users
    for section in ("skills", "business_hours", "queues", "routing_policies", "agents",
                    "wrap_up_codes", "canned_responses"):
        assert again[section] == document[section], section
    # The imported user can log in with the password the file gave.
    await center.login("aino", tenant="a")


async def test_import_is_all_or_nothing_and_replace_deletes(center: Center) -> None:
    c = center.client
    h = await center.login("admin")
    await _ok(await c.put("/api/admin/config", headers=h, content=DOCUMENT))
    broken = DOCUMENT.replace("name: swedish\n", "name: swedish\n  - name: swedish\n", 1)
    assert "appears twice" in _problem(await c.put("/api/admin/config", headers=h,
                                                   content=broken), 422)["detail"]
    bad_reference = DOCUMENT.replace("queue: finnish}", "queue: nowhere}")
    assert "unknown queue" in _problem(await c.put("/api/admin/config", headers=h,
                                                   content=bad_reference), 422)["detail"]
    typo = _problem(await c.put("/api/admin/config", headers=h,
                                content="queues: [{name: q, prority: 2}]"), 422)
    assert typo["errors"][0]["field"] == "queues.0.prority"
    _problem(await c.put("/api/admin/config", headers=h, content="queues: [unclosed"), 422)
    before = (await c.get("/api/admin/config")).text
    # Everything is written, then the engine refuses a policy on a disabled queue: nothing is kept.
    failing = DOCUMENT.replace("strategy: most_proficient,", "strategy: most_proficient, "
                               "enabled: false, description: new,")
    _problem(await c.put("/api/admin/config", headers=h, content=failing), 422)
    assert (await c.get("/api/admin/config")).text == before

    smaller = yaml.safe_load(before)
    smaller["routing_policies"] = []
    smaller["queues"] = [q for q in smaller["queues"] if q["name"] == "swedish"]
    smaller["canned_responses"] = []
    smaller["users"] = [u for u in smaller["users"] if u["username"] in ("aino", "admin")]
    checked = await _ok(await c.post("/api/admin/config/check?replace=true", headers=h,
                                     json=smaller))
    assert checked["dry_run"] is True
    assert len(yaml.safe_load((await c.get("/api/admin/config")).text)["queues"]) == 2
    await _ok(await c.put("/api/admin/config?replace=true", headers=h,
                          content=yaml.safe_dump(smaller)))
    after = yaml.safe_load((await c.get("/api/admin/config")).text)
    assert [q["name"] for q in after["queues"]] == ["swedish"]
    assert after["routing_policies"] == [] and after["canned_responses"] == []
    assert {u["username"] for u in after["users"]} == {"aino", "admin"}
    # A replace that does not name the importing admin is refused.
    smaller["users"] = [u for u in smaller["users"] if u["username"] != "admin"]
    assert "your own user" in _problem(await c.put(
        "/api/admin/config?replace=true", headers=h, content=yaml.safe_dump(smaller)),
        409)["detail"]


async def test_directory_lists_for_the_desktop(center: Center) -> None:
    c = center.client
    h = await center.login("admin")
    await _ok(await c.put("/api/admin/config", headers=h, content=DOCUMENT))
    await center.login("agent")
    assert [q["name"] for q in await _ok(await c.get("/api/directory/queues"))] == [
        "finnish", "swedish"]
    agents = await _ok(await c.get("/api/directory/agents"))
    assert agents == [{"id": agents[0]["id"], "name": "Aino", "status": "offline"},
                      {"id": agents[1]["id"], "name": "Bo", "status": "offline"}]
    assert (await _ok(await c.get("/api/directory/canned-responses")))[0]["shortcut"] == "hi"
    assert (await _ok(await c.get("/api/directory/wrap-up-codes")))[0]["code"] == "sold"


async def test_admin_page_and_openapi(center: Center) -> None:
    c = center.client
    away = await c.get("/admin")
    assert away.status_code == 303 and away.headers["location"] == "/login?next=/admin"
    await center.login("supervisor")
    assert (await c.get("/admin")).status_code == 303  # not for supervisors
    await center.login("admin")
    page = await c.get("/admin")
    assert page.status_code == 200 and '<script type="module" src="/static/admin.js' in page.text
    assert 'href="/admin" aria-current="page"' in page.text and "data-logout" in page.text
    assert (await c.get("/static/admin.js")).status_code == 200
    schema = (await c.get("/openapi.json")).json()
    assert "/api/admin/queues/{queue_id}" in schema["paths"]
    assert "ConfigurationDocument" in schema["components"]["schemas"]
