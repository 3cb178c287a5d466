"""Table-driven tests for processor.decode.

Payloads are written here with fastavro directly (or as hand-assembled bytes), never with the code under
test. Avro encoding facts used for hand-written bytes: a string is its zig-zag varint length then UTF-8
bytes ("m" -> 02 6d), an enum is the zig-zag index (identify=0 -> 00, track=1 -> 02), a union is the
zig-zag branch index then the value (null -> 00), an empty map is the block count 0 -> 00, a long is a
zig-zag varint (5 -> 0a).
"""

from __future__ import annotations

import datetime as dt
import io
import json
from pathlib import Path
from typing import Any

import fastavro
import pytest

from processor.decode import (
    VALUE_SCHEMA_ID_HEADER,
    PlainAvroDecoder,
    RegistryDecoder,
    SchemaRef,
    load_schema,
    schema_ref_of,
)
from processor.errors import DecodeError

REPO_ROOT = Path(__file__).resolve().parents[2]
SCHEMA_PATH = REPO_ROOT / "schemas" / "user_event.avsc"
SCHEMA_TEXT = SCHEMA_PATH.read_text(encoding="utf-8")
SCHEMA = fastavro.parse_schema(json.loads(SCHEMA_TEXT))

OPTIONAL_DEFAULTS: dict[str, Any] = {
    "userId": None,
    "anonymousId": None,
    "event": None,
    "name": None,
    "groupId": None,
    "previousId": None,
    "timestamp": None,
    "traits": {},
    "properties": {},
    "context": {},
}

# The smallest record: messageId "m", type identify, seven null unions, three empty maps (13 bytes).
MINIMAL_BYTES = bytes.fromhex("026d" + "00" + "00" * 7 + "000000")
MINIMAL_EVENT = {"messageId": "m", "type": "identify", **OPTIONAL_DEFAULTS}


def full(**fields: Any) -> dict[str, Any]:
    event = {"messageId": "msg-1", "type": "identify", **OPTIONAL_DEFAULTS}
    event.update(fields)
    return event


def avro(event: dict[str, Any], schema: Any = SCHEMA) -> bytes:
    buffer = io.BytesIO()
    fastavro.schemaless_writer(buffer, schema, event)
    return buffer.getvalue()


def framed(schema_id: int, body: bytes) -> bytes:
    return b"\x00" + schema_id.to_bytes(4, "big") + body


def assert_same(actual: Any, expected: Any, path: str = "$") -> None:
    """Equality that also compares types (True == 1 and 1 == 1.0 in Python; not here)."""
    assert type(actual) is type(expected), f"{path}: {type(actual).__name__} != {type(expected).__name__}"
    if isinstance(expected, dict):
        assert set(actual) == set(expected), f"{path}: keys {sorted(actual)} != {sorted(expected)}"
        for key in expected:
            assert_same(actual[key], expected[key], f"{path}.{key}")
    elif isinstance(expected, list):
        assert len(actual) == len(expected), path
        for i, (a, e) in enumerate(zip(actual, expected, strict=True)):
            assert_same(a, e, f"{path}[{i}]")
    else:
        assert actual == expected, f"{path}: {actual!r} != {expected!r}"


@pytest.fixture(scope="module")
def plain() -> PlainAvroDecoder:
    return PlainAvroDecoder(load_schema(SCHEMA_PATH))


# ------------------------------------------------------------------------------------------------
# Plain Avro
# ------------------------------------------------------------------------------------------------


def test_minimal_hand_written_bytes_decode(plain: PlainAvroDecoder) -> None:
    assert_same(plain.decode(MINIMAL_BYTES), MINIMAL_EVENT)


def test_fastavro_writes_the_hand_written_bytes() -> None:
    # Guards the hand-written fixture itself.
    assert avro(MINIMAL_EVENT) == MINIMAL_BYTES


HAND_WRITTEN: list[tuple[str, bytes, dict[str, Any]]] = [
    ("track type", bytes.fromhex("026d" + "02" + "00" * 7 + "000000"), {**MINIMAL_EVENT, "type": "track"}),
    ("group type", bytes.fromhex("026d" + "0a" + "00" * 7 + "000000"), {**MINIMAL_EVENT, "type": "group"}),
    (
        "userId u-1",
        bytes.fromhex("026d" + "00" + "0206" + b"u-1".hex() + "00" * 6 + "000000"),
        {**MINIMAL_EVENT, "userId": "u-1"},
    ),
    (
        "timestamp as ISO string (union branch 1)",
        bytes.fromhex("026d00" + "00" * 6 + "0228" + b"2024-03-01T01:00:00Z".hex() + "000000"),
        {**MINIMAL_EVENT, "timestamp": "2024-03-01T01:00:00Z"},
    ),
    (
        # branch 2 (long, timestamp-millis), value 1000 ms -> zig-zag 2000 -> varint d0 0f
        "timestamp-millis 1000",
        bytes.fromhex("026d00" + "00" * 6 + "04d00f" + "000000"),
        {**MINIMAL_EVENT, "timestamp": dt.datetime(1970, 1, 1, 0, 0, 1, tzinfo=dt.UTC)},
    ),
    (
        # traits: one block of 1 entry (02), key "a" (02 61), branch boolean (02) true (01), end (00)
        "traits {a: true}",
        bytes.fromhex("026d00" + "00" * 7 + "02" + "0261" + "0201" + "00" + "0000"),
        {**MINIMAL_EVENT, "traits": {"a": True}},
    ),
    (
        # branch long (04), 5 -> 0a
        "traits {a: 5}",
        bytes.fromhex("026d00" + "00" * 7 + "02" + "0261" + "040a" + "00" + "0000"),
        {**MINIMAL_EVENT, "traits": {"a": 5}},
    ),
    (
        # branch double (06), 0.1 little-endian IEEE 754 = 9a 99 99 99 99 99 b9 3f
        "traits {a: 0.1}",
        bytes.fromhex("026d00" + "00" * 7 + "02" + "0261" + "06" + "9a9999999999b93f" + "00" + "0000"),
        {**MINIMAL_EVENT, "traits": {"a": 0.1}},
    ),
]


@pytest.mark.parametrize(("label", "data", "expected"), HAND_WRITTEN, ids=[row[0] for row in HAND_WRITTEN])
def test_hand_written_bytes(plain: PlainAvroDecoder, label: str, data: bytes, expected: dict[str, Any]) -> None:
    assert_same(plain.decode(data), expected)


ROUND_TRIP: list[tuple[str, dict[str, Any]]] = [
    ("plain strings", full(userId="u-1", traits={"plan": "gold", "name": "Ada"})),
    ("double 0.1 exact", full(traits={"score": 0.1})),
    ("double 1.0 stays a float", full(traits={"ratio": 1.0})),
    ("doubles", full(properties={"a": -0.5, "b": 1.5e-10, "c": 1e308, "d": 12.5})),
    ("booleans are not ints", full(traits={"t": True, "f": False, "zero": 0, "one": 1})),
    ("longs at the edges", full(traits={"big": 2**62, "min": -(2**63), "max": 2**63 - 1})),
    ("nulls", full(traits={"coupon": None}, properties={"x": None})),
    ("unicode", full(traits={"name": "Zoë 東京 🚀", "": "empty key"})),
    ("empty values", full(traits={"s": "", "l": [], "m": {}})),
    ("list of scalars", full(traits={"flags": [True, False, None, 3, 0.25, "x"]})),
    (
        "list of objects",
        full(
            traits={
                "addresses": [
                    {"city": "Paris", "zip": None, "primary": True},
                    {"city": "Oslo", "lat": 59.91, "floor": 3},
                ]
            }
        ),
    ),
    ("nested objects three deep", full(properties={"a": {"b": {"c": 0.1, "d": None, "e": [1, 2]}}})),
    ("list of lists", full(properties={"grid": [[1, 2], [3.5, None], []]})),
    ("object holding lists of objects", full(context={"page": {"items": [{"sku": "A", "qty": 2}], "n": 1}})),
    (
        "track with everything",
        full(
            type="track",
            userId="u-9",
            anonymousId="anon-9",
            event="Order Completed",
            timestamp="2024-03-03T02:30:00Z",
            properties={"order_id": "o-1", "revenue": 42.5, "currency": "EUR", "coupon": None},
            context={"library": {"name": "analytics.js", "version": "4.1.0"}},
        ),
    ),
    ("page", full(type="page", name="Home", userId="u-2")),
    ("alias", full(type="alias", userId="u-2", previousId="anon-2")),
    ("group", full(type="group", userId="u-2", groupId="g-1", traits={"employees": 12})),
]


@pytest.mark.parametrize(("label", "event"), ROUND_TRIP, ids=[row[0] for row in ROUND_TRIP])
def test_plain_round_trip(plain: PlainAvroDecoder, label: str, event: dict[str, Any]) -> None:
    assert_same(plain.decode(avro(event)), event)


def test_double_point_one_comes_back_exactly(plain: PlainAvroDecoder) -> None:
    value = plain.decode(avro(full(traits={"x": 0.1})))["traits"]["x"]
    assert type(value) is float
    assert value == 0.1
    assert repr(value) == "0.1"


@pytest.mark.parametrize(
    ("millis", "expected"),
    [
        (0, dt.datetime(1970, 1, 1, tzinfo=dt.UTC)),
        (1709254800000, dt.datetime(2024, 3, 1, 1, 0, tzinfo=dt.UTC)),
        (1709254800123, dt.datetime(2024, 3, 1, 1, 0, 0, 123000, tzinfo=dt.UTC)),
        (946684800000, dt.datetime(2000, 1, 1, tzinfo=dt.UTC)),
    ],
)
def test_timestamp_millis_decodes_to_aware_utc_datetime(
    plain: PlainAvroDecoder, millis: int, expected: dt.datetime
) -> None:
    decoded = plain.decode(avro(full(timestamp=millis)))["timestamp"]
    assert decoded == expected
    assert decoded.utcoffset() == dt.timedelta(0)


def test_every_sample_event_round_trips(plain: PlainAvroDecoder) -> None:
    lines = (REPO_ROOT / "schemas" / "examples" / "user_events.jsonl").read_text(encoding="utf-8").splitlines()
    events = [full(**json.loads(line)) for line in lines if line.strip()]
    assert len(events) > 0
    for event in events:
        assert_same(plain.decode(avro(event)), event)


def test_plain_decoder_ignores_headers(plain: PlainAvroDecoder) -> None:
    headers = [(VALUE_SCHEMA_ID_HEADER, b"\x00\x00\x00\x00\x07")]
    assert_same(plain.decode(MINIMAL_BYTES, headers), MINIMAL_EVENT)


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (b"\x00", "1 trailing bytes after the Avro record"),
        (b"\x00\x00", "2 trailing bytes after the Avro record"),
        (b"abc", "3 trailing bytes after the Avro record"),
        (MINIMAL_BYTES, "13 trailing bytes after the Avro record"),
    ],
)
def test_trailing_bytes(plain: PlainAvroDecoder, extra: bytes, message: str) -> None:
    with pytest.raises(DecodeError) as info:
        plain.decode(MINIMAL_BYTES + extra)
    assert str(info.value) == message
    assert "trailing" in info.value.message
    assert info.value.stage == "decode"
    assert info.value.retriable is False


RICH = avro(
    full(
        type="track",
        userId="u-1",
        event="Order Completed",
        timestamp=1709254800000,
        properties={"items": [{"sku": "A", "price": 0.1}], "ok": True},
    )
)


@pytest.mark.parametrize("cut", list(range(1, len(RICH))))
def test_every_truncation_is_a_decode_error(plain: PlainAvroDecoder, cut: int) -> None:
    with pytest.raises(DecodeError) as info:
        plain.decode(RICH[:cut])
    assert str(info.value).startswith("payload is not valid Avro for the schema: ")


@pytest.mark.parametrize(
    "data",
    [
        b"\xff",  # varint continuation bit with nothing after it
        b"\x02m\x0c",  # enum index 6 does not exist (6 symbols)
        b"\x02m\x00\x06",  # union branch 3 of a two-branch union
        b"\x01",  # negative string length (zig-zag -1)
    ],
)
def test_garbage_is_a_decode_error(plain: PlainAvroDecoder, data: bytes) -> None:
    with pytest.raises(DecodeError, match=r"^payload is not valid Avro for the schema: "):
        plain.decode(data)


@pytest.mark.parametrize("value", [None, b""])
def test_empty_payload(plain: PlainAvroDecoder, value: bytes | None) -> None:
    with pytest.raises(DecodeError) as info:
        plain.decode(value)
    assert str(info.value) == "empty payload (tombstone or missing value)"


# ------------------------------------------------------------------------------------------------
# Schema Registry framing
# ------------------------------------------------------------------------------------------------

FRAME_IDS: list[tuple[bytes, int]] = [
    (b"\x00\x00\x00\x00", 0),
    (b"\x00\x00\x00\x01", 1),
    (b"\x00\x00\x00\xff", 255),
    (b"\x00\x00\x01\x00", 256),
    (b"\x00\x00\x30\x39", 12345),
    (b"\x00\x01\x00\x00", 65536),
    (b"\x01\x00\x00\x00", 16777216),
    (b"\x7f\xff\xff\xff", 2147483647),
    (b"\xff\xff\xff\xff", 4294967295),
]


@pytest.mark.parametrize(("id_bytes", "schema_id"), FRAME_IDS)
def test_wire_format_schema_id(id_bytes: bytes, schema_id: int) -> None:
    value = b"\x00" + id_bytes + MINIMAL_BYTES
    assert schema_ref_of(value, None) == (SchemaRef(id=schema_id), 5)
    assert schema_ref_of(value, []) == (SchemaRef(id=schema_id), 5)


@pytest.mark.parametrize(("id_bytes", "schema_id"), FRAME_IDS)
def test_registry_decode_with_known_id(id_bytes: bytes, schema_id: int) -> None:
    decoder = RegistryDecoder()
    decoder.add(SchemaRef(id=schema_id), SCHEMA_TEXT)
    event = full(userId="u-1", traits={"score": 0.1, "tags": ["a", None]})
    assert_same(decoder.decode(b"\x00" + id_bytes + avro(event)), event)


def test_registry_decode_uses_the_schema_of_that_id() -> None:
    mini = '{"type":"record","name":"Mini","fields":[{"name":"messageId","type":"string"},{"name":"n","type":"long"}]}'
    decoder = RegistryDecoder()
    decoder.add(SchemaRef(id=42), mini)
    decoder.add(SchemaRef(id=1), SCHEMA_TEXT)
    # id 42, then "x" (02 78) and n=5 (0a)
    assert_same(decoder.decode(b"\x00\x00\x00\x00\x2a\x02\x78\x0a"), {"messageId": "x", "n": 5})
    assert_same(decoder.decode(framed(1, MINIMAL_BYTES)), MINIMAL_EVENT)


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (b"\x01\x00\x00\x00\x01" + MINIMAL_BYTES, "not in Schema Registry wire format: magic byte is 1, expected 0"),
        (b"\x02\x00\x00\x00\x01", "not in Schema Registry wire format: magic byte is 2, expected 0"),
        (b"\xff", "not in Schema Registry wire format: magic byte is 255, expected 0"),
        (MINIMAL_BYTES, "not in Schema Registry wire format: magic byte is 2, expected 0"),  # bare Avro
    ],
)
def test_wrong_magic_byte(value: bytes, message: str) -> None:
    decoder = RegistryDecoder()
    decoder.add(SchemaRef(id=1), SCHEMA_TEXT)
    with pytest.raises(DecodeError) as info:
        decoder.decode(value)
    assert str(info.value) == message
    with pytest.raises(DecodeError, match="magic byte is"):
        schema_ref_of(value, None)


@pytest.mark.parametrize("value", [b"\x00", b"\x00\x00", b"\x00\x00\x00", b"\x00\x00\x00\x01"])
def test_payload_shorter_than_header(value: bytes) -> None:
    decoder = RegistryDecoder()
    decoder.add(SchemaRef(id=1), SCHEMA_TEXT)
    with pytest.raises(DecodeError) as info:
        decoder.decode(value)
    assert str(info.value) == "payload shorter than the 5-byte Schema Registry header"


def test_header_only_frame_has_no_body() -> None:
    decoder = RegistryDecoder()
    decoder.add(SchemaRef(id=1), SCHEMA_TEXT)
    with pytest.raises(DecodeError, match=r"^payload is not valid Avro for the schema: "):
        decoder.decode(b"\x00\x00\x00\x00\x01")


@pytest.mark.parametrize("value", [None, b""])
def test_registry_empty_payload(value: bytes | None) -> None:
    with pytest.raises(DecodeError) as info:
        RegistryDecoder().decode(value)
    assert str(info.value) == "empty payload (tombstone or missing value)"


@pytest.mark.parametrize(
    ("value", "headers", "message"),
    [
        (framed(99, MINIMAL_BYTES), None, "unknown schema id 99 (not in the Schema Registry)"),
        (framed(0, MINIMAL_BYTES), None, "unknown schema id 0 (not in the Schema Registry)"),
        (
            MINIMAL_BYTES,
            [(VALUE_SCHEMA_ID_HEADER, b"\x00\x00\x00\x00\x63")],
            "unknown schema id 99 (not in the Schema Registry)",
        ),
        (
            MINIMAL_BYTES,
            [(VALUE_SCHEMA_ID_HEADER, b"\x01" + bytes(range(16)))],
            "unknown schema guid 00010203-0405-0607-0809-0a0b0c0d0e0f (not in the Schema Registry)",
        ),
    ],
)
def test_unknown_schema(value: bytes, headers: Any, message: str) -> None:
    decoder = RegistryDecoder()
    decoder.add(SchemaRef(id=1), SCHEMA_TEXT)
    with pytest.raises(DecodeError) as info:
        decoder.decode(value, headers)
    assert str(info.value) == message
    assert "unknown schema" in str(info.value)


def test_missing_schema_is_unknown_too() -> None:
    decoder = RegistryDecoder()
    decoder.missing.add(SchemaRef(id=5))
    with pytest.raises(DecodeError, match=r"^unknown schema id 5 \(not in the Schema Registry\)$"):
        decoder.decode(framed(5, MINIMAL_BYTES))


def test_schema_that_is_not_a_record() -> None:
    decoder = RegistryDecoder()
    decoder.add(SchemaRef(id=3), '"string"')
    assert SchemaRef(id=3) in decoder.known
    with pytest.raises(DecodeError, match=r"^the schema does not describe a record$"):
        decoder.decode(framed(3, b"\x02x"))


def test_registry_trailing_bytes() -> None:
    decoder = RegistryDecoder()
    decoder.add(SchemaRef(id=1), SCHEMA_TEXT)
    with pytest.raises(DecodeError, match=r"^2 trailing bytes after the Avro record$"):
        decoder.decode(framed(1, MINIMAL_BYTES + b"\x00\x00"))


# ------------------------------------------------------------------------------------------------
# __value_schema_id header
# ------------------------------------------------------------------------------------------------

GUIDS: list[tuple[bytes, str]] = [
    (bytes(range(16)), "00010203-0405-0607-0809-0a0b0c0d0e0f"),
    (bytes.fromhex("0123456789abcdef0123456789abcdef"), "01234567-89ab-cdef-0123-456789abcdef"),
    (b"\xff" * 16, "ffffffff-ffff-ffff-ffff-ffffffffffff"),
    (b"\x00" * 16, "00000000-0000-0000-0000-000000000000"),
    (bytes.fromhex("123e4567e89b12d3a456426614174000"), "123e4567-e89b-12d3-a456-426614174000"),
]


@pytest.mark.parametrize(("raw", "guid"), GUIDS)
def test_guid_header(raw: bytes, guid: str) -> None:
    headers = [("other", b"x"), (VALUE_SCHEMA_ID_HEADER, b"\x01" + raw)]
    ref, start = schema_ref_of(MINIMAL_BYTES, headers)
    assert (ref, start) == (SchemaRef(guid=guid), 0)
    assert ref.id is None
    assert [len(part) for part in ref.guid.split("-")] == [8, 4, 4, 4, 12]
    assert str(ref) == f"guid {guid}"


@pytest.mark.parametrize(("id_bytes", "schema_id"), FRAME_IDS)
def test_id_header(id_bytes: bytes, schema_id: int) -> None:
    ref, start = schema_ref_of(MINIMAL_BYTES, [(VALUE_SCHEMA_ID_HEADER, b"\x00" + id_bytes)])
    assert (ref, start) == (SchemaRef(id=schema_id), 0)
    assert str(ref) == f"id {schema_id}"


def test_header_wins_over_wire_prefix() -> None:
    value = framed(5, MINIMAL_BYTES)
    assert schema_ref_of(value, [(VALUE_SCHEMA_ID_HEADER, b"\x00\x00\x00\x00\x07")]) == (SchemaRef(id=7), 0)


@pytest.mark.parametrize(
    ("header_ref", "header_value"),
    [
        (SchemaRef(id=7), b"\x00\x00\x00\x00\x07"),
        (SchemaRef(guid="01234567-89ab-cdef-0123-456789abcdef"), b"\x01" + bytes.fromhex("0123456789abcdef" * 2)),
    ],
)
def test_header_decode_reads_bare_body(header_ref: SchemaRef, header_value: bytes) -> None:
    decoder = RegistryDecoder()
    decoder.add(header_ref, SCHEMA_TEXT)
    event = full(type="track", userId="u-3", event="Signed Up", properties={"plan": "pro", "seats": 3})
    assert_same(decoder.decode(avro(event), [(VALUE_SCHEMA_ID_HEADER, header_value)]), event)


@pytest.mark.parametrize(
    ("header_value", "message"),
    [
        (b"\x02\x00\x00\x00\x01", f"header {VALUE_SCHEMA_ID_HEADER} is not a schema id (magic byte 2)"),
        (b"\x00\x00\x01", f"header {VALUE_SCHEMA_ID_HEADER} is not a schema id (magic byte 0)"),  # too short
        (b"\x00\x00\x00\x00\x00\x01", f"header {VALUE_SCHEMA_ID_HEADER} is not a schema id (magic byte 0)"),
        (b"\x01" + b"\x00" * 15, f"header {VALUE_SCHEMA_ID_HEADER} is not a schema id (magic byte 1)"),
        (b"\x01" + b"\x00" * 17, f"header {VALUE_SCHEMA_ID_HEADER} is not a schema id (magic byte 1)"),
        (b"\x00" + b"\x00" * 16, f"header {VALUE_SCHEMA_ID_HEADER} is not a schema id (magic byte 0)"),
    ],
)
def test_bad_header(header_value: bytes, message: str) -> None:
    with pytest.raises(DecodeError) as info:
        schema_ref_of(framed(1, MINIMAL_BYTES), [(VALUE_SCHEMA_ID_HEADER, header_value)])
    assert str(info.value) == message


@pytest.mark.parametrize(
    "headers",
    [
        [(VALUE_SCHEMA_ID_HEADER, b"")],
        [(VALUE_SCHEMA_ID_HEADER, None)],
        [("__key_schema_id", b"\x00\x00\x00\x00\x07")],
        [("value_schema_id", b"\x00\x00\x00\x00\x07")],
    ],
)
def test_empty_or_other_headers_fall_back_to_body(headers: Any) -> None:
    assert schema_ref_of(framed(9, MINIMAL_BYTES), headers) == (SchemaRef(id=9), 5)


# ------------------------------------------------------------------------------------------------
# unknown_refs / add
# ------------------------------------------------------------------------------------------------

GUID_A = "00010203-0405-0607-0809-0a0b0c0d0e0f"


def test_unknown_refs_only_returns_refs_neither_known_nor_missing() -> None:
    decoder = RegistryDecoder()
    decoder.add(SchemaRef(id=1), SCHEMA_TEXT)
    decoder.missing.add(SchemaRef(id=2))
    messages: list[tuple[bytes | None, Any]] = [
        (framed(1, MINIMAL_BYTES), None),  # known
        (framed(2, MINIMAL_BYTES), None),  # missing
        (framed(3, MINIMAL_BYTES), None),  # unknown
        (framed(3, MINIMAL_BYTES), []),  # the same unknown again
        (framed(4, MINIMAL_BYTES), [(VALUE_SCHEMA_ID_HEADER, b"\x00\x00\x00\x00\x01")]),  # header says known 1
        (MINIMAL_BYTES, [(VALUE_SCHEMA_ID_HEADER, b"\x01" + bytes(range(16)))]),  # unknown guid
        (MINIMAL_BYTES, None),  # bad magic: not a ref at all
        (None, None),  # tombstone
        (b"", None),
        (b"\x00\x00", None),  # too short
        (framed(5, b""), [(VALUE_SCHEMA_ID_HEADER, b"\x07")]),  # bad header: skipped
    ]
    assert decoder.unknown_refs(messages) == {SchemaRef(id=3), SchemaRef(guid=GUID_A)}


def test_unknown_refs_empty_batch_and_all_known() -> None:
    decoder = RegistryDecoder()
    assert decoder.unknown_refs([]) == set()
    decoder.add(SchemaRef(id=1), SCHEMA_TEXT)
    assert decoder.unknown_refs([(framed(1, MINIMAL_BYTES), None)]) == set()


def test_schema_ref_equality_by_kind() -> None:
    assert SchemaRef(id=1) == SchemaRef(id=1)
    assert SchemaRef(id=1) != SchemaRef(guid="1")
    assert len({SchemaRef(id=1), SchemaRef(id=1), SchemaRef(guid=GUID_A)}) == 2


def test_add_valid_schema_is_known() -> None:
    decoder = RegistryDecoder()
    decoder.add(SchemaRef(id=1), SCHEMA_TEXT)
    assert set(decoder.known) == {SchemaRef(id=1)}
    assert decoder.missing == set()


INVALID_SCHEMA_TEXTS = [
    pytest.param("not json", id="not json"),
    pytest.param("", id="empty text"),
    pytest.param('{"type": "record"}', id="record without name and fields"),
    pytest.param('{"type": "nope"}', id="unknown type"),
    pytest.param('{"type":"record","name":"X","fields":[{"name":"a"}]}', id="field without type"),
    pytest.param('"NoSuchNamedType"', id="reference to an undefined name"),
    pytest.param(
        "{}",
        id="empty object",
    ),
    pytest.param(
        "42",
        id="json number",
    ),
    pytest.param(
        "null",
        id="json null",
    ),
]


@pytest.mark.parametrize("text", INVALID_SCHEMA_TEXTS)
def test_add_invalid_schema_marks_it_missing(text: str) -> None:
    decoder = RegistryDecoder()
    ref = SchemaRef(id=77)
    decoder.add(ref, text)
    assert decoder.missing == {ref}
    assert ref not in decoder.known
    assert decoder.unknown_refs([(framed(77, MINIMAL_BYTES), None)]) == set()
    with pytest.raises(DecodeError, match=r"^unknown schema id 77 \(not in the Schema Registry\)$"):
        decoder.decode(framed(77, MINIMAL_BYTES))


# ------------------------------------------------------------------------------------------------
# load_schema
# ------------------------------------------------------------------------------------------------


def test_load_schema_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "nope.avsc"
    with pytest.raises(ValueError) as info:
        load_schema(path)
    assert str(info.value).startswith(f"{path}: not a valid Avro schema: ")


@pytest.mark.parametrize(
    "text",
    [
        pytest.param("not json", id="not json"),
        pytest.param('{"type": "nope"}', id="unknown type"),
        pytest.param(
            "{}",
            id="empty object",
        ),
    ],
)
def test_load_schema_invalid_text(tmp_path: Path, text: str) -> None:
    path = tmp_path / "bad.avsc"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ValueError, match="not a valid Avro schema"):
        load_schema(path)
