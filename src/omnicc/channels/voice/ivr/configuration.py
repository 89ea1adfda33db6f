"""The voice sections of a tenant's configuration file: IVR flows and numbers, by name.

In the file a flow's `queue_id`, `business_hours_id` and prompt `file_id` hold names (ids in
the API), and a number names its flow and outbound queue, so the file moves between
installations like the rest of the configuration. SIP accounts stay out: their hashes are bound
to the installation's realm, and a file is no place for secrets. Uploaded prompt files are not
in the file either; a flow that plays one needs a prompt of that name uploaded first.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy.ext.asyncio import AsyncSession

from omnicc.channels.voice.ivr.flow import (
    Flow,
    FlowProblem,
    InvalidFlow,
    reference_problems,
    rename_references,
)
from omnicc.core.errors import InvalidConfiguration
from omnicc.store.repositories import (
    BusinessHoursRepository,
    IvrFlows,
    Queues,
    VoiceNumbers,
    VoicePrompts,
)
from omnicc.store.tables import IvrFlow, VoiceNumber, utc_now

EntryName = Annotated[str, Field(min_length=1, max_length=100)]


class IvrFlowEntry(Flow):
    """A flow in the file: queues, business hours and prompt files by name."""

    name: EntryName


class VoiceNumberEntry(BaseModel):
    model_config = ConfigDict(extra="forbid")

    number: Annotated[str, Field(min_length=1, max_length=64)]
    name: str = Field(default="", max_length=100)
    flow: EntryName | None = None
    outbound_queue: EntryName | None = None
    is_default_outbound: bool = False
    enabled: bool = True


class _Names:
    """Ids and names of the tenant's queues, business hours and prompts, both ways."""

    def __init__(self, queues: dict[str, str], hours: dict[str, str],
                 prompts: dict[str, str]) -> None:
        self.queues, self.hours, self.prompts = queues, hours, prompts

    @classmethod
    async def load(cls, session: AsyncSession, tenant_id: str) -> _Names:
        return cls(
            {r.id: r.name for r in await Queues(session, tenant_id).list_all()},
            {r.id: r.name for r in await BusinessHoursRepository(session, tenant_id).list_all()},
            {r.id: r.name for r in await VoicePrompts(session, tenant_id).list_all()},
        )

    def to_names(self, flow: Flow) -> Flow:
        return rename_references(flow, queues=self.queues, business_hours=self.hours,
                                 prompts=self.prompts)

    def to_ids(self, flow: Flow) -> Flow:
        def invert(mapping: dict[str, str]) -> dict[str, str]:
            return {name: row_id for row_id, name in mapping.items()}

        return rename_references(flow, queues=invert(self.queues),
                                 business_hours=invert(self.hours), prompts=invert(self.prompts))


async def export_voice(session: AsyncSession, tenant_id: str) -> dict[str, list[dict[str, Any]]]:
    """The `ivr_flows` and `voice_numbers` sections, sorted by name and number."""
    names = await _Names.load(session, tenant_id)
    flows = sorted(await IvrFlows(session, tenant_id).list_all(), key=lambda row: row.name)
    flow_names = {row.id: row.name for row in flows}
    numbers = sorted(await VoiceNumbers(session, tenant_id).list_all(), key=lambda r: r.number)
    return {
        "ivr_flows": [
            {"name": row.name, **names.to_names(Flow.model_validate(row.definition)).as_json()}
            for row in flows],
        "voice_numbers": [
            VoiceNumberEntry(
                number=row.number, name=row.name, flow=flow_names.get(row.flow_id or ""),
                outbound_queue=names.queues.get(row.outbound_queue_id or ""),
                is_default_outbound=row.is_default_outbound, enabled=row.is_enabled,
            ).model_dump(mode="json")
            for row in numbers],
    }


async def flows_using(session: AsyncSession, tenant_id: str, *, queue_id: str | None = None,
                      business_hours_id: str | None = None,
                      prompt_id: str | None = None) -> list[str]:
    """"IVR flow <name>" for each flow that names the queue, business hours or prompt file:
    what must change before that row may be deleted."""
    users = []
    for row in await IvrFlows(session, tenant_id).list_all():
        flow = Flow.model_validate(row.definition)
        queues = {getattr(node, "queue_id", None) for node in flow.nodes.values()}
        hours = {getattr(node, "business_hours_id", None) for node in flow.nodes.values()}
        files = {prompt.file_id for _, prompt in flow.prompts()}
        if ((queue_id is not None and queue_id in queues)
                or (business_hours_id is not None and business_hours_id in hours)
                or (prompt_id is not None and prompt_id in files)):
            users.append(f"IVR flow {row.name}")
    return users


def _repeated(section: str, keys: Sequence[str]) -> None:
    seen: set[str] = set()
    for key in keys:
        if key in seen:
            raise InvalidConfiguration(f"{section}: {key!r} appears twice")
        seen.add(key)


async def import_voice(session: AsyncSession, tenant_id: str, flows: Sequence[IvrFlowEntry],
                       numbers: Sequence[VoiceNumberEntry], *, replace: bool) -> None:
    """Create or update flows by name and numbers by number (with `replace`, delete the ones
    not named), after the rest of the file is applied in the same transaction, so the names
    resolve to the file's queues and business hours. Raises before the caller commits."""
    _repeated("ivr_flows", [entry.name for entry in flows])
    _repeated("voice_numbers", [entry.number for entry in numbers])
    names = await _Names.load(session, tenant_id)
    flow_repo, number_repo = IvrFlows(session, tenant_id), VoiceNumbers(session, tenant_id)
    existing_flows = {row.name: row for row in await flow_repo.list_all()}
    existing_numbers = {row.number: row for row in await number_repo.list_all()}
    queue_ids = {name: row_id for row_id, name in names.queues.items()}

    definitions: dict[str, dict[str, Any]] = {}
    problems: list[FlowProblem] = []
    for entry in flows:
        flow = names.to_ids(Flow.model_validate(entry.model_dump(exclude={"name"})))
        found = flow.problems() + reference_problems(
            flow, queue_ids=set(names.queues), business_hours_ids=set(names.hours),
            prompt_ids=set(names.prompts))
        problems += [FlowProblem(f"ivr_flows.{entry.name}.{p.field}", p.message) for p in found]
        definitions[entry.name] = flow.as_json()
    if problems:
        raise InvalidFlow(problems)
    known_flows = set(definitions) | (set() if replace else set(existing_flows))
    for number in numbers:
        if number.flow is not None and number.flow not in known_flows:
            raise InvalidConfiguration(f"number {number.number}: unknown IVR flow "
                                       f"{number.flow!r}")
        if number.outbound_queue is not None and number.outbound_queue not in queue_ids:
            raise InvalidConfiguration(f"number {number.number}: unknown queue "
                                       f"{number.outbound_queue!r}")

    for name, definition in definitions.items():
        row = existing_flows.get(name)
        if row is None:
            existing_flows[name] = await flow_repo.add(IvrFlow(name=name, definition=definition))
        elif row.definition != definition:
            row.definition, row.updated_at = definition, utc_now()
            await flow_repo.save(row)
    for number in numbers:
        number_row = existing_numbers.get(number.number) or VoiceNumber(number=number.number)
        number_row.name, number_row.is_enabled = number.name, number.enabled
        number_row.flow_id = None if number.flow is None else existing_flows[number.flow].id
        number_row.outbound_queue_id = (None if number.outbound_queue is None
                                        else queue_ids[number.outbound_queue])
        number_row.is_default_outbound = number.is_default_outbound
        if number_row in session:
            await number_repo.save(number_row)
        else:
            await number_repo.add(number_row)
    if replace:
        for key in sorted(set(existing_numbers) - {n.number for n in numbers}):
            await session.delete(existing_numbers[key])
        await session.flush()
        for key in sorted(set(existing_flows) - set(definitions)):
            await session.delete(existing_flows[key])
        await session.flush()
