"""Table tests for processor.triggers: Segment's subscription syntax (FQL), the structured YAML form, and errors."""

from __future__ import annotations

from typing import Any

import pytest

from processor.triggers import TriggerSyntaxError, compile_trigger, parse_fql

TRACK: dict[str, Any] = {
    "type": "track",
    "event": "Order Completed",
    "userId": "u-1",
    "anonymousId": None,
    "name": None,
    "properties": {
        "price": 120,
        "ratio": 0.5,
        "premium": True,
        "gift": False,
        "name": "Nike Air Max",
        "sku": "S-1",
        "tags": ["a", "b"],
        "address": {"city": "Paris"},
        "Customer Type": "gold",
        "zero": 0,
        "text_number": "42.5",
        "empty": "",
        "items": [{"sku": "A", "qty": 1}, {"sku": "B", "qty": 2}],
        "it's": "quoted",
    },
    "traits": {},
    "context": {"traits": {"email": "ada@example.com"}, "app": {"version": "1.2.3"}},
}
IDENTIFY: dict[str, Any] = {"type": "identify", "userId": "u-2", "event": None, "traits": {"logins": 12, "plan": "pro"}}
NAMELESS: dict[str, Any] = {"type": "track", "userId": "u-3", "properties": {}}

FQL: list[tuple[str, dict[str, Any], bool]] = [
    # Segment's own examples
    ('type = "track"', TRACK, True),
    ('type = "identify"', TRACK, False),
    ('type = "identify"', IDENTIFY, True),
    ('type = "track" and event = "Delete User"', TRACK, False),
    ('type = "track" and event = "Order Completed"', TRACK, True),
    ('type = "track" or type = "identify"', IDENTIFY, True),
    ('type = "track" and (event = "Product Added" or event = "Order Completed")', TRACK, True),
    ('type = "track" and (event = "Product Added" or event = "Product Removed")', TRACK, False),
    ('event = "Order Completed" and properties.price >= 100', TRACK, True),
    ('event = "Order Completed" and properties.price >= 121', TRACK, False),
    ('type = "identify" and traits.logins >= 10 and traits.plan = "pro"', IDENTIFY, True),
    ('(event = "Product Added" and properties.price >= 100) or (event = "Order Completed" and properties.price >= 500)',
     TRACK, False),
    # equality compares the text of scalars, like Segment
    ('properties.premium = "true"', TRACK, True),
    ("properties.premium = true", TRACK, True),
    ("properties.gift = false", TRACK, True),
    ('properties.price = "120"', TRACK, True),
    ("properties.price = 120", TRACK, True),
    ("properties.price == 120.0", TRACK, True),
    ("properties.ratio = 0.5", TRACK, True),
    ('properties.sku = "s-1"', TRACK, False),  # case matters
    ('properties.address = "Paris"', TRACK, False),  # objects equal nothing
    ('properties.empty = ""', TRACK, True),
    # missing and null
    ('event != "Delete User"', NAMELESS, True),  # a missing field is unequal to anything
    ('event = "Delete User"', NAMELESS, False),
    ("anonymousId = null", TRACK, True),
    ("anonymousId != null", TRACK, False),
    ("userId != null", TRACK, True),
    ("context.traits.email != null", TRACK, True),
    ("context.traits.phone != null", TRACK, False),
    ("properties.zero != null", TRACK, True),  # 0 exists
    ("properties.missing.deeper = null", TRACK, True),
    # ordering needs numbers
    ("properties.price > 119.5", TRACK, True),
    ("properties.price < 120", TRACK, False),
    ("properties.price <= 120", TRACK, True),
    ("properties.text_number > 42", TRACK, True),  # a string holding a number
    ("properties.name > 1", TRACK, False),
    ("properties.premium > 0", TRACK, False),  # booleans are not numbers
    ("properties.missing < 1", TRACK, False),
    ("properties.zero >= -1e3", TRACK, True),
    # functions
    ('contains(properties.name, "Air")', TRACK, True),
    ('contains(properties.name, "air")', TRACK, False),
    ('!contains(properties.name, "Air")', TRACK, False),
    ('match(event, "Order *")', TRACK, True),
    ('match(event, "*Completed")', TRACK, True),
    ('match(event, "Order ?ompleted")', TRACK, True),
    ('match(event, "Order")', TRACK, False),  # a glob matches the whole value
    ('!match(event, "Order *")', TRACK, False),
    ('match(properties.price, "1*")', TRACK, False),  # not a string
    ('match(properties.sku, "S-[1]")', TRACK, False),  # brackets are literal, not a character class
    # not, precedence, paths
    ('not type = "identify"', TRACK, True),
    ('!(type = "track")', TRACK, False),
    ('type = "identify" or type = "track" and event = "Order Completed"', TRACK, True),  # and binds tighter
    ('type = "identify" or type = "track" and event = "Nope"', TRACK, False),
    ('properties["Customer Type"] = "gold"', TRACK, True),
    ("properties['it\\'s'] = 'quoted'", TRACK, True),
    ('properties.items[1].sku = "B"', TRACK, True),
    ('properties.items[-1].qty = 2', TRACK, True),
    ('properties.items[5].sku = null', TRACK, True),
    ('$.properties.tags[0] = "a"', TRACK, True),
    ('context.app.version = "1.2.3"', TRACK, True),
    ('type="track"and event="Order Completed"', TRACK, True),  # white space is optional around operators
]


@pytest.mark.parametrize(("text", "event", "expected"), FQL, ids=[f"{n}: {r[0]}" for n, r in enumerate(FQL)])
def test_fql(text: str, event: dict[str, Any], expected: bool) -> None:
    assert parse_fql(text)(event) is expected
    assert compile_trigger(text)(event) is expected


STRUCTURED: list[tuple[Any, dict[str, Any], bool]] = [
    (True, TRACK, True),
    (False, TRACK, False),
    ({"field": "type", "equals": "track"}, TRACK, True),
    ({"field": "$.type", "equals": "track"}, TRACK, True),
    ({"field": "properties.premium", "equals": "true"}, TRACK, True),
    ({"field": "properties.price", "equals": 120}, TRACK, True),
    ({"field": "anonymousId", "equals": None}, TRACK, True),
    ({"field": "event", "in": ["Order Completed", "Order Refunded"]}, TRACK, True),
    ({"field": "event", "in": ["Order Refunded"]}, TRACK, False),
    ({"field": "properties.price", "in": [100, "120"]}, TRACK, True),
    ({"field": "anonymousId", "in": ["x", None]}, TRACK, True),
    ({"field": "properties.address", "in": ["Paris"]}, TRACK, False),
    ({"field": "properties.sku", "exists": True}, TRACK, True),
    ({"field": "properties.nope", "exists": True}, TRACK, False),
    ({"field": "anonymousId", "exists": False}, TRACK, True),
    ({"field": "event", "prefix": "Order "}, TRACK, True),
    ({"field": "event", "prefix": "order "}, TRACK, False),
    ({"field": "event", "suffix": "Completed"}, TRACK, True),
    ({"field": "event", "contains": "der Co"}, TRACK, True),
    ({"field": "event", "glob": "Order*"}, TRACK, True),
    ({"field": "event", "glob": "*Refunded"}, TRACK, False),
    ({"field": "properties.price", "prefix": "1"}, TRACK, False),
    ({"field": "properties.price", "gt": 100}, TRACK, True),
    ({"field": "properties.price", "gte": 120}, TRACK, True),
    ({"field": "properties.price", "lt": 120}, TRACK, False),
    ({"field": "properties.price", "lte": "120"}, TRACK, True),
    ({"field": 'properties["Customer Type"]', "equals": "gold"}, TRACK, True),
    ({"and": [{"field": "type", "equals": "track"}, {"field": "event", "prefix": "Order"}]}, TRACK, True),
    ({"and": [{"field": "type", "equals": "track"}, {"field": "event", "prefix": "Cart"}]}, TRACK, False),
    ({"or": [{"field": "type", "equals": "identify"}, {"field": "event", "prefix": "Order"}]}, TRACK, True),
    ({"not": {"field": "type", "equals": "identify"}}, TRACK, True),
    ({"and": ['type = "track"', {"not": 'event = "Delete User"'}]}, TRACK, True),
    ({"and": ['type = "track"', {"not": 'event = "Delete User"'}]}, NAMELESS, True),
    ({"and": [True, {"or": [False, {"field": "userId", "exists": True}]}]}, IDENTIFY, True),
    ({"and": [{"field": "a", "exists": False}, {"field": "b", "exists": False}, {"field": "type", "equals": "x"}]},
     TRACK, False),
]


@pytest.mark.parametrize(("spec", "event", "expected"), STRUCTURED, ids=[str(n) for n in range(len(STRUCTURED))])
def test_structured(spec: Any, event: dict[str, Any], expected: bool) -> None:
    assert compile_trigger(spec)(event) is expected


def test_the_two_forms_agree_on_segment_examples() -> None:
    pairs = [
        ('type = "identify"', {"field": "type", "equals": "identify"}),
        ('type = "track" and event = "Delete User"',
         {"and": [{"field": "type", "equals": "track"}, {"field": "event", "equals": "Delete User"}]}),
        ('type = "track" and event != "Delete User"',
         {"and": [{"field": "type", "equals": "track"}, {"not": {"field": "event", "equals": "Delete User"}}]}),
        ("properties.sku != null", {"field": "properties.sku", "exists": True}),
        ('match(event, "Order*")', {"field": "event", "glob": "Order*"}),
    ]
    events = [TRACK, IDENTIFY, NAMELESS, {"type": "track", "event": "Delete User"}, {"type": "page"}]
    for text, spec in pairs:
        fql, structured = compile_trigger(text), compile_trigger(spec)
        assert [fql(e) for e in events] == [structured(e) for e in events], text


ERRORS: list[tuple[Any, str]] = [
    ("", "empty trigger"),
    ("type", "expected a comparison (=, !=, <, <=, >, >=) at column 5, found the end"),
    ('type = ', 'expected a value ("text", a number, true, false or null) at column 8, found the end'),
    ('type * "track"', "expected a comparison (=, !=, <, <=, >, >=) at column 6, found '*'"),
    ('type = "track" and', "expected a field, a function or '(' at column 19, found the end"),
    ('(type = "track"', "expected ')' at column 16, found the end"),
    ('type = "track")', "expected 'and', 'or' or the end at column 15, found ')'"),
    ('type = "unterminated', "unexpected '\"' at column 8"),
    ('lowercase(event) = "x"', "unknown function 'lowercase' at column 1 (contains, match)"),
    ('contains(event, 3)', "expected a quoted string at column 17, found '3'"),
    ("properties.price > \"cheap\"", "> at column 18 compares with a number"),
    ('properties..x = 1', "recursive descent '..' is not supported at column 1"),
    ('type = track', "expected a value (\"text\", a number, true, false or null) at column 8, found 'track'"),
    (3, "a trigger is a string"),
    ([], "a trigger is a string"),
    ({}, "a trigger is a string"),
    ({"field": "type"}, "a field condition has exactly one of equals, in, exists"),
    ({"field": "type", "equals": "a", "prefix": "b"}, "got equals, prefix"),
    ({"field": "type", "is": "a"}, "got is"),
    ({"field": 3, "equals": "a"}, "trigger.field: a field is a path"),
    ({"field": "a..b", "equals": "a"}, "trigger.field: unknown path syntax 'a..b'"),
    ({"field": "type", "in": []}, "trigger.in: a non-empty list of values"),
    ({"field": "type", "in": "track"}, "trigger.in: a non-empty list of values"),
    ({"field": "type", "equals": ["a"]}, "trigger.equals: a single value (use 'in' for a list)"),
    ({"field": "type", "exists": "yes"}, "trigger.exists: true or false"),
    ({"field": "type", "gt": "ten"}, "trigger.gt: a number"),
    ({"field": "type", "prefix": 1}, "trigger.prefix: a string"),
    ({"and": []}, "trigger.and: a non-empty list of conditions"),
    ({"and": [{"field": "type", "equals": "a"}], "or": []}, "'and' stands alone in its object"),
    ({"not": True, "field": "x"}, "'not' stands alone in its object"),
    ({"any": []}, "expected 'and', 'or', 'not' or 'field'"),
    ({"and": ['type = "a"', "type ="]}, "trigger.and[1]: expected a value"),
    ({"or": [{"not": {"field": "x", "glob": 5}}]}, "trigger.or[0].not.glob: a string"),
]


@pytest.mark.parametrize(("spec", "message"), ERRORS, ids=[str(n) for n in range(len(ERRORS))])
def test_errors(spec: Any, message: str) -> None:
    with pytest.raises(TriggerSyntaxError) as info:
        compile_trigger(spec)
    assert message in str(info.value)
    assert str(info.value).startswith("trigger")


def test_fql_error_names_the_trigger_text() -> None:
    with pytest.raises(TriggerSyntaxError) as info:
        compile_trigger('type = "track" and', "subscriptions[3].trigger")
    assert str(info.value) == (
        "subscriptions[3].trigger: expected a field, a function or '(' at column 19, found the end "
        "in 'type = \"track\" and'"
    )


@pytest.mark.parametrize("event", [{}, {"type": None}, {"type": 3}, {"properties": "text"}, {"properties": [1, 2]}])
def test_triggers_never_raise_on_odd_events(event: dict[str, Any]) -> None:
    for text, _, _ in FQL:
        assert parse_fql(text)(event) in (True, False)
    for spec, _, _ in STRUCTURED:
        assert compile_trigger(spec)(event) in (True, False)
