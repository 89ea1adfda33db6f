"""Eligibility expressions: which agents a queue may offer a task to.

A queue selects agents with an expression over the agent's attributes and skills, in the manner
of Twilio TaskRouter's worker expressions::

    skills.finnish >= 3 and team == "billing" and task.language in languages

Names: `skills.X` is the agent's proficiency in skill X (0 when missing), `skills` alone is the
agent's skill mapping (`"finnish" in skills` means a proficiency of at least 1), `task.a.b` reads
the task's attributes and any other `a.b` reads the agent's attributes (None when missing).

The source is parsed once and compiled into nested closures. `Expression.bind` compiles again with
the task's values folded in as constants, so scanning thousands of agents costs one closure call
each and a task-only test (`task.channel == "voice"`) is decided before any agent is looked at.
Evaluation never raises: a comparison between values of incompatible types is false.
"""

from __future__ import annotations

import numbers
import operator
from collections.abc import Callable, Collection, Mapping, Sequence
from collections.abc import Set as AbstractSet
from dataclasses import dataclass
from enum import Enum
from typing import Any, Final, TypeAlias, cast

from omnicc.core.errors import ExpressionError

__all__ = ["TRUE", "AgentPredicate", "Expression", "compile_expression"]

AgentPredicate: TypeAlias = Callable[[Mapping[str, object], Mapping[str, int]], bool]

_Task: TypeAlias = Mapping[str, object] | None
_Evaluator: TypeAlias = Callable[[Mapping[str, object], Mapping[str, int], _Task], object]
_Condition: TypeAlias = Callable[[Mapping[str, object], Mapping[str, int], _Task], bool]

_KEYWORDS: Final = frozenset({"and", "or", "not", "in", "contains", "true", "false", "null"})
_KEYWORD_VALUES: Final[Mapping[str, object]] = {"true": True, "false": False, "null": None}
_ESCAPES: Final = {"\\": "\\", "'": "'", '"': '"', "n": "\n", "t": "\t", "r": "\r"}
# Operators from other languages, with the spelling this one uses.
_MISSPELLED_OPERATORS: Final = {
    "===": "==",
    "!==": "!=",
    "=>": ">=",
    "=<": "<=",
    "<>": "!=",
    "&&": "and",
    "||": "or",
    "=": "==",
    "!": "not",
    "&": "and",
    "|": "or",
}
_DIGITS: Final = frozenset("0123456789")
_HEX_DIGITS: Final = frozenset("0123456789abcdefABCDEF")
# Deeper nesting than this is surely a mistake, and would exhaust the interpreter's stack.
_MAX_NESTING: Final = 100


# --- tokens ------------------------------------------------------------------------------------


class _Kind(Enum):
    NAME = "name"
    KEYWORD = "keyword"
    NUMBER = "number"
    STRING = "string"
    OPERATOR = "operator"
    MINUS = "-"
    LPAREN = "("
    RPAREN = ")"
    LBRACKET = "["
    RBRACKET = "]"
    COMMA = ","
    END = "end"


_PUNCTUATION: Final = {
    "-": _Kind.MINUS,
    "(": _Kind.LPAREN,
    ")": _Kind.RPAREN,
    "[": _Kind.LBRACKET,
    "]": _Kind.RBRACKET,
    ",": _Kind.COMMA,
}


@dataclass(frozen=True, slots=True)
class _Token:
    kind: _Kind
    text: str
    position: int
    value: object = None

    def describe(self) -> str:
        if self.kind is _Kind.END:
            return "end of expression"
        if self.kind is _Kind.NAME:
            return f"name '{self.text}'"
        if self.kind in (_Kind.NUMBER, _Kind.STRING):
            return f"{self.kind.value} {self.text}"
        return f"'{self.text}'"


def _is_name_start(char: str) -> bool:
    return char == "_" or char.isalpha()


def _is_name_char(char: str) -> bool:
    return char == "_" or char in _DIGITS or char.isalpha()


def _tokenize(source: str) -> list[_Token]:
    tokens: list[_Token] = []
    length = len(source)
    index = 0
    while index < length:
        char = source[index]
        if char.isspace():
            index += 1
            continue
        if _is_name_start(char):
            token = _read_name(source, index)
        elif char in _DIGITS:
            token = _read_number(source, index)
        elif char in "'\"":
            token = _read_string(source, index)
        elif char in "=!<>&|":
            token = _read_operator(source, index)
        elif char in _PUNCTUATION:
            token = _Token(_PUNCTUATION[char], char, index)
        else:
            raise ExpressionError(f"unexpected character {char!r}", source, index)
        tokens.append(token)
        index = token.position + len(token.text)
    tokens.append(_Token(_Kind.END, "", length))
    return tokens


def _scan_name(source: str, index: int) -> int:
    index += 1
    while index < len(source) and _is_name_char(source[index]):
        index += 1
    return index


def _read_name(source: str, start: int) -> _Token:
    end = _scan_name(source, start)
    while end < len(source) and source[end] == ".":
        if end + 1 < len(source) and _is_name_start(source[end + 1]):
            end = _scan_name(source, end + 1)
        else:
            raise ExpressionError("expected a name after '.'", source, end + 1)
    text = source[start:end]
    if text in _KEYWORDS:
        return _Token(_Kind.KEYWORD, text, start)
    if text.lower() in _KEYWORDS:
        # `x == True` would otherwise quietly read an agent attribute named "True".
        raise ExpressionError(
            f"unknown name '{text}' (keywords are lower-case: did you mean '{text.lower()}')",
            source,
            start,
        )
    head = text.split(".", 1)[0]
    if head in _KEYWORDS:
        raise ExpressionError(f"'{head}' is a reserved word and cannot start a name", source, start)
    return _Token(_Kind.NAME, text, start)


def _read_number(source: str, start: int) -> _Token:
    def skip_digits(index: int) -> int:
        while index < len(source) and source[index] in _DIGITS:
            index += 1
        return index

    end = skip_digits(start)
    is_float = False
    if source[end : end + 1] == "." and source[end + 1 : end + 2] in _DIGITS:
        end = skip_digits(end + 1)
        is_float = True
    if source[end : end + 1] in ("e", "E"):
        exponent = end + 1
        if source[exponent : exponent + 1] in ("+", "-"):
            exponent += 1
        if source[exponent : exponent + 1] in _DIGITS:
            end = skip_digits(exponent)
            is_float = True
    if end < len(source) and (_is_name_char(source[end]) or source[end] == "."):
        bad_end = end
        while bad_end < len(source) and (_is_name_char(source[bad_end]) or source[bad_end] == "."):
            bad_end += 1
        raise ExpressionError(f"invalid number '{source[start:bad_end]}'", source, start)
    text = source[start:end]
    try:
        value: float = float(text) if is_float else int(text)
    except ValueError:  # more digits than int() accepts
        raise ExpressionError("number too long", source, start) from None
    return _Token(_Kind.NUMBER, text, start, value)


def _read_string(source: str, start: int) -> _Token:
    quote = source[start]
    chars: list[str] = []
    index = start + 1
    while True:
        if index >= len(source):
            raise ExpressionError("unterminated string", source, start)
        char = source[index]
        if char == quote:
            break
        if char != "\\":
            chars.append(char)
            index += 1
            continue
        if index + 1 >= len(source):
            raise ExpressionError("unterminated string", source, start)
        escape = source[index + 1]
        if escape in _ESCAPES:
            chars.append(_ESCAPES[escape])
            index += 2
        elif escape == "u":
            digits = source[index + 2 : index + 6]
            if len(digits) != 4 or not _HEX_DIGITS.issuperset(digits):
                raise ExpressionError(
                    "invalid unicode escape (expected '\\u' and 4 hex digits)", source, index
                )
            chars.append(chr(int(digits, 16)))
            index += 6
        else:
            raise ExpressionError(f"unknown escape '\\{escape}'", source, index)
    return _Token(_Kind.STRING, source[start : index + 1], start, "".join(chars))


def _read_operator(source: str, start: int) -> _Token:
    for size in (3, 2, 1):
        text = source[start : start + size]
        if text in ("==", "!=", "<=", ">=", "<", ">"):
            return _Token(_Kind.OPERATOR, text, start)
        if text in _MISSPELLED_OPERATORS:
            meant = _MISSPELLED_OPERATORS[text]
            raise ExpressionError(
                f"unknown operator '{text}' (did you mean '{meant}')", source, start
            )
    raise AssertionError("unreachable: _tokenize only calls here on an operator character")


# --- syntax tree -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Literal:
    value: object


@dataclass(frozen=True, slots=True)
class _AgentPath:
    parts: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class _SkillLevel:
    name: str


@dataclass(frozen=True, slots=True)
class _SkillMap:
    pass


@dataclass(frozen=True, slots=True)
class _TaskPath:
    parts: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class _Not:
    operand: _Node


@dataclass(frozen=True, slots=True)
class _And:
    operands: tuple[_Node, ...]


@dataclass(frozen=True, slots=True)
class _Or:
    operands: tuple[_Node, ...]


@dataclass(frozen=True, slots=True)
class _Compare:
    operator: str
    left: _Node
    right: _Node


_Node: TypeAlias = (
    _Literal | _AgentPath | _SkillLevel | _SkillMap | _TaskPath | _Not | _And | _Or | _Compare
)


# --- parser ------------------------------------------------------------------------------------


class _Parser:
    """Recursive descent over `or` < `and` < `not` < comparison < operand."""

    def __init__(self, source: str) -> None:
        self._source = source
        self._tokens = _tokenize(source)
        self._index = 0
        self._previous: str | None = None
        self._nesting = 0
        self.task_refs: set[str] = set()

    def parse(self) -> _Node:
        if self._current.kind is _Kind.END:
            raise self._error("empty expression", len(self._source))
        node = self._parse_or()
        token = self._current
        if token.kind is _Kind.RPAREN:
            raise self._error("unmatched ')'", token.position)
        if token.kind is not _Kind.END:
            raise self._error(
                f"unexpected {token.describe()} (expected an operator, 'and', 'or' or the end)",
                token.position,
            )
        return node

    @property
    def _current(self) -> _Token:
        return self._tokens[self._index]

    def _peek(self, offset: int = 1) -> _Token:
        return self._tokens[min(self._index + offset, len(self._tokens) - 1)]

    def _advance(self) -> _Token:
        token = self._tokens[self._index]
        if token.kind is not _Kind.END:
            self._index += 1
        self._previous = token.text
        return token

    def _at_keyword(self, word: str) -> bool:
        token = self._current
        return token.kind is _Kind.KEYWORD and token.text == word

    def _error(self, message: str, position: int) -> ExpressionError:
        return ExpressionError(message, self._source, position)

    def _nest(self, token: _Token) -> None:
        self._nesting += 1
        if self._nesting > _MAX_NESTING:
            raise self._error("expression is nested too deeply", token.position)

    def _parse_or(self) -> _Node:
        operands = [self._parse_and()]
        while self._at_keyword("or"):
            self._advance()
            operands.append(self._parse_and())
        return operands[0] if len(operands) == 1 else _Or(tuple(operands))

    def _parse_and(self) -> _Node:
        operands = [self._parse_not()]
        while self._at_keyword("and"):
            self._advance()
            operands.append(self._parse_not())
        return operands[0] if len(operands) == 1 else _And(tuple(operands))

    def _parse_not(self) -> _Node:
        if not self._at_keyword("not"):
            return self._parse_comparison()
        self._nest(self._advance())
        operand = self._parse_not()
        self._nesting -= 1
        return _Not(operand)

    def _parse_comparison(self) -> _Node:
        left = self._parse_operand()
        comparison = self._match_comparison()
        if comparison is None:
            return left
        right = self._parse_operand()
        if self._at_comparison():
            raise self._error("comparisons cannot be chained", self._current.position)
        return _Compare(comparison, left, right)

    def _at_comparison(self) -> bool:
        token = self._current
        if token.kind is _Kind.OPERATOR:
            return True
        if token.kind is not _Kind.KEYWORD:
            return False
        if token.text in ("in", "contains"):
            return True
        following = self._peek()
        return token.text == "not" and following.kind is _Kind.KEYWORD and following.text == "in"

    def _match_comparison(self) -> str | None:
        token = self._current
        if token.kind is _Kind.OPERATOR or (
            token.kind is _Kind.KEYWORD and token.text in ("in", "contains")
        ):
            return self._advance().text
        if not self._at_keyword("not"):
            return None
        following = self._peek()
        if following.kind is not _Kind.KEYWORD or following.text != "in":
            raise self._error("expected 'in' after 'not'", following.position)
        self._advance()
        self._advance()
        self._previous = "not in"
        return "not in"

    def _parse_operand(self) -> _Node:
        token = self._current
        if token.kind is _Kind.LPAREN:
            self._nest(self._advance())
            node = self._parse_or()
            if self._current.kind is not _Kind.RPAREN:
                raise self._error("expected ')'", self._current.position)
            self._advance()
            self._nesting -= 1
            return node
        if token.kind is _Kind.NAME:
            self._advance()
            return self._resolve_name(token)
        if token.kind in _LITERAL_STARTS:
            return _Literal(self._parse_literal())
        raise self._expected_value()

    def _expected_value(self) -> ExpressionError:
        token = self._current
        if self._previous is None:
            return self._error(f"expected a value, found {token.describe()}", token.position)
        return self._error(f"expected a value after '{self._previous}'", token.position)

    def _parse_literal(self) -> object:
        token = self._current
        if token.kind is _Kind.NAME:
            raise self._error(
                "list items must be literal values (numbers, strings, true, false, null, lists)",
                token.position,
            )
        if token.kind is _Kind.LBRACKET:
            return self._parse_list()
        if token.kind is _Kind.MINUS:
            self._advance()
            number = self._current
            if number.kind is not _Kind.NUMBER:
                raise self._error("expected a number after '-'", number.position)
            self._advance()
            return -cast(float, number.value)
        if token.kind in (_Kind.NUMBER, _Kind.STRING):
            return self._advance().value
        if token.kind is _Kind.KEYWORD and token.text in _KEYWORD_VALUES:
            return _KEYWORD_VALUES[self._advance().text]
        raise self._expected_value()

    def _parse_list(self) -> tuple[object, ...]:
        self._nest(self._advance())
        items: list[object] = []
        if self._current.kind is _Kind.RBRACKET:
            self._advance()
        else:
            items.append(self._parse_literal())
            while (separator := self._advance()).kind is not _Kind.RBRACKET:
                if separator.kind is not _Kind.COMMA:
                    raise self._error("expected ',' or ']'", separator.position)
                items.append(self._parse_literal())
        self._nesting -= 1
        return tuple(items)

    def _resolve_name(self, token: _Token) -> _Node:
        parts = tuple(token.text.split("."))
        head = parts[0]
        if head == "skills":
            if len(parts) == 1:
                return _SkillMap()
            if len(parts) == 2:
                return _SkillLevel(parts[1])
            second_dot = token.position + len(parts[0]) + 1 + len(parts[1])
            raise self._error(
                "a skill is read as 'skills.<name>'; skill names cannot contain '.'", second_dot
            )
        if head == "task":
            if len(parts) == 1:
                raise self._error(
                    "'task' needs an attribute name, as in 'task.language'", token.position
                )
            self.task_refs.add(token.text)
            return _TaskPath(parts[1:])
        return _AgentPath(parts)


_LITERAL_STARTS: Final = frozenset(
    {_Kind.NUMBER, _Kind.STRING, _Kind.LBRACKET, _Kind.MINUS, _Kind.KEYWORD}
)


# --- values: the type-safe semantics of comparisons ---------------------------------------------


class _Type(Enum):
    NULL = "null"
    BOOLEAN = "boolean"
    NUMBER = "number"
    STRING = "string"
    LIST = "list"
    MAPPING = "mapping"
    SET = "set"
    OTHER = "other"


_EXACT_TYPES: Final[Mapping[type, _Type]] = {
    type(None): _Type.NULL,
    bool: _Type.BOOLEAN,
    int: _Type.NUMBER,
    float: _Type.NUMBER,
    str: _Type.STRING,
    list: _Type.LIST,
    tuple: _Type.LIST,
    dict: _Type.MAPPING,
    set: _Type.SET,
    frozenset: _Type.SET,
}
_SIMPLE_TYPES: Final = frozenset({type(None), bool, int, float, str})
_FAST_NUMBERS: Final = frozenset({int, float})


def _type_of(value: object) -> _Type:
    exact = _EXACT_TYPES.get(type(value))
    if exact is not None:
        return exact
    # bool is a numbers.Real and str a Sequence: the order of these tests matters.
    if isinstance(value, numbers.Real):
        return _Type.NUMBER
    if isinstance(value, str):
        return _Type.STRING
    if isinstance(value, Mapping):
        return _Type.MAPPING
    if isinstance(value, AbstractSet):
        return _Type.SET
    if isinstance(value, Sequence) and not isinstance(value, (bytes, bytearray)):
        return _Type.LIST
    return _Type.OTHER


def _equals(left: object, right: object) -> bool:
    """`==`: values of different types are never equal: `1 == true` is false, `1 == 1.0` true."""
    left_type = type(left)
    if left_type is type(right) and left_type in _SIMPLE_TYPES:
        return left == right
    kind = _type_of(left)
    if kind is not _type_of(right):
        return False
    if kind is _Type.LIST:
        left_items, right_items = cast(Sequence[object], left), cast(Sequence[object], right)
        return len(left_items) == len(right_items) and all(
            _equals(a, b) for a, b in zip(left_items, right_items, strict=True)
        )
    if kind is _Type.MAPPING:
        left_map, right_map = (
            cast(Mapping[object, object], left),
            cast(Mapping[object, object], right),
        )
        return left_map.keys() == right_map.keys() and all(
            _equals(value, right_map[key]) for key, value in left_map.items()
        )
    if kind is _Type.SET:
        return _hashable(left) == _hashable(right)
    try:
        return bool(left == right)
    except Exception:  # an alien type's __eq__ must not break routing
        return False


def _not_equals(left: object, right: object) -> bool:
    return not _equals(left, right)


def _ordering(compare: Callable[[Any, Any], bool]) -> Callable[[object, object], bool]:
    """`<` and friends: defined between two numbers or two strings, false otherwise."""

    def test(left: object, right: object) -> bool:
        left_type, right_type = type(left), type(right)
        if (left_type in _FAST_NUMBERS and right_type in _FAST_NUMBERS) or (
            left_type is str and right_type is str
        ):
            return compare(left, right)
        kind = _type_of(left)
        if kind is not _type_of(right) or kind not in (_Type.NUMBER, _Type.STRING):
            return False
        try:
            return bool(compare(left, right))
        except Exception:  # an alien number type must not break routing
            return False

    return test


def _member(item: object, collection: object) -> bool:
    """`item in collection`: lists, tuples, sets and mapping keys; anything else holds nothing."""
    if isinstance(collection, (str, bytes, bytearray)) or not isinstance(collection, Collection):
        return False
    if type(item) is str:
        # A str equals only strings, so the container's own lookup gives the same answer.
        try:
            return item in collection
        except Exception:  # an alien element's __eq__ must not break routing
            return False
    return any(_equals(item, element) for element in collection)


def _not_member(item: object, collection: object) -> bool:
    return not _member(item, collection)


def _contains(collection: object, item: object) -> bool:
    return _member(item, collection)


def _is_truthy(value: object) -> bool:
    if value is None or value is False:
        return False
    if value is True:
        return True
    try:
        return bool(value)
    except Exception:  # an alien type's __bool__ must not break routing
        return False


_TESTS: Final[Mapping[str, Callable[[object, object], bool]]] = {
    "==": _equals,
    "!=": _not_equals,
    "<": _ordering(operator.lt),
    "<=": _ordering(operator.le),
    ">": _ordering(operator.gt),
    ">=": _ordering(operator.ge),
    "in": _member,
    "not in": _not_member,
    "contains": _contains,
}
_NUMERIC_OPERATORS: Final[Mapping[str, Callable[[Any, Any], bool]]] = {
    "==": operator.eq,
    "!=": operator.ne,
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
}
_MIRRORED: Final = {"==": "==", "!=": "!=", "<": ">", "<=": ">=", ">": "<", ">=": "<="}


class _Tag(Enum):
    """Markers no attribute value can forge, so that distinct values get distinct keys."""

    TRUE = "true"
    FALSE = "false"
    MAPPING = "mapping"
    SET = "set"
    OTHER = "other"


def _hashable(value: object) -> object:
    """A hashable key, equal for two attribute values exactly when this language's `==` holds.

    Python's own equality is too lax for a cache key: `True == 1` and a mapping's sorted items
    equal a list of pairs, so booleans and mappings are tagged. (Exact for JSON-like values; NaN
    and alien types only lose cache hits or fall back to their repr.)
    """
    if value is None or type(value) in (str, int, float):
        return value
    kind = _type_of(value)
    if kind is _Type.BOOLEAN:
        return _Tag.TRUE if value else _Tag.FALSE
    if kind in (_Type.NUMBER, _Type.STRING):
        return value
    if kind is _Type.LIST:
        return tuple(_hashable(item) for item in cast(Sequence[object], value))
    if kind is _Type.MAPPING:
        items = [
            (_hashable(k), _hashable(v)) for k, v in cast(Mapping[object, object], value).items()
        ]
        return (_Tag.MAPPING, tuple(sorted(items, key=lambda item: repr(item[0]))))
    if kind is _Type.SET:
        return (_Tag.SET, frozenset(_hashable(item) for item in cast(AbstractSet[object], value)))
    try:
        hash(value)
    except TypeError:
        return (_Tag.OTHER, type(value).__qualname__, repr(value))
    return (_Tag.OTHER, value)


def _read_path(root: object, parts: tuple[str, ...]) -> object:
    value = root
    for part in parts:
        if not isinstance(value, Mapping):
            return None
        value = value.get(part)
    return value


# --- compiler: syntax tree to closures ----------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Constant:
    value: object


class _Compiler:
    """Turns a tree into closures `(attributes, skills, task) -> value`, folding constants.

    With `is_bound`, task paths read `task` now and become constants; otherwise they read the
    task passed at evaluation time.
    """

    def __init__(self, *, is_bound: bool, task: _Task = None) -> None:
        self._is_bound = is_bound
        self._task = task

    def value(self, node: _Node) -> _Constant | _Evaluator:
        if isinstance(node, _Literal):
            return _Constant(node.value)
        if isinstance(node, _AgentPath):
            return _agent_reader(node.parts)
        if isinstance(node, _SkillLevel):
            name = node.name
            return lambda attributes, skills, task: skills.get(name, 0)
        if isinstance(node, _SkillMap):
            return lambda attributes, skills, task: skills
        if isinstance(node, _TaskPath):
            if self._is_bound:
                return _Constant(_read_path(self._task, node.parts))
            return _task_reader(node.parts)
        return self.condition(node)

    def condition(self, node: _Node) -> _Constant | _Condition:
        if isinstance(node, _Not):
            return self._negation(node)
        if isinstance(node, _And):
            return self._conjunction(node.operands)
        if isinstance(node, _Or):
            return self._disjunction(node.operands)
        if isinstance(node, _Compare):
            return self._comparison(node)
        value = self.value(node)
        if isinstance(value, _Constant):
            return _Constant(_is_truthy(value.value))
        read = value
        return lambda attributes, skills, task: _is_truthy(read(attributes, skills, task))

    def _negation(self, node: _Not) -> _Constant | _Condition:
        operand = self.condition(node.operand)
        if isinstance(operand, _Constant):
            return _Constant(not operand.value)
        test = operand
        return lambda attributes, skills, task: not test(attributes, skills, task)

    def _conjunction(self, operands: tuple[_Node, ...]) -> _Constant | _Condition:
        tests: list[_Condition] = []
        for node in operands:
            test = self.condition(node)
            if isinstance(test, _Constant):
                if not test.value:
                    return _Constant(False)
            else:
                tests.append(test)
        if not tests:
            return _Constant(True)
        if len(tests) == 1:
            return tests[0]
        if len(tests) == 2:
            first, second = tests
            return lambda attributes, skills, task: (
                first(attributes, skills, task) and second(attributes, skills, task)
            )
        all_tests = tuple(tests)

        def conjunction(
            attributes: Mapping[str, object], skills: Mapping[str, int], task: _Task
        ) -> bool:
            # A plain loop: all() over a generator costs a frame per agent.
            for test in all_tests:  # noqa: SIM110
                if not test(attributes, skills, task):
                    return False
            return True

        return conjunction

    def _disjunction(self, operands: tuple[_Node, ...]) -> _Constant | _Condition:
        tests: list[_Condition] = []
        for node in operands:
            test = self.condition(node)
            if isinstance(test, _Constant):
                if test.value:
                    return _Constant(True)
            else:
                tests.append(test)
        if not tests:
            return _Constant(False)
        if len(tests) == 1:
            return tests[0]
        if len(tests) == 2:
            first, second = tests
            return lambda attributes, skills, task: (
                first(attributes, skills, task) or second(attributes, skills, task)
            )
        any_tests = tuple(tests)

        def disjunction(
            attributes: Mapping[str, object], skills: Mapping[str, int], task: _Task
        ) -> bool:
            # A plain loop: any() over a generator costs a frame per agent.
            for test in any_tests:  # noqa: SIM110
                if test(attributes, skills, task):
                    return True
            return False

        return disjunction

    def _comparison(self, node: _Compare) -> _Constant | _Condition:
        name = node.operator
        # `"x" in skills` asks whether the agent has the skill at all, i.e. at level 1 or more.
        if name in ("in", "not in", "contains"):
            skill_side, item_side = (
                (node.left, node.right) if name == "contains" else (node.right, node.left)
            )
            if isinstance(skill_side, _SkillMap):
                has_skill = self._skill_membership(self.value(item_side))
                return _negated(has_skill) if name == "not in" else has_skill
        left, right = self.value(node.left), self.value(node.right)
        test = _TESTS[name]
        if isinstance(left, _Constant):
            if isinstance(right, _Constant):
                return _Constant(test(left.value, right.value))
            if isinstance(node.right, _SkillLevel) and name in _MIRRORED:
                return _skill_threshold(node.right.name, _MIRRORED[name], left.value)
            left_value, read_right = left.value, right
            return lambda attributes, skills, task: test(
                left_value, read_right(attributes, skills, task)
            )
        if isinstance(right, _Constant):
            if isinstance(node.left, _SkillLevel) and name in _MIRRORED:
                return _skill_threshold(node.left.name, name, right.value)
            if name in ("in", "not in") and _is_list(right.value):
                return _literal_membership(left, right.value, is_negated=name == "not in")
            read_left, right_value = left, right.value
            return lambda attributes, skills, task: test(
                read_left(attributes, skills, task), right_value
            )
        read_left, read_right = left, right
        return lambda attributes, skills, task: test(
            read_left(attributes, skills, task), read_right(attributes, skills, task)
        )

    def _skill_membership(self, item: _Constant | _Evaluator) -> _Constant | _Condition:
        if isinstance(item, _Constant):
            if not isinstance(item.value, str):
                return _Constant(False)
            return _skill_threshold(item.value, ">=", 1)
        read_item = item
        at_least = _TESTS[">="]

        def has_skill(
            attributes: Mapping[str, object], skills: Mapping[str, int], task: _Task
        ) -> bool:
            name = read_item(attributes, skills, task)
            return isinstance(name, str) and at_least(skills.get(name, 0), 1)

        return has_skill


def _agent_reader(parts: tuple[str, ...]) -> _Evaluator:
    if len(parts) == 1:
        (key,) = parts
        return lambda attributes, skills, task: attributes.get(key)
    head, rest = parts[0], parts[1:]
    return lambda attributes, skills, task: _read_path(attributes.get(head), rest)


def _task_reader(parts: tuple[str, ...]) -> _Evaluator:
    return lambda attributes, skills, task: _read_path(task, parts)


def _negated(test: _Constant | _Condition) -> _Constant | _Condition:
    if isinstance(test, _Constant):
        return _Constant(not test.value)
    positive = test
    return lambda attributes, skills, task: not positive(attributes, skills, task)


def _is_list(value: object) -> bool:
    return _type_of(value) is _Type.LIST


def _skill_threshold(skill: str, name: str, bound: object) -> _Condition:
    """`skills.X <op> constant`, the hottest test of all, without the generic dispatch."""
    generic = _TESTS[name]
    if type(bound) not in _FAST_NUMBERS:
        return lambda attributes, skills, task: generic(skills.get(skill, 0), bound)
    compare = _NUMERIC_OPERATORS[name]

    def test(attributes: Mapping[str, object], skills: Mapping[str, int], task: _Task) -> bool:
        level = skills.get(skill, 0)
        if type(level) is int:
            return compare(level, bound)
        return generic(level, bound)

    return test


def _literal_membership(read: _Evaluator, items: object, *, is_negated: bool) -> _Condition:
    """`x in [..constants..]` as one set lookup; `_hashable` keeps the type-safe equality."""
    keys = frozenset(_hashable(item) for item in cast(Sequence[object], items))

    def test(attributes: Mapping[str, object], skills: Mapping[str, int], task: _Task) -> bool:
        value = read(attributes, skills, task)
        found = (value if type(value) is str else _hashable(value)) in keys
        return found != is_negated

    return test


# --- public API --------------------------------------------------------------------------------


def _always_true(attributes: Mapping[str, object], skills: Mapping[str, int]) -> bool:
    return True


def _always_false(attributes: Mapping[str, object], skills: Mapping[str, int]) -> bool:
    return False


def _as_predicate(compiled: _Constant | _Condition) -> AgentPredicate:
    if isinstance(compiled, _Constant):
        return _always_true if compiled.value else _always_false
    test = compiled
    return lambda attributes, skills: test(attributes, skills, None)


class Expression:
    """A compiled eligibility expression; immutable, equal to another with the same source."""

    __slots__ = ("_evaluate", "_predicate", "_source", "_task_paths", "_task_refs", "_tree")

    def __init__(self, source: str, tree: _Node, task_refs: tuple[str, ...]) -> None:
        self._source = source
        self._tree = tree
        self._task_refs = task_refs
        self._task_paths = tuple(tuple(ref.split(".")[1:]) for ref in task_refs)
        compiled = _Compiler(is_bound=False).condition(tree)
        if isinstance(compiled, _Constant):
            outcome = bool(compiled.value)
            self._evaluate: _Condition = lambda attributes, skills, task: outcome
        else:
            self._evaluate = compiled
        # Without task references every binding is the same predicate: build it once.
        self._predicate = None if task_refs else _as_predicate(compiled)

    @property
    def source(self) -> str:
        return self._source

    @property
    def task_refs(self) -> tuple[str, ...]:
        """The distinct `task.` paths the expression reads, sorted."""
        return self._task_refs

    def evaluate(
        self,
        attributes: Mapping[str, object],
        skills: Mapping[str, int],
        task: Mapping[str, object] | None = None,
    ) -> bool:
        """Whether an agent with these attributes and skills is eligible for `task`."""
        return self._evaluate(attributes, skills, task)

    def bind(self, task: Mapping[str, object] | None) -> AgentPredicate:
        """Substitute task values now; returns a fast predicate (attributes, skills) -> bool."""
        if self._predicate is not None:
            return self._predicate
        return _as_predicate(_Compiler(is_bound=True, task=task).condition(self._tree))

    def task_binding(self, task: Mapping[str, object] | None) -> tuple[object, ...]:
        """The values of `task_refs` for this task, hashable: a cache key for `bind`'s predicates.

        Lists become tuples and mappings sorted tuples of items; booleans and mappings carry a
        tag, so that `True` and `1` (equal in Python, not here) give different keys.
        """
        return tuple(_hashable(_read_path(task, parts)) for parts in self._task_paths)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Expression):
            return NotImplemented
        return self._source == other._source

    def __hash__(self) -> int:
        return hash(self._source)

    def __repr__(self) -> str:
        return f"Expression({self._source!r})"

    def __str__(self) -> str:
        return self._source

    def __reduce__(self) -> tuple[Callable[[str], Expression], tuple[str]]:
        # Closures do not pickle; the source recompiles to the same expression.
        return compile_expression, (self._source,)


def compile_expression(source: str) -> Expression:
    """Parse and compile `source`; raises ExpressionError naming the position of the problem."""
    parser = _Parser(source)
    tree = parser.parse()
    return Expression(source, tree, tuple(sorted(parser.task_refs)))


TRUE: Final = compile_expression("true")
