"""Fault-injection harness: a known workload on the real broker, the processor as a subprocess, a CleverTap stand-in
in this process, and an accounting of every produced record against what the stand-in stored and what the DLQ holds.

Every produced record is an :class:`Item`. A valid user event carries its produce index as ``seq`` in its properties
(track) or traits (identify), so every record the stand-in stored maps back to exactly one item; a ``Delete User``
track has no payload at CleverTap, so each user is deleted at most once and a delete maps back by its identity.
Corrupt payloads map back through the DLQ headers (source partition and offset).

What the accounting checks (:func:`account`):

* lost: a deliverable item CleverTap never stored, or an item that should be dead-lettered and is not in the DLQ;
* duplicates: items stored more than once, attributed to the incident (kill, rebalance, ...) that preceded them;
* dead letters: exactly the expected items, with the expected stage and code, value and key unchanged;
* order per user: the user's operations, in the stand-in's arrival order, form runs that each continue exactly
  where the previous operation left off or restart at or before it (a replay); a jump forward means an operation
  overtook an earlier one of the same user;
* final state: each user's profile in the stand-in equals the merge of the traits uploaded after their delete.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import random
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
import zlib
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import fastavro
from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaException, Producer, TopicPartition

from processor.embedded.clevertap_standin import RecordedRequest, StandinConfig, StandinThread
from processor.embedded.events import create_topics, encode_plain
from tests.integration.helpers import BASE_TS, SCHEMA, iso, unique

REPO_ROOT = Path(__file__).resolve().parents[2]
ACCOUNT_ID = "FAULT-ACCOUNT"
PASSCODE = "fault-suite-passcode"
EVENT_NAMES = ("Product Viewed", "Added To Cart", "Order Placed", "Search Performed")
REJECT_CODES = (513, 515, 516, 520, 528)
_RECORD_NUMBER = re.compile(r"Skipped record number\s*:\s*(\d+)")

# Settings every processor of the suite runs with; scenarios override some.
BASE_PROCESSOR_ENV = {
    "PROCESSOR_COMMIT_INTERVAL_S": "0.2",
    "PROCESSOR_RETRY_INITIAL_S": "0.02",
    "PROCESSOR_RETRY_MAX_S": "0.5",
    "PROCESSOR_CREDENTIALS_RETRY_S": "0.5",
    "PROCESSOR_MAX_IN_FLIGHT": "2000",
    "PROCESSOR_POLL_BATCH_SIZE": "500",
    "PROCESSOR_DRAIN_TIMEOUT_S": "10",
    # Group membership settles fast after a SIGKILL (6 s is the broker's minimum session timeout).
    "KAFKA_CONFIG_SESSION_TIMEOUT_MS": "6000",
    "KAFKA_CONFIG_HEARTBEAT_INTERVAL_MS": "500",
    "LOG_LEVEL": "info",
}


def scenario_seed(base: int, name: str) -> int:
    return (base * 1_000_003 + zlib.crc32(name.encode())) % 2**31


# ---- Workload --------------------------------------------------------------------------------------------------------


@dataclass(slots=True)
class Item:
    """One produced Kafka record and what must become of it."""

    index: int
    partition: int
    key: bytes | None
    value: bytes | None
    user: str | None
    kind: str  # event | profile | delete | skip | corrupt | unmappable
    expect: str  # deliver | dlq | skip
    stages: tuple[str, ...] = ()  # acceptable x-dlq-stage values (the processor may refuse before CleverTap does)
    code: int | None = None  # expected x-dlq-error-code (CleverTap's per-record code)
    traits: dict[str, Any] | None = None
    headers: list[tuple[str, bytes]] | None = None
    label: str = ""
    offset: int = -1


@dataclass
class Workload:
    items: list[Item]
    partitions: int
    users: list[str]
    seed: int
    reject_users: dict[str, int] = field(default_factory=dict)
    retry_555_users: set[str] = field(default_factory=set)
    delete_of: dict[str, int] = field(default_factory=dict)  # user -> index of their one delete

    def count(self, expect: str) -> int:
        return sum(1 for item in self.items if item.expect == expect)

    def by_offset(self) -> dict[tuple[int, int], Item]:
        return {(item.partition, item.offset): item for item in self.items}

    def per_user(self) -> dict[str, list[Item]]:
        out: dict[str, list[Item]] = defaultdict(list)
        for item in self.items:
            if item.user is not None and item.kind in ("event", "profile", "delete"):
                out[item.user].append(item)
        return out

    def expected_profiles(self) -> dict[str, dict[str, Any]]:
        """Each user's profile once everything is delivered: traits merged in order, reset by their delete."""
        state: dict[str, dict[str, Any]] = {}
        for user, items in self.per_user().items():
            profile: dict[str, Any] | None = None
            for item in items:
                if item.kind == "delete":
                    profile = None
                elif item.kind == "profile" and item.expect == "deliver":
                    profile = {**(profile or {}), **(item.traits or {})}
            if profile is not None:
                state[user] = profile
        return state


def _avro_decodes(value: bytes | None) -> bool:
    """True when ``value`` is a complete, exact Avro UserEvent (then it is not a corrupt payload)."""
    if not value:
        return False
    buffer = io.BytesIO(value)
    try:
        fastavro.schemaless_reader(buffer, SCHEMA, None)
    except Exception:
        return False
    return buffer.tell() == len(value)


_FOREIGN_SCHEMA = fastavro.parse_schema(
    {
        "type": "record",
        "name": "Payment",
        "namespace": "com.example.billing",
        "fields": [
            {"name": "id", "type": "long"},
            {"name": "amount", "type": "double"},
            {"name": "currency", "type": "string"},
            {"name": "captured", "type": "boolean"},
        ],
    }
)


def corrupt_payload(rng: random.Random, n: int) -> tuple[str, bytes | None, list[tuple[str, bytes]] | None]:
    """A payload the bundled schema cannot decode: (label, value, headers)."""
    valid = encode_plain(
        SCHEMA,
        {"messageId": f"c{n}", "type": "track", "userId": f"ghost-{n}", "event": "Product Viewed",
         "timestamp": iso(BASE_TS + n), "properties": {"seq": n}},
    )
    while True:
        kind = rng.choice(
            ("empty", "tombstone", "json", "text", "registry-framed", "truncated", "trailing", "foreign-avro", "random")
        )
        headers: list[tuple[str, bytes]] | None = None
        value: bytes | None
        if kind == "empty":
            value = b""
        elif kind == "tombstone":
            value = None
        elif kind == "json":
            value = json.dumps({"type": "track", "userId": f"u-{n}", "event": "Product Viewed", "n": n}).encode()
            headers = [("content-type", b"application/json")]
        elif kind == "text":
            value = f"hello {n}, this is not avro".encode()
        elif kind == "registry-framed":
            value = b"\x00" + rng.randrange(1, 1000).to_bytes(4, "big") + valid
        elif kind == "truncated":
            value = valid[: rng.randrange(1, len(valid) - 1)]
        elif kind == "trailing":
            value = valid + rng.randbytes(rng.randrange(1, 8))
        elif kind == "foreign-avro":
            buffer = io.BytesIO()
            fastavro.schemaless_writer(
                buffer, _FOREIGN_SCHEMA,
                {"id": n, "amount": rng.random() * 100, "currency": "EUR", "captured": bool(n % 2)},
            )
            value = buffer.getvalue()
            headers = [("schema", b"com.example.billing.Payment")]
        else:
            value = rng.randbytes(rng.randrange(1, 200))
        if not _avro_decodes(value):
            return kind, value, headers


def build_workload(
    events: int,
    *,
    seed: int,
    users: int = 300,
    partitions: int = 6,
    identify_share: float = 0.2,
    skip_share: float = 0.02,
    delete_user_share: float = 0.3,
    reject_users: int = 0,
    retry_555_users: int = 0,
    bad_record_share: float = 0.0,
    corrupt_share: float = 0.0,
) -> Workload:
    """``events`` records over ``users`` users (keyed by user id, user i on partition i % partitions)."""
    rng = random.Random(seed)
    names = [f"u-{i:04d}" for i in range(users)]
    partition_of = {user: i % partitions for i, user in enumerate(names)}
    kinds: list[tuple[str, str | None]] = []
    for _ in range(events):
        if rng.random() < corrupt_share:
            kinds.append(("corrupt", None))
            continue
        who = rng.choice(names)
        r = rng.random()
        kinds.append(("skip" if r < skip_share else "profile" if r < skip_share + identify_share else "event", who))
    if corrupt_share > 0:
        # A track without an event name decodes but cannot be mapped: dead-lettered by the map stage.
        for _ in range(max(1, events // 1000)):
            kinds[rng.randrange(events)] = ("unmappable", rng.choice(names))
    # One delete for a share of the users, somewhere in the middle of their stream (uploads on both sides).
    positions: dict[str, list[int]] = defaultdict(list)
    for n, (kind, user) in enumerate(kinds):
        if user is not None and kind in ("event", "profile"):
            positions[user].append(n)
    deleted = rng.sample(names, int(users * delete_user_share))
    for name in deleted:
        mine = positions[name]
        if len(mine) >= 3:
            kinds[mine[rng.randrange(max(1, len(mine) // 5), max(2, len(mine) * 4 // 5))]] = ("delete", name)
    rejected = {name: rng.choice(REJECT_CODES) for name in rng.sample(names, reject_users)}
    retry_once = set(rng.sample([u for u in names if u not in rejected], retry_555_users))

    items: list[Item] = []
    workload = Workload(items, partitions, names, seed, rejected, retry_once)
    for n, (kind, user) in enumerate(kinds):
        if kind == "corrupt":
            label, value, headers = corrupt_payload(rng, n)
            items.append(Item(n, n % partitions, f"junk-{n}".encode(), value, None, "corrupt", "dlq",
                              stages=("decode",), headers=headers, label=label))
            continue
        assert user is not None
        event: dict[str, Any] = {"messageId": f"m-{n}", "userId": user, "timestamp": iso(BASE_TS + n)}
        item = Item(n, partition_of[user], user.encode(), None, user, kind, "deliver")
        bad = rng.random() < bad_record_share
        natural_code: int | None = None
        if kind == "profile":
            traits: dict[str, Any] = {"seq": n, "plan": rng.choice(("free", "pro", "team")), f"k{n % 7}": n}
            if bad:
                # Segment's standard traits, which CleverTap checks in its standard profile keys.
                key, junk, natural_code = rng.choice(
                    (("email", "not-an-email", 515), ("gender", "unknown", 514), ("phone", "12345", 516))
                )
                traits[key] = junk
                item.label = f"bad {key}"
            event.update(type="identify", traits=traits)
            item.traits = traits
        elif kind == "event":
            properties: dict[str, Any] = {"seq": n, "sku": f"S-{rng.randrange(1000)}", "price": rng.randrange(1, 99)}
            name = rng.choice(EVENT_NAMES)
            if bad:
                name = rng.choice(("App Launched", "Notification Viewed"))
                natural_code, item.label = 513, "system event"
            event.update(type="track", event=name, properties=properties)
        elif kind == "unmappable":
            event.update(type="track", properties={"seq": n})
            item.expect, item.stages, item.label = "dlq", ("map", "validate"), "track without event name"
        elif kind == "delete":
            event.update(type="track", event="Delete User", properties={"seq": n})
            workload.delete_of[user] = n
        else:
            event.update(type="page", name="Home", properties={"seq": n})
            item.expect = "skip"
        code = natural_code if natural_code is not None else rejected.get(user) if kind != "delete" else None
        if kind in ("event", "profile") and code is not None:
            # A record invalid by itself may be refused by the processor's own checks (stage validate) or by
            # CleverTap; a record of a user the stand-in rejects can only be refused by CleverTap.
            stages = ("validate", "clevertap") if natural_code is not None else ("clevertap",)
            item.expect, item.stages, item.code = "dlq", stages, code
        item.value = encode_plain(SCHEMA, event)
        items.append(item)
    return workload


# ---- Producing -------------------------------------------------------------------------------------------------------


class Streamer:
    """Produces the workload from a background thread (optionally at ``rate`` records/s), recording offsets."""

    def __init__(self, bootstrap: str, topic: str, items: list[Item], rate: float | None = None) -> None:
        self.bootstrap = bootstrap
        self.topic = topic
        self.items = items
        self.rate = rate
        self.errors: list[str] = []
        self.acked = 0
        self.done = threading.Event()
        self._thread = threading.Thread(target=self._run, name="fault-producer", daemon=True)

    def start(self) -> Streamer:
        self._thread.start()
        return self

    def _run(self) -> None:
        try:
            self._produce()
        except Exception as exc:
            self.errors.append(f"{type(exc).__name__}: {exc}")
        finally:
            self.done.set()

    def _produce(self) -> None:
        producer = Producer({"bootstrap.servers": self.bootstrap, "acks": "all", "enable.idempotence": True,
                             "linger.ms": 5, "message.timeout.ms": 300000})
        started = time.monotonic()

        def on_delivery(item: Item) -> Callable[[Any, Any], None]:
            def delivered(error: Any, message: Any) -> None:
                if error is not None:
                    self.errors.append(f"item {item.index}: {error}")
                    return
                assert message.partition() == item.partition
                item.offset = message.offset()
                self.acked += 1
            return delivered

        for n, item in enumerate(self.items):
            if self.rate:
                ahead = n / self.rate - (time.monotonic() - started)
                if ahead > 0:
                    producer.poll(ahead)
            kwargs: dict[str, Any] = {"partition": item.partition, "key": item.key, "value": item.value,
                                      "on_delivery": on_delivery(item)}
            if item.headers:
                kwargs["headers"] = item.headers
            while True:
                try:
                    producer.produce(self.topic, **kwargs)
                    break
                except BufferError:
                    producer.poll(0.1)
            producer.poll(0)
        remaining = producer.flush(300)
        if remaining:
            self.errors.append(f"{remaining} records not acknowledged")

    def wait(self, timeout_s: float) -> None:
        if not self.done.wait(timeout_s):
            raise TimeoutError(f"producer not finished after {timeout_s:.0f}s ({self.acked}/{len(self.items)} acked)")
        if self.errors:
            raise RuntimeError(f"producing failed: {self.errors[:3]}")


# ---- The processor as a subprocess -----------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def clean_environ() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith(("KAFKA_", "CLEVERTAP_", "PROCESSOR_", "SCHEMA",
                                                                     "METRICS_", "LOG_"))}


class ProcessorProcess:
    """``python -m processor run`` with its output in a log file; metrics scraped from its /metrics endpoint."""

    def __init__(self, name: str, env: dict[str, str], log_path: Path) -> None:
        self.name = name
        self.env = env
        self.log_path = log_path
        self.proc: subprocess.Popen[bytes] | None = None
        self.metrics_port = free_port()
        self.started_at = 0.0
        self.ended_at: float | None = None
        self.expected_exit = False  # set before we stop it on purpose
        self.peak_in_flight = 0
        self.peak_rss_kb = 0
        self.exit_code: int | None = None

    def start(self) -> ProcessorProcess:
        env = {**self.env, "METRICS_PORT": str(self.metrics_port), "METRICS_HOST": "127.0.0.1",
               "PYTHONUNBUFFERED": "1"}
        with self.log_path.open("ab") as log:
            log.write(f"==== {self.name} started {time.strftime('%H:%M:%S')}\n".encode())
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "processor", "run"], env=env, cwd=REPO_ROOT, stdin=subprocess.DEVNULL,
                stdout=log, stderr=subprocess.STDOUT,
            )
        self.started_at = time.time()
        return self

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def crashed(self) -> bool:
        """Exited without being asked to."""
        return self.proc is not None and self.proc.poll() is not None and not self.expected_exit

    def in_flight(self) -> int | None:
        """Records in flight now (its records_in_flight gauge), None when it does not answer."""
        url = f"http://127.0.0.1:{self.metrics_port}/metrics"
        with contextlib.suppress(OSError, ValueError), urllib.request.urlopen(url, timeout=0.5) as answer:
            for line in answer.read().decode().splitlines():
                if line.startswith("clevertap_processor_records_in_flight "):
                    return int(float(line.split()[1]))
        return None

    def sample(self) -> None:
        """Peak records in flight (from /metrics) and peak resident memory (from /proc)."""
        if not self.alive:
            return
        now = self.in_flight()
        if now is not None:
            self.peak_in_flight = max(self.peak_in_flight, now)
        with contextlib.suppress(OSError, ValueError):
            for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    self.peak_rss_kb = max(self.peak_rss_kb, int(line.split()[1]))

    def kill(self) -> None:
        """SIGKILL, as a crash or an OOM kill would."""
        self.expected_exit = True
        if self.alive:
            self.sample()
            os.kill(self.pid, signal.SIGKILL)
        self._reap(30)

    def wait_ready(self, timeout_s: float = 60.0) -> bool:
        """Until the metrics endpoint answers: the signal handlers are installed by then (a SIGTERM that arrives
        while the interpreter is still importing ends it with the default action, exit -15)."""
        deadline = time.monotonic() + timeout_s
        url = f"http://127.0.0.1:{self.metrics_port}/livez"
        while self.alive and time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(url, timeout=0.5):
                    return True
            except urllib.error.HTTPError:
                return True  # it answered (not live yet, but up)
            except (OSError, ValueError):
                time.sleep(0.05)
        return False

    def terminate(self, timeout_s: float) -> tuple[int | None, float]:
        """Once it is up, SIGTERM and wait up to ``timeout_s``: (exit code or None when it had to be killed,
        seconds from the signal to the exit)."""
        self.expected_exit = True
        self.wait_ready()
        started = time.monotonic()
        if self.alive:
            self.sample()
            os.kill(self.pid, signal.SIGTERM)
            try:
                assert self.proc is not None
                self.proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                os.kill(self.pid, signal.SIGKILL)
                self._reap(30)
                return None, time.monotonic() - started
        self._reap(30)
        return self.exit_code, time.monotonic() - started

    def _reap(self, timeout_s: float) -> None:
        if self.proc is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(timeout_s)
            self.exit_code = self.proc.returncode
            if self.ended_at is None:
                self.ended_at = time.time()

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def tail(self, lines: int = 25) -> str:
        return "\n".join(self.log_text().splitlines()[-lines:])


# ---- Kafka-side observation ------------------------------------------------------------------------------------------


class KafkaWatch:
    """The group's committed offsets and the topic's end offsets, without joining the group."""

    def __init__(self, bootstrap: str, topic: str, group: str, partitions: int) -> None:
        self.topic = topic
        self.partitions = partitions
        self._consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group, "enable.auto.commit": False,
                                   "logger": _quiet_logger()})

    def offsets(self, timeout_s: float = 5.0) -> tuple[list[int], list[int]] | None:
        tps = [TopicPartition(self.topic, p) for p in range(self.partitions)]
        try:
            committed = [tp.offset for tp in self._consumer.committed(tps, timeout=timeout_s)]
            ends = [self._consumer.get_watermark_offsets(tp, timeout=timeout_s)[1] for tp in tps]
        except KafkaException:
            return None
        return committed, ends

    def close(self) -> None:
        self._consumer.close()


def _quiet_logger() -> Any:
    import logging

    logger = logging.getLogger("tests.faults.librdkafka")
    logger.propagate = False
    if not logger.handlers:
        logger.addHandler(logging.NullHandler())
    return logger


@dataclass
class DeadLetterCopy:
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: dict[str, str]


class DlqReader:
    """Reads the dead-letter topic from the beginning, incrementally."""

    def __init__(self, bootstrap: str, topic: str) -> None:
        self.topic = topic
        self.letters: list[DeadLetterCopy] = []
        self._consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": unique("dlq-reader"),
                                   "enable.auto.commit": False, "auto.offset.reset": "earliest",
                                   "logger": _quiet_logger()})
        metadata = self._consumer.list_topics(topic, timeout=10)
        self.partitions = sorted(metadata.topics[topic].partitions)
        self._consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in self.partitions])

    def poll(self, max_s: float = 0.5) -> None:
        deadline = time.monotonic() + max_s
        while time.monotonic() < deadline:
            messages = self._consumer.consume(1000, 0.05)
            if not messages:
                return
            for message in messages:
                if message.error() is None:
                    headers: dict[str, str] = {}
                    raw_headers = message.headers() or []
                    pairs = raw_headers.items() if isinstance(raw_headers, dict) else raw_headers
                    for name, raw in pairs:
                        headers[str(name)] = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw)
                    self.letters.append(DeadLetterCopy(int(message.partition() or 0), int(message.offset() or 0),
                                                       message.key(), message.value(), headers))

    def read_to_end(self, timeout_s: float = 30.0) -> list[DeadLetterCopy]:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            try:
                ends = {p: self._consumer.get_watermark_offsets(TopicPartition(self.topic, p), timeout=5)[1]
                        for p in self.partitions}
            except KafkaException:
                time.sleep(0.5)
                continue
            have: dict[int, int] = defaultdict(lambda: -1)
            for letter in self.letters:
                have[letter.partition] = max(have[letter.partition], letter.offset)
            if all(have[p] + 1 >= end for p, end in ends.items()):
                return self.letters
            self.poll(1.0)
        raise TimeoutError(f"could not read {self.topic} to its end within {timeout_s:.0f}s")

    def close(self) -> None:
        self._consumer.close()


# ---- Accounting ------------------------------------------------------------------------------------------------------


@dataclass
class Accounting:
    delivered: Counter[int] = field(default_factory=Counter)  # item index -> times stored by the stand-in
    arrivals: dict[int, list[float]] = field(default_factory=lambda: defaultdict(list))  # wall-clock arrivals
    observed: dict[str, list[int]] = field(default_factory=lambda: defaultdict(list))  # user -> indices in order
    dead: Counter[int] = field(default_factory=Counter)  # item index -> dead letters
    unexpected: list[str] = field(default_factory=list)  # stored records / dead letters that map to no item
    wrong_dead: list[str] = field(default_factory=list)  # dead letters that should not be, or carry wrong details
    lost: list[Item] = field(default_factory=list)
    order_violations: list[str] = field(default_factory=list)
    replays: int = 0  # per-user restarts of the operation sequence (expected after kills / rebalances only)
    state_mismatches: list[str] = field(default_factory=list)
    skipped_leaks: list[str] = field(default_factory=list)

    @property
    def duplicates(self) -> int:
        return sum(n - 1 for n in self.delivered.values() if n > 1)

    @property
    def dead_duplicates(self) -> int:
        return sum(n - 1 for n in self.dead.values() if n > 1)

    def duplicates_after(self, incidents: list[tuple[float, str]]) -> list[int]:
        """Repeated arrivals per incident: a repeat counts for the last incident before it (index -1: none)."""
        counts = [0] * (len(incidents) + 1)
        times = [t for t, _ in incidents]
        for arrivals in self.arrivals.values():
            for t in sorted(arrivals)[1:]:
                slot = sum(1 for start in times if start <= t)
                counts[slot - 1 if slot else len(incidents)] += 1
        return counts


def _stored_records(request: RecordedRequest) -> Iterator[tuple[str, dict[str, Any] | str]]:
    """(path kind, record or deleted identity) for every record of an accepted request that CleverTap stored."""
    if request.path == "/1/upload":
        refused = set()
        for entry in request.response.get("unprocessed") or []:
            match = _RECORD_NUMBER.search(str(entry.get("error", "")))
            if match:
                refused.add(int(match.group(1)) - 1)
        for position, record in enumerate(request.body.get("d", [])):
            if position not in refused:
                yield "upload", record
    else:
        values = request.body.get("identity")
        for value in values if isinstance(values, list) else [values]:
            yield "delete", value


def account(
    workload: Workload, requests: list[RecordedRequest], letters: list[DeadLetterCopy], topic: str,
    profiles: dict[str, dict[str, Any]],
) -> Accounting:
    acc = Accounting()
    items = workload.items
    for request in requests:
        if request.dry_run:
            continue
        for kind, record in _stored_records(request):
            if kind == "delete":
                assert isinstance(record, str)
                index = workload.delete_of.get(record)
                if index is None:
                    acc.unexpected.append(f"delete of {record!r}, who has no delete")
                    continue
            else:
                assert isinstance(record, dict)
                data = record.get("evtData") if record.get("type") == "event" else record.get("profileData")
                seq = (data or {}).get("seq")
                if not isinstance(seq, int) or not 0 <= seq < len(items):
                    acc.unexpected.append(f"stored record without a known seq: {str(record)[:200]}")
                    continue
                index = seq
                item = items[index]
                want = "event" if record.get("type") == "event" else "profile"
                if item.kind != want or record.get("identity") != item.user or item.expect != "deliver":
                    acc.unexpected.append(f"stored record does not match item {index} ({item.kind}, {item.user}, "
                                          f"expected {item.expect}): {str(record)[:200]}")
                    continue
            acc.delivered[index] += 1
            acc.arrivals[index].append(request.received_wall)
            user = items[index].user
            assert user is not None
            acc.observed[user].append(index)

    by_offset = workload.by_offset()
    for letter in letters:
        headers = letter.headers
        try:
            source = (int(headers["x-dlq-source-partition"]), int(headers["x-dlq-source-offset"]))
        except (KeyError, ValueError):
            acc.unexpected.append(f"dead letter without source headers: {headers}")
            continue
        found = by_offset.get(source)
        if found is None or headers.get("x-dlq-source-topic") != topic:
            acc.unexpected.append(f"dead letter of unknown record {headers.get('x-dlq-source-topic')}{list(source)}")
            continue
        item = found
        acc.dead[item.index] += 1
        problems = []
        if item.expect != "dlq":
            problems.append(f"expected {item.expect}")
        if item.stages and headers.get("x-dlq-stage") not in item.stages:
            problems.append(f"stage {headers.get('x-dlq-stage')} not in {item.stages}")
        if item.code is not None and headers.get("x-dlq-error-code") != str(item.code):
            problems.append(f"code {headers.get('x-dlq-error-code')} != {item.code}")
        if (letter.value or None) != (item.value or None) or letter.key != item.key:
            problems.append("value or key changed")
        if problems:
            acc.wrong_dead.append(
                f"item {item.index} ({item.kind} {item.label or ''} of {item.user}, {list(source)}): "
                f"{'; '.join(problems)}; error: {headers.get('x-dlq-error-message', '')[:160]}"
            )

    for item in items:
        if (item.expect == "deliver" and not acc.delivered[item.index]) or (
            item.expect == "dlq" and not acc.dead[item.index]
        ):
            acc.lost.append(item)
        elif item.expect == "skip" and acc.dead[item.index]:
            acc.skipped_leaks.append(f"item {item.index} (skipped {item.kind}) was dead-lettered")

    for user, mine in workload.per_user().items():
        deliverable = [item.index for item in mine if item.expect == "deliver"]
        position = {index: p for p, index in enumerate(deliverable)}
        previous = highest = -1
        for index in acc.observed.get(user, []):
            p = position[index]
            if p == previous + 1:
                pass
            elif p <= previous:
                acc.replays += 1  # a replay restarts at or before the last operation (after a kill, a rebalance)
            elif p == highest + 1:
                # A replay that stopped short: an old operation landed after newer ones (stale retry, old owner).
                acc.order_violations.append(
                    f"{user}: #{previous} (item {deliverable[previous]}, {items[deliverable[previous]].kind}) arrived "
                    f"after #{highest} (item {deliverable[highest]}, {items[deliverable[highest]].kind}) and was "
                    f"followed by #{p}: an earlier operation arrived after later ones"
                )
            else:
                acc.order_violations.append(
                    f"{user}: #{p} (item {index}) arrived right after #{previous}; #{previous + 1}..#{p - 1} "
                    f"(items {deliverable[previous + 1:p][:5]}) had not arrived before it"
                )
            previous, highest = p, max(highest, p)
        if previous != highest:
            acc.order_violations.append(
                f"{user}: the last arrival is #{previous} (item {deliverable[previous]}), after #{highest} "
                f"(item {deliverable[highest]}): an earlier operation arrived after later ones"
            )

    expected = workload.expected_profiles()
    for user in sorted(set(expected) | {u for u in profiles if u in set(workload.users)}):
        expected_profile, stored_profile = expected.get(user), profiles.get(user)
        if expected_profile != stored_profile:
            acc.state_mismatches.append(f"{user}: expected {expected_profile}, stand-in has {stored_profile}")
    return acc


# ---- One scenario run ------------------------------------------------------------------------------------------------


@dataclass
class Row:
    scenario: str
    seed: int
    events: int
    deliver: int = 0
    delivered: int = 0
    lost: int = 0
    duplicates: int = 0
    max_dup_per_incident: int = 0
    dlq_expected: int = 0
    dlq_actual: int = 0
    dlq_wrong: int = 0
    order_violations: int = 0
    state_mismatches: int = 0
    incidents: int = 0
    incident_kind: str = ""
    peak_in_flight: int = 0
    peak_rss_mb: float = 0.0
    max_drain_s: float = 0.0
    wall_s: float = 0.0
    status: str = "error"
    notes: str = ""


class FaultRun:
    """A topic, a group, a stand-in, the processes: everything one scenario needs, torn down on exit."""

    def __init__(
        self,
        name: str,
        bootstrap: str,
        workload: Workload,
        *,
        log_dir: Path,
        standin: StandinConfig | None = None,
        env: dict[str, str] | None = None,
        record: Callable[[Row], None] | None = None,
    ) -> None:
        self.name = name
        self.bootstrap = bootstrap
        self.workload = workload
        self.seed = workload.seed
        self.topic = unique(f"faults-{name}")
        self.dlq_topic = f"{self.topic}.dlq"
        self.group = unique(f"group-{name}")
        self.log_dir = log_dir
        self.standin_config = standin or StandinConfig(account_id=ACCOUNT_ID, passcode=PASSCODE)
        self.standin_config.account_id, self.standin_config.passcode = ACCOUNT_ID, PASSCODE
        if self.standin_config.seed is None:
            self.standin_config.seed = self.seed
        self.standin_config.reject = dict(workload.reject_users)
        self.standin_config.retry_555_once = set(workload.retry_555_users)
        self.env = {**BASE_PROCESSOR_ENV, **(env or {})}
        self.record = record
        self.processes: list[ProcessorProcess] = []
        self.incidents: list[tuple[float, str]] = []
        self.drains: list[float] = []
        self.row = Row(name, self.seed, len(workload.items))
        self.started = time.monotonic()
        self.standin: StandinThread | None = None
        self.streamer: Streamer | None = None
        self.watch: KafkaWatch | None = None
        self.dlq: DlqReader | None = None
        self._sampler_stop = threading.Event()
        self._sampler: threading.Thread | None = None
        self.accounting: Accounting | None = None
        self.final_offsets: tuple[list[int], list[int]] | None = None
        self.per_incident: list[int] = []

    # -- lifecycle --
    def __enter__(self) -> FaultRun:
        create_topics(self.bootstrap, {self.topic: self.workload.partitions, self.dlq_topic: self.workload.partitions})
        self.standin = StandinThread(self.standin_config)
        self.standin.start()
        self.watch = KafkaWatch(self.bootstrap, self.topic, self.group, self.workload.partitions)
        self.dlq = DlqReader(self.bootstrap, self.dlq_topic)
        self._sampler = threading.Thread(target=self._sample_loop, name="fault-sampler", daemon=True)
        self._sampler.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: object) -> None:
        if exc is not None:
            first = str(exc).splitlines()[0] if str(exc) else ""
            self.row.notes = f"{type(exc).__name__}: {first[:300]}" + (f"; {self.row.notes}" if self.row.notes else "")
            if self.row.status == "ok":
                self.row.status = "FAIL"
        self._sampler_stop.set()
        for process in self.processes:
            if process.alive:
                process.kill()
        if self._sampler is not None:
            self._sampler.join(5)
        if self.standin is not None:
            self.standin.stop()
        for closeable in (self.watch, self.dlq):
            if closeable is not None:
                with contextlib.suppress(Exception):
                    closeable.close()
        self.row.wall_s = round(time.monotonic() - self.started, 1)
        if self.record is not None:
            self.record(self.row)

    def _sample_loop(self) -> None:
        while not self._sampler_stop.wait(0.1):
            for process in list(self.processes):
                process.sample()

    # -- driving --
    def stream(self, rate: float | None = None) -> Streamer:
        self.streamer = Streamer(self.bootstrap, self.topic, self.workload.items, rate).start()
        return self.streamer

    def processor_env(self, **overrides: str) -> dict[str, str]:
        assert self.standin is not None
        return {
            **clean_environ(),
            "KAFKA_BOOTSTRAP_SERVERS": self.bootstrap,
            "KAFKA_TOPICS": self.topic,
            "KAFKA_GROUP_ID": self.group,
            "CLEVERTAP_ACCOUNT_ID": ACCOUNT_ID,
            "CLEVERTAP_PASSCODE": PASSCODE,
            "CLEVERTAP_BASE_URL": self.standin.base_url,
            **self.env,
            **overrides,
        }

    def spawn(self, label: str | None = None, **overrides: str) -> ProcessorProcess:
        n = len(self.processes) + 1
        name = label or f"processor-{n}"
        process = ProcessorProcess(name, self.processor_env(**overrides), self.log_dir / f"{self.name}-{n}-{name}.log")
        self.processes.append(process.start())
        return process

    def incident(self, label: str) -> None:
        self.incidents.append((time.time(), label))

    def accepted(self) -> int:
        """Records the stand-in stored so far (cheap; includes duplicates)."""
        assert self.standin is not None
        return self.standin.records_accepted

    def check_alive(self) -> None:
        crashed = [p for p in self.processes if p.crashed()]
        if crashed:
            process = crashed[0]
            code = process.proc.returncode if process.proc else "?"
            raise AssertionError(self.explain(f"{process.name} exited by itself with code {code}"))

    def wait_for(self, condition: Callable[[], bool], timeout_s: float, what: str, poll_s: float = 0.05) -> None:
        deadline = time.monotonic() + timeout_s
        while not condition():
            self.check_alive()
            if time.monotonic() > deadline:
                raise AssertionError(self.explain(f"timed out after {timeout_s:.0f}s waiting for {what}"))
            time.sleep(poll_s)

    def wait_accepted(self, count: int, timeout_s: float) -> None:
        self.wait_for(lambda: self.accepted() >= count, timeout_s, f"{count} records stored by the stand-in")

    def wait_progress(self, target: float, timeout_s: float, *, fresh: int = 0) -> None:
        """Until the stand-in stored ``target`` records (repeats included) and ``fresh`` more than now, capped at
        95 % of the deliverable records so the goal is always reached (repeats only add to the count)."""
        cap = int(0.95 * self.workload.count("deliver"))
        self.wait_accepted(min(max(int(target), self.accepted() + fresh), cap), timeout_s)

    def next_commit(self, timeout_s: float) -> bool:
        """Wait until the group's committed offsets move; False when they did not within ``timeout_s``."""
        before = self.offsets()
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            self.check_alive()
            now = self.offsets()
            if before is None:
                before = now
            elif now is not None and now[0] != before[0]:
                return True
            time.sleep(0.02)
        return False

    def offsets(self) -> tuple[list[int], list[int]] | None:
        assert self.watch is not None
        return self.watch.offsets()

    def caught_up(self) -> bool:
        """The producer is done and the group committed every partition's end offset."""
        if self.streamer is None or not self.streamer.done.is_set():
            return False
        found = self.offsets()
        if found is None:
            return False
        committed, ends = found
        return committed == ends and sum(ends) == len(self.workload.items)

    def wait_done(self, timeout_s: float) -> None:
        """Until every expected record is accounted for (stored or dead-lettered) and offsets are committed."""
        assert self.dlq is not None and self.streamer is not None
        deadline = time.monotonic() + timeout_s
        caught_up_since: float | None = None
        while True:
            self.check_alive()
            self.dlq.poll(0.2)
            if self.caught_up():
                caught_up_since = caught_up_since or time.monotonic()
                if not self.missing():
                    return
                if time.monotonic() - caught_up_since > 5.0:
                    missing = self.missing()
                    raise AssertionError(self.explain(
                        f"offsets committed to the end, yet {len(missing)} records unaccounted for (lost)"
                    ))
            else:
                caught_up_since = None
            if time.monotonic() > deadline:
                raise AssertionError(self.explain(f"not done after {timeout_s:.0f}s"))
            time.sleep(0.3)

    def missing(self) -> list[Item]:
        """Expected records neither stored nor dead-lettered yet (cheap enough to poll)."""
        assert self.standin is not None and self.dlq is not None
        requests = self.standin.requests
        acc = account(self.workload, requests, list(self.dlq.letters), self.topic, {})
        return acc.lost

    def stop_all(self, timeout_s: float = 60.0) -> None:
        """SIGTERM every live processor; each must exit 0 within the drain timeout (plus closing time)."""
        drain_limit = float(self.env.get("PROCESSOR_DRAIN_TIMEOUT_S", "20"))
        for process in self.processes:
            if process.alive:
                code, seconds = process.terminate(timeout_s)
                self.drains.append(seconds)
                assert code == 0, self.explain(f"{process.name} exited with {code} after SIGTERM")
                assert seconds <= drain_limit + 10, self.explain(
                    f"{process.name} took {seconds:.1f}s to stop (drain timeout {drain_limit:.0f}s)"
                )

    def finish(self) -> Accounting:
        """Stop everything, read the DLQ to its end, account, fill the row (assertions come after)."""
        assert self.standin is not None and self.dlq is not None
        self.stop_all()
        found = self.offsets()
        letters = self.dlq.read_to_end()
        snapshot = self.standin.snapshot()
        acc = account(self.workload, snapshot.requests, letters, self.topic, snapshot.profiles)
        self.accounting = acc
        row = self.row
        row.deliver = self.workload.count("deliver")
        row.delivered = sum(1 for item in self.workload.items if item.expect == "deliver" and acc.delivered[item.index])
        row.lost = len(acc.lost)
        row.duplicates = acc.duplicates
        per_incident = acc.duplicates_after(self.incidents)
        row.max_dup_per_incident = max(per_incident[:-1], default=0)
        row.dlq_expected = self.workload.count("dlq")
        row.dlq_actual = len(acc.dead)
        row.dlq_wrong = len(acc.wrong_dead) + len(acc.skipped_leaks)
        row.order_violations = len(acc.order_violations)
        row.state_mismatches = len(acc.state_mismatches)
        row.incidents = len(self.incidents)
        row.peak_in_flight = max((p.peak_in_flight for p in self.processes), default=0)
        row.peak_rss_mb = round(max((p.peak_rss_kb for p in self.processes), default=0) / 1024, 1)
        row.max_drain_s = round(max(self.drains, default=0.0), 1)
        notes = []
        if acc.dead_duplicates:
            notes.append(f"{acc.dead_duplicates} repeated dead letters")
        if acc.replays:
            notes.append(f"{acc.replays} per-user replays")
        if per_incident[-1]:
            notes.append(f"{per_incident[-1]} duplicates before any incident")
        if found is not None and found[0] != found[1]:
            notes.append(f"committed {found[0]} != end {found[1]}")
        row.notes = "; ".join(notes)
        row.status = "ok" if self.clean(acc) and (found is not None and found[0] == found[1]) else "FAIL"
        self.final_offsets = found
        self.per_incident = per_incident
        return acc

    @staticmethod
    def clean(acc: Accounting) -> bool:
        return not (acc.lost or acc.unexpected or acc.wrong_dead or acc.order_violations or acc.state_mismatches
                    or acc.skipped_leaks)

    # -- diagnosis --
    def explain(self, headline: str, acc: Accounting | None = None) -> str:
        lines = [f"[{self.name}] {headline}", f"seed {self.seed}; topic {self.topic}; group {self.group}; "
                 f"incidents {[label for _, label in self.incidents]}"]
        acc = acc or self.accounting
        if acc is not None:
            lines.append(
                f"lost {len(acc.lost)}, duplicates {acc.duplicates}, dead letters {len(acc.dead)} "
                f"(wrong {len(acc.wrong_dead)}), unexpected {len(acc.unexpected)}, order violations "
                f"{len(acc.order_violations)}, state mismatches {len(acc.state_mismatches)}"
            )
            for item in acc.lost[:8]:
                lines.append(f"  lost: item {item.index} {item.kind} {item.label} of {item.user} "
                             f"at [{item.partition}]@{item.offset} (expected {item.expect} {item.code or ''})")
            for label, entries in (("unexpected", acc.unexpected), ("wrong dead letter", acc.wrong_dead),
                                   ("order", acc.order_violations), ("state", acc.state_mismatches),
                                   ("skipped", acc.skipped_leaks)):
                for entry in entries[:5]:
                    lines.append(f"  {label}: {entry}")
        else:
            with contextlib.suppress(Exception):
                missing = self.missing()
                lines.append(f"{len(missing)} records not yet accounted for, e.g. "
                             + ", ".join(f"{i.index}:{i.kind}@[{i.partition}]{i.offset}" for i in missing[:8]))
        with contextlib.suppress(Exception):
            lines.append(f"offsets (committed, end): {self.offsets()}")
        if self.standin is not None:
            with contextlib.suppress(Exception):
                lines.append(f"stand-in: {self.standin.counters()}")
        for process in self.processes[-3:]:
            lines.append(f"---- {process.name} (pid {process.proc.pid if process.proc else '?'}, "
                         f"exit {process.proc.returncode if process.proc else '?'}) log {process.log_path}:")
            lines.append(process.tail())
        return "\n".join(lines)
