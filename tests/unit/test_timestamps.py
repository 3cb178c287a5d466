"""Table-driven tests for processor.timestamps.

Expected values are hand-computed (days since 1970-01-01 x 86400 + time - offset) and were
cross-checked with GNU ``date -u -d ... +%s``; they are never produced by the code under test.
Useful anchors: 2000-01-01 = 946684800, 2023-01-01 = 1672531200, 2024-01-01 = 1704067200,
1900-01-01 = -2208988800, 0001-01-01 = -62135596800, 9999-12-31T23:59:59Z = 253402300799.
"""

from __future__ import annotations

import copy
import datetime as dt
import decimal
import os
import random
import time
import uuid
from collections.abc import Iterator

import pytest

from processor.timestamps import (
    EPOCH_MICROS_MIN,
    EPOCH_MILLIS_MIN,
    EPOCH_NANOS_MIN,
    IsoRejection,
    clevertap_date,
    convert_timestamps,
    datetime_to_unix_seconds,
    event_time_to_unix_seconds,
    is_iso_shape,
    iso_to_unix_seconds,
    parse_iso8601,
)

UTC = dt.UTC
Y2K = 946684800  # 2000-01-01T00:00:00Z

# --------------------------------------------------------------------------------------------
# Valid ISO-8601 extended strings -> floored Unix seconds
# --------------------------------------------------------------------------------------------

VALID: list[tuple[str, int]] = [
    # examples from the spec
    ("2006-01-02T18:04:07Z", 1136225047),
    ("1990-05-17", 642902400),
    ("2021-03-10T11:59:22.080Z", 1615377562),
    # epoch and simple anchors
    ("1970-01-01", 0),
    ("1970-01-01T00:00:00Z", 0),
    ("1970-01-01T00:00Z", 0),
    ("1970-01-01T00:00", 0),
    ("1970-01-01T00:00:01", 1),
    ("2000-01-01", Y2K),
    ("2000-01-01T00:00:00", Y2K),
    ("2000-01-01T00:00", Y2K),
    ("2000-01-01T00:00:00+00:00", Y2K),
    ("2000-01-01T00:00:00-00:00", Y2K),
    ("2000-01-01T00:00:00+0000", Y2K),
    # offsets: UTC = local - offset
    ("2000-01-01T05:30:00+05:30", Y2K),
    ("2000-01-01T05:30:00+0530", Y2K),
    ("1999-12-31T16:00:00-08:00", Y2K),
    ("1999-12-31T16:00:00-0800", Y2K),
    ("1999-12-31T16:00-08:00", Y2K),
    ("2000-01-01T23:59:00+23:59", Y2K),
    ("1999-12-31T00:01:00-23:59", Y2K),
    ("2000-01-01T00:45:00+00:45", Y2K),
    ("2023-03-28T10:15:30+05:30", 1679978730),
    ("2023-03-28T10:15:30-08:00", 1680027330),
    ("2006-01-02T15:04:05-07:00", 1136239445),
    ("1950-06-15T08:30:00-03:00", -616854600),
    # fractions of 1..9 digits never round up
    ("2021-03-10T11:59:22.9Z", 1615377562),
    ("2021-03-10T11:59:22.99Z", 1615377562),
    ("2021-03-10T11:59:22.999Z", 1615377562),
    ("2021-03-10T11:59:22.9999Z", 1615377562),
    ("2021-03-10T11:59:22.99999Z", 1615377562),
    ("2021-03-10T11:59:22.999999Z", 1615377562),
    ("2021-03-10T11:59:22.9999999Z", 1615377562),
    ("2021-03-10T11:59:22.99999999Z", 1615377562),
    ("2021-03-10T11:59:22.999999999Z", 1615377562),
    ("2021-03-10T11:59:22.000000000Z", 1615377562),
    ("2021-03-10T11:59:22.5", 1615377562),
    ("2021-03-10T11:59:22,5Z", 1615377562),  # ISO also allows the comma
    ("2021-03-10T17:29:22.999+05:30", 1615377562),
    ("2021-03-10T17:29:22.999+0530", 1615377562),
    # pre-1970: floor, not truncation toward zero
    ("1969-12-31", -86400),
    ("1969-12-31T23:59:59Z", -1),
    ("1969-12-31T23:59:59.5Z", -1),
    ("1969-12-31T23:59:59.000000001Z", -1),
    ("1969-12-31T23:59:59.999999999Z", -1),
    ("1969-12-31T23:59:58.1Z", -2),
    ("1970-01-01T00:00:00.999999999Z", 0),
    ("1969-12-31T19:00:00.5-05:00", 0),
    ("1970-01-01T05:29:59.9+05:30", -1),
    ("1969-07-20T20:17:40Z", -14182940),
    ("1960-01-01", -315619200),
    ("1960-01-01T00:00:00.5Z", -315619200),
    ("1900-01-01", -2208988800),
    ("1901-12-13T20:45:52Z", -2147483648),
    ("2038-01-19T03:14:08Z", 2147483648),
    # leap years
    ("2024-02-29", 1709164800),
    ("2024-02-29T12:00:00Z", 1709208000),
    ("2000-02-29", 951782400),
    ("1600-02-29", -11670998400),
    ("2100-03-01", 4107542400),
    # range ends, also when the offset leaves the year range
    ("0001-01-01", -62135596800),
    ("9999-12-31T23:59:59Z", 253402300799),
    ("9999-12-31T23:59:59.999999999Z", 253402300799),
    ("0001-01-01T00:00:00+01:00", -62135600400),
    ("9999-12-31T23:59:59-01:00", 253402304399),
]


@pytest.mark.parametrize(("text", "expected"), VALID)
def test_valid_iso_strings(text: str, expected: int) -> None:
    assert parse_iso8601(text) == expected
    assert type(parse_iso8601(text)) is int
    assert iso_to_unix_seconds(text) == expected
    assert is_iso_shape(text) is True
    assert convert_timestamps(text) == (expected, 0)
    assert convert_timestamps(text, date_type=True) == (f"$D_{expected}", 0)
    assert event_time_to_unix_seconds(text) == expected


# --------------------------------------------------------------------------------------------
# Right shape, not a real instant -> unchanged + warning
# --------------------------------------------------------------------------------------------

NOT_AN_INSTANT: list[str] = [
    "2023-02-30",
    "2023-02-29",
    "1900-02-29",
    "2100-02-29",
    "2023-13-01",
    "2023-00-10",
    "2023-04-31",
    "2023-01-00",
    "2023-01-32",
    "0000-01-01",
    "2023-02-30T10:00:00Z",
    "2023-03-28T24:00:00Z",
    "2023-03-28T24:00",
    "2023-03-28T24:00:00",
    "2023-03-28T25:00:00Z",
    "2023-03-28T23:60:00Z",
    "2023-03-28T23:59:60Z",
    "2016-12-31T23:59:60Z",
    "2023-03-28T23:59:99.5Z",
    "2023-03-28T10:00:00+24:00",
    "2023-03-28T10:00:00-2400",
    "2023-03-28T10:00:00+05:60",
    "2023-03-28T10:00:00+99:99",
]


@pytest.mark.parametrize("text", NOT_AN_INSTANT)
def test_right_shape_not_an_instant(text: str) -> None:
    assert parse_iso8601(text) is IsoRejection.NOT_AN_INSTANT
    assert iso_to_unix_seconds(text) is None
    assert is_iso_shape(text) is True
    assert convert_timestamps(text) == (text, 1)
    assert convert_timestamps(text, date_type=True) == (text, 1)
    assert event_time_to_unix_seconds(text) is None


# --------------------------------------------------------------------------------------------
# Not ISO-8601 extended -> unchanged, no warning
# --------------------------------------------------------------------------------------------

NOT_ISO: list[str] = [
    "+14155550100",
    "2006",
    "20230328",
    "2023-W12-1",
    "2023-W12",
    "2023-087",
    "12:30:00",
    "T12:30:00",
    "v1.2.3",
    "1.2.3",
    "$D_123",
    "$D_1136225047",
    "1700000000",
    "1700000000123",
    "",
    "2023",
    "2023-03",
    "2023/03/28",
    "28-03-2023",
    "2023-3-28",
    "2023-03-8",
    "123e4567-e89b-12d3-a456-426614174000",
    # separators and designators must be upper-case T/Z
    "2023-03-28t10:00:00Z",
    "2023-03-28 10:00:00",
    "2023-03-28 10:00:00Z",
    "2023-03-28T10:00:00z",
    "2023-03-28T10:00:00 Z",
    # fraction rules
    "2023-03-28T10:00:00.1234567890Z",
    "2023-03-28T10:00:00.Z",
    "2023-03-28T10:00:00.",
    "2023-03-28T10:00.5",
    # offset rules
    "2023-03-28T10:00:00+05",
    "2023-03-28T10:00:00+5:30",
    "2023-03-28T10:00:00+05:30:00",
    "2023-03-28T10:00:00\u221205:00",  # U+2212 MINUS SIGN
    "2023-03-28Z",
    "2023-03-28+05:00",
    # incomplete / basic / mixed forms
    "2023-03-28T",
    "2023-03-28T10",
    "2023-03-28T1:00",
    "2023-03-28T10:0",
    "2023-03-28T10:00:0",
    "20230328T100000Z",
    "2023-03-28T100000Z",
    "2023-03-28T10:00:00ZZ",
    # expanded / signed years
    "+002023-03-28",
    "-2023-03-28",
    "12023-03-28",
    # whitespace is not trimmed
    " 2023-03-28",
    "2023-03-28 ",
    "2023-03-28\n",
    # only ASCII digits
    "\u0662\u0660\u0662\u0663-\u0660\u0663-\u0662\u0668",  # Arabic-Indic 2023-03-28
    "\uff12\uff10\uff12\uff13-\uff10\uff13-\uff12\uff18",  # fullwidth 2023-03-28
    "2023-03-28T10:00:00Z but more text",
]


@pytest.mark.parametrize("text", NOT_ISO)
def test_not_iso_left_unchanged(text: str) -> None:
    assert parse_iso8601(text) is IsoRejection.NOT_ISO
    assert iso_to_unix_seconds(text) is None
    assert is_iso_shape(text) is False
    for date_type in (False, True):
        out, invalid = convert_timestamps(text, date_type=date_type)
        assert out is text
        assert invalid == 0
    assert event_time_to_unix_seconds(text) is None


@pytest.mark.parametrize("value", [None, 0, 1136225047, 1.5, True, b"2023-03-28", ["x"], {}])
def test_parse_iso8601_never_raises_for_non_strings(value: object) -> None:
    assert parse_iso8601(value) is IsoRejection.NOT_ISO  # type: ignore[arg-type]
    assert iso_to_unix_seconds(value) is None  # type: ignore[arg-type]
    assert is_iso_shape(value) is False  # type: ignore[arg-type]


# --------------------------------------------------------------------------------------------
# The walk
# --------------------------------------------------------------------------------------------


def _record() -> dict[str, object]:
    return {
        "phone": "+14155550100",
        "customer_id": 1700000000,
        "customer_id_str": "1700000000",
        "signup": "2006-01-02T18:04:07Z",
        "birthday": "1990-05-17",
        "broken": "2023-02-30",
        "app_version": "v1.2.3",
        "flag": True,
        "score": 1.5,
        "nothing": None,
        "already": "$D_123",
        "address": {
            "moved_in": "2021-03-10T11:59:22.080Z",
            "zip": "20230328",
            "history": [
                "1969-12-31T23:59:59.5Z",
                "2023-W12-1",
                {"at": "2000-01-01T05:30:00+0530", "bad": "2023-03-28T24:00:00Z"},
                ["1970-01-01", "12:30:00", 2006],
            ],
        },
        "tags": ("2000-01-01", "2006"),
    }


def test_walk_nested_exact_output() -> None:
    out, invalid = convert_timestamps(_record())
    assert invalid == 2
    assert out == {
        "phone": "+14155550100",
        "customer_id": 1700000000,
        "customer_id_str": "1700000000",
        "signup": 1136225047,
        "birthday": 642902400,
        "broken": "2023-02-30",
        "app_version": "v1.2.3",
        "flag": True,
        "score": 1.5,
        "nothing": None,
        "already": "$D_123",
        "address": {
            "moved_in": 1615377562,
            "zip": "20230328",
            "history": [
                -1,
                "2023-W12-1",
                {"at": Y2K, "bad": "2023-03-28T24:00:00Z"},
                [0, "12:30:00", 2006],
            ],
        },
        "tags": (Y2K, "2006"),
    }
    assert list(out) == list(_record())  # key order kept


def test_walk_nested_date_type() -> None:
    out, invalid = convert_timestamps(_record(), date_type=True)
    assert invalid == 2
    assert out == {
        "phone": "+14155550100",
        "customer_id": 1700000000,
        "customer_id_str": "1700000000",
        "signup": "$D_1136225047",
        "birthday": "$D_642902400",
        "broken": "2023-02-30",
        "app_version": "v1.2.3",
        "flag": True,
        "score": 1.5,
        "nothing": None,
        "already": "$D_123",
        "address": {
            "moved_in": "$D_1615377562",
            "zip": "20230328",
            "history": [
                "$D_-1",
                "2023-W12-1",
                {"at": "$D_946684800", "bad": "2023-03-28T24:00:00Z"},
                ["$D_0", "12:30:00", 2006],
            ],
        },
        "tags": ("$D_946684800", "2006"),
    }


def test_walk_does_not_mutate_input_and_returns_new_containers() -> None:
    original = _record()
    snapshot = copy.deepcopy(original)
    out, _ = convert_timestamps(original, date_type=True)
    assert original == snapshot
    assert isinstance(out, dict)
    assert out is not original
    assert out["address"] is not original["address"]
    assert out["address"]["history"] is not original["address"]["history"]  # type: ignore[index]
    # A container without anything to convert is still a new container.
    plain = {"a": [1, 2], "b": {"c": "x"}}
    plain_out, invalid = convert_timestamps(plain)
    assert plain_out == plain and invalid == 0
    assert plain_out is not plain
    assert plain_out["a"] is not plain["a"]


def test_walk_keys_are_never_converted() -> None:
    out, _ = convert_timestamps({"2006-01-02T18:04:07Z": "2006-01-02T18:04:07Z"})
    assert out == {"2006-01-02T18:04:07Z": 1136225047}


def test_walk_counts_each_invalid_value() -> None:
    value = {"a": ["2023-02-30", "2023-02-30"], "b": {"c": "2023-03-28T23:59:60Z"}, "d": "2023-13-01"}
    assert convert_timestamps(value) == (value, 4)


def test_walk_iso_strings_switch_off_keeps_strings_converts_logical_types() -> None:
    value = {
        "s": "2006-01-02T18:04:07Z",
        "bad": "2023-02-30",
        "when": dt.datetime(2006, 1, 2, 18, 4, 7, tzinfo=UTC),
        "day": dt.date(1990, 5, 17),
        "price": decimal.Decimal("12.50"),
        "id": uuid.UUID("123e4567-e89b-12d3-a456-426614174000"),
    }
    out, invalid = convert_timestamps(value, iso_strings=False)
    assert invalid == 0
    assert out == {
        "s": "2006-01-02T18:04:07Z",
        "bad": "2023-02-30",
        "when": 1136225047,
        "day": 642902400,
        "price": 12.5,
        "id": "123e4567-e89b-12d3-a456-426614174000",
    }
    out_d, _ = convert_timestamps(value, iso_strings=False, date_type=True)
    assert out_d["when"] == "$D_1136225047"  # type: ignore[index]
    assert out_d["day"] == "$D_642902400"  # type: ignore[index]


# --------------------------------------------------------------------------------------------
# Avro logical types in attributes
# --------------------------------------------------------------------------------------------

PLUS_0530 = dt.timezone(dt.timedelta(hours=5, minutes=30))
MINUS_0800 = dt.timezone(dt.timedelta(hours=-8))

LOGICAL: list[tuple[object, object, object]] = [
    # (value, converted, converted with date_type)
    (dt.datetime(2006, 1, 2, 18, 4, 7, tzinfo=UTC), 1136225047, "$D_1136225047"),
    (dt.datetime(2006, 1, 2, 18, 4, 7), 1136225047, "$D_1136225047"),  # naive = UTC
    (dt.datetime(2021, 3, 10, 11, 59, 22, 80000, tzinfo=UTC), 1615377562, "$D_1615377562"),
    (dt.datetime(2000, 1, 1, 5, 30, tzinfo=PLUS_0530), Y2K, "$D_946684800"),
    (dt.datetime(1999, 12, 31, 16, 0, tzinfo=MINUS_0800), Y2K, "$D_946684800"),
    (dt.datetime(1969, 12, 31, 23, 59, 59, 500000, tzinfo=UTC), -1, "$D_-1"),
    (dt.datetime(1969, 12, 31, 23, 59, 59, 999999), -1, "$D_-1"),
    (dt.datetime(1970, 1, 1, 0, 0, 0, 999999, tzinfo=UTC), 0, "$D_0"),
    (dt.date(1990, 5, 17), 642902400, "$D_642902400"),
    (dt.date(1969, 12, 31), -86400, "$D_-86400"),
    (dt.date(2024, 2, 29), 1709164800, "$D_1709164800"),
    (decimal.Decimal("12.50"), 12.5, 12.5),
    (decimal.Decimal("12.00"), 12, 12),
    (decimal.Decimal("-3"), -3, -3),
    (decimal.Decimal("0.1"), 0.1, 0.1),
    (decimal.Decimal("1E+30"), 1e30, 1e30),
    (decimal.Decimal("9223372036854775807"), 9223372036854775807, 9223372036854775807),
    (decimal.Decimal("9223372036854775808"), 9.223372036854775808e18, 9.223372036854775808e18),
    (decimal.Decimal("-9223372036854775808"), -9223372036854775808, -9223372036854775808),
    (decimal.Decimal("1E+999999"), "1E+999999", "1E+999999"),
    (decimal.Decimal("NaN"), "NaN", "NaN"),
    (
        uuid.UUID("123E4567-E89B-12D3-A456-426614174000"),
        "123e4567-e89b-12d3-a456-426614174000",
        "123e4567-e89b-12d3-a456-426614174000",
    ),
]


@pytest.mark.parametrize(("value", "plain", "as_date_type"), LOGICAL)
def test_logical_types(value: object, plain: object, as_date_type: object) -> None:
    out, invalid = convert_timestamps({"k": value})
    assert invalid == 0
    assert out == {"k": plain}
    assert type(out["k"]) is type(plain)
    out_d, _ = convert_timestamps([value], date_type=True)
    assert out_d == [as_date_type]
    assert type(out_d[0]) is type(as_date_type)


@pytest.mark.parametrize("value", [dt.time(12, 30), b"\x00\x01", 1700000000, 1.5, True, None, "x"])
def test_other_values_unchanged(value: object) -> None:
    out, invalid = convert_timestamps({"k": value})
    assert invalid == 0
    assert out["k"] is value  # type: ignore[index]


def test_clevertap_date_helper() -> None:
    assert clevertap_date(1136225047) == "$D_1136225047"
    assert clevertap_date(-1) == "$D_-1"


# --------------------------------------------------------------------------------------------
# Event time
# --------------------------------------------------------------------------------------------

EVENT_TIMES: list[tuple[object, int | None]] = [
    # seconds
    (1700000000, 1700000000),
    (1700000000.9, 1700000000),
    (0, 0),
    (1, 1),
    (-1, -1),
    (-1.5, -2),
    (-1500, -1500),
    (99_999_999_999, 99_999_999_999),  # largest seconds value
    # milliseconds
    (100_000_000_000, 100_000_000),  # smallest millisecond value
    (1700000000123, 1700000000),
    (1700000000999, 1700000000),
    (1700000000123.0, 1700000000),
    (1.7e12, 1700000000),
    (-1700000000123, -1700000001),
    (99_999_999_999_999, 99_999_999_999),
    # microseconds
    (100_000_000_000_000, 100_000_000),
    (1700000000123456, 1700000000),
    (1.7e15, 1700000000),
    (99_999_999_999_999_999, 99_999_999_999),
    # nanoseconds
    (100_000_000_000_000_000, 100_000_000),
    (1700000000123456789, 1700000000),
    (1.7e18, 1700000000),
    (-1700000000123456789, -1700000001),
    # just below a whole second: the largest float below 100000001000 ms is 100000000.99999998 s
    (100000000999.99998, 100000000),
    (-100000000999.99998, -100000001),
    # Decimal epochs
    (decimal.Decimal("1700000000123"), 1700000000),
    (decimal.Decimal("1700000000.5"), 1700000000),
    (decimal.Decimal("-0.5"), -1),
    # ISO strings, same strict rules
    ("2006-01-02T18:04:07Z", 1136225047),
    ("1990-05-17", 642902400),
    ("2021-03-10T11:59:22.080Z", 1615377562),
    ("1969-12-31T23:59:59.5Z", -1),
    # datetimes and dates
    (dt.datetime(2006, 1, 2, 18, 4, 7, tzinfo=UTC), 1136225047),
    (dt.datetime(2006, 1, 2, 18, 4, 7, 999999, tzinfo=UTC), 1136225047),
    (dt.datetime(2006, 1, 2, 18, 4, 7), 1136225047),
    (dt.datetime(2006, 1, 2, 11, 4, 7, tzinfo=dt.timezone(dt.timedelta(hours=-7))), 1136225047),
    (dt.datetime(1969, 12, 31, 23, 59, 59, 1, tzinfo=UTC), -1),
    (dt.date(1990, 5, 17), 642902400),
    # unusable
    (None, None),
    (True, None),
    (False, None),
    (float("nan"), None),
    (float("inf"), None),
    (float("-inf"), None),
    (decimal.Decimal("NaN"), None),
    (decimal.Decimal("Infinity"), None),
    ("1700000000", None),
    ("1700000000123", None),
    ("2023-02-30", None),
    ("2023-03-28 10:00:00", None),
    ("", None),
    ("$D_1136225047", None),
    (dt.time(12, 30), None),
    ([1700000000], None),
    ({"ts": 1700000000}, None),
    (b"1700000000", None),
]


@pytest.mark.parametrize(("value", "expected"), EVENT_TIMES)
def test_event_time(value: object, expected: int | None) -> None:
    result = event_time_to_unix_seconds(value)
    assert result == expected
    if expected is not None:
        assert type(result) is int


def test_event_time_thresholds_are_the_documented_ones() -> None:
    assert EPOCH_MILLIS_MIN == 100_000_000_000
    assert EPOCH_MICROS_MIN == 100_000_000_000_000
    assert EPOCH_NANOS_MIN == 100_000_000_000_000_000
    # each boundary is 1973-03-03T09:46:40Z in the larger unit
    assert dt.datetime(1973, 3, 3, 9, 46, 40, tzinfo=UTC) - dt.datetime(1970, 1, 1, tzinfo=UTC) == (
        dt.timedelta(seconds=100_000_000)
    )


def test_datetime_to_unix_seconds_sub_minute_offset() -> None:
    tz = dt.timezone(dt.timedelta(seconds=1, microseconds=500000))
    # 00:00:00 local at +00:00:01.5 is 1969-12-31T23:59:58.5Z -> floor -2
    assert datetime_to_unix_seconds(dt.datetime(1970, 1, 1, tzinfo=tz)) == -2


# --------------------------------------------------------------------------------------------
# Independent cross-check against the standard library on random well-formed strings
# --------------------------------------------------------------------------------------------


def test_random_strings_agree_with_fromisoformat() -> None:
    # datetime.fromisoformat is not used by the code under test; here it serves as an oracle for
    # strings we generate in the strict shape (fraction limited to 6 digits, which it supports).
    rng = random.Random(20240229)
    epoch = dt.datetime(1970, 1, 1, tzinfo=UTC)
    for _ in range(2000):
        d = dt.date.fromordinal(rng.randint(dt.date(1, 1, 2).toordinal(), dt.date(9999, 12, 30).toordinal()))
        h, mi, s = rng.randint(0, 23), rng.randint(0, 59), rng.randint(0, 59)
        frac = "".join(rng.choice("0123456789") for _ in range(rng.randint(0, 6)))
        oh, om = rng.randint(0, 23), rng.randint(0, 59)
        sign = rng.choice("+-")
        offset = rng.choice(["", "Z", f"{sign}{oh:02d}:{om:02d}", f"{sign}{oh:02d}{om:02d}"])
        text = f"{d.isoformat()}T{h:02d}:{mi:02d}:{s:02d}" + (f".{frac}" if frac else "") + offset
        parsed = dt.datetime.fromisoformat(text)
        if parsed.tzinfo is None:
            parsed = parsed.replace(tzinfo=UTC)
        expected = (parsed - epoch) // dt.timedelta(seconds=1)
        assert parse_iso8601(text) == expected, text


# --------------------------------------------------------------------------------------------
# Host time zone must not matter
# --------------------------------------------------------------------------------------------


@pytest.fixture
def los_angeles_tz() -> Iterator[None]:
    old = os.environ.get("TZ")
    os.environ["TZ"] = "America/Los_Angeles"
    time.tzset()
    try:
        assert time.localtime(0).tm_hour == 16  # really in effect: 1969-12-31T16:00 PST
        yield
    finally:
        if old is None:
            del os.environ["TZ"]
        else:
            os.environ["TZ"] = old
        time.tzset()


KEY_EXAMPLES: list[tuple[object, int]] = [
    ("2006-01-02T18:04:07Z", 1136225047),
    ("1990-05-17", 642902400),
    ("2021-03-10T11:59:22.080Z", 1615377562),
    ("2006-01-02T18:04:07", 1136225047),
    ("1969-12-31T23:59:59.5Z", -1),
    ("2023-03-12T02:30:00", 1678588200),  # nonexistent local time in Los Angeles (DST gap)
    ("2023-11-05T01:30:00", 1699147800),  # ambiguous local time in Los Angeles (DST overlap)
    (dt.datetime(2006, 1, 2, 18, 4, 7), 1136225047),
    (dt.date(1990, 5, 17), 642902400),
    (1700000000123, 1700000000),
]


@pytest.mark.usefixtures("los_angeles_tz")
@pytest.mark.parametrize(("value", "expected"), KEY_EXAMPLES)
def test_results_independent_of_host_time_zone(value: object, expected: int) -> None:
    assert event_time_to_unix_seconds(value) == expected
    out, invalid = convert_timestamps({"k": value, "phone": "+14155550100", "year": "2006"})
    assert invalid == 0
    assert out == {
        "k": expected if not isinstance(value, int) else value,
        "phone": "+14155550100",
        "year": "2006",
    }
