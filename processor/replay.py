"""``processor replay``: move the consumer group's committed offsets so the next run re-sends history to CleverTap.

The command has three layers, each testable on its own:

* **Parsing** (:func:`parse_duration`, :func:`parse_datetime`, :func:`parse_topic_selection`): strict, pure.
* **Planning** (:func:`plan_partition`): given what the broker says about one partition (committed offset, low and
  high watermarks, and for time-based strategies the offset the broker resolved for the timestamp), the offset the
  group should resume at, clamped into ``[low, high]``. Pure; no broker, no clock.
* **Kafka I/O** (:class:`GroupOffsetsAdmin`): one ``AdminClient``; it describes the group, lists its committed
  offsets, the partitions' watermarks and the offsets for a timestamp (the broker's ListOffsets "offsets for
  times"), and alters the committed offsets. No consumer joins the group, so looking never disturbs it.

Choices worth knowing (also in ``--help``):

* Offsets are only changed while the group has **no active member**: the command refuses otherwise (exit 1),
  plan-only included, since a running consumer would overwrite the new offsets with its next commit.
* Without ``--execute`` nothing is written: the plan is printed and the exit code is 0.
* Default partitions: every partition of every topic in ``KAFKA_TOPICS`` **plus** every topic the group holds
  committed offsets for (so an old topic is not silently left behind). ``--topic`` replaces the default.
* ``--to-datetime`` requires an explicit UTC offset (``Z`` or ``+02:00``): a naive time is refused, because the
  pod that runs the replay rarely shares the operator's time zone.
* ``--by-duration`` accepts the ISO-8601 subset ``PnDTnHnMnS`` (days, hours, minutes, seconds; at least one):
  years, months and weeks are refused (Kafka's own tool refuses them too). "Now" is injectable for tests.
* A partition without a committed offset (or one whose offset retention has since deleted) resumes where the
  processor's ``auto.offset.reset`` puts it (earliest, unless ``KAFKA_CONFIG_AUTO_OFFSET_RESET`` says latest);
  ``--shift-by`` counts from there and the plan's CHANGE column compares against it.
* "End" is the last stable offset (read_committed), which is where the processor's consumer stops, unless
  ``KAFKA_CONFIG_ISOLATION_LEVEL=read_uncommitted``.
* A partition the broker cannot answer for (watermarks, time lookup) stops the whole replay before anything is
  written; a partition the broker refuses to reset is reported next to the ones that were reset (exit 1).

Exit codes: 0 plan printed or every partition reset; 1 refused (active members), the broker could not be asked,
or at least one partition failed (each failure is listed); 2 invalid settings or arguments (a missing variable,
an unknown topic or partition, an unparsable time).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Literal, Protocol, TextIO

from confluent_kafka import (
    ConsumerGroupTopicPartitions,
    IsolationLevel,
    KafkaError,
    KafkaException,
    TopicPartition,
)
from confluent_kafka.admin import AdminClient, OffsetSpec  # type: ignore[attr-defined]

from processor.errors import ConfigError
from processor.settings import _TOPIC_NAME, _consumer_only, _Env, _kafka_extra, kafka_topics

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2

DEFAULT_GROUP_ID = "clevertap-processor"
KUBERNETES_HINT = "kubectl scale deployment/clevertap-processor --replicas=0"
KEDA_HINT = "kubectl annotate scaledobject clevertap-processor autoscaling.keda.sh/paused-replicas=0 --overwrite"

StrategyKind = Literal["earliest", "latest", "datetime", "duration", "offset", "shift"]
TopicPartitionKey = tuple[str, int]

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MILLISECOND = timedelta(milliseconds=1)


class ReplayUsageError(Exception):
    """The request cannot be carried out as written (unknown topic, partition...). The CLI exits with code 2."""


class ReplayFailed(Exception):
    """The broker refused or could not be asked; nothing was changed. The CLI exits with code 1."""


# --------------------------------------------------------------------------------------------------------------
# Parsing
# --------------------------------------------------------------------------------------------------------------

_DURATION = re.compile(
    r"^P(?:(?P<days>\d+)D)?(?:T(?=\d)(?:(?P<hours>\d+)H)?(?:(?P<minutes>\d+)M)?(?:(?P<seconds>\d+(?:\.\d{1,3})?)S)?)?$",
    re.IGNORECASE,
)


def parse_duration(text: str) -> timedelta:
    """An ISO-8601 duration of the subset ``PnDTnHnMnS`` (``PT6H``, ``PT30M``, ``P2D``, ``P1DT12H``, ``PT90S``).

    Every component is optional but at least one must be given, and a ``T`` must be followed by a time component.
    Seconds may carry up to three decimals. Years, months and weeks are refused (a month has no fixed length and
    Kafka's own tool does not accept them either); so are negative and empty durations. Case-insensitive.

    Raises :class:`ValueError` with a message meant for the operator.
    """
    value = text.strip()
    match = _DURATION.match(value)
    if match is None or not any(match.groupdict().values()):
        date_part = value.upper().split("T", 1)[0]
        if date_part.startswith("P") and re.search(r"\d+[YMW]", date_part):
            raise ValueError(
                f"{text!r}: years, months and weeks have no fixed length here; use days, e.g. P30D or P14D"
            )
        raise ValueError(
            f"{text!r} is not an ISO-8601 duration of the form PnDTnHnMnS (e.g. PT6H, PT30M, P2D, P1DT12H)"
        )
    parts = match.groupdict()
    return timedelta(
        days=int(parts["days"] or 0),
        hours=int(parts["hours"] or 0),
        minutes=int(parts["minutes"] or 0),
        seconds=float(parts["seconds"] or 0),
    )


def parse_datetime(text: str) -> datetime:
    """An ISO-8601 date-time with an explicit offset (``2024-03-01T06:00:00Z``, ``2024-03-01T08:00+02:00``).

    A time without an offset is refused rather than guessed: "06:00" on an operator's laptop and in a pod
    running in UTC are different instants, and replaying from the wrong one re-sends (or skips) hours of events.

    Raises :class:`ValueError` with a message meant for the operator.
    """
    value = text.strip()
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise ValueError(
            f"{text!r} is not an ISO-8601 date-time (e.g. 2024-03-01T06:00:00Z or 2024-03-01T08:00:00+02:00)"
        ) from None
    if parsed.tzinfo is None or parsed.utcoffset() is None:
        raise ValueError(
            f"{text!r} has no UTC offset, so the instant is ambiguous: add Z for UTC "
            f"(e.g. {value}Z) or an offset such as +02:00"
        )
    if parsed < _EPOCH:
        raise ValueError(f"{text!r} is before 1970-01-01T00:00:00Z")
    return parsed


def timestamp_ms(moment: datetime) -> int:
    """Epoch milliseconds, rounded up: a record stamped 12 ms is *before* 12.3 ms and must not be replayed."""
    return -((_EPOCH - moment) // _MILLISECOND)


def format_ms(ms: int) -> str:
    moment = _EPOCH + timedelta(milliseconds=ms)
    spec = "milliseconds" if ms % 1000 else "seconds"
    return moment.isoformat(timespec=spec).replace("+00:00", "Z")


def parse_topic_selection(text: str) -> tuple[str, tuple[int, ...] | None]:
    """``topic`` (every partition) or ``topic:0,2`` (those partitions). Raises :class:`ValueError`."""
    topic, sep, partitions_text = text.strip().rpartition(":")
    if not sep:
        topic, partitions_text = partitions_text, ""
    if not _TOPIC_NAME.match(topic):
        raise ValueError(f"{topic!r} is not a valid Kafka topic name")
    if not sep:
        return topic, None
    partitions: list[int] = []
    for item in partitions_text.split(","):
        if not item.strip().isdigit():
            raise ValueError(f"{text!r}: partitions must be a comma-separated list of numbers, e.g. {topic}:0,2")
        number = int(item)
        if number not in partitions:
            partitions.append(number)
    return topic, tuple(sorted(partitions))


# --------------------------------------------------------------------------------------------------------------
# Planning (pure)
# --------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Strategy:
    """Where to move the offsets. Build it with one of the class methods."""

    kind: StrategyKind
    label: str
    offset: int | None = None
    shift: int | None = None
    timestamp_ms: int | None = None

    @classmethod
    def earliest(cls) -> Strategy:
        return cls("earliest", "--to-earliest")

    @classmethod
    def latest(cls) -> Strategy:
        return cls("latest", "--to-latest")

    @classmethod
    def to_offset(cls, offset: int) -> Strategy:
        if offset < 0:
            raise ValueError("--to-offset must be 0 or more")
        return cls("offset", f"--to-offset {offset}", offset=offset)

    @classmethod
    def shift_by(cls, shift: int) -> Strategy:
        return cls("shift", f"--shift-by {shift:+d}", shift=shift)

    @classmethod
    def to_datetime(cls, moment: datetime) -> Strategy:
        ms = timestamp_ms(moment)
        return cls("datetime", f"--to-datetime {format_ms(ms)}", timestamp_ms=ms)

    @classmethod
    def by_duration(cls, duration: timedelta, text: str, now: datetime) -> Strategy:
        ms = timestamp_ms(now - duration)
        return cls("duration", f"--by-duration {text} (since {format_ms(ms)})", timestamp_ms=ms)


@dataclass(frozen=True)
class PartitionState:
    """What the broker says about one partition.

    ``committed`` is the group's committed offset (``None``: nothing committed); ``low``/``high`` the first
    retained and the end offset; ``offset_for_time`` the first offset whose timestamp is at or after the
    strategy's time (``None``: no such record), only for time-based strategies.
    """

    topic: str
    partition: int
    committed: int | None
    low: int
    high: int
    offset_for_time: int | None = None


@dataclass(frozen=True)
class PartitionPlan:
    """Where one partition resumes after the replay, and what that means.

    ``start`` is where the group would resume without the replay (the committed offset, or the reset position
    when there is none or it is out of range); ``rewind`` records before it will be sent again, ``skip`` records
    after it will never be sent, ``to_read`` records the next run reads from this partition in total.
    """

    topic: str
    partition: int
    current: int | None
    start: int
    new: int
    low: int
    high: int
    notes: tuple[str, ...] = ()

    @property
    def key(self) -> TopicPartitionKey:
        return (self.topic, self.partition)

    @property
    def to_read(self) -> int:
        return self.high - self.new

    @property
    def rewind(self) -> int:
        return max(0, self.start - self.new)

    @property
    def skip(self) -> int:
        return max(0, self.new - self.start)

    @property
    def change(self) -> str:
        if self.rewind:
            text = f"rewind {self.rewind}"
        elif self.skip:
            text = f"SKIP {self.skip} never processed"
        else:
            text = "unchanged"
        return "; ".join((text, *self.notes))


def plan_partition(state: PartitionState, strategy: Strategy, *, reset_to: str = "earliest") -> PartitionPlan:
    """The new offset of one partition, clamped into ``[low, high]``.

    ``reset_to`` is the processor's ``auto.offset.reset`` (``earliest`` or ``latest``): where the group resumes
    when it has no usable committed offset. Never raises for any combination of offsets the broker can report.
    """
    low, high = state.low, max(state.low, state.high)
    notes: list[str] = []
    reset_position = high if reset_to == "latest" else low
    if state.committed is None:
        start = reset_position
        notes.append(f"no committed offset (would start at {reset_to})")
    elif state.committed < low:
        start = reset_position
        notes.append(f"committed {state.committed} is before the earliest retained offset {low}")
    elif state.committed > high:
        start = reset_position
        notes.append(f"committed {state.committed} is past the end {high}")
    else:
        start = state.committed

    if strategy.kind == "earliest":
        target = low
    elif strategy.kind == "latest":
        target = high
    elif strategy.kind == "offset":
        target = strategy.offset if strategy.offset is not None else low
    elif strategy.kind == "shift":
        target = start + (strategy.shift or 0)
    elif state.offset_for_time is None or state.offset_for_time < 0:
        target = high
        notes.append("no record at or after that time: end")
    else:
        target = state.offset_for_time

    new = min(max(target, low), high)
    if new != target:
        where = "earliest retained offset" if new == low else "end"
        notes.append(f"{target} clamped to {where} {new}")
    return PartitionPlan(
        topic=state.topic,
        partition=state.partition,
        current=state.committed,
        start=start,
        new=new,
        low=low,
        high=high,
        notes=tuple(notes),
    )


@dataclass(frozen=True)
class Totals:
    partitions: int
    to_read: int
    rewind: int
    skip: int


def totals(plans: Iterable[PartitionPlan]) -> Totals:
    listed = list(plans)
    return Totals(
        partitions=len(listed),
        to_read=sum(p.to_read for p in listed),
        rewind=sum(p.rewind for p in listed),
        skip=sum(p.skip for p in listed),
    )


def select_partitions(
    requested: Sequence[tuple[str, tuple[int, ...] | None]],
    default_topics: Iterable[str],
    partitions_of: Mapping[str, Sequence[int]],
) -> list[TopicPartitionKey]:
    """The partitions to reset, sorted. ``requested`` (from ``--topic``) wins over ``default_topics``.

    Raises :class:`ReplayUsageError` naming an unknown topic or partition.
    """
    chosen: dict[str, set[int]] = {}
    selection = list(requested) or [(topic, None) for topic in default_topics]
    for topic, partitions in selection:
        if topic not in partitions_of:
            raise ReplayUsageError(f"topic {topic!r} does not exist on the cluster")
        existing = set(partitions_of[topic])
        wanted = existing if partitions is None else set(partitions)
        missing = sorted(wanted - existing)
        if missing:
            raise ReplayUsageError(
                f"topic {topic!r} has no partition {', '.join(map(str, missing))} "
                f"(it has {len(existing)}: {', '.join(map(str, sorted(existing)))})"
            )
        chosen.setdefault(topic, set()).update(wanted)
    return sorted((topic, p) for topic, parts in chosen.items() for p in parts)


# --------------------------------------------------------------------------------------------------------------
# Output
# --------------------------------------------------------------------------------------------------------------


def _cell(value: int | None) -> str:
    return "-" if value is None else str(value)


def render_table(
    plans: Sequence[PartitionPlan], results: Mapping[TopicPartitionKey, str | None] | None = None
) -> list[str]:
    """Aligned plain-text rows (header first). With ``results``, a RESULT column: ``ok`` or the error."""
    header = ["TOPIC", "PARTITION", "CURRENT", "NEW", "END", "TO-READ"]
    if results is not None:
        header.append("RESULT")
    header.append("CHANGE")
    rows = [header]
    for plan in plans:
        row = [plan.topic, str(plan.partition), _cell(plan.current), str(plan.new), str(plan.high), str(plan.to_read)]
        if results is not None:
            error = results.get(plan.key, "no result returned by the broker")
            row.append("ok" if error is None else f"FAILED: {error}")
        row.append(plan.change)
        rows.append(row)
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    return ["  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row)).rstrip() for row in rows]


def total_line(plans: Sequence[PartitionPlan]) -> str:
    t = totals(plans)
    return (
        f"total: {t.partitions} partition{'s' if t.partitions != 1 else ''}, {t.to_read} records to read, "
        f"{t.rewind} already processed and sent again, {t.skip} skipped"
    )


def plan_document(
    group: str,
    group_state: str,
    strategy: Strategy,
    plans: Sequence[PartitionPlan],
    results: Mapping[TopicPartitionKey, str | None] | None = None,
) -> dict[str, Any]:
    """The ``--json`` output."""
    t = totals(plans)
    partitions = []
    for plan in plans:
        item: dict[str, Any] = {
            "topic": plan.topic,
            "partition": plan.partition,
            "current": plan.current,
            "new": plan.new,
            "low": plan.low,
            "high": plan.high,
            "to_read": plan.to_read,
            "rewind": plan.rewind,
            "skip": plan.skip,
            "notes": list(plan.notes),
        }
        if results is not None:
            error = results.get(plan.key, "no result returned by the broker")
            item["ok"] = error is None
            item["error"] = error
        partitions.append(item)
    document: dict[str, Any] = {
        "group": group,
        "group_state": group_state,
        "strategy": strategy.kind,
        "target": strategy.label,
        "timestamp_ms": strategy.timestamp_ms,
        "executed": results is not None,
        "partitions": partitions,
        "total": {"partitions": t.partitions, "to_read": t.to_read, "rewind": t.rewind, "skip": t.skip},
    }
    if results is not None:
        document["total"]["failed"] = sum(1 for p in plans if results.get(p.key, "missing") is not None)
    return document


# --------------------------------------------------------------------------------------------------------------
# Settings: only the Kafka part (a replay needs no CleverTap credentials)
# --------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ReplaySettings:
    bootstrap_servers: str
    group_id: str = DEFAULT_GROUP_ID
    topics: tuple[str, ...] = ()
    kafka_extra: Mapping[str, str] = field(default_factory=dict)

    def admin_config(self) -> dict[str, Any]:
        """AdminClient properties: connection and security settings from ``KAFKA_CONFIG_*``, nothing else."""
        config: dict[str, Any] = {
            "bootstrap.servers": self.bootstrap_servers,
            "client.id": "clevertap-processor-replay",
        }
        config.update({k: v for k, v in self.kafka_extra.items() if not _consumer_only(k)})
        return config

    @property
    def reset_to(self) -> str:
        """Where the processor's consumer starts without a committed offset (its ``auto.offset.reset``)."""
        value = str(self.kafka_extra.get("auto.offset.reset", "earliest")).lower()
        return "latest" if value in ("latest", "largest", "end") else "earliest"

    @property
    def read_committed(self) -> bool:
        return str(self.kafka_extra.get("isolation.level", "read_committed")).lower() != "read_uncommitted"


def load_replay_settings(env: Mapping[str, str]) -> ReplaySettings:
    """``KAFKA_BOOTSTRAP_SERVERS`` (required), ``KAFKA_GROUP_ID``, ``KAFKA_TOPICS`` (optional) and ``KAFKA_CONFIG_*``.

    Raises :class:`ConfigError` naming the first problem, the others in its notes (like ``load_settings``).
    """
    source = _Env(env)
    bootstrap = source.required("KAFKA_BOOTSTRAP_SERVERS", "host:port[,host:port...] of the Kafka cluster")
    topics = kafka_topics(source, "comma-separated topics", required=False)
    group_id = source.raw("KAFKA_GROUP_ID") or DEFAULT_GROUP_ID
    extra = _kafka_extra(source)
    source.raise_problems()
    return ReplaySettings(bootstrap_servers=bootstrap, group_id=group_id, topics=topics, kafka_extra=extra)


# --------------------------------------------------------------------------------------------------------------
# Kafka I/O
# --------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class GroupDescription:
    group_id: str
    state: str
    members: tuple[str, ...]


# The broker creates __consumer_offsets on the first coordinator lookup; until it is loaded it answers these, or
# (librdkafka 2.16 with Kafka 4.1) the describe request is never answered and times out locally.
_COORDINATOR_NOT_READY = frozenset(
    {
        KafkaError.NOT_COORDINATOR,
        KafkaError.COORDINATOR_NOT_AVAILABLE,
        KafkaError.COORDINATOR_LOAD_IN_PROGRESS,
        KafkaError._TIMED_OUT,
    }
)


_DESCRIBE_ATTEMPT_S = 10.0


def _kafka_error(exc: BaseException) -> KafkaError | None:
    if isinstance(exc, KafkaException) and exc.args and isinstance(exc.args[0], KafkaError):
        return exc.args[0]
    return None


def describe_error(error: KafkaError | BaseException | None) -> str:
    if isinstance(error, KafkaError):
        return f"{error.name()}: {error.str()}"
    if isinstance(error, KafkaException):
        inner = _kafka_error(error)
        if inner is not None:
            return describe_error(inner)
    if isinstance(error, TimeoutError):
        return "timed out"
    return str(error)


class OffsetsAdmin(Protocol):
    """What the replay asks of Kafka; :class:`GroupOffsetsAdmin` is the real one."""

    def describe_group(self, group_id: str) -> GroupDescription: ...

    def committed_offsets(
        self, group_id: str
    ) -> tuple[dict[TopicPartitionKey, int], dict[TopicPartitionKey, str]]: ...

    def partitions_of(self) -> dict[str, list[int]]: ...

    def watermarks(
        self, keys: Sequence[TopicPartitionKey]
    ) -> tuple[dict[TopicPartitionKey, tuple[int, int]], dict[TopicPartitionKey, str]]: ...

    def offsets_for_time(
        self, keys: Sequence[TopicPartitionKey], ms: int
    ) -> tuple[dict[TopicPartitionKey, int | None], dict[TopicPartitionKey, str]]: ...

    def alter(
        self, group_id: str, offsets: Mapping[TopicPartitionKey, int]
    ) -> dict[TopicPartitionKey, str | None]: ...


class GroupOffsetsAdmin:
    """The replay's only Kafka edge: one ``AdminClient`` (no consumer ever joins the group).

    Every call waits at most ``timeout_s``; broker-level failures raise :class:`ReplayFailed`, per-partition
    failures are returned next to the partitions that worked.
    """

    def __init__(
        self,
        config: Mapping[str, Any],
        timeout_s: float = 30.0,
        *,
        read_committed: bool = True,
        client: AdminClient | None = None,
    ) -> None:
        """``client`` replaces the ``AdminClient`` built from ``config`` (tests script its answers)."""
        self._admin = AdminClient(dict(config)) if client is None else client
        self._bootstrap = str(config.get("bootstrap.servers", ""))
        self._timeout_s = timeout_s
        self._isolation = IsolationLevel.READ_COMMITTED if read_committed else IsolationLevel.READ_UNCOMMITTED

    def describe_group(self, group_id: str) -> GroupDescription:
        deadline = time.monotonic() + self._timeout_s
        while True:
            # Short attempts: right after the coordinator moved or __consumer_offsets was created, an attempt may
            # also never be answered; a new one usually is.
            attempt_s = max(1.0, min(_DESCRIBE_ATTEMPT_S, deadline - time.monotonic()))
            try:
                futures = self._admin.describe_consumer_groups([group_id], request_timeout=attempt_s)
                description = futures[group_id].result(timeout=attempt_s + 1.0)
                break
            except Exception as exc:
                error = _kafka_error(exc)
                if error is not None and error.code() == KafkaError.GROUP_ID_NOT_FOUND:
                    return GroupDescription(group_id, "DEAD", ())
                retriable = isinstance(exc, TimeoutError) or (
                    error is not None and error.code() in _COORDINATOR_NOT_READY
                )
                # librdkafka 2.16 does not retry these itself. Pausing before the next call also matters: another
                # admin request issued right after this failure crashed the process in our tests.
                if retriable and time.monotonic() + 0.5 < deadline:
                    time.sleep(0.5)
                    continue
                hint = ""
                if retriable:
                    hint = (
                        f" (can this host reach KAFKA_BOOTSTRAP_SERVERS={self._bootstrap}, and are the KAFKA_CONFIG_* "
                        "security settings right?)"
                    )
                raise ReplayFailed(
                    f"cannot describe consumer group {group_id!r}: {describe_error(exc)}{hint}"
                ) from None
        state = getattr(getattr(description, "state", None), "name", "UNKNOWN")
        members = tuple(
            f"{m.client_id}@{m.host.lstrip('/')}" if m.host else str(m.client_id) for m in description.members or []
        )
        return GroupDescription(group_id, str(state), members)

    def committed_offsets(self, group_id: str) -> tuple[dict[TopicPartitionKey, int], dict[TopicPartitionKey, str]]:
        """Every committed offset of the group, and the partitions the broker reported an error for."""
        request = [ConsumerGroupTopicPartitions(group_id)]
        try:
            future = self._admin.list_consumer_group_offsets(request, request_timeout=self._timeout_s)[group_id]
            result = future.result(timeout=self._timeout_s)
        except Exception as exc:
            raise ReplayFailed(f"cannot list the offsets of group {group_id!r}: {describe_error(exc)}") from None
        offsets: dict[TopicPartitionKey, int] = {}
        errors: dict[TopicPartitionKey, str] = {}
        for tp in result.topic_partitions or []:
            if tp.error is not None:
                errors[(tp.topic, tp.partition)] = describe_error(tp.error)
            elif tp.offset >= 0:
                offsets[(tp.topic, tp.partition)] = tp.offset
        return offsets, errors

    def partitions_of(self) -> dict[str, list[int]]:
        """Partitions of every topic. The whole cluster's metadata is asked for: asking for one named topic could
        make a broker with ``auto.create.topics.enable`` create it."""
        try:
            metadata = self._admin.list_topics(timeout=self._timeout_s)
        except Exception as exc:
            raise ReplayFailed(f"cannot read the cluster's topics: {describe_error(exc)}") from None
        return {
            name: sorted(topic.partitions)
            for name, topic in metadata.topics.items()
            if topic.error is None or topic.partitions
        }

    def _list_offsets(
        self, keys: Sequence[TopicPartitionKey], spec: Callable[[], OffsetSpec]
    ) -> tuple[dict[TopicPartitionKey, int], dict[TopicPartitionKey, str]]:
        if not keys:
            return {}, {}
        request = {TopicPartition(topic, partition): spec() for topic, partition in keys}
        futures = self._admin.list_offsets(
            request, isolation_level=self._isolation, request_timeout=self._timeout_s
        )
        offsets: dict[TopicPartitionKey, int] = {}
        errors: dict[TopicPartitionKey, str] = {}
        for tp, future in futures.items():
            try:
                offsets[(tp.topic, tp.partition)] = future.result(timeout=self._timeout_s).offset
            except Exception as exc:
                errors[(tp.topic, tp.partition)] = describe_error(exc)
        return offsets, errors

    def watermarks(
        self, keys: Sequence[TopicPartitionKey]
    ) -> tuple[dict[TopicPartitionKey, tuple[int, int]], dict[TopicPartitionKey, str]]:
        lows, low_errors = self._list_offsets(keys, OffsetSpec.earliest)
        highs, high_errors = self._list_offsets(keys, OffsetSpec.latest)
        errors = {**high_errors, **low_errors}
        marks = {k: (lows[k], highs[k]) for k in keys if k in lows and k in highs and k not in errors}
        return marks, errors

    def offsets_for_time(
        self, keys: Sequence[TopicPartitionKey], ms: int
    ) -> tuple[dict[TopicPartitionKey, int | None], dict[TopicPartitionKey, str]]:
        """The first offset whose timestamp is at or after ``ms``; ``None`` where no record is that recent."""
        found, errors = self._list_offsets(keys, lambda: OffsetSpec.for_timestamp(ms))
        return {k: (v if v >= 0 else None) for k, v in found.items()}, errors

    def alter(self, group_id: str, offsets: Mapping[TopicPartitionKey, int]) -> dict[TopicPartitionKey, str | None]:
        """Commit ``offsets`` for the group; per partition ``None`` (done) or the broker's error.

        The request succeeds as a whole even when the broker refused every partition (e.g. UNKNOWN_MEMBER_ID
        while a consumer is in the group): each partition's own error is what tells.
        """
        request = [
            ConsumerGroupTopicPartitions(
                group_id, [TopicPartition(topic, partition, offset) for (topic, partition), offset in offsets.items()]
            )
        ]
        try:
            future = self._admin.alter_consumer_group_offsets(request, request_timeout=self._timeout_s)[group_id]
            result = future.result(timeout=self._timeout_s)
        except Exception as exc:
            message = describe_error(exc)
            return dict.fromkeys(offsets, message)
        outcome: dict[TopicPartitionKey, str | None] = {}
        for tp in result.topic_partitions or []:
            key = (tp.topic, tp.partition)
            if tp.error is not None:
                hint = ""
                if tp.error.code() == KafkaError.UNKNOWN_MEMBER_ID:
                    hint = " (a consumer joined the group meanwhile?)"
                outcome[key] = describe_error(tp.error) + hint
            elif tp.offset != offsets.get(key):
                outcome[key] = f"broker answered offset {tp.offset}, not {offsets.get(key)}"
            else:
                outcome[key] = None
        for key in offsets:
            outcome.setdefault(key, "no result returned by the broker")
        return outcome


# --------------------------------------------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------------------------------------------

DESCRIPTION = """\
Reset the consumer group's committed offsets so the next run re-sends history to CleverTap.
Without --execute only the plan is printed. The processor must be stopped first (the group must have no
active member): `kubectl scale deployment/clevertap-processor --replicas=0`, or with KEDA
`kubectl annotate scaledobject clevertap-processor autoscaling.keda.sh/paused-replicas=0 --overwrite`.
Settings come from the processor's environment: KAFKA_BOOTSTRAP_SERVERS (required), KAFKA_GROUP_ID,
KAFKA_TOPICS and KAFKA_CONFIG_* (security); CleverTap settings are not needed."""

EPILOG = """\
partitions: by default every partition of KAFKA_TOPICS plus every topic the group has committed offsets for;
  --topic replaces that (repeatable; TOPIC:0,2 for chosen partitions).
offsets: the new offset is the first record read by the next run; it is clamped between the earliest retained
  offset and the end. A time resolves, per partition, to the first record whose timestamp is at or after it
  (the end when there is none). A partition without a committed offset counts from where the processor would
  start (auto.offset.reset, earliest by default).
output: TOPIC PARTITION CURRENT NEW END TO-READ [RESULT] CHANGE; TO-READ = END - NEW is what the next run reads;
  CHANGE says how many processed records are sent again (rewind) or never sent (SKIP).
exit codes: 0 plan printed or all partitions reset; 1 refused (active members), broker unreachable or a partition
  failed (each is listed); 2 invalid settings or arguments."""


def _duration_arg(text: str) -> str:
    try:
        parse_duration(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return text


def _datetime_arg(text: str) -> datetime:
    try:
        return parse_datetime(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _topic_arg(text: str) -> tuple[str, tuple[int, ...] | None]:
    try:
        return parse_topic_selection(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _offset_arg(text: str) -> int:
    if not text.strip().isdigit():
        raise argparse.ArgumentTypeError(f"{text!r} is not an offset (a whole number, 0 or more)")
    return int(text)


def _shift_arg(text: str) -> int:
    if not re.fullmatch(r"[+-]?\d+", text.strip()):
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number such as -100 or +50")
    return int(text)


def _positive_seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if value <= 0:
        raise argparse.ArgumentTypeError("must be more than 0 seconds")
    return value


def configure_parser(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Add the replay options to ``parser`` (a sub-command parser or a stand-alone one)."""
    target = parser.add_argument_group("where to move the offsets (exactly one)").add_mutually_exclusive_group(
        required=True
    )
    target.add_argument("--to-earliest", action="store_true", help="the earliest retained record")
    target.add_argument("--to-latest", action="store_true", help="the end: skip everything not yet processed")
    target.add_argument(
        "--to-datetime", type=_datetime_arg, metavar="ISO-8601",
        help="the first record at or after this time; an offset is required: 2024-03-01T06:00:00Z or +02:00",
    )
    target.add_argument(
        "--by-duration", type=_duration_arg, metavar="DURATION",
        help="the first record at or after now minus this ISO-8601 duration: PT6H, PT30M, P2D, P1DT12H",
    )
    target.add_argument("--to-offset", type=_offset_arg, metavar="N", help="offset N in every chosen partition")
    target.add_argument(
        "--shift-by", type=_shift_arg, metavar="[+-]N",
        help="move each partition by N records from its committed offset (negative re-sends, positive skips)",
    )
    parser.add_argument(
        "--topic", dest="topics", action="append", type=_topic_arg, default=[], metavar="TOPIC[:P,P...]",
        help="only this topic, or these partitions of it (repeatable); default: KAFKA_TOPICS and the group's topics",
    )
    parser.add_argument("--execute", action="store_true", help="apply the plan (without it nothing is changed)")
    parser.add_argument("--json", action="store_true", help="print the plan and the result as one JSON document")
    parser.add_argument(
        "--timeout", type=_positive_seconds, default=30.0, metavar="SECONDS",
        help="how long each request to the brokers may take (default 30)",
    )
    return parser


def add_replay_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> argparse.ArgumentParser:
    """Register ``replay`` on the ``add_subparsers()`` object of the ``processor`` command."""
    parser = subparsers.add_parser(
        "replay",
        help="reset the consumer group's offsets so the next run re-sends history (plan only without --execute)",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    return configure_parser(parser)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="processor replay", description=DESCRIPTION, epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    return configure_parser(parser)


def strategy_from_args(args: argparse.Namespace, now: datetime) -> Strategy:
    if args.to_earliest:
        return Strategy.earliest()
    if args.to_latest:
        return Strategy.latest()
    if args.to_datetime is not None:
        return Strategy.to_datetime(args.to_datetime)
    if args.by_duration is not None:
        return Strategy.by_duration(parse_duration(args.by_duration), args.by_duration, now)
    if args.to_offset is not None:
        return Strategy.to_offset(args.to_offset)
    if args.shift_by is not None:
        return Strategy.shift_by(args.shift_by)
    raise ReplayUsageError("choose where to move the offsets: --to-earliest, --to-latest, --to-datetime, "
                           "--by-duration, --to-offset or --shift-by")


def _utc_now() -> datetime:
    return datetime.now(UTC)


def refusal_message(group: GroupDescription) -> str:
    shown = ", ".join(group.members[:5]) + (", ..." if len(group.members) > 5 else "")
    return (
        f"refusing to replay: consumer group {group.group_id!r} is {group.state} with "
        f"{len(group.members)} active member{'s' if len(group.members) != 1 else ''} ({shown}).\n"
        "A running consumer would overwrite the new offsets with its next commit. Stop the processor first: "
        f"`{KUBERNETES_HINT}` (with KEDA, which would scale it back up: `{KEDA_HINT}`), wait until its pods "
        "are gone, then run the replay again."
    )


def replay(
    args: argparse.Namespace,
    env: Mapping[str, str],
    *,
    now: Callable[[], datetime] = _utc_now,
    out: TextIO | None = None,
    err: TextIO | None = None,
    admin_factory: Callable[[ReplaySettings, float], OffsetsAdmin] | None = None,
) -> int:
    """Run the replay for parsed ``args``; returns the exit code. Prints the plan (and result) to ``out``."""
    out = sys.stdout if out is None else out
    err = sys.stderr if err is None else err

    def fail(message: str, code: int) -> int:
        for line in message.splitlines():
            print(f"replay: {line}", file=err)
        return code

    try:
        settings = load_replay_settings(env)
    except ConfigError as exc:
        print(f"configuration error: {exc}", file=err)
        for note in getattr(exc, "__notes__", []):
            for line in note.splitlines():
                print(f"configuration error: {line}", file=err)
        return EXIT_USAGE

    try:
        strategy = strategy_from_args(args, now())
        admin: OffsetsAdmin
        if admin_factory is None:
            admin = GroupOffsetsAdmin(settings.admin_config(), args.timeout, read_committed=settings.read_committed)
        else:
            admin = admin_factory(settings, args.timeout)
        group = admin.describe_group(settings.group_id)
        if group.members:
            return fail(refusal_message(group), EXIT_FAILED)

        committed, committed_errors = admin.committed_offsets(settings.group_id)
        partitions_of = admin.partitions_of()
        group_topics = sorted({topic for topic, _ in (*committed, *committed_errors)})
        gone = [t for t in group_topics if t not in partitions_of]
        for topic in gone:
            if not args.topics:
                print(f"replay: ignoring committed offsets of {topic!r}: the topic no longer exists", file=err)
        default_topics = list(dict.fromkeys([*settings.topics, *(t for t in group_topics if t not in gone)]))
        if not args.topics and not default_topics:
            return fail(
                f"nothing to reset: group {settings.group_id!r} has no committed offsets and KAFKA_TOPICS is not "
                "set; name the topics with --topic",
                EXIT_USAGE,
            )
        keys = select_partitions(args.topics, default_topics, partitions_of)

        marks, lookup_errors = admin.watermarks(keys)
        for key in keys:
            if key not in marks:
                lookup_errors.setdefault(key, "no watermarks returned by the broker")
        lookup_errors.update({k: v for k, v in committed_errors.items() if k in keys})
        for_time: dict[TopicPartitionKey, int | None] = {}
        if strategy.timestamp_ms is not None:
            for_time, time_errors = admin.offsets_for_time(keys, strategy.timestamp_ms)
            lookup_errors.update(time_errors)
    except ReplayUsageError as exc:
        return fail(str(exc), EXIT_USAGE)
    except ReplayFailed as exc:
        return fail(str(exc), EXIT_FAILED)

    plans = [
        plan_partition(
            PartitionState(topic, partition, committed.get((topic, partition)), *marks[(topic, partition)],
                           offset_for_time=for_time.get((topic, partition))),
            strategy,
            reset_to=settings.reset_to,
        )
        for topic, partition in keys
        if (topic, partition) not in lookup_errors
    ]

    header = f"consumer group {settings.group_id} ({group.state}, no active members): {strategy.label}"
    if lookup_errors:
        for (topic, partition), message in sorted(lookup_errors.items()):
            print(f"replay: {topic} partition {partition}: cannot plan: {message}", file=err)
        if args.json:
            document = plan_document(settings.group_id, group.state, strategy, plans)
            document["lookup_errors"] = [
                {"topic": t, "partition": p, "error": m} for (t, p), m in sorted(lookup_errors.items())
            ]
            print(json.dumps(document, indent=2), file=out)
        else:
            print(header, file=out)
            for line in render_table(plans):
                print(line, file=out)
        return fail(
            f"nothing changed: {len(lookup_errors)} partition(s) could not be planned (listed above); "
            "fix the cause or leave them out with --topic TOPIC:P,...",
            EXIT_FAILED,
        )

    if not args.execute:
        if args.json:
            print(json.dumps(plan_document(settings.group_id, group.state, strategy, plans), indent=2), file=out)
        else:
            print(header, file=out)
            for line in render_table(plans):
                print(line, file=out)
            print(total_line(plans), file=out)
            print("plan only: nothing changed (add --execute to apply)", file=out)
        return EXIT_OK

    results = admin.alter(settings.group_id, {plan.key: plan.new for plan in plans})
    failed = [plan for plan in plans if results.get(plan.key) is not None]
    if args.json:
        print(json.dumps(plan_document(settings.group_id, group.state, strategy, plans, results), indent=2), file=out)
    else:
        print(header, file=out)
        for line in render_table(plans, results):
            print(line, file=out)
        print(total_line(plans), file=out)
        if failed:
            print(f"FAILED on {len(failed)} of {len(plans)} partitions; the others were reset", file=out)
        else:
            print(f"done: {len(plans)} partition{'s' if len(plans) != 1 else ''} reset; start the processor "
                  "again to re-send", file=out)
    if failed:
        for plan in failed:
            print(f"replay: {plan.topic} partition {plan.partition}: not reset: {results[plan.key]}", file=err)
        return EXIT_FAILED
    return EXIT_OK


def run_replay(
    argv: Sequence[str],
    env: Mapping[str, str],
    *,
    now: Callable[[], datetime] = _utc_now,
    out: TextIO | None = None,
    err: TextIO | None = None,
) -> int:
    """``processor replay ARGV`` with ``env`` as the environment; returns the exit code (2 for bad arguments)."""
    try:
        args = build_parser().parse_args(list(argv))
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else EXIT_USAGE
    return replay(args, env, now=now, out=out, err=err)


def cmd_replay(args: argparse.Namespace) -> int:
    """The ``processor replay`` sub-command handler (arguments parsed by ``processor.cli``)."""
    return replay(args, os.environ)


if __name__ == "__main__":
    sys.exit(run_replay(sys.argv[1:], os.environ))
