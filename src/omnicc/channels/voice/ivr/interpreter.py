"""Runs a flow for one call over a `CallPort`, and says what happens to the call next.

The interpreter knows nothing of SIP or RTP: the call controller implements `CallPort` (play a
prompt, gather DTMF digits, hang up) and acts on the returned outcome (put the call in a queue,
record a voicemail, create a callback, or nothing more). Everything the caller did is kept as
the IVR path for the call record.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any, Protocol
from zoneinfo import ZoneInfo

from omnicc.channels.voice.ivr.flow import (
    AttributeValue,
    CallbackNode,
    CollectNode,
    Flow,
    HangupNode,
    HoursNode,
    LanguageNode,
    MenuNode,
    PlayNode,
    Prompt,
    QueueNode,
    SetNode,
    VoicemailNode,
)
from omnicc.core.business_hours import is_open
from omnicc.core.clock import Clock

MAX_STEPS = 200
"""Nodes one call may visit: a caller who keeps choosing in circles is hung up eventually."""

_PLACEHOLDER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")


class CallEnded(Exception):
    """Raised by a port when the caller hangs up (or the call is lost) during the IVR."""


class CallPort(Protocol):
    """The call as the interpreter sees it; the call controller implements it."""

    async def play(self, prompt: Prompt, *, interruptible: bool) -> str | None:
        """Play `prompt` to the caller; the key pressed during it when `interruptible` (the
        playback stops), else None."""
        ...

    async def collect_digits(
        self, *, max_digits: int, timeout_s: float, inter_digit_timeout_s: float,
        terminator: str | None,
    ) -> str:
        """Keys pressed until `max_digits`, the terminator (not included), `timeout_s` without
        a first key or `inter_digit_timeout_s` after the last one; "" when none came."""
        ...

    async def hangup(self) -> None: ...


@dataclass(frozen=True, slots=True)
class OpeningHours:
    """A business-hours table, as `omnicc.core.business_hours` reads it."""

    timezone: str
    weekly: Mapping[str, Any]
    holidays: tuple[Mapping[str, Any], ...] = ()


@dataclass(frozen=True, slots=True)
class CallContext:
    """What the flow may ask about the call and the tenant."""

    clock: Clock
    caller: str
    """The caller's number (E.164 when known), "" when withheld."""
    dialled: str
    business_hours: Mapping[str, OpeningHours] = field(default_factory=dict)
    timezone: str = "UTC"
    """The tenant's zone: a callback time without business hours is read in it."""
    attributes: Mapping[str, AttributeValue] = field(default_factory=dict)
    """Attributes known before the flow starts (e.g. the customer found by the caller's number)."""


@dataclass(frozen=True, slots=True)
class PathStep:
    """One node the call visited and what the caller did there (keys, "timeout", ...)."""

    node: str
    kind: str
    input: str | None = None

    def as_json(self) -> dict[str, Any]:
        return {"node": self.node, "kind": self.kind, "input": self.input}


@dataclass(frozen=True, slots=True, kw_only=True)
class _Outcome:
    path: tuple[PathStep, ...]
    attributes: dict[str, AttributeValue]
    priority: int | None
    """Set by a `set` node; None keeps the queue's default."""
    language: str

    def path_json(self) -> list[dict[str, Any]]:
        return [step.as_json() for step in self.path]


@dataclass(frozen=True, slots=True, kw_only=True)
class QueueOutcome(_Outcome):
    queue_id: str


@dataclass(frozen=True, slots=True, kw_only=True)
class VoicemailOutcome(_Outcome):
    """Record up to `max_s` seconds now; the recording goes to `queue_id` (None: no queue)."""

    max_s: int
    queue_id: str | None


@dataclass(frozen=True, slots=True, kw_only=True)
class CallbackOutcome(_Outcome):
    """Call `number` back from `queue_id`, at `at` (UTC), or as soon as possible when None.
    `number` is the caller's own number when confirmed, else the digits they typed."""

    number: str
    at: datetime | None
    queue_id: str


@dataclass(frozen=True, slots=True, kw_only=True)
class HangupOutcome(_Outcome):
    """The flow hung up: a hangup node, retries used up without a fallback, or too many steps."""

    reason: str


@dataclass(frozen=True, slots=True, kw_only=True)
class AbandonedOutcome(_Outcome):
    """The caller hung up during the IVR."""


FlowOutcome = QueueOutcome | VoicemailOutcome | CallbackOutcome | HangupOutcome | AbandonedOutcome


def luhn_valid(digits: str) -> bool:
    """Whether `digits` end with a correct Luhn check digit."""
    if not digits.isdigit() or len(digits) < 2:
        return False
    total = 0
    for position, char in enumerate(reversed(digits)):
        value = int(char)
        if position % 2:
            value *= 2
            if value > 9:
                value -= 9
        total += value
    return total % 10 == 0


def _spoken_digits(number: str) -> str:
    """A number read digit by digit ("+49 30" -> "plus 4 9 3 0")."""
    return " ".join("plus" if c == "+" else c for c in number if c.isdigit() or c == "+")


class _Dialogue:
    """Prompts and key questions to one caller, in their language."""

    def __init__(self, port: CallPort, context: CallContext, language: str) -> None:
        self.port = port
        self.context = context
        self.language = language
        self.attributes: dict[str, AttributeValue] = dict(context.attributes)
        self.pending_key: str | None = None
        """A key pressed during an interruptible prompt, for the next node that reads keys."""

    def now(self) -> datetime:
        return datetime.fromtimestamp(self.context.clock.now(), UTC)

    def resolve(self, prompt: Prompt) -> Prompt:
        """The prompt with the call's language and the placeholders filled in."""
        changes: dict[str, Any] = {}
        if prompt.language is None:
            changes["language"] = self.language
        if prompt.text is not None:
            values: dict[str, str] = {
                key: str(value) for key, value in self.attributes.items()
            }
            values["caller"] = _spoken_digits(self.context.caller)
            values["dialled"] = _spoken_digits(self.context.dialled)
            changes["text"] = _PLACEHOLDER.sub(
                lambda m: values.get(m.group(1), m.group(0)), prompt.text
            )
        return prompt.model_copy(update=changes)

    async def play(self, prompt: Prompt | None, *, interruptible: bool = False) -> str | None:
        if prompt is None:
            return None
        key = await self.port.play(self.resolve(prompt), interruptible=interruptible)
        return key if interruptible else None

    async def ask(self, prompt: Prompt, *, max_digits: int, timeout_s: float,
                  inter_digit_timeout_s: float, terminator: str | None) -> str:
        """Play an interruptible prompt and gather up to `max_digits` keys."""
        first = self.pending_key
        self.pending_key = None
        if first is None:
            first = await self.play(prompt, interruptible=True)
        if first is not None and first == terminator:
            return ""
        if first is not None and max_digits == 1:
            return first
        rest = await self.port.collect_digits(
            max_digits=max_digits - (1 if first else 0),
            timeout_s=inter_digit_timeout_s if first else timeout_s,
            inter_digit_timeout_s=inter_digit_timeout_s,
            terminator=terminator,
        )
        return (first or "") + rest

    async def callback_time(self, node: CallbackNode) -> datetime | None:
        """The next moment at the HH:MM the caller types; None: as soon as possible (also when
        no valid time comes)."""
        hours = self.context.business_hours.get(node.business_hours_id or "")
        zone = ZoneInfo(hours.timezone if hours else self.context.timezone)
        for attempt in range(node.retries + 1):
            digits = await self.ask(node.time_prompt, max_digits=4, timeout_s=node.timeout_s,
                                    inter_digit_timeout_s=4.0, terminator="#")
            if not digits:
                return None
            at = _next_time_of_day(digits, self.now(), zone)
            if at is not None and (
                hours is None or is_open(hours.timezone, hours.weekly, hours.holidays, at)
            ):
                return at
            if attempt < node.retries:
                await self.play(node.invalid_prompt)
        return None


async def ask_callback_time(port: CallPort, context: CallContext, node: CallbackNode,
                            *, language: str) -> datetime | None:
    """The `callback` node's time question outside a flow (a caller leaving the queue for a
    callback at a time they choose): the same prompts, checks and re-prompts."""
    return await _Dialogue(port, context, language).callback_time(node)


class _Run(_Dialogue):
    """The state of one call in a flow."""

    def __init__(self, flow: Flow, port: CallPort, context: CallContext) -> None:
        super().__init__(port, context, flow.language)
        self.flow = flow
        self.priority: int | None = None
        self.path: list[PathStep] = []

    def common(self) -> dict[str, Any]:
        return {
            "path": tuple(self.path),
            "attributes": dict(self.attributes),
            "priority": self.priority,
            "language": self.language,
        }

    async def run(self) -> FlowOutcome:
        node_id = self.flow.entry
        for _ in range(MAX_STEPS):
            node = self.flow.nodes[node_id]
            result = await self.step(node_id, node)
            if isinstance(result, str):
                node_id = result
                continue
            return result
        self.path.append(PathStep(node_id, "limit", None))
        await self.port.hangup()
        return HangupOutcome(reason=f"more than {MAX_STEPS} steps in the flow", **self.common())

    async def step(self, node_id: str, node: Any) -> str | FlowOutcome:
        """Run one node: the id of the next node, or the outcome of the flow."""
        if isinstance(node, PlayNode):
            if node.interruptible and self.pending_key is not None:
                # The caller typed ahead: an interruptible prompt is skipped, as it would stop
                # at the first key anyway.
                self.path.append(PathStep(node_id, node.kind, "skipped"))
                return node.next
            key = await self.play(node.prompt, interruptible=node.interruptible)
            self.path.append(PathStep(node_id, node.kind, key))
            if key is not None:
                self.pending_key = key
            return node.next
        if isinstance(node, MenuNode):
            return await self.menu(node_id, node)
        if isinstance(node, CollectNode):
            return await self.collect(node_id, node)
        # A key typed ahead survives the silent nodes (hours, language, set) to the next menu.
        if isinstance(node, HoursNode):
            state = self.opening_state(node.business_hours_id)
            self.path.append(PathStep(node_id, node.kind, state))
            if state == "holiday":
                return node.holiday or node.closed
            return node.open if state == "open" else node.closed
        if isinstance(node, LanguageNode):
            self.language = node.language
            self.path.append(PathStep(node_id, node.kind, node.language))
            return node.next
        if isinstance(node, SetNode):
            self.attributes.update(node.attributes)
            if node.priority is not None:
                self.priority = node.priority
            self.path.append(PathStep(node_id, node.kind, None))
            return node.next
        if isinstance(node, QueueNode):
            self.path.append(PathStep(node_id, node.kind, node.queue_id))
            await self.play(node.prompt)
            return QueueOutcome(queue_id=node.queue_id, **self.common())
        if isinstance(node, VoicemailNode):
            self.path.append(PathStep(node_id, node.kind, None))
            await self.play(node.prompt)
            return VoicemailOutcome(max_s=node.max_s, queue_id=node.queue_id, **self.common())
        if isinstance(node, CallbackNode):
            return await self.callback(node_id, node)
        assert isinstance(node, HangupNode)
        self.path.append(PathStep(node_id, node.kind, None))
        await self.play(node.prompt)
        await self.port.hangup()
        return HangupOutcome(reason="hangup node", **self.common())

    async def give_up(self, node_id: str, kind: str, fallback: str | None) -> str | FlowOutcome:
        if fallback is not None:
            return fallback
        await self.port.hangup()
        self.path.append(PathStep(node_id, kind, "gave up"))
        return HangupOutcome(reason=f"no valid input at {node_id}", **self.common())

    async def menu(self, node_id: str, node: MenuNode) -> str | FlowOutcome:
        for attempt in range(node.retries + 1):
            key = await self.ask(node.prompt, max_digits=1, timeout_s=node.timeout_s,
                                 inter_digit_timeout_s=node.timeout_s, terminator=None)
            if key in node.choices:
                self.path.append(PathStep(node_id, node.kind, key))
                return node.choices[key]
            self.path.append(PathStep(node_id, node.kind, key or "timeout"))
            if attempt < node.retries:
                await self.play(node.invalid_prompt if key else node.timeout_prompt)
        return await self.give_up(node_id, node.kind, node.fallback)

    async def collect(self, node_id: str, node: CollectNode) -> str | FlowOutcome:
        for attempt in range(node.retries + 1):
            digits = await self.ask(
                node.prompt, max_digits=node.max_digits, timeout_s=node.timeout_s,
                inter_digit_timeout_s=node.inter_digit_timeout_s, terminator=node.terminator,
            )
            valid = self.valid(node, digits)
            shown = f"{len(digits)} digits" if node.sensitive and digits else digits
            self.path.append(PathStep(node_id, node.kind,
                                      shown if digits else "timeout"))
            if valid:
                self.attributes[node.attribute] = digits
                return node.next
            if attempt < node.retries:
                await self.play(node.invalid_prompt)
        return await self.give_up(node_id, node.kind, node.fallback)

    @staticmethod
    def valid(node: CollectNode, digits: str) -> bool:
        if not node.min_digits <= len(digits) <= node.max_digits:
            return False
        if node.pattern is not None and re.fullmatch(node.pattern, digits) is None:
            return False
        return not node.luhn or luhn_valid(digits)

    def opening_state(self, hours_id: str) -> str:
        """"open", "closed" or "holiday" now; an unknown table counts as always open, so a
        deleted table sends calls to agents rather than away."""
        hours = self.context.business_hours.get(hours_id)
        if hours is None:
            return "open"
        now = self.now()
        if is_open(hours.timezone, hours.weekly, hours.holidays, now):
            return "open"
        today = now.astimezone(ZoneInfo(hours.timezone)).date().isoformat()
        if any(holiday.get("date") == today for holiday in hours.holidays):
            return "holiday"
        return "closed"

    async def callback(self, node_id: str, node: CallbackNode) -> FlowOutcome:
        number = await self.callback_number(node)
        if number is None:
            self.path.append(PathStep(node_id, node.kind, "gave up"))
            await self.port.hangup()
            return HangupOutcome(reason=f"no callback number at {node_id}", **self.common())
        at = await self.callback_time(node) if node.ask_time else None
        self.path.append(PathStep(node_id, node.kind, at.isoformat() if at else "asap"))
        await self.play(node.done_prompt)
        return CallbackOutcome(number=number, at=at, queue_id=node.queue_id, **self.common())

    async def callback_number(self, node: CallbackNode) -> str | None:
        self.pending_key = None
        if self.context.caller:
            for attempt in range(node.retries + 1):
                key = await self.ask(node.confirm_prompt, max_digits=1, timeout_s=node.timeout_s,
                                     inter_digit_timeout_s=node.timeout_s, terminator=None)
                if key == "1":
                    return self.context.caller
                if key == "2":
                    break
                if attempt < node.retries:
                    await self.play(node.invalid_prompt)
            else:
                return None
        for attempt in range(node.retries + 1):
            digits = await self.ask(node.number_prompt, max_digits=node.max_digits,
                                    timeout_s=node.timeout_s, inter_digit_timeout_s=4.0,
                                    terminator="#")
            if digits.isdigit() and node.min_digits <= len(digits) <= node.max_digits:
                return digits
            if attempt < node.retries:
                await self.play(node.invalid_prompt)
        return None


def _next_time_of_day(digits: str, now: datetime, zone: ZoneInfo) -> datetime | None:
    """The first moment after `now` at HH:MM (4 digits) in `zone`, in UTC."""
    if len(digits) != 4 or not digits.isdigit():
        return None
    hour, minute = int(digits[:2]), int(digits[2:])
    if hour > 23 or minute > 59:
        return None
    local_now = now.astimezone(zone)
    day: date = local_now.date()
    for offset in (0, 1):
        start = datetime(day.year, day.month, day.day, hour, minute, tzinfo=zone)
        candidate = start + timedelta(days=offset)  # wall-clock arithmetic in `zone`
        if candidate > local_now:
            return candidate.astimezone(UTC)
    return None


async def run_flow(flow: Flow, port: CallPort, context: CallContext) -> FlowOutcome:
    """Walk `flow` (checked: `Flow.check`) for one call until it ends in an outcome.

    A `CallEnded` from the port (the caller hung up) ends the flow as `AbandonedOutcome`.
    """
    run = _Run(flow, port, context)
    try:
        return await run.run()
    except CallEnded:
        return AbandonedOutcome(**run.common())
