"""A CleverTap stand-in: a real ``aiohttp.web`` server implementing /work/shared/clevertap-api.md.

Used by the demo command, the integration and fault-injection tests and the benchmark. It is deliberately
stricter than the public documentation where the documentation is vague (see ``validate_record``), so a
client that passes against the stand-in is unlikely to be surprised by the real service.

Contracts:

* Every answer is JSON ``{"status": ..., ...}``; error answers carry ``"code"`` equal to the HTTP status.
* A record is stored (``profiles``/``events``) before the configured latency elapses, so a client that
  times out and retries produces a duplicate, exactly as with the real service. Injected faults (5xx,
  429, dropped connections) happen *before* anything is stored.
* State is only mutated on the server's event loop. ``StandinThread`` hands out copies taken on that loop.
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
import concurrent.futures
import contextlib
import random
import re
import signal
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Final, TypeVar

import orjson
from aiohttp import web

__all__ = [
    "ERROR_TEXTS",
    "MAX_DELETE_VALUES",
    "MAX_EVENT_PROPERTIES",
    "MAX_RECORDS_PER_UPLOAD",
    "RESTRICTED_EVENT_NAMES",
    "ClevertapStandin",
    "RecordedRequest",
    "StandinConfig",
    "StandinSnapshot",
    "StandinThread",
    "main",
    "validate_record",
]

_T = TypeVar("_T")

UPLOAD_PATH: Final = "/1/upload"
DELETE_PATH: Final = "/1/delete/profiles.json"

MAX_RECORDS_PER_UPLOAD: Final = 1000
MAX_DELETE_VALUES: Final = 100
MAX_EVENT_PROPERTIES: Final = 100
MAX_PROFILE_KEY_BYTES: Final = 120
MAX_PROFILE_VALUE_BYTES: Final = 512
MAX_MULTI_VALUE_ITEMS: Final = 100
# Unix seconds stay below 10**10 until the year 2286; a millisecond timestamp of any date after
# 1970-04-26 is above it, so this one bound separates the two unambiguously for realistic data.
MAX_UNIX_SECONDS: Final = 10_000_000_000
# Request bodies of 1000 rich records exceed aiohttp's 1 MiB default; the real limit is not documented.
MAX_BODY_BYTES: Final = 64 * 1024 * 1024

RESTRICTED_EVENT_NAMES: Final = frozenset(
    {
        "Web Page Viewed",
        "App Launched",
        "App Installed",
        "App Uninstalled",
        "Notification Viewed",
        "Notification Clicked",
        "UTM Visited",
        "Stayed",
    }
)

IDENTIFIER_KEYS: Final = ("identity", "objectId", "FBID", "GPID")

ERROR_TEXTS: Final[Mapping[int, str]] = {
    509: "Event name is missing",
    512: "Invalid event structure. Nested objects are not allowed",
    513: "Restricted system event name",
    514: "Profile data is incorrect. Gender is not valid",
    515: "Profile data is incorrect. Email is not valid",
    516: "Profile data is incorrect. Phone is not valid",
    517: "Profile data is incorrect. Employed is not valid",
    518: "Profile data is incorrect. Education is not valid",
    519: "Profile data is incorrect. Married is not valid",
    520: "Profile data is incorrect. Age is not valid",
    522: "Too many event properties",
    523: "Record must have exactly one of identity, objectId, FBID, GPID",
    524: "Record type must be profile or event",
    525: "ts is not valid Unix seconds",
    526: "objectId is not valid",
    528: "Event discarded",
    555: "Miscellaneous server error",
}

_EMAIL_RE: Final = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s.]+", re.ASCII)
_PHONE_RE: Final = re.compile(r"\+[0-9]{8,15}", re.ASCII)

_ENUM_PROFILE_KEYS: Final[Mapping[str, tuple[frozenset[str], int]]] = {
    "Gender": (frozenset({"M", "F"}), 514),
    "Employed": (frozenset({"Y", "N"}), 517),
    "Education": (frozenset({"School", "College", "Graduate"}), 518),
    "Married": (frozenset({"Y", "N"}), 519),
}

_JSON_CONTENT_TYPE: Final = "application/json"


@dataclass
class StandinConfig:
    """Behaviour of one stand-in server (one CleverTap account).

    Fields may be changed while the server runs (e.g. ``auth_failing``); each request reads them afresh.
    Rates are probabilities per request in [0, 1], drawn from ``random.Random(seed)`` in arrival order.
    """

    account_id: str
    passcode: str
    max_concurrency: int = 15
    latency_s: float = 0.0
    error_5xx_rate: float = 0.0
    error_429_rate: float = 0.0
    drop_connection_rate: float = 0.0
    slow_rate: float = 0.0
    slow_latency_s: float = 1.0
    seed: int | None = None
    reject: dict[str, int] = field(default_factory=dict)
    retry_555_once: set[str] = field(default_factory=set)
    auth_failing: bool = False
    cheap_validation: bool = False
    # Not documented by CleverTap; set it to test that a client honours Retry-After on 429.
    retry_after_s: float | None = None


@dataclass
class RecordedRequest:
    """One request the stand-in accepted and processed (HTTP 200)."""

    seq: int
    method: str
    path: str
    query: dict[str, str]
    body: Any
    received_at: float
    """``time.monotonic()`` when the request arrived (before the body was read)."""
    received_wall: float
    """``time.time()`` at the same moment, for comparing with other processes."""
    status: int
    response: dict[str, Any]
    dry_run: bool = False


@dataclass
class StandinSnapshot:
    """Copies of a stand-in's state, safe to inspect from any thread."""

    requests: list[RecordedRequest]
    profiles: dict[str, dict[str, Any]]
    events: list[dict[str, Any]]
    deleted: list[str]
    deleted_guids: list[str]
    rejected: list[tuple[Any, int]]
    counters: dict[str, Any]


def _error_text(code: int) -> str:
    return ERROR_TEXTS.get(code, f"Record rejected with code {code}")


def _utf8_len_exceeds(text: str, limit: int) -> bool:
    # A code point takes at most 4 UTF-8 bytes, so short strings never need encoding.
    return len(text) * 4 > limit and len(text.encode("utf-8", "surrogatepass")) > limit


_SCALAR_TYPES: Final = (str, int, float, type(None))


def _is_scalar(value: object) -> bool:
    return isinstance(value, _SCALAR_TYPES)


def _record_identifier(record: Mapping[str, Any]) -> tuple[str, str] | None:
    """The (key, value) of the record's one identifier, if it has exactly one usable identifier."""
    found: tuple[str, str] | None = None
    for key in IDENTIFIER_KEYS:
        value = record.get(key)
        if value is None:
            continue
        if found is not None or not isinstance(value, str):
            return None
        found = (key, value)
    return found


def _validate_event(record: Mapping[str, Any]) -> tuple[int, str] | None:
    name = record.get("evtName")
    if not isinstance(name, str) or not name.strip():
        return 509, _error_text(509)
    if name in RESTRICTED_EVENT_NAMES:
        return 513, f"{_error_text(513)} '{name}'"
    data = record.get("evtData")
    if data is None:
        return None
    if not isinstance(data, dict):
        return 512, "Invalid event structure. evtData must be an object"
    if len(data) > MAX_EVENT_PROPERTIES:
        return 522, f"{_error_text(522)}, max {MAX_EVENT_PROPERTIES}"
    for key, value in data.items():
        if _is_scalar(value):
            continue
        if name == "Charged" and key == "Items" and isinstance(value, list):
            if all(isinstance(item, dict) and all(map(_is_scalar, item.values())) for item in value):
                continue
            return 512, "Invalid event structure. Items must be a list of flat objects"
        return 512, f"{_error_text(512)} (property '{key}')"
    return None


def _validate_profile(record: Mapping[str, Any]) -> tuple[int, str] | None:
    data = record.get("profileData")
    if data is None:
        return None
    if not isinstance(data, dict):
        return 512, "Profile data is incorrect. profileData must be an object"
    for key, value in data.items():
        if _utf8_len_exceeds(key, MAX_PROFILE_KEY_BYTES):
            return 512, f"Profile data is incorrect. Key longer than {MAX_PROFILE_KEY_BYTES} bytes"
        if isinstance(value, str):
            if _utf8_len_exceeds(value, MAX_PROFILE_VALUE_BYTES):
                return (
                    512,
                    f"Profile data is incorrect. '{key}' value longer than {MAX_PROFILE_VALUE_BYTES} bytes",
                )
        elif isinstance(value, list):
            # Multi-value properties are the only arrays CleverTap stores on a profile.
            if len(value) > MAX_MULTI_VALUE_ITEMS or not all(
                isinstance(item, str) and not _utf8_len_exceeds(item, MAX_PROFILE_VALUE_BYTES)
                for item in value
            ):
                return 512, f"Profile data is incorrect. '{key}' is not a valid multi-value property"
        elif not _is_scalar(value):
            return 512, f"Profile data is incorrect. Nested value in '{key}'"
        if key == "Email":
            if not isinstance(value, str) or _EMAIL_RE.fullmatch(value) is None:
                return 515, _error_text(515)
        elif key == "Phone":
            if not isinstance(value, str) or _PHONE_RE.fullmatch(value) is None:
                return 516, _error_text(516)
        elif key == "Age":
            if type(value) is not int or value < 0:
                return 520, _error_text(520)
        elif key in _ENUM_PROFILE_KEYS:
            allowed, code = _ENUM_PROFILE_KEYS[key]
            if not isinstance(value, str) or value not in allowed:
                return code, _error_text(code)
    return None


def validate_record(record: object) -> tuple[int, str] | None:
    """Check one /1/upload record; return ``(code, error text)`` for the first problem, or None if valid.

    The checks run in a fixed order (identifier, type, ts, then type-specific), so a record with several
    problems always reports the same code. The text never includes the "Skipped record number" suffix.
    """
    if not isinstance(record, dict):
        return 524, "Record is not an object"
    present = [key for key in IDENTIFIER_KEYS if record.get(key) is not None]
    if len(present) != 1:
        return 523, _error_text(523)
    ident_key = present[0]
    ident = record[ident_key]
    if not isinstance(ident, str) or not ident.strip():
        if ident_key == "objectId":
            return 526, _error_text(526)
        return 523, f"{ident_key} must be a non-empty string"
    kind = record.get("type")
    if kind != "profile" and kind != "event":
        return 524, _error_text(524)
    if "ts" in record:
        ts = record["ts"]
        # bool is an int subclass and JSON true must not pass as a timestamp, hence the exact type check.
        if type(ts) is not int or not 0 < ts < MAX_UNIX_SECONDS:
            return 525, _error_text(525)
    if kind == "event":
        return _validate_event(record)
    return _validate_profile(record)


def _unprocessed_entry(record: object, index: int, code: int, text: str) -> dict[str, Any]:
    # The documented example reads "Email is not valid.Skipped record number : 2": no space after the period.
    return {
        "status": "fail",
        "code": code,
        "error": f"{text}.Skipped record number : {index}",
        "record": record,
    }


def _fail_body(code: int, error: str) -> dict[str, Any]:
    return {"status": "fail", "error": error, "code": code}


class _BadRequest(Exception):
    def __init__(self, error: str) -> None:
        super().__init__(error)
        self.error = error


class ClevertapStandin:
    """The stand-in server; runs inside the event loop that calls ``start()``.

    Recorded state (all mutated only on the server's loop):

    * ``requests``: accepted (HTTP 200) uploads and deletes in arrival order, with the response sent.
    * ``profiles``: profileData merged per identifier (``identity`` value; other identifiers as
      ``"objectId:<v>"``, ``"FBID:<v>"``, ``"GPID:<v>"``); a delete removes the entry.
    * ``events``: stored event records in order; ``deleted`` / ``deleted_guids``: delete values in order;
      ``rejected``: ``(record, code)`` of every unprocessed record.
    * Counters: ``status_counts`` (every HTTP answer by status), ``requests_total``, ``records_received``,
      ``records_accepted``, ``records_rejected``, ``dropped_connections``, ``max_concurrency_seen``
      (peak in-flight authenticated requests, including any that were answered 429 for exceeding the limit).

    With ``cheap_validation`` only the counters move: no ``requests``, no state, and the ``reject`` and
    ``retry_555_once`` knobs are ignored.
    """

    def __init__(self, config: StandinConfig) -> None:
        self.config = config
        self.requests: list[RecordedRequest] = []
        self.profiles: dict[str, dict[str, Any]] = {}
        self.events: list[dict[str, Any]] = []
        self.deleted: list[str] = []
        self.deleted_guids: list[str] = []
        self.rejected: list[tuple[Any, int]] = []
        self.status_counts: Counter[int] = Counter()
        self.requests_total = 0
        self.records_received = 0
        self.records_accepted = 0
        self.records_rejected = 0
        self.dropped_connections = 0
        self.max_concurrency_seen = 0
        self._in_flight = 0
        self._seq = 0
        self._failed_555_once: set[str] = set()
        self._rng = random.Random(config.seed)
        self._runner: web.AppRunner | None = None
        self._base_url: str | None = None

    # ---- lifecycle -------------------------------------------------------------------------------

    def make_app(self) -> web.Application:
        app = web.Application(client_max_size=MAX_BODY_BYTES)
        app.router.add_route("*", "/{tail:.*}", self._dispatch)
        return app

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> str:
        """Listen on ``host:port`` (0 = a free port) and return ``base_url``."""
        if self._runner is not None:
            raise RuntimeError("stand-in already started")
        # A short shutdown timeout: tests stop the server while slow handlers may still be sleeping.
        runner = web.AppRunner(self.make_app(), access_log=None, handle_signals=False, shutdown_timeout=0.5)
        await runner.setup()
        site = web.TCPSite(runner, host, port, backlog=1024)
        try:
            await site.start()
        except BaseException:
            await runner.cleanup()
            raise
        self._runner = runner
        bound_port = runner.addresses[0][1]
        self._base_url = f"http://{host}:{bound_port}"
        return self._base_url

    async def stop(self) -> None:
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()

    async def __aenter__(self) -> ClevertapStandin:
        await self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()

    @property
    def base_url(self) -> str:
        if self._base_url is None:
            raise RuntimeError("stand-in not started")
        return self._base_url

    @property
    def in_flight(self) -> int:
        return self._in_flight

    def reset(self) -> None:
        """Forget all recorded state and counters (in place: references to the lists stay valid)."""
        self.requests.clear()
        self.profiles.clear()
        self.events.clear()
        self.deleted.clear()
        self.deleted_guids.clear()
        self.rejected.clear()
        self.status_counts.clear()
        self.requests_total = 0
        self.records_received = 0
        self.records_accepted = 0
        self.records_rejected = 0
        self.dropped_connections = 0
        self.max_concurrency_seen = self._in_flight
        self._failed_555_once.clear()
        self._rng = random.Random(self.config.seed)

    def counters(self) -> dict[str, Any]:
        """JSON-ready counters."""
        return {
            "requests_total": self.requests_total,
            "status_counts": {str(code): n for code, n in sorted(self.status_counts.items())},
            "records_received": self.records_received,
            "records_accepted": self.records_accepted,
            "records_rejected": self.records_rejected,
            "events_stored": len(self.events),
            "profiles_stored": len(self.profiles),
            "identities_deleted": len(self.deleted),
            "guids_deleted": len(self.deleted_guids),
            "dropped_connections": self.dropped_connections,
            "max_concurrency_seen": self.max_concurrency_seen,
        }

    def snapshot(self) -> StandinSnapshot:
        """Deep-enough copies of the state: later requests do not change the snapshot."""
        return StandinSnapshot(
            requests=list(self.requests),
            profiles={key: dict(value) for key, value in self.profiles.items()},
            events=list(self.events),
            deleted=list(self.deleted),
            deleted_guids=list(self.deleted_guids),
            rejected=list(self.rejected),
            counters=self.counters(),
        )

    # ---- HTTP ------------------------------------------------------------------------------------

    def _json(
        self, status: int, body: dict[str, Any], headers: Mapping[str, str] | None = None
    ) -> web.Response:
        self.status_counts[status] += 1
        return web.Response(
            status=status,
            body=orjson.dumps(body),
            content_type=_JSON_CONTENT_TYPE,
            charset="utf-8",
            headers=headers,
        )

    def _too_many(self) -> web.Response:
        headers = None
        if self.config.retry_after_s is not None:
            headers = {"Retry-After": f"{self.config.retry_after_s:g}"}
        return self._json(429, _fail_body(429, "Too many concurrent requests"), headers)

    async def _dispatch(self, request: web.Request) -> web.StreamResponse:
        arrived, arrived_wall = time.monotonic(), time.time()
        self.requests_total += 1
        path = request.path
        if path != UPLOAD_PATH and path != DELETE_PATH:
            return self._json(404, _fail_body(404, "Not found"))
        if request.method != "POST":
            return self._json(405, _fail_body(405, "Method not allowed"))
        cfg = self.config
        if (
            cfg.auth_failing
            or request.headers.get("X-CleverTap-Account-Id") != cfg.account_id
            or request.headers.get("X-CleverTap-Passcode") != cfg.passcode
        ):
            return self._json(401, _fail_body(401, "Account ID is not valid"))

        self._in_flight += 1
        try:
            if self._in_flight > self.max_concurrency_seen:
                self.max_concurrency_seen = self._in_flight
            if self._in_flight > cfg.max_concurrency:
                return self._too_many()
            try:
                raw = await request.read()
            except web.HTTPRequestEntityTooLarge:
                return self._json(413, _fail_body(413, "Request body too large"))

            rng = self._rng
            drop = cfg.drop_connection_rate > 0 and rng.random() < cfg.drop_connection_rate
            fail_5xx = cfg.error_5xx_rate > 0 and rng.random() < cfg.error_5xx_rate
            fail_429 = cfg.error_429_rate > 0 and rng.random() < cfg.error_429_rate
            slow = cfg.slow_rate > 0 and rng.random() < cfg.slow_rate
            delay = cfg.slow_latency_s if slow else cfg.latency_s

            if drop or fail_5xx or fail_429:
                if delay > 0:
                    await asyncio.sleep(delay)
                if drop:
                    return self._drop(request)
                if fail_5xx:
                    code = rng.choice((500, 502, 503))
                    return self._json(code, _fail_body(code, "Server error (injected)"))
                return self._too_many()

            status, body = self._process(request, raw, arrived, arrived_wall)
            if delay > 0:
                await asyncio.sleep(delay)
            return self._json(status, body)
        finally:
            self._in_flight -= 1

    def _drop(self, request: web.Request) -> web.StreamResponse:
        self.dropped_connections += 1
        transport = request.transport
        if transport is not None:
            transport.abort()
        # Nothing reaches the client; aiohttp notices the closed transport and discards this response.
        return web.Response(status=204)

    def _process(
        self, request: web.Request, raw: bytes, arrived: float, arrived_wall: float
    ) -> tuple[int, dict[str, Any]]:
        if not request.headers.get("Content-Type", "").lower().startswith(_JSON_CONTENT_TYPE):
            return 400, _fail_body(400, "Content-Type must be application/json")
        try:
            payload = orjson.loads(raw)
        except orjson.JSONDecodeError:
            return 400, _fail_body(400, "Malformed JSON body")
        query = dict(request.query)
        dry_run = query.get("dryRun", "").lower() in ("1", "true")
        try:
            handler = self._upload if request.path == UPLOAD_PATH else self._delete
            body = handler(payload, dry_run)
        except _BadRequest as bad:
            return 400, _fail_body(400, bad.error)
        if not self.config.cheap_validation:
            self._seq += 1
            recorded = RecordedRequest(
                seq=self._seq,
                method=request.method,
                path=request.path,
                query=query,
                body=payload,
                received_at=arrived,
                received_wall=arrived_wall,
                status=200,
                response=body,
                dry_run=dry_run,
            )
            # Bodies finish arriving out of order under concurrency; keep the list in arrival order.
            if self.requests and self.requests[-1].received_at > arrived:
                bisect.insort(self.requests, recorded, key=lambda r: r.received_at)
            else:
                self.requests.append(recorded)
        return 200, body

    def _upload(self, payload: Any, dry_run: bool) -> dict[str, Any]:
        if not isinstance(payload, dict) or "d" not in payload:
            raise _BadRequest("Missing parameter d")
        records = payload["d"]
        if not isinstance(records, list):
            raise _BadRequest("Parameter d must be an array")
        count = len(records)
        if count > MAX_RECORDS_PER_UPLOAD:
            raise _BadRequest(f"Too many records: {count}, at most {MAX_RECORDS_PER_UPLOAD} per request")
        self.records_received += count
        if self.config.cheap_validation:
            self.records_accepted += count
            return {"status": "success", "processed": count, "unprocessed": []}

        unprocessed: list[dict[str, Any]] = []
        for index, record in enumerate(records, start=1):
            problem = validate_record(record)
            if problem is None:
                problem = self._knob_problem(record)
            if problem is not None:
                code, text = problem
                unprocessed.append(_unprocessed_entry(record, index, code, text))
                self.rejected.append((record, code))
                continue
            if not dry_run:
                self._store(record)
        processed = count - len(unprocessed)
        self.records_accepted += processed
        self.records_rejected += len(unprocessed)
        if not unprocessed:
            status = "success"
        elif processed:
            status = "partial"
        else:
            status = "fail"
        return {"status": status, "processed": processed, "unprocessed": unprocessed}

    def _knob_problem(self, record: Mapping[str, Any]) -> tuple[int, str] | None:
        cfg = self.config
        if not cfg.reject and not cfg.retry_555_once:
            return None
        ident = _record_identifier(record)
        if ident is None:
            return None
        value = ident[1]
        code = cfg.reject.get(value)
        if code is not None:
            return code, _error_text(code)
        if value in cfg.retry_555_once and value not in self._failed_555_once:
            self._failed_555_once.add(value)
            return 555, _error_text(555)
        return None

    def _store(self, record: dict[str, Any]) -> None:
        if record["type"] == "event":
            self.events.append(record)
            return
        ident = _record_identifier(record)
        if ident is None:  # unreachable after validate_record; keeps the type checker honest
            return
        key = ident[1] if ident[0] == "identity" else f"{ident[0]}:{ident[1]}"
        profile = self.profiles.setdefault(key, {})
        data = record.get("profileData")
        if isinstance(data, dict):
            # No copy: validated values are scalars or string lists; later upserts replace them, never mutate.
            profile.update(data)

    def _delete(self, payload: Any, dry_run: bool) -> dict[str, Any]:
        if not isinstance(payload, dict):
            raise _BadRequest("Body must be an object with identity or guid")
        has_identity = payload.get("identity") is not None
        has_guid = payload.get("guid") is not None
        if has_identity and has_guid:
            raise _BadRequest("Send either identity or guid, not both")
        if not has_identity and not has_guid:
            raise _BadRequest("Missing parameter identity or guid")
        field_name = "identity" if has_identity else "guid"
        raw_values = payload[field_name]
        values = raw_values if isinstance(raw_values, list) else [raw_values]
        if not values:
            raise _BadRequest(f"{field_name} must not be empty")
        if len(values) > MAX_DELETE_VALUES:
            raise _BadRequest(f"At most {MAX_DELETE_VALUES} values of {field_name} per request")
        if not all(isinstance(value, str) and value.strip() for value in values):
            raise _BadRequest(f"{field_name} values must be non-empty strings")
        if self.config.cheap_validation or dry_run:
            return {"status": "success"}
        for value in values:
            if field_name == "identity":
                self.profiles.pop(value, None)
                self.deleted.append(value)
            else:
                self.profiles.pop(f"objectId:{value}", None)
                self.deleted_guids.append(value)
        return {"status": "success"}


class StandinThread:
    """A ``ClevertapStandin`` on its own thread and event loop, for synchronous callers.

    ``start()`` blocks until the server listens. State accessors (``requests``, ``profiles``, ...) return
    copies taken on the server's loop, so they are consistent even while requests are being served.
    ``config`` is the live config object: assigning its fields (e.g. ``auth_failing``) takes effect on
    the next request.
    """

    def __init__(self, config: StandinConfig, host: str = "127.0.0.1", port: int = 0) -> None:
        self.standin = ClevertapStandin(config)
        self._host = host
        self._port = port
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._stop_event: asyncio.Event | None = None
        self._ready = threading.Event()
        self._startup_error: BaseException | None = None

    @property
    def config(self) -> StandinConfig:
        return self.standin.config

    @property
    def base_url(self) -> str:
        return self.standin.base_url

    def start(self, timeout_s: float = 10.0) -> str:
        """Start serving; return ``base_url``. Raises what the server raised while starting."""
        if self._thread is not None:
            raise RuntimeError("stand-in thread already started")
        self._ready.clear()
        self._thread = threading.Thread(target=self._run, name="clevertap-standin", daemon=True)
        self._thread.start()
        if not self._ready.wait(timeout_s):
            raise TimeoutError("stand-in did not start in time")
        if self._startup_error is not None:
            self._thread.join()
            self._thread = None
            raise self._startup_error
        return self.base_url

    def _run(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        try:
            loop.run_until_complete(self._serve())
        finally:
            loop.close()

    async def _serve(self) -> None:
        self._stop_event = asyncio.Event()
        try:
            await self.standin.start(self._host, self._port)
        except BaseException as exc:
            self._startup_error = exc
            self._ready.set()
            return
        self._ready.set()
        try:
            await self._stop_event.wait()
        finally:
            await self.standin.stop()

    def stop(self, timeout_s: float = 10.0) -> None:
        """Stop serving and join the thread; safe to call twice."""
        thread, self._thread = self._thread, None
        if thread is None:
            return
        loop, stop_event = self._loop, self._stop_event
        if loop is not None and stop_event is not None and not loop.is_closed():
            with contextlib.suppress(RuntimeError):  # the loop may close between the check and the call
                loop.call_soon_threadsafe(stop_event.set)
        thread.join(timeout_s)

    def __enter__(self) -> StandinThread:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def call(self, fn: Callable[[ClevertapStandin], _T], timeout_s: float = 10.0) -> _T:
        """Return ``fn(standin)``, run on the server's loop (or directly if that loop is not running)."""
        loop = self._loop
        if loop is None or not loop.is_running() or threading.current_thread() is self._thread:
            return fn(self.standin)
        future: concurrent.futures.Future[_T] = concurrent.futures.Future()

        def run() -> None:
            try:
                future.set_result(fn(self.standin))
            except BaseException as exc:
                future.set_exception(exc)

        loop.call_soon_threadsafe(run)
        return future.result(timeout_s)

    def snapshot(self) -> StandinSnapshot:
        return self.call(ClevertapStandin.snapshot)

    def reset(self) -> None:
        self.call(ClevertapStandin.reset)

    def counters(self) -> dict[str, Any]:
        return self.call(ClevertapStandin.counters)

    @property
    def requests(self) -> list[RecordedRequest]:
        return self.call(lambda s: list(s.requests))

    @property
    def profiles(self) -> dict[str, dict[str, Any]]:
        return self.call(lambda s: {key: dict(value) for key, value in s.profiles.items()})

    @property
    def events(self) -> list[dict[str, Any]]:
        return self.call(lambda s: list(s.events))

    @property
    def deleted(self) -> list[str]:
        return self.call(lambda s: list(s.deleted))

    @property
    def deleted_guids(self) -> list[str]:
        return self.call(lambda s: list(s.deleted_guids))

    @property
    def rejected(self) -> list[tuple[Any, int]]:
        return self.call(lambda s: list(s.rejected))

    @property
    def status_counts(self) -> Counter[int]:
        return self.call(lambda s: Counter(s.status_counts))

    @property
    def records_accepted(self) -> int:
        return self.standin.records_accepted

    @property
    def max_concurrency_seen(self) -> int:
        return self.standin.max_concurrency_seen


# ---- CLI -----------------------------------------------------------------------------------------


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m processor.embedded.clevertap_standin",
        description="Serve a CleverTap stand-in until SIGTERM/SIGINT. "
        "Prints the base URL first and the counters as one JSON line on exit.",
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--account-id", required=True)
    parser.add_argument("--passcode", required=True)
    parser.add_argument("--latency-ms", type=float, default=0.0)
    parser.add_argument("--max-concurrency", type=int, default=15)
    parser.add_argument("--cheap", action="store_true", help="count records, validate only the envelope")
    parser.add_argument("--error-5xx-rate", type=float, default=0.0)
    parser.add_argument("--error-429-rate", type=float, default=0.0)
    parser.add_argument("--drop-connection-rate", type=float, default=0.0)
    parser.add_argument("--seed", type=int, default=None)
    return parser.parse_args(argv)


async def serve_until_signal(standin: ClevertapStandin, host: str, port: int) -> dict[str, Any]:
    """Serve ``standin`` until SIGTERM/SIGINT, printing its base URL first; returns its counters."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await standin.start(host, port)
    try:
        print(standin.base_url, flush=True)
        await stop.wait()
    finally:
        await standin.stop()
    return standin.counters()


def main(argv: list[str] | None = None) -> int:
    args = _parse_args(argv)
    config = StandinConfig(
        account_id=args.account_id,
        passcode=args.passcode,
        max_concurrency=args.max_concurrency,
        latency_s=args.latency_ms / 1000.0,
        error_5xx_rate=args.error_5xx_rate,
        error_429_rate=args.error_429_rate,
        drop_connection_rate=args.drop_connection_rate,
        seed=args.seed,
        cheap_validation=args.cheap,
    )
    counters = asyncio.run(serve_until_signal(ClevertapStandin(config), args.host, args.port))
    sys.stdout.write(orjson.dumps(counters).decode() + "\n")
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
