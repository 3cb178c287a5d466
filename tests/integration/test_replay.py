"""`processor replay` against the real broker: plans, every strategy, chosen partitions, refusal, failures.

One topic with two partitions holds records with explicit timestamps, one minute apart in partition 0 and two
minutes apart in partition 1, so a time in the middle of the data resolves to a different offset per partition.
Each test seeds its own consumer group the way the processor leaves it (a consumer subscribed, read, committed and
closed), runs the command as the CLI does (argv and an environment), and reads the committed offsets back with a
separate consumer that never joins the group.
"""

from __future__ import annotations

import io
import threading
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition

from processor.embedded.events import create_topics
from processor.replay import (
    EXIT_FAILED,
    EXIT_OK,
    EXIT_USAGE,
    GroupOffsetsAdmin,
    format_ms,
    load_replay_settings,
    run_replay,
)
from tests.integration.helpers import committed_and_end_offsets, unique

pytestmark = pytest.mark.integration

RECORDS = 10
MINUTE_MS = 60_000
# Partition 0: a record every minute from BASE; partition 1: every two minutes.
SPACING_MS = {0: MINUTE_MS, 1: 2 * MINUTE_MS}


@dataclass(frozen=True)
class Data:
    bootstrap: str
    topic: str
    base_ms: int

    def at(self, minutes: float) -> datetime:
        return datetime.fromtimestamp((self.base_ms + minutes * MINUTE_MS) / 1000, tz=UTC)

    def iso(self, minutes: float) -> str:
        return format_ms(round(self.base_ms + minutes * MINUTE_MS))


@pytest.fixture(scope="module")
def data(kafka_bootstrap: str) -> Data:
    topic = unique("replay")
    create_topics(kafka_bootstrap, {topic: 2})
    # An hour ago: recent enough for retention (old timestamps would let the broker delete the records at its next
    # retention check) and not in the future (the broker refuses timestamps too far ahead).
    base_ms = (int(time.time()) // 60 - 60) * MINUTE_MS
    producer = Producer({"bootstrap.servers": kafka_bootstrap, "acks": "all", "enable.idempotence": True})
    errors: list[str] = []

    def delivered(error: object, message: object) -> None:
        if error is not None:
            errors.append(str(error))

    for partition, spacing in SPACING_MS.items():
        for i in range(RECORDS):
            producer.produce(
                topic, value=f"p{partition}-{i}".encode(), partition=partition, timestamp=base_ms + i * spacing,
                on_delivery=delivered,
            )
    assert producer.flush(30) == 0
    assert errors == []
    return Data(kafka_bootstrap, topic, base_ms)


def consumer_config(bootstrap: str, group: str) -> dict[str, object]:
    return {
        "bootstrap.servers": bootstrap,
        "group.id": group,
        "enable.auto.commit": False,
        "auto.offset.reset": "earliest",
        "session.timeout.ms": 6000,
        "heartbeat.interval.ms": 500,
    }


def seed_group(data: Data, offsets: Mapping[int, int]) -> str:
    """A group like the processor leaves it: subscribed, read everything, committed ``offsets``, closed."""
    group = unique("replay-group")
    consumer = Consumer(consumer_config(data.bootstrap, group))
    try:
        consumer.subscribe([data.topic])
        seen = 0
        deadline = time.monotonic() + 30
        while seen < 2 * RECORDS and time.monotonic() < deadline:
            message = consumer.poll(0.2)
            if message is not None and message.error() is None:
                seen += 1
        assert seen == 2 * RECORDS
        consumer.commit(offsets=[TopicPartition(data.topic, p, o) for p, o in offsets.items()], asynchronous=False)
    finally:
        consumer.close()
    assert committed(data, group) == [offsets[0], offsets[1]]
    return group


def committed(data: Data, group: str) -> list[int]:
    offsets, ends = committed_and_end_offsets(data.bootstrap, data.topic, group, 2)
    assert ends == [RECORDS, RECORDS]
    return offsets


def replay(
    data: Data, group: str, *argv: str, now: datetime | None = None, topics: str | None = None
) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    env = {"KAFKA_BOOTSTRAP_SERVERS": data.bootstrap, "KAFKA_GROUP_ID": group}
    if topics is not None:
        env["KAFKA_TOPICS"] = topics
    moment = now or datetime.now(UTC)
    code = run_replay(list(argv), env, now=lambda: moment, out=out, err=err)
    return code, out.getvalue(), err.getvalue()


def test_plan_only_prints_the_plan_and_changes_nothing(data: Data) -> None:
    group = seed_group(data, {0: 8, 1: 10})
    code, out, err = replay(data, group, "--to-datetime", data.iso(4.5), topics=data.topic)
    assert (code, err) == (EXIT_OK, "")
    t = data.topic
    pad = " " * (len(t) - len("TOPIC"))
    assert out.splitlines() == [
        f"consumer group {group} (EMPTY, no active members): --to-datetime {data.iso(4.5)}",
        f"TOPIC{pad}  PARTITION  CURRENT  NEW  END  TO-READ  CHANGE",
        f"{t}  0          8        5    10   5        rewind 3",
        f"{t}  1          10       3    10   7        rewind 7",
        "total: 2 partitions, 12 records to read, 10 already processed and sent again, 0 skipped",
        "plan only: nothing changed (add --execute to apply)",
    ]
    assert committed(data, group) == [8, 10]


def test_to_earliest_execute_resets_every_partition_of_the_groups_topics(data: Data) -> None:
    group = seed_group(data, {0: 8, 1: 10})
    # No KAFKA_TOPICS: the group's own committed topics are the default.
    code, out, err = replay(data, group, "--to-earliest", "--execute")
    assert (code, err) == (EXIT_OK, "")
    assert committed(data, group) == [0, 0]
    assert "total: 2 partitions, 20 records to read, 18 already processed and sent again, 0 skipped" in out
    assert "done: 2 partitions reset; start the processor again to re-send" in out
    assert out.count(" ok ") == 2


@pytest.mark.parametrize(
    ("minutes", "expected"),
    [
        (4.5, [5, 3]),  # between records: the first record after the time, per partition
        (4, [4, 2]),  # exactly on a record's timestamp: that record is included
        (-30, [0, 0]),  # before all data: the beginning
        (18, [10, 9]),  # after partition 0's last record (minute 9): its end; partition 1 still has minute 18
        (60, [10, 10]),  # after all data: the end, nothing to read
    ],
)
def test_to_datetime_resolves_per_partition(data: Data, minutes: float, expected: list[int]) -> None:
    group = seed_group(data, {0: 8, 1: 10})
    code, out, err = replay(data, group, "--to-datetime", data.iso(minutes), "--execute", topics=data.topic)
    assert (code, err) == (EXIT_OK, ""), out
    assert committed(data, group) == expected


def test_to_datetime_honours_the_utc_offset_and_refuses_naive_times(data: Data) -> None:
    group = seed_group(data, {0: 8, 1: 10})
    # The same instant as minute 4.5, written as wall-clock time two hours ahead of UTC.
    wall_clock = (data.at(4.5) + timedelta(hours=2)).replace(tzinfo=None).isoformat(timespec="milliseconds")
    assert replay(data, group, "--to-datetime", wall_clock + "+02:00", "--execute")[0] == EXIT_OK
    assert committed(data, group) == [5, 3]
    code, _, _ = replay(data, group, "--to-datetime", wall_clock, "--execute")
    assert code == EXIT_USAGE
    assert committed(data, group) == [5, 3]


def test_by_duration_counts_back_from_the_injected_now(data: Data) -> None:
    group = seed_group(data, {0: 8, 1: 10})
    now = data.at(10)
    code, out, err = replay(data, group, "--by-duration", "PT6M", "--execute", now=now, topics=data.topic)
    assert (code, err) == (EXIT_OK, "")
    assert f"--by-duration PT6M (since {data.iso(4)})" in out
    assert committed(data, group) == [4, 2]
    code, _, _ = replay(data, group, "--by-duration", "PT5M30S", "--execute", now=now, topics=data.topic)
    assert code == EXIT_OK
    assert committed(data, group) == [5, 3]


def test_shift_by_moves_from_the_committed_offset_and_clamps(data: Data) -> None:
    group = seed_group(data, {0: 8, 1: 10})
    assert replay(data, group, "--shift-by", "-3", "--execute")[0] == EXIT_OK
    assert committed(data, group) == [5, 7]
    code, out, _ = replay(data, group, "--shift-by", "+4", "--execute")
    assert code == EXIT_OK
    assert committed(data, group) == [9, 10]
    assert "SKIP 4 never processed" in out
    assert "SKIP 3 never processed; 11 clamped to end 10" in out
    assert replay(data, group, "--shift-by", "-100", "--execute")[0] == EXIT_OK
    assert committed(data, group) == [0, 0]
    assert replay(data, group, "--shift-by=+100", "--execute")[0] == EXIT_OK
    assert committed(data, group) == [10, 10]


def test_to_offset_sets_and_clamps(data: Data) -> None:
    group = seed_group(data, {0: 8, 1: 10})
    assert replay(data, group, "--to-offset", "6", "--execute")[0] == EXIT_OK
    assert committed(data, group) == [6, 6]
    code, out, _ = replay(data, group, "--to-offset", "50", "--execute")
    assert code == EXIT_OK
    assert committed(data, group) == [10, 10]
    assert out.count("50 clamped to end 10") == 2


def test_chosen_partition_only(data: Data) -> None:
    group = seed_group(data, {0: 8, 1: 10})
    code, out, err = replay(data, group, "--to-earliest", "--topic", f"{data.topic}:1", "--execute")
    assert (code, err) == (EXIT_OK, "")
    assert committed(data, group) == [8, 0]
    assert "total: 1 partition, 10 records to read, 10 already processed and sent again, 0 skipped" in out


def test_unknown_topic_and_partition_exit_2_and_change_nothing(data: Data) -> None:
    group = seed_group(data, {0: 8, 1: 10})
    code, _, err = replay(data, group, "--to-earliest", "--topic", f"{data.topic}:2", "--execute")
    assert code == EXIT_USAGE
    assert f"topic '{data.topic}' has no partition 2 (it has 2: 0, 1)" in err
    code, _, err = replay(data, group, "--to-earliest", "--topic", unique("missing"), "--execute")
    assert code == EXIT_USAGE
    assert "does not exist on the cluster" in err
    assert committed(data, group) == [8, 10]


class ActiveConsumer:
    """A consumer of the group subscribed and polling in a background thread, like a running processor."""

    def __init__(self, data: Data, group: str) -> None:
        self.assigned = threading.Event()
        self._stop = threading.Event()
        self._consumer = Consumer(consumer_config(data.bootstrap, group))
        self._consumer.subscribe([data.topic], on_assign=lambda consumer, partitions: self.assigned.set())
        self._thread = threading.Thread(target=self._poll, name="active-consumer", daemon=True)
        self._thread.start()

    def _poll(self) -> None:
        while not self._stop.is_set():
            self._consumer.poll(0.1)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(10)
        self._consumer.close()


@pytest.fixture
def active(data: Data) -> Iterator[tuple[str, ActiveConsumer]]:
    group = seed_group(data, {0: 8, 1: 10})
    consumer = ActiveConsumer(data, group)
    try:
        assert consumer.assigned.wait(30), "the consumer never got its partitions"
        yield group, consumer
    finally:
        consumer.close()


def test_refuses_while_the_group_has_an_active_member(data: Data, active: tuple[str, ActiveConsumer]) -> None:
    group, consumer = active
    for argv in (["--to-earliest", "--execute"], ["--to-earliest"]):
        code, out, err = replay(data, group, *argv, topics=data.topic)
        assert code == EXIT_FAILED
        assert out == ""
        assert f"consumer group '{group}' is STABLE with 1 active member (rdkafka@" in err
        assert "kubectl scale deployment/clevertap-processor --replicas=0" in err
    assert committed(data, group) == [8, 10]

    # Had the check been skipped, the broker would refuse each partition on its own while the overall request
    # "succeeds": the admin layer must surface every one of those errors.
    settings = load_replay_settings({"KAFKA_BOOTSTRAP_SERVERS": data.bootstrap})
    outcome = GroupOffsetsAdmin(settings.admin_config(), 15).alter(group, {(data.topic, 0): 0, (data.topic, 1): 0})
    assert set(outcome) == {(data.topic, 0), (data.topic, 1)}
    for error in outcome.values():
        assert error is not None and error.startswith("UNKNOWN_MEMBER_ID"), outcome
    assert committed(data, group) == [8, 10]

    consumer.close()
    code, _, err = replay(data, group, "--to-earliest", "--execute", topics=data.topic)
    assert (code, err) == (EXIT_OK, "")
    assert committed(data, group) == [0, 0]


def test_a_failed_partition_is_reported_next_to_the_ones_that_worked(data: Data) -> None:
    group = seed_group(data, {0: 8, 1: 10})
    settings = load_replay_settings({"KAFKA_BOOTSTRAP_SERVERS": data.bootstrap})
    outcome = GroupOffsetsAdmin(settings.admin_config(), 15).alter(group, {(data.topic, 0): 2, (data.topic, 7): 1})
    assert outcome[(data.topic, 0)] is None
    assert (outcome[(data.topic, 7)] or "").startswith("UNKNOWN_TOPIC_OR_PART")
    assert committed(data, group) == [2, 10]


def test_json_output(data: Data) -> None:
    import json

    group = seed_group(data, {0: 8, 1: 10})
    code, out, _ = replay(data, group, "--to-datetime", data.iso(4.5), "--execute", "--json", topics=data.topic)
    assert code == EXIT_OK
    document = json.loads(out)
    assert document["executed"] is True
    assert document["timestamp_ms"] == round(data.base_ms + 4.5 * MINUTE_MS)
    assert [(p["partition"], p["current"], p["new"], p["to_read"], p["ok"]) for p in document["partitions"]] == [
        (0, 8, 5, 5, True),
        (1, 10, 3, 7, True),
    ]
    assert document["total"] == {"partitions": 2, "to_read": 12, "rewind": 10, "skip": 0, "failed": 0}
