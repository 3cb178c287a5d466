"""The pure parts of ``processor redrive``: headers, filters, targets, the plan, the offset ledger, settings, CLI."""

from __future__ import annotations

import argparse
import json
from collections import Counter

import pytest

from processor.errors import ConfigError
from processor.kafka.dlq import DeadLetter, dead_letter_headers
from processor.redrive import (
    EXIT_CONFIG,
    METADATA_PREFIX,
    Letter,
    LetterFilter,
    OffsetRanges,
    PartitionLedger,
    PartitionSummary,
    PlanBuilder,
    PlanGroup,
    RedriveReport,
    Target,
    add_redrive_parser,
    cmd_redrive,
    decode_redriven,
    encode_redriven,
    load_redrive_settings,
    options_from_args,
    parse_letter,
    render_text,
    resolve_target,
    strip_dlq_headers,
)

SCHEMA_ID = b"\x00\x00\x00\x07"


def letter_for(**overrides: object) -> DeadLetter:
    fields: dict[str, object] = {
        "topic": "user-events", "partition": 2, "offset": 41, "timestamp_ms": 1709251200000,
        "key": b"u-1", "value": b"\x00avro", "headers": [("__value_schema_id", SCHEMA_ID), ("trace", b"t-9")],
        "stage": "clevertap", "error_class": "RejectedByClevertap", "message": "Email: invalid", "code": 515,
        "attempts": 1, "subscription": "identify",
    }
    fields.update(overrides)
    return DeadLetter(**fields)  # type: ignore[arg-type]


def parsed(**overrides: object) -> Letter:
    letter = letter_for(**overrides)
    headers = [(n, v if isinstance(v, bytes) or v is None else v.encode()) for n, v in dead_letter_headers(letter)]
    return parse_letter(letter.key, letter.value, headers)


# ---------------------------------------------------------------------------------------------------- headers


def test_strip_dlq_headers_gives_back_the_original_headers_of_a_dead_letter() -> None:
    headers = dead_letter_headers(letter_for())
    assert [name for name, _ in headers] == [
        "__value_schema_id", "trace", "x-dlq-stage", "x-dlq-error-class", "x-dlq-error-code", "x-dlq-error-message",
        "x-dlq-source-topic", "x-dlq-source-partition", "x-dlq-source-offset", "x-dlq-source-timestamp",
        "x-dlq-attempts", "x-dlq-subscription",
    ]
    assert strip_dlq_headers(headers) == [("__value_schema_id", SCHEMA_ID), ("trace", b"t-9")]  # type: ignore[arg-type]


def test_strip_dlq_headers_keeps_order_duplicates_and_null_values_and_is_case_sensitive() -> None:
    headers: list[tuple[str, bytes | None]] = [
        ("a", b"1"), ("x-dlq-stage", b"decode"), ("a", b"2"), ("empty", None), ("X-DLQ-Stage", b"kept"),
        ("x-dlq-", b""), ("x-dlqstage", b"kept too"),
    ]
    assert strip_dlq_headers(headers) == [
        ("a", b"1"), ("a", b"2"), ("empty", None), ("X-DLQ-Stage", b"kept"), ("x-dlqstage", b"kept too"),
    ]
    assert strip_dlq_headers(None) == []
    assert strip_dlq_headers([]) == []


def test_parse_letter_reads_every_dlq_header() -> None:
    assert parsed() == Letter(
        key=b"u-1",
        value=b"\x00avro",
        headers=(
            ("__value_schema_id", SCHEMA_ID), ("trace", b"t-9"), ("x-dlq-stage", b"clevertap"),
            ("x-dlq-error-class", b"RejectedByClevertap"), ("x-dlq-error-code", b"515"),
            ("x-dlq-error-message", b"Email: invalid"), ("x-dlq-source-topic", b"user-events"),
            ("x-dlq-source-partition", b"2"), ("x-dlq-source-offset", b"41"),
            ("x-dlq-source-timestamp", b"1709251200000"), ("x-dlq-attempts", b"1"),
            ("x-dlq-subscription", b"identify"),
        ),
        stage="clevertap",
        error_class="RejectedByClevertap",
        code=515,
        message="Email: invalid",
        source_topic="user-events",
        source_partition=2,
    )


def test_parse_letter_without_or_with_unreadable_dlq_headers() -> None:
    assert parse_letter(None, None, None) == Letter(key=None, value=None, headers=())
    odd = parse_letter(b"k", b"v", [("x-dlq-error-code", b"abc"), ("x-dlq-source-partition", None),
                                    ("x-dlq-stage", b""), ("x-dlq-error-message", b"\xff bad utf-8")])
    assert (odd.code, odd.source_partition, odd.stage, odd.message) == (None, None, None, "\ufffd bad utf-8")
    assert parsed(code=None).code is None


# ---------------------------------------------------------------------------------------------------- filters


@pytest.mark.parametrize(
    ("stages", "codes", "stage", "code", "expected"),
    [
        ((), (), "decode", None, True),
        ((), (), None, None, True),
        (("clevertap",), (), "clevertap", 515, True),
        (("clevertap",), (), "decode", None, False),
        (("clevertap", "decode"), (), "decode", None, True),
        ((), (515,), "clevertap", 515, True),
        ((), (515,), "clevertap", 512, False),
        ((), (515,), "decode", None, False),
        ((), (512, 515), "validate", 512, True),
        (("clevertap",), (515,), "clevertap", 515, True),
        (("clevertap",), (515,), "validate", 515, False),
        (("clevertap",), (515,), "clevertap", 512, False),
        (("decode",), (), None, None, False),
    ],
)
def test_letter_filter(
    stages: tuple[str, ...], codes: tuple[int, ...], stage: str | None, code: int | None, expected: bool
) -> None:
    letter = Letter(key=None, value=None, headers=(), stage=stage, code=code)
    assert LetterFilter(frozenset(stages), frozenset(codes)).matches(letter) is expected


def test_letter_filter_describe() -> None:
    assert LetterFilter().describe() == "none (every letter)"
    assert not LetterFilter().active
    both = LetterFilter(frozenset({"validate", "clevertap"}), frozenset({515, 512}))
    assert both.active
    assert both.describe() == "stage clevertap or validate and code 512 or 515"


# ---------------------------------------------------------------------------------------------------- targets

DLQS = ("user-events.dlq",)


def test_target_is_the_source_topic_and_partition() -> None:
    assert resolve_target(parsed(), None, DLQS) == Target("user-events", 2)


def test_to_topic_overrides_the_source_and_lets_the_partitioner_choose() -> None:
    assert resolve_target(parsed(), "staging-events", DLQS) == Target("staging-events", None)


def test_to_topic_equal_to_the_source_keeps_the_partition() -> None:
    assert resolve_target(parsed(), "user-events", DLQS) == Target("user-events", 2)


def test_letters_without_a_usable_target() -> None:
    bare = Letter(key=b"k", value=b"v", headers=())
    assert resolve_target(bare, None, DLQS) == "no x-dlq-source-topic header (use --to-topic)"
    assert resolve_target(bare, "user-events", DLQS) == Target("user-events", None)
    looping = parsed(topic="user-events.dlq")
    assert resolve_target(looping, None, DLQS) == "target user-events.dlq is a dead-letter topic"
    no_partition = Letter(key=None, value=None, headers=(), source_topic="user-events", source_partition=None)
    assert resolve_target(no_partition, None, DLQS) == Target("user-events", None)


# ---------------------------------------------------------------------------------------------------- the plan


def test_plan_groups_by_stage_class_and_code_with_the_first_message() -> None:
    plan = PlanBuilder()
    plan.add(parsed(message="Email: invalid a@"), "user-events")
    plan.add(parsed(stage="decode", error_class="DecodeError", code=None, message="not Avro"), "user-events")
    plan.add(parsed(message="Email: invalid b@"), "user-events")
    plan.add(parsed(stage="validate", error_class="ValidationError", code=512, message="too long"), "user-events")
    plan.add(parsed(message="Email: invalid c@", topic="other-events"), "other-events")
    plan.add(parsed(stage="decode", error_class="DecodeError", code=None, message="empty"), "user-events")
    plan.add(Letter(key=None, value=None, headers=(), message=None), "user-events")
    assert plan.groups() == [
        PlanGroup("clevertap", "RejectedByClevertap", 515, 3, "Email: invalid a@",
                  (("user-events", 2), ("other-events", 1))),
        PlanGroup("decode", "DecodeError", None, 2, "not Avro", (("user-events", 2),)),
        PlanGroup("validate", "ValidationError", 512, 1, "too long", (("user-events", 1),)),
        PlanGroup(None, None, None, 1, None, (("user-events", 1),)),
    ]
    assert plan.groups()[0].as_dict() == {
        "stage": "clevertap", "error_class": "RejectedByClevertap", "code": 515, "count": 3,
        "first_message": "Email: invalid a@", "targets": {"user-events": 2, "other-events": 1},
    }
    assert PlanBuilder().groups() == []


def test_render_text_of_a_plan() -> None:
    report = RedriveReport(
        execute=False, group="cp.redrive", dlq_topics=("user-events.dlq",),
        letter_filter=LetterFilter(frozenset({"clevertap"})), to_topic=None,
        examined=5, selected=3, already_redriven=1, not_matching=1,
        groups=[PlanGroup("clevertap", "RejectedByClevertap", 515, 3, "Email:\n invalid", (("user-events", 3),))],
    )
    assert render_text(report).splitlines() == [
        "dead letters in user-events.dlq, read as group cp.redrive from its committed position up to the end seen at "
        "start",
        "filter: stage clevertap",
        "3 letters to re-drive",
        "  count  stage      error class          code  target           first error message",
        "      3  clevertap  RejectedByClevertap  515   user-events (3)  Email: invalid",
        "targets: user-events (3)",
        "looked at 5 letters; 1 already re-driven by an earlier run, 1 not matching the filter (left in place)",
        "plan only: nothing was produced or committed; add --execute to re-drive",
    ]
    assert report.exit_code() == 0


def test_report_of_an_execution_with_a_failure() -> None:
    report = RedriveReport(
        execute=True, group="cp.redrive", dlq_topics=("a.dlq",), letter_filter=LetterFilter(), to_topic=None,
        examined=3, selected=3, failed=1, redriven_to=Counter({"a": 2}), unroutable=Counter(),
        partitions=[PartitionSummary("a.dlq", 0, 0, 3, 1, 1)], errors=["a.dlq[0] offset 1 → a: Broker: too large"],
    )
    assert report.exit_code() == 1
    lines = render_text(report).splitlines()
    assert lines[-3:] == [
        "re-drove 2 (a (2)), failed 1",
        "group cp.redrive committed: a.dlq[0] 1",
        "error: a.dlq[0] offset 1 → a: Broker: too large",
    ]
    as_dict = report.as_dict()
    assert json.loads(json.dumps(as_dict)) == as_dict
    assert (as_dict["mode"], as_dict["redriven"], as_dict["failed"], as_dict["exit_code"]) == ("execute", 2, 1, 1)
    assert as_dict["partitions"] == [
        {"topic": "a.dlq", "partition": 0, "start": 0, "end": 3, "position": 1, "committed": 1, "recorded_above": 0}
    ]


def test_unroutable_letters_fail_an_execution_but_not_a_plan() -> None:
    report = RedriveReport(execute=False, group="g", dlq_topics=("a.dlq",), letter_filter=LetterFilter(),
                           to_topic=None, unroutable=Counter({"no x-dlq-source-topic header (use --to-topic)": 2}))
    assert report.exit_code() == 0
    assert "left in place, cannot be re-driven: 2 letters: no x-dlq-source-topic header (use --to-topic)" in (
        render_text(report).splitlines()
    )
    report.execute = True
    assert report.exit_code() == 1
    report.interrupted = True
    assert report.exit_code() == 130


# ---------------------------------------------------------------------------------------------------- offsets


def test_offset_ranges() -> None:
    ranges = OffsetRanges([(5, 7), (1, 1)])
    assert ranges.ranges() == [(1, 1), (5, 7)]
    ranges.add(3)
    assert ranges.ranges() == [(1, 1), (3, 3), (5, 7)]
    ranges.add(2)
    assert ranges.ranges() == [(1, 3), (5, 7)]
    ranges.add(4)
    assert ranges.ranges() == [(1, 7)]
    ranges.add_range(10, 12)
    ranges.add_range(0, 20)
    assert ranges.ranges() == [(0, 20)]
    ranges.remove(0)
    ranges.remove(20)
    ranges.remove(7)
    ranges.remove(99)
    assert ranges.ranges() == [(1, 6), (8, 19)]
    assert (0 in ranges, 1 in ranges, 7 in ranges, 19 in ranges, 20 in ranges) == (False, True, False, True, False)
    assert (ranges.first_missing_from(0), ranges.first_missing_from(3), ranges.first_missing_from(8)) == (0, 7, 20)
    assert (ranges.count_ranges_above(0), ranges.count_ranges_above(1), ranges.count_ranges_above(8)) == (2, 1, 0)
    assert (ranges.adds_range(7), ranges.adds_range(20), ranges.adds_range(21), ranges.adds_range(5)) == (
        False, False, True, False,
    )
    assert ranges.range_count == 2


def test_redriven_metadata_is_relative_to_the_committed_offset() -> None:
    done = OffsetRanges([(100, 104), (106, 106), (109, 120)])
    assert encode_redriven(105, done) == ("redrive/1:1,4-15", 0)
    assert encode_redriven(104, done) == ("redrive/1:2,5-16", 0)  # a range at or below the position is not needed
    assert encode_redriven(121, done) == ("", 0)
    assert decode_redriven(105, "redrive/1:1,4-15").ranges() == [(106, 106), (109, 120)]
    assert decode_redriven(7, "").ranges() == []
    assert decode_redriven(7, None).ranges() == []
    for foreign in ("hello", "redrive/1:", "redrive/1:0", "redrive/1:5-3", "redrive/1:1,,2", "redrive/1:-1"):
        with pytest.raises(ValueError):
            decode_redriven(7, foreign)


def test_redriven_metadata_drops_the_farthest_ranges_beyond_its_limit() -> None:
    done = OffsetRanges([(2, 2), (4, 4), (6, 6), (8, 8)])
    assert encode_redriven(0, done, limit=len(METADATA_PREFIX) + 5) == ("redrive/1:2,4,6", 1)


def ledger(
    high: int = 10, *, low: int = 0, committed: int | None = None, metadata: str | None = None
) -> PartitionLedger:
    return PartitionLedger("user-events.dlq", 0, low=low, high=high, committed=committed, metadata=metadata)


def test_ledger_without_a_filter_commits_at_the_end() -> None:
    book = ledger(5)
    assert (book.start, book.finished, book.position()) == (0, False, 0)
    for offset in range(5):
        assert book.examine(offset) is False
        book.record(offset)
    assert book.finished
    assert book.commit_state() == (5, "", 0)


def test_ledger_with_a_filter_remembers_what_was_redriven_past_a_letter_left_in_place() -> None:
    book = ledger(6)
    for offset, matches in enumerate([False, True, True, False, True, False]):
        book.examine(offset)
        if matches:
            book.record(offset)
    assert book.commit_state() == (0, "redrive/1:1-2,4", 0)

    # The next run (say without a filter) skips what was re-driven and moves over it once the gaps are done.
    again = ledger(8, committed=0, metadata="redrive/1:1-2,4")
    assert [again.examine(o) for o in range(6)] == [False, True, True, False, True, False]
    for offset in (0, 3, 5):
        again.record(offset)
    assert again.commit_state() == (6, "", 0)


def test_ledger_failed_letters_hold_the_position() -> None:
    book = ledger(4)
    for offset in range(4):
        book.examine(offset)
        book.record(offset)
    book.failed(2)
    assert book.commit_state() == (2, "redrive/1:1", 0)


def test_ledger_records_gaps_only_where_they_keep_ranges_together() -> None:
    book = ledger(20, low=10)
    assert book.examine(12) is False  # 10 and 11 hold nothing (compacted, transaction markers)
    book.record(12)
    assert book.position() == 13
    book.examine(13)  # left in place
    book.examine(16)  # 14 and 15 hold nothing, but 13 is not done: nothing gained by recording them
    book.record(16)
    assert book.done.ranges() == [(10, 12), (16, 16)]
    book.reached_end(30)  # the end seen at start is 20: offsets 17..19 hold nothing
    assert book.finished
    assert book.commit_state() == (13, "redrive/1:3-6", 0)


def test_ledger_starts_at_the_low_watermark_and_recovers_from_odd_positions() -> None:
    assert ledger(10, low=4).start == 4
    trimmed = ledger(10, low=4, committed=2, metadata="redrive/1:1,3-4")  # retention removed 2..3
    assert (trimmed.start, trimmed.position(), trimmed.note) == (4, 4, None)
    assert trimmed.examine(4) is False
    assert trimmed.examine(5) is True
    past = ledger(10, low=0, committed=50, metadata="redrive/1:1")
    assert (past.start, past.done.ranges(), past.committed_state) == (0, [], (50, "redrive/1:1"))
    assert past.note == "committed offset 50 is past the end 10 (topic re-created?): starting at 0"
    foreign = ledger(10, committed=3, metadata="set by someone else")
    assert (foreign.start, foreign.done.ranges(), foreign.committed_state) == (3, [], (3, "set by someone else"))
    assert foreign.note is not None and foreign.note.startswith("ignored commit metadata")
    empty = ledger(7, low=7, committed=7)
    assert (empty.finished, empty.commit_state()) == (True, (7, "", 0))


def test_ledger_defers_what_the_commit_metadata_cannot_hold() -> None:
    assert ledger(1000).max_ranges == 379  # (3800 - len("redrive/1:")) // (2 * len("1000") + 2)
    book = ledger(10)
    book.max_ranges = 2
    book.examine(0)  # left in place
    assert book.can_record(1)
    book.examine(1)
    book.record(1)
    book.examine(2)  # left in place
    book.examine(3)
    assert book.can_record(3)
    book.record(3)
    book.examine(4)
    assert book.can_record(4)  # touches 3: no new range
    book.record(4)
    book.examine(5)  # left in place
    book.examine(6)
    assert not book.can_record(6)
    book.defer(6)
    assert (book.finished, book.deferred_at, book.examined_until) == (True, 6, 6)
    assert book.commit_state() == (0, "redrive/1:1,3-4", 0)


def test_ledger_position_never_needs_a_record_at_the_position() -> None:
    book = ledger(10)
    book.max_ranges = 1
    book.examine(0)
    assert book.can_record(0)  # extends the position itself
    book.record(0)
    book.examine(1)
    book.examine(2)
    book.record(2)
    book.examine(3)
    book.examine(4)
    assert not book.can_record(4)
    assert book.commit_state() == (1, "redrive/1:1", 0)


# ---------------------------------------------------------------------------------------------------- settings

KAFKA_ENV = {"KAFKA_BOOTSTRAP_SERVERS": "b1:9092,b2:9092", "KAFKA_TOPICS": "user-events, orders"}


def test_settings_need_only_kafka_variables() -> None:
    settings = load_redrive_settings(KAFKA_ENV)
    assert settings.topics == ("user-events", "orders")
    assert settings.redrive_group == "clevertap-processor.redrive"
    assert settings.dlq_topics() == ("user-events.dlq", "orders.dlq")
    shared = load_redrive_settings({**KAFKA_ENV, "KAFKA_DLQ_TOPIC": "dead", "KAFKA_GROUP_ID": "cp"})
    assert (shared.dlq_topics(), shared.redrive_group) == (("dead",), "cp.redrive")


def test_settings_render_kafka_configs() -> None:
    env = {**KAFKA_ENV, "KAFKA_CONFIG_SECURITY_PROTOCOL": "SASL_SSL", "KAFKA_CONFIG_SASL_PASSWORD": "hunter2",
           "KAFKA_CONFIG_SESSION_TIMEOUT_MS": "10000", "KAFKA_CONFIG_ACKS": "1"}
    settings = load_redrive_settings(env)
    assert settings.consumer_config() == {
        "bootstrap.servers": "b1:9092,b2:9092", "client.id": "clevertap-processor-redrive",
        "auto.offset.reset": "earliest", "acks": "1", "sasl.password": "hunter2", "security.protocol": "SASL_SSL",
        "session.timeout.ms": "10000", "group.id": "clevertap-processor.redrive", "enable.auto.commit": False,
        "enable.auto.offset.store": False, "enable.partition.eof": True,
    }
    assert settings.producer_config() == {
        "bootstrap.servers": "b1:9092,b2:9092", "client.id": "clevertap-processor-redrive",
        "partitioner": "murmur2_random", "linger.ms": 20, "message.timeout.ms": 60000,
        "sasl.password": "hunter2", "security.protocol": "SASL_SSL", "acks": "all", "enable.idempotence": True,
    }
    assert "hunter2" not in repr(settings)  # a frozen dataclass repr shows kafka_extra...


@pytest.mark.parametrize(
    ("env", "setting"),
    [
        ({"KAFKA_TOPICS": "t"}, "KAFKA_BOOTSTRAP_SERVERS"),
        ({"KAFKA_BOOTSTRAP_SERVERS": "b:9092"}, "KAFKA_TOPICS"),
        ({**KAFKA_ENV, "KAFKA_TOPICS": "bad topic"}, "KAFKA_TOPICS"),
        ({**KAFKA_ENV, "KAFKA_DLQ_TOPIC": "orders"}, "KAFKA_DLQ_TOPIC"),
        ({**KAFKA_ENV, "KAFKA_CONFIG_GROUP_ID": "x"}, "KAFKA_CONFIG_GROUP_ID"),
    ],
)
def test_settings_problems_name_the_variable(env: dict[str, str], setting: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_redrive_settings(env)
    assert caught.value.setting == setting


def test_settings_without_topics_when_the_dlq_topic_is_given() -> None:
    settings = load_redrive_settings({"KAFKA_BOOTSTRAP_SERVERS": "b:9092"}, need_topics=False)
    assert settings.topics == ()


# ---------------------------------------------------------------------------------------------------- command line


def parser() -> argparse.ArgumentParser:
    root = argparse.ArgumentParser(prog="processor")
    add_redrive_parser(root.add_subparsers(dest="command"))
    return root


def test_arguments() -> None:
    args = parser().parse_args(
        ["redrive", "--stage", "clevertap", "--stage", "validate", "--code", "515", "--limit", "10", "--execute"]
    )
    options = options_from_args(args, load_redrive_settings(KAFKA_ENV))
    assert options.dlq_topics == ("user-events.dlq", "orders.dlq")
    assert options.letter_filter == LetterFilter(frozenset({"clevertap", "validate"}), frozenset({515}))
    assert (options.limit, options.execute, options.to_topic) == (10, True, None)
    plain = options_from_args(parser().parse_args(["redrive", "--dlq-topic", "dead", "--to-topic", "replays"]),
                              load_redrive_settings(KAFKA_ENV))
    assert (plain.dlq_topics, plain.to_topic, plain.letter_filter, plain.execute, plain.limit) == (
        ("dead",), "replays", LetterFilter(), False, None,
    )


@pytest.mark.parametrize("argv", [["--stage", "nope"], ["--code", "x"], ["--limit", "0"], ["--limit", "-3"]])
def test_bad_arguments_exit_2(argv: list[str]) -> None:
    with pytest.raises(SystemExit) as caught:
        parser().parse_args(["redrive", *argv])
    assert caught.value.code == 2


def test_usage_lists_every_option() -> None:
    root = argparse.ArgumentParser(prog="processor")
    usage = add_redrive_parser(root.add_subparsers()).format_usage()
    assert usage == (
        "usage: processor redrive [-h] [--dlq-topic T] [--to-topic T]\n"
        "                         [--stage {decode,route,map,validate,clevertap}]\n"
        "                         [--code N] [--limit N] [--execute] [--json]\n"
    )


@pytest.mark.parametrize(
    ("argv", "problem"),
    [
        (["--to-topic", "user-events.dlq"], "--to-topic: user-events.dlq is the dead-letter topic being read"),
        (["--dlq-topic", "a b"], "--dlq-topic: 'a b' is not a valid Kafka topic name"),
        (["--to-topic", "a/b"], "--to-topic: 'a/b' is not a valid Kafka topic name"),
    ],
)
def test_bad_topics_are_configuration_errors(argv: list[str], problem: str) -> None:
    with pytest.raises(ConfigError) as caught:
        options_from_args(parser().parse_args(["redrive", *argv]), load_redrive_settings(KAFKA_ENV))
    assert str(caught.value) == problem


def test_cmd_redrive_exits_2_naming_every_missing_variable_and_never_a_secret(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    for name in ("KAFKA_BOOTSTRAP_SERVERS", "KAFKA_TOPICS", "KAFKA_DLQ_TOPIC", "KAFKA_GROUP_ID"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("KAFKA_CONFIG_SASL_PASSWORD", "hunter2")
    monkeypatch.setenv("CLEVERTAP_PASSCODE", "also-secret")
    assert cmd_redrive(parser().parse_args(["redrive", "--execute"])) == EXIT_CONFIG
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.splitlines() == [
        "configuration error: KAFKA_BOOTSTRAP_SERVERS: is required (host:port[,host:port...] of the Kafka cluster)",
        "configuration error: KAFKA_TOPICS: is required (comma-separated topics whose dead letters to re-drive)",
    ]


def test_cmd_redrive_rejects_a_dlq_target_before_connecting(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:1")
    monkeypatch.setenv("KAFKA_TOPICS", "user-events")
    monkeypatch.delenv("KAFKA_DLQ_TOPIC", raising=False)
    assert cmd_redrive(parser().parse_args(["redrive", "--to-topic", "user-events.dlq"])) == EXIT_CONFIG
    assert capsys.readouterr().err == (
        "configuration error: --to-topic: user-events.dlq is the dead-letter topic being read\n"
    )
