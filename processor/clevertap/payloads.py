"""CleverTap request bodies and response parsing. Pure: no I/O, no clock.

The upload endpoint answers HTTP 200 even when it refused records; the refused ones are listed in
``unprocessed`` and are matched back to what was sent by the 1-based ``Skipped record number : N`` at the end of
each error text (the echoed record may be normalised, so it is not used for matching).
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson

MAX_UPLOAD_RECORDS = 1000
MAX_DELETE_IDS = 100
# Per-record code CleverTap uses for its own transient failures: the record may be sent again.
RETRIABLE_RECORD_CODES = frozenset({555})

_RECORD_NUMBER = re.compile(r"Skipped record number\s*:\s*(\d+)\s*$")


def upload_body(records: Sequence[dict[str, Any]]) -> bytes:
    if not 1 <= len(records) <= MAX_UPLOAD_RECORDS:
        raise ValueError(f"an upload carries 1 to {MAX_UPLOAD_RECORDS} records, got {len(records)}")
    return orjson.dumps({"d": list(records)})


def delete_body(id_key: str, values: Sequence[str]) -> bytes:
    if id_key not in ("identity", "guid"):
        raise ValueError(f"profiles are deleted by identity or guid, not {id_key!r}")
    if not 1 <= len(values) <= MAX_DELETE_IDS:
        raise ValueError(f"a delete carries 1 to {MAX_DELETE_IDS} ids, got {len(values)}")
    return orjson.dumps({id_key: list(values)})


@dataclass(frozen=True, slots=True)
class RecordFailure:
    index: int  # 0-based position in the request
    code: int | None
    error: str

    @property
    def retriable(self) -> bool:
        return self.code in RETRIABLE_RECORD_CODES


@dataclass(frozen=True, slots=True)
class UploadOutcome:
    """What CleverTap said about each record of one upload.

    ``failures`` are matched to records; when CleverTap reports failures that cannot be matched to a record,
    ``ambiguous`` is true and the caller must not guess: it splits the request and sends the halves again.
    """

    status: str
    processed: int
    failures: list[RecordFailure] = field(default_factory=list)
    ambiguous: bool = False


def _code(entry: dict[str, Any]) -> int | None:
    code = entry.get("code")
    if isinstance(code, int) and not isinstance(code, bool):
        return code
    if isinstance(code, str) and code.isdigit():
        return int(code)
    return None


def parse_upload_response(body: bytes, sent: int) -> UploadOutcome:
    """Parse a 200 answer to an upload of ``sent`` records.

    Raises ``ValueError`` when the body is not the documented JSON shape (the caller treats that as a transient
    server problem).
    """
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise ValueError(f"upload answer is not JSON: {body[:200]!r}") from exc
    if not isinstance(data, dict) or not isinstance(data.get("status"), str):
        raise ValueError(f"upload answer has no status: {body[:200]!r}")
    status = data["status"]
    processed = data.get("processed")
    unprocessed = data.get("unprocessed") or []
    if not isinstance(unprocessed, list):
        raise ValueError("upload answer: unprocessed is not a list")
    failures: list[RecordFailure] = []
    seen: set[int] = set()
    ambiguous = False
    for entry in unprocessed:
        if not isinstance(entry, dict):
            ambiguous = True
            continue
        error = str(entry.get("error", ""))
        match = _RECORD_NUMBER.search(error)
        index = int(match.group(1)) - 1 if match else -1
        if not 0 <= index < sent or index in seen:
            ambiguous = True
            continue
        seen.add(index)
        failures.append(RecordFailure(index, _code(entry), error))
    if status == "fail" and not unprocessed:
        # A failed upload that names no record says nothing about which records were stored.
        ambiguous = True
    if not isinstance(processed, int) or isinstance(processed, bool):
        processed = sent - len(failures)
    elif processed + len(failures) != sent:
        # The counts disagree with the records named: what was stored is unknown, so nothing is assumed.
        ambiguous = True
    failures.sort(key=lambda f: f.index)
    return UploadOutcome(status, processed, failures, ambiguous)


def error_text(body: bytes) -> str:
    """The ``error`` of a CleverTap failure body, else the body's start; for logs and dead-letter headers."""
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        return body[:300].decode("utf-8", "replace")
    if isinstance(data, dict) and "error" in data:
        return str(data["error"])[:300]
    return body[:300].decode("utf-8", "replace")


def retry_after_seconds(value: str | None) -> float | None:
    """``Retry-After`` in seconds when given as a number (CleverTap documents no date form)."""
    if value is None:
        return None
    try:
        seconds = float(value.strip())
    except ValueError:
        return None  # an HTTP date: CleverTap documents none, so it is not worth a date parser
    return seconds if math.isfinite(seconds) and seconds >= 0 else None
