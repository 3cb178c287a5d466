"""The subscriptions file (Customized Setup): loading, errors with their place in the file, identity options, several
subscriptions per event, per-subscription switches, the presets round trip, preview and the CLI commands.

Hand-computed instants: 2024-03-01T01:00:00Z = 1709254800; 1990-05-17 = 642902400; 2023-01-01 = 1672531200.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from pathlib import Path
from typing import Any

import pytest

from processor.cli import main
from processor.embedded.events import load_sample_events
from processor.errors import ConfigError, MappingError, ValidationError
from processor.preview import preview_event, read_event_file
from processor.subscriptions import (
    Action,
    Failure,
    Operation,
    RouteResult,
    compile_subscriptions,
    describe_subscriptions,
    load_subscriptions_file,
    load_subscriptions_text,
    parse_yaml,
    preset_subscriptions,
    presets_yaml,
    route,
)

T = 1709254800
DOB = 642902400
REPO = Path(__file__).resolve().parents[2]

CUSTOM = """
version: 1
subscriptions:
  - name: CRM Profile
    action: upload_profile
    trigger: type = "identify" and traits.email != null
    identity: {key: identity, from: [$.userId, $.traits.email]}
    date_type: true
    mappings:
      profileData:
        Name: [$.traits.name, "{{traits.first_name}} {{traits.last_name}}"]
        Email: $.traits.email
        Phone: $.context.traits.phone
        Gender: $.traits.sex
        DOB: $.traits.born
        Customer Type: $.traits["plan tier"]
        MSG-email: $.traits.newsletter
        source: crm
        "*": {from: $.traits, except: [name, first_name, last_name, email, sex, born, "plan tier", newsletter]}
  - name: Plan Changed
    action: upload_event
    trigger: {and: [{field: type, equals: identify}, {field: context.traits.plan, exists: true}]}
    convert_timestamps: false
    mappings:
      evtName: Plan Changed
      evtData: {plan: $.context.traits.plan, at: $.timestamp}
  - name: Anonymous Pages
    action: upload_event
    trigger:
      and:
        - {field: type, equals: page}
        - {field: userId, exists: false}
    identity: {key: objectId}
    mappings:
      evtName: "Page Viewed"
      evtData: {page: $.name, first_item: "$.properties.items[0].sku", url: $.properties.url}
  - name: Purchases
    action: upload_event
    trigger: type = "track" and match(event, "Order Completed*")
    identity: {if_missing: anonymousId}
    nested_values: reject
    mappings:
      ts: [$.properties.paidAt, $.timestamp]
      evtName: Charged
      evtData:
        Amount: {path: $.properties.total, as: number}
        Currency: [$.properties.currency, EUR]
        Items: $.properties.products
  - name: Forget Me
    action: delete_profile
    trigger: {and: [{field: type, equals: track}, {field: event, in: [Delete User, Forget Me]}]}
    identity: {if_missing: objectId}
  - name: Disabled
    action: upload_event
    enabled: false
    trigger: true
"""
SUBS = load_subscriptions_text(CUSTOM, "custom.yaml")


def op(action: Action, user: str, record: dict[str, Any], subscription: str) -> Operation:
    return Operation(action, user, record, subscription)


ROUTES: list[tuple[str, dict[str, Any], list[Operation]]] = [
    (
        "identify fires two subscriptions",
        {"type": "identify", "userId": "u-1", "timestamp": "2024-03-01T01:00:00Z",
         "traits": {"first_name": "Ada", "last_name": "Lovelace", "email": "ada@example.com", "sex": "female",
                    "born": "1990-05-17", "plan tier": "Gold", "newsletter": "no", "since": "2023-01-01",
                    "tags": ["a", "b"]},
         "context": {"traits": {"phone": "+44 7700 900000", "plan": "pro"}}},
        [
            op(Action.UPLOAD_PROFILE, "identity:u-1", {
                "type": "profile", "identity": "u-1", "ts": T,
                "profileData": {"Name": "Ada Lovelace", "Email": "ada@example.com", "Phone": "+447700900000",
                                "Gender": "F", "DOB": f"$D_{DOB}", "Customer Type": "Gold", "MSG-email": False,
                                "source": "crm", "since": "$D_1672531200", "tags": ["a", "b"]}}, "CRM Profile"),
            op(Action.UPLOAD_EVENT, "identity:u-1", {
                "type": "event", "identity": "u-1", "ts": T, "evtName": "Plan Changed",
                "evtData": {"plan": "pro", "at": "2024-03-01T01:00:00Z"}}, "Plan Changed"),
        ],
    ),
    (
        "identity falls back to the e-mail",
        {"type": "identify", "userId": None, "timestamp": None, "traits": {"email": "ada@example.com"}},
        [op(Action.UPLOAD_PROFILE, "identity:ada@example.com", {
            "type": "profile", "identity": "ada@example.com",
            "profileData": {"Email": "ada@example.com", "source": "crm"}}, "CRM Profile")],
    ),
    (
        "anonymous page on objectId",
        {"type": "page", "anonymousId": "anon-7", "name": "Pricing", "timestamp": 1709254800123,
         "properties": {"items": [{"sku": "S-1"}, {"sku": "S-2"}], "url": "https://example.com/pricing"}},
        [op(Action.UPLOAD_EVENT, "objectId:anon-7", {
            "type": "event", "objectId": "anon-7", "ts": T, "evtName": "Page Viewed",
            "evtData": {"page": "Pricing", "first_item": "S-1", "url": "https://example.com/pricing"}},
            "Anonymous Pages")],
    ),
    (
        "charged with an Avro timestamp and fallbacks",
        {"type": "track", "userId": "u-2", "event": "Order Completed (POS)", "timestamp": "2024-03-01T00:00:00Z",
         "properties": {"paidAt": dt.datetime(2024, 3, 1, 1, 0, 0, 999000, tzinfo=dt.UTC), "total": "42.50",
                        "products": [{"sku": "A", "qty": 2, "at": "2023-01-01"}]}},
        [op(Action.UPLOAD_EVENT, "identity:u-2", {
            "type": "event", "identity": "u-2", "ts": T, "evtName": "Charged",
            "evtData": {"Amount": 42.5, "Currency": "EUR", "Items": [{"sku": "A", "qty": 2, "at": 1672531200}]}},
            "Purchases")],
    ),
    (
        "charged for an anonymous buyer uses anonymousId as identity",
        {"type": "track", "userId": None, "anonymousId": "anon-9", "event": "Order Completed",
         "timestamp": "2024-03-01T01:00:00Z", "properties": {"total": 5, "currency": "USD"}},
        [op(Action.UPLOAD_EVENT, "identity:anon-9", {
            "type": "event", "identity": "anon-9", "ts": T, "evtName": "Charged",
            "evtData": {"Amount": 5, "Currency": "USD"}}, "Purchases")],
    ),
    (
        "delete by identity",
        {"type": "track", "userId": "u-3", "event": "Forget Me"},
        [op(Action.DELETE_PROFILE, "identity:u-3", {"identity": "u-3"}, "Forget Me")],
    ),
    (
        "delete of an anonymous user by guid",
        {"type": "track", "userId": None, "anonymousId": "anon-4", "event": "Delete User"},
        [op(Action.DELETE_PROFILE, "objectId:anon-4", {"guid": "anon-4"}, "Forget Me")],
    ),
]


@pytest.mark.parametrize(("label", "event", "operations"), ROUTES, ids=[r[0] for r in ROUTES])
def test_custom_subscriptions(label: str, event: dict[str, Any], operations: list[Operation]) -> None:
    result = route(event, SUBS)
    assert result.operations == operations
    assert result.skipped_reason is None
    assert result.errors == []


@pytest.mark.parametrize(
    ("event", "reason"),
    [
        ({"type": "identify", "userId": None, "traits": {"name": "No Email"}}, "no subscription matched"),
        ({"type": "page", "userId": "u-1", "name": "Home"}, "no subscription matched"),
        ({"type": "page", "userId": None, "anonymousId": None, "name": "Home"}, "no user id"),
        ({"type": "track", "userId": None, "anonymousId": "", "event": "Order Completed"}, "no user id"),
        ({"type": "track", "userId": None, "event": "Forget Me"}, "no user id"),
        ({"type": "alias", "userId": "u-1"}, "no subscription matched"),  # the disabled catch-all never fires
    ],
)
def test_nothing_to_send(event: dict[str, Any], reason: str) -> None:
    assert route(event, SUBS) == RouteResult([], reason, 0)


# ---------------------------------------------------------------------------------------------------------------
# Failures: the whole event by default, per subscription with collect_errors
# ---------------------------------------------------------------------------------------------------------------

BAD_PROFILE = {
    "type": "identify", "userId": "u-5", "timestamp": "2024-03-01T01:00:00Z",
    "traits": {"email": "not-an-email", "d": "2023-02-30"}, "context": {"traits": {"plan": "pro"}},
}


def test_by_default_the_first_failure_fails_the_whole_event() -> None:
    with pytest.raises(ValidationError) as info:
        route(BAD_PROFILE, SUBS)
    assert info.value.code == 515
    assert info.value.stage == "validate"
    assert info.value.message == "CRM Profile: Email is not a valid e-mail address"
    assert "not-an-email" not in info.value.message


def test_collect_errors_returns_the_good_operations_and_one_failure_per_bad_subscription() -> None:
    result = route(BAD_PROFILE, SUBS, collect_errors=True)
    assert [o.subscription for o in result.operations] == ["Plan Changed"]
    assert [(f.subscription, type(f.error), f.error.code) for f in result.errors] == [
        ("CRM Profile", ValidationError, 515)
    ]
    assert result.skipped_reason is None
    assert result.errors[0].error.message == "Email is not a valid e-mail address"


def test_collect_errors_when_everything_fails() -> None:
    subs = load_subscriptions_text(
        """
subscriptions:
  - {name: A, action: upload_event, trigger: true, mappings: {evtName: App Launched}}
  - {name: B, action: upload_event, trigger: true, mappings: {evtData: $.traits}}
  - {name: C, action: upload_event, trigger: true, mappings: {evtName: X, evtData: {n: {path: $.n, as: number}}}}
""",
        "t",
    )
    result = route({"type": "track", "userId": "u", "event": "E", "traits": [1], "n": "x"}, subs, collect_errors=True)
    assert result.operations == []
    assert result.skipped_reason is None
    assert [(f.subscription, f.error.stage, f.error.code) for f in result.errors] == [
        ("A", "validate", 513), ("B", "map", None), ("C", "map", None)
    ]
    assert isinstance(result.errors[1].error, MappingError)
    with pytest.raises(ValidationError, match=r"^A: 'App Launched' is a restricted CleverTap system event name$"):
        route({"type": "track", "userId": "u", "event": "E", "traits": [1]}, subs)


def test_failure_is_a_small_value() -> None:
    error = ValidationError("x", code=516)
    assert Failure("S", error) == Failure("S", error)
    assert RouteResult([]).errors == []


# ---------------------------------------------------------------------------------------------------------------
# Per-subscription switches and defaults
# ---------------------------------------------------------------------------------------------------------------

SWITCHES = """
subscriptions:
  - {name: default, action: upload_profile, trigger: true}
  - {name: no conversion, action: upload_profile, trigger: true, convert_timestamps: false}
  - {name: dates, action: upload_profile, trigger: true, date_type: true}
  - {name: stringify, action: upload_profile, trigger: true, nested_values: stringify}
  - {name: allow, action: upload_profile, trigger: true, nested_values: allow}
"""


def test_switches_per_subscription() -> None:
    subs = load_subscriptions_text(SWITCHES, "t")
    event = {"type": "identify", "userId": "u", "timestamp": "2024-03-01T01:00:00Z",
             "traits": {"since": "2023-01-01", "bad": "2023-02-30", "n": 1}}
    result = route(event, subs)
    assert [o.record["profileData"] for o in result.operations] == [
        {"since": 1672531200, "bad": "2023-02-30", "n": 1},
        {"since": "2023-01-01", "bad": "2023-02-30", "n": 1},
        {"since": "$D_1672531200", "bad": "2023-02-30", "n": 1},
        {"since": 1672531200, "bad": "2023-02-30", "n": 1},
        {"since": 1672531200, "bad": "2023-02-30", "n": 1},
    ]
    assert all(o.record["ts"] == T for o in result.operations)  # ts is converted whatever the switch
    assert result.timestamp_warnings == 4  # counted where conversion is on
    nested = {**event, "traits": {"address": {"city": "Paris"}}}
    with pytest.raises(ValidationError, match=r"^default: .*CleverTap refuses nested values$"):
        route(nested, subs)
    result = route(nested, subs[3:])
    assert [o.record["profileData"] for o in result.operations] == [
        {"address": '{"city":"Paris"}'}, {"address": {"city": "Paris"}}
    ]


def test_defaults_are_filled_in() -> None:
    subs = load_subscriptions_text(
        "subscriptions:\n  - {name: e, action: upload_event, trigger: true}\n"
        "  - {name: d, action: delete_profile, trigger: true, identity: objectId}\n",
        "t",
    )
    assert describe_subscriptions(subs) == [
        {"name": "e", "action": "upload_event", "enabled": True, "trigger": True,
         "identity": {"key": "identity", "from": "$.userId", "if_missing": "skip"},
         "convert_timestamps": True, "date_type": False, "nested_values": "reject",
         "mappings": {"ts": "$.timestamp", "evtName": "$.event", "evtData": "$.properties"}},
        {"name": "d", "action": "delete_profile", "enabled": True, "trigger": True,
         "identity": {"key": "objectId", "from": "$.anonymousId", "if_missing": "skip"},
         "convert_timestamps": True, "date_type": False, "nested_values": "reject", "mappings": {}},
    ]
    event = {"type": "track", "userId": "u", "anonymousId": "a", "event": "E", "timestamp": 1709254800,
             "properties": {"p": 1}}
    assert [o.record for o in route(event, subs).operations] == [
        {"type": "event", "identity": "u", "ts": T, "evtName": "E", "evtData": {"p": 1}},
        {"guid": "a"},
    ]


def test_a_bare_list_is_accepted() -> None:
    subs = load_subscriptions_text("- {name: a, action: delete_profile, trigger: 'event = \"Bye\"'}", "t")
    assert route({"event": "Bye", "userId": "u"}, subs).operations[0].record == {"identity": "u"}


def test_integer_user_ids_and_booleans() -> None:
    subs = load_subscriptions_text("- {name: a, action: delete_profile, trigger: true}", "t")
    assert route({"userId": 42}, subs).operations[0].record == {"identity": "42"}
    assert route({"userId": True}, subs).skipped_reason == "no user id"
    assert route({"userId": 4.2}, subs).skipped_reason == "no user id"


# ---------------------------------------------------------------------------------------------------------------
# Errors, each with its place in the file
# ---------------------------------------------------------------------------------------------------------------

OK = "  - {name: ok, action: upload_event, trigger: true}\n"
FILE_ERRORS: list[tuple[str, str]] = [
    ("", "subscriptions: a list of subscriptions is required"),
    ("{}", "subscriptions: a list of subscriptions is required"),
    ("subscriptions: []", "subscriptions: the list is empty: nothing would ever reach CleverTap"),
    ("subscriptions: {a: 1}", "subscriptions: a list of subscriptions is required"),
    ("colour: red\nsubscriptions:\n" + OK, "colour: unknown top-level key (version, subscriptions)"),
    ("version: 2\nsubscriptions:\n" + OK, "version: only version 1 exists, got 2"),
    ("subscriptions:\n  - just text\n", "subscriptions[0]: a subscription is an object"),
    ("subscriptions:\n" + OK + "  - {action: upload_event, trigger: true}\n",
     "subscriptions[1].name: every subscription needs a name"),
    ("subscriptions:\n" + OK + OK, "subscriptions[1].name: 'ok' is used twice"),
    ("subscriptions:\n  - {name: a, action: send_email, trigger: true}\n",
     "subscriptions[0].action: unknown action 'send_email' (upload_profile, upload_event, delete_profile)"),
    ("subscriptions:\n  - {name: a, trigger: true}\n", "subscriptions[0].action: unknown action None"),
    ("subscriptions:\n  - {name: a, action: upload_event}\n",
     "subscriptions[0].trigger: every subscription needs a trigger (true fires for every event)"),
    ("subscriptions:\n  - {name: a, action: upload_event, trigger: 'type ='}\n",
     "subscriptions[0].trigger: expected a value (\"text\", a number, true, false or null) at column 7"),
    ("subscriptions:\n  - {name: a, action: upload_event, trigger: {field: type, is: x}}\n",
     "subscriptions[0].trigger: a field condition has exactly one of"),
    ("subscriptions:\n  - {name: a, action: upload_event, trigger: {and: [true, {field: 'a..b', exists: true}]}}\n",
     "subscriptions[0].trigger.and[1].field: unknown path syntax 'a..b'"),
    ("subscriptions:\n  - {name: a, action: upload_event, trigger: true, colour: red}\n",
     "subscriptions[0].colour: unknown setting"),
    ("subscriptions:\n  - {name: a, action: upload_event, trigger: true, enabled: 'yes'}\n",
     "subscriptions[0].enabled: true or false, got 'yes'"),
    ("subscriptions:\n  - {name: a, action: upload_event, trigger: true, convert_timestamps: 1}\n",
     "subscriptions[0].convert_timestamps: true or false, got 1"),
    ("subscriptions:\n  - {name: a, action: upload_event, trigger: true, date_type: null}\n",
     "subscriptions[0].date_type: true or false, got None"),
    ("subscriptions:\n  - {name: a, action: upload_event, trigger: true, nested_values: flatten}\n",
     "subscriptions[0].nested_values: reject, stringify or allow, got 'flatten'"),
    ("subscriptions:\n  - {name: a, action: upload_event, trigger: true, identity: {key: email}}\n",
     "subscriptions[0].identity.key: identity or objectId, got 'email'"),
    ("subscriptions:\n  - {name: a, action: upload_event, trigger: true, identity: {if_missing: drop}}\n",
     "subscriptions[0].identity.if_missing: skip, anonymousId or objectId, got 'drop'"),
    ("subscriptions:\n  - {name: a, action: upload_event, trigger: true, identity: {from: '$.a..b'}}\n",
     "subscriptions[0].identity.from: unknown path syntax '$.a..b'"),
    ("subscriptions:\n  - {name: a, action: upload_event, trigger: true, identity: {who: x}}\n",
     "subscriptions[0].identity.who: unknown setting (key, from, if_missing)"),
    ("subscriptions:\n  - {name: a, action: upload_event, trigger: true, identity: 3}\n",
     "subscriptions[0].identity: an object {key: identity|objectId"),
    ("subscriptions:\n  - {name: a, action: upload_event, trigger: true, mappings: [1]}\n",
     "subscriptions[0].mappings: an object of action fields"),
    ("subscriptions:\n  - {name: a, action: upload_profile, trigger: true, mappings: {evtName: x}}\n",
     "subscriptions[0].mappings.evtName: not a field of upload_profile (ts, profileData)"),
    ("subscriptions:\n  - {name: a, action: delete_profile, trigger: true, mappings: {profileData: $.traits}}\n",
     "subscriptions[0].mappings.profileData: not a field of delete_profile (none: a delete only needs the identity)"),
    ("subscriptions:\n  - {name: a, action: upload_profile, trigger: true, mappings: {profileData: traits}}\n",
     "subscriptions[0].mappings.profileData: unknown path syntax 'traits': expected a path to an object"),
    ("subscriptions:\n  - name: a\n    action: upload_profile\n    trigger: true\n    mappings:\n"
     "      profileData:\n        Email: $.traits..email\n",
     "subscriptions[0].mappings.profileData.Email: unknown path syntax '$.traits..email': recursive descent"),
    ("subscriptions:\n  - name: a\n    action: upload_event\n    trigger: true\n    mappings:\n"
     "      evtName: '{{event'\n",
     "subscriptions[0].mappings.evtName: template '{{event': unbalanced"),
    ("subscriptions:\n  - name: a\n    action: upload_event\n    trigger: true\n    mappings:\n"
     "      ts: {path: 3}\n",
     "subscriptions[0].mappings.ts.path: a path is a string"),
    ("subscriptions:\n  - name: a\n    action: upload_profile\n    trigger: true\n    mappings:\n"
     "      profileData: {'*': {from: $.traits, except: email}}\n",
     "subscriptions[0].mappings.profileData[\"*\"].except: a list of keys"),
    # YAML itself
    ("subscriptions:\n  - name: a\n   action: x\n", "line 3, column 4: "),
    ("subscriptions:\n  - name: a\n    name: b\n    action: upload_event\n    trigger: true\n",
     "line 3, column 5: duplicate key 'name'"),
    ("subscriptions:\n  - name: a\n    action: upload_profile\n    trigger: true\n    mappings:\n"
     "      profileData:\n        *: $.traits\n",
     'line 7, column 10: expected alphabetic or numeric character, but found \':\' (a key or value starting with * '
     'must be quoted: "*": $.traits)'),
    ("subscriptions:\n  - name: a\n    action: upload_profile\n    trigger: true\n    mappings:\n"
     "      profileData:\n        Name: {{traits.first}}\n",
     "a key that is an object or list (quote templates"),
    ("subscriptions:\n  - name: a\n    action: upload_event\n    trigger: !match(event,\"x\")\n",
     "line 4, column 27: expected ' ', but found '\"' (a value starting with ! must be quoted"),
]


@pytest.mark.parametrize(("text", "message"), FILE_ERRORS, ids=[str(n) for n in range(len(FILE_ERRORS))])
def test_file_errors(text: str, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_subscriptions_text(text, "subs.yaml")
    assert info.value.setting == "SUBSCRIPTIONS_FILE"
    assert info.value.reason.startswith("subs.yaml: ")
    assert message in info.value.reason, info.value.reason


def test_every_problem_is_listed_at_once() -> None:
    text = (
        "colour: red\nsubscriptions:\n"
        "  - {name: a, action: nope, trigger: 'type ='}\n"
        "  - {name: a, action: upload_event, trigger: true, mappings: {evtData: {x: '$.a[b]'}}}\n"
    )
    with pytest.raises(ConfigError) as info:
        load_subscriptions_text(text, "f.yaml")
    lines = [str(info.value), *"".join(getattr(info.value, "__notes__", [])).splitlines()]
    assert [re.sub(r":.*", "", line.removeprefix("SUBSCRIPTIONS_FILE: f.yaml: ")) for line in lines] == [
        "colour", "subscriptions[0].action", "subscriptions[0].trigger", "subscriptions[1].name",
        "subscriptions[1].mappings.evtData.x",
    ]


def test_file_that_cannot_be_read(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        load_subscriptions_file(tmp_path / "missing.yaml")
    latin = tmp_path / "latin.yaml"
    latin.write_bytes("subscriptions: [caf\xe9]".encode("latin-1"))
    with pytest.raises(ConfigError, match="not UTF-8 text"):
        load_subscriptions_file(latin)


def test_parse_yaml_is_safe() -> None:
    with pytest.raises(ConfigError, match="could not determine a constructor"):
        parse_yaml("!!python/object/apply:os.system ['echo hi']", "x")


# ---------------------------------------------------------------------------------------------------------------
# Quick Setup: the presets are the same format, and the printed file behaves identically
# ---------------------------------------------------------------------------------------------------------------

PRESET_EVENTS: list[dict[str, Any]] = [
    *load_sample_events(),
    {"type": "identify", "userId": "u-1", "timestamp": "2024-03-01T01:00:00Z",
     "traits": {"name": "Ada Lovelace", "firstName": "A", "email": "ada@example.com", "phone": "+1 415 555 0100",
                "gender": "Female", "birthday": "1990-05-17", "avatar": "https://x/a.png", "plan": "pro",
                "address": {"city": "London"}, "tags": ["a"], "company": {"name": "AE"}, "nothing": None}},
    {"type": "identify", "userId": "u-2", "traits": {"firstName": "Grace", "lastName": "Hopper"}},
    {"type": "identify", "userId": "u-3", "traits": {"lastName": "Hopper", "gender": "other"}},
    {"type": "track", "userId": "u-1", "event": "Order Completed", "timestamp": "2024-03-01T01:00:00Z",
     "properties": {"order_id": "o-1", "revenue": 12.5, "currency": "EUR",
                    "products": [{"sku": "A", "price": 12.5, "quantity": 1, "categories": ["x"]}]}},
    {"type": "track", "userId": "u-1", "event": "Order Completed", "properties": {"total": 3}},
    {"type": "track", "userId": "u-1", "event": "App Launched"},
    {"type": "page", "userId": "u-1", "name": "Home"},
]


def _outcome(event: dict[str, Any], subs: list[Any]) -> Any:
    try:
        return route(event, subs)
    except (MappingError, ValidationError) as exc:
        return (type(exc).__name__, exc.code, exc.message)


def test_presets_round_trip(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["presets"]) == 0
    printed = capsys.readouterr().out
    assert printed == presets_yaml()
    path = tmp_path / "subscriptions.yaml"
    path.write_text(printed, encoding="utf-8")
    loaded = load_subscriptions_file(path)
    presets = preset_subscriptions()
    assert describe_subscriptions(loaded) == describe_subscriptions(presets)
    for event in PRESET_EVENTS:
        assert _outcome(event, loaded) == _outcome(event, presets)


PRESET_RECORDS: list[tuple[dict[str, Any], Any]] = [
    (PRESET_EVENTS[-7], {"type": "profile", "identity": "u-1", "ts": T, "profileData": {
        "Name": "Ada Lovelace", "Email": "ada@example.com", "Phone": "+14155550100", "Gender": "F",
        "DOB": f"$D_{DOB}", "Photo": "https://x/a.png", "plan": "pro", "address": '{"city":"London"}',
        "tags": ["a"], "company": '{"name":"AE"}'}}),
    (PRESET_EVENTS[-6], {"type": "profile", "identity": "u-2", "profileData": {"Name": "Grace Hopper"}}),
    (PRESET_EVENTS[-5], ("ValidationError", 514, "Upload User Profile: Gender is not one CleverTap accepts "
                                                 "(M or F; male/female/man/woman/m/f are converted)")),
    (PRESET_EVENTS[-4], {"type": "event", "identity": "u-1", "ts": T, "evtName": "Charged", "evtData": {
        "Amount": 12.5, "Items": [{"sku": "A", "price": 12.5, "quantity": 1, "categories": '["x"]'}],
        "order_id": "o-1", "currency": "EUR"}}),
    (PRESET_EVENTS[-3], {"type": "event", "identity": "u-1", "evtName": "Charged",
                         "evtData": {"Amount": 3, "total": 3}}),
    (PRESET_EVENTS[-2], ("ValidationError", 513, "Upload Event: 'App Launched' is a restricted CleverTap system "
                                                 "event name")),
]


@pytest.mark.parametrize(("event", "expected"), PRESET_RECORDS, ids=[str(n) for n in range(len(PRESET_RECORDS))])
def test_preset_records(event: dict[str, Any], expected: Any) -> None:
    outcome = _outcome(event, preset_subscriptions())
    if isinstance(expected, tuple):
        assert outcome == expected
    else:
        assert [o.record for o in outcome.operations] == [expected]


def test_sample_data_bad_email_and_local_phone_are_refused_before_sending() -> None:
    events = {e["messageId"]: e for e in load_sample_events()}
    assert _outcome(events["msg-0183"], preset_subscriptions())[:2] == ("ValidationError", 515)
    assert _outcome(events["msg-0184"], preset_subscriptions())[:2] == ("ValidationError", 516)


def test_readme_example_compiles_and_maps() -> None:
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    section = readme[readme.index("## Subscriptions and field mappings"):]
    block = re.search(r"```yaml\n(.*?)```", section, re.DOTALL)
    assert block is not None
    subs = load_subscriptions_text(block.group(1), "README.md")
    event = {"type": "identify", "userId": "u-1", "timestamp": "2024-03-01T01:00:00Z",
             "traits": {"first_name": "Ada", "last_name": "Lovelace", "email": "ada@example.com",
                        "phone": "+44 7700 900000", "gender": "female", "birthday": "1990-05-17",
                        "plan tier": "gold", "newsletter": "yes", "signup": "2023-01-01"}}
    assert [o.record for o in route(event, subs).operations] == [
        {"type": "profile", "identity": "u-1", "ts": T, "profileData": {
            "Name": "Ada Lovelace", "Email": "ada@example.com", "Phone": "+447700900000", "Gender": "F",
            "DOB": f"$D_{DOB}", "Customer Type": "gold", "MSG-email": True, "source": "crm",
            "signup": "$D_1672531200"}}
    ]
    page = {"type": "page", "anonymousId": "anon-1", "name": "Home", "properties": {"url": "/"}}
    assert [o.record for o in route(page, subs).operations] == [
        {"type": "event", "objectId": "anon-1", "evtName": "Page Viewed", "evtData": {"page": "Home", "url": "/"}}
    ]


# ---------------------------------------------------------------------------------------------------------------
# preview and the CLI
# ---------------------------------------------------------------------------------------------------------------


def test_preview_entries() -> None:
    entries = preview_event(BAD_PROFILE, SUBS)
    assert entries[0] == {
        "subscription": "CRM Profile", "action": "upload_profile", "enabled": True, "matched": True,
        "error": {"stage": "validate", "code": 515, "class": "ValidationError",
                  "message": "Email is not a valid e-mail address"},
    }
    assert entries[1]["request"] == {
        "method": "POST", "path": "/1/upload",
        "body": '{"d":[{"type":"event","identity":"u-5","ts":1709254800,"evtName":"Plan Changed",'
                '"evtData":{"plan":"pro","at":"2024-03-01T01:00:00Z"}}]}',
    }
    assert [e["matched"] for e in entries] == [True, True, False, False, False, True]
    assert "request" not in entries[5]  # disabled: shown, marked, evaluated, but nothing would be sent
    delete = preview_event({"type": "track", "anonymousId": "a-1", "event": "Forget Me"}, SUBS)
    assert delete[4]["request"] == {"method": "POST", "path": "/1/delete/profiles.json", "body": '{"guid":["a-1"]}'}
    skipped = preview_event({"type": "track", "event": "Forget Me"}, SUBS)
    assert skipped[4]["skipped"] == "no user id"


def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    for name in list(os.environ):
        if name.startswith(("KAFKA_", "CLEVERTAP_", "PROCESSOR_", "SCHEMA", "SUBSCRIPTIONS", "AVRO_", "METRICS")):
            monkeypatch.delenv(name)


def test_cli_preview_text_and_json(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                   monkeypatch: pytest.MonkeyPatch) -> None:
    _clean_env(monkeypatch)
    subs_file = tmp_path / "subs.yaml"
    subs_file.write_text(CUSTOM, encoding="utf-8")
    event_file = tmp_path / "event.json"
    event_file.write_text(json.dumps(ROUTES[5][1]), encoding="utf-8")
    assert main(["preview", str(event_file), "--subscriptions", str(subs_file)]) == 0
    out = capsys.readouterr().out
    assert f"subscriptions: {subs_file}" in out
    assert 'Forget Me [delete_profile]: matched\n  POST /1/delete/profiles.json\n  {"identity":["u-3"]}' in out
    assert "Disabled [upload_event]: disabled (matched; nothing is sent)" in out
    monkeypatch.setenv("SUBSCRIPTIONS_FILE", str(subs_file))
    assert main(["preview", str(event_file), "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["results"][4]["request"]["body"] == {"identity": ["u-3"]}


def test_cli_preview_reads_jsonl_and_avro(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    _clean_env(monkeypatch)
    import io

    import fastavro

    from processor.decode import load_schema
    from processor.embedded.events import complete, encode_plain
    from processor.settings import default_schema_path

    samples = REPO / "schemas" / "examples" / "user_events.jsonl"
    assert read_event_file(str(samples), index=-3)["messageId"] == "msg-0183"
    schema = load_schema(default_schema_path())
    events = load_sample_events()
    bare = tmp_path / "event.avro"
    bare.write_bytes(encode_plain(schema, events[0]))
    container = tmp_path / "events.avro"
    buffer = io.BytesIO()
    fastavro.writer(buffer, schema, [complete(e) for e in events[:3]])
    container.write_bytes(buffer.getvalue())
    assert read_event_file(str(bare))["messageId"] == "msg-0001"
    assert read_event_file(str(container), index=2)["messageId"] == "msg-0003"
    assert main(["preview", str(samples), "--index", "-3"]) == 0
    out = capsys.readouterr().out
    assert ("Upload User Profile [upload_profile]: matched\n  refused at stage validate, code 515 (ValidationError): "
            "Email is not a valid e-mail address") in out
    assert main(["preview", str(tmp_path / "nope.json")]) == 1
    assert "cannot read" in capsys.readouterr().err
    assert main(["preview", str(samples), "--index", "999"]) == 1
    assert "--index 999 is out of range" in capsys.readouterr().err
    assert main(["preview"]) == 2
    assert main(["preview", str(samples), "--topic", "t"]) == 2


def test_cli_check_config(tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    _clean_env(monkeypatch)
    passcode = "s3cret-passcode-value"
    for name, value in {"KAFKA_BOOTSTRAP_SERVERS": "broker:9092", "KAFKA_TOPICS": "events",
                        "CLEVERTAP_ACCOUNT_ID": "ACC", "CLEVERTAP_PASSCODE": passcode,
                        "CLEVERTAP_REGION": "eu1"}.items():
        monkeypatch.setenv(name, value)
    assert main(["check-config"]) == 0
    captured = capsys.readouterr()
    shown = json.loads(captured.out)
    assert shown["clevertap_passcode"] == "****"
    assert passcode not in captured.out + captured.err
    assert shown["subscriptions_source"] == "Quick Setup presets"
    assert [s["name"] for s in shown["subscriptions"]] == [s.name for s in preset_subscriptions()]

    subs_file = tmp_path / "subs.yaml"
    subs_file.write_text(CUSTOM, encoding="utf-8")
    monkeypatch.setenv("SUBSCRIPTIONS_FILE", str(subs_file))
    assert main(["check-config"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["subscriptions_source"] == str(subs_file)
    assert shown["subscriptions"][0]["trigger"] == 'type = "identify" and traits.email != null'

    subs_file.write_text(CUSTOM.replace("action: delete_profile", "action: erase"), encoding="utf-8")
    monkeypatch.setenv("CLEVERTAP_REGION", "eu9")
    assert main(["check-config"]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.splitlines() == [
        "configuration error: CLEVERTAP_REGION: must be one of eu1, in1, us1, sg1, aps3, mec1, sk1, got 'eu9'",
        f"configuration error: SUBSCRIPTIONS_FILE: {subs_file}: subscriptions[4].action: unknown action 'erase' "
        "(upload_profile, upload_event, delete_profile)",
    ]


def test_compile_subscriptions_takes_plain_data() -> None:
    subs = compile_subscriptions([{"name": "a", "action": "delete_profile", "trigger": {"field": "x", "equals": 1}}],
                                 "inline")
    assert route({"x": 1, "userId": "u"}, subs).operations[0].record == {"identity": "u"}
