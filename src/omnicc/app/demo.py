"""The demo contact center `omnicc demo` starts: a tenant with queues, skills, agents, a
supervisor and an admin, seeded through the repositories so it is exactly what an admin could
have configured by hand.

Seeding is idempotent: what exists is left as it is (the person trying the demo may have changed
it in the admin pages), what is missing is added. Passwords are random and generated once into
the demo data directory (mode 0600), so every run prints the same logins.
"""

from __future__ import annotations

import json
import os
import secrets
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from omnicc.app.passwords import Passwords
from omnicc.channels.voice.ivr.demo import seed_voice_demo
from omnicc.channels.voice.sip.digest import Algorithm, compute_ha1
from omnicc.core.errors import NotFound
from omnicc.store.database import Database
from omnicc.store.repositories import (
    Agents,
    BusinessHoursRepository,
    CannedResponses,
    Queues,
    SipAccounts,
    Skills,
    Tenants,
    Users,
    WrapUpCodes,
)
from omnicc.store.tables import (
    Agent,
    BusinessHours,
    CannedResponse,
    Queue,
    Skill,
    User,
    WrapUpCode,
)

DEMO_SLUG = "demo"
DEMO_NAME = "Acme Energy"
DEMO_TIMEZONE = "Europe/Helsinki"
LOGINS_FILE = "logins.json"
LOGINS_MODE = 0o600
BOT_PREFIX = "bot"
# No look-alike characters (0/o, 1/l/i): the logins are read off a terminal and typed.
_PASSWORD_ALPHABET = "abcdefghjkmnpqrstuvwxyz23456789"
_PASSWORD_GROUPS = 4  # 4 groups of 4 from 31 symbols: about 79 bits


@dataclass(frozen=True)
class DemoUser:
    """A person of the demo center; `skills` None means not an agent (supervisor, admin)."""

    username: str
    display_name: str
    role: str
    skills: dict[str, int] | None = None
    is_bot: bool = False


SKILLS = {
    "english": "Serves customers in English",
    "finnish": "Serves customers in Finnish",
    "swedish": "Serves customers in Swedish",
    "billing": "Bills, direct debits, refunds and payments",
    "technical": "The app, prepay top-ups and smart meters",
}

QUEUES: dict[str, dict[str, Any]] = {
    "sales": {
        "description": "New customers, tariffs and ways to pay",
        "config": {"expression": "skills.english >= 3", "priority": 1,
                   "offer_timeout_s": 30.0, "wrap_up_s": 30.0, "sl_threshold_s": 30.0,
                   "expected_handle_s": 240.0, "proficiency_skills": ["english"]},
    },
    "support": {
        "description": "Your account, the app and top-ups",
        "config": {"expression": "skills.technical >= 2 and skills.english >= 2",
                   "offer_timeout_s": 30.0, "wrap_up_s": 45.0, "sl_threshold_s": 60.0,
                   "expected_handle_s": 300.0, "proficiency_skills": ["technical"]},
    },
    "billing": {
        "description": "Bills, charges, refunds and direct debits",
        "config": {"expression": "skills.billing >= 2", "priority": 2,
                   "offer_timeout_s": 30.0, "wrap_up_s": 60.0, "sl_threshold_s": 45.0,
                   "expected_handle_s": 360.0, "proficiency_skills": ["billing"]},
    },
}

BUSINESS_HOURS_NAME = "Demo: always open"
# Every day round the clock, so the demo answers whenever it is tried; the holiday shows the
# shape of an exception (a holiday's own hours replace the weekday's).
WEEKLY = {day: [["00:00", "24:00"]] for day in ("mon", "tue", "wed", "thu", "fri", "sat", "sun")}
HOLIDAYS = [
    {"date": "2026-12-24", "name": "Christmas Eve (the demo stays open)",
     "hours": [["00:00", "24:00"]]},
]

WRAP_UP_CODES = {"solved": "Solved", "follow-up": "Needs follow-up",
                 "escalated": "Escalated", "spam": "Spam"}

CANNED_RESPONSES = (
    ("greeting", "Greeting", "Hello, and thank you for contacting Acme Energy! How can I help?"),
    ("moment", "One moment", "One moment please, I'm looking into this for you."),
    ("closing", "Closing", "Is there anything else I can help you with? Have a great day!"),
)

STAFF = (
    DemoUser("aino", "Aino Virtanen", "agent",
             {"english": 4, "finnish": 5, "billing": 4}),
    DemoUser("erik", "Erik Lindqvist", "agent",
             {"english": 4, "swedish": 5, "technical": 4}),
    DemoUser("maria", "Maria Korhonen", "agent",
             {"english": 5, "finnish": 5, "technical": 3, "billing": 2}),
    DemoUser("olivia", "Olivia Smith", "agent", {"english": 5, "technical": 5}),
    DemoUser("lars", "Lars Nyström", "agent",
             {"english": 3, "swedish": 5, "finnish": 3, "billing": 4}),
    DemoUser("sofia", "Sofia Lehtinen", "supervisor"),
    DemoUser("admin", "Demo Admin", "admin"),
)
BOT_SKILLS = {"english": 4, "finnish": 3, "swedish": 3, "billing": 3, "technical": 3}
CHAT_CAPACITY = 3


def bot_users(count: int) -> list[DemoUser]:
    """The simulated agents `--bot-agents` logs in: dedicated users, never the human ones."""
    return [DemoUser(f"{BOT_PREFIX}{n}", f"Bot {n}", "agent", BOT_SKILLS, is_bot=True)
            for n in range(1, count + 1)]


@dataclass(frozen=True)
class Login:
    username: str
    password: str
    display_name: str
    role: str
    is_bot: bool


@dataclass
class DemoCenter:
    """What was seeded: the tenant, its queue ids by name and every login."""

    tenant_id: str
    slug: str
    name: str
    queues: dict[str, str] = field(default_factory=dict)
    logins: list[Login] = field(default_factory=list)

    @property
    def bots(self) -> list[Login]:
        return [login for login in self.logins if login.is_bot]


def new_password() -> str:
    groups = ("".join(secrets.choice(_PASSWORD_ALPHABET) for _ in range(4))
              for _ in range(_PASSWORD_GROUPS))
    return "-".join(groups)


def demo_passwords(data_dir: Path, usernames: Sequence[str]) -> dict[str, str]:
    """The password of each user, generated on first need and kept in `logins.json` (0600)."""
    path = data_dir / LOGINS_FILE
    known: dict[str, str] = {}
    if path.exists():
        loaded = json.loads(path.read_text(encoding="utf-8"))
        if isinstance(loaded, dict):
            known = {str(k): str(v) for k, v in loaded.items()}
    missing = [name for name in usernames if name not in known]
    for name in missing:
        known[name] = new_password()
    if missing or not path.exists():
        data_dir.mkdir(parents=True, exist_ok=True)
        temporary = path.with_suffix(".tmp")
        descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, LOGINS_MODE)
        with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
            json.dump(known, handle, indent=2, sort_keys=True)
        os.replace(temporary, path)
    path.chmod(LOGINS_MODE)
    return {name: known[name] for name in usernames}


async def seed_demo(database_url: str, data_dir: Path, *, bot_agents: int = 0,
                    passwords: Passwords | None = None) -> DemoCenter:
    """Create what is missing of the demo center in a migrated database; returns its logins."""
    people = [*STAFF, *bot_users(bot_agents)]
    secrets_by_user = demo_passwords(data_dir, [p.username for p in people])
    hasher = passwords or Passwords()
    database = Database(database_url)
    try:
        async with database.session() as session:
            try:
                tenant = await Tenants(session).by_slug(DEMO_SLUG)
            except NotFound:
                tenant = await Tenants(session).create(DEMO_SLUG, DEMO_NAME, DEMO_TIMEZONE)
            center = DemoCenter(tenant.id, tenant.slug, tenant.name)
            await _seed_configuration(session, tenant.id, center)
            for person in people:
                await _seed_person(session, tenant.id, person,
                                   secrets_by_user[person.username], hasher)
                center.logins.append(Login(person.username, secrets_by_user[person.username],
                                           person.display_name, person.role, person.is_bot))
        return center
    finally:
        await database.dispose()


async def _seed_configuration(session: AsyncSession, tenant_id: str,
                              center: DemoCenter) -> None:
    skills = Skills(session, tenant_id)
    existing_skills = {s.name for s in await skills.list_all()}
    for name, description in SKILLS.items():
        if name not in existing_skills:
            await skills.add(Skill(name=name, description=description))

    hours_repository = BusinessHoursRepository(session, tenant_id)
    hours = next((h for h in await hours_repository.list_all()
                  if h.name == BUSINESS_HOURS_NAME), None)
    if hours is None:
        hours = await hours_repository.add(BusinessHours(
            name=BUSINESS_HOURS_NAME, timezone=DEMO_TIMEZONE, weekly=WEEKLY,
            holidays=HOLIDAYS))

    queues = Queues(session, tenant_id)
    for name, spec in QUEUES.items():
        try:
            queue = await queues.by_name(name)
        except NotFound:
            queue = await queues.add(Queue(name=name, description=spec["description"],
                                           business_hours_id=hours.id,
                                           config=dict(spec["config"])))
        center.queues[name] = queue.id

    codes = WrapUpCodes(session, tenant_id)
    existing_codes = {c.code for c in await codes.list_all()}
    for code, label in WRAP_UP_CODES.items():
        if code not in existing_codes:
            await codes.add(WrapUpCode(code=code, label=label))

    canned = CannedResponses(session, tenant_id)
    existing_shortcuts = {c.shortcut for c in await canned.list_all()}
    for shortcut, title, text in CANNED_RESPONSES:
        if shortcut not in existing_shortcuts:
            await canned.add(CannedResponse(shortcut=shortcut, title=title, text=text))
    await seed_voice_demo(session, tenant_id, center.queues, hours.id)


async def _seed_person(session: AsyncSession, tenant_id: str, person: DemoUser, password: str,
                       hasher: Passwords) -> None:
    users = Users(session, tenant_id)
    try:
        user = await users.by_username(person.username)
    except NotFound:
        user = await users.add(User(username=person.username, role=person.role,
                                    display_name=person.display_name,
                                    password_hash=hasher.hash(password)))
    else:
        if not hasher.verify(user.password_hash, password):
            # logins.json was replaced or deleted: the printed password must work.
            user.password_hash = hasher.hash(password)
            await users.save(user)
    if person.skills is None:
        return
    agents = Agents(session, tenant_id)
    try:
        agent = await agents.by_user(user.id)
    except NotFound:
        # People take calls too (a softphone or a SIP phone); the bots only chat.
        capacity = {"chat": CHAT_CAPACITY} if person.is_bot else {"chat": CHAT_CAPACITY,
                                                                   "voice": 1}
        agent = await agents.add(Agent(user_id=user.id, name=person.display_name,
                                       skills=dict(person.skills), capacity=capacity,
                                       attributes={"bot": True} if person.is_bot else {}))
    if not person.is_bot:
        # A SIP phone registers as the agent with the login's password (demo only).
        accounts = SipAccounts(session, tenant_id)
        account = await accounts.of_agent(agent.id)
        if account is None or account.ha1_md5 != compute_ha1(
                Algorithm.MD5, person.username, DEMO_SLUG, password):
            await accounts.set_password(agent.id, person.username, DEMO_SLUG, password)
