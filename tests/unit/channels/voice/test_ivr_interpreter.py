"""The IVR interpreter over a scripted call: the call plays nothing and answers each request
for digits from a script, so each test states exactly what the caller pressed."""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import pytest

from omnicc.channels.voice.ivr import (
    AbandonedOutcome,
    CallbackOutcome,
    CallContext,
    CallEnded,
    CallPort,
    Flow,
    HangupOutcome,
    OpeningHours,
    Prompt,
    QueueOutcome,
    VoicemailOutcome,
    luhn_valid,
    parse_flow,
    run_flow,
)
from omnicc.channels.voice.ivr.interpreter import MAX_STEPS
from omnicc.core.clock import ManualClock

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@dataclass(frozen=True)
class Barge:
    """A key the caller presses while an interruptible prompt plays."""

    key: str


@dataclass
class ScriptedCall:
    """`script` items: a string answers the next `collect_digits` ("" = nothing pressed in
    time), a `Barge` interrupts the next interruptible prompt. When the script runs out, the
    caller hangs up."""

    script: Iterable[str | Barge]
    played: list[Prompt] = field(default_factory=list)
    collects: list[dict[str, Any]] = field(default_factory=list)
    hung_up: bool = False
    _items: Iterator[str | Barge] = field(init=False)
    _next: str | Barge | None = field(init=False, default=None)

    def __post_init__(self) -> None:
        self._items = iter(self.script)
        self._next = next(self._items, None)

    def _take(self) -> str | Barge | None:
        item = self._next
        self._next = next(self._items, None)
        return item

    async def play(self, prompt: Prompt, *, interruptible: bool) -> str | None:
        self.played.append(prompt)
        if interruptible and isinstance(self._next, Barge):
            return self._take().key  # type: ignore[union-attr]
        return None

    async def collect_digits(self, *, max_digits: int, timeout_s: float,
                             inter_digit_timeout_s: float, terminator: str | None) -> str:
        self.collects.append({"max_digits": max_digits, "timeout_s": timeout_s,
                              "inter_digit_timeout_s": inter_digit_timeout_s,
                              "terminator": terminator})
        item = self._take()
        if item is None:
            raise CallEnded
        assert isinstance(item, str), f"the script expected a prompt to play, got {item}"
        assert len(item) <= max_digits, f"{item!r} is longer than {max_digits} digits"
        return item

    async def hangup(self) -> None:
        self.hung_up = True

    @property
    def texts(self) -> list[str | None]:
        return [prompt.text for prompt in self.played]


BERLIN_HOURS = OpeningHours(
    timezone="Europe/Berlin",
    weekly={day: [["09:00", "17:00"]] for day in ("mon", "tue", "wed", "thu", "fri")},
    holidays=(
        {"date": "2026-12-24", "name": "Christmas Eve"},
        {"date": "2026-12-31", "name": "New Year's Eve", "hours": [["09:00", "12:00"]]},
    ),
)


def _at(text: str) -> ManualClock:
    return ManualClock(datetime.fromisoformat(text).timestamp())


def _context(*, clock: ManualClock | None = None, caller: str = "+4930123456",
             **attributes: Any) -> CallContext:
    return CallContext(
        clock=clock or _at("2026-11-23T10:00:00+01:00"),  # a Monday, open
        caller=caller,
        dialled="+4930999000",
        business_hours={"bh": BERLIN_HOURS},
        timezone="Europe/Berlin",
        attributes=attributes,
    )


MENU = {
    "kind": "menu",
    "prompt": {"text": "Press 1 for support, 2 for billing."},
    "choices": {"1": "support", "2": "billing"},
    "invalid_prompt": {"text": "That is not an option."},
    "timeout_prompt": {"text": "Sorry, I did not hear a key."},
    "fallback": "operator",
}
QUEUES = {
    "support": {"kind": "queue", "queue_id": "q-support"},
    "billing": {"kind": "queue", "queue_id": "q-billing"},
    "operator": {"kind": "queue", "queue_id": "q-operator"},
}


def _flow(entry: str = "menu", **nodes: Any) -> Flow:
    return parse_flow({"entry": entry, "nodes": {**QUEUES, "menu": MENU, **nodes}})


async def _run(flow: Flow, script: Iterable[str | Barge],
               context: CallContext | None = None) -> tuple[Any, ScriptedCall]:
    call = ScriptedCall(script)
    port: CallPort = call
    return await run_flow(flow, port, context or _context()), call


async def test_a_menu_choice_routes_to_its_queue_and_is_in_the_path() -> None:
    outcome, call = await _run(_flow(), ["2"])
    assert isinstance(outcome, QueueOutcome)
    assert outcome.queue_id == "q-billing"
    assert outcome.path_json() == [
        {"node": "menu", "kind": "menu", "input": "2"},
        {"node": "billing", "kind": "queue", "input": "q-billing"},
    ]
    assert call.texts == ["Press 1 for support, 2 for billing."]
    assert call.collects == [{"max_digits": 1, "timeout_s": 5.0, "inter_digit_timeout_s": 5.0,
                              "terminator": None}]
    assert not call.hung_up


async def test_an_invalid_key_and_a_timeout_are_retried_with_their_prompts() -> None:
    outcome, call = await _run(_flow(), ["7", "", "1"])
    assert isinstance(outcome, QueueOutcome)
    assert outcome.queue_id == "q-support"
    assert [step.input for step in outcome.path] == ["7", "timeout", "1", "q-support"]
    assert call.texts == [
        "Press 1 for support, 2 for billing.", "That is not an option.",
        "Press 1 for support, 2 for billing.", "Sorry, I did not hear a key.",
        "Press 1 for support, 2 for billing.",
    ]


async def test_retries_used_up_go_to_the_fallback() -> None:
    outcome, _ = await _run(_flow(), ["9", "9", "9"])
    assert isinstance(outcome, QueueOutcome)
    assert outcome.queue_id == "q-operator"
    assert [step.input for step in outcome.path] == ["9", "9", "9", "q-operator"]


async def test_retries_used_up_without_a_fallback_hang_up() -> None:
    flow = parse_flow({"entry": "menu", "nodes": {
        "menu": {**MENU, "fallback": None, "retries": 0, "choices": {"1": "support"}},
        "support": QUEUES["support"],
    }})
    outcome, call = await _run(flow, [""])
    assert isinstance(outcome, HangupOutcome)
    assert outcome.reason == "no valid input at menu"
    assert call.hung_up


async def test_a_key_pressed_during_an_interruptible_greeting_answers_the_menu() -> None:
    flow = _flow(entry="hello", hello={"kind": "play", "prompt": {"text": "Welcome."},
                                      "next": "menu", "interruptible": True})
    outcome, call = await _run(flow, [Barge("2")])
    assert outcome.queue_id == "q-billing"
    assert call.texts == ["Welcome."]  # the menu prompt was skipped: the key was already in
    assert call.collects == []


async def test_a_key_during_a_menu_prompt_stops_it_and_chooses() -> None:
    outcome, call = await _run(_flow(), [Barge("1")])
    assert outcome.queue_id == "q-support"
    assert call.collects == []


async def test_keys_during_a_prompt_that_is_not_interruptible_are_not_kept() -> None:
    flow = _flow(entry="hello", hello={"kind": "play", "prompt": {"text": "Welcome."},
                                      "next": "menu"})
    outcome, call = await _run(flow, [Barge("2"), "1"])
    # The greeting ignores the barge-in; the menu prompt then consumes it.
    assert outcome.queue_id == "q-billing"
    assert call.texts == ["Welcome.", "Press 1 for support, 2 for billing."]


HOURS_NODES = {
    "hours": {"kind": "hours", "business_hours_id": "bh", "open": "support",
              "closed": "voicemail", "holiday": "bye"},
    "voicemail": {"kind": "voicemail", "prompt": {"text": "Leave a message."}, "max_s": 90,
                  "queue_id": "q-support"},
    "bye": {"kind": "hangup", "prompt": {"text": "We are closed for the holiday."}},
}


@pytest.mark.parametrize(
    ("moment", "state", "outcome_type"),
    [
        ("2026-11-23T10:00:00+01:00", "open", QueueOutcome),  # Monday morning
        ("2026-11-23T17:00:00+01:00", "closed", VoicemailOutcome),  # closes at 17:00 sharp
        ("2026-11-22T10:00:00+01:00", "closed", VoicemailOutcome),  # Sunday
        ("2026-11-23T08:30:00+00:00", "open", QueueOutcome),  # 09:30 in Berlin
        ("2026-12-24T10:00:00+01:00", "holiday", HangupOutcome),  # Thursday, a holiday
        ("2026-12-31T11:00:00+01:00", "open", QueueOutcome),  # holiday with morning hours
        ("2026-12-31T13:00:00+01:00", "holiday", HangupOutcome),
    ],
)
async def test_business_hours_branch_open_closed_and_holiday(
    moment: str, state: str, outcome_type: type
) -> None:
    flow = parse_flow({"entry": "hours", "nodes": {"support": QUEUES["support"], **HOURS_NODES}})
    outcome, call = await _run(flow, [], _context(clock=_at(moment)))
    assert isinstance(outcome, outcome_type)
    assert outcome.path[0].input == state
    if isinstance(outcome, VoicemailOutcome):
        assert (outcome.max_s, outcome.queue_id) == (90, "q-support")
        assert call.texts == ["Leave a message."]
    if isinstance(outcome, HangupOutcome):
        assert call.texts == ["We are closed for the holiday."]
        assert call.hung_up


async def test_a_holiday_without_its_own_branch_takes_closed() -> None:
    nodes = {"support": QUEUES["support"], **HOURS_NODES}
    nodes["hours"] = {**nodes["hours"], "holiday": None}
    del nodes["bye"]
    outcome, _ = await _run(parse_flow({"entry": "hours", "nodes": nodes}), [],
                            _context(clock=_at("2026-12-24T10:00:00+01:00")))
    assert isinstance(outcome, VoicemailOutcome)


COLLECT = {
    "kind": "collect",
    "prompt": {"text": "Please type your customer number and press hash."},
    "attribute": "customer_number",
    "min_digits": 6,
    "max_digits": 10,
    "luhn": True,
    "invalid_prompt": {"text": "That number is not valid."},
    "next": "support",
    "fallback": "operator",
}


def _collect_flow(node: dict[str, Any]) -> Flow:
    return parse_flow({"entry": "number", "nodes": {
        "number": node, "support": QUEUES["support"], "operator": QUEUES["operator"]}})


async def test_collect_keeps_a_luhn_valid_number_in_an_attribute() -> None:
    outcome, call = await _run(_collect_flow(COLLECT), ["7992739870", "7992739875"])
    assert isinstance(outcome, QueueOutcome)
    assert outcome.attributes == {"customer_number": "7992739875"}
    assert [step.input for step in outcome.path] == ["7992739870", "7992739875", "q-support"]
    assert call.texts.count("That number is not valid.") == 1
    assert call.collects[0] == {"max_digits": 10, "timeout_s": 8.0,
                                "inter_digit_timeout_s": 4.0, "terminator": "#"}


async def test_collect_refuses_too_short_and_pattern_mismatches_then_falls_back() -> None:
    node = {**COLLECT, "luhn": False, "pattern": "^9[0-9]*$", "retries": 1}
    outcome, _ = await _run(_collect_flow(node), ["12345", "1234567"])
    assert isinstance(outcome, QueueOutcome)
    assert outcome.queue_id == "q-operator"
    assert "customer_number" not in outcome.attributes


async def test_a_sensitive_collect_keeps_the_digits_out_of_the_path() -> None:
    node = {**COLLECT, "sensitive": True}
    outcome, _ = await _run(_collect_flow(node), ["7992739875"])
    assert outcome.attributes["customer_number"] == "7992739875"
    assert outcome.path[0].input == "10 digits"
    assert "7992739875" not in str(outcome.path_json())


async def test_collect_counts_a_key_pressed_during_its_prompt_as_the_first_digit() -> None:
    outcome, call = await _run(_collect_flow(COLLECT),
                               [Barge("7"), "992739875"])
    assert outcome.attributes["customer_number"] == "7992739875"
    assert call.collects[0]["max_digits"] == 9


async def test_the_language_node_changes_the_prompts_and_the_task() -> None:
    flow = _flow(
        entry="choose",
        choose={"kind": "menu", "prompt": {"text": "For English press 1. Für Deutsch die 2.",
                                           "language": "en"},
                "choices": {"1": "menu", "2": "german"}},
        german={"kind": "language", "language": "de", "next": "menu"},
    )
    outcome, call = await _run(flow, ["2", "1"])
    assert isinstance(outcome, QueueOutcome)
    assert outcome.language == "de"
    assert [prompt.language for prompt in call.played] == ["en", "de"]
    assert [step.kind for step in outcome.path] == ["menu", "language", "menu", "queue"]


async def test_prompts_take_the_flows_language_and_voice_and_fill_in_placeholders() -> None:
    flow = parse_flow({"entry": "hi", "language": "fr", "nodes": {
        "hi": {"kind": "play", "next": "bye",
               "prompt": {"text": "Number {caller}, customer {customer_number}, {unknown}.",
                          "voice": "f2"}},
        "bye": {"kind": "hangup"},
    }})
    _, call = await _run(flow, [], _context(customer_number="42"))
    assert call.played == [Prompt(text="Number plus 4 9 3 0 1 2 3 4 5 6, customer 42, {unknown}.",
                                  language="fr", voice="f2")]


async def test_set_gives_the_task_attributes_and_a_priority() -> None:
    flow = _flow(entry="vip", vip={"kind": "set", "attributes": {"vip": True, "tier": "gold"},
                                   "priority": 5, "next": "menu"})
    outcome, _ = await _run(flow, ["1"], _context(segment="b2b"))
    assert outcome.attributes == {"segment": "b2b", "vip": True, "tier": "gold"}
    assert outcome.priority == 5


async def test_without_a_set_node_the_priority_is_the_queues() -> None:
    outcome, _ = await _run(_flow(), ["1"])
    assert outcome.priority is None


async def test_a_queue_node_may_announce_the_wait() -> None:
    flow = parse_flow({"entry": "q", "nodes": {
        "q": {"kind": "queue", "queue_id": "q1", "prompt": {"text": "Please hold."}}}})
    outcome, call = await _run(flow, [])
    assert outcome.queue_id == "q1"
    assert call.texts == ["Please hold."]


CALLBACK = {"kind": "callback", "queue_id": "q-callback"}


async def test_a_callback_to_the_confirmed_caller_number_as_soon_as_possible() -> None:
    flow = parse_flow({"entry": "cb", "nodes": {"cb": CALLBACK}})
    outcome, call = await _run(flow, ["1"])
    assert isinstance(outcome, CallbackOutcome)
    assert (outcome.number, outcome.at, outcome.queue_id) == ("+4930123456", None, "q-callback")
    assert call.texts[0] == ("We will call you back on plus 4 9 3 0 1 2 3 4 5 6. "
                             "Press 1 to confirm or 2 to enter another number.")
    assert call.texts[-1] == "Thank you, we will call you back. Goodbye."


async def test_a_callback_to_another_number_at_a_chosen_time() -> None:
    flow = parse_flow({"entry": "cb", "nodes": {"cb": {**CALLBACK, "ask_time": True,
                                                         "business_hours_id": "bh"}}})
    # Monday 10:00 in Berlin: 0930 is past, so tomorrow; 2000 is outside the hours.
    outcome, _ = await _run(flow, ["2", "12", "0301234567", "2000", "0930"])
    assert isinstance(outcome, CallbackOutcome)
    assert outcome.number == "0301234567"
    assert outcome.at == datetime(2026, 11, 24, 8, 30, tzinfo=UTC)


async def test_a_withheld_caller_is_asked_for_a_number_and_may_skip_the_time() -> None:
    flow = parse_flow({"entry": "cb", "nodes": {"cb": {**CALLBACK, "ask_time": True}}})
    outcome, call = await _run(flow, ["0301234567", ""], _context(caller=""))
    assert isinstance(outcome, CallbackOutcome)
    assert (outcome.number, outcome.at) == ("0301234567", None)
    assert not any("to confirm" in (text or "") for text in call.texts)


async def test_a_callback_without_a_number_hangs_up() -> None:
    flow = parse_flow({"entry": "cb", "nodes": {"cb": {**CALLBACK, "retries": 1}}})
    outcome, call = await _run(flow, ["5", "5"])
    assert isinstance(outcome, HangupOutcome)
    assert call.hung_up


async def test_a_hangup_node_says_goodbye_and_hangs_up() -> None:
    flow = parse_flow({"entry": "bye", "nodes": {
        "bye": {"kind": "hangup", "prompt": {"text": "Goodbye."}}}})
    outcome, call = await _run(flow, [])
    assert isinstance(outcome, HangupOutcome)
    assert call.texts == ["Goodbye."]
    assert call.hung_up


async def test_the_caller_hanging_up_abandons_with_the_path_so_far() -> None:
    outcome, call = await _run(_flow(), ["7"])
    assert isinstance(outcome, AbandonedOutcome)
    assert [step.input for step in outcome.path] == ["7"]
    assert not call.hung_up


async def test_a_caller_going_round_in_circles_is_hung_up_eventually() -> None:
    flow = parse_flow({"entry": "menu", "nodes": {
        "menu": {"kind": "menu", "prompt": {"text": "Press 1 to hear this again."},
                 "choices": {"1": "menu", "2": "bye"}},
        "bye": {"kind": "hangup"}}})
    outcome, call = await _run(flow, itertools.repeat("1"))
    assert isinstance(outcome, HangupOutcome)
    assert len(call.collects) == MAX_STEPS
    assert call.hung_up


@pytest.mark.parametrize(
    ("digits", "valid"),
    [("79927398713", True), ("79927398750", False), ("4111111111111111", True),
     ("0", False), ("12a4", False), ("", False)],
)
def test_luhn(digits: str, valid: bool) -> None:
    assert luhn_valid(digits) is valid


async def test_a_key_typed_ahead_survives_silent_nodes_and_skips_interruptible_prompts() -> None:
    flow = _flow(
        entry="hello",
        hello={"kind": "play", "prompt": {"text": "Welcome."}, "next": "vip",
               "interruptible": True},
        vip={"kind": "set", "attributes": {"line": "main"}, "next": "hours"},
        hours={"kind": "hours", "business_hours_id": "bh", "open": "news", "closed": "news"},
        news={"kind": "play", "prompt": {"text": "News."}, "next": "menu",
              "interruptible": True},
    )
    outcome, call = await _run(flow, [Barge("2")])
    assert outcome.queue_id == "q-billing"
    assert call.texts == ["Welcome."]
    assert [step.input for step in outcome.path] == ["2", None, "open", "skipped", "2",
                                                     "q-billing"]
