"""Subscriptions: which events feed which CleverTap action, and how an event becomes a CleverTap record.

Quick Setup is the presets (``presets.yaml`` next to this module, printed by ``processor presets``); Customized
Setup is a YAML file of the same format named by ``SUBSCRIPTIONS_FILE``. Both are compiled once, at load, into
:class:`Subscription` objects whose triggers and mappings are closures (:mod:`processor.triggers`,
:mod:`processor.mapping`); :func:`route` only runs them.

:func:`route` is pure: an event dict in, a :class:`RouteResult` out. Every enabled subscription whose trigger
matches fires, in the order listed, so one event may feed several actions.
"""

from __future__ import annotations

import enum
import functools
import importlib.resources
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import yaml

from processor.errors import ConfigError, RecordError
from processor.mapping import (
    MISSING,
    PROFILE_KEY_MAX_BYTES,
    MappingSyntaxError,
    NestedValues,
    ObjectMapping,
    ValueFn,
    compile_object,
    compile_value,
    finish_event,
    finish_profile,
    parse_path,
)
from processor.timestamps import event_time_to_unix_seconds
from processor.triggers import Trigger, TriggerSyntaxError, compile_trigger

SETTING: Final = "SUBSCRIPTIONS_FILE"


class Action(enum.StrEnum):
    UPLOAD_PROFILE = "upload_profile"
    UPLOAD_EVENT = "upload_event"
    DELETE_PROFILE = "delete_profile"


# CleverTap identifies a user by exactly one of these keys in an upload record.
UPLOAD_ID_KEYS = ("identity", "objectId", "FBID", "GPID")
# The delete endpoint calls CleverTap's own id ``guid`` where the upload endpoint says ``objectId``.
DELETE_ID_KEY = {"identity": "identity", "objectId": "guid"}
# CleverTap refuses ts <= 0 (525); Unix seconds stay below 10**10 until 2286, anything above is not seconds.
_TS_LIMIT: Final = 10**10


@dataclass(frozen=True, slots=True)
class Operation:
    """One thing to do at CleverTap for one event.

    ``user`` is the key that orders operations: two operations with the same ``user`` reach CleverTap in the order
    of their events in the partition. ``record`` is the exact upload record, or for a delete ``{id_key: value}``
    with ``id_key`` ``identity`` or ``guid``.
    """

    action: Action
    user: str
    record: dict[str, Any]
    subscription: str


@dataclass(frozen=True, slots=True)
class Failure:
    """A matched subscription whose record could not be made or would be refused by CleverTap."""

    subscription: str
    error: RecordError


@dataclass(frozen=True, slots=True)
class RouteResult:
    operations: list[Operation]
    # Why the event produced nothing, for counting ("no subscription matched", "no user id").
    skipped_reason: str | None = None
    # Strings that looked like ISO-8601 timestamps but are no real instant (left unchanged).
    timestamp_warnings: int = 0
    # Only with route(..., collect_errors=True): the matched subscriptions that failed, one entry each.
    errors: list[Failure] = field(default_factory=list)


class IfMissing(enum.StrEnum):
    """What a subscription does with an event whose identifier has no value."""

    SKIP = "skip"  # skip the event for this subscription and count it ("no user id")
    ANONYMOUS_ID = "anonymousId"  # the same identifier key carries the event's anonymousId
    OBJECT_ID = "objectId"  # the record is an anonymous CleverTap profile: objectId = anonymousId


_USER_ID = parse_path("$.userId").get
_ANONYMOUS_ID = parse_path("$.anonymousId").get
_TIMESTAMP = parse_path("$.timestamp").get
_EVENT_NAME = parse_path("$.event").get


@dataclass(frozen=True, slots=True)
class Identity:
    key: str = "identity"  # "identity" or "objectId"
    source: ValueFn = _USER_ID
    if_missing: IfMissing = IfMissing.SKIP


_EMPTY = ObjectMapping((), ())


@dataclass(frozen=True)
class Subscription:
    """A compiled subscription. Build one with :func:`compile_subscriptions` (or the presets).

    ``spec`` is the effective configuration it was compiled from (defaults filled in), for display.
    """

    name: str
    action: Action
    trigger: Trigger
    enabled: bool = True
    identity: Identity = field(default_factory=Identity)
    event_time: ValueFn = _TIMESTAMP
    profile_data: ObjectMapping = _EMPTY
    event_name: ValueFn = _EVENT_NAME
    event_data: ObjectMapping = _EMPTY
    convert_timestamps: bool = True
    date_type: bool = False
    nested_values: NestedValues = NestedValues.REJECT
    spec: Mapping[str, Any] = field(default_factory=dict)


def _id_text(value: Any) -> str | None:
    if isinstance(value, str):
        return value if value.strip() else None
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return None


def _identify(identity: Identity, event: Mapping[str, Any]) -> tuple[str, str] | None:
    value = _id_text(identity.source(event))
    if value is not None:
        return identity.key, value
    if identity.if_missing is IfMissing.SKIP:
        return None
    anonymous = _id_text(_ANONYMOUS_ID(event))
    if anonymous is None:
        return None
    return (identity.key if identity.if_missing is IfMissing.ANONYMOUS_ID else "objectId"), anonymous


def apply(subscription: Subscription, event: Mapping[str, Any]) -> tuple[Operation | None, str | None, int]:
    """Run one matched subscription: (operation, reason it was skipped, timestamp warnings).

    Raises :class:`~processor.errors.MappingError` (stage ``map``) when the mappings cannot produce a record and
    :class:`~processor.errors.ValidationError` (stage ``validate``, with CleverTap's code) when CleverTap would
    refuse the record.
    """
    found = _identify(subscription.identity, event)
    if found is None:
        return None, "no user id", 0
    id_key, id_value = found
    user = f"{id_key}:{id_value}"
    action = subscription.action
    if action is Action.DELETE_PROFILE:
        record: dict[str, Any] = {DELETE_ID_KEY[id_key]: id_value}
        return Operation(action, user, record, subscription.name), None, 0
    record = {"type": "profile" if action is Action.UPLOAD_PROFILE else "event", id_key: id_value}
    time_value = subscription.event_time(event)
    if time_value is not MISSING:
        ts = event_time_to_unix_seconds(time_value)
        # Out of range (<= 0 or not seconds at all) is left out: CleverTap then uses the arrival time.
        if ts is not None and 0 < ts < _TS_LIMIT:
            record["ts"] = ts
    if action is Action.UPLOAD_PROFILE:
        record["profileData"], warnings = finish_profile(
            subscription.profile_data.build(event),
            subscription.nested_values,
            iso_strings=subscription.convert_timestamps,
            date_type=subscription.date_type,
        )
    else:
        name = subscription.event_name(event)
        data, warnings = finish_event(
            None if name is MISSING else name,
            subscription.event_data.build(event),
            subscription.nested_values,
            iso_strings=subscription.convert_timestamps,
            date_type=subscription.date_type,
        )
        record["evtName"] = name
        record["evtData"] = data
    return Operation(action, user, record, subscription.name), None, warnings


def route(
    event: Mapping[str, Any], subscriptions: Sequence[Subscription], *, collect_errors: bool = False
) -> RouteResult:
    """Every enabled subscription whose trigger matches fires, in the order they are listed.

    By default the first failing subscription fails the whole event: its :class:`RecordError` is raised (same
    class, ``stage`` and ``code``; the message names the subscription) and no operation of that event is returned,
    so the event is dead-lettered once and can be produced again as a whole. With ``collect_errors`` nothing is
    raised: the operations of the subscriptions that worked are returned with one :class:`Failure` per failed
    subscription in ``errors`` (``skipped_reason`` is then None when nothing worked and something failed).
    """
    operations: list[Operation] = []
    failures: list[Failure] = []
    skipped: str | None = "no subscription matched"
    warnings = 0
    for subscription in subscriptions:
        if not subscription.enabled or not subscription.trigger(event):
            continue
        try:
            operation, reason, found = apply(subscription, event)
        except RecordError as exc:
            if not collect_errors:
                named = type(exc)(f"{subscription.name}: {exc.message}", code=exc.code)
                raise named from exc
            failures.append(Failure(subscription.name, exc))
            continue
        warnings += found
        if operation is None:
            skipped = reason
        else:
            operations.append(operation)
    if operations or failures:
        skipped = None
    return RouteResult(operations, skipped, warnings, failures)


# ---- The subscriptions file -----------------------------------------------------------------------------------

_SUBSCRIPTION_KEYS: Final = (
    "name", "action", "enabled", "trigger", "identity", "mappings", "convert_timestamps", "date_type",
    "nested_values",
)
_MAPPING_FIELDS: Final[Mapping[Action, tuple[str, ...]]] = {
    Action.UPLOAD_PROFILE: ("ts", "profileData"),
    Action.UPLOAD_EVENT: ("ts", "evtName", "evtData"),
    Action.DELETE_PROFILE: (),
}
_MAPPING_DEFAULTS: Final[Mapping[str, str]] = {
    "ts": "$.timestamp",
    "profileData": "$.traits",
    "evtName": "$.event",
    "evtData": "$.properties",
}
_DEFAULT_ID_SOURCE: Final = {"identity": "$.userId", "objectId": "$.anonymousId"}


class _StrictLoader(yaml.SafeLoader):
    """PyYAML's safe loader, refusing duplicate keys (a second ``Email:`` would silently win otherwise)."""


def _construct_mapping(loader: _StrictLoader, node: yaml.MappingNode) -> dict[Any, Any]:
    seen: set[Any] = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=True)
        try:
            duplicate = key in seen
        except TypeError:
            raise yaml.constructor.ConstructorError(
                None, None, "a key that is an object or list (quote templates: \"{{traits.name}}\")",
                key_node.start_mark,
            ) from None
        if duplicate:
            raise yaml.constructor.ConstructorError(None, None, f"duplicate key {key!r}", key_node.start_mark)
        seen.add(key)
    loader.flatten_mapping(node)
    return dict(loader.construct_pairs(node, deep=True))


_StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def _yaml_hint(problem: str) -> str:
    if "alias" in problem:
        return ' (a key or value starting with * must be quoted: "*": $.traits)'
    if "tag" in problem:
        return " (a value starting with ! must be quoted: trigger: '!match(event, \"Order*\")')"
    if "unhashable" in problem or "object or list" in problem:
        return ' (quote templates: "{{traits.first_name}} {{traits.last_name}}")'
    return ""


def parse_yaml(text: str, source: str) -> Any:
    """``text`` as plain data (safe loader, no duplicate keys); raises :class:`ConfigError` with line and column."""
    try:
        return yaml.load(text, Loader=_StrictLoader)  # a SafeLoader subclass: plain data only
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
        problem = str(exc.problem or exc.context or "not valid YAML")
        hint = _yaml_hint(f"{exc.context or ''} {problem}")
        raise ConfigError(SETTING, f"{source}: {where}{problem}{hint}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(SETTING, f"{source}: not valid YAML: {exc}") from None


class _Problems:
    def __init__(self, source: str) -> None:
        self.source = source
        self.items: list[str] = []

    def add(self, where: str, reason: str) -> None:
        # Compile errors already start with their (more precise) location: keep it once.
        located = not where or reason.startswith((where + ":", where + ".", where + "["))
        self.items.append(reason if located else f"{where}: {reason}")

    def raise_if_any(self) -> None:
        if not self.items:
            return
        first = ConfigError(SETTING, f"{self.source}: {self.items[0]}")
        if len(self.items) > 1:
            first.add_note("\n".join(f"{SETTING}: {self.source}: {item}" for item in self.items[1:]))
        raise first




def _boolean(spec: Mapping[str, Any], key: str, default: bool, where: str, problems: _Problems) -> bool:
    value = spec.get(key, default)
    if not isinstance(value, bool):
        problems.add(f"{where}.{key}", f"true or false, got {value!r}")
        return default
    return value


def _compile_identity(spec: Any, where: str, problems: _Problems) -> tuple[Identity, dict[str, Any]]:
    if spec is None:
        spec = {}
    elif isinstance(spec, str):
        spec = {"key": spec}
    if not isinstance(spec, dict):
        problems.add(where, "an object {key: identity|objectId, from: <path>, if_missing: skip|anonymousId|objectId}")
        return Identity(), {}
    for key in spec:
        if key not in ("key", "from", "if_missing"):
            problems.add(f"{where}.{key}", "unknown setting (key, from, if_missing)")
    key = spec.get("key", "identity")
    if key not in _DEFAULT_ID_SOURCE:
        problems.add(f"{where}.key", f"identity or objectId, got {key!r}")
        key = "identity"
    source_spec = spec.get("from", _DEFAULT_ID_SOURCE[key])
    source: ValueFn = _USER_ID
    try:
        source = compile_value(source_spec, f"{where}.from")
    except MappingSyntaxError as exc:
        problems.add(f"{where}.from", str(exc))
    if_missing_text = spec.get("if_missing", "skip")
    try:
        if_missing = IfMissing(if_missing_text)
    except ValueError:
        problems.add(f"{where}.if_missing", f"skip, anonymousId or objectId, got {if_missing_text!r}")
        if_missing = IfMissing.SKIP
    effective = {"key": key, "from": source_spec, "if_missing": if_missing.value}
    return Identity(key, source, if_missing), effective


def _compile_one(spec: Any, where: str, problems: _Problems, names: set[str]) -> Subscription | None:
    if not isinstance(spec, dict):
        problems.add(where, "a subscription is an object with name, action, trigger, ...")
        return None
    before = len(problems.items)
    for key in spec:
        if key not in _SUBSCRIPTION_KEYS:
            problems.add(f"{where}.{key}", f"unknown setting ({', '.join(_SUBSCRIPTION_KEYS)})")
    name = spec.get("name")
    if not isinstance(name, str) or not name.strip():
        problems.add(f"{where}.name", "every subscription needs a name")
        name = f"subscription {where}"
    elif name in names:
        problems.add(f"{where}.name", f"{name!r} is used twice; names identify subscriptions in dead letters")
    names.add(name)
    action_text = spec.get("action")
    action: Action | None = None
    try:
        action = Action(str(action_text))
    except ValueError:
        problems.add(
            f"{where}.action", f"unknown action {action_text!r} (upload_profile, upload_event, delete_profile)"
        )
    trigger: Trigger = compile_trigger(False)
    if "trigger" not in spec:
        problems.add(f"{where}.trigger", "every subscription needs a trigger (true fires for every event)")
    else:
        try:
            trigger = compile_trigger(spec["trigger"], f"{where}.trigger")
        except TriggerSyntaxError as exc:
            problems.add(f"{where}.trigger", str(exc))
    enabled = _boolean(spec, "enabled", True, where, problems)
    convert = _boolean(spec, "convert_timestamps", True, where, problems)
    date_type = _boolean(spec, "date_type", False, where, problems)
    nested_text = spec.get("nested_values", NestedValues.REJECT.value)
    try:
        nested = NestedValues(nested_text)
    except ValueError:
        problems.add(f"{where}.nested_values", f"reject, stringify or allow, got {nested_text!r}")
        nested = NestedValues.REJECT
    identity, identity_spec = _compile_identity(spec.get("identity"), f"{where}.identity", problems)

    mappings = spec.get("mappings") or {}
    if not isinstance(mappings, dict):
        problems.add(f"{where}.mappings", "an object of action fields")
        mappings = {}
    if action is None:
        return None
    allowed = _MAPPING_FIELDS[action]
    for key in mappings:
        if key not in allowed:
            fields_text = ", ".join(allowed) if allowed else "none: a delete only needs the identity"
            problems.add(f"{where}.mappings.{key}", f"not a field of {action.value} ({fields_text})")
    effective_mappings: dict[str, Any] = {key: mappings.get(key, _MAPPING_DEFAULTS[key]) for key in allowed}
    compiled: dict[str, Any] = {}
    for key, value in effective_mappings.items():
        at = f"{where}.mappings.{key}"
        try:
            if key in ("profileData", "evtData"):
                limit = PROFILE_KEY_MAX_BYTES if key == "profileData" else None
                compiled[key] = compile_object(value, at, max_key_bytes=limit)
            else:
                compiled[key] = compile_value(value, at)
        except MappingSyntaxError as exc:
            problems.add(at, str(exc))
    if len(problems.items) > before:
        return None
    effective = {
        "name": name,
        "action": action.value,
        "enabled": enabled,
        "trigger": spec["trigger"],
        "identity": identity_spec,
        "convert_timestamps": convert,
        "date_type": date_type,
        "nested_values": nested.value,
        "mappings": effective_mappings,
    }
    return Subscription(
        name=name,
        action=action,
        trigger=trigger,
        enabled=enabled,
        identity=identity,
        event_time=compiled.get("ts", _TIMESTAMP),
        profile_data=compiled.get("profileData", _EMPTY),
        event_name=compiled.get("evtName", _EVENT_NAME),
        event_data=compiled.get("evtData", _EMPTY),
        convert_timestamps=convert,
        date_type=date_type,
        nested_values=nested,
        spec=effective,
    )


def compile_subscriptions(document: Any, source: str) -> list[Subscription]:
    """Compile a parsed subscriptions document; raises :class:`ConfigError` listing every problem with its place
    in the file (``<source>: subscriptions[2].mappings.profileData: ...``; the first in the message, the rest as
    notes)."""
    problems = _Problems(source)
    if isinstance(document, dict):
        for key in document:
            if key not in ("version", "subscriptions"):
                problems.add(str(key), "unknown top-level key (version, subscriptions)")
        if document.get("version", 1) != 1:
            problems.add("version", f"only version 1 exists, got {document.get('version')!r}")
        items = document.get("subscriptions")
    else:
        items = document
    if not isinstance(items, list):
        problems.add("subscriptions", "a list of subscriptions is required")
        problems.raise_if_any()
        return []
    if not items:
        problems.add("subscriptions", "the list is empty: nothing would ever reach CleverTap")
    names: set[str] = set()
    compiled = [_compile_one(spec, f"subscriptions[{n}]", problems, names) for n, spec in enumerate(items)]
    problems.raise_if_any()
    return [subscription for subscription in compiled if subscription is not None]


def load_subscriptions_text(text: str, source: str) -> list[Subscription]:
    return compile_subscriptions(parse_yaml(text, source), source)


def load_subscriptions_file(path: Path) -> list[Subscription]:
    """Read and compile a subscriptions file; every problem is a :class:`ConfigError` for ``SUBSCRIPTIONS_FILE``."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(SETTING, f"{path}: cannot read: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise ConfigError(SETTING, f"{path}: not UTF-8 text") from None
    return load_subscriptions_text(text, str(path))


@functools.cache
def presets_yaml() -> str:
    """The Quick Setup presets as a subscriptions file (what ``processor presets`` prints)."""
    return importlib.resources.files("processor").joinpath("presets.yaml").read_text(encoding="utf-8")


def preset_subscriptions() -> list[Subscription]:
    """Quick Setup: standard traits to CleverTap's standard profile keys, Order Completed as Charged, Delete User
    deletes, other tracks as events (see ``presets.yaml``)."""
    return load_subscriptions_text(presets_yaml(), "presets")


def describe_subscriptions(subscriptions: Sequence[Subscription]) -> list[dict[str, Any]]:
    """The effective configuration of each subscription (defaults filled in), for display."""
    return [dict(subscription.spec) for subscription in subscriptions]
