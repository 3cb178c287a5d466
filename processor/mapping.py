"""Field mappings: paths into an event, value expressions, object mappings, and what CleverTap accepts.

Everything here is compiled once, when the subscriptions are loaded, into small closures; evaluating them per
record never parses anything. Pure: no I/O, no clock, no global mutable state.

Paths
-----
``$`` is the whole decoded event. A path is ``$`` followed by steps::

    .name          a key made of letters, digits and _ - $ @ : # / + (anything but white space, quotes,
                   brackets, braces, parentheses, commas, dots, *, ? and the operators = ! < > & |)
    ["any key"]    any key, in double or single quotes (backslash escapes \\" \\' \\\\), e.g. ["Customer Type"]
    [N]  [-N]      a list element (-1 is the last one)

``$.traits.email``, ``$.context.traits.plan``, ``$.properties.items[0].sku``, ``$.traits["Customer Type"]``.
Inside templates and triggers the leading ``$.`` may be left out (``traits.first_name``). Wildcards (``*``),
recursive descent (``..``), slices and filters are not supported and are refused when the file is loaded.

A path *has no value* when a step is missing, meets the wrong kind of container, or ends on ``null``.

Value expressions (one per mapped field)
----------------------------------------
* ``"$.a.b"`` (a string starting with ``$.``, ``$[`` or equal to ``$``): a path;
* a string containing ``{{``: a template, e.g. ``"{{traits.first_name}} {{traits.last_name}}"`` - each
  placeholder is a path; one without a value renders as nothing; the result is stripped of surrounding white
  space; a template none of whose placeholders has a value has no value itself;
* any other string, number or boolean: that literal; ``null``: never a value;
* a list: fallbacks - the first element that has a value;
* an object with exactly one of ``path``, ``template``, ``literal``, ``first_of`` and optionally ``as``:
  ``date`` (CleverTap date ``"$D_<seconds>"``), ``string``, ``number`` or ``boolean``.

Absent values, ``null`` and empty strings are *no value*: a mapped key without a value is left out of the record.

Object mappings (``profileData``, ``evtData``)
----------------------------------------------
Either a path to an object (the whole object is copied, values as they are) or a map of explicit keys. The
special key ``"*"`` copies every key of one or more objects that no explicit key set:
``"*": $.traits``, ``"*": {from: $.traits, except: [email, phone]}`` or a list of those (the first listed wins).

What CleverTap accepts (the "validate" stage)
---------------------------------------------
:func:`finish_profile` and :func:`finish_event` normalise values where CleverTap has exactly one accepted form and
raise :class:`~processor.errors.ValidationError` with the code CleverTap would answer where it can only reject;
messages never contain attribute values (they reach logs and dead-letter headers).
"""

from __future__ import annotations

import datetime as _dt
import enum
import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

import orjson

from processor.errors import MappingError, ValidationError
from processor.timestamps import (
    CLEVERTAP_DATE_PREFIX,
    IsoRejection,
    convert_timestamps,
    event_time_to_unix_seconds,
    parse_iso8601,
)

__all__ = [
    "MISSING",
    "RESTRICTED_EVENT_NAMES",
    "STANDARD_PROFILE_KEYS",
    "MappingSyntaxError",
    "NestedValues",
    "ObjectMapping",
    "Path",
    "ValueFn",
    "compile_object",
    "compile_value",
    "finish_event",
    "finish_profile",
    "parse_path",
]


class _Missing:
    """The one "no value" marker (``None`` is a value JSON can carry, so it cannot be the marker)."""

    __slots__ = ()
    _instance: _Missing | None = None

    def __new__(cls) -> _Missing:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "MISSING"

    def __bool__(self) -> bool:
        return False


MISSING: Final = _Missing()

Event = Mapping[str, Any]
#: A compiled value expression: the value for one event, or :data:`MISSING`.
ValueFn = Callable[[Event], Any]


class MappingSyntaxError(ValueError):
    """A path, template or mapping in the configuration cannot be compiled (raised at load time only)."""


# ---- Paths ----------------------------------------------------------------------------------------------------

_NAME_RE: Final = re.compile(r"[^\s.\[\]{}()'\",*?=!<>&|]+")
_INDEX_RE: Final = re.compile(r"\[\s*(-?[0-9]+)\s*\]")

Step = str | int


def _read_quoted(text: str, start: int) -> tuple[str, int]:
    """The string in quotes starting at ``text[start]``; returns (value, index after the closing quote)."""
    quote = text[start]
    out: list[str] = []
    i = start + 1
    while i < len(text):
        char = text[i]
        if char == "\\" and i + 1 < len(text):
            out.append(text[i + 1])
            i += 2
            continue
        if char == quote:
            return "".join(out), i + 1
        out.append(char)
        i += 1
    raise MappingSyntaxError(f"unknown path syntax {text!r}: unterminated quote")


def _parse_steps(text: str, bare: bool) -> tuple[Step, ...]:
    steps: list[Step] = []
    i = 0
    n = len(text)
    if text.startswith("$"):
        i = 1
    elif not bare:
        raise MappingSyntaxError(f"unknown path syntax {text!r}: a path starts with '$'")
    else:
        match = _NAME_RE.match(text, 0)
        if match is None:
            if not text.startswith("["):
                raise MappingSyntaxError(f"unknown path syntax {text!r}")
        else:
            steps.append(match.group())
            i = match.end()
    while i < n:
        char = text[i]
        if char == ".":
            if text.startswith("..", i):
                raise MappingSyntaxError(f"unknown path syntax {text!r}: recursive descent '..' is not supported")
            match = _NAME_RE.match(text, i + 1)
            if match is None:
                rest = text[i + 1 : i + 2]
                if rest in ("*", "?"):
                    raise MappingSyntaxError(f"unknown path syntax {text!r}: wildcards are not supported")
                raise MappingSyntaxError(f"unknown path syntax {text!r}: a name must follow '.'")
            steps.append(match.group())
            i = match.end()
        elif char == "[":
            j = i + 1
            while j < n and text[j] == " ":
                j += 1
            if j < n and text[j] in "\"'":
                key, j = _read_quoted(text, j)
                while j < n and text[j] == " ":
                    j += 1
                if j >= n or text[j] != "]":
                    raise MappingSyntaxError(f"unknown path syntax {text!r}: ']' expected after the quoted key")
                steps.append(key)
                i = j + 1
            else:
                match = _INDEX_RE.match(text, i)
                if match is None:
                    raise MappingSyntaxError(
                        f"unknown path syntax {text!r}: brackets hold a list index [N] or a quoted key [\"key\"]"
                    )
                steps.append(int(match.group(1)))
                i = match.end()
        else:
            raise MappingSyntaxError(f"unknown path syntax {text!r}: unexpected {char!r} at position {i + 1}")
    return tuple(steps)


def _render_steps(steps: Sequence[Step]) -> str:
    out: list[str] = []
    for step in steps:
        if isinstance(step, int):
            out.append(f"[{step}]")
        elif _NAME_RE.fullmatch(step):
            out.append(("." if out else "") + step)
        else:
            out.append('["' + step.replace("\\", "\\\\").replace('"', '\\"') + '"]')
    return "".join(out)


def _step_into(current: Any, step: Step) -> Any:
    if type(step) is str:
        if isinstance(current, Mapping):
            return current.get(step, MISSING)
        return MISSING
    if isinstance(current, (list, tuple)):
        assert isinstance(step, int)
        if -len(current) <= step < len(current):
            return current[step]
    return MISSING


def _getter(steps: tuple[Step, ...], empty_is_missing: bool) -> ValueFn:
    """A closure reading ``steps`` from an event: the value, or MISSING (absent, wrong container, null, and with
    ``empty_is_missing`` also the empty string)."""
    if not steps:
        return lambda event: event
    if all(type(s) is str for s in steps) and len(steps) <= 2:
        # The common shapes get straight-line code: these run for every mapped field of every record.
        keys = [str(s) for s in steps]
        if len(keys) == 1:
            (a,) = keys

            def get1(event: Event) -> Any:
                value = event.get(a)
                if value is None or (empty_is_missing and value == ""):
                    return MISSING
                return value

            return get1
        a, b = keys

        def get2(event: Event) -> Any:
            value = event.get(a)
            if type(value) is dict or isinstance(value, Mapping):
                value = value.get(b)
                if value is None or (empty_is_missing and value == ""):
                    return MISSING
                return value
            return MISSING

        return get2

    def get_n(event: Event) -> Any:
        value: Any = event
        for step in steps:
            value = _step_into(value, step)
            if value is MISSING or value is None:
                return MISSING
        if empty_is_missing and value == "":
            return MISSING
        return value

    return get_n


@dataclass(frozen=True, slots=True)
class Path:
    """A compiled path. ``get(event)`` is the value or :data:`MISSING` (absent, wrong container or null)."""

    text: str
    steps: tuple[Step, ...]
    get: ValueFn
    #: Like ``get``, but an empty string is no value either (what mapped fields use).
    value: ValueFn

    @property
    def display(self) -> str:
        """The path without ``$.`` (``traits.email``), as messages show it."""
        return _render_steps(self.steps) or "$"


def parse_path(text: str, *, bare: bool = False) -> Path:
    """Compile a path. ``bare`` allows leaving out the leading ``$.`` (templates, triggers).

    Raises :class:`MappingSyntaxError` ("unknown path syntax ...") for anything outside the supported grammar.
    """
    if not isinstance(text, str) or not text.strip():
        raise MappingSyntaxError(f"unknown path syntax {text!r}: empty path")
    stripped = text.strip()
    steps = _parse_steps(stripped, bare)
    return Path(stripped, steps, _getter(steps, False), _getter(steps, True))


def looks_like_path(text: str) -> bool:
    return text == "$" or text.startswith(("$.", "$["))


# ---- Value expressions ----------------------------------------------------------------------------------------

_TEMPLATE_RE: Final = re.compile(r"\{\{(.*?)\}\}", re.DOTALL)


def _js_text(value: Any) -> str:
    """How a value reads inside a template (and in loose trigger comparisons): JSON-like scalars."""
    if isinstance(value, str):
        return value
    if value is True:
        return "true"
    if value is False:
        return "false"
    if value is None:
        return "null"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isfinite(value) and value.is_integer() and abs(value) < 1e21:
            return str(int(value))
        return repr(value)
    try:
        return orjson.dumps(value).decode()
    except TypeError:
        return str(value)


def _compile_template(text: str) -> ValueFn:
    parts: list[str | ValueFn] = []
    position = 0
    for match in _TEMPLATE_RE.finditer(text):
        if match.start() > position:
            parts.append(text[position : match.start()])
        inner = match.group(1).strip()
        if not inner:
            raise MappingSyntaxError(f"template {text!r}: empty placeholder '{{{{}}}}'")
        try:
            parts.append(parse_path(inner, bare=True).get)
        except MappingSyntaxError as exc:
            raise MappingSyntaxError(f"template {text!r}: {exc}") from None
        position = match.end()
    tail = text[position:]
    if "{{" in tail or "}}" in tail:
        raise MappingSyntaxError(f"template {text!r}: unbalanced '{{{{' / '}}}}'")
    if tail:
        parts.append(tail)
    frozen = tuple(parts)

    def render(event: Event) -> Any:
        pieces: list[str] = []
        found = False
        for part in frozen:
            if type(part) is str:
                pieces.append(part)
                continue
            assert callable(part)
            value = part(event)
            if value is not MISSING:
                found = True
                pieces.append(_js_text(value))
        if not found:
            return MISSING
        result = "".join(pieces).strip()
        return result if result else MISSING

    return render


def _constant(value: Any) -> ValueFn:
    if value is None or value == "":
        return lambda event: MISSING
    return lambda event: value


def _first_of(options: Sequence[ValueFn]) -> ValueFn:
    frozen = tuple(options)

    def first(event: Event) -> Any:
        for option in frozen:
            value = option(event)
            if value is not MISSING:
                return value
        return MISSING

    return first


_TRUE_WORDS: Final = frozenset({"true", "yes", "y", "1"})
_FALSE_WORDS: Final = frozenset({"false", "no", "n", "0"})


def _as_boolean(value: Any) -> bool | None:
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str):
        word = value.strip().casefold()
        if word in _TRUE_WORDS:
            return True
        if word in _FALSE_WORDS:
            return False
    return None


def _as_number(value: Any) -> int | float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return value
    if isinstance(value, str):
        text = value.strip()
        try:
            return int(text)
        except ValueError:
            pass
        try:
            number = float(text)
        except ValueError:
            return None
        return number if math.isfinite(number) else None
    return None


def _as_date(value: Any) -> str | None:
    if isinstance(value, str) and value.startswith(CLEVERTAP_DATE_PREFIX):
        digits = value[len(CLEVERTAP_DATE_PREFIX) :]
        return value if re.fullmatch(r"-?[0-9]{1,12}", digits) else None
    seconds = event_time_to_unix_seconds(value)
    return None if seconds is None else f"{CLEVERTAP_DATE_PREFIX}{seconds}"


def _converter(kind: str, where: str) -> Callable[[Any], Any]:
    def to_date(value: Any) -> Any:
        out = _as_date(value)
        if out is None:
            raise MappingError(f"{where}: the value is not a date or date-time")
        return out

    def to_number(value: Any) -> Any:
        out = _as_number(value)
        if out is None:
            raise MappingError(f"{where}: the value is not a number")
        return out

    def to_boolean(value: Any) -> Any:
        out = _as_boolean(value)
        if out is None:
            raise MappingError(f"{where}: the value is not a boolean")
        return out

    converters: dict[str, Callable[[Any], Any]] = {
        "date": to_date, "number": to_number, "boolean": to_boolean, "string": _js_text,
    }
    return converters[kind]


_VALUE_FORMS: Final = ("path", "template", "literal", "first_of")
_CONVERSIONS: Final = ("date", "string", "number", "boolean")


def compile_value(spec: Any, where: str = "value") -> ValueFn:
    """Compile one value expression (module docstring). Raises :class:`MappingSyntaxError` naming ``where``."""
    if isinstance(spec, str):
        if looks_like_path(spec.strip()):
            return _path_or_error(spec, where).value
        if "{{" in spec or "}}" in spec:
            try:
                return _compile_template(spec)
            except MappingSyntaxError as exc:
                raise MappingSyntaxError(f"{where}: {exc}") from None
        return _constant(spec)
    if spec is None or isinstance(spec, (bool, int, float)):
        return _constant(spec)
    if isinstance(spec, list):
        if not spec:
            raise MappingSyntaxError(f"{where}: an empty fallback list")
        return _first_of([compile_value(item, f"{where}[{n}]") for n, item in enumerate(spec)])
    if isinstance(spec, dict):
        forms = [key for key in _VALUE_FORMS if key in spec]
        unknown = sorted(str(key) for key in spec if key not in _VALUE_FORMS and key != "as")
        if unknown or len(forms) != 1:
            raise MappingSyntaxError(
                f"{where}: a value object has exactly one of {', '.join(_VALUE_FORMS)} (and optionally 'as'); "
                f"got {', '.join(str(k) for k in spec) or 'nothing'} (a literal object is written "
                "{literal: {...}})"
            )
        form = forms[0]
        inner = spec[form]
        fn: ValueFn
        if form == "path":
            if not isinstance(inner, str):
                raise MappingSyntaxError(f"{where}.path: a path is a string such as $.traits.email")
            fn = _path_or_error(inner if looks_like_path(inner) else "$." + inner, f"{where}.path").value
        elif form == "template":
            if not isinstance(inner, str):
                raise MappingSyntaxError(f"{where}.template: a template is a string")
            try:
                fn = _compile_template(inner)
            except MappingSyntaxError as exc:
                raise MappingSyntaxError(f"{where}.template: {exc}") from None
        elif form == "literal":
            fn = _constant(inner)
        else:
            if not isinstance(inner, list):
                raise MappingSyntaxError(f"{where}.first_of: a list of value expressions")
            fn = compile_value(inner, f"{where}.first_of")
        kind = spec.get("as")
        if kind is None:
            return fn
        if kind not in _CONVERSIONS:
            raise MappingSyntaxError(f"{where}.as: one of {', '.join(_CONVERSIONS)}, got {kind!r}")
        convert = _converter(kind, where)

        def converted(event: Event) -> Any:
            value = fn(event)
            if value is MISSING:
                return MISSING
            value = convert(value)
            return MISSING if value == "" else value

        return converted
    raise MappingSyntaxError(f"{where}: a {type(spec).__name__} is not a value expression")


def _path_or_error(text: str, where: str) -> Path:
    try:
        return parse_path(text)
    except MappingSyntaxError as exc:
        raise MappingSyntaxError(f"{where}: {exc}") from None


# ---- Object mappings ------------------------------------------------------------------------------------------

SPREAD_KEY: Final = "*"


@dataclass(frozen=True, slots=True)
class _Spread:
    path: Path
    exclude: frozenset[str]


class ObjectMapping:
    """A compiled ``profileData`` / ``evtData`` mapping; ``build(event)`` returns the mapped object.

    Explicit keys come first (in the order written, only those with a value), then the keys of the spread
    objects that are not set yet and not excluded, values as they are. Raises :class:`MappingError` when a spread
    path holds something that is not an object. The result may be the event's own map (a whole-object copy is
    not copied): callers must not mutate it (:func:`finish_profile` and :func:`finish_event` build new dicts).
    """

    __slots__ = ("_explicit", "_spreads", "build")

    def __init__(self, explicit: Sequence[tuple[str, ValueFn]], spreads: Sequence[_Spread]) -> None:
        self._explicit = tuple(explicit)
        self._spreads = tuple(spreads)
        self.build = self._make_build()

    def _make_build(self) -> Callable[[Event], Mapping[str, Any]]:
        explicit = self._explicit
        spreads = self._spreads
        if not explicit and len(spreads) == 1 and not spreads[0].exclude:
            # The whole object (``evtData: $.properties``): the most common mapping, kept minimal.
            get = spreads[0].path.get
            display = spreads[0].path.display

            def whole(event: Event) -> Mapping[str, Any]:
                source = get(event)
                if type(source) is dict:
                    return source
                if source is MISSING:
                    return {}
                if isinstance(source, Mapping):
                    return source
                raise MappingError(f"{display} is a {type(source).__name__}, expected an object")

            return whole

        def build(event: Event) -> Mapping[str, Any]:
            out: dict[str, Any] = {}
            for key, fn in explicit:
                value = fn(event)
                if value is not MISSING:
                    out[key] = value
            for spread in spreads:
                source = spread.path.get(event)
                if source is MISSING:
                    continue
                if type(source) is not dict and not isinstance(source, Mapping):
                    raise MappingError(f"{spread.path.display} is a {type(source).__name__}, expected an object")
                exclude = spread.exclude
                for key, value in source.items():
                    if key not in out and key not in exclude:
                        out[key] = value
            return out

        return build


def _compile_spread(spec: Any, where: str) -> _Spread:
    if isinstance(spec, str):
        return _Spread(_path_or_error(spec, where), frozenset())
    if isinstance(spec, dict):
        unknown = sorted(str(k) for k in spec if k not in ("from", "except"))
        if unknown or "from" not in spec:
            raise MappingSyntaxError(f"{where}: a spread is a path or {{from: <path>, except: [keys]}}")
        source = spec["from"]
        if not isinstance(source, str):
            raise MappingSyntaxError(f"{where}.from: a path such as $.traits")
        excluded = spec.get("except") or []
        if not isinstance(excluded, list) or not all(isinstance(k, str) for k in excluded):
            raise MappingSyntaxError(f"{where}.except: a list of keys")
        return _Spread(_path_or_error(source, f"{where}.from"), frozenset(excluded))
    raise MappingSyntaxError(f"{where}: a spread is a path or {{from: <path>, except: [keys]}}")


def compile_object(spec: Any, where: str, *, max_key_bytes: int | None = None) -> ObjectMapping:
    """Compile a ``profileData`` / ``evtData`` mapping. Raises :class:`MappingSyntaxError` naming ``where``."""
    if spec is None:
        return ObjectMapping((), ())
    if isinstance(spec, str):
        if not looks_like_path(spec.strip()):
            raise MappingSyntaxError(
                f"{where}: unknown path syntax {spec!r}: expected a path to an object ($.traits) or a map of keys"
            )
        return ObjectMapping((), (_Spread(_path_or_error(spec, where), frozenset()),))
    if not isinstance(spec, dict):
        raise MappingSyntaxError(f"{where}: expected a path to an object ($.traits) or a map of keys")
    explicit: list[tuple[str, ValueFn]] = []
    spreads: list[_Spread] = []
    for key, value in spec.items():
        if key == SPREAD_KEY:
            items = value if isinstance(value, list) else [value]
            for n, item in enumerate(items):
                suffix = f"[{n}]" if isinstance(value, list) else ""
                spreads.append(_compile_spread(item, f'{where}["*"]{suffix}'))
            continue
        if not isinstance(key, str) or not key.strip():
            raise MappingSyntaxError(f"{where}: keys are non-empty strings, got {key!r}")
        if max_key_bytes is not None and len(key.encode("utf-8")) > max_key_bytes:
            raise MappingSyntaxError(f"{where}.{key[:20]}...: CleverTap keys are at most {max_key_bytes} bytes")
        explicit.append((key, compile_value(value, f"{where}.{key}")))
    return ObjectMapping(explicit, spreads)


# ---- What CleverTap accepts -----------------------------------------------------------------------------------

PROFILE_KEY_MAX_BYTES: Final = 120
PROFILE_VALUE_MAX_BYTES: Final = 512
MULTI_VALUE_MAX_ITEMS: Final = 100
EVENT_MAX_PROPERTIES: Final = 100
CHARGED_EVENT: Final = "Charged"
CHARGED_ITEMS: Final = "Items"

#: CleverTap's own system events: an upload with one of these names is refused (513).
RESTRICTED_EVENT_NAMES: Final = frozenset(
    {
        "Web Page Viewed",
        "App Launched",
        "App Installed",
        "App Uninstalled",
        "Notification Viewed",
        "Notification Clicked",
        "UTM Visited",
        "Stayed",
    }
)


class NestedValues(enum.StrEnum):
    """What to do with objects and lists CleverTap does not store (it refuses them with 512).

    ``reject``: refuse the record before sending, with 512. ``stringify``: send them as compact JSON text (what
    RudderStack's destination does). ``allow``: send them unchanged (accounts with nested objects enabled).
    Profile lists of strings (multi-value properties) and the ``Items`` of a ``Charged`` event are always allowed.
    """

    REJECT = "reject"
    STRINGIFY = "stringify"
    ALLOW = "allow"


def _utf8_longer(text: str, limit: int) -> bool:
    # A code point is at most 4 bytes in UTF-8: short strings never need encoding.
    return len(text) * 4 > limit and len(text.encode("utf-8", "surrogatepass")) > limit


_EMAIL_RE: Final = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s.]+", re.ASCII)
_PHONE_RE: Final = re.compile(r"\+[0-9]{8,15}", re.ASCII)
_PHONE_PUNCTUATION: Final = str.maketrans("", "", " -().\u00a0\t")

_GENDERS: Final = {"m": "M", "male": "M", "man": "M", "f": "F", "female": "F", "woman": "F"}
_EDUCATION: Final = {"school": "School", "college": "College", "graduate": "Graduate"}


def _reject(code: int | None, message: str) -> ValidationError:
    return ValidationError(message, code=code)


def _email(value: Any) -> Any:
    if isinstance(value, str):
        text = value.strip()
        if _EMAIL_RE.fullmatch(text):
            return text
    raise _reject(515, "Email is not a valid e-mail address")


def _phone(value: Any) -> Any:
    if isinstance(value, str):
        text = value.strip()
        if _PHONE_RE.fullmatch(text):
            return text
        compact = text.translate(_PHONE_PUNCTUATION)
        if _PHONE_RE.fullmatch(compact):
            return compact
    raise _reject(516, "Phone is not in E.164 form (+ country code and number, 8 to 15 digits)")


def _gender(value: Any) -> Any:
    if isinstance(value, str):
        normal = _GENDERS.get(value.strip().casefold())
        if normal is not None:
            return normal
    raise _reject(514, "Gender is not one CleverTap accepts (M or F; male/female/man/woman/m/f are converted)")


def _yes_no(field: str, code: int) -> Callable[[Any], Any]:
    def normalise(value: Any) -> Any:
        if value in ("Y", "N"):
            return value
        flag = _as_boolean(value)
        if flag is None:
            raise _reject(code, f"{field} is not Y/N (true/false/yes/no are converted)")
        return "Y" if flag else "N"

    return normalise


def _education(value: Any) -> Any:
    if isinstance(value, str):
        normal = _EDUCATION.get(value.strip().casefold())
        if normal is not None:
            return normal
    raise _reject(518, "Education is not School, College or Graduate")


def _age(value: Any) -> Any:
    if type(value) is int and value >= 0:
        return value
    number = _as_number(value)
    if number is not None and number >= 0 and float(number).is_integer():
        return int(number)
    raise _reject(520, "Age is not a whole number of years")


def _dob(value: Any) -> Any:
    out = _as_date(value)
    if out is None:
        raise _reject(None, "DOB is not a date (ISO-8601 date, epoch seconds/milliseconds or $D_<seconds>)")
    return out


def _message_flag_value(key: str, value: Any) -> bool:
    flag = _as_boolean(value)
    if flag is None:
        raise _reject(None, f"{key} is not a boolean (true/false/yes/no/1/0 are converted)")
    return flag


def _message_flag(key: str) -> Callable[[Any], Any]:
    return lambda value: _message_flag_value(key, value)


#: Standard profile keys whose values CleverTap checks or interprets, and how they are normalised.
_STANDARD_NORMALISERS: Final[Mapping[str, Callable[[Any], Any]]] = {
    "Email": _email,
    "Phone": _phone,
    "Gender": _gender,
    "Employed": _yes_no("Employed", 517),
    "Married": _yes_no("Married", 519),
    "Education": _education,
    "Age": _age,
    "DOB": _dob,
    "MSG-email": _message_flag("MSG-email"),
    "MSG-sms": _message_flag("MSG-sms"),
    "MSG-push": _message_flag("MSG-push"),
    "MSG-whatsapp": _message_flag("MSG-whatsapp"),
}

#: Every standard profile key (the ones without a normaliser are plain values: Name, Photo, Customer Type).
STANDARD_PROFILE_KEYS: Final = frozenset({*_STANDARD_NORMALISERS, "Name", "Photo", "Customer Type"})

_SCALARS: Final = (str, int, float, bool, type(None))


def _json_text(value: Any, where: str) -> str:
    try:
        return orjson.dumps(value, default=_json_default).decode()
    except TypeError as exc:
        raise MappingError(f"{where}: cannot be written as JSON ({exc})") from None


def _json_default(value: Any) -> Any:
    if isinstance(value, tuple):
        return list(value)
    raise TypeError(f"{type(value).__name__} is not JSON")


def _plain_leaf(value: Any, where: str) -> Any:
    """Leaves JSON cannot carry as they are: a time of day becomes ``HH:MM:SS[.ffffff]``, bytes are refused."""
    if isinstance(value, _dt.time):
        return value.isoformat()
    if isinstance(value, (bytes, bytearray, memoryview)):
        raise MappingError(f"{where}: binary values cannot be sent to CleverTap")
    return value


def _flat_object(value: Mapping[Any, Any], nested: NestedValues, where: str, code_text: str) -> dict[str, Any]:
    """An object whose values must be scalars (a Charged item): nested values per ``nested``."""
    out: dict[str, Any] = {}
    for key, item in value.items():
        if isinstance(item, _SCALARS):
            out[key] = item
        elif nested is NestedValues.REJECT:
            raise _reject(512, f"{code_text}: '{key}' is nested")
        elif nested is NestedValues.STRINGIFY and isinstance(item, (dict, list, tuple)):
            out[key] = _json_text(item, where)
        else:
            out[key] = _plain_leaf(item, where)
    return out


def _is_multi_value(value: list[Any]) -> bool:
    if len(value) > MULTI_VALUE_MAX_ITEMS:
        return False
    return all(type(item) is str and not _utf8_longer(item, PROFILE_VALUE_MAX_BYTES) for item in value)


_NOT_AN_INSTANT: Final = IsoRejection.NOT_AN_INSTANT
_ISO_MIN_LEN: Final = 10


def _plain_strings(value: list[Any], iso_min: int) -> bool:
    """A list of strings none of which can be an ISO date (the timestamp walk would change nothing)."""
    return all(type(item) is str and (len(item) < iso_min or item[4] != "-") for item in value)


def finish_profile(
    data: Mapping[str, Any],
    nested: NestedValues = NestedValues.REJECT,
    *,
    iso_strings: bool = True,
    date_type: bool = False,
) -> tuple[dict[str, Any], int]:
    """Convert timestamps in, normalise and check ``profileData``; returns (new dict, timestamp warnings).

    Timestamps are converted exactly as :func:`processor.timestamps.convert_timestamps` does (``iso_strings`` is
    the Convert Timestamps switch, ``date_type`` emits ``"$D_<seconds>"``), in the same pass as the checks:

    * keys with a ``null`` value are left out (an upsert of null changes nothing and CleverTap refuses null for
      its standard keys); so are standard keys whose value is an empty string;
    * standard keys are normalised or refused: Email (515), Phone (516), Gender (514), Employed (517),
      Education (518), Married (519), Age (520), DOB (a CleverTap date; no code), MSG-* (booleans; no code);
    * keys longer than 120 bytes and string values longer than 512 bytes are refused (512);
    * lists of at most 100 strings are multi-value properties; other lists and objects follow ``nested``.
    """
    out: dict[str, Any] = {}
    warnings = 0
    normaliser = _STANDARD_NORMALISERS.get  # locals: this loop runs for every key of every profile
    iso_min = _ISO_MIN_LEN if iso_strings else 1 << 30
    for key, value in data.items():
        kind = type(value)
        if kind is str:
            if len(value) >= iso_min and value[4] == "-":
                parsed = parse_iso8601(value)
                if type(parsed) is int:
                    value = f"{CLEVERTAP_DATE_PREFIX}{parsed}" if date_type else parsed
                    kind = type(value)
                elif parsed is _NOT_AN_INSTANT:
                    warnings += 1
        elif value is None:
            continue
        elif kind is list and _plain_strings(value, iso_min):
            pass  # a multi-value property without dates (tags): nothing to convert
        elif kind is not int and kind is not float and kind is not bool:
            value, found = convert_timestamps(value, date_type=date_type, iso_strings=iso_strings)
            warnings += found
            kind = type(value)
        if len(key) > 30 and _utf8_longer(key, PROFILE_KEY_MAX_BYTES):
            raise _reject(512, f"profile key '{key[:40]}...' is longer than {PROFILE_KEY_MAX_BYTES} bytes")
        normalise = normaliser(key)
        if normalise is not None:
            if value == "":
                continue
            value = normalise(value)
            kind = type(value)
        elif key[:4] == "MSG-":
            value = _message_flag_value(key, value)
            kind = bool
        if kind is str:
            if len(value) > 128 and _utf8_longer(value, PROFILE_VALUE_MAX_BYTES):
                raise _reject(512, f"profile value of '{key}' is longer than {PROFILE_VALUE_MAX_BYTES} bytes")
        elif kind is int or kind is float or kind is bool or (kind is list and _is_multi_value(value)):
            pass
        elif kind is list or kind is dict or kind is tuple:
            if nested is NestedValues.REJECT:
                what = "an object" if kind is dict else "a list that is not a multi-value property (<= 100 strings)"
                raise _reject(512, f"profile value of '{key}' is {what}; CleverTap refuses nested values")
            if nested is NestedValues.STRINGIFY:
                value = _json_text(value, f"profileData.{key}")
                if _utf8_longer(value, PROFILE_VALUE_MAX_BYTES):
                    raise _reject(
                        512, f"profile value of '{key}' as JSON text is longer than {PROFILE_VALUE_MAX_BYTES} bytes"
                    )
        else:
            value = _plain_leaf(value, f"profileData.{key}")
        out[key] = value
    return out, warnings


def finish_event(
    name: Any,
    data: Mapping[str, Any],
    nested: NestedValues = NestedValues.REJECT,
    *,
    iso_strings: bool = True,
    date_type: bool = False,
) -> tuple[dict[str, Any], int]:
    """Check an event's name and convert timestamps in, and check, ``evtData``; returns (new dict, warnings).

    Refuses a missing or blank name (509), a system event name (513), more than 100 properties (522) and nested
    values (512, unless ``nested`` says otherwise) except the ``Items`` list of flat objects of ``Charged``.
    ``null`` values are kept: the event says the property was null.
    """
    if not isinstance(name, str) or not name.strip():
        raise _reject(509, "the event has no name")
    if name in RESTRICTED_EVENT_NAMES:
        raise _reject(513, f"'{name}' is a restricted CleverTap system event name")
    if len(data) > EVENT_MAX_PROPERTIES:
        raise _reject(522, f"{len(data)} event properties, CleverTap takes at most {EVENT_MAX_PROPERTIES}")
    out: dict[str, Any] = {}
    warnings = 0
    iso_min = _ISO_MIN_LEN if iso_strings else 1 << 30
    for key, value in data.items():
        kind = type(value)
        if kind is str:
            if len(value) >= iso_min and value[4] == "-":
                parsed = parse_iso8601(value)
                if type(parsed) is int:
                    value = f"{CLEVERTAP_DATE_PREFIX}{parsed}" if date_type else parsed
                elif parsed is _NOT_AN_INSTANT:
                    warnings += 1
        elif value is not None and kind is not int and kind is not float and kind is not bool:
            value, found = convert_timestamps(value, date_type=date_type, iso_strings=iso_strings)
            warnings += found
            value = _event_value(name, key, value, nested)
        out[key] = value
    return out, warnings


def _event_value(name: str, key: Any, value: Any, nested: NestedValues) -> Any:
    if isinstance(value, _SCALARS):
        return value
    where = f"evtData.{key}"
    if name == CHARGED_EVENT and key == CHARGED_ITEMS and isinstance(value, (list, tuple)):
        if all(isinstance(item, Mapping) for item in value):
            return [_flat_object(item, nested, where, "Charged Items") for item in value]
        if nested is NestedValues.REJECT:
            raise _reject(512, "Charged Items must be a list of objects")
    if not isinstance(value, (dict, list, tuple)):
        return _plain_leaf(value, where)
    if nested is NestedValues.REJECT:
        what = "an object" if isinstance(value, dict) else "a list"
        raise _reject(512, f"event property '{key}' is {what}; CleverTap refuses nested event data")
    if nested is NestedValues.STRINGIFY:
        return _json_text(value, where)
    return value
