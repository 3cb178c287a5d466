"""Table tests for processor.mapping: paths, value expressions, templates, object mappings, normalisation of
CleverTap's standard profile keys, CleverTap's limits, nested values and timestamp conversion.

Hand-computed instants: 1990-05-17 = 7441 days after 1970-01-01 = 642902400; 1969-07-20 = -165 days = -14256000;
2023-01-01 = 1672531200; 2006-01-02T18:04:07Z = 1136225047 (Segment's own doc says 1136253847, which is wrong).
"""

from __future__ import annotations

import datetime as dt
import decimal
import os
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from processor.errors import MappingError, ValidationError
from processor.mapping import (
    MISSING,
    RESTRICTED_EVENT_NAMES,
    MappingSyntaxError,
    NestedValues,
    compile_object,
    compile_value,
    finish_event,
    finish_profile,
    parse_path,
)

DOB_1990 = 642902400
EVENT: dict[str, Any] = {
    "type": "identify",
    "userId": "u-1",
    "anonymousId": None,
    "timestamp": "2024-03-01T01:00:00Z",
    "traits": {
        "email": "ada@example.com",
        "first_name": "Ada",
        "last_name": "Lovelace",
        "Customer Type": "gold",
        "empty": "",
        "none": None,
        "zero": 0,
        "false": False,
        "tags": ["x", "y"],
        'quote"d': 1,
        "a.b": "dotted",
        "dob": "1990-05-17",
        "dob_ms": 642902400000,
        "dob_ct": "$D_642902400",
        "number_text": "42",
        "float_text": "4.5",
        "yes": "yes",
        "nope": "0",
        "address": {"city": "Paris", "zip": "75001"},
    },
    "properties": {"items": [{"sku": "A", "qty": 1}, {"sku": "B", "qty": 2}]},
    "context": {"traits": {"plan": "pro", "email": "context@example.com"}},
}

# ---------------------------------------------------------------------------------------------------------------
# Paths
# ---------------------------------------------------------------------------------------------------------------

PATHS: list[tuple[str, Any]] = [
    ("$.traits.email", "ada@example.com"),
    ("$.context.traits.plan", "pro"),
    ("$.properties.items[0].sku", "A"),
    ("$.properties.items[1].qty", 2),
    ("$.properties.items[-1].sku", "B"),
    ("$.properties.items[-2].sku", "A"),
    ("$.properties.items[2].sku", MISSING),
    ("$.properties.items[-3]", MISSING),
    ('$.traits["Customer Type"]', "gold"),
    ("$.traits['Customer Type']", "gold"),
    ('$["traits"]["a.b"]', "dotted"),
    ('$.traits["quote\\"d"]', 1),
    ('$.traits[ "email" ]', "ada@example.com"),
    ("$.traits.none", MISSING),
    ("$.traits.zero", 0),
    ("$.traits.false", False),
    ("$.traits.empty", ""),
    ("$.traits.email.deeper", MISSING),
    ("$.traits.tags[0]", "x"),
    ("$.traits[0]", MISSING),
    ("$.properties.items.sku", MISSING),
    ("$.type", "identify"),
    ("$.anonymousId", MISSING),
    ("$.missing.deep.path", MISSING),
    ("$.traits.address.city", "Paris"),
    ("  $.traits.email  ", "ada@example.com"),
]


@pytest.mark.parametrize(("text", "expected"), PATHS, ids=[p[0] for p in PATHS])
def test_path_get(text: str, expected: Any) -> None:
    path = parse_path(text)
    assert path.get(EVENT) == expected if expected is not MISSING else path.get(EVENT) is MISSING
    # Mapped fields also treat the empty string as no value.
    assert path.value(EVENT) is MISSING if expected in ("", MISSING) else path.value(EVENT) == expected


def test_root_path_is_the_event() -> None:
    assert parse_path("$").get(EVENT) is EVENT


@pytest.mark.parametrize(
    ("text", "display"),
    [("$.traits.email", "traits.email"), ('$.traits["Customer Type"]', 'traits["Customer Type"]'),
     ("$.properties.items[0].sku", "properties.items[0].sku"), ("$", "$")],
)
def test_path_display(text: str, display: str) -> None:
    assert parse_path(text).display == display


@pytest.mark.parametrize(
    ("text", "expected"),
    [("traits.first_name", "Ada"), ("type", "identify"), ('traits["Customer Type"]', "gold"),
     ('["traits"].email', "ada@example.com"), ("$.traits.last_name", "Lovelace"), ("properties.items[1].sku", "B"),
     ("context.traits.MSG-email", MISSING)],
)
def test_bare_paths(text: str, expected: Any) -> None:
    value = parse_path(text, bare=True).get(EVENT)
    assert value is MISSING if expected is MISSING else value == expected


PATH_ERRORS: list[tuple[str, bool, str]] = [
    ("traits.email", False, "a path starts with '$'"),
    ("$.traits..email", False, "recursive descent '..' is not supported"),
    ("$..email", False, "recursive descent '..' is not supported"),
    ("$.traits.*", False, "wildcards are not supported"),
    ("$.traits[*]", False, "brackets hold a list index [N] or a quoted key"),
    ("$.items[0:2]", False, "brackets hold a list index [N] or a quoted key"),
    ("$.items[first]", False, "brackets hold a list index [N] or a quoted key"),
    ('$.traits["open', False, "unterminated quote"),
    ('$.traits["k"x', False, "']' expected after the quoted key"),
    ("$.traits.", False, "a name must follow '.'"),
    ("$.a b", False, "unexpected ' ' at position 4"),
    ("$x", False, "unexpected 'x' at position 2"),
    ("", False, "empty path"),
    ("   ", True, "empty path"),
    ("=x", True, "unknown path syntax '=x'"),
    ("a.b?", True, "unexpected '?'"),
]


@pytest.mark.parametrize(("text", "bare", "message"), PATH_ERRORS, ids=[p[0] or "empty" for p in PATH_ERRORS])
def test_path_errors(text: str, bare: bool, message: str) -> None:
    with pytest.raises(MappingSyntaxError) as info:
        parse_path(text, bare=bare)
    assert "unknown path syntax" in str(info.value)
    assert message in str(info.value)


# ---------------------------------------------------------------------------------------------------------------
# Value expressions: paths, literals, templates, fallbacks, conversions
# ---------------------------------------------------------------------------------------------------------------

VALUES: list[tuple[str, Any, Any]] = [
    ("path", "$.traits.email", "ada@example.com"),
    ("path to empty string", "$.traits.empty", MISSING),
    ("path to null", "$.traits.none", MISSING),
    ("path to zero", "$.traits.zero", 0),
    ("path to false", "$.traits.false", False),
    ("path to an object", "$.traits.address", {"city": "Paris", "zip": "75001"}),
    ("literal string", "gold", "gold"),
    ("literal that is not a path", "$5 off", "$5 off"),
    ("literal CleverTap date", "$D_1136225047", "$D_1136225047"),
    ("literal int", 5, 5),
    ("literal zero", 0, 0),
    ("literal float", 2.5, 2.5),
    ("literal true", True, True),
    ("literal false", False, False),
    ("null is never a value", None, MISSING),
    ("empty string is no value", "", MISSING),
    ("template", "{{traits.first_name}} {{traits.last_name}}", "Ada Lovelace"),
    ("template with one missing", "{{traits.first_name}} {{traits.missing}}", "Ada"),
    ("template with the first missing", "{{traits.missing}} {{traits.last_name}}", "Lovelace"),
    ("template with none present", "{{traits.missing}} {{traits.other}}", MISSING),
    ("template with none present and text", "Dear {{traits.missing}}", MISSING),
    ("template with spaces in braces", "Hi {{ traits.first_name }}!", "Hi Ada!"),
    ("template with $. paths", "{{$.traits.first_name}}", "Ada"),
    ("template renders JSON scalars", "{{traits.zero}}/{{traits.false}}", "0/false"),
    ("template renders a list as JSON", "{{traits.tags}}", '["x","y"]'),
    ("template with index", "sku {{properties.items[1].sku}}", "sku B"),
    ("template with quoted key", '{{traits["Customer Type"]}} member', "gold member"),
    ("template with empty value", "{{traits.empty}}", MISSING),
    ("fallbacks: first with a value", ["$.traits.missing", "$.traits.empty", "$.traits.email"], "ada@example.com"),
    ("fallbacks: literal last", ["$.traits.missing", "fallback"], "fallback"),
    ("fallbacks: none", ["$.traits.missing", None], MISSING),
    ("fallbacks: name then template", ["$.traits.name", "{{traits.first_name}} {{traits.last_name}}"],
     "Ada Lovelace"),
    ("fallbacks: zero is a value", ["$.traits.zero", 7], 0),
    ("object path", {"path": "$.traits.email"}, "ada@example.com"),
    ("object path without $.", {"path": "traits.email"}, "ada@example.com"),
    ("object literal object", {"literal": {"a": 1}}, {"a": 1}),
    ("object literal list", {"literal": ["a", "b"]}, ["a", "b"]),
    ("object literal that looks like a path", {"literal": "$.traits.email"}, "$.traits.email"),
    ("object template", {"template": "{{traits.first_name}}"}, "Ada"),
    ("object first_of", {"first_of": ["$.traits.missing", 3]}, 3),
    ("as date from ISO", {"path": "$.traits.dob", "as": "date"}, f"$D_{DOB_1990}"),
    ("as date from epoch ms", {"path": "$.traits.dob_ms", "as": "date"}, f"$D_{DOB_1990}"),
    ("as date keeps $D_", {"path": "$.traits.dob_ct", "as": "date"}, f"$D_{DOB_1990}"),
    ("as date of a literal", {"literal": "2006-01-02T18:04:07Z", "as": "date"}, "$D_1136225047"),
    ("as string of zero", {"path": "$.traits.zero", "as": "string"}, "0"),
    ("as string of false", {"path": "$.traits.false", "as": "string"}, "false"),
    ("as string of a whole float", {"literal": 1.0, "as": "string"}, "1"),
    ("as number from text", {"path": "$.traits.number_text", "as": "number"}, 42),
    ("as number from float text", {"path": "$.traits.float_text", "as": "number"}, 4.5),
    ("as boolean from yes", {"path": "$.traits.yes", "as": "boolean"}, True),
    ("as boolean from '0'", {"path": "$.traits.nope", "as": "boolean"}, False),
    ("as on a missing value", {"path": "$.traits.missing", "as": "number"}, MISSING),
]


@pytest.mark.parametrize(("label", "spec", "expected"), VALUES, ids=[v[0] for v in VALUES])
def test_value_expressions(label: str, spec: Any, expected: Any) -> None:
    value = compile_value(spec)(EVENT)
    if expected is MISSING:
        assert value is MISSING
    else:
        assert value == expected
        assert type(value) is type(expected)


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"path": "$.traits.email", "as": "date"}, "x: the value is not a date or date-time"),
        ({"path": "$.traits.email", "as": "number"}, "x: the value is not a number"),
        ({"path": "$.traits.zero", "as": "date"}, None),  # 0 is the epoch: a date
        ({"path": "$.traits.email", "as": "boolean"}, "x: the value is not a boolean"),
        ({"path": "$.traits.false", "as": "number"}, "x: the value is not a number"),
    ],
)
def test_conversion_errors_are_mapping_errors(spec: Any, message: str | None) -> None:
    fn = compile_value(spec, "x")
    if message is None:
        assert fn(EVENT) == "$D_0"
        return
    with pytest.raises(MappingError) as info:
        fn(EVENT)
    assert info.value.message == message
    assert info.value.stage == "map"


VALUE_ERRORS: list[tuple[Any, str]] = [
    ([], "m: an empty fallback list"),
    ({"path": 1}, "m.path: a path is a string"),
    ({"path": "$.a..b"}, "m.path: unknown path syntax '$.a..b'"),
    ({"template": 1}, "m.template: a template is a string"),
    ({"first_of": "x"}, "m.first_of: a list of value expressions"),
    ({"path": "$.a", "literal": 1}, "m: a value object has exactly one of path, template, literal, first_of"),
    ({"foo": 1}, "m: a value object has exactly one of"),
    ({}, "m: a value object has exactly one of"),
    ({"path": "$.a", "as": "json"}, "m.as: one of date, string, number, boolean, got 'json'"),
    ("{{traits.a", "m: template '{{traits.a': unbalanced"),
    ("x }} y", "m: template 'x }} y': unbalanced"),
    ("{{}}", "m: template '{{}}': empty placeholder"),
    ("{{traits..a}}", "m: template '{{traits..a}}': unknown path syntax 'traits..a'"),
    ("$.traits[x]", "m: unknown path syntax '$.traits[x]'"),
    (["$.ok", "$.bad..path"], "m[1]: unknown path syntax"),
    (b"bytes", "m: a bytes is not a value expression"),
]


@pytest.mark.parametrize(("spec", "message"), VALUE_ERRORS, ids=[str(n) for n in range(len(VALUE_ERRORS))])
def test_value_expression_errors(spec: Any, message: str) -> None:
    with pytest.raises(MappingSyntaxError) as info:
        compile_value(spec, "m")
    assert str(info.value).startswith(message)


# ---------------------------------------------------------------------------------------------------------------
# Object mappings (profileData / evtData)
# ---------------------------------------------------------------------------------------------------------------

EVENT_WITH_OVERRIDES = {**EVENT, "overrides": {"plan": "enterprise", "seats": 5}}
OBJECTS: list[tuple[str, Any, dict[str, Any]]] = [
    ("whole object", "$.context.traits", {"plan": "pro", "email": "context@example.com"}),
    ("missing object", "$.missing", {}),
    ("null", None, {}),
    ("empty map", {}, {}),
    ("explicit keys", {"Email": "$.traits.email", "plan": "$.context.traits.plan",
                       "Customer Type": '$.traits["Customer Type"]', "none": "$.traits.none", "src": "crm"},
     {"Email": "ada@example.com", "plan": "pro", "Customer Type": "gold", "src": "crm"}),
    ("spread", {"*": "$.context.traits"}, {"plan": "pro", "email": "context@example.com"}),
    ("spread with except", {"*": {"from": "$.context.traits", "except": ["email"]}}, {"plan": "pro"}),
    ("explicit key wins over the spread", {"plan": "explicit", "*": "$.context.traits"},
     {"plan": "explicit", "email": "context@example.com"}),
    ("spread fills a key the explicit mapping left empty", {"plan": "$.traits.missing", "*": "$.context.traits"},
     {"plan": "pro", "email": "context@example.com"}),
    ("first spread wins", {"*": ["$.context.traits", "$.overrides"]},
     {"plan": "pro", "email": "context@example.com", "seats": 5}),
    ("spread of a missing object", {"*": "$.nothing", "a": 1}, {"a": 1}),
    ("spread keeps nulls and empty strings", {"*": {"from": "$.traits", "except": [
        "email", "first_name", "last_name", "Customer Type", "zero", "false", "tags", 'quote"d', "a.b", "dob",
        "dob_ms", "dob_ct", "number_text", "float_text", "yes", "nope", "address"]}},
     {"empty": "", "none": None}),
]


@pytest.mark.parametrize(("label", "spec", "expected"), OBJECTS, ids=[o[0] for o in OBJECTS])
def test_object_mappings(label: str, spec: Any, expected: dict[str, Any]) -> None:
    built = compile_object(spec, "profileData").build(EVENT_WITH_OVERRIDES)
    assert dict(built) == expected
    assert list(built) == list(expected)  # explicit keys first, in the order written


def test_object_mapping_does_not_mutate_the_event() -> None:
    mapping = compile_object({"*": "$.context.traits", "x": 1}, "profileData")
    built = mapping.build(EVENT)
    assert built is not EVENT["context"]["traits"]
    assert EVENT["context"]["traits"] == {"plan": "pro", "email": "context@example.com"}


@pytest.mark.parametrize(
    ("spec", "event", "message"),
    [
        ("$.traits", {"traits": ["a"]}, "traits is a list, expected an object"),
        ("$.properties", {"properties": "text"}, "properties is a str, expected an object"),
        ({"*": "$.traits.tags"}, EVENT, "traits.tags is a list, expected an object"),
        ({"a": 1, "*": ["$.context", "$.traits.email"]}, EVENT, "traits.email is a str, expected an object"),
    ],
)
def test_spread_of_something_else_is_a_mapping_error(spec: Any, event: dict[str, Any], message: str) -> None:
    with pytest.raises(MappingError) as info:
        compile_object(spec, "evtData").build(event)
    assert info.value.message == message


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("traits", "p: unknown path syntax 'traits': expected a path to an object"),
        ("{{traits.a}}", "p: unknown path syntax"),
        (3, "p: expected a path to an object ($.traits) or a map of keys"),
        (["$.traits"], "p: expected a path to an object"),
        ({"*": 3}, 'p["*"]: a spread is a path or {from: <path>, except: [keys]}'),
        ({"*": {"from": 1}}, 'p["*"].from: a path such as $.traits'),
        ({"*": {"form": "$.a"}}, 'p["*"]: a spread is a path'),
        ({"*": {"from": "$.a", "except": "email"}}, 'p["*"].except: a list of keys'),
        ({"*": ["$.a", "$.b..c"]}, 'p["*"][1]: unknown path syntax'),
        ({"": "x"}, "p: keys are non-empty strings"),
        ({"Email": "$.traits..email"}, "p.Email: unknown path syntax"),
        ({"k" * 121: 1}, "p.kkkkkkkkkkkkkkkkkkkk...: CleverTap keys are at most 120 bytes"),
    ],
)
def test_object_mapping_errors(spec: Any, message: str) -> None:
    with pytest.raises(MappingSyntaxError) as info:
        compile_object(spec, "p", max_key_bytes=120)
    assert str(info.value).startswith(message)


# ---------------------------------------------------------------------------------------------------------------
# Standard profile keys: normalised where CleverTap has one accepted form, refused with CleverTap's code
# ---------------------------------------------------------------------------------------------------------------

REJECT = object()  # marker in the tables: refused


def _code(code: int | None) -> tuple[object, int | None]:
    return (REJECT, code)


STANDARD: list[tuple[str, Any, Any]] = [
    # Gender (514)
    *[("Gender", word, "M") for word in ("male", "Male", "MALE", "m", "M", "man", "Man", " male ")],
    *[("Gender", word, "F") for word in ("female", "Female", "FEMALE", "f", "F", "woman", "Woman", "\tf")],
    *[("Gender", word, _code(514)) for word in ("other", "non-binary", "x", "unknown", "mf", 1, True, ["M"])],
    # Phone (516): + and 8 to 15 digits; spaces, dashes, dots and parentheses are removed if the rest is E.164
    ("Phone", "+14155550100", "+14155550100"),
    ("Phone", "+447700900000", "+447700900000"),
    ("Phone", "+44 7700 900000", "+447700900000"),
    ("Phone", "+1 (415) 555-0100", "+14155550100"),
    ("Phone", "+49.30.1234567", "+49301234567"),
    ("Phone", " +14155550100 ", "+14155550100"),
    ("Phone", "+12345678", "+12345678"),
    ("Phone", "+123456789012345", "+123456789012345"),
    ("Phone", "07700900123", _code(516)),
    ("Phone", "004477009000000", _code(516)),
    ("Phone", "+1234567", _code(516)),
    ("Phone", "+1234567890123456", _code(516)),
    ("Phone", "14155550100", _code(516)),
    ("Phone", 14155550100, _code(516)),
    ("Phone", "+1415555010O", _code(516)),
    ("Phone", "++14155550100", _code(516)),
    ("Phone", "+1 415 555 0100 ext 2", _code(516)),
    ("Phone", "+\u0661\u0664\u0661\u0665\u0665\u0665\u0665\u0660\u0661\u0660\u0660", _code(516)),  # Arabic digits
    # Email (515)
    ("Email", "ada@example.com", "ada@example.com"),
    ("Email", " ada@example.com\n", "ada@example.com"),
    ("Email", "ada+tag@mail.example.co.uk", "ada+tag@mail.example.co.uk"),
    ("Email", "a@b.c", "a@b.c"),
    ("Email", "not-an-email", _code(515)),
    ("Email", "ada@example", _code(515)),
    ("Email", "ada example@x.com", _code(515)),
    ("Email", "ada@@example.com", _code(515)),
    ("Email", "@example.com", _code(515)),
    ("Email", "ada@example.", _code(515)),
    ("Email", 42, _code(515)),
    # Employed (517), Married (519): Y/N
    *[(key, value, "Y") for key in ("Employed", "Married") for value in (True, "true", "TRUE", "yes", "Y", "y", 1)],
    *[(key, value, "N") for key in ("Employed", "Married") for value in (False, "false", "No", "N", "n", 0, "0")],
    *[("Employed", value, _code(517)) for value in ("maybe", 2, "ja", 0.5)],
    *[("Married", value, _code(519)) for value in ("divorced", -1, ["Y"])],
    # Education (518)
    ("Education", "School", "School"),
    ("Education", "school", "School"),
    ("Education", "COLLEGE", "College"),
    ("Education", " graduate ", "Graduate"),
    ("Education", "PhD", _code(518)),
    ("Education", 3, _code(518)),
    # Age (520)
    ("Age", 30, 30),
    ("Age", 0, 0),
    ("Age", 30.0, 30),
    ("Age", "30", 30),
    ("Age", -1, _code(520)),
    ("Age", 30.5, _code(520)),
    ("Age", "thirty", _code(520)),
    ("Age", True, _code(520)),
    # DOB: a CleverTap date (CleverTap documents no code for a bad one)
    ("DOB", "1990-05-17", f"$D_{DOB_1990}"),
    ("DOB", "1990-05-17T10:00:00Z", f"$D_{DOB_1990 + 36000}"),
    ("DOB", "1990-05-17T01:00:00+02:00", f"$D_{DOB_1990 - 3600}"),
    ("DOB", DOB_1990, f"$D_{DOB_1990}"),
    ("DOB", DOB_1990 * 1000, f"$D_{DOB_1990}"),
    ("DOB", f"$D_{DOB_1990}", f"$D_{DOB_1990}"),
    ("DOB", dt.date(1990, 5, 17), f"$D_{DOB_1990}"),
    ("DOB", dt.datetime(1990, 5, 17, tzinfo=dt.UTC), f"$D_{DOB_1990}"),
    ("DOB", "1969-07-20", "$D_-14256000"),
    ("DOB", "17/05/1990", _code(None)),
    ("DOB", "$D_soon", _code(None)),
    ("DOB", "1990-02-30", _code(None)),
    ("DOB", True, _code(None)),
    # MSG-* subscription flags: booleans
    ("MSG-email", True, True),
    ("MSG-email", "false", False),
    ("MSG-sms", "yes", True),
    ("MSG-push", 0, False),
    ("MSG-whatsapp", "TRUE", True),
    ("MSG-dndPhone", "true", True),
    ("MSG-email", "sometimes", _code(None)),
    ("MSG-sms", 2, _code(None)),
    # Plain standard keys
    ("Name", "Ada Lovelace", "Ada Lovelace"),
    ("Photo", "https://example.com/ada.png", "https://example.com/ada.png"),
    ("Customer Type", "Gold", "Gold"),
    ("Name", 42, 42),
]


@pytest.mark.parametrize(("key", "value", "expected"), STANDARD, ids=[f"{k}={v!r}" for k, v, _ in STANDARD])
def test_standard_profile_keys(key: str, value: Any, expected: Any) -> None:
    if isinstance(expected, tuple) and expected and expected[0] is REJECT:
        with pytest.raises(ValidationError) as info:
            finish_profile({key: value, "other": 1})
        assert info.value.code == expected[1]
        assert info.value.stage == "validate"
        if isinstance(value, str) and len(value.strip()) > 3:
            assert value.strip() not in info.value.message  # values never reach logs or dead-letter headers
        return
    data, warnings = finish_profile({key: value, "other": 1})
    assert data == {key: expected, "other": 1}
    assert type(data[key]) is type(expected)
    assert warnings == 0


@pytest.mark.parametrize("key", ["Email", "Phone", "Gender", "Education", "Age", "DOB", "Employed", "MSG-email"])
@pytest.mark.parametrize("value", [None, ""])
def test_empty_standard_keys_are_left_out(key: str, value: Any) -> None:
    assert finish_profile({key: value, "plan": "pro"}) == ({"plan": "pro"}, 0)


def test_null_custom_keys_are_left_out_but_empty_strings_kept() -> None:
    assert finish_profile({"a": None, "b": "", "c": 0, "d": False}) == ({"b": "", "c": 0, "d": False}, 0)


def test_standard_keys_are_case_sensitive() -> None:
    # "email" is a custom property (the presets map the email trait to Email explicitly), so it is not checked.
    assert finish_profile({"email": "not-an-email", "gender": "other"}) == (
        {"email": "not-an-email", "gender": "other"}, 0
    )


# ---------------------------------------------------------------------------------------------------------------
# Limits and nested values
# ---------------------------------------------------------------------------------------------------------------

PROFILE_LIMITS: list[tuple[str, dict[str, Any], NestedValues, Any]] = [
    ("key of 120 bytes", {"k" * 120: 1}, NestedValues.REJECT, {"k" * 120: 1}),
    ("key of 121 bytes", {"k" * 121: 1}, NestedValues.REJECT, 512),
    ("key of 60 two-byte characters", {"é" * 60: 1}, NestedValues.REJECT, {"é" * 60: 1}),
    ("key of 61 two-byte characters", {"é" * 61: 1}, NestedValues.REJECT, 512),
    ("value of 512 bytes", {"v": "x" * 512}, NestedValues.REJECT, {"v": "x" * 512}),
    ("value of 513 bytes", {"v": "x" * 513}, NestedValues.REJECT, 512),
    ("value of 170 three-byte characters", {"v": "€" * 170}, NestedValues.REJECT, {"v": "€" * 170}),
    ("value of 171 three-byte characters", {"v": "€" * 171}, NestedValues.REJECT, 512),
    ("Name longer than 512 bytes", {"Name": "n" * 600}, NestedValues.STRINGIFY, 512),
    ("multi-value of 100 strings", {"tags": [str(n) for n in range(100)]}, NestedValues.REJECT,
     {"tags": [str(n) for n in range(100)]}),
    ("multi-value of 101 strings", {"tags": [str(n) for n in range(101)]}, NestedValues.REJECT, 512),
    ("multi-value with a long string", {"tags": ["a", "x" * 513]}, NestedValues.REJECT, 512),
    ("list of numbers", {"scores": [1, 2]}, NestedValues.REJECT, 512),
    ("list of numbers as JSON", {"scores": [1, 2]}, NestedValues.STRINGIFY, {"scores": "[1,2]"}),
    ("list of numbers allowed", {"scores": [1, 2]}, NestedValues.ALLOW, {"scores": [1, 2]}),
    ("empty list is a multi-value", {"tags": []}, NestedValues.REJECT, {"tags": []}),
    ("object", {"address": {"city": "Paris"}}, NestedValues.REJECT, 512),
    ("object as JSON", {"address": {"city": "Paris", "zip": "75001"}}, NestedValues.STRINGIFY,
     {"address": '{"city":"Paris","zip":"75001"}'}),
    ("object allowed", {"address": {"city": "Paris"}}, NestedValues.ALLOW, {"address": {"city": "Paris"}}),
    ("object whose JSON is too long", {"blob": {"k": "x" * 600}}, NestedValues.STRINGIFY, 512),
    ("tuple as JSON", {"pair": (1, "a")}, NestedValues.STRINGIFY, {"pair": '[1,"a"]'}),
    ("dates inside an object are converted first", {"h": {"at": "2023-01-01"}}, NestedValues.STRINGIFY,
     {"h": '{"at":1672531200}'}),
]


@pytest.mark.parametrize(("label", "data", "nested", "expected"), PROFILE_LIMITS, ids=[r[0] for r in PROFILE_LIMITS])
def test_profile_limits(label: str, data: dict[str, Any], nested: NestedValues, expected: Any) -> None:
    if isinstance(expected, int):
        with pytest.raises(ValidationError) as info:
            finish_profile(data, nested)
        assert info.value.code == expected
        return
    assert finish_profile(data, nested) == (expected, 0)


EVENTS: list[tuple[str, Any, dict[str, Any], NestedValues, Any]] = [
    ("plain", "Product Viewed", {"sku": "S-1", "price": 9.5, "inStock": True, "coupon": None}, NestedValues.REJECT,
     {"sku": "S-1", "price": 9.5, "inStock": True, "coupon": None}),
    ("no name", None, {}, NestedValues.REJECT, 509),
    ("empty name", "", {}, NestedValues.REJECT, 509),
    ("blank name", "   ", {}, NestedValues.REJECT, 509),
    ("numeric name", 42, {}, NestedValues.REJECT, 509),
    *[(f"restricted {name}", name, {}, NestedValues.REJECT, 513) for name in sorted(RESTRICTED_EVENT_NAMES)],
    ("names are case-sensitive", "app launched", {}, NestedValues.REJECT, {}),
    ("100 properties", "E", {f"p{n}": n for n in range(100)}, NestedValues.REJECT, {f"p{n}": n for n in range(100)}),
    ("101 properties", "E", {f"p{n}": n for n in range(101)}, NestedValues.ALLOW, 522),
    ("object", "Address Changed", {"address": {"city": "Paris"}}, NestedValues.REJECT, 512),
    ("list", "Tagged", {"tags": ["a"]}, NestedValues.REJECT, 512),
    ("object as JSON", "Address Changed", {"address": {"city": "Paris"}}, NestedValues.STRINGIFY,
     {"address": '{"city":"Paris"}'}),
    ("list as JSON", "Tagged", {"tags": ["a", 1]}, NestedValues.STRINGIFY, {"tags": '["a",1]'}),
    ("object allowed", "Address Changed", {"address": {"city": "Paris"}}, NestedValues.ALLOW,
     {"address": {"city": "Paris"}}),
    ("Charged Items", "Charged", {"Amount": 10, "Items": [{"sku": "A", "qty": 1}, {"sku": "B", "price": 2.5}]},
     NestedValues.REJECT, {"Amount": 10, "Items": [{"sku": "A", "qty": 1}, {"sku": "B", "price": 2.5}]}),
    ("Charged Items empty", "Charged", {"Items": []}, NestedValues.REJECT, {"Items": []}),
    ("Charged Items nested", "Charged", {"Items": [{"sku": "A", "tags": ["x"]}]}, NestedValues.REJECT, 512),
    ("Charged Items nested as JSON", "Charged", {"Items": [{"sku": "A", "tags": ["x"]}]}, NestedValues.STRINGIFY,
     {"Items": [{"sku": "A", "tags": '["x"]'}]}),
    ("Charged Items of strings", "Charged", {"Items": ["A", "B"]}, NestedValues.REJECT, 512),
    ("Charged Items of strings as JSON", "Charged", {"Items": ["A", "B"]}, NestedValues.STRINGIFY,
     {"Items": '["A","B"]'}),
    ("Items outside Charged", "Order Placed", {"Items": [{"sku": "A"}]}, NestedValues.REJECT, 512),
    ("lower-case items in Charged", "Charged", {"items": [{"sku": "A"}]}, NestedValues.REJECT, 512),
    ("other objects in Charged", "Charged", {"Items": [{"sku": "A"}], "meta": {"a": 1}}, NestedValues.REJECT, 512),
    ("dates inside Items are converted", "Charged", {"Items": [{"shipped": "2023-01-01"}]}, NestedValues.REJECT,
     {"Items": [{"shipped": 1672531200}]}),
]


@pytest.mark.parametrize(("label", "name", "data", "nested", "expected"), EVENTS, ids=[r[0] for r in EVENTS])
def test_event_checks(label: str, name: Any, data: dict[str, Any], nested: NestedValues, expected: Any) -> None:
    if isinstance(expected, int):
        with pytest.raises(ValidationError) as info:
            finish_event(name, data, nested)
        assert info.value.code == expected
        assert info.value.stage == "validate"
        return
    assert finish_event(name, data, nested) == (expected, 0)


# ---------------------------------------------------------------------------------------------------------------
# Timestamp conversion in profileData / evtData (the Convert Timestamps switch and date_type)
# ---------------------------------------------------------------------------------------------------------------

CONVERSIONS: list[tuple[str, Any, bool, bool, Any, int]] = [
    # label, value, iso_strings (Convert Timestamps), date_type, expected, warnings
    ("ISO date-time", "2006-01-02T18:04:07Z", True, False, 1136225047, 0),
    ("ISO date-time as CleverTap date", "2006-01-02T18:04:07Z", True, True, "$D_1136225047", 0),
    ("ISO date-time, switch off", "2006-01-02T18:04:07Z", False, False, "2006-01-02T18:04:07Z", 0),
    ("ISO date-time, switch off, date_type", "2006-01-02T18:04:07Z", False, True, "2006-01-02T18:04:07Z", 0),
    ("ISO date", "1990-05-17", True, False, DOB_1990, 0),
    ("ISO with offset", "2006-01-02T20:04:07+02:00", True, False, 1136225047, 0),
    ("ISO with fraction", "2006-01-02T18:04:07.999Z", True, False, 1136225047, 0),
    ("before 1970", "1969-12-31T23:59:59.5Z", True, False, -1, 0),
    ("impossible date: a warning", "2023-02-30", True, False, "2023-02-30", 1),
    ("impossible date, switch off: no warning", "2023-02-30", False, False, "2023-02-30", 0),
    ("phone number", "+14155550100", True, False, "+14155550100", 0),
    ("version", "4.1.0", True, False, "4.1.0", 0),
    ("basic format", "20230328", True, False, "20230328", 0),
    ("space separator", "2024-03-01 01:00:00", True, False, "2024-03-01 01:00:00", 0),
    ("epoch number stays", 1136225047, True, False, 1136225047, 0),
    ("Avro timestamp-millis (aware)", dt.datetime(2006, 1, 2, 18, 4, 7, 999000, tzinfo=dt.UTC), True, False,
     1136225047, 0),
    ("Avro timestamp, switch off", dt.datetime(2006, 1, 2, 18, 4, 7, tzinfo=dt.UTC), False, False, 1136225047, 0),
    ("Avro timestamp as CleverTap date", dt.datetime(2006, 1, 2, 18, 4, 7, tzinfo=dt.UTC), False, True,
     "$D_1136225047", 0),
    ("Avro local-timestamp (naive = UTC)", dt.datetime(2006, 1, 2, 18, 4, 7), True, False, 1136225047, 0),
    ("Avro date", dt.date(1990, 5, 17), True, False, DOB_1990, 0),
    ("Avro decimal", decimal.Decimal("12.50"), True, False, 12.5, 0),
    ("Avro decimal integral", decimal.Decimal("3.00"), True, False, 3, 0),
    ("Avro uuid", uuid.UUID("12345678-1234-5678-1234-567812345678"), True, False,
     "12345678-1234-5678-1234-567812345678", 0),
    ("Avro time-millis", dt.time(10, 30, 5), True, False, "10:30:05", 0),
    ("Avro time-micros", dt.time(10, 30, 5, 250), True, False, "10:30:05.000250", 0),
]


@pytest.mark.parametrize(
    ("label", "value", "iso_strings", "date_type", "expected", "warnings"), CONVERSIONS, ids=[r[0] for r in CONVERSIONS]
)
def test_timestamp_conversion(
    label: str, value: Any, iso_strings: bool, date_type: bool, expected: Any, warnings: int
) -> None:
    profile = finish_profile({"v": value}, iso_strings=iso_strings, date_type=date_type)
    event = finish_event("E", {"v": value}, iso_strings=iso_strings, date_type=date_type)
    assert profile == ({"v": expected}, warnings)
    assert event == ({"v": expected}, warnings)
    assert type(profile[0]["v"]) is type(expected)


def test_dob_is_a_date_whatever_the_switches() -> None:
    for iso_strings in (True, False):
        for date_type in (True, False):
            data, _ = finish_profile(
                {"DOB": "1990-05-17", "since": "2023-01-01"}, iso_strings=iso_strings, date_type=date_type
            )
            assert data["DOB"] == f"$D_{DOB_1990}"
            assert data["since"] == (("$D_1672531200" if date_type else 1672531200) if iso_strings else "2023-01-01")


@pytest.mark.parametrize("finish", ["profile", "event"])
def test_bytes_cannot_be_sent(finish: str) -> None:
    with pytest.raises(MappingError, match="binary values cannot be sent to CleverTap"):
        if finish == "profile":
            finish_profile({"blob": b"\x00\x01"})
        else:
            finish_event("E", {"blob": b"\x00\x01"})


def test_finishing_never_mutates_its_input() -> None:
    data = {"at": "2023-01-01", "Gender": "female", "n": {"at": "2023-01-01"}, "none": None}
    before = {k: (dict(v) if isinstance(v, dict) else v) for k, v in data.items()}
    finish_profile(data, NestedValues.STRINGIFY)
    finish_event("E", data, NestedValues.STRINGIFY)
    assert data == before


# ---------------------------------------------------------------------------------------------------------------
# The host's time zone never matters
# ---------------------------------------------------------------------------------------------------------------


@pytest.fixture(params=["America/Los_Angeles", "Asia/Kolkata", "Pacific/Chatham"])
def non_utc_tz(request: pytest.FixtureRequest) -> Iterator[str]:
    old = os.environ.get("TZ")
    os.environ["TZ"] = request.param
    time.tzset()
    try:
        assert time.localtime(0).tm_hour != 0 or time.localtime(0).tm_min != 0  # really not UTC
        yield request.param
    finally:
        if old is None:
            del os.environ["TZ"]
        else:
            os.environ["TZ"] = old
        time.tzset()


def test_conversions_ignore_the_host_time_zone(non_utc_tz: str) -> None:
    data, warnings = finish_profile(
        {
            "DOB": "1990-05-17",
            "local": "2006-01-02T18:04:07",
            "naive": dt.datetime(2006, 1, 2, 18, 4, 7),
            "day": dt.date(1990, 5, 17),
            "dst_gap": "2023-03-12T02:30:00",
        }
    )
    assert warnings == 0
    assert data == {
        "DOB": f"$D_{DOB_1990}",
        "local": 1136225047,
        "naive": 1136225047,
        "day": DOB_1990,
        "dst_gap": 1678588200,
    }
    assert compile_value({"literal": "1990-05-17", "as": "date"})(EVENT) == f"$D_{DOB_1990}"
