"""A tenant's configuration as one document, and the checks every administrative change passes.

The document names things by name, never by id, so it moves between installations: a queue
names its business hours, a policy step its queue and agents, an agent its user. Import checks
the whole document before it writes anything, applies it in the caller's transaction (create or
update by name; with `replace`, delete what the document does not name) and finally builds a
throwaway routing engine from the result, so a configuration the live engine could not load is
never committed. The administration API runs the same checks on each single change.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping, Sequence
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from omnicc.app.crm import ClientContactEntry, CrmSettings, export_crm, import_crm
from omnicc.app.passwords import Passwords, check_password_policy
from omnicc.channels.voice.ivr.configuration import (
    IvrFlowEntry,
    VoiceNumberEntry,
    export_voice,
    import_voice,
)
from omnicc.core.business_hours import check_business_hours
from omnicc.core.clock import ManualClock
from omnicc.core.engine import Engine
from omnicc.core.errors import Conflict, InvalidConfiguration, NotFound
from omnicc.core.expression import compile_expression
from omnicc.core.model import PREFERRED, AgentConfig, Strategy
from omnicc.store import engine_records
from omnicc.store.repositories import (
    Agents,
    BusinessHoursRepository,
    CannedResponses,
    Queues,
    RoutingPolicies,
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
    RoutingPolicy,
    Skill,
    Task,
    User,
    WrapUpCode,
)

DOCUMENT_VERSION: Literal[1] = 1

Name = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=100)]
Description = Annotated[str, StringConstraints(max_length=500)]
Expression = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1,
                                              max_length=2000)]
RoleName = Literal["admin", "supervisor", "agent"]
ChannelName = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_]{0,31}$")]


class Section(BaseModel):
    """Strict input: unknown fields are mistakes (a typo must not be silently ignored)."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


class QueueTuning(Section):
    """The routing engine's queue settings (`QueueConfig` without id and name)."""

    expression: Expression = Field(default="true", description="Which agents serve the queue.")
    strategy: Strategy = Strategy.LONGEST_IDLE
    priority: int = Field(default=0, ge=-1000, le=1000)
    offer_timeout_s: float = Field(default=20.0, gt=0, le=3600)
    reoffer_delay_s: float = Field(default=10.0, ge=0, le=86400)
    wrap_up_s: float | None = Field(default=None, ge=0, le=86400,
                                    description="None: capacity frees when the contact ends.")
    sl_threshold_s: float = Field(default=20.0, gt=0, le=86400)
    short_abandon_s: float = Field(default=5.0, ge=0, le=3600)
    aging_per_s: float = Field(default=0.0, ge=0, le=1000)
    vip_score: float = Field(default=100.0, ge=0, le=1_000_000)
    proficiency_skills: list[Name] = Field(default_factory=list, max_length=50)
    hunt_order: list[Name] = Field(default_factory=list, max_length=1000,
                                   description="Agents (ids in the API, names in the file).")
    expected_handle_s: float = Field(default=180.0, gt=0, le=86400)


class AgentSettings(Section):
    skills: dict[Name, int] = Field(default_factory=dict, max_length=100,
                                    description="Skill name -> proficiency 1-5.")
    attributes: dict[Name, str | int | float | bool | list[str]] = Field(
        default_factory=dict, max_length=100)
    capacity: dict[ChannelName, Annotated[int, Field(ge=0, le=100)]] = Field(
        default_factory=dict, max_length=20,
        description="Per channel, e.g. {voice: 1, chat: 3}; empty: the engine's default.")


class StepSettings(Section):
    queue: Name = Field(description="The queue (id in the API, name in the file).")
    agents: list[Name] = Field(default_factory=list, max_length=1000,
                               description="Agents (ids or names), or ['preferred'].")
    expression: Expression | None = None
    timeout_s: float | None = Field(default=None, ge=0, le=7 * 86400)
    relax_proficiency: int = Field(default=0, ge=0, le=4)


class PolicySettings(Section):
    steps: list[StepSettings] = Field(min_length=1, max_length=20)
    final_action: Literal["voicemail", "callback", "close"] = "close"
    final_reason: str = Field(default="no agent available", max_length=200)


TimeRange = Annotated[list[Annotated[str, StringConstraints(max_length=5)]],
                     Field(min_length=2, max_length=2, description='["09:00", "17:00"]')]


class Holiday(Section):
    date: str = Field(pattern=r"^\d{4}-\d{2}-\d{2}$", description="YYYY-MM-DD")
    name: str = Field(default="", max_length=200)
    hours: list[TimeRange] = Field(default_factory=list, max_length=10,
                                   description="Opening hours that day; none: closed.")


class HoursSettings(Section):
    weekly: dict[str, list[TimeRange]] = Field(
        default_factory=dict, max_length=7,
        description="Weekday (mon..sun) -> opening ranges; a missing day is closed.")
    holidays: list[Holiday] = Field(default_factory=list, max_length=500)

    def weekly_json(self) -> dict[str, Any]:
        return {day: [list(r) for r in ranges] for day, ranges in self.weekly.items()}

    def holidays_json(self) -> list[dict[str, Any]]:
        return [holiday.model_dump(mode="json") for holiday in self.holidays]


# --- the document ------------------------------------------------------------------------------

class SkillEntry(Section):
    name: Name
    description: Description = ""


class BusinessHoursEntry(HoursSettings):
    name: Name
    timezone: str | None = Field(default=None, max_length=64,
                                 description="zoneinfo name; default: the tenant's zone.")


class QueueEntry(QueueTuning):
    name: Name
    description: Description = ""
    enabled: bool = True
    business_hours: Name | None = None
    policy: Name | None = Field(default=None, description="The routing policy the queue's new "
                                "tasks follow (e.g. the account manager first).")


class PolicyEntry(PolicySettings):
    name: Name


class AgentEntry(AgentSettings):
    name: Name
    user: Name | None = Field(default=None, description="The username of the agent's login.")


class UserEntry(Section):
    username: Name
    email: str | None = Field(default=None, max_length=320)
    display_name: str = Field(default="", max_length=200)
    role: RoleName
    disabled: bool = False
    password: str | None = Field(default=None, max_length=1024,
                                 description="Import only; never exported.")


class WrapUpCodeEntry(Section):
    code: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=64)]
    label: Annotated[str, StringConstraints(min_length=1, max_length=200)]
    enabled: bool = True


class CannedResponseEntry(Section):
    title: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]
    shortcut: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1,
                                               max_length=64)] | None = None
    text: Annotated[str, StringConstraints(min_length=1, max_length=20_000)]
    queue: Name | None = Field(default=None,
                               description="Offered on this queue only; none: everywhere.")


class ConfigurationDocument(Section):
    version: Literal[1] = DOCUMENT_VERSION
    skills: list[SkillEntry] = Field(default_factory=list, max_length=1000)
    business_hours: list[BusinessHoursEntry] = Field(default_factory=list, max_length=1000)
    queues: list[QueueEntry] = Field(default_factory=list, max_length=1000)
    routing_policies: list[PolicyEntry] = Field(default_factory=list, max_length=1000)
    agents: list[AgentEntry] = Field(default_factory=list, max_length=10_000)
    users: list[UserEntry] = Field(default_factory=list, max_length=10_000)
    wrap_up_codes: list[WrapUpCodeEntry] = Field(default_factory=list, max_length=1000)
    canned_responses: list[CannedResponseEntry] = Field(default_factory=list, max_length=10_000)
    ivr_flows: list[IvrFlowEntry] = Field(default_factory=list, max_length=1000)
    voice_numbers: list[VoiceNumberEntry] = Field(default_factory=list, max_length=10_000)
    crm: CrmSettings | None = Field(default=None, description=(
        "The CRM connector, without its secrets; absent: left as it is."))
    client_contacts: list[ClientContactEntry] = Field(default_factory=list, max_length=1000)


class InvalidDocument(InvalidConfiguration):
    """The document does not have the expected shape; `errors` lists each field at fault."""

    def __init__(self, errors: list[dict[str, str]]) -> None:
        self.errors = errors
        shown = "; ".join(f"{e['field']}: {e['message']}" for e in errors[:5])
        super().__init__(f"{len(errors)} invalid field(s): {shown}")


# --- checks shared by the API and the import ---------------------------------------------------

def queue_config_json(tuning: QueueTuning, *, hunt_order: Sequence[str]) -> dict[str, Any]:
    """What a queue row's `config` holds: the engine's fields, agents by id."""
    config = tuning.model_dump(mode="json", include=set(QueueTuning.model_fields))
    config["hunt_order"] = list(hunt_order)
    return config


def check_queue(queue_id: str, name: str, config: Mapping[str, Any]) -> None:
    """Raise InvalidConfiguration (or ExpressionError, at its position) for a queue the engine
    would refuse."""
    engine_records.queue_config(Queue(id=queue_id, name=name, config=dict(config)))
    expression = compile_expression(str(config.get("expression", "true")))
    if expression.task_refs:
        raise InvalidConfiguration(
            f"queue {name}: a queue expression selects agents and cannot read "
            f"{', '.join(expression.task_refs)}; put task conditions in a routing policy step")


def check_agent(name: str, settings: AgentSettings, known_skills: Iterable[str]) -> None:
    catalogue = set(known_skills)
    unknown = sorted(set(settings.skills) - catalogue)
    if unknown:
        raise InvalidConfiguration(f"agent {name}: unknown skill(s) {', '.join(unknown)}; "
                                   "create them first")
    AgentConfig(id=name, name=name, skills=dict(settings.skills),
                attributes=dict(settings.attributes), capacity=dict(settings.capacity))


def check_policy(name: str, settings: PolicySettings) -> None:
    for step in settings.steps:
        if step.expression is not None:
            compile_expression(step.expression)
        if PREFERRED in step.agents and len(step.agents) > 1:
            raise InvalidConfiguration(
                f"policy {name}: a step targets either ['{PREFERRED}'] or a list of agents")


def check_hours(name: str, timezone: str, settings: HoursSettings) -> None:
    try:
        check_business_hours(timezone, settings.weekly_json(), settings.holidays_json())
    except InvalidConfiguration as error:
        raise InvalidConfiguration(f"business hours {name}: {error}") from None


def check_skills_known(owner: str, skills: Iterable[str], known: Iterable[str]) -> None:
    unknown = sorted(set(skills) - set(known))
    if unknown:
        raise InvalidConfiguration(f"{owner}: unknown skill(s) {', '.join(unknown)}")


async def check_routing(session: AsyncSession, tenant_id: str) -> None:
    """Build a throwaway engine from the tenant's rows as they stand in this transaction.

    The live engine is rebuilt from the same rows after the commit; anything that would make
    that fail (a policy on a disabled queue, an open task whose queue is gone) is refused here,
    before the commit, as an InvalidConfiguration.
    """
    tenant = await Tenants(session).get(tenant_id)
    snapshot = await engine_records.load_routing(session, tenant_id)
    engine = Engine(ManualClock(time.time()), timezone=tenant.timezone)
    try:
        for queue in snapshot.queues:
            engine.configure_queue(queue)
        for policy in snapshot.policies:
            engine.configure_policy(policy)
        for agent in snapshot.agents:
            engine.configure_agent(agent)
        engine.restore(snapshot.tasks)
    except (NotFound, Conflict, InvalidConfiguration) as error:
        raise InvalidConfiguration(f"the routing engine would refuse this: {error}") from None


async def count_tasks(session: AsyncSession, tenant_id: str, *, queue_id: str | None = None,
                      policy_id: str | None = None, agent_id: str | None = None,
                      only_open: bool = False) -> int:
    """Tasks (of any age, or open only) that reference a queue, policy or agent."""
    statement = select(func.count()).select_from(Task).where(Task.tenant_id == tenant_id)
    if queue_id is not None:
        statement = statement.where(Task.queue_id == queue_id)
    if policy_id is not None:
        statement = statement.where(Task.policy_id == policy_id)
    if agent_id is not None:
        statement = statement.where(Task.agent_id == agent_id)
    if only_open:
        statement = statement.where(Task.phase != "ended")
    count: int = (await session.execute(statement)).scalar_one()
    return count


# --- export ------------------------------------------------------------------------------------

def holiday_of(stored: Mapping[str, Any]) -> Holiday:
    """A stored holiday; keys this version does not know are left out."""
    return Holiday.model_validate({key: stored[key] for key in Holiday.model_fields
                                   if key in stored})


def _tuning(config: Mapping[str, Any]) -> QueueTuning:
    return QueueTuning.model_validate(
        {key: value for key, value in config.items() if key in QueueTuning.model_fields})


async def export_configuration(session: AsyncSession, tenant_id: str) -> dict[str, Any]:
    """The tenant's configuration as a plain document (YAML- and JSON-ready), names for ids."""
    skills = await Skills(session, tenant_id).list_all()
    hours = await BusinessHoursRepository(session, tenant_id).list_all()
    queues = await Queues(session, tenant_id).list_all()
    policies = await RoutingPolicies(session, tenant_id).list_all()
    agents = await Agents(session, tenant_id).list_all()
    users = await Users(session, tenant_id).list_all()
    codes = await WrapUpCodes(session, tenant_id).list_all()
    responses = await CannedResponses(session, tenant_id).list_all()
    hours_names = {row.id: row.name for row in hours}
    policy_names = {row.id: row.name for row in policies}
    queue_names = {row.id: row.name for row in queues}
    agent_names = {row.id: row.name for row in agents}
    usernames = {row.id: row.username for row in users}

    def agent_name(agent_id: str) -> str:
        return agent_names.get(agent_id, agent_id)

    document = ConfigurationDocument(
        skills=[SkillEntry(name=row.name, description=row.description) for row in skills],
        business_hours=[
            BusinessHoursEntry(name=row.name, timezone=row.timezone, weekly=dict(row.weekly),
                               holidays=[holiday_of(h) for h in row.holidays]) for row in hours],
        queues=[
            QueueEntry(
                **_tuning(row.config).model_dump(exclude={"hunt_order"}),
                hunt_order=[agent_name(a) for a in row.config.get("hunt_order", [])],
                name=row.name, description=row.description, enabled=row.is_enabled,
                business_hours=hours_names.get(row.business_hours_id or ""),
                policy=policy_names.get(row.policy_id or ""))
            for row in queues],
        routing_policies=[
            PolicyEntry(
                name=row.name, final_action=row.final_action,  # type: ignore[arg-type]
                final_reason=row.final_reason,
                steps=[StepSettings(
                    queue=queue_names.get(step["queue"], step["queue"]),
                    agents=[a if a == PREFERRED else agent_name(a)
                            for a in step.get("agents", [])],
                    expression=step.get("expression"), timeout_s=step.get("timeout_s"),
                    relax_proficiency=step.get("relax_proficiency", 0)) for step in row.steps])
            for row in policies],
        agents=[
            AgentEntry(name=row.name, user=usernames.get(row.user_id or ""),
                       skills=dict(row.skills), attributes=dict(row.attributes),
                       capacity=dict(row.capacity)) for row in agents],
        users=[
            UserEntry(username=row.username, email=row.email, display_name=row.display_name,
                      role=row.role, disabled=row.is_disabled)  # type: ignore[arg-type]
            for row in users],
        wrap_up_codes=[WrapUpCodeEntry(code=row.code, label=row.label, enabled=row.is_enabled)
                       for row in codes],
        canned_responses=[
            CannedResponseEntry(title=row.title, shortcut=row.shortcut, text=row.text,
                                queue=queue_names.get(row.queue_id or ""))
            for row in responses],
    )
    exported = document.model_dump(mode="json", exclude={"users": {"__all__": {"password"}},
                                                          "crm": True})
    for section in ("skills", "business_hours", "queues", "routing_policies", "agents"):
        exported[section].sort(key=lambda entry: entry["name"])
    exported["users"].sort(key=lambda entry: entry["username"])
    exported["wrap_up_codes"].sort(key=lambda entry: entry["code"])
    exported["canned_responses"].sort(key=lambda entry: entry["title"])
    exported.update(await export_voice(session, tenant_id))
    exported.update(await export_crm(session, tenant_id, queue_names))
    for section, entries in exported.items():
        if isinstance(entries, list):
            exported[section] = [_identity_first(entry) for entry in entries]
    return exported


_IDENTITY = ("name", "username", "code", "title", "description", "enabled")


def _identity_first(entry: dict[str, Any]) -> dict[str, Any]:
    """What names an entry first, so the file reads like a list of things."""
    first = {key: entry[key] for key in _IDENTITY if key in entry}
    return {**first, **{key: value for key, value in entry.items() if key not in first}}


# --- import ------------------------------------------------------------------------------------

def parse_document(document: object) -> ConfigurationDocument:
    if not isinstance(document, Mapping):
        raise InvalidConfiguration("a configuration document is a mapping of sections")
    try:
        return ConfigurationDocument.model_validate(document)
    except ValidationError as error:
        raise InvalidDocument([
            {"field": ".".join(str(part) for part in e["loc"]), "message": e["msg"]}
            for e in error.errors()]) from None


def _unique(section: str, keys: Iterable[str | None]) -> None:
    seen: set[str] = set()
    for key in keys:
        if key is None:
            continue
        if key in seen:
            raise InvalidConfiguration(f"{section}: {key!r} appears twice")
        seen.add(key)


def _resolve(owner: str, kind: str, name: str, known: Mapping[str, str]) -> str:
    if name not in known:
        raise InvalidConfiguration(f"{owner}: unknown {kind} {name!r}")
    return known[name]


class _Importer:
    """One import: checks the document against itself and the store, then writes it."""

    def __init__(self, session: AsyncSession, tenant_id: str, document: ConfigurationDocument,
                 *, replace: bool, passwords: Passwords | None, keep_user_id: str | None) -> None:
        self.session = session
        self.tenant_id = tenant_id
        self.document = document
        self.replace = replace
        self.passwords = passwords
        self.keep_user_id = keep_user_id

    async def run(self) -> None:
        tenant = await Tenants(self.session).get(self.tenant_id)
        self.skills = {r.name: r for r in await Skills(self.session, self.tenant_id).list_all()}
        self.hours = {r.name: r for r in
                      await BusinessHoursRepository(self.session, self.tenant_id).list_all()}
        self.queues = {r.name: r for r in await Queues(self.session, self.tenant_id).list_all()}
        self.policies = {r.name: r for r in
                         await RoutingPolicies(self.session, self.tenant_id).list_all()}
        self.agents = {r.name: r for r in await Agents(self.session, self.tenant_id).list_all()}
        self.users = {r.username: r for r in await Users(self.session, self.tenant_id).list_all()}
        self.codes = {r.code: r for r in await WrapUpCodes(self.session, self.tenant_id).list_all()}
        self.responses = {r.title: r for r in
                          await CannedResponses(self.session, self.tenant_id).list_all()}
        self._check(tenant.timezone)
        await self._apply(tenant.timezone)
        await import_voice(self.session, self.tenant_id, self.document.ivr_flows,
                           self.document.voice_numbers, replace=self.replace)
        await import_crm(self.session, self.tenant_id, self.document.crm,
                         self.document.client_contacts,
                         {name: queue.id for name, queue in self.queues.items()},
                         replace=self.replace)
        await check_routing(self.session, self.tenant_id)

    def _names(self, existing: Mapping[str, Any], entries: Iterable[str]) -> set[str]:
        """The names that will exist after the import."""
        named = set(entries)
        return named if self.replace else named | set(existing)

    def _check(self, tenant_zone: str) -> None:
        doc = self.document
        _unique("skills", (e.name for e in doc.skills))
        _unique("business_hours", (e.name for e in doc.business_hours))
        _unique("queues", (e.name for e in doc.queues))
        _unique("routing_policies", (e.name for e in doc.routing_policies))
        _unique("agents", (e.name for e in doc.agents))
        _unique("agents' users", (e.user for e in doc.agents))
        _unique("users", (e.username for e in doc.users))
        _unique("users' emails", ((e.email or "").lower() or None for e in doc.users))
        _unique("wrap_up_codes", (e.code for e in doc.wrap_up_codes))
        _unique("canned_responses", (e.title for e in doc.canned_responses))
        _unique("canned_responses' shortcuts", (e.shortcut for e in doc.canned_responses))
        skills = self._names(self.skills, (e.name for e in doc.skills))
        hours = self._names(self.hours, (e.name for e in doc.business_hours))
        queues = self._names(self.queues, (e.name for e in doc.queues))
        agents = self._names(self.agents, (e.name for e in doc.agents))
        users = self._names(self.users, (e.username for e in doc.users))
        policies = self._names(self.policies, (e.name for e in doc.routing_policies))
        for entry in doc.business_hours:
            check_hours(entry.name, entry.timezone or tenant_zone, entry)
        for user in doc.users:
            if user.password is not None:
                check_password_policy(user.password, username=user.username)
        if self.replace and self.keep_user_id is not None:
            kept = [u for u in self.users.values() if u.id == self.keep_user_id]
            if kept and kept[0].username not in users:
                raise Conflict(f"the file does not name your own user {kept[0].username!r}; "
                               "replacing would delete it")
        for agent in doc.agents:
            check_agent(agent.name, agent, skills)
            if agent.user is not None and agent.user not in users:
                raise InvalidConfiguration(f"agent {agent.name}: unknown user {agent.user!r}")
        for queue in doc.queues:
            if queue.business_hours is not None and queue.business_hours not in hours:
                raise InvalidConfiguration(
                    f"queue {queue.name}: unknown business hours {queue.business_hours!r}")
            check_skills_known(f"queue {queue.name}", queue.proficiency_skills, skills)
            for agent_name in queue.hunt_order:
                if agent_name not in agents:
                    raise InvalidConfiguration(f"queue {queue.name}: unknown agent {agent_name!r}")
            check_queue(queue.name, queue.name, queue_config_json(queue, hunt_order=[]))
            if queue.policy is not None and queue.policy not in policies:
                raise InvalidConfiguration(f"queue {queue.name}: unknown routing policy "
                                           f"{queue.policy!r}")
        for policy in doc.routing_policies:
            check_policy(policy.name, policy)
            for step in policy.steps:
                if step.queue not in queues:
                    raise InvalidConfiguration(f"policy {policy.name}: unknown queue "
                                               f"{step.queue!r}")
                for agent_name in step.agents:
                    if agent_name != PREFERRED and agent_name not in agents:
                        raise InvalidConfiguration(
                            f"policy {policy.name}: unknown agent {agent_name!r}")
        for response in doc.canned_responses:
            if response.queue is not None and response.queue not in queues:
                raise InvalidConfiguration(
                    f"canned response {response.title}: unknown queue {response.queue!r}")

    async def _apply(self, tenant_zone: str) -> None:
        doc = self.document
        session, tenant_id = self.session, self.tenant_id
        skills = Skills(session, tenant_id)
        for skill_entry in doc.skills:
            skill = self.skills.get(skill_entry.name) or await skills.add(
                Skill(name=skill_entry.name))
            skill.description = skill_entry.description
            self.skills[skill.name] = skill
        hours_repo = BusinessHoursRepository(session, tenant_id)
        for hours_entry in doc.business_hours:
            hours = self.hours.get(hours_entry.name) or BusinessHours(name=hours_entry.name)
            hours.timezone = hours_entry.timezone or tenant_zone
            hours.weekly = hours_entry.weekly_json()
            hours.holidays = hours_entry.holidays_json()
            self.hours[hours.name] = await self._save(hours_repo, hours)
        users = Users(session, tenant_id)
        for user_entry in doc.users:
            user = self.users.get(user_entry.username) or User(username=user_entry.username)
            user.email = user_entry.email.lower() if user_entry.email else None
            user.display_name, user.role = user_entry.display_name, user_entry.role
            user.is_disabled = user_entry.disabled
            if user_entry.password is not None:
                user.password_hash = (self.passwords or Passwords()).hash(user_entry.password)
            self.users[user.username] = await self._save(users, user)
        agents = Agents(session, tenant_id)
        for agent_entry in doc.agents:
            agent = self.agents.get(agent_entry.name) or Agent(name=agent_entry.name)
            agent.skills, agent.attributes = dict(agent_entry.skills), dict(agent_entry.attributes)
            agent.capacity = dict(agent_entry.capacity)
            agent.user_id = None if agent_entry.user is None else self.users[agent_entry.user].id
            self.agents[agent.name] = await self._save(agents, agent)
        queues = Queues(session, tenant_id)
        for queue_entry in doc.queues:
            queue = self.queues.get(queue_entry.name) or Queue(name=queue_entry.name)
            queue.description, queue.is_enabled = queue_entry.description, queue_entry.enabled
            queue.business_hours_id = (None if queue_entry.business_hours is None
                                       else self.hours[queue_entry.business_hours].id)
            queue.config = queue_config_json(
                queue_entry, hunt_order=[self.agents[a].id for a in queue_entry.hunt_order])
            self.queues[queue.name] = await self._save(queues, queue)
        policies = RoutingPolicies(session, tenant_id)
        for policy_entry in doc.routing_policies:
            policy = self.policies.get(policy_entry.name) or RoutingPolicy(name=policy_entry.name)
            policy.final_action = policy_entry.final_action
            policy.final_reason = policy_entry.final_reason
            policy.steps = [self._step_json(step) for step in policy_entry.steps]
            self.policies[policy.name] = await self._save(policies, policy)
        for queue_entry in doc.queues:  # after the policies: a policy names its queues too
            queue = self.queues[queue_entry.name]
            queue.policy_id = (None if queue_entry.policy is None
                               else self.policies[queue_entry.policy].id)
            await queues.save(queue)
        codes = WrapUpCodes(session, tenant_id)
        for code_entry in doc.wrap_up_codes:
            code = self.codes.get(code_entry.code) or WrapUpCode(code=code_entry.code)
            code.label, code.is_enabled = code_entry.label, code_entry.enabled
            self.codes[code.code] = await self._save(codes, code)
        responses = CannedResponses(session, tenant_id)
        for response_entry in doc.canned_responses:
            response = (self.responses.get(response_entry.title)
                        or CannedResponse(title=response_entry.title))
            response.shortcut, response.text = response_entry.shortcut, response_entry.text
            response.queue_id = (None if response_entry.queue is None
                                 else self.queues[response_entry.queue].id)
            self.responses[response.title] = await self._save(responses, response)
        if self.replace:
            await self._delete_unnamed()

    def _step_json(self, step: StepSettings) -> dict[str, Any]:
        return {
            "queue": self.queues[step.queue].id,
            "agents": [a if a == PREFERRED else self.agents[a].id for a in step.agents],
            "expression": step.expression,
            "timeout_s": step.timeout_s,
            "relax_proficiency": step.relax_proficiency,
        }

    async def _save(self, repository: Any, row: Any) -> Any:
        if row in self.session:
            return await repository.save(row)
        return await repository.add(row)

    async def _delete_unnamed(self) -> None:
        """Delete what the document does not name, dependants first."""
        doc, session, tenant_id = self.document, self.session, self.tenant_id
        await _delete_missing(session, self.responses, {e.title for e in doc.canned_responses})
        await _delete_missing(session, self.codes, {e.code for e in doc.wrap_up_codes})
        for name in set(self.policies) - {e.name for e in doc.routing_policies}:
            if await count_tasks(session, tenant_id, policy_id=self.policies[name].id):
                raise Conflict(f"routing policy {name} has tasks; it cannot be deleted "
                               "(keep it in the file)")
        await _delete_missing(session, self.policies, {e.name for e in doc.routing_policies})
        for name in set(self.queues) - {e.name for e in doc.queues}:
            if await count_tasks(session, tenant_id, queue_id=self.queues[name].id):
                raise Conflict(f"queue {name} has tasks; it cannot be deleted "
                               "(keep it in the file, disabled)")
        await _delete_missing(session, self.queues, {e.name for e in doc.queues})
        for name in set(self.agents) - {e.name for e in doc.agents}:
            if await count_tasks(session, tenant_id, agent_id=self.agents[name].id,
                                 only_open=True):
                raise Conflict(f"agent {name} has open tasks; it cannot be deleted now")
        await _delete_missing(session, self.agents, {e.name for e in doc.agents})
        await _delete_missing(session, self.users, {e.username for e in doc.users})
        await _delete_missing(session, self.hours, {e.name for e in doc.business_hours})
        await _delete_missing(session, self.skills, {e.name for e in doc.skills})


async def _delete_missing(session: AsyncSession, rows: dict[str, Any], named: set[str]) -> None:
    for name in sorted(set(rows) - named):
        await session.delete(rows.pop(name))
    await session.flush()


async def import_configuration(session: AsyncSession, tenant_id: str, document: object, *,
                               replace: bool, passwords: Passwords | None = None,
                               keep_user_id: str | None = None) -> ConfigurationDocument:
    """Check `document` whole, then create or update by name (and with `replace` delete what it
    does not name) in the caller's transaction; raises before anything is committed.

    `keep_user_id`: the importing user, whom a replace must not delete.
    """
    parsed = parse_document(document)
    await _Importer(session, tenant_id, parsed, replace=replace, passwords=passwords,
                    keep_user_id=keep_user_id).run()
    return parsed
