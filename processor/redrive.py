"""``processor redrive``: produce dead letters back to the topic they came from once their cause is fixed.

Without ``--execute`` it only prints a plan (what would go where, grouped by stage, error class and code);
nothing is produced and nothing is committed.

Where a re-drive has got to is kept in Kafka, by its own consumer group ``<KAFKA_GROUP_ID>.redrive`` on the
dead-letter topic(s), so a letter re-driven once is not re-driven by the next run.

Position. Per dead-letter partition the group's committed offset is the first letter not yet done, the processor's
own rule (commit = first offset not done). Filters (``--stage``, ``--code``) make the done letters non-contiguous:
a 515 re-driven after a decode failure that was left in place cannot be expressed by an offset alone. Committing
past the decode failure would hide it from every later run; committing nothing would re-drive the 515 again next
time. So each commit also carries, in its metadata (the short string Kafka stores with a committed offset), the
ranges of letters above the offset that were already re-driven, relative to it: ``redrive/1:3-40,52``. Every run,
filtered or not, skips those letters and moves the offset over them once the letters before them are done. Any
sequence of filtered and unfiltered runs therefore re-drives each letter once and never skips one. The metadata
stays under Kafka's default limit (``offset.metadata.max.bytes`` = 4096): when a filtered run would need more
ranges than fit (hundreds of matching letters interleaved with letters left in place) it stops in that partition
and says so; re-driving the letters in between, or a run without the filter, frees the room.

Range. A run reads from that position up to the end offset each partition had when the run started. Letters
written during the run (a re-driven record can fail again) wait for the next run instead of being chased.

Delivery. ``--execute`` produces each letter with its original key, value and headers (every ``x-dlq-*`` header
removed) with acks=all and idempotence: to ``--to-topic`` when given, else to the ``x-dlq-source-topic`` header's
topic and its original partition (``x-dlq-source-partition``), where the user's other events are. The record is
stamped with the time of the re-drive; the event's own time is in its payload, which is what CleverTap receives.
Letters are produced in batches; a batch's position is committed only after the broker acknowledged every letter
in it. Killing the command loses nothing: the letters produced since the last commit are produced again by the
next run (duplicates: profile uploads are idempotent, events are not de-duplicated by CleverTap). A letter whose
produce failed is not done: the position stays before it, the run stops after that batch and exits 1. A letter
with no usable target (no source-topic header, a missing topic, a dead-letter topic) is left in place.

Order. A re-driven record reaches CleverTap after everything its user did since it first failed: a re-driven
profile upload can overwrite newer values of the same traits.

Run one re-drive at a time per group: two concurrent runs would both re-drive the same letters.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import json
import logging
import os
import re
import signal
import sys
import threading
import time
from bisect import bisect_left, bisect_right
from collections import Counter
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from types import FrameType
from typing import Any, TypeVar

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, Producer, TopicPartition

from processor.errors import ConfigError
from processor.kafka.dlq import HEADER_PREFIX
from processor.logs import setup_logging
from processor.settings import _TOPIC_NAME, _consumer_only, _Env, _kafka_extra, dead_letter_topic, kafka_topics

log = logging.getLogger(__name__)

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_CONFIG = 2
EXIT_INTERRUPTED = 130

STAGES = ("decode", "route", "map", "validate", "clevertap")
GROUP_SUFFIX = ".redrive"
METADATA_PREFIX = "redrive/1:"
# Kafka's default offset.metadata.max.bytes is 4096; stay clear of it.
METADATA_BUDGET = 3800
METADATA_LIMIT = 4000
BATCH_SIZE = 500
KAFKA_TIMEOUT_S = 30.0

Headers = Sequence[tuple[str, bytes | None]]
_T = TypeVar("_T")


# --------------------------------------------------------------------------------------------------------------
# Settings: only what a re-drive needs (no CleverTap variables)


@dataclass(frozen=True)
class RedriveSettings:
    """The Kafka part of the processor's settings, read the same way (same variables, same validation)."""

    bootstrap_servers: str
    topics: tuple[str, ...]
    group_id: str = "clevertap-processor"
    dlq_topic: str | None = None
    kafka_extra: Mapping[str, str] = field(default_factory=dict, repr=False)  # may hold secrets
    log_level: str = "WARNING"
    log_format: str = "text"

    @property
    def redrive_group(self) -> str:
        return self.group_id + GROUP_SUFFIX

    def dlq_topic_for(self, source_topic: str) -> str:
        return self.dlq_topic or f"{source_topic}.dlq"

    def dlq_topics(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(self.dlq_topic_for(topic) for topic in self.topics))

    def consumer_config(self) -> dict[str, Any]:
        """Reads the dead-letter topics by explicit assignment; only this command commits, and only by hand."""
        config: dict[str, Any] = {
            "bootstrap.servers": self.bootstrap_servers,
            "client.id": "clevertap-processor-redrive",
            "auto.offset.reset": "earliest",
        }
        config.update(self.kafka_extra)
        config.update(
            {
                "group.id": self.redrive_group,
                "enable.auto.commit": False,
                "enable.auto.offset.store": False,
                "enable.partition.eof": True,
            }
        )
        return config

    def producer_config(self) -> dict[str, Any]:
        """Every re-driven record acknowledged by all in-sync replicas, in order, without producer duplicates.

        Keyed records without a known partition (``--to-topic``) are placed by murmur2, Java clients' default;
        ``KAFKA_CONFIG_PARTITIONER`` overrides it.
        """
        config: dict[str, Any] = {
            "bootstrap.servers": self.bootstrap_servers,
            "client.id": "clevertap-processor-redrive",
            "partitioner": "murmur2_random",
            "linger.ms": 20,
            "message.timeout.ms": 60000,
        }
        config.update({k: v for k, v in self.kafka_extra.items() if not _consumer_only(k)})
        config.update({"acks": "all", "enable.idempotence": True})
        return config


def load_redrive_settings(env: Mapping[str, str] | None = None, *, need_topics: bool = True) -> RedriveSettings:
    """Build :class:`RedriveSettings` from the environment; ``KAFKA_TOPICS`` is optional when ``need_topics`` is
    false (the dead-letter topic was named on the command line).

    Raises :class:`ConfigError` naming the first problem; the others are in its ``__notes__``.
    """
    source = _Env(os.environ if env is None else env)
    bootstrap = source.required("KAFKA_BOOTSTRAP_SERVERS", "host:port[,host:port...] of the Kafka cluster")
    topics = kafka_topics(
        source, "comma-separated topics whose dead letters to re-drive", required=need_topics
    )
    group_id = source.raw("KAFKA_GROUP_ID") or "clevertap-processor"
    dlq_topic = dead_letter_topic(source, topics)
    extra = _kafka_extra(source)
    log_level = source.choice("LOG_LEVEL", "warning", ("debug", "info", "warning", "error")).upper()
    log_format = source.choice("LOG_FORMAT", "text", ("text", "json"))
    source.raise_problems()
    return RedriveSettings(
        bootstrap_servers=bootstrap,
        topics=topics,
        group_id=group_id,
        dlq_topic=dlq_topic,
        kafka_extra=extra,
        log_level=log_level,
        log_format=log_format,
    )


# --------------------------------------------------------------------------------------------------------------
# Pure parts: letters, filters, targets, the plan, the per-partition ledger


@dataclass(frozen=True, slots=True)
class Letter:
    """A dead letter as read back: the original record plus what the ``x-dlq-*`` headers say about it."""

    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[str, bytes | None], ...]
    stage: str | None = None
    error_class: str | None = None
    code: int | None = None
    message: str | None = None
    source_topic: str | None = None
    source_partition: int | None = None


def _text(value: bytes | None) -> str | None:
    return None if value is None else value.decode("utf-8", errors="replace")


def _integer(value: bytes | None) -> int | None:
    text = _text(value)
    if text is None:
        return None
    try:
        return int(text.strip())
    except ValueError:
        return None


def parse_letter(key: bytes | None, value: bytes | None, headers: Headers | None) -> Letter:
    """Reads the ``x-dlq-*`` headers (the last one wins when a name repeats); missing or unreadable ones are None."""
    all_headers = tuple(headers or ())
    ours = {name[len(HEADER_PREFIX) :]: raw for name, raw in all_headers if name.startswith(HEADER_PREFIX)}
    return Letter(
        key=key,
        value=value,
        headers=all_headers,
        stage=_text(ours.get("stage")) or None,
        error_class=_text(ours.get("error-class")) or None,
        code=_integer(ours.get("error-code")),
        message=_text(ours.get("error-message")),
        source_topic=_text(ours.get("source-topic")) or None,
        source_partition=_integer(ours.get("source-partition")),
    )


def message_headers(message: Message) -> list[tuple[str, bytes | None]]:
    """A consumed record's headers as (name, bytes) pairs, in order."""
    raw = message.headers()
    if not raw:
        return []
    pairs = raw.items() if isinstance(raw, dict) else raw
    return [(name, value.encode("utf-8") if isinstance(value, str) else value) for name, value in pairs]


def strip_dlq_headers(headers: Headers | None) -> list[tuple[str, bytes | None]]:
    """The record's own headers, in their order, without any ``x-dlq-*`` header."""
    return [(name, value) for name, value in headers or () if not name.startswith(HEADER_PREFIX)]


@dataclass(frozen=True, slots=True)
class LetterFilter:
    """``--stage`` and ``--code``: any of the stages and any of the codes; an empty set matches everything."""

    stages: frozenset[str] = frozenset()
    codes: frozenset[int] = frozenset()

    @property
    def active(self) -> bool:
        return bool(self.stages or self.codes)

    def matches(self, letter: Letter) -> bool:
        if self.stages and letter.stage not in self.stages:
            return False
        return not self.codes or letter.code in self.codes

    def describe(self) -> str:
        if not self.active:
            return "none (every letter)"
        parts = []
        if self.stages:
            parts.append("stage " + " or ".join(sorted(self.stages)))
        if self.codes:
            parts.append("code " + " or ".join(str(c) for c in sorted(self.codes)))
        return " and ".join(parts)


@dataclass(frozen=True, slots=True)
class Target:
    topic: str
    partition: int | None  # None: let the producer's partitioner place it by key


def resolve_target(letter: Letter, to_topic: str | None, dlq_topics: Collection[str]) -> Target | str:
    """Where a letter goes back to, or why it cannot go anywhere (a string).

    ``to_topic`` wins over the ``x-dlq-source-topic`` header. The original partition is kept whenever the target
    is the topic the letter came from, so it lands where that user's other events are.
    """
    topic = to_topic or letter.source_topic
    if not topic:
        return "no x-dlq-source-topic header (use --to-topic)"
    if topic in dlq_topics:
        return f"target {topic} is a dead-letter topic"
    if topic == letter.source_topic and letter.source_partition is not None and letter.source_partition >= 0:
        return Target(topic, letter.source_partition)
    return Target(topic, None)


@dataclass(frozen=True, slots=True)
class PlanGroup:
    stage: str | None
    error_class: str | None
    code: int | None
    count: int
    first_message: str | None
    targets: tuple[tuple[str, int], ...]  # (topic, letters), most letters first

    def as_dict(self) -> dict[str, Any]:
        return {
            "stage": self.stage,
            "error_class": self.error_class,
            "code": self.code,
            "count": self.count,
            "first_message": self.first_message,
            "targets": dict(self.targets),
        }


class PlanBuilder:
    """Groups the letters to re-drive by (stage, error class, code), keeping each group's first message."""

    def __init__(self) -> None:
        self._counts: Counter[tuple[str | None, str | None, int | None]] = Counter()
        self._first: dict[tuple[str | None, str | None, int | None], str | None] = {}
        self._targets: dict[tuple[str | None, str | None, int | None], Counter[str]] = {}

    def add(self, letter: Letter, target_topic: str) -> None:
        key = (letter.stage, letter.error_class, letter.code)
        self._counts[key] += 1
        self._first.setdefault(key, letter.message)
        self._targets.setdefault(key, Counter())[target_topic] += 1

    def groups(self) -> list[PlanGroup]:
        """Largest group first; ties by stage, class and code (missing values last)."""

        def order(key: tuple[str | None, str | None, int | None]) -> tuple[Any, ...]:
            stage, error_class, code = key
            return (-self._counts[key], stage is None, stage or "", error_class is None, error_class or "",
                    code is None, code or 0)

        return [
            PlanGroup(
                stage=key[0],
                error_class=key[1],
                code=key[2],
                count=self._counts[key],
                first_message=self._first[key],
                targets=tuple(sorted(self._targets[key].items(), key=lambda item: (-item[1], item[0]))),
            )
            for key in sorted(self._counts, key=order)
        ]


class OffsetRanges:
    """A set of offsets held as sorted, disjoint, non-adjacent inclusive ranges ``(first, last)``."""

    __slots__ = ("_firsts", "_lasts")

    def __init__(self, ranges: Iterable[tuple[int, int]] = ()) -> None:
        self._firsts: list[int] = []
        self._lasts: list[int] = []
        for first, last in ranges:
            self.add_range(first, last)

    def __contains__(self, offset: object) -> bool:
        if not isinstance(offset, int):
            return False
        i = bisect_right(self._firsts, offset) - 1
        return i >= 0 and offset <= self._lasts[i]

    def __repr__(self) -> str:
        return f"OffsetRanges({self.ranges()!r})"

    def ranges(self) -> list[tuple[int, int]]:
        return list(zip(self._firsts, self._lasts, strict=True))

    @property
    def range_count(self) -> int:
        return len(self._firsts)

    def add_range(self, first: int, last: int) -> None:
        if first > last:
            return
        lo = bisect_left(self._lasts, first - 1)  # the first range touching [first, last] or after it
        hi = bisect_right(self._firsts, last + 1)  # past the last range touching it
        if lo < hi:
            first = min(first, self._firsts[lo])
            last = max(last, self._lasts[hi - 1])
        self._firsts[lo:hi] = [first]
        self._lasts[lo:hi] = [last]

    def add(self, offset: int) -> None:
        self.add_range(offset, offset)

    def remove(self, offset: int) -> None:
        i = bisect_right(self._firsts, offset) - 1
        if i < 0 or offset > self._lasts[i]:
            return
        pieces = [(f, last) for f, last in ((self._firsts[i], offset - 1), (offset + 1, self._lasts[i])) if f <= last]
        self._firsts[i : i + 1] = [f for f, _ in pieces]
        self._lasts[i : i + 1] = [last for _, last in pieces]

    def adds_range(self, offset: int) -> bool:
        """Whether adding ``offset`` would make one more range (it touches none)."""
        return offset not in self and offset - 1 not in self and offset + 1 not in self

    def first_missing_from(self, offset: int) -> int:
        """The smallest offset at or above ``offset`` that is not in the set."""
        i = bisect_right(self._firsts, offset) - 1
        if i >= 0 and offset <= self._lasts[i]:
            return self._lasts[i] + 1
        return offset

    def count_ranges_above(self, offset: int) -> int:
        return len(self._firsts) - bisect_right(self._firsts, offset)


_METADATA_PART = re.compile(r"^(\d+)(?:-(\d+))?$")


def encode_redriven(position: int, done: OffsetRanges, limit: int = METADATA_LIMIT) -> tuple[str, int]:
    """The commit metadata for ``position``: the done ranges above it, relative to it (``redrive/1:3-40,52``).

    Returns the metadata and how many ranges had to be left out to stay within ``limit`` characters (the
    farthest first; their letters would be re-driven again, never lost). ``""`` when nothing is above.
    """
    parts: list[str] = []
    for first, last in done.ranges():
        if last <= position:
            continue
        a, b = max(first, position + 1) - position, last - position
        parts.append(str(a) if a == b else f"{a}-{b}")
    dropped = 0
    while parts and len(METADATA_PREFIX) + len(",".join(parts)) > limit:
        parts.pop()
        dropped += 1
    return (METADATA_PREFIX + ",".join(parts) if parts else ""), dropped


def decode_redriven(position: int, metadata: str | None) -> OffsetRanges:
    """The done ranges recorded with a committed ``position``. Raises ValueError for metadata not written here."""
    if not metadata:
        return OffsetRanges()
    if not metadata.startswith(METADATA_PREFIX):
        raise ValueError(f"not redrive metadata: {metadata[:40]!r}")
    done = OffsetRanges()
    for part in metadata[len(METADATA_PREFIX) :].split(","):
        match = _METADATA_PART.match(part)
        if match is None:
            raise ValueError(f"bad range {part[:20]!r} in redrive metadata")
        first = int(match.group(1))
        last = int(match.group(2)) if match.group(2) is not None else first
        if first < 1 or last < first:
            raise ValueError(f"bad range {part[:20]!r} in redrive metadata")
        done.add_range(position + first, position + last)
    return done


class PartitionLedger:
    """What a run knows about one dead-letter partition.

    ``done`` holds the offsets that need no re-drive: re-driven (by this or an earlier run) and offsets known to
    hold no letter. The position to commit is the first offset at or after ``start`` that is not done; the done
    ranges above it travel in the commit metadata. Offsets are examined in increasing order up to ``high``.
    """

    def __init__(
        self, topic: str, partition: int, *, low: int, high: int, committed: int | None, metadata: str | None
    ) -> None:
        self.topic = topic
        self.partition = partition
        self.high = high
        self.note: str | None = None
        self.committed_state: tuple[int, str] | None = None
        done = OffsetRanges()
        if committed is not None and committed >= 0:
            self.committed_state = (committed, metadata or "")
        if committed is None or committed < 0:
            start = low
        elif committed > high:
            start = low
            self.note = f"committed offset {committed} is past the end {high} (topic re-created?): starting at {low}"
        else:
            start = max(committed, low)
            try:
                done = decode_redriven(committed, metadata)
            except ValueError as exc:
                self.note = f"ignored commit metadata ({exc}); letters above offset {committed} may be re-driven again"
        self.start = start
        self.done = done
        self.examined_until = start
        self.deferred_at: int | None = None
        self._stopped = start >= high
        span = max(high, *(last + 1 for _, last in done.ranges()), start + 1) - start
        self.max_ranges = max(1, (METADATA_BUDGET - len(METADATA_PREFIX)) // (2 * len(str(span)) + 2))

    @property
    def tp(self) -> tuple[str, int]:
        return (self.topic, self.partition)

    @property
    def finished(self) -> bool:
        return self._stopped or self.examined_until >= self.high

    def _skip_to(self, offset: int) -> None:
        """Nothing was found in ``[examined_until, offset)``; record it as done when that keeps ranges together."""
        gap_start = self.examined_until
        if offset > gap_start and (gap_start == self.start or gap_start - 1 in self.done):
            self.done.add_range(gap_start, offset - 1)
        self.examined_until = max(self.examined_until, offset)

    def examine(self, offset: int) -> bool:
        """The letter at ``offset`` is being looked at; True when an earlier run already re-drove it."""
        self._skip_to(offset)
        self.examined_until = offset + 1
        return offset in self.done

    def can_record(self, offset: int) -> bool:
        """Whether the re-drive of ``offset`` fits in the commit metadata (with every other done range)."""
        position = self.position()
        extra = 0 if offset == position or not self.done.adds_range(offset) else 1
        return self.done.count_ranges_above(position) + extra <= self.max_ranges

    def record(self, offset: int) -> None:
        """The letter at ``offset`` is being re-driven (optimistically done until :meth:`failed` says otherwise)."""
        self.done.add(offset)

    def failed(self, offset: int) -> None:
        self.done.remove(offset)

    def defer(self, offset: int) -> None:
        """Stop in this partition before ``offset`` (its re-drive could not be recorded)."""
        self.examined_until = offset
        self.deferred_at = offset
        self._stopped = True

    def reached_end(self, end: int) -> None:
        """Every letter below ``end`` has been delivered to this run."""
        self._skip_to(min(end, self.high))
        self._stopped = True

    def position(self) -> int:
        return self.done.first_missing_from(self.start)

    def recorded_above(self) -> int:
        position = self.position()
        return sum(last - max(first, position + 1) + 1 for first, last in self.done.ranges() if last > position)

    def commit_state(self) -> tuple[int, str, int]:
        """(offset, metadata, ranges left out of the metadata) to commit now."""
        position = self.position()
        metadata, dropped = encode_redriven(position, self.done)
        return position, metadata, dropped


# --------------------------------------------------------------------------------------------------------------
# The run


@dataclass(frozen=True)
class RedriveOptions:
    dlq_topics: tuple[str, ...]
    to_topic: str | None = None
    letter_filter: LetterFilter = LetterFilter()
    limit: int | None = None
    execute: bool = False
    batch_size: int = BATCH_SIZE
    read_timeout_s: float = KAFKA_TIMEOUT_S


@dataclass
class PartitionSummary:
    """``start``: where the run began; ``end``: the end offset seen at start; ``position``: the first letter not
    done when the run ended (for a plan: where an execution would get to); ``committed``: the group's committed
    offset afterwards (None: never committed); ``recorded_above``: offsets above the position recorded as done."""

    topic: str
    partition: int
    start: int
    end: int
    position: int
    committed: int | None
    recorded_above: int = 0

    def as_dict(self) -> dict[str, Any]:
        return {"topic": self.topic, "partition": self.partition, "start": self.start, "end": self.end,
                "position": self.position, "committed": self.committed, "recorded_above": self.recorded_above}


@dataclass
class RedriveReport:
    execute: bool
    group: str
    dlq_topics: tuple[str, ...]
    letter_filter: LetterFilter
    to_topic: str | None
    examined: int = 0
    selected: int = 0
    already_redriven: int = 0
    not_matching: int = 0
    failed: int = 0
    limit_reached: bool = False
    interrupted: bool = False
    redriven_to: Counter[str] = field(default_factory=Counter)
    unroutable: Counter[str] = field(default_factory=Counter)
    groups: list[PlanGroup] = field(default_factory=list)
    partitions: list[PartitionSummary] = field(default_factory=list)
    missing_dlq_topics: list[str] = field(default_factory=list)
    deferred: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    @property
    def redriven(self) -> int:
        return sum(self.redriven_to.values())

    def exit_code(self) -> int:
        if self.interrupted:
            return EXIT_INTERRUPTED
        if self.failed or self.errors or (self.execute and self.unroutable):
            return EXIT_FAILED
        return EXIT_OK

    def as_dict(self) -> dict[str, Any]:
        return {
            "mode": "execute" if self.execute else "plan",
            "group": self.group,
            "dlq_topics": list(self.dlq_topics),
            "filter": {"stages": sorted(self.letter_filter.stages), "codes": sorted(self.letter_filter.codes)},
            "to_topic": self.to_topic,
            "examined": self.examined,
            "selected": self.selected,
            "already_redriven": self.already_redriven,
            "not_matching": self.not_matching,
            "unroutable": dict(self.unroutable),
            "redriven": self.redriven,
            "redriven_to": dict(self.redriven_to),
            "failed": self.failed,
            "limit_reached": self.limit_reached,
            "interrupted": self.interrupted,
            "groups": [g.as_dict() for g in self.groups],
            "partitions": [p.as_dict() for p in self.partitions],
            "missing_dlq_topics": self.missing_dlq_topics,
            "deferred": self.deferred,
            "notes": self.notes,
            "errors": self.errors,
            "exit_code": self.exit_code(),
        }


class RedriveError(Exception):
    """The run could not start or went wrong in a way no letter explains (the broker unreachable, a fatal error)."""


class _TopicCatalog:
    """Partition counts of target topics, asked once each; None for a topic that does not exist."""

    def __init__(self, consumer: Consumer) -> None:
        self._consumer = consumer
        self._counts: dict[str, int | None] = {}

    def partitions(self, topic: str) -> int | None:
        if topic not in self._counts:
            self._counts[topic] = _partition_count(self._consumer, topic)
        return self._counts[topic]


def _partition_count(consumer: Consumer, topic: str) -> int | None:
    # A consumer does not create topics by asking for their metadata (allow.auto.create.topics is false).
    try:
        metadata = consumer.list_topics(topic=topic, timeout=KAFKA_TIMEOUT_S)
    except KafkaException as exc:
        raise RedriveError(f"cannot read the metadata of {topic}: {exc.args[0]}") from None
    described = metadata.topics.get(topic)
    if described is None or described.error is not None or not described.partitions:
        return None
    return len(described.partitions)


_COORDINATOR_CODES = frozenset(
    {KafkaError.NOT_COORDINATOR, KafkaError.COORDINATOR_LOAD_IN_PROGRESS, KafkaError.COORDINATOR_NOT_AVAILABLE}
)


def _with_retries(call: Callable[[], _T], deadline_s: float = KAFKA_TIMEOUT_S) -> _T:
    """``call()``, again while the group coordinator is moving or loading (a fresh or restarting cluster)."""
    deadline = time.monotonic() + deadline_s
    pause = 0.1
    while True:
        try:
            return call()
        except KafkaException as exc:
            error = exc.args[0] if exc.args and isinstance(exc.args[0], KafkaError) else None
            transient = error is not None and (error.retriable() or error.code() in _COORDINATOR_CODES)
            if not transient or time.monotonic() + pause > deadline:
                raise
        time.sleep(pause)
        pause = min(pause * 2, 2.0)


def _open_ledgers(consumer: Consumer, topics: Sequence[str], report: RedriveReport) -> list[PartitionLedger]:
    ledgers: list[PartitionLedger] = []
    for topic in topics:
        count = _partition_count(consumer, topic)
        if count is None:
            report.missing_dlq_topics.append(topic)
            continue
        tps = [TopicPartition(topic, p) for p in range(count)]
        try:
            committed = _with_retries(functools.partial(consumer.committed, tps, timeout=KAFKA_TIMEOUT_S))
            for tp in committed:
                low, high = consumer.get_watermark_offsets(
                    TopicPartition(topic, tp.partition), timeout=KAFKA_TIMEOUT_S, cached=False
                )
                ledger = PartitionLedger(
                    topic, tp.partition, low=low, high=high,
                    committed=tp.offset if tp.offset >= 0 else None, metadata=tp.metadata,
                )
                if ledger.note:
                    report.notes.append(f"{topic}[{tp.partition}]: {ledger.note}")
                ledgers.append(ledger)
        except KafkaException as exc:
            raise RedriveError(f"cannot read the positions of {topic}: {exc.args[0]}") from None
    return ledgers


@dataclass
class _InFlight:
    ledger: PartitionLedger
    offset: int
    target: str
    seq: int


def run_redrive(
    settings: RedriveSettings, options: RedriveOptions, *, stop: threading.Event | None = None
) -> RedriveReport:
    """Plan or execute one re-drive (see the module docstring). Raises :class:`RedriveError` when it cannot start."""
    report = RedriveReport(
        execute=options.execute, group=settings.redrive_group, dlq_topics=options.dlq_topics,
        letter_filter=options.letter_filter, to_topic=options.to_topic,
    )
    librdkafka_log = logging.getLogger("processor.librdkafka")
    consumer = Consumer({**settings.consumer_config(), "logger": librdkafka_log})
    producer: Producer | None = None
    try:
        catalog = _TopicCatalog(consumer)
        if options.to_topic is not None and catalog.partitions(options.to_topic) is None:
            raise RedriveError(f"target topic {options.to_topic} does not exist")
        ledgers = _open_ledgers(consumer, options.dlq_topics, report)
        producer_config = settings.producer_config()
        if options.execute:
            producer = Producer({**producer_config, "logger": librdkafka_log})
        # Every delivery report arrives within message.timeout.ms; a batch waits that long at most.
        flush_timeout_s = float(producer_config.get("message.timeout.ms", 300000)) / 1000 + 10
        _Run(consumer, producer, catalog, ledgers, options, report, stop or threading.Event(), flush_timeout_s).run()
        report.partitions = [
            PartitionSummary(
                ledger.topic, ledger.partition, ledger.start, ledger.high, ledger.position(),
                committed=ledger.committed_state[0] if ledger.committed_state is not None else None,
                recorded_above=ledger.recorded_above(),
            )
            for ledger in ledgers
        ]
    finally:
        if producer is not None:
            producer.flush(5)
        consumer.close()
    return report


class _Run:
    def __init__(
        self,
        consumer: Consumer,
        producer: Producer | None,
        catalog: _TopicCatalog,
        ledgers: list[PartitionLedger],
        options: RedriveOptions,
        report: RedriveReport,
        stop: threading.Event,
        flush_timeout_s: float,
    ) -> None:
        self.consumer = consumer
        self.producer = producer
        self.catalog = catalog
        self.ledgers = {ledger.tp: ledger for ledger in ledgers}
        self.options = options
        self.report = report
        self.stop = stop
        self.plan = PlanBuilder()
        self.flush_timeout_s = flush_timeout_s
        self._seq = 0
        self._results: dict[int, str | None] = {}  # delivery outcomes by produce sequence number

    def run(self) -> None:
        active = [ledger for ledger in self.ledgers.values() if not ledger.finished]
        if active:
            self.consumer.assign([TopicPartition(lg.topic, lg.partition, lg.start) for lg in active])
        last_progress = time.monotonic()
        try:
            while any(not ledger.finished for ledger in self.ledgers.values()):
                if self.stop.is_set():
                    self.report.interrupted = True
                    break
                messages = self.consumer.consume(self.options.batch_size, 0.5)
                if messages:
                    last_progress = time.monotonic()
                elif time.monotonic() - last_progress > self.options.read_timeout_s:
                    unfinished = [f"{lg.topic}[{lg.partition}]" for lg in self.ledgers.values() if not lg.finished]
                    self.report.errors.append(
                        f"no letter arrived for {self.options.read_timeout_s:.0f}s from {', '.join(unfinished)}"
                    )
                    break
                in_flight, keep_going = self._take(messages)
                if in_flight and not self._settle(in_flight):
                    keep_going = False
                if self.options.execute and not self._commit():
                    keep_going = False
                self._pause_finished()
                if not keep_going:
                    break
        finally:
            self.report.groups = self.plan.groups()

    def _take(self, messages: list[Message]) -> tuple[list[_InFlight], bool]:
        """Looks at a batch of letters; produces the chosen ones (execute). False when the run must stop."""
        in_flight: list[_InFlight] = []
        for message in messages:
            topic, partition, offset = message.topic(), message.partition(), message.offset()
            ledger = self.ledgers.get((topic, partition)) if topic is not None and partition is not None else None
            if ledger is None or ledger.finished or offset is None:
                continue
            error = message.error()
            if error is not None:
                if error.code() == KafkaError._PARTITION_EOF:
                    ledger.reached_end(offset)
                elif error.fatal():
                    raise RedriveError(f"{ledger.topic}[{ledger.partition}]: {error.str()}")
                else:
                    log.warning("kafka %s[%s]: %s", ledger.topic, ledger.partition, error.str())
                continue
            if offset < ledger.examined_until:
                continue
            if offset >= ledger.high:  # written after the run started: the next run's
                ledger.reached_end(ledger.high)
                continue
            if self.stop.is_set():
                self.report.interrupted = True
                return in_flight, False
            if self.options.limit is not None and self.report.selected >= self.options.limit:
                self.report.limit_reached = True
                return in_flight, False
            if not self._look_at(ledger, offset, message, in_flight):
                return in_flight, False
        return in_flight, True

    def _look_at(self, ledger: PartitionLedger, offset: int, message: Message, in_flight: list[_InFlight]) -> bool:
        if ledger.examine(offset):
            self.report.examined += 1
            self.report.already_redriven += 1
            return True
        letter = parse_letter(message.key(), message.value(), message_headers(message))
        if not self.options.letter_filter.matches(letter):
            self.report.examined += 1
            self.report.not_matching += 1
            return True
        target = resolve_target(letter, self.options.to_topic, self.options.dlq_topics)
        if isinstance(target, Target):
            partitions = self.catalog.partitions(target.topic)
            if partitions is None:
                target = f"target topic {target.topic} does not exist"
            elif target.partition is not None and target.partition >= partitions:
                target = Target(target.topic, None)
        if not isinstance(target, Target):
            self.report.examined += 1
            self.report.unroutable[target] += 1
            return True
        if not ledger.can_record(offset):
            ledger.defer(offset)
            self.report.deferred.append(
                f"{ledger.topic}[{ledger.partition}] stopped at offset {offset}: too many re-driven letters "
                "interleaved with letters left in place to record; re-drive those (or run without the filter) first"
            )
            return True
        self.report.examined += 1
        self.report.selected += 1
        self.plan.add(letter, target.topic)
        ledger.record(offset)
        if self.producer is not None:
            self._seq += 1
            in_flight.append(_InFlight(ledger, offset, target.topic, self._seq))
            self._produce(target, message, self._seq)
        return True

    def _produce(self, target: Target, message: Message, seq: int) -> None:
        assert self.producer is not None
        kwargs: dict[str, Any] = {
            "key": message.key(),
            "value": message.value(),
            "on_delivery": self._on_delivery(seq),
        }
        headers = strip_dlq_headers(message_headers(message))
        if headers:
            kwargs["headers"] = headers
        if target.partition is not None:
            kwargs["partition"] = target.partition
        while True:
            try:
                self.producer.produce(target.topic, **kwargs)
                break
            except BufferError:
                self.producer.poll(0.1)  # the local queue is full: let deliveries drain it
        self.producer.poll(0)

    def _on_delivery(self, seq: int) -> Callable[[KafkaError | None, Message], None]:
        # Runs inside poll()/flush() on this thread.
        def delivered(error: KafkaError | None, message: Message) -> None:
            self._results[seq] = None if error is None else error.str()

        return delivered

    def _settle(self, in_flight: list[_InFlight]) -> bool:
        """Waits for every acknowledgement of the batch; False when any letter was not acknowledged."""
        if self.producer is None:
            return True
        # flush() serves the delivery callbacks: every outcome is known when it returns, or never will be in time.
        self.producer.flush(self.flush_timeout_s)
        ok = True
        for item in in_flight:
            error = self._results.pop(item.seq, "not acknowledged in time")
            if error is None:
                self.report.redriven_to[item.target] += 1
                continue
            ok = False
            item.ledger.failed(item.offset)
            self.report.failed += 1
            if len(self.report.errors) < 10:
                self.report.errors.append(
                    f"{item.ledger.topic}[{item.ledger.partition}] offset {item.offset} → {item.target}: {error}"
                )
        return ok

    def _commit(self) -> bool:
        offsets: list[TopicPartition] = []
        states: dict[tuple[str, int], tuple[int, str]] = {}
        for ledger in self.ledgers.values():
            position, metadata, dropped = ledger.commit_state()
            if dropped:
                self.report.notes.append(
                    f"{ledger.topic}[{ledger.partition}]: {dropped} ranges of re-driven letters did not fit in the "
                    "commit metadata; those letters will be re-driven again by the next run"
                )
            unchanged = ledger.committed_state or (ledger.start, "")  # never committed: nothing gained yet
            if unchanged == (position, metadata):
                continue
            offsets.append(TopicPartition(ledger.topic, ledger.partition, position, metadata=metadata))
            states[ledger.tp] = (position, metadata)
        if not offsets:
            return True
        try:
            results = _with_retries(lambda: self.consumer.commit(offsets=offsets, asynchronous=False))
        except KafkaException as exc:
            self.report.errors.append(f"commit failed: {exc.args[0]}")
            return False
        ok = True
        for tp in results or []:
            if tp.error is not None:
                self.report.errors.append(f"commit of {tp.topic}[{tp.partition}] failed: {tp.error}")
                ok = False
            else:
                self.ledgers[(tp.topic, tp.partition)].committed_state = states[(tp.topic, tp.partition)]
        return ok

    def _pause_finished(self) -> None:
        finished = [TopicPartition(lg.topic, lg.partition) for lg in self.ledgers.values() if lg.finished]
        if finished:
            with contextlib.suppress(KafkaException):
                self.consumer.pause(finished)


# --------------------------------------------------------------------------------------------------------------
# Command line

DESCRIPTION = """\
Re-drive dead letters: produce them back to the topic they came from once the cause is fixed.

Reads the dead-letter topic(s) as consumer group <KAFKA_GROUP_ID>.redrive, from that group's committed position
(the beginning the first time) up to the end seen at start. Without --execute it prints a plan and changes
nothing. With --execute each letter goes back with its original key, value and headers (x-dlq-* removed) to
--to-topic or to its x-dlq-source-topic (same partition), acknowledged by the broker before the group's position
moves past it. A letter is re-driven once across runs, with or without filters; letters not matching a filter
stay for later. Killed midway, the next run re-drives the last unacknowledged batch again (duplicates, no loss).

Needs only KAFKA_BOOTSTRAP_SERVERS, KAFKA_TOPICS (unless --dlq-topic), KAFKA_GROUP_ID, KAFKA_DLQ_TOPIC and
KAFKA_CONFIG_*. Exit codes: 0 done, 1 a letter could not be re-driven or Kafka failed, 2 configuration,
130 interrupted."""


def _positive_int(text: str) -> int:
    try:
        number = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a whole number, got {text!r}") from None
    if number < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {number}")
    return number


def add_redrive_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "redrive",
        help="re-drive dead letters back to their topic (prints a plan unless --execute)",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--dlq-topic", metavar="T",
        help="dead-letter topic to read (default: KAFKA_DLQ_TOPIC, or <topic>.dlq for each of KAFKA_TOPICS)",
    )
    parser.add_argument(
        "--to-topic", metavar="T",
        help="produce every letter to T (default: the topic in its x-dlq-source-topic header, same partition)",
    )
    parser.add_argument(
        "--stage", action="append", choices=STAGES, default=[],
        help="only letters dead-lettered at this stage (repeatable: any of them)",
    )
    parser.add_argument(
        "--code", action="append", type=int, default=[], metavar="N",
        help="only letters with this x-dlq-error-code, e.g. 515 (repeatable: any of them)",
    )
    parser.add_argument("--limit", type=_positive_int, metavar="N", help="re-drive at most N letters in this run")
    parser.add_argument("--execute", action="store_true", help="produce the letters and commit (default: plan only)")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    return parser


def options_from_args(args: argparse.Namespace, settings: RedriveSettings) -> RedriveOptions:
    """Raises :class:`ConfigError` naming the option for a bad topic name or a target that is a DLQ."""
    if args.dlq_topic is not None and not _TOPIC_NAME.match(args.dlq_topic):
        raise ConfigError("--dlq-topic", f"{args.dlq_topic!r} is not a valid Kafka topic name")
    dlq_topics = (args.dlq_topic,) if args.dlq_topic is not None else settings.dlq_topics()
    if args.to_topic is not None:
        if not _TOPIC_NAME.match(args.to_topic):
            raise ConfigError("--to-topic", f"{args.to_topic!r} is not a valid Kafka topic name")
        if args.to_topic in dlq_topics:
            raise ConfigError("--to-topic", f"{args.to_topic} is the dead-letter topic being read")
    return RedriveOptions(
        dlq_topics=dlq_topics,
        to_topic=args.to_topic,
        letter_filter=LetterFilter(frozenset(args.stage or ()), frozenset(args.code or ())),
        limit=args.limit,
        execute=bool(args.execute),
    )


def _print_config_error(exc: ConfigError) -> None:
    print(f"configuration error: {exc}", file=sys.stderr)
    for note in getattr(exc, "__notes__", []):
        for line in note.splitlines():
            print(f"configuration error: {line}", file=sys.stderr)


@contextlib.contextmanager
def _stop_on_signals(stop: threading.Event) -> Iterator[None]:
    """The first SIGINT/SIGTERM finishes the batch in flight and commits it; a second one exits at once."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {signum: signal.getsignal(signum) for signum in (signal.SIGINT, signal.SIGTERM)}

    def on_signal(signum: int, frame: FrameType | None) -> None:
        print("redrive: stopping after the batch in flight (signal again to exit at once)", file=sys.stderr)
        stop.set()
        signal.signal(signum, signal.default_int_handler if signum == signal.SIGINT else signal.SIG_DFL)

    for signum in previous:
        signal.signal(signum, on_signal)
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def cmd_redrive(args: argparse.Namespace) -> int:
    try:
        settings = load_redrive_settings(need_topics=args.dlq_topic is None)
        options = options_from_args(args, settings)
    except ConfigError as exc:
        _print_config_error(exc)
        return EXIT_CONFIG
    if not logging.getLogger().handlers:
        setup_logging(settings.log_level, settings.log_format)
    stop = threading.Event()
    try:
        with _stop_on_signals(stop) if options.execute else contextlib.nullcontext():
            report = run_redrive(settings, options, stop=stop)
    except RedriveError as exc:
        print(f"redrive: {exc}", file=sys.stderr)
        return EXIT_FAILED
    except KafkaException as exc:  # a bad KAFKA_CONFIG_* property, a fatal client error
        print(f"redrive: kafka: {exc.args[0] if exc.args else exc}", file=sys.stderr)
        return EXIT_FAILED
    print(json.dumps(report.as_dict(), indent=2) if args.json else render_text(report))
    return report.exit_code()


def _shorten(text: str | None, width: int) -> str:
    if not text:
        return "-"
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 1] + "…"


def _targets_text(targets: Iterable[tuple[str, int]]) -> str:
    return ", ".join(f"{topic} ({count})" for topic, count in targets)


def render_text(report: RedriveReport) -> str:
    """The report for people: the plan (or what was done), then what was skipped and why."""
    lines = [
        f"dead letters in {', '.join(report.dlq_topics)}, read as group {report.group} "
        "from its committed position up to the end seen at start",
        f"filter: {report.letter_filter.describe()}" + (f"; to topic: {report.to_topic}" if report.to_topic else ""),
    ]
    for topic in report.missing_dlq_topics:
        lines.append(f"{topic} does not exist: nothing to re-drive there")
    verb = "selected for re-drive" if report.execute else "to re-drive"
    lines.append(f"{report.selected} letters {verb}" + (" (--limit reached)" if report.limit_reached else ""))
    if report.groups:
        rows = [("count", "stage", "error class", "code", "target", "first error message")]
        rows += [
            (str(g.count), g.stage or "-", g.error_class or "-", "-" if g.code is None else str(g.code),
             _targets_text(g.targets), _shorten(g.first_message, 100))
            for g in report.groups
        ]
        widths = [max(len(row[i]) for row in rows) for i in range(5)]
        for row in rows:
            cells = [row[0].rjust(widths[0])] + [row[i].ljust(widths[i]) for i in range(1, 5)] + [row[5]]
            lines.append("  " + "  ".join(cells).rstrip())
        totals: Counter[str] = Counter()
        for g in report.groups:
            totals.update(dict(g.targets))
        lines.append(f"targets: {_targets_text(sorted(totals.items(), key=lambda i: (-i[1], i[0])))}")
    skipped = [f"{report.already_redriven} already re-driven by an earlier run"]
    if report.letter_filter.active:
        skipped.append(f"{report.not_matching} not matching the filter (left in place)")
    lines.append(f"looked at {report.examined} letters; " + ", ".join(skipped))
    for reason, count in sorted(report.unroutable.items()):
        lines.append(f"left in place, cannot be re-driven: {count} letters: {reason}")
    if report.execute:
        lines.append(
            f"re-drove {report.redriven}" + (f" ({_targets_text(sorted(report.redriven_to.items()))})"
                                             if report.redriven else "") + f", failed {report.failed}"
        )
        moved = [
            f"{p.topic}[{p.partition}] {p.committed}"
            + (f" (+{p.recorded_above} above it recorded as re-driven)" if p.recorded_above else "")
            for p in report.partitions
            if p.committed is not None
        ]
        if moved:
            lines.append(f"group {report.group} committed: " + ", ".join(moved))
    else:
        lines.append("plan only: nothing was produced or committed; add --execute to re-drive")
    lines.extend(report.deferred)
    lines.extend(f"note: {note}" for note in report.notes)
    lines.extend(f"error: {error}" for error in report.errors)
    if report.interrupted:
        lines.append("interrupted: what was acknowledged is committed; run again to continue")
    return "\n".join(lines)
