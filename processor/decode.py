"""Bytes to event dicts: plain Avro with a local writer schema, or Confluent Schema Registry framing.

Decoding is pure: schemas are parsed once and handed in; fetching unknown registry schemas happens at the edge
(:mod:`processor.schema_registry`) before a batch is decoded. Every failure is a :class:`DecodeError` for that one
message; nothing here stops a partition.
"""

from __future__ import annotations

import io
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import fastavro

from processor.errors import DecodeError

MAGIC_SCHEMA_ID = 0
MAGIC_SCHEMA_GUID = 1
VALUE_SCHEMA_ID_HEADER = "__value_schema_id"

Headers = Sequence[tuple[str, bytes | None]] | None


def load_schema(path: Path) -> Any:
    """Parse an ``.avsc`` file once; raises ``ValueError`` with the path when it is not a valid Avro schema."""
    try:
        return fastavro.parse_schema(json.loads(path.read_text(encoding="utf-8")))
    except Exception as exc:  # fastavro reports malformed schemas as KeyError, TypeError, ValueError...
        raise ValueError(f"{path}: not a valid Avro schema: {type(exc).__name__}: {exc}") from exc


def parse_schema_text(text: str) -> Any:
    return fastavro.parse_schema(json.loads(text))


def _read_exactly(schema: Any, value: bytes, start: int) -> dict[str, Any]:
    buffer = io.BytesIO(value)
    buffer.seek(start)
    try:
        event = fastavro.schemaless_reader(buffer, schema, None)
    except Exception as exc:  # fastavro raises EOFError, ValueError, IndexError, UnicodeDecodeError...
        raise DecodeError(f"payload is not valid Avro for the schema: {type(exc).__name__}: {exc}") from exc
    consumed = buffer.tell()
    if consumed != len(value):
        raise DecodeError(f"{len(value) - consumed} trailing bytes after the Avro record")
    if not isinstance(event, dict):
        raise DecodeError("the schema does not describe a record")
    return event


class PlainAvroDecoder:
    """Messages are bare Avro bodies written with the one local schema."""

    def __init__(self, schema: Any) -> None:
        self._schema = schema

    def decode(self, value: bytes | None, headers: Headers = None) -> dict[str, Any]:
        if not value:
            raise DecodeError("empty payload (tombstone or missing value)")
        return _read_exactly(self._schema, value, 0)


@dataclass(frozen=True, slots=True)
class SchemaRef:
    """Which registry schema a message was written with: a numeric id or (newer clients) a GUID."""

    id: int | None = None
    guid: str | None = None

    def __str__(self) -> str:
        return f"id {self.id}" if self.id is not None else f"guid {self.guid}"


def _parse_id_bytes(data: bytes, where: str) -> SchemaRef:
    if len(data) == 5 and data[0] == MAGIC_SCHEMA_ID:
        return SchemaRef(id=int.from_bytes(data[1:5], "big"))
    if len(data) == 17 and data[0] == MAGIC_SCHEMA_GUID:
        hexed = data[1:17].hex()
        return SchemaRef(guid=f"{hexed[:8]}-{hexed[8:12]}-{hexed[12:16]}-{hexed[16:20]}-{hexed[20:]}")
    raise DecodeError(f"{where} is not a schema id (magic byte {data[0] if data else 'missing'})")


def schema_ref_of(value: bytes | None, headers: Headers) -> tuple[SchemaRef, int]:
    """Where the schema reference is and where the Avro body starts.

    A ``__value_schema_id`` header wins (the body is then bare Avro); otherwise the body must start with the
    Confluent wire format: magic byte 0 and a 4-byte big-endian schema id.
    """
    if headers:
        for name, data in headers:
            if name == VALUE_SCHEMA_ID_HEADER and data:
                return _parse_id_bytes(data, f"header {VALUE_SCHEMA_ID_HEADER}"), 0
    if not value:
        raise DecodeError("empty payload (tombstone or missing value)")
    if value[0] != MAGIC_SCHEMA_ID:
        raise DecodeError(f"not in Schema Registry wire format: magic byte is {value[0]}, expected 0")
    if len(value) < 5:
        raise DecodeError("payload shorter than the 5-byte Schema Registry header")
    return SchemaRef(id=int.from_bytes(value[1:5], "big")), 5


class RegistryDecoder:
    """Messages carry a registry schema reference; schemas come from a cache filled by the registry client.

    ``known`` maps references to parsed schemas; ``missing`` holds references the registry said do not exist.
    """

    def __init__(self) -> None:
        self.known: dict[SchemaRef, Any] = {}
        self.missing: set[SchemaRef] = set()

    def unknown_refs(self, messages: Sequence[tuple[bytes | None, Headers]]) -> set[SchemaRef]:
        """References in a batch that are neither cached nor known to be missing (to fetch before decoding)."""
        wanted: set[SchemaRef] = set()
        for value, headers in messages:
            try:
                ref, _ = schema_ref_of(value, headers)
            except DecodeError:
                continue
            if ref not in self.known and ref not in self.missing:
                wanted.add(ref)
        return wanted

    def add(self, ref: SchemaRef, schema_text: str) -> None:
        try:
            self.known[ref] = parse_schema_text(schema_text)
        except Exception:  # any malformed schema text: its messages cannot be decoded, so they are dead-lettered
            self.missing.add(ref)

    def decode(self, value: bytes | None, headers: Headers = None) -> dict[str, Any]:
        ref, start = schema_ref_of(value, headers)
        schema = self.known.get(ref)
        if schema is None:
            raise DecodeError(f"unknown schema {ref} (not in the Schema Registry)")
        if not value:
            raise DecodeError("empty payload (tombstone or missing value)")
        return _read_exactly(schema, value, start)
