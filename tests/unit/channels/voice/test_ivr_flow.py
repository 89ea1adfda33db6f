"""The IVR flow model: what a flow may say, and every mistake reported with where it is."""

from __future__ import annotations

from typing import Any

import pytest

from omnicc.channels.voice.ivr import (
    Flow,
    InvalidFlow,
    Prompt,
    parse_flow,
    reference_problems,
)
from omnicc.core.errors import InvalidConfiguration


def _flow(**nodes: Any) -> dict[str, Any]:
    return {"entry": "welcome", "nodes": nodes}


GOOD = _flow(
    welcome={"kind": "play", "prompt": {"text": "Welcome"}, "next": "hours"},
    hours={"kind": "hours", "business_hours_id": "bh", "open": "menu", "closed": "vm",
           "holiday": "bye"},
    menu={"kind": "menu", "prompt": {"text": "1 support, 2 billing"},
          "choices": {"1": "support", "2": "number", "0": "menu"}, "fallback": "support"},
    number={"kind": "collect", "prompt": {"text": "Your customer number"},
            "attribute": "customer_number", "luhn": True, "next": "billing",
            "fallback": "billing"},
    support={"kind": "queue", "queue_id": "q-support"},
    billing={"kind": "queue", "queue_id": "q-billing", "prompt": {"file_id": "p1"}},
    vm={"kind": "voicemail", "max_s": 60, "queue_id": "q-support"},
    bye={"kind": "hangup", "prompt": {"text": "Closed today. Goodbye."}},
)


def _problems(definition: dict[str, Any]) -> dict[str, str]:
    with pytest.raises(InvalidFlow) as raised:
        parse_flow(definition)
    return {problem.field: problem.message for problem in raised.value.problems}


def test_a_well_formed_flow_parses_and_round_trips_through_json() -> None:
    flow = parse_flow(GOOD)
    assert flow.entry == "welcome"
    assert flow.language == "en"
    assert parse_flow(flow.as_json()) == flow
    assert flow.as_json()["nodes"]["bye"] == {
        "kind": "hangup", "prompt": {"text": "Closed today. Goodbye."}
    }


def test_a_menu_may_loop_back_to_itself_on_a_key() -> None:
    assert parse_flow(GOOD).nodes["menu"].choices["0"] == "menu"  # type: ignore[union-attr]


def test_every_dangling_reference_is_reported_with_its_field() -> None:
    definition = _flow(
        welcome={"kind": "menu", "prompt": {"text": "?"}, "choices": {"1": "nowhere"},
                 "fallback": "gone"},
    )
    assert _problems(definition) == {
        "nodes.welcome.choices.1": "'nowhere' is not a node of this flow",
        "nodes.welcome.fallback": "'gone' is not a node of this flow",
    }


def test_a_missing_entry_is_reported() -> None:
    definition = {"entry": "start", "nodes": {"bye": {"kind": "hangup"}}}
    assert _problems(definition) == {"entry": "'start' is not a node of this flow"}


def test_an_unreachable_node_is_an_error() -> None:
    definition = _flow(welcome={"kind": "hangup"}, orphan={"kind": "hangup"})
    assert _problems(definition) == {"nodes.orphan": "no path from the entry reaches this node"}


@pytest.mark.parametrize(
    "nodes",
    [
        {"welcome": {"kind": "play", "prompt": {"text": "a"}, "next": "again"},
         "again": {"kind": "play", "prompt": {"text": "b"}, "next": "welcome"}},
        {"welcome": {"kind": "menu", "prompt": {"text": "?"}, "choices": {"1": "bye"},
                     "fallback": "welcome"},
         "bye": {"kind": "hangup"}},
        {"welcome": {"kind": "hours", "business_hours_id": "bh", "open": "bye",
                     "closed": "sorry"},
         "sorry": {"kind": "set", "attributes": {"late": True}, "next": "welcome"},
         "bye": {"kind": "hangup"}},
    ],
    ids=["plays", "menu-fallback-to-itself", "hours-loop"],
)
def test_a_loop_without_a_key_from_the_caller_is_refused(nodes: dict[str, Any]) -> None:
    problems = _problems(_flow(**nodes))
    assert len(problems) == 1
    (message,) = problems.values()
    assert "needs no key from the caller" in message
    assert "welcome" in message


def test_structural_errors_are_reported_together_as_invalid_configuration() -> None:
    definition = _flow(
        welcome={"kind": "collect", "prompt": {"text": "n"}, "attribute": "n", "next": "bye",
                 "min_digits": 5, "max_digits": 3},
        bye={"kind": "teleport"},
    )
    with pytest.raises(InvalidConfiguration) as raised:
        parse_flow(definition)
    assert isinstance(raised.value, InvalidFlow)
    fields = [problem.field for problem in raised.value.problems]
    assert any(field.startswith("nodes.welcome") for field in fields)
    assert any(field.startswith("nodes.bye") for field in fields)


@pytest.mark.parametrize(
    ("prompt", "ok"),
    [({"text": "hi"}, True), ({"file_id": "p"}, True), ({}, False),
     ({"text": "hi", "file_id": "p"}, False), ({"text": "hi", "language": "not a tag"}, False)],
)
def test_a_prompt_is_text_or_a_file(prompt: dict[str, Any], ok: bool) -> None:
    if ok:
        Prompt.model_validate(prompt)
    else:
        with pytest.raises(ValueError):
            Prompt.model_validate(prompt)


def test_a_collect_pattern_must_be_a_regular_expression() -> None:
    definition = _flow(
        welcome={"kind": "collect", "prompt": {"text": "n"}, "attribute": "n", "next": "bye",
                 "pattern": "([0-9"},
        bye={"kind": "hangup"},
    )
    assert "regular expression" in " ".join(_problems(definition).values())


def test_menu_keys_are_single_dtmf_keys() -> None:
    definition = _flow(
        welcome={"kind": "menu", "prompt": {"text": "?"}, "choices": {"12": "bye"}},
        bye={"kind": "hangup"},
    )
    assert any("choices" in field for field in _problems(definition))


def test_unknown_fields_are_refused() -> None:
    definition = _flow(welcome={"kind": "hangup", "propmt": {"text": "typo"}})
    assert "nodes.welcome.hangup.propmt" in _problems(definition)


def test_references_to_the_tenants_configuration_are_checked() -> None:
    flow = parse_flow(GOOD)
    problems = reference_problems(
        flow, queue_ids={"q-support"}, business_hours_ids=set(), prompt_ids=set()
    )
    assert {(p.field, p.message) for p in problems} == {
        ("nodes.billing.queue_id", "no queue q-billing"),
        ("nodes.hours.business_hours_id", "no business hours bh"),
        ("nodes.billing.prompt.file_id", "no prompt file p1"),
    }
    assert reference_problems(flow, queue_ids={"q-support", "q-billing"},
                              business_hours_ids={"bh"}, prompt_ids={"p1"}) == []


def test_prompts_lists_every_prompt_with_its_place() -> None:
    where = [place for place, _ in parse_flow(GOOD).prompts()]
    assert "nodes.welcome.prompt" in where
    assert "nodes.bye.prompt" in where
    assert "nodes.billing.prompt" in where


def test_flow_check_returns_the_flow_when_valid() -> None:
    flow = Flow.model_validate(GOOD)
    assert flow.check() is flow


def test_attribute_values_are_finite_numbers() -> None:
    definition = _flow(
        welcome={"kind": "set", "attributes": {"score": float("nan")}, "next": "bye"},
        bye={"kind": "hangup"},
    )
    assert any(field.startswith("nodes.welcome") for field in _problems(definition))
