"""Triggers: which events a subscription fires for. Compiled once into closures; evaluating one never raises.

Two equivalent forms, freely mixed:

Segment's subscription syntax (FQL), as a string::

    type = "identify"
    type = "track" and event = "Delete User"
    type = "track" and (event = "Product Added" or event = "Order Completed")
    properties.price >= 100 and traits.plan != "free"
    contains(event, "Order") and !match(event, "Order *Refunded")
    context.traits.email != null          # exists;  "= null": does not exist

* comparisons ``=`` (also ``==``), ``!=``, ``<``, ``<=``, ``>``, ``>=`` between a path and a literal (``"text"``
  or ``'text'``, a number, ``true``, ``false``, ``null``);
* functions ``contains(path, "text")`` and ``match(path, "glob")`` (``*`` any run of characters, ``?`` one);
* ``and``, ``or``, ``not`` / ``!``, parentheses; ``and`` binds tighter than ``or``.

A structured form, in YAML::

    trigger:
      and:
        - {field: type, equals: track}
        - {field: event, in: [Order Completed, Order Refunded]}
        - not: {field: properties.test, exists: true}
        - {field: event, prefix: "Order "}          # also: suffix, contains, glob
        - {field: properties.total, gte: 100}        # also: gt, lt, lte
        - 'context.app.version != null'              # a string inside is FQL

``true`` fires for every event. Paths are those of :mod:`processor.mapping` (the leading ``$.`` is optional):
``properties.x`` is the event's ``properties`` map whatever the event type (Segment's Actions destinations read
``properties.x`` on an identify as ``traits.x``; write ``traits.x`` here).

Comparison rules (as Segment's): ``=`` compares the text of scalars, so ``properties.premium = "true"`` matches
the boolean ``true`` and ``traits.logins = "3"`` the number 3; a missing or null field is never equal to
anything and always unequal (``event != "Delete User"`` holds for an event without a name). Ordering comparisons
need a number (or a string holding one) on both sides and are false otherwise. ``contains``/``prefix``/``suffix``/
``match`` are false for anything that is not a string. ``exists`` is false for missing and null fields.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Final

from processor.mapping import MISSING, MappingSyntaxError, ValueFn, _js_text, parse_path

__all__ = ["Trigger", "TriggerSyntaxError", "compile_trigger", "parse_fql"]

Event = Mapping[str, Any]
Trigger = Callable[[Event], bool]


class TriggerSyntaxError(ValueError):
    """A trigger cannot be compiled (raised at load time only)."""


def _always(event: Event) -> bool:
    return True


def _never(event: Event) -> bool:
    return False


# ---- Leaf conditions ------------------------------------------------------------------------------------------


def _number(value: Any) -> float | int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return value if not isinstance(value, float) or math.isfinite(value) else None
    if isinstance(value, str):
        try:
            number = float(value.strip())
        except ValueError:
            return None
        return number if math.isfinite(number) else None
    return None


def _scalar_text(value: Any) -> str | None:
    """The text a scalar compares by (Segment's ``String(value)``); None for objects and lists."""
    if isinstance(value, (dict, list, tuple)):
        return None
    return _js_text(value)


def _equals(get: ValueFn, expected: Any) -> Trigger:
    if expected is None:
        return _not(_exists(get))
    expected_text = _js_text(expected)
    if isinstance(expected, str):
        # The usual case (type = "track"): a string field compares directly.
        def equals_text(event: Event) -> bool:
            value = get(event)
            if type(value) is str:
                return bool(value == expected_text)
            return value is not MISSING and _scalar_text(value) == expected_text

        return equals_text

    def equals(event: Event) -> bool:
        value = get(event)
        if value is MISSING:
            return False
        if type(value) is type(expected):
            return bool(value == expected)
        return _scalar_text(value) == expected_text

    return equals


def _one_of(get: ValueFn, expected: Sequence[Any]) -> Trigger:
    texts = frozenset(_js_text(v) for v in expected if v is not None)
    with_null = any(v is None for v in expected)

    def one_of(event: Event) -> bool:
        value = get(event)
        if value is MISSING:
            return with_null
        if type(value) is str:
            return value in texts
        text = _scalar_text(value)
        return text is not None and text in texts

    return one_of


def _exists(get: ValueFn) -> Trigger:
    def exists(event: Event) -> bool:
        return get(event) is not MISSING

    return exists


def _string_test(get: ValueFn, test: Callable[[str], bool]) -> Trigger:
    def string_test(event: Event) -> bool:
        value = get(event)
        return type(value) is str and test(value)

    return string_test


def _glob(pattern: str) -> re.Pattern[str]:
    parts = ["\\A"]
    for char in pattern:
        if char == "*":
            parts.append(".*")
        elif char == "?":
            parts.append(".")
        else:
            parts.append(re.escape(char))
    parts.append("\\Z")
    return re.compile("".join(parts), re.DOTALL)


_ORDERINGS: Final[Mapping[str, Callable[[float, float], bool]]] = {
    "<": lambda a, b: a < b,
    "<=": lambda a, b: a <= b,
    ">": lambda a, b: a > b,
    ">=": lambda a, b: a >= b,
}


def _ordering(get: ValueFn, operator: str, expected: float) -> Trigger:
    compare = _ORDERINGS[operator]

    def ordered(event: Event) -> bool:
        number = _number(get(event))
        return number is not None and compare(number, expected)

    return ordered


def _not(inner: Trigger) -> Trigger:
    def negated(event: Event) -> bool:
        return not inner(event)

    return negated


def _all(children: Sequence[Trigger]) -> Trigger:
    if len(children) == 1:
        return children[0]
    if len(children) == 2:
        a, b = children
        return lambda event: a(event) and b(event)
    frozen = tuple(children)

    def all_of(event: Event) -> bool:
        return all(child(event) for child in frozen)

    return all_of


def _any(children: Sequence[Trigger]) -> Trigger:
    if len(children) == 1:
        return children[0]
    if len(children) == 2:
        a, b = children
        return lambda event: a(event) or b(event)
    frozen = tuple(children)

    def any_of(event: Event) -> bool:
        return any(child(event) for child in frozen)

    return any_of


def _field(text: Any, where: str) -> ValueFn:
    if not isinstance(text, str):
        raise TriggerSyntaxError(f"{where}: a field is a path such as type or properties.sku")
    try:
        return parse_path(text, bare=True).get
    except MappingSyntaxError as exc:
        raise TriggerSyntaxError(f"{where}: {exc}") from None


# ---- Segment's syntax (FQL) -----------------------------------------------------------------------------------

_TOKEN_RE: Final = re.compile(
    r"""
    (?P<space>\s+)
  | (?P<op>==|!=|<=|>=|=|<|>)
  | (?P<punct>[(),!])
  | (?P<string>"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*')
  | (?P<number>-?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?(?![\w.$\[]))
  | (?P<path>(?:[^\s()\[\]=!<>,"']|\[\s*(?:-?[0-9]+|"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*')\s*\])+)
    """,
    re.VERBOSE,
)
_KEYWORDS: Final = frozenset({"and", "or", "not", "true", "false", "null"})
_FUNCTIONS: Final = frozenset({"contains", "match"})


class _Token:
    __slots__ = ("kind", "position", "text")

    def __init__(self, kind: str, text: str, position: int) -> None:
        self.kind = kind
        self.text = text
        self.position = position

    def __repr__(self) -> str:
        return repr(self.text) if self.kind != "end" else "the end"


def _tokens(text: str) -> list[_Token]:
    tokens: list[_Token] = []
    position = 0
    while position < len(text):
        match = _TOKEN_RE.match(text, position)
        if match is None:
            raise TriggerSyntaxError(f"unexpected {text[position]!r} at column {position + 1}")
        kind = match.lastgroup
        assert kind is not None
        if kind != "space":
            value = match.group()
            if kind == "path" and value in _KEYWORDS:
                kind = "keyword"
            tokens.append(_Token(kind, value, position))
        position = match.end()
    tokens.append(_Token("end", "", len(text)))
    return tokens


def _unquote(token: _Token) -> str:
    body = token.text[1:-1]
    return re.sub(r"\\(.)", r"\1", body, flags=re.DOTALL)


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.tokens = _tokens(text)
        self.index = 0

    def peek(self) -> _Token:
        return self.tokens[self.index]

    def take(self) -> _Token:
        token = self.tokens[self.index]
        self.index += 1
        return token

    def fail(self, token: _Token, expected: str) -> TriggerSyntaxError:
        return TriggerSyntaxError(f"expected {expected} at column {token.position + 1}, found {token!r}")

    def expect(self, kind: str, text: str | None = None) -> _Token:
        token = self.take()
        if token.kind != kind or (text is not None and token.text != text):
            raise self.fail(token, repr(text) if text else kind)
        return token

    def parse(self) -> Trigger:
        if self.peek().kind == "end":
            raise TriggerSyntaxError("empty trigger")
        trigger = self.or_expr()
        if self.peek().kind != "end":
            raise self.fail(self.peek(), "'and', 'or' or the end")
        return trigger

    def or_expr(self) -> Trigger:
        children = [self.and_expr()]
        while self.peek().kind == "keyword" and self.peek().text == "or":
            self.take()
            children.append(self.and_expr())
        return _any(children)

    def and_expr(self) -> Trigger:
        children = [self.not_expr()]
        while self.peek().kind == "keyword" and self.peek().text == "and":
            self.take()
            children.append(self.not_expr())
        return _all(children)

    def not_expr(self) -> Trigger:
        token = self.peek()
        if (token.kind == "punct" and token.text == "!") or (token.kind == "keyword" and token.text == "not"):
            self.take()
            return _not(self.not_expr())
        return self.atom()

    def atom(self) -> Trigger:
        token = self.take()
        if token.kind == "punct" and token.text == "(":
            inner = self.or_expr()
            self.expect("punct", ")")
            return inner
        if token.kind != "path":
            raise self.fail(token, "a field, a function or '('")
        following = self.peek()
        if following.kind == "punct" and following.text == "(":
            if token.text not in _FUNCTIONS:
                raise TriggerSyntaxError(
                    f"unknown function {token.text!r} at column {token.position + 1} (contains, match)"
                )
            return self.function(token.text)
        get = self.path(token)
        operator = self.take()
        if operator.kind != "op":
            raise self.fail(operator, "a comparison (=, !=, <, <=, >, >=)")
        value = self.literal()
        return self.comparison(get, operator, value)

    def path(self, token: _Token) -> ValueFn:
        try:
            return parse_path(token.text, bare=True).get
        except MappingSyntaxError as exc:
            raise TriggerSyntaxError(f"{exc} at column {token.position + 1}") from None

    def literal(self) -> Any:
        token = self.take()
        if token.kind == "string":
            return _unquote(token)
        if token.kind == "number":
            number = float(token.text)
            return int(number) if re.fullmatch(r"-?[0-9]+", token.text) else number
        if token.kind == "keyword" and token.text in ("true", "false", "null"):
            return {"true": True, "false": False, "null": None}[token.text]
        raise self.fail(token, "a value (\"text\", a number, true, false or null)")

    def function(self, name: str) -> Trigger:
        self.expect("punct", "(")
        field = self.take()
        if field.kind != "path":
            raise self.fail(field, "a field")
        get = self.path(field)
        self.expect("punct", ",")
        argument = self.take()
        if argument.kind != "string":
            raise self.fail(argument, "a quoted string")
        self.expect("punct", ")")
        text = _unquote(argument)
        if name == "contains":
            return _string_test(get, lambda value: text in value)
        pattern = _glob(text)
        return _string_test(get, lambda value: pattern.match(value) is not None)

    def comparison(self, get: ValueFn, operator: _Token, value: Any) -> Trigger:
        op = operator.text
        if op in ("=", "=="):
            return _equals(get, value)
        if op == "!=":
            return _not(_equals(get, value))
        number = _number(value)
        if number is None:
            raise TriggerSyntaxError(f"{op} at column {operator.position + 1} compares with a number")
        return _ordering(get, op, number)


def parse_fql(text: str) -> Trigger:
    """Compile a trigger in Segment's syntax; raises :class:`TriggerSyntaxError` saying where it stopped."""
    return _Parser(text).parse()


# ---- Structured form ------------------------------------------------------------------------------------------

_STRING_TESTS: Final[Mapping[str, Callable[[str], Callable[[str], bool]]]] = {
    "prefix": lambda arg: lambda value: value.startswith(arg),
    "suffix": lambda arg: lambda value: value.endswith(arg),
    "contains": lambda arg: lambda value: arg in value,
}
_ORDER_KEYS: Final = {"gt": ">", "gte": ">=", "lt": "<", "lte": "<="}
_CONDITIONS: Final = ("equals", "in", "exists", "prefix", "suffix", "contains", "glob", *_ORDER_KEYS)


def compile_trigger(spec: Any, where: str = "trigger") -> Trigger:
    """Compile a trigger in either form; raises :class:`TriggerSyntaxError` naming ``where``."""
    if isinstance(spec, bool):
        return _always if spec else _never
    if isinstance(spec, str):
        try:
            return parse_fql(spec)
        except TriggerSyntaxError as exc:
            raise TriggerSyntaxError(f"{where}: {exc} in {spec!r}") from None
    if not isinstance(spec, dict) or not spec:
        raise TriggerSyntaxError(
            f"{where}: a trigger is a string such as 'type = \"identify\"', true, or a condition object"
        )
    keys = set(spec)
    for combinator in ("and", "or"):
        if combinator in keys:
            if keys != {combinator}:
                raise TriggerSyntaxError(f"{where}: '{combinator}' stands alone in its object")
            children = spec[combinator]
            if not isinstance(children, list) or not children:
                raise TriggerSyntaxError(f"{where}.{combinator}: a non-empty list of conditions")
            compiled = [compile_trigger(child, f"{where}.{combinator}[{n}]") for n, child in enumerate(children)]
            return _all(compiled) if combinator == "and" else _any(compiled)
    if "not" in keys:
        if keys != {"not"}:
            raise TriggerSyntaxError(f"{where}: 'not' stands alone in its object")
        return _not(compile_trigger(spec["not"], f"{where}.not"))
    if "field" not in keys:
        raise TriggerSyntaxError(
            f"{where}: expected 'and', 'or', 'not' or 'field' with one of {', '.join(_CONDITIONS)}; "
            f"got {', '.join(sorted(map(str, keys)))}"
        )
    get = _field(spec["field"], f"{where}.field")
    conditions = [key for key in keys if key != "field"]
    if len(conditions) != 1 or conditions[0] not in _CONDITIONS:
        raise TriggerSyntaxError(
            f"{where}: a field condition has exactly one of {', '.join(_CONDITIONS)}; "
            f"got {', '.join(sorted(map(str, conditions))) or 'none'}"
        )
    condition = conditions[0]
    argument = spec[condition]
    at = f"{where}.{condition}"
    if condition == "equals":
        if isinstance(argument, (dict, list)):
            raise TriggerSyntaxError(f"{at}: a single value (use 'in' for a list)")
        return _equals(get, argument)
    if condition == "in":
        if not isinstance(argument, list) or not argument or any(isinstance(v, (dict, list)) for v in argument):
            raise TriggerSyntaxError(f"{at}: a non-empty list of values")
        return _one_of(get, argument)
    if condition == "exists":
        if not isinstance(argument, bool):
            raise TriggerSyntaxError(f"{at}: true or false")
        found = _exists(get)
        return found if argument else _not(found)
    if condition in _ORDER_KEYS:
        number = _number(argument)
        if number is None:
            raise TriggerSyntaxError(f"{at}: a number")
        return _ordering(get, _ORDER_KEYS[condition], number)
    if not isinstance(argument, str):
        raise TriggerSyntaxError(f"{at}: a string")
    if condition == "glob":
        pattern = _glob(argument)
        return _string_test(get, lambda value: pattern.match(value) is not None)
    return _string_test(get, _STRING_TESTS[condition](argument))
