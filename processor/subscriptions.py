"""Subscriptions: which events feed which CleverTap action, and how an event becomes a CleverTap record.

Pure: an event dict in, a list of :class:`Operation` out (empty = nothing to do for this event). Every
subscription whose trigger matches fires, so one event may feed several actions.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from processor.errors import MappingError
from processor.timestamps import convert_timestamps, event_time_to_unix_seconds


class Action(StrEnum):
    UPLOAD_PROFILE = "upload_profile"
    UPLOAD_EVENT = "upload_event"
    DELETE_PROFILE = "delete_profile"


# CleverTap identifies a user by exactly one of these keys in an upload record.
UPLOAD_ID_KEYS = ("identity", "objectId", "FBID", "GPID")
# The delete endpoint calls CleverTap's own id ``guid`` where the upload endpoint says ``objectId``.
DELETE_ID_KEY = {"identity": "identity", "objectId": "guid"}


@dataclass(frozen=True, slots=True)
class Operation:
    """One thing to do at CleverTap for one event.

    ``user`` is the key that orders operations: two operations with the same ``user`` reach CleverTap in the order
    of their events in the partition. ``record`` is the exact upload record, or for a delete ``{id_key: value}``.
    """

    action: Action
    user: str
    record: dict[str, Any]
    subscription: str


@dataclass(frozen=True, slots=True)
class RouteResult:
    operations: list[Operation]
    # Why the event produced nothing, for counting ("no subscription matched", "no user id").
    skipped_reason: str | None = None
    # Strings that looked like ISO-8601 timestamps but are no real instant (left unchanged).
    timestamp_warnings: int = 0


Trigger = Callable[[Mapping[str, Any]], bool]


@dataclass(frozen=True)
class Subscription:
    """A named rule: when ``trigger`` matches an event, ``build`` turns it into a CleverTap record.

    ``build`` returns the record without the user identifier and timestamp, which are filled in uniformly from
    ``identity_from`` and the event time. It raises :class:`MappingError` when the event cannot be mapped.
    """

    name: str
    action: Action
    trigger: Trigger
    build: Callable[[Mapping[str, Any]], dict[str, Any]]
    enabled: bool = True
    convert_timestamps: bool = True
    date_type: bool = False
    identity_key: str = "identity"
    identity_from: tuple[str, ...] = ("userId",)
    extra: Mapping[str, Any] = field(default_factory=dict)


def _user_id(event: Mapping[str, Any], sources: Sequence[str]) -> str | None:
    for source in sources:
        value = event.get(source)
        if isinstance(value, str) and value.strip():
            return value
        if isinstance(value, int) and not isinstance(value, bool):
            return str(value)
    return None


def apply(subscription: Subscription, event: Mapping[str, Any]) -> tuple[Operation | None, str | None, int]:
    """Run one matched subscription: (operation, reason it was skipped, timestamp warnings)."""
    user_id = _user_id(event, subscription.identity_from)
    if user_id is None:
        return None, "no user id", 0
    body = subscription.build(event)
    warnings = 0
    if subscription.action is Action.DELETE_PROFILE:
        record: dict[str, Any] = {DELETE_ID_KEY[subscription.identity_key]: user_id}
    else:
        record = {
            "type": "profile" if subscription.action is Action.UPLOAD_PROFILE else "event",
            subscription.identity_key: user_id,
        }
        ts = event_time_to_unix_seconds(event.get("timestamp"))
        # CleverTap rejects ts <= 0 (525); leaving it out makes CleverTap use the arrival time instead.
        if ts is not None and ts > 0:
            record["ts"] = ts
        data_key = "profileData" if subscription.action is Action.UPLOAD_PROFILE else "evtData"
        data = body.get(data_key, {})
        converted, warnings = convert_timestamps(
            data, date_type=subscription.date_type, iso_strings=subscription.convert_timestamps
        )
        record.update(body)
        record[data_key] = converted
    user = f"{subscription.identity_key}:{user_id}"
    return Operation(subscription.action, user, record, subscription.name), None, warnings


def route(event: Mapping[str, Any], subscriptions: Sequence[Subscription]) -> RouteResult:
    """Every enabled subscription whose trigger matches fires, in the order they are listed."""
    operations: list[Operation] = []
    skipped: str | None = "no subscription matched"
    warnings = 0
    for subscription in subscriptions:
        if not subscription.enabled or not subscription.trigger(event):
            continue
        operation, reason, found = apply(subscription, event)
        warnings += found
        if operation is None:
            skipped = reason
        else:
            operations.append(operation)
    return RouteResult(operations, None if operations else skipped, warnings)


def _attributes(event: Mapping[str, Any], key: str) -> dict[str, Any]:
    value = event.get(key)
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise MappingError(f"{key} is a {type(value).__name__}, expected an object")
    return dict(value)


def _event_name(event: Mapping[str, Any]) -> str:
    name = event.get("event")
    if not isinstance(name, str) or not name.strip():
        raise MappingError("track event has no event name")
    return name


DELETE_EVENT_NAME = "Delete User"


def preset_subscriptions() -> list[Subscription]:
    """Quick Setup: what the CleverTap (Actions) destination subscribes to by default."""
    return [
        Subscription(
            name="Upload User Profile",
            action=Action.UPLOAD_PROFILE,
            trigger=lambda e: e.get("type") == "identify",
            build=lambda e: {"profileData": _attributes(e, "traits")},
        ),
        Subscription(
            name="Delete User Profile",
            action=Action.DELETE_PROFILE,
            trigger=lambda e: e.get("type") == "track" and e.get("event") == DELETE_EVENT_NAME,
            build=lambda e: {},
        ),
        Subscription(
            name="Upload Event",
            action=Action.UPLOAD_EVENT,
            trigger=lambda e: e.get("type") == "track" and e.get("event") != DELETE_EVENT_NAME,
            build=lambda e: {"evtName": _event_name(e), "evtData": _attributes(e, "properties")},
        ),
    ]
