"""Eligibility expressions: grammar, type-safe semantics, task binding and error positions."""

from __future__ import annotations

import math
import pickle
from collections.abc import Iterator, Mapping

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from omnicc.core.errors import ExpressionError, InvalidConfiguration
from omnicc.core.expression import TRUE, AgentPredicate, Expression, compile_expression


def holds(
    source: str,
    attributes: Mapping[str, object] | None = None,
    skills: Mapping[str, int] | None = None,
    task: Mapping[str, object] | None = None,
) -> bool:
    """Evaluate both ways (directly and through bind) and insist that they agree."""
    expression = compile_expression(source)
    attributes, skills = attributes or {}, skills or {}
    direct = expression.evaluate(attributes, skills, task)
    assert expression.bind(task)(attributes, skills) is direct
    return direct


class Untouchable(Mapping[str, object]):
    """An agent whose attributes must not be read: proves a predicate was decided by the task."""

    def __getitem__(self, key: str) -> object:
        raise AssertionError(f"read agent attribute {key!r}")

    def __iter__(self) -> Iterator[str]:
        raise AssertionError("iterated agent attributes")

    def __len__(self) -> int:
        raise AssertionError("measured agent attributes")


# --- comparisons -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("level == 3", True),
        ("level == 4", False),
        ("level != 4", True),
        ("level != 3", False),
        ("level < 4", True),
        ("level < 3", False),
        ("level <= 3", True),
        ("level <= 2", False),
        ("level > 2", True),
        ("level > 3", False),
        ("level >= 3", True),
        ("level >= 4", False),
        ("team == 'billing'", True),
        ('team == "sales"', False),
        ('team < "c"', True),
        ('team >= "c"', False),
        ("level in [1, 2, 3]", True),
        ("level in [4, 5]", False),
        ("level not in [4, 5]", True),
        ("level not in [3]", False),
        ('languages contains "fi"', True),
        ('languages contains "de"', False),
        ('"sv" in languages', True),
        ('"de" not in languages', True),
        ("rating == 4.5", True),
        ("rating > 4", True),
        ("3 == level", True),
        ("4 > level", True),
    ],
)
def test_every_comparison_operator(source: str, expected: bool) -> None:
    agent = {"level": 3, "team": "billing", "languages": ["fi", "sv"], "rating": 4.5}
    assert holds(source, agent) is expected


def test_int_and_float_compare_as_numbers() -> None:
    assert holds("x == 1.0", {"x": 1})
    assert holds("x == 1", {"x": 1.0})
    assert holds("x < 1.5", {"x": 1})
    assert holds("x in [1.0, 2.0]", {"x": 2})
    assert holds("x == -0.5", {"x": -0.5})


@pytest.mark.parametrize(
    ("source", "attributes"),
    [
        ("x >= 3", {"x": None}),
        ("x >= 3", {}),
        ("x < 3", {"x": "a"}),
        ('"a" < 3', {}),
        ("x > 0", {"x": True}),
        ("x < [1]", {"x": [0]}),
        ("x <= null", {"x": None}),
        ("x == 1", {"x": True}),
        ("x == true", {"x": 1}),
        ("x == 0", {"x": False}),
        ('x == "1"', {"x": 1}),
        ("x == null", {"x": 0}),
        ("x in 5", {"x": 5}),
        ('x in "abc"', {"x": "a"}),
        ("x in y", {"x": "a", "y": None}),
        ('x contains "a"', {"x": "abc"}),
        ("x contains 1", {"x": 1}),
        ("1 in [true]", {}),
        ("true in [1]", {}),
        ("x in [1]", {"x": True}),
        ("x in y", {"x": True, "y": [1]}),
        ("x == y", {"x": {"a": 1}, "y": [["a", 1]]}),
    ],
)
def test_incompatible_types_never_match_and_never_raise(
    source: str, attributes: dict[str, object]
) -> None:
    assert holds(source, attributes) is False


def test_inequality_is_the_negation_of_equality() -> None:
    assert holds('team != "billing"', {})
    assert holds("x != 1", {"x": True})
    assert holds("x not in 5", {"x": 5})


def test_collections_compare_element_by_element() -> None:
    assert holds("x == [1, 'a', [true, null]]", {"x": [1.0, "a", (True, None)]})
    assert not holds("x == [1, 2]", {"x": [1, 2, 3]})
    assert not holds("x == [1]", {"x": [True]})
    assert holds("x == y", {"x": {"a": [1]}, "y": {"a": [1.0]}})
    assert holds("x == y", {"x": {1, 2}, "y": frozenset({2, 1})})
    assert holds("[1, 2] in x", {"x": [[0], [1, 2]]})
    assert holds("[1, 2] in [[0], [1, 2]]")


def test_membership_in_sets_tuples_and_mapping_keys() -> None:
    assert holds("'fi' in x", {"x": {"fi", "sv"}})
    assert holds("2 in x", {"x": (1, 2)})
    assert holds("'fi' in x", {"x": {"fi": "Finnish"}})
    assert not holds("'Finnish' in x", {"x": {"fi": "Finnish"}})
    assert holds("x contains 2", {"x": frozenset({2})})


def test_nan_equals_nothing() -> None:
    assert not holds("x == y", {"x": math.nan, "y": math.nan})
    assert not holds("x >= 0", {"x": math.nan})


def test_alien_values_do_not_break_evaluation() -> None:
    class Hostile:
        def __eq__(self, other: object) -> bool:
            raise RuntimeError("no")

        def __bool__(self) -> bool:
            raise RuntimeError("no")

        __hash__ = None  # type: ignore[assignment]

    hostile = Hostile()
    assert not holds("x == y", {"x": hostile, "y": hostile})
    assert not holds("x", {"x": hostile})
    assert not holds("'a' in x", {"x": [hostile]})
    assert not holds("x in ['a']", {"x": hostile})
    assert compile_expression("task.x == 1").task_binding({"x": hostile})


# --- boolean structure -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("t or t and f", True),  # and binds tighter than or
        ("(t or t) and f", False),
        ("f and f or t", True),
        ("f and (f or t)", False),
        ("not f and f", False),  # not binds tighter than and
        ("not (f and f)", True),
        ("not t or t", True),
        ("not (t or t)", False),
        ("not not t", True),
        ("not level == 3", False),  # comparison binds tighter than not
        ("not level == 4", True),
        ("t and t and t and t", True),
        ("t and t and f and t", False),
        ("f or f or f or t", True),
        ("f or f or f or f", False),
        ("((t))", True),
        ("(level == 3) == true", True),
        ("(level > 3) == false", True),
    ],
)
def test_precedence_and_parentheses(source: str, expected: bool) -> None:
    assert holds(source, {"t": True, "f": False, "level": 3}) is expected


@pytest.mark.parametrize(
    ("value", "is_truthy"),
    [
        (True, True),
        (False, False),
        (None, False),
        (0, False),
        (2, True),
        (0.0, False),
        ("", False),
        ("no", True),
        ([], False),
        (["x"], True),
        ({}, False),
    ],
)
def test_a_bare_name_is_truthiness(value: object, is_truthy: bool) -> None:
    assert holds("vip", {"vip": value}) is is_truthy
    assert holds("not vip", {"vip": value}) is not is_truthy
    assert holds("vip and skills.sales >= 2", {"vip": value}, {"sales": 2}) is is_truthy
    assert holds("vip or false", {"vip": value}) is is_truthy


def test_missing_attribute_is_falsy_and_null() -> None:
    assert not holds("vip")
    assert holds("vip == null")
    assert holds("profile.tier == null", {"profile": "gold"})


def test_literal_expressions() -> None:
    assert holds("true")
    assert not holds("false")
    assert not holds("null")
    assert holds("1")
    assert not holds("0")
    assert holds("[0]")
    assert not holds("[]")
    assert holds("'x'")
    assert TRUE.evaluate({}, {})
    assert TRUE.bind(None)({}, {})
    assert TRUE.source == "true"


# --- names -------------------------------------------------------------------------------------


def test_skill_levels() -> None:
    skills = {"finnish": 3, "sales": 0}
    assert holds("skills.finnish >= 3", {}, skills)
    assert not holds("skills.finnish > 3", {}, skills)
    assert holds("skills.finnish == 3.0", {}, skills)
    assert holds("skills.german == 0", {}, skills)
    assert not holds("skills.german >= 1", {}, skills)
    assert holds("skills.german < 1", {}, skills)
    assert holds("3 <= skills.finnish", {}, skills)
    assert holds("4 > skills.finnish", {}, skills)
    assert not holds("skills.finnish", {}, {"finnish": 0})
    assert holds("skills.finnish", {}, skills)
    assert not holds('skills.finnish == "3"', {}, skills)
    assert not holds("skills.finnish >= null", {}, skills)


def test_skills_mapping_means_proficiency_of_at_least_one() -> None:
    skills = {"finnish": 3, "sales": 0}
    assert holds('"finnish" in skills', {}, skills)
    assert not holds('"sales" in skills', {}, skills)
    assert not holds('"german" in skills', {}, skills)
    assert holds('"german" not in skills', {}, skills)
    assert not holds('"finnish" not in skills', {}, skills)
    assert holds('skills contains "finnish"', {}, skills)
    assert not holds("1 in skills", {}, skills)
    assert holds("task.skill in skills", {}, skills, {"skill": "finnish"})
    assert not holds("task.skill in skills", {}, skills, {"skill": "sales"})
    assert not holds("task.skill in skills", {}, skills, {"skill": 3})
    assert holds("skill in skills", {"skill": "finnish"}, skills)
    assert holds("skills", {}, skills)
    assert not holds("skills")


def test_odd_skill_values_do_not_raise() -> None:
    odd: dict[str, object] = {"finnish": None, "sales": 2.5}
    assert not holds("skills.finnish >= 1", {}, odd)  # type: ignore[arg-type]
    assert holds("skills.sales > 2", {}, odd)  # type: ignore[arg-type]
    assert not holds('"finnish" in skills', {}, odd)  # type: ignore[arg-type]


def test_nested_agent_attributes() -> None:
    agent = {"profile": {"address": {"city": "Oulu"}, "tier": 2}, "team": "billing"}
    assert holds('profile.address.city == "Oulu"', agent)
    assert holds("profile.tier >= 2", agent)
    assert holds("profile.address.zip == null", agent)
    assert holds("profile.tier.x == null", agent)
    assert holds("missing.a.b == null", agent)
    assert holds("team.name == null", agent)


def test_names_may_use_unicode_letters_digits_and_underscores() -> None:
    assert holds("äidinkieli == 'suomi'", {"äidinkieli": "suomi"})
    assert holds("_a1.b_2 == 1", {"_a1": {"b_2": 1}})
    assert holds("skills.tier_2 >= 1", {}, {"tier_2": 1})
    assert holds("task.in == 1", {}, {}, {"in": 1})  # keywords are fine after a dot


# --- literals ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("literal", "value"),
    [
        ("0", 0),
        ("42", 42),
        ("007", 7),
        ("-3", -3),
        ("- 3", -3),
        ("2.5", 2.5),
        ("-0.25", -0.25),
        ("1e3", 1000.0),
        ("1.5E-2", 0.015),
        ("2e+2", 200.0),
        ("'single'", "single"),
        ('"double"', "double"),
        ('"it\'s"', "it's"),
        ("'it\\'s'", "it's"),
        ('"say \\"hi\\""', 'say "hi"'),
        ('"back\\\\slash"', "back\\slash"),
        ('"a\\nb\\tc\\rd"', "a\nb\tc\rd"),
        ('"\\u00e4iti"', "äiti"),
        ('"äiti"', "äiti"),
        ('""', ""),
        ("true", True),
        ("false", False),
        ("null", None),
        ("[]", []),
        ("[1, 'a', null]", [1, "a", None]),
        ("[[1, 2], [], [-1]]", [[1, 2], [], [-1]]),
    ],
)
def test_literals(literal: str, value: object) -> None:
    assert holds(f"x == {literal}", {"x": value})
    assert holds(f"{literal} == x", {"x": value})
    assert holds(f"x == y and x == {literal}", {"x": value, "y": value})


def test_whitespace_is_free() -> None:
    assert holds("\n\tskills.a>=1 and(b==2)\n", {"b": 2}, {"a": 1})
    assert holds("a==[1,2]", {"a": [1, 2]})


# --- task references, bind and task_binding -----------------------------------------------------


def test_task_refs_are_distinct_sorted_paths() -> None:
    expression = compile_expression(
        "task.language in languages and task.customer.tier >= 2 "
        "and (task.language == 'fi' or task.channel == 'voice')"
    )
    assert expression.task_refs == ("task.channel", "task.customer.tier", "task.language")
    assert compile_expression("skills.a >= 1").task_refs == ()


def test_task_values_are_read_by_path() -> None:
    task = {"language": "fi", "customer": {"tier": 3, "tags": ["vip"]}}
    assert holds("task.language in languages", {"languages": ["fi"]}, {}, task)
    assert not holds("task.language in languages", {"languages": ["sv"]}, {}, task)
    assert holds("task.customer.tier >= 3", {}, {}, task)
    assert holds('task.customer.tags contains "vip"', {}, {}, task)
    assert holds("task.customer.missing == null", {}, {}, task)
    assert holds("task.language.x == null", {}, {}, task)
    assert holds("skills.x >= task.customer.tier", {}, {"x": 4}, task)


def test_without_a_task_every_task_value_is_null() -> None:
    assert holds("task.language == null")
    assert holds("task.language in languages", {"languages": [None, "fi"]})
    assert not holds("task.language == 'fi'", {}, {}, None)
    expression = compile_expression("task.language == null and task.x.y == null")
    assert expression.evaluate({}, {}) is True
    assert expression.task_binding(None) == (None, None)


def test_bind_folds_task_values_into_constants() -> None:
    expression = compile_expression('task.channel == "voice" and skills.phone >= 1')
    assert expression.bind({"channel": "email"})(Untouchable(), {}) is False
    decided = compile_expression('task.channel == "voice" or team == "x"')
    assert decided.bind({"channel": "voice"})(Untouchable(), {}) is True
    predicate = expression.bind({"channel": "voice"})
    assert predicate({}, {"phone": 1}) is True
    assert predicate({}, {"phone": 0}) is False


def test_bind_snapshots_the_task() -> None:
    expression = compile_expression("language == task.language")
    task = {"language": "fi"}
    predicate = expression.bind(task)
    task["language"] = "sv"
    assert predicate({"language": "fi"}, {}) is True
    assert expression.evaluate({"language": "sv"}, {}, task) is True


def test_bind_without_task_refs_reuses_one_predicate() -> None:
    expression = compile_expression("skills.a >= 2")
    assert expression.bind(None) is expression.bind({"language": "fi"})
    assert expression.task_binding({"language": "fi"}) == ()


def test_task_binding_is_hashable_and_tells_types_apart() -> None:
    expression = compile_expression("task.x in languages or task.y.z == 1")
    assert expression.task_binding({"x": "fi", "y": {"z": 1}}) == ("fi", 1)
    assert expression.task_binding({"x": ["fi", ["sv"]]}) == (("fi", ("sv",)), None)
    nested = expression.task_binding({"x": {"b": [1], "a": {"c": 2}}, "y": {"z": {1, 2}}})
    reordered = expression.task_binding({"x": {"a": {"c": 2}, "b": (1,)}, "y": {"z": {2, 1}}})
    assert nested == reordered
    assert hash(nested) == hash(reordered)
    distinct = [
        {"x": True},
        {"x": 1},
        {"x": "1"},
        {"x": None},
        {"x": {"a": 1}},
        {"x": [["a", 1]]},
        {"x": [True]},
        {"x": [1]},
    ]
    keys = {expression.task_binding(task) for task in distinct}
    assert len(keys) == len(distinct)
    # Values that the language treats as equal may share a key (and a bound predicate).
    assert expression.task_binding({"x": 1}) == expression.task_binding({"x": 1.0})


def test_task_binding_is_a_sound_cache_key() -> None:
    expression = compile_expression("task.x == flag or task.x in tags")
    cache: dict[tuple[object, ...], AgentPredicate] = {}
    agent = {"flag": True, "tags": []}
    for task in ({"x": True}, {"x": 1}, {"x": [1]}, {"x": (1,)}, {"x": 1.0}):
        key = expression.task_binding(task)
        predicate = cache.setdefault(key, expression.bind(task))
        assert predicate(agent, {}) is expression.evaluate(agent, {}, task)


# --- the Expression object -----------------------------------------------------------------------


def test_expression_value_semantics() -> None:
    first = compile_expression("skills.a >= 1")
    assert first == compile_expression("skills.a >= 1")
    assert first != compile_expression("skills.a >= 2")
    assert len({first, compile_expression("skills.a >= 1")}) == 1
    assert repr(first) == "Expression('skills.a >= 1')"
    assert str(first) == "skills.a >= 1"
    restored = pickle.loads(pickle.dumps(first))
    assert isinstance(restored, Expression)
    assert restored == first
    assert restored.evaluate({}, {"a": 1})


def test_evaluate_returns_a_real_bool() -> None:
    for source in ("x", "x and y", "x or y", "x == 1", "true", "x in [1]", "skills.a"):
        result = compile_expression(source).evaluate({"x": 1, "y": "s"}, {"a": 2})
        assert type(result) is bool


# --- errors ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("source", "position", "message"),
    [
        ("", 0, "empty expression"),
        ("   ", 3, "empty expression"),
        ("level >=", 8, "expected a value after '>='"),
        ("level >= ", 9, "expected a value after '>='"),
        ("level >= )", 9, "expected a value after '>='"),
        ("level >= and x", 9, "expected a value after '>='"),
        ("a == 1 and", 10, "expected a value after 'and'"),
        ("a or or b", 5, "expected a value after 'or'"),
        ("not", 3, "expected a value after 'not'"),
        ("x in", 4, "expected a value after 'in'"),
        ("x not in ]", 9, "expected a value after 'not in'"),
        ("a == not b", 5, "expected a value after '=='"),
        ("== 3", 0, "expected a value, found '=='"),
        ("and", 0, "expected a value, found 'and'"),
        (")", 0, "expected a value, found ')'"),
        ("()", 1, "expected a value after '('"),
        ('name == "abc', 8, "unterminated string"),
        ("name == 'abc\\'", 8, "unterminated string"),
        ("'abc\\", 0, "unterminated string"),
        ("a == 1 $", 7, "unexpected character '$'"),
        ("a == `b`", 5, "unexpected character '`'"),
        ("a.b@c", 3, "unexpected character '@'"),
        ("(a == 1", 7, "expected ')'"),
        ("(a == 1 b)", 8, "expected ')'"),
        ("((a)", 4, "expected ')'"),
        ("a == 1)", 6, "unmatched ')'"),
        ("a = 1", 2, "unknown operator '=' (did you mean '==')"),
        ("a === 1", 2, "unknown operator '===' (did you mean '==')"),
        ("a !== 1", 2, "unknown operator '!==' (did you mean '!=')"),
        ("a => 1", 2, "unknown operator '=>' (did you mean '>=')"),
        ("a =< 1", 2, "unknown operator '=<' (did you mean '<=')"),
        ("a <> 1", 2, "unknown operator '<>' (did you mean '!=')"),
        ("a && b", 2, "unknown operator '&&' (did you mean 'and')"),
        ("a || b", 2, "unknown operator '||' (did you mean 'or')"),
        ("a & b", 2, "unknown operator '&' (did you mean 'and')"),
        ("!a", 0, "unknown operator '!' (did you mean 'not')"),
        ("a < b < c", 6, "comparisons cannot be chained"),
        ("1 == a == 1", 7, "comparisons cannot be chained"),
        ("a == b in c", 7, "comparisons cannot be chained"),
        ("a in b not in c", 7, "comparisons cannot be chained"),
        ("a < b contains c", 6, "comparisons cannot be chained"),
        ("a not b", 6, "expected 'in' after 'not'"),
        ("a not", 5, "expected 'in' after 'not'"),
        ("a b", 2, "unexpected name 'b'"),
        ("a == 1 'x'", 7, "unexpected string 'x'"),
        ("a == 1 2", 7, "unexpected number 2"),
        ("a == 1 [", 7, "unexpected '['"),
        ("x == True", 5, "unknown name 'True' (keywords are lower-case: did you mean 'true')"),
        ("x == NULL", 5, "did you mean 'null'"),
        ("a AND b", 2, "unknown name 'AND'"),
        ("Not a", 0, "unknown name 'Not' (keywords are lower-case: did you mean 'not')"),
        ("not.x == 1", 0, "'not' is a reserved word and cannot start a name"),
        ("a.", 2, "expected a name after '.'"),
        ("a..b", 2, "expected a name after '.'"),
        ("skills.3d >= 1", 7, "expected a name after '.'"),
        ("a. b", 2, "expected a name after '.'"),
        ("skills.a.b >= 1", 8, "skill names cannot contain '.'"),
        ("task == 1", 0, "'task' needs an attribute name"),
        ("3x == 1", 0, "invalid number '3x'"),
        ("x == 1.2.3", 5, "invalid number '1.2.3'"),
        ("x == 1.", 5, "invalid number '1.'"),
        ("x == 1e", 5, "invalid number '1e'"),
        ("x == 1" + "0" * 5000, 5, "number too long"),
        ('x == "\\q"', 6, "unknown escape '\\q'"),
        ('x == "\\u12"', 6, "invalid unicode escape"),
        ('x == "\\u12zz"', 6, "invalid unicode escape"),
        ("x == -", 6, "expected a number after '-'"),
        ("x == -'a'", 6, "expected a number after '-'"),
        ("x == --1", 6, "expected a number after '-'"),
        ("x in [1, 2", 10, "expected ',' or ']'"),
        ("x in [1 2]", 8, "expected ',' or ']'"),
        ("x in [1,]", 8, "expected a value after ','"),
        ("x in [,]", 6, "expected a value after '['"),
        ("x in [a]", 6, "list items must be literal values"),
        ("x in [(1)]", 6, "expected a value after '['"),
        ("(" * 101 + "a" + ")" * 101, 100, "nested too deeply"),
        ("not " * 101 + "a", 400, "nested too deeply"),
        ("x == " + "[" * 101 + "]" * 101, 105, "nested too deeply"),
    ],
)
def test_parse_errors_name_the_position(source: str, position: int, message: str) -> None:
    with pytest.raises(ExpressionError) as caught:
        compile_expression(source)
    error = caught.value
    assert message in error.reason
    assert error.position == position
    assert error.source == source


def test_an_expression_error_is_a_configuration_error_with_a_pointer() -> None:
    with pytest.raises(InvalidConfiguration) as caught:
        compile_expression("level >= ")
    assert str(caught.value).endswith("  level >= \n           ^")


def test_deep_but_reasonable_nesting_compiles() -> None:
    assert holds("(" * 99 + "a" + ")" * 99, {"a": 1})
    assert holds("not " * 98 + "a", {"a": 1})


def test_long_chains_compile() -> None:
    assert holds(" and ".join(["a"] * 2000), {"a": 1})
    assert holds(" or ".join(["b"] * 2000 + ["a"]), {"a": 1})


# --- properties --------------------------------------------------------------------------------

NAMES = ("team", "vip", "level", "languages", "profile")
SKILLS = ("finnish", "sales", "tier2")
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-3, 6),
    st.floats(-3, 6, allow_nan=False),
    st.sampled_from(["fi", "sv", "billing", "sales", ""]),
)
values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.sampled_from(NAMES), inner),
    max_leaves=6,
)
agent_attributes = st.dictionaries(st.sampled_from(NAMES), values)
agent_skills = st.dictionaries(st.sampled_from(SKILLS), st.integers(0, 5))
tasks = st.none() | st.dictionaries(st.sampled_from(("language", "tier", "skill", "tags")), values)

FIXED_EXPRESSIONS = [
    compile_expression(source)
    for source in (
        'skills.finnish >= 3 and team == "billing"',
        "vip and skills.sales >= 2 or not level",
        "task.language in languages or task.language == team",
        "task.skill in skills and skills.tier2 >= task.tier",
        "languages contains task.language and not (task.tags contains 'vip')",
        "profile.team == task.language or level not in [1, 2.5, 'fi', null, true, [1]]",
        "task.tier > level and task.tier != null or 'finnish' not in skills",
        "task.tags == languages or (task.tier < 3 and profile.level >= task.tier)",
        "team in task.tags and task.language not in ['fi', 'sv']",
    )
]


@given(
    expression=st.sampled_from(FIXED_EXPRESSIONS),
    attributes=agent_attributes,
    skills=agent_skills,
    task=tasks,
)
def test_bound_predicate_agrees_with_evaluate(
    expression: Expression,
    attributes: dict[str, object],
    skills: dict[str, int],
    task: dict[str, object] | None,
) -> None:
    expected = expression.evaluate(attributes, skills, task)
    assert type(expected) is bool
    assert expression.bind(task)(attributes, skills) is expected


def render(value: object) -> str:
    """The literal that denotes `value` in the expression language."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, list):
        return "[" + ", ".join(render(item) for item in value) + "]"
    return repr(value)


literal_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-5, 5)
    | st.floats(-5, 5, allow_nan=False)
    | st.text(max_size=3),
    lambda inner: st.lists(inner, max_size=3),
    max_leaves=5,
)


@given(x=literal_values, items=st.lists(literal_values, max_size=4))
def test_literal_lists_mean_the_same_as_attribute_lists(x: object, items: list[object]) -> None:
    """`x in [..]` with a literal list takes a set-lookup shortcut; it must not change answers."""
    agent = {"x": x, "items": items}
    assert holds(f"x in {render(items)}", agent) is holds("x in items", agent)
    assert holds(f"x not in {render(items)}", agent) is holds("x not in items", agent)
    assert holds(f"x == {render(items)}", agent) is holds("x == items", agent)
    assert holds(f"{render(x)} == x", agent)
    assert holds(f"x in {render([*items, x])}", agent)


GRAMMAR_PIECES = st.sampled_from(
    [
        *("and", "or", "not", "in", "contains", "true", "false", "null", "not in"),
        *("==", "!=", "<", "<=", ">", ">=", "=", "!", "&&", "(", ")", "[", "]", ",", "-", "."),
        *("a", "b.c", "skills", "skills.x", "skills.x.y", "task", "task.t", "True", "x."),
        *("0", "1.5", "2e3", "1e", "'s'", '"d"', "'un", "'\\n'", "'\\z'", "$", "`", " ", ""),
    ]
)


@settings(max_examples=300)
@given(
    source=st.text(max_size=40)
    | st.lists(GRAMMAR_PIECES, max_size=12).map(" ".join)
    | st.lists(GRAMMAR_PIECES, max_size=12).map("".join),
    attributes=agent_attributes,
    skills=agent_skills,
    task=tasks,
)
def test_any_text_compiles_or_raises_expression_error(
    source: str,
    attributes: dict[str, object],
    skills: dict[str, int],
    task: dict[str, object] | None,
) -> None:
    try:
        expression = compile_expression(source)
    except ExpressionError as error:
        assert 0 <= error.position <= len(source)
        assert error.source == source
        assert error.reason
        return
    outcome = expression.evaluate(attributes, skills, task)
    assert type(outcome) is bool
    assert expression.bind(task)(attributes, skills) is outcome
    hash(expression.task_binding(task))
