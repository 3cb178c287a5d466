"""Table-driven tests for processor.subscriptions.route with the Quick Setup presets.

Events look like the decoder's output for schemas/user_event.avsc (every optional field present, maps default
to {}). Hand-computed instants: 2024-01-01 = 1704067200, + 31 (Jan) + 29 (Feb) days = 2024-03-01 = 1709251200,
so 2024-03-01T01:00:00Z = 1709254800; 2023-01-01 = 1672531200, + 09:30 = 1672565400; 2000-01-01 = 946684800.
Traits here are mostly custom keys; the standard Segment traits (email -> Email ...), Order Completed -> Charged,
nested values and validation are covered in depth by test_mapping.py and test_subscriptions_file.py.
"""

from __future__ import annotations

import copy
import datetime as dt
from typing import Any

import pytest

from processor.errors import MappingError, ValidationError
from processor.subscriptions import Action, Operation, RouteResult, preset_subscriptions, route

T_2024_03_01_0100 = 1709254800
PRESETS = preset_subscriptions()


def event(**fields: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "messageId": "msg-1",
        "type": "identify",
        "userId": "u-1",
        "anonymousId": None,
        "event": None,
        "name": None,
        "groupId": None,
        "previousId": None,
        "timestamp": "2024-03-01T01:00:00Z",
        "traits": {},
        "properties": {},
        "context": {},
    }
    base.update(fields)
    return base


def only_operation(result: RouteResult) -> Operation:
    assert result.skipped_reason is None
    assert len(result.operations) == 1
    return result.operations[0]


# ------------------------------------------------------------------------------------------------
# identify -> profile upload
# ------------------------------------------------------------------------------------------------

IDENTIFY: list[tuple[str, dict[str, Any], dict[str, Any]]] = [
    (
        "scalars",
        {"plan": "gold", "logins": 3, "beta": True, "score": 0.1, "coupon": None},
        {"plan": "gold", "logins": 3, "beta": True, "score": 0.1},  # null: nothing to upsert, left out
    ),
    ("no traits", {}, {}),
    ("ISO date-time", {"createdAt": "2023-01-01T09:30:00Z"}, {"createdAt": 1672565400}),
    ("ISO date alone", {"signup": "2024-02-29"}, {"signup": 1709164800}),
    ("ISO with offset", {"at": "2024-03-01T02:00:00+01:00"}, {"at": T_2024_03_01_0100}),
    ("ISO with fraction floors", {"at": "2024-03-01T01:00:00.999Z"}, {"at": T_2024_03_01_0100}),
    (
        "ISO inside a list of objects",
        {"orders": [{"at": "2000-01-01T00:00:00Z", "total": 0.1}, {"at": None, "total": 2}]},
        # The presets send nested values as JSON text (CleverTap refuses nesting): converted first, then written.
        {"orders": '[{"at":946684800,"total":0.1},{"at":null,"total":2}]'},
    ),
    (
        "ISO inside nested objects",
        {"history": {"first": {"seen": "1970-01-01T00:00:01Z"}}},
        {"history": '{"first":{"seen":1}}'},
    ),
    ("ISO inside a list of strings", {"dates": ["2000-01-01", "not a date"]}, {"dates": '[946684800,"not a date"]'}),
    ("list of strings is a multi-value property", {"tags": ["a", "b"]}, {"tags": ["a", "b"]}),
    (
        "strings that are not ISO stay",
        {"phone": "+447700900000", "version": "4.1.0", "zip": "20230328", "when": "2024-03-01 01:00:00"},
        {"Phone": "+447700900000", "version": "4.1.0", "zip": "20230328", "when": "2024-03-01 01:00:00"},
    ),
    ("impossible date stays", {"d": "2023-02-30"}, {"d": "2023-02-30"}),
]


@pytest.mark.parametrize(("label", "traits", "profile_data"), IDENTIFY, ids=[r[0] for r in IDENTIFY])
def test_identify_uploads_a_profile(label: str, traits: dict[str, Any], profile_data: dict[str, Any]) -> None:
    operation = only_operation(route(event(traits=traits), PRESETS))
    assert operation.action is Action.UPLOAD_PROFILE
    assert operation.subscription == "Upload User Profile"
    assert operation.user == "identity:u-1"
    assert operation.record == {
        "type": "profile",
        "identity": "u-1",
        "ts": T_2024_03_01_0100,
        "profileData": profile_data,
    }
    assert list(operation.record) == ["type", "identity", "ts", "profileData"]
    assert type(operation.record["ts"]) is int


def test_impossible_date_counts_a_warning() -> None:
    result = route(event(traits={"d": "2023-02-30", "e": "2023-13-01", "ok": "2023-01-01"}), PRESETS)
    assert result.timestamp_warnings == 2
    assert only_operation(result).record["profileData"] == {"d": "2023-02-30", "e": "2023-13-01", "ok": 1672531200}


def test_route_does_not_mutate_the_event() -> None:
    original = event(traits={"createdAt": "2023-01-01T09:30:00Z", "orders": [{"at": "2000-01-01"}]})
    snapshot = copy.deepcopy(original)
    route(original, PRESETS)
    assert original == snapshot


# ------------------------------------------------------------------------------------------------
# The event time -> ts
# ------------------------------------------------------------------------------------------------

TIMESTAMPS: list[tuple[str, Any, int | None]] = [
    ("ISO Z", "2024-03-01T01:00:00Z", T_2024_03_01_0100),
    ("ISO fraction", "2024-03-01T01:00:00.999Z", T_2024_03_01_0100),
    ("ISO offset", "2024-03-01T03:30:00+02:30", T_2024_03_01_0100),
    ("spec example", "2006-01-02T18:04:07Z", 1136225047),
    ("epoch millis", 1709254800000, T_2024_03_01_0100),
    ("epoch millis with remainder", 1709254800999, T_2024_03_01_0100),
    ("epoch seconds", 1709254800, T_2024_03_01_0100),
    ("aware datetime UTC", dt.datetime(2024, 3, 1, 1, 0, tzinfo=dt.UTC), T_2024_03_01_0100),
    (
        "aware datetime +02:00",
        dt.datetime(2024, 3, 1, 3, 0, tzinfo=dt.timezone(dt.timedelta(hours=2))),
        T_2024_03_01_0100,
    ),
    (
        "aware datetime -05:00",
        dt.datetime(2024, 2, 29, 20, 0, tzinfo=dt.timezone(dt.timedelta(hours=-5))),
        T_2024_03_01_0100,
    ),
    ("missing", None, None),
    ("not a time", "yesterday", None),
    ("digit string is not epoch", "1709254800", None),
    ("zero is left out (CleverTap rejects ts 0)", 0, None),
    ("before 1970 is left out", "1969-12-31T23:59:59Z", None),
]


@pytest.mark.parametrize(("label", "timestamp", "ts"), TIMESTAMPS, ids=[r[0] for r in TIMESTAMPS])
def test_event_time(label: str, timestamp: Any, ts: int | None) -> None:
    profile = only_operation(route(event(timestamp=timestamp, traits={"a": 1}), PRESETS)).record
    track = only_operation(
        route(event(type="track", event="Clicked", timestamp=timestamp, properties={"b": 2}), PRESETS)
    ).record
    if ts is None:
        assert "ts" not in profile
        assert "ts" not in track
        assert list(profile) == ["type", "identity", "profileData"]
        assert list(track) == ["type", "identity", "evtName", "evtData"]
    else:
        assert profile["ts"] == ts
        assert track["ts"] == ts
        assert type(profile["ts"]) is int
        assert list(profile) == ["type", "identity", "ts", "profileData"]
        assert list(track) == ["type", "identity", "ts", "evtName", "evtData"]


# ------------------------------------------------------------------------------------------------
# track -> event upload / delete
# ------------------------------------------------------------------------------------------------

TRACKS: list[tuple[str, str, dict[str, Any], dict[str, Any]]] = [
    ("Order Placed", "Order Placed", {"amount": 12.5, "currency": "EUR"}, {"amount": 12.5, "currency": "EUR"}),
    ("no properties", "Signed Up", {}, {}),
    ("ISO property", "Delivered", {"deliveredAt": "2023-01-01T09:30:00Z", "n": 1}, {"deliveredAt": 1672565400, "n": 1}),
    (
        "nested property",
        "Cart Viewed",
        {"products": [{"sku": "A", "price": 0.1}], "revenue": 42.5},
        {"products": '[{"sku":"A","price":0.1}]', "revenue": 42.5},
    ),
    ("lower-case delete is an ordinary event", "delete user", {}, {}),
]


@pytest.mark.parametrize(("label", "name", "properties", "evt_data"), TRACKS, ids=[r[0] for r in TRACKS])
def test_track_uploads_an_event(label: str, name: str, properties: dict[str, Any], evt_data: dict[str, Any]) -> None:
    operation = only_operation(route(event(type="track", event=name, properties=properties), PRESETS))
    assert operation.action is Action.UPLOAD_EVENT
    assert operation.subscription == "Upload Event"
    assert operation.user == "identity:u-1"
    assert operation.record == {
        "type": "event",
        "identity": "u-1",
        "ts": T_2024_03_01_0100,
        "evtName": name,
        "evtData": evt_data,
    }
    assert list(operation.record) == ["type", "identity", "ts", "evtName", "evtData"]


@pytest.mark.parametrize("timestamp", ["2024-03-01T01:00:00Z", None])
def test_delete_user(timestamp: str | None) -> None:
    result = route(
        event(type="track", event="Delete User", timestamp=timestamp, properties={"reason": "gdpr"}), PRESETS
    )
    operation = only_operation(result)
    assert operation == Operation(Action.DELETE_PROFILE, "identity:u-1", {"identity": "u-1"}, "Delete User Profile")
    assert result.timestamp_warnings == 0


@pytest.mark.parametrize("name", [None, "", "   "])
def test_track_without_event_name(name: str | None) -> None:
    with pytest.raises(ValidationError) as info:
        route(event(type="track", event=name), PRESETS)
    assert str(info.value) == "Upload Event: the event has no name"
    assert info.value.stage == "validate"
    assert info.value.code == 509


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        (
            {"type": "identify", "traits": ["not", "an", "object"]},
            "Upload User Profile: traits is a list, expected an object",
        ),
        (
            {"type": "track", "event": "X", "properties": "text"},
            "Upload Event: properties is a str, expected an object",
        ),
    ],
)
def test_attributes_that_are_not_objects(changes: dict[str, Any], message: str) -> None:
    with pytest.raises(MappingError, match=f"^{message}$"):
        route(event(**changes), PRESETS)


@pytest.mark.parametrize(
    ("changes", "key"),
    [({"traits": None}, "profileData"), ({"type": "track", "event": "X", "properties": None}, "evtData")],
)
def test_null_attributes_are_empty(changes: dict[str, Any], key: str) -> None:
    assert only_operation(route(event(**changes), PRESETS)).record[key] == {}


# ------------------------------------------------------------------------------------------------
# Nothing to do
# ------------------------------------------------------------------------------------------------

NO_MATCH = [
    event(type="page", name="Home"),
    event(type="screen", name="Settings"),
    event(type="alias", previousId="anon-1"),
    event(type="group", groupId="g-1", traits={"employees": 12}),
    event(type="page", name="Home", userId=None),
]


@pytest.mark.parametrize("routed", NO_MATCH, ids=lambda e: f"{e['type']}-{e['userId']}")
def test_no_subscription_matched(routed: dict[str, Any]) -> None:
    assert route(routed, PRESETS) == RouteResult([], "no subscription matched", 0)


NO_USER = [
    event(userId=None),
    event(userId=None, anonymousId="anon-1"),
    event(userId=""),
    event(userId="   "),
    event(userId=True),
    event(type="track", event="Clicked", userId=None),
    event(type="track", event="Delete User", userId=None),
    event(type="track", event=None, userId=None),  # no user wins over the missing name: nothing to map
]


@pytest.mark.parametrize("routed", NO_USER, ids=lambda e: f"{e['type']}-{e['event']}-{e['userId']!r}")
def test_no_user_id(routed: dict[str, Any]) -> None:
    assert route(routed, PRESETS) == RouteResult([], "no user id", 0)


def test_empty_subscription_list() -> None:
    assert route(event(), []) == RouteResult([], "no subscription matched", 0)


# ------------------------------------------------------------------------------------------------
# The ordering key
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("user_id", "identity", "user"),
    [
        ("u-1", "u-1", "identity:u-1"),
        ("ada@example.com", "ada@example.com", "identity:ada@example.com"),
        ("Zoë", "Zoë", "identity:Zoë"),
        ("42", "42", "identity:42"),
        (42, "42", "identity:42"),
    ],
)
@pytest.mark.parametrize("kind", ["identify", "track", "delete"])
def test_operation_user(user_id: Any, identity: str, user: str, kind: str) -> None:
    changes: dict[str, Any] = {"userId": user_id}
    if kind == "track":
        changes.update(type="track", event="Clicked")
    elif kind == "delete":
        changes.update(type="track", event="Delete User")
    operation = only_operation(route(event(**changes), PRESETS))
    assert operation.user == user
    assert operation.record["identity"] == identity
