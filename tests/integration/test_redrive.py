"""``processor redrive`` on a real broker: dead letters written by the processor's own DeadLetterWriter, a plan that
changes nothing, filtered and unfiltered executions, a produce that fails, and the redrive group's positions."""

from __future__ import annotations

import argparse
import json
from typing import Any

import pytest
from confluent_kafka import Consumer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic  # type: ignore[attr-defined]

from processor.embedded.events import create_topics
from processor.kafka.dlq import DeadLetter, DeadLetterWriter
from processor.redrive import (
    LetterFilter,
    PlanGroup,
    RedriveOptions,
    RedriveSettings,
    add_redrive_parser,
    cmd_redrive,
    load_redrive_settings,
    run_redrive,
)
from tests.integration.helpers import committed_and_end_offsets, read_all, unique

pytestmark = pytest.mark.integration

SCHEMA_ID = b"\x00\x00\x00\x07"


def dead(source: str, partition: int, offset: int, key: bytes | None, value: bytes, headers: list[tuple[str, bytes]],
         stage: str, error_class: str, code: int | None, message: str) -> DeadLetter:
    return DeadLetter(
        topic=source, partition=partition, offset=offset, timestamp_ms=1709251200000 + offset, key=key, value=value,
        headers=headers, stage=stage, error_class=error_class, message=message, code=code, attempts=2,
        subscription="identify",
    )


async def write_letters(settings: RedriveSettings, dlq: str, letters: list[DeadLetter]) -> None:
    writer = DeadLetterWriter(settings.producer_config())
    try:
        for letter in letters:  # one at a time: their DLQ offsets follow this order
            await writer.write(dlq, letter)
    finally:
        assert await writer.close() == 0


def committed_with_metadata(bootstrap: str, topic: str, group: str) -> tuple[int, str | None]:
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group, "enable.auto.commit": False})
    try:
        (tp,) = consumer.committed([TopicPartition(topic, 0)], timeout=10)
    finally:
        consumer.close()
    return tp.offset, tp.metadata


Record = tuple[int, bytes | None, bytes | None, list[Any]]  # partition, key, value, headers


def in_order(records: Any) -> list[Record]:
    return sorted(records, key=lambda record: (record[0], record[2] or b""))


def arrived(bootstrap: str, topic: str, expected: int) -> list[Record]:
    return in_order(
        (m.partition(), m.key(), m.value(), list(m.headers() or [])) for m in read_all(bootstrap, topic, expected)
    )


def settings_for(bootstrap: str, topic: str, group: str) -> RedriveSettings:
    # No CleverTap variables at all: a re-drive needs only Kafka's.
    return load_redrive_settings({"KAFKA_BOOTSTRAP_SERVERS": bootstrap, "KAFKA_TOPICS": topic, "KAFKA_GROUP_ID": group})


async def test_plan_then_filtered_then_full_redrive(
    kafka_bootstrap: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    topic, group = unique("redrive"), unique("cp")
    dlq = f"{topic}.dlq"
    create_topics(kafka_bootstrap, {topic: 2, dlq: 1})
    settings = settings_for(kafka_bootstrap, topic, group)
    redrive_group = f"{group}.redrive"
    schema_header = ("__value_schema_id", SCHEMA_ID)
    letters = [
        dead(topic, 0, 10, b"u-1", b"avro-1", [schema_header, ("traceparent", b"00-abc")],
             "clevertap", "RejectedByClevertap", 515, "Email: invalid"),
        dead(topic, 1, 11, b"u-2", b"avro-2", [schema_header], "clevertap", "RejectedByClevertap", 515, "Email: x"),
        dead(topic, 0, 12, None, b"not avro", [], "decode", "DecodeError", None, "not an Avro record"),
        dead(topic, 1, 13, b"u-4", b"avro-4", [schema_header], "validate", "ValidationError", 512, "too long"),
        dead(topic, 0, 14, b"u-1", b"avro-5", [("x-dlq-stage", b"stale"), schema_header],
             "clevertap", "RejectedByClevertap", 515, "Phone: invalid"),
    ]
    await write_letters(settings, dlq, letters)
    originals = {
        b"avro-1": (0, b"u-1", [schema_header, ("traceparent", b"00-abc")]),
        b"avro-2": (1, b"u-2", [schema_header]),
        b"not avro": (0, None, []),
        b"avro-4": (1, b"u-4", [schema_header]),
        b"avro-5": (0, b"u-1", [schema_header]),  # the stale x-dlq-* header never was part of the letter
    }

    # 1. The plan, through the command line: nothing produced, nothing committed.
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", kafka_bootstrap)
    monkeypatch.setenv("KAFKA_TOPICS", topic)
    monkeypatch.setenv("KAFKA_GROUP_ID", group)
    monkeypatch.delenv("KAFKA_DLQ_TOPIC", raising=False)
    root = argparse.ArgumentParser(prog="processor")
    add_redrive_parser(root.add_subparsers(dest="command"))
    assert cmd_redrive(root.parse_args(["redrive", "--json"])) == 0
    plan = json.loads(capsys.readouterr().out)
    assert (plan["mode"], plan["group"], plan["dlq_topics"]) == ("plan", redrive_group, [dlq])
    assert (plan["examined"], plan["selected"], plan["redriven"], plan["already_redriven"]) == (5, 5, 0, 0)
    assert plan["groups"] == [
        {"stage": "clevertap", "error_class": "RejectedByClevertap", "code": 515, "count": 3,
         "first_message": "Email: invalid", "targets": {topic: 3}},
        {"stage": "decode", "error_class": "DecodeError", "code": None, "count": 1,
         "first_message": "not an Avro record", "targets": {topic: 1}},
        {"stage": "validate", "error_class": "ValidationError", "code": 512, "count": 1,
         "first_message": "too long", "targets": {topic: 1}},
    ]
    assert plan["partitions"] == [
        {"topic": dlq, "partition": 0, "start": 0, "end": 5, "position": 5, "committed": None, "recorded_above": 0}
    ]
    limited = run_redrive(settings, RedriveOptions(dlq_topics=(dlq,), limit=2))
    assert (limited.selected, limited.limit_reached) == (2, True)
    assert read_all(kafka_bootstrap, topic, 0) == []
    assert committed_and_end_offsets(kafka_bootstrap, dlq, redrive_group, 1) == ([-1001], [5])

    # 2. Only the 515s. The decode and validate letters between them stay where they are.
    only_515 = RedriveOptions(
        dlq_topics=(dlq,), letter_filter=LetterFilter(frozenset({"clevertap"}), frozenset({515})), execute=True
    )
    report = run_redrive(settings, only_515)
    assert (report.redriven, report.failed, report.not_matching, report.exit_code()) == (3, 0, 2, 0)
    assert report.groups == [
        PlanGroup("clevertap", "RejectedByClevertap", 515, 3, "Email: invalid", ((topic, 3),))
    ]
    assert committed_with_metadata(kafka_bootstrap, dlq, redrive_group) == (2, "redrive/1:2")
    assert (report.partitions[0].committed, report.partitions[0].recorded_above) == (2, 1)
    assert arrived(kafka_bootstrap, topic, 3) == in_order(
        (p, k, v, h) for v, (p, k, h) in originals.items() if v in (b"avro-1", b"avro-2", b"avro-5")
    )

    # The same filter again finds nothing left to do.
    again = run_redrive(settings, only_515)
    assert (again.examined, again.already_redriven, again.not_matching, again.redriven) == (3, 1, 2, 0)
    assert committed_with_metadata(kafka_bootstrap, dlq, redrive_group) == (2, "redrive/1:2")

    # 3. Everything else: the 515s are not re-driven a second time, the group reaches the end.
    report = run_redrive(settings, RedriveOptions(dlq_topics=(dlq,), execute=True))
    assert (report.redriven, report.already_redriven, report.failed, report.exit_code()) == (2, 1, 0, 0)
    assert committed_with_metadata(kafka_bootstrap, dlq, redrive_group) == (5, "")
    assert committed_and_end_offsets(kafka_bootstrap, dlq, redrive_group, 1) == ([5], [5])
    assert arrived(kafka_bootstrap, topic, 5) == in_order((p, k, v, h) for v, (p, k, h) in originals.items())

    # 4. A second execution re-drives nothing; a letter written since is the next run's work.
    report = run_redrive(settings, RedriveOptions(dlq_topics=(dlq,), execute=True))
    assert (report.examined, report.redriven, report.exit_code()) == (0, 0, 0)
    await write_letters(settings, dlq, [dead(topic, 1, 15, b"u-6", b"avro-6", [], "map", "MappingError", None, "m")])
    nxt = run_redrive(settings, RedriveOptions(dlq_topics=(dlq,)))
    assert (nxt.selected, [g.stage for g in nxt.groups]) == (1, ["map"])
    assert len(read_all(kafka_bootstrap, topic, 5)) == 5


async def test_failed_produce_holds_the_position_and_a_later_run_finishes(kafka_bootstrap: str) -> None:
    topic, group = unique("redrive-fail"), unique("cp")
    dlq, tiny, spare = f"{topic}.dlq", f"{topic}-tiny", f"{topic}-spare"
    redrive_group = f"{group}.redrive"
    create_topics(kafka_bootstrap, {topic: 1, dlq: 1, spare: 1})
    admin = AdminClient({"bootstrap.servers": kafka_bootstrap})
    for future in admin.create_topics(
        [NewTopic(tiny, num_partitions=1, replication_factor=1, config={"max.message.bytes": "400"})]
    ).values():
        future.result(timeout=30)
    settings = settings_for(kafka_bootstrap, topic, group)
    values = [b"small-0", b"B" * 2000, b"small-2"]  # the second cannot fit in the tiny topic
    await write_letters(settings, dlq, [
        dead(topic, 0, i, f"k{i}".encode(), value, [], "clevertap", "RejectedByClevertap", 515, "x")
        for i, value in enumerate(values)
    ])

    # One letter per batch, so the broker refuses exactly the big one (it refuses whole batches).
    failed = run_redrive(settings, RedriveOptions(dlq_topics=(dlq,), to_topic=tiny, execute=True, batch_size=1))
    assert (failed.redriven, failed.failed, failed.exit_code()) == (1, 1, 1)
    assert failed.errors == [f"{dlq}[0] offset 1 → {tiny}: Broker: Message size too large"]
    assert [m.value() for m in read_all(kafka_bootstrap, tiny, 1)] == [b"small-0"]
    assert committed_with_metadata(kafka_bootstrap, dlq, redrive_group) == (1, "")  # not past the failed letter

    finished = run_redrive(settings, RedriveOptions(dlq_topics=(dlq,), to_topic=spare, execute=True))
    assert (finished.redriven, finished.failed, finished.exit_code()) == (2, 0, 0)
    assert [m.value() for m in read_all(kafka_bootstrap, spare, 2)] == values[1:]
    assert committed_with_metadata(kafka_bootstrap, dlq, redrive_group) == (3, "")
