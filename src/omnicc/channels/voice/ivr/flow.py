"""IVR flows: a named graph of nodes a call walks through before it reaches a queue.

A flow is data (YAML, the admin API, a JSON column), so it is checked here before any call
runs it: every `next` names a node, every node is reachable from the entry, and every cycle
passes through a step the caller triggered by pressing keys (a menu choice or a collected
number), so a flow never loops without the caller's input. References to a tenant's queues,
business hours and prompt files are checked against that tenant's configuration by
`reference_problems`, when a flow is saved.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping, Set
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from omnicc.core.errors import InvalidConfiguration

NODE_ID_PATTERN = r"^[A-Za-z0-9_.-]{1,64}$"
KEYS = frozenset("0123456789*#")
MAX_PROMPT_CHARS = 2000

NodeId = Annotated[str, Field(pattern=NODE_ID_PATTERN)]
Key = Annotated[str, Field(pattern=r"^[0-9*#]$")]
Language = Annotated[str, Field(pattern=r"^[A-Za-z]{2,3}(-[A-Za-z0-9]{2,8})*$")]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class Prompt(_Strict):
    """What to play: text spoken by text-to-speech, or an uploaded prompt file.

    Text may name `{caller}` and `{dialled}` (spoken digit by digit) and the call's attributes
    (`{customer_number}`); the interpreter fills them in before handing the prompt to the port.
    `language` None means the call's current language.
    """

    text: Annotated[str, Field(min_length=1, max_length=MAX_PROMPT_CHARS)] | None = None
    file_id: Annotated[str, Field(min_length=1, max_length=36)] | None = None
    language: Language | None = None
    voice: Annotated[str, Field(min_length=1, max_length=64)] | None = None

    @model_validator(mode="after")
    def _one_source(self) -> Prompt:
        if (self.text is None) == (self.file_id is None):
            raise ValueError("a prompt has either text or file_id")
        return self


class PlayNode(_Strict):
    kind: Literal["play"] = "play"
    prompt: Prompt
    next: NodeId
    interruptible: bool = False
    """A key pressed during the prompt skips the rest (and is kept for a following menu)."""


class MenuNode(_Strict):
    """A prompt and a choice per key; no key in time or an unknown key is retried."""

    kind: Literal["menu"] = "menu"
    prompt: Prompt
    choices: Annotated[dict[Key, NodeId], Field(min_length=1)]
    timeout_s: Annotated[float, Field(gt=0, le=60)] = 5.0
    retries: Annotated[int, Field(ge=0, le=10)] = 2
    """How many more times the prompt is played after no key or an invalid key."""
    invalid_prompt: Prompt | None = None
    timeout_prompt: Prompt | None = None
    fallback: NodeId | None = None
    """Where to go when the retries are used up; None hangs up."""


class CollectNode(_Strict):
    """Digits the caller types (a customer number, a card number), validated, kept in a task
    attribute for routing and the agent."""

    kind: Literal["collect"] = "collect"
    prompt: Prompt
    attribute: Annotated[str, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")]
    min_digits: Annotated[int, Field(ge=1, le=32)] = 1
    max_digits: Annotated[int, Field(ge=1, le=32)] = 16
    terminator: Literal["#", "*"] | None = "#"
    timeout_s: Annotated[float, Field(gt=0, le=60)] = 8.0
    inter_digit_timeout_s: Annotated[float, Field(gt=0, le=30)] = 4.0
    pattern: Annotated[str, Field(min_length=1, max_length=200)] | None = None
    """A regular expression the whole input must match."""
    luhn: bool = False
    """The input must pass the Luhn check digit (card and many customer numbers)."""
    sensitive: bool = False
    """Keep the digits out of the IVR path (the call record shows only how many there were)."""
    retries: Annotated[int, Field(ge=0, le=10)] = 2
    invalid_prompt: Prompt | None = None
    next: NodeId
    fallback: NodeId | None = None
    """Where to go when the retries are used up; None hangs up."""

    @model_validator(mode="after")
    def _digits(self) -> CollectNode:
        if self.min_digits > self.max_digits:
            raise ValueError("min_digits is greater than max_digits")
        if self.pattern is not None:
            try:
                re.compile(self.pattern)
            except re.error as error:
                raise ValueError(f"pattern is not a regular expression: {error}") from None
        return self


class HoursNode(_Strict):
    """Branches on a business-hours table at the moment of the call."""

    kind: Literal["hours"] = "hours"
    business_hours_id: Annotated[str, Field(min_length=1, max_length=36)]
    open: NodeId
    closed: NodeId
    holiday: NodeId | None = None
    """Taken instead of `closed` on a holiday that is closed now; None: `closed`."""


class LanguageNode(_Strict):
    """Sets the call's language: later prompts speak it, and the queue task carries it."""

    kind: Literal["language"] = "language"
    language: Language
    next: NodeId


AttributeValue = str | int | float | bool


class SetNode(_Strict):
    """Sets task attributes (and the priority) the queue task will carry."""

    kind: Literal["set"] = "set"
    attributes: dict[Annotated[str, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")],
                     AttributeValue] = Field(default_factory=dict)
    priority: Annotated[int, Field(ge=-1000, le=1000)] | None = None
    next: NodeId


class QueueNode(_Strict):
    """Ends the IVR: the call waits in a queue for an agent."""

    kind: Literal["queue"] = "queue"
    queue_id: Annotated[str, Field(min_length=1, max_length=36)]
    prompt: Prompt | None = None


class VoicemailNode(_Strict):
    """Ends the IVR: the caller leaves a message, handled later as a task of `queue_id`."""

    kind: Literal["voicemail"] = "voicemail"
    prompt: Prompt | None = None
    max_s: Annotated[int, Field(ge=5, le=600)] = 120
    queue_id: Annotated[str, Field(min_length=1, max_length=36)] | None = None


class CallbackNode(_Strict):
    """Ends the IVR: the caller confirms the number to call back (or types another one) and,
    optionally, a time of day; an agent of `queue_id` calls back."""

    kind: Literal["callback"] = "callback"
    queue_id: Annotated[str, Field(min_length=1, max_length=36)]
    confirm_prompt: Prompt = Prompt(
        text="We will call you back on {caller}. Press 1 to confirm or 2 to enter another number."
    )
    number_prompt: Prompt = Prompt(
        text="Please enter the number to call you back on, followed by the hash key."
    )
    min_digits: Annotated[int, Field(ge=3, le=15)] = 6
    max_digits: Annotated[int, Field(ge=3, le=15)] = 15
    ask_time: bool = False
    time_prompt: Prompt = Prompt(
        text="Enter the time you would like to be called, as four digits, hours then minutes, "
        "or press the hash key for as soon as possible."
    )
    business_hours_id: Annotated[str, Field(min_length=1, max_length=36)] | None = None
    """The zone of the chosen time, and the hours it must fall within."""
    timeout_s: Annotated[float, Field(gt=0, le=60)] = 8.0
    retries: Annotated[int, Field(ge=0, le=10)] = 2
    invalid_prompt: Prompt | None = None
    done_prompt: Prompt | None = Prompt(text="Thank you, we will call you back. Goodbye.")

    @model_validator(mode="after")
    def _digits(self) -> CallbackNode:
        if self.min_digits > self.max_digits:
            raise ValueError("min_digits is greater than max_digits")
        return self


class HangupNode(_Strict):
    kind: Literal["hangup"] = "hangup"
    prompt: Prompt | None = None


Node = Annotated[
    PlayNode | MenuNode | CollectNode | HoursNode | LanguageNode | SetNode | QueueNode
    | VoicemailNode | CallbackNode | HangupNode,
    Field(discriminator="kind"),
]
TERMINAL_KINDS = frozenset({"queue", "voicemail", "callback", "hangup"})


@dataclass(frozen=True, slots=True)
class FlowProblem:
    """One mistake in a flow: where (`nodes.main.choices.1`) and what."""

    field: str
    message: str

    def as_json(self) -> dict[str, str]:
        return {"field": self.field, "message": self.message, "type": "invalid_flow"}


class InvalidFlow(InvalidConfiguration):
    """A flow that must not run; `problems` lists every mistake found, not just the first."""

    def __init__(self, problems: list[FlowProblem]) -> None:
        self.problems = problems
        shown = "; ".join(f"{p.field}: {p.message}" for p in problems[:10])
        more = f" (and {len(problems) - 10} more)" if len(problems) > 10 else ""
        super().__init__(f"invalid IVR flow: {shown}{more}")


class Flow(_Strict):
    """The nodes by id, where calls start, and the language prompts speak until a `language`
    node changes it."""

    entry: NodeId
    language: Language = "en"
    nodes: Annotated[dict[NodeId, Node], Field(min_length=1, max_length=500)]

    def as_json(self) -> dict[str, Any]:
        """The flow as JSON without default values (every node keeps its `kind`): what is
        stored, exported and shown."""
        data = self.model_dump(mode="json", exclude_defaults=True)
        data["entry"] = self.entry
        for node_id, node in self.nodes.items():
            data["nodes"][node_id] = {"kind": node.kind, **data["nodes"][node_id]}
        return data

    def problems(self) -> list[FlowProblem]:
        """The graph's mistakes: missing entry, dangling references, unreachable nodes, loops
        that need no input from the caller."""
        problems = [
            FlowProblem(f"nodes.{node_id}.{field}", f"{target!r} is not a node of this flow")
            for node_id, node in self.nodes.items()
            for field, target, _ in edges(node)
            if target not in self.nodes
        ]
        if self.entry not in self.nodes:
            problems.append(FlowProblem("entry", f"{self.entry!r} is not a node of this flow"))
            return problems
        reachable = self._reachable()
        problems.extend(
            FlowProblem(f"nodes.{node_id}", "no path from the entry reaches this node")
            for node_id in self.nodes
            if node_id not in reachable
        )
        cycle = self._cycle_without_input()
        if cycle:
            problems.append(FlowProblem(
                f"nodes.{cycle[0]}",
                "this loop needs no key from the caller and would never end: "
                + " -> ".join([*cycle, cycle[0]]),
            ))
        return problems

    def check(self) -> Flow:
        """This flow, or InvalidFlow listing its problems."""
        problems = self.problems()
        if problems:
            raise InvalidFlow(problems)
        return self

    def _reachable(self) -> set[str]:
        seen = {self.entry}
        stack = [self.entry]
        while stack:
            for _, target, _ in edges(self.nodes[stack.pop()]):
                if target in self.nodes and target not in seen:
                    seen.add(target)
                    stack.append(target)
        return seen

    def _cycle_without_input(self) -> list[str] | None:
        """A cycle over edges taken without a key from the caller (depth-first, colours)."""
        graph = {
            node_id: [t for _, t, by_input in edges(node) if not by_input and t in self.nodes]
            for node_id, node in self.nodes.items()
        }
        state: dict[str, int] = {}  # 1: on the current path, 2: done
        path: list[str] = []

        def visit(node_id: str) -> list[str] | None:
            state[node_id] = 1
            path.append(node_id)
            for target in graph[node_id]:
                if state.get(target) == 1:
                    return path[path.index(target):]
                if target not in state:
                    found = visit(target)
                    if found:
                        return found
            path.pop()
            state[node_id] = 2
            return None

        for node_id in sorted(graph):
            if node_id not in state:
                found = visit(node_id)
                if found:
                    return found
        return None

    def prompts(self) -> Iterator[tuple[str, Prompt]]:
        """Every prompt with where it is (`nodes.main.prompt`), e.g. to pre-render them."""
        for node_id, node in self.nodes.items():
            for name in type(node).model_fields:
                value = getattr(node, name)
                if isinstance(value, Prompt):
                    yield f"nodes.{node_id}.{name}", value


def edges(node: Any) -> Iterator[tuple[str, str, bool]]:
    """(field, target node, taken on the caller's input) of every way out of `node`."""
    if isinstance(node, MenuNode):
        for key, target in sorted(node.choices.items()):
            yield f"choices.{key}", target, True
        if node.fallback is not None:
            yield "fallback", node.fallback, False
    elif isinstance(node, CollectNode):
        yield "next", node.next, True
        if node.fallback is not None:
            yield "fallback", node.fallback, False
    elif isinstance(node, HoursNode):
        yield "open", node.open, False
        yield "closed", node.closed, False
        if node.holiday is not None:
            yield "holiday", node.holiday, False
    elif isinstance(node, PlayNode | LanguageNode | SetNode):
        yield "next", node.next, False


def parse_flow(definition: Mapping[str, Any]) -> Flow:
    """A checked flow from its JSON form; InvalidFlow (structure or graph) otherwise."""
    try:
        flow = Flow.model_validate(definition)
    except ValidationError as error:
        raise InvalidFlow([
            FlowProblem(".".join(str(part) for part in e["loc"]) or "flow", e["msg"])
            for e in error.errors()
        ]) from None
    return flow.check()


def reference_problems(
    flow: Flow,
    *,
    queue_ids: Set[str],
    business_hours_ids: Set[str],
    prompt_ids: Set[str],
) -> list[FlowProblem]:
    """References to a tenant's queues, business hours and prompt files that do not exist."""
    problems = []
    for node_id, node in flow.nodes.items():
        queue_id = getattr(node, "queue_id", None)
        if queue_id is not None and queue_id not in queue_ids:
            problems.append(FlowProblem(f"nodes.{node_id}.queue_id", f"no queue {queue_id}"))
        hours_id = getattr(node, "business_hours_id", None)
        if hours_id is not None and hours_id not in business_hours_ids:
            problems.append(FlowProblem(
                f"nodes.{node_id}.business_hours_id", f"no business hours {hours_id}"
            ))
    for where, prompt in flow.prompts():
        if prompt.file_id is not None and prompt.file_id not in prompt_ids:
            problems.append(FlowProblem(f"{where}.file_id", f"no prompt file {prompt.file_id}"))
    return problems


def rename_references(
    flow: Flow,
    *,
    queues: Mapping[str, str],
    business_hours: Mapping[str, str],
    prompts: Mapping[str, str],
) -> Flow:
    """The flow with its queue, business-hours and prompt-file references mapped (ids to
    names for a configuration file, names to ids on import); a reference the mapping does not
    know is kept as it is, for `reference_problems` to report."""

    def prompt(value: Prompt) -> Prompt:
        if value.file_id is None:
            return value
        return value.model_copy(update={"file_id": prompts.get(value.file_id, value.file_id)})

    nodes = {}
    for node_id, node in flow.nodes.items():
        changes: dict[str, Any] = {}
        for name in type(node).model_fields:
            value = getattr(node, name)
            if name == "queue_id" and value is not None:
                changes[name] = queues.get(value, value)
            elif name == "business_hours_id" and value is not None:
                changes[name] = business_hours.get(value, value)
            elif isinstance(value, Prompt):
                changes[name] = prompt(value)
        nodes[node_id] = node.model_copy(update=changes)
    return flow.model_copy(update={"nodes": nodes})
