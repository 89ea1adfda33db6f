"""A real server for API tests: uvicorn in a thread on a free loopback port, on the test's
database, with a small contact center seeded through the repositories.

Tests talk to it over real HTTP and real WebSockets (httpx and the `websockets` client), so
what they check is what a browser and an integration see.
"""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import uvicorn
import websockets

from omnicc.api.app import create_app
from omnicc.app.passwords import HashParameters, Passwords
from omnicc.config import Settings, load_settings
from omnicc.store.database import Database
from omnicc.store.repositories import Agents, Queues, Skills, Tenants, Users, WrapUpCodes
from omnicc.store.tables import Agent, Queue, Skill, User, WrapUpCode

# Cheap hashes: the tests log in often; production parameters are tested in tests/unit/app.
TEST_PASSWORDS = Passwords(HashParameters(time_cost=1, memory_kib=1024, parallelism=1))
PASSWORD = "correct horse battery staple"
RECEIVE_TIMEOUT_S = 10.0


@dataclass
class Seeded:
    tenant_id: str
    queues: dict[str, str] = field(default_factory=dict)
    agents: dict[str, str] = field(default_factory=dict)


async def seed(url: str, *, slug: str = "acme") -> Seeded:
    """A tenant with two queues, two agents (alice, bob), a supervisor (sam), an admin."""
    database = Database(url)
    try:
        async with database.session() as session:
            tenant = await Tenants(session).create(slug, "Acme Support", "Europe/Helsinki")
            seeded = Seeded(tenant.id)
            await Skills(session, tenant.id).add(Skill(name="english"))
            for name in ("support", "billing"):
                queue = await Queues(session, tenant.id).add(Queue(
                    name=name, description=f"{name.capitalize()} questions",
                    config={"expression": "true", "wrap_up_s": 60.0, "offer_timeout_s": 30.0}))
                seeded.queues[name] = queue.id
            hashed = TEST_PASSWORDS.hash(PASSWORD)
            users = Users(session, tenant.id)
            for username, role in (("alice", "agent"), ("bob", "agent"),
                                   ("sam", "supervisor"), ("ada", "admin")):
                user = await users.add(User(username=username, role=role,
                                            display_name=username.capitalize(),
                                            password_hash=hashed))
                if role == "agent":
                    agent = await Agents(session, tenant.id).add(Agent(
                        user_id=user.id, name=username.capitalize(),
                        skills={"english": 5}, capacity={"chat": 2, "voice": 1}))
                    seeded.agents[username] = agent.id
            await WrapUpCodes(session, tenant.id).add(WrapUpCode(code="solved",
                                                                 label="Solved"))
            return seeded
    finally:
        await database.dispose()


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@dataclass
class LiveServer:
    url: str
    settings: Settings
    server: uvicorn.Server
    thread: threading.Thread

    @property
    def ws_url(self) -> str:
        return "ws" + self.url[len("http"):]

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=15)


def start_live_server(database_url: str, data_dir: Path, **overrides: Any) -> LiveServer:
    port = free_port()
    settings = load_settings(data_dir=data_dir, database_url=database_url, port=port,
                             host="127.0.0.1", **overrides)
    app = create_app(settings)
    app.state.security.passwords = TEST_PASSWORDS
    app.state.security.logins._passwords = TEST_PASSWORDS
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning",
                            lifespan="on", ws="websockets-sansio")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the live server did not start")
        time.sleep(0.02)
    return LiveServer(f"http://127.0.0.1:{port}", settings, server, thread)


def live_server(database_url: str, data_dir: Path) -> Iterator[LiveServer]:
    server = start_live_server(database_url, data_dir)
    try:
        yield server
    finally:
        server.stop()


class Browser:
    """A logged-in browser: cookie jar plus the CSRF header."""

    def __init__(self, server: LiveServer, username: str) -> None:
        self.server = server
        self.username = username
        self.http = httpx.AsyncClient(base_url=server.url, timeout=10)
        self.me: dict[str, Any] = {}

    async def login(self, tenant: str = "acme") -> Browser:
        response = await self.http.post("/api/auth/login", json={
            "username": self.username, "password": PASSWORD, "tenant": tenant})
        response.raise_for_status()
        self.me = response.json()
        self.http.headers["X-CSRF-Token"] = self.me["csrf_token"]
        return self

    def socket(self, path: str) -> Any:
        cookie = "; ".join(f"{k}={v}" for k, v in self.http.cookies.items())
        return websockets.connect(self.server.ws_url + path,
                                  additional_headers={"Cookie": cookie,
                                                      "Origin": self.server.url})

    async def close(self) -> None:
        await self.http.aclose()


async def receive(ws: Any, wanted: str, *, timeout_s: float = RECEIVE_TIMEOUT_S,
                  where: Any = None) -> dict[str, Any]:
    """The next frame of type `wanted` (and matching `where`), skipping others."""
    deadline = asyncio.get_running_loop().time() + timeout_s
    while True:
        left = deadline - asyncio.get_running_loop().time()
        if left <= 0:
            raise AssertionError(f"no {wanted!r} frame within {timeout_s} s")
        frame = json.loads(await asyncio.wait_for(ws.recv(), left))
        if frame.get("type") == wanted and (where is None or where(frame)):
            return frame  # type: ignore[no-any-return]
