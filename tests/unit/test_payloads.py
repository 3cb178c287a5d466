"""Table-driven tests for processor.clevertap.payloads.

Expected bodies are written out by hand as compact JSON (orjson emits no spaces and raw UTF-8). Response
bodies are shaped like /work/shared/clevertap-api.md shows them; note the real error text has no space before
"Skipped": ``"Email is not valid.Skipped record number : 2"``.
"""

from __future__ import annotations

from typing import Any

import pytest

from processor.clevertap.payloads import (
    MAX_DELETE_IDS,
    MAX_UPLOAD_RECORDS,
    RETRIABLE_RECORD_CODES,
    RecordFailure,
    UploadOutcome,
    delete_body,
    error_text,
    parse_upload_response,
    retry_after_seconds,
    upload_body,
)

EMAIL_515 = "Profile data is incorrect. Email is not valid.Skipped record number : 2"


def test_limits_are_the_documented_ones() -> None:
    assert MAX_UPLOAD_RECORDS == 1000
    assert MAX_DELETE_IDS == 100
    assert frozenset({555}) == RETRIABLE_RECORD_CODES


# ------------------------------------------------------------------------------------------------
# upload_body
# ------------------------------------------------------------------------------------------------

UPLOAD_BODIES: list[tuple[str, list[dict[str, Any]], bytes]] = [
    (
        "profile",
        [{"type": "profile", "identity": "u-1", "ts": 1700000000, "profileData": {"Name": "Ada"}}],
        b'{"d":[{"type":"profile","identity":"u-1","ts":1700000000,"profileData":{"Name":"Ada"}}]}',
    ),
    (
        "event",
        [
            {
                "type": "event",
                "identity": "u-1",
                "ts": 1700000000,
                "evtName": "Order Placed",
                "evtData": {"amount": 12.5, "currency": "EUR"},
            }
        ],
        b'{"d":[{"type":"event","identity":"u-1","ts":1700000000,"evtName":"Order Placed",'
        b'"evtData":{"amount":12.5,"currency":"EUR"}}]}',
    ),
    (
        "mixed profile and event",
        [
            {"type": "profile", "identity": "a", "profileData": {}},
            {"type": "event", "identity": "b", "evtName": "X", "evtData": {}},
        ],
        b'{"d":[{"type":"profile","identity":"a","profileData":{}},'
        b'{"type":"event","identity":"b","evtName":"X","evtData":{}}]}',
    ),
    (
        "json scalars",
        [{"x": 0.1, "t": True, "f": False, "n": None, "i": -3, "big": 2**53}],
        b'{"d":[{"x":0.1,"t":true,"f":false,"n":null,"i":-3,"big":9007199254740992}]}',
    ),
    ("utf-8 raw", [{"Name": "Zoë"}], '{"d":[{"Name":"Zoë"}]}'.encode()),
    ("escapes", [{"q": 'a"b\\c\n'}], b'{"d":[{"q":"a\\"b\\\\c\\n"}]}'),
    ("date type string", [{"DOB": "$D_642902400"}], b'{"d":[{"DOB":"$D_642902400"}]}'),
    ("nested", [{"Items": [{"sku": "A", "qty": 2}]}], b'{"d":[{"Items":[{"sku":"A","qty":2}]}]}'),
]


@pytest.mark.parametrize(("label", "records", "body"), UPLOAD_BODIES, ids=[r[0] for r in UPLOAD_BODIES])
def test_upload_body_exact_bytes(label: str, records: list[dict[str, Any]], body: bytes) -> None:
    assert upload_body(records) == body


def test_upload_body_accepts_a_tuple() -> None:
    assert upload_body(({"a": 1},)) == b'{"d":[{"a":1}]}'


def test_upload_body_at_the_limit() -> None:
    records = [{"i": i} for i in range(1000)]
    expected = b'{"d":[' + b",".join(b'{"i":' + str(i).encode() + b"}" for i in range(1000)) + b"]}"
    assert upload_body(records) == expected


@pytest.mark.parametrize(("count", "message"), [(0, "got 0"), (1001, "got 1001"), (5000, "got 5000")])
def test_upload_body_out_of_limits(count: int, message: str) -> None:
    with pytest.raises(ValueError) as info:
        upload_body([{"i": i} for i in range(count)])
    assert str(info.value) == f"an upload carries 1 to 1000 records, {message}"


# ------------------------------------------------------------------------------------------------
# delete_body
# ------------------------------------------------------------------------------------------------

DELETE_BODIES: list[tuple[str, list[str], bytes]] = [
    ("identity", ["u-1"], b'{"identity":["u-1"]}'),
    ("identity", ["u-1", "u-2"], b'{"identity":["u-1","u-2"]}'),
    ("guid", ["__g1"], b'{"guid":["__g1"]}'),
    ("guid", ["a", "b", "c"], b'{"guid":["a","b","c"]}'),
    ("identity", ["zoë@example.com"], '{"identity":["zoë@example.com"]}'.encode()),
]


@pytest.mark.parametrize(("key", "values", "body"), DELETE_BODIES)
def test_delete_body_exact_bytes(key: str, values: list[str], body: bytes) -> None:
    assert delete_body(key, values) == body


def test_delete_body_at_the_limit() -> None:
    values = [f"u{i}" for i in range(100)]
    expected = b'{"identity":[' + b",".join(b'"u' + str(i).encode() + b'"' for i in range(100)) + b"]}"
    assert delete_body("identity", values) == expected


@pytest.mark.parametrize(
    ("key", "count", "message"),
    [
        ("identity", 0, "a delete carries 1 to 100 ids, got 0"),
        ("identity", 101, "a delete carries 1 to 100 ids, got 101"),
        ("guid", 101, "a delete carries 1 to 100 ids, got 101"),
        ("objectId", 1, "profiles are deleted by identity or guid, not 'objectId'"),
        ("Identity", 1, "profiles are deleted by identity or guid, not 'Identity'"),
        ("", 1, "profiles are deleted by identity or guid, not ''"),
        ("email", 101, "profiles are deleted by identity or guid, not 'email'"),  # the key is checked first
    ],
)
def test_delete_body_errors(key: str, count: int, message: str) -> None:
    with pytest.raises(ValueError) as info:
        delete_body(key, [f"u{i}" for i in range(count)])
    assert str(info.value) == message


# ------------------------------------------------------------------------------------------------
# parse_upload_response
# ------------------------------------------------------------------------------------------------

PARSE_CASES: list[tuple[str, bytes, int, UploadOutcome]] = [
    (
        "success",
        b'{"status": "success", "processed": 2, "unprocessed": []}',
        2,
        UploadOutcome("success", 2, [], False),
    ),
    (
        "success without unprocessed",
        b'{"status":"success","processed":1}',
        1,
        UploadOutcome("success", 1, [], False),
    ),
    (
        "partial as documented",
        b'{"status": "partial", "processed": 1, "unprocessed": [{"status": "fail", "code": 515, '
        b'"error": "Profile data is incorrect. Email is not valid.Skipped record number : 2", '
        b'"record": {"type": "profile", "identity": "u-2", "profileData": {"Email": "nope"}}}]}',
        2,
        UploadOutcome("partial", 1, [RecordFailure(1, 515, EMAIL_515)], False),
    ),
    (
        "record number 1 -> index 0",
        b'{"status":"partial","processed":2,"unprocessed":[{"status":"fail","code":516,'
        b'"error":"Phone number is invalid.Skipped record number : 1"}]}',
        3,
        UploadOutcome("partial", 2, [RecordFailure(0, 516, "Phone number is invalid.Skipped record number : 1")]),
    ),
    (
        "last record",
        b'{"status":"partial","processed":999,"unprocessed":[{"code":509,'
        b'"error":"Event name is mandatory.Skipped record number : 1000"}]}',
        1000,
        UploadOutcome(
            "partial", 999, [RecordFailure(999, 509, "Event name is mandatory.Skipped record number : 1000")]
        ),
    ),
    (
        "fail, one entry per record, listed out of order",
        b'{"status":"fail","processed":0,"unprocessed":['
        b'{"status":"fail","code":509,"error":"Event name is mandatory.Skipped record number : 2"},'
        b'{"status":"fail","code":523,"error":"Identity not set.Skipped record number : 1"}]}',
        2,
        UploadOutcome(
            "fail",
            0,
            [
                RecordFailure(0, 523, "Identity not set.Skipped record number : 1"),
                RecordFailure(1, 509, "Event name is mandatory.Skipped record number : 2"),
            ],
            False,
        ),
    ),
    (
        "code given as a string",
        b'{"status":"partial","processed":1,"unprocessed":[{"code":"515","error":"' + EMAIL_515.encode() + b'"}]}',
        2,
        UploadOutcome("partial", 1, [RecordFailure(1, 515, EMAIL_515)]),
    ),
    (
        "code missing",
        b'{"status":"partial","processed":1,"unprocessed":[{"error":"' + EMAIL_515.encode() + b'"}]}',
        2,
        UploadOutcome("partial", 1, [RecordFailure(1, None, EMAIL_515)]),
    ),
    (
        "code not a number",
        b'{"status":"partial","processed":1,"unprocessed":[{"code":"E515","error":"' + EMAIL_515.encode() + b'"}]}',
        2,
        UploadOutcome("partial", 1, [RecordFailure(1, None, EMAIL_515)]),
    ),
    (
        "code is a boolean",
        b'{"status":"partial","processed":1,"unprocessed":[{"code":true,"error":"' + EMAIL_515.encode() + b'"}]}',
        2,
        UploadOutcome("partial", 1, [RecordFailure(1, None, EMAIL_515)]),
    ),
    (
        "555 miscellaneous",
        b'{"status":"partial","processed":2,"unprocessed":[{"code":555,'
        b'"error":"Miscellaneous error.Skipped record number : 3"}]}',
        3,
        UploadOutcome("partial", 2, [RecordFailure(2, 555, "Miscellaneous error.Skipped record number : 3")]),
    ),
    (
        "no space before the colon",
        b'{"status":"partial","processed":1,"unprocessed":[{"code":515,"error":"Bad.Skipped record number: 2"}]}',
        2,
        UploadOutcome("partial", 1, [RecordFailure(1, 515, "Bad.Skipped record number: 2")]),
    ),
    (
        "trailing whitespace after the number",
        b'{"status":"partial","processed":1,"unprocessed":[{"code":515,"error":"Bad.Skipped record number : 2 "}]}',
        2,
        UploadOutcome("partial", 1, [RecordFailure(1, 515, "Bad.Skipped record number : 2 ")]),
    ),
    (
        "processed missing: sent minus matched failures",
        b'{"status":"partial","unprocessed":[{"code":515,"error":"' + EMAIL_515.encode() + b'"}]}',
        5,
        UploadOutcome("partial", 4, [RecordFailure(1, 515, EMAIL_515)]),
    ),
    (
        "processed is a boolean: derived",
        b'{"status":"success","processed":true,"unprocessed":[]}',
        3,
        UploadOutcome("success", 3, []),
    ),
    (
        "unprocessed null",
        b'{"status":"success","processed":3,"unprocessed":null}',
        3,
        UploadOutcome("success", 3, []),
    ),
    # ----- ambiguous: the caller must split and resend rather than guess
    (
        "duplicate record numbers",
        b'{"status":"partial","processed":0,"unprocessed":['
        b'{"code":515,"error":"A.Skipped record number : 1"},{"code":516,"error":"B.Skipped record number : 1"}]}',
        2,
        UploadOutcome("partial", 0, [RecordFailure(0, 515, "A.Skipped record number : 1")], True),
    ),
    (
        "record number beyond what was sent",
        b'{"status":"partial","processed":2,"unprocessed":[{"code":515,"error":"A.Skipped record number : 3"}]}',
        2,
        UploadOutcome("partial", 2, [], True),
    ),
    (
        "record number 0",
        b'{"status":"partial","processed":1,"unprocessed":[{"code":515,"error":"A.Skipped record number : 0"}]}',
        2,
        UploadOutcome("partial", 1, [], True),
    ),
    (
        "no record number in the error",
        b'{"status":"partial","processed":1,"unprocessed":[{"code":515,"error":"Email is not valid"}]}',
        2,
        UploadOutcome("partial", 1, [], True),
    ),
    (
        "record number not at the end",
        b'{"status":"partial","processed":1,"unprocessed":[{"code":515,"error":"Skipped record number : 2 (email)"}]}',
        2,
        UploadOutcome("partial", 1, [], True),
    ),
    (
        "entry is not an object",
        b'{"status":"partial","processed":1,"unprocessed":["Skipped record number : 2"]}',
        2,
        UploadOutcome("partial", 1, [], True),
    ),
    (
        "one matched, one unmatched",
        b'{"status":"partial","processed":1,"unprocessed":['
        b'{"code":515,"error":"A.Skipped record number : 1"},{"code":555,"error":"no number"}]}',
        3,
        UploadOutcome("partial", 1, [RecordFailure(0, 515, "A.Skipped record number : 1")], True),
    ),
    (
        "fail with empty unprocessed",
        b'{"status":"fail","processed":0,"unprocessed":[]}',
        3,
        UploadOutcome("fail", 0, [], True),
    ),
    (
        "fail with an error and no unprocessed",
        b'{"status":"fail","error":"Something went wrong","code":500,"processed":0}',
        3,
        UploadOutcome("fail", 0, [], True),
    ),
]


@pytest.mark.parametrize(("label", "body", "sent", "expected"), PARSE_CASES, ids=[c[0] for c in PARSE_CASES])
def test_parse_upload_response(label: str, body: bytes, sent: int, expected: UploadOutcome) -> None:
    assert parse_upload_response(body, sent) == expected


def test_unaccounted_record_is_ambiguous() -> None:
    body = (
        b'{"status":"fail","processed":0,"unprocessed":['
        b'{"status":"fail","code":523,"error":"Identity not set.Skipped record number : 1"}]}'
    )
    outcome = parse_upload_response(body, 2)
    assert outcome.ambiguous is True


@pytest.mark.parametrize(
    ("code", "retriable"),
    [(555, True), (515, False), (509, False), (525, False), (554, False), (556, False), (None, False)],
)
def test_record_failure_retriable(code: int | None, retriable: bool) -> None:
    assert RecordFailure(0, code, "x").retriable is retriable


@pytest.mark.parametrize(
    ("body", "message_start"),
    [
        (b"<html>502 Bad Gateway</html>", "upload answer is not JSON: "),
        (b"", "upload answer is not JSON: "),
        (b'{"status":', "upload answer is not JSON: "),
        (b"\xff\xfe", "upload answer is not JSON: "),
        (b"[]", "upload answer has no status: "),
        (b'"success"', "upload answer has no status: "),
        (b'{"processed":1}', "upload answer has no status: "),
        (b'{"status":1}', "upload answer has no status: "),
        (b'{"status":null}', "upload answer has no status: "),
        (b'{"status":"success","unprocessed":"x"}', "upload answer: unprocessed is not a list"),
        (b'{"status":"partial","unprocessed":{"a":1}}', "upload answer: unprocessed is not a list"),
    ],
)
def test_parse_upload_response_malformed(body: bytes, message_start: str) -> None:
    with pytest.raises(ValueError) as info:
        parse_upload_response(body, 1)
    assert str(info.value).startswith(message_start)


def test_malformed_message_quotes_at_most_200_bytes() -> None:
    body = b"x" * 500
    with pytest.raises(ValueError) as info:
        parse_upload_response(body, 1)
    assert str(info.value) == "upload answer is not JSON: " + repr(b"x" * 200)


# ------------------------------------------------------------------------------------------------
# error_text
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "text"),
    [
        (b'{"status":"fail","error":"Account ID is not valid","code":401}', "Account ID is not valid"),
        (b'{"status":"fail","error":"Too many concurrent requests","code":429}', "Too many concurrent requests"),
        (b'{"error":42}', "42"),
        (b'{"status":"fail"}', '{"status":"fail"}'),
        (b"[1,2]", "[1,2]"),
        (b"<html>Bad Gateway</html>", "<html>Bad Gateway</html>"),
        (b"", ""),
        (b"\xff\xfe", "\ufffd\ufffd"),
        (b"x" * 500, "x" * 300),
        (b'{"error":"' + b"e" * 400 + b'"}', "e" * 300),
    ],
)
def test_error_text(body: bytes, text: str) -> None:
    assert error_text(body) == text


# ------------------------------------------------------------------------------------------------
# retry_after_seconds
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        ("2", 2.0),
        ("0.5", 0.5),
        ("0", 0.0),
        ("120", 120.0),
        (" 3 ", 3.0),
        ("-1", None),
        ("-0.5", None),
        ("Wed, 21 Oct 2015 07:28:00 GMT", None),
        (None, None),
        ("", None),
        ("abc", None),
        ("nan", None),
        pytest.param(
            "inf",
            None,
        ),
    ],
)
def test_retry_after_seconds(value: str | None, seconds: float | None) -> None:
    result = retry_after_seconds(value)
    if seconds is None:
        assert result is None
    else:
        assert type(result) is float
        assert result == seconds
