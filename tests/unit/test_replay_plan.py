"""``processor replay`` without a broker: parsing, planning tables, output, and the command's decisions on a fake."""

from __future__ import annotations

import io
import json
from collections.abc import Mapping, Sequence
from concurrent.futures import Future
from datetime import UTC, datetime, timedelta, timezone
from types import SimpleNamespace
from typing import Any

import pytest
from confluent_kafka import KafkaError, KafkaException

from processor.replay import (
    EXIT_FAILED,
    EXIT_OK,
    EXIT_USAGE,
    GroupDescription,
    GroupOffsetsAdmin,
    PartitionPlan,
    PartitionState,
    ReplayFailed,
    ReplaySettings,
    ReplayUsageError,
    Strategy,
    TopicPartitionKey,
    format_ms,
    load_replay_settings,
    parse_datetime,
    parse_duration,
    parse_topic_selection,
    plan_partition,
    render_table,
    run_replay,
    select_partitions,
    timestamp_ms,
    total_line,
)

NOW = datetime(2024, 3, 1, 12, 0, tzinfo=UTC)


# ---------------------------------------------------------------------------------------------------- durations


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("PT6H", timedelta(hours=6)),
        ("PT30M", timedelta(minutes=30)),
        ("P2D", timedelta(days=2)),
        ("P1DT12H", timedelta(days=1, hours=12)),
        ("PT1H30M", timedelta(hours=1, minutes=30)),
        ("PT90S", timedelta(seconds=90)),
        ("PT0.5S", timedelta(milliseconds=500)),
        ("P1DT2H3M4S", timedelta(days=1, hours=2, minutes=3, seconds=4)),
        ("pt6h", timedelta(hours=6)),
        (" PT6H ", timedelta(hours=6)),
        ("PT0S", timedelta(0)),
    ],
)
def test_parse_duration_accepts_the_documented_subset(text: str, expected: timedelta) -> None:
    assert parse_duration(text) == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "is not an ISO-8601 duration"),
        ("P", "is not an ISO-8601 duration"),
        ("PT", "is not an ISO-8601 duration"),
        ("P1DT", "is not an ISO-8601 duration"),
        ("6H", "is not an ISO-8601 duration"),
        ("PT-6H", "is not an ISO-8601 duration"),
        ("-PT6H", "is not an ISO-8601 duration"),
        ("PT6H30", "is not an ISO-8601 duration"),
        ("PT30M6H", "is not an ISO-8601 duration"),
        ("P1.5D", "is not an ISO-8601 duration"),
        ("PT0.0001S", "is not an ISO-8601 duration"),
        ("6 hours", "is not an ISO-8601 duration"),
        ("P1M", "years, months and weeks"),
        ("P1Y", "years, months and weeks"),
        ("P2W", "years, months and weeks"),
        ("P1Y2M3DT4H", "years, months and weeks"),
    ],
)
def test_parse_duration_refuses_everything_else(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_duration(text)


# ---------------------------------------------------------------------------------------------------- date-times


@pytest.mark.parametrize(
    ("text", "expected_ms"),
    [
        ("2024-03-01T00:00:00Z", 1709251200000),
        ("2024-03-01T02:00:00+02:00", 1709251200000),
        ("2024-02-29T19:00:00-05:00", 1709251200000),
        ("2024-03-01T00:00:00.250Z", 1709251200250),
        ("2024-03-01 00:00:00+00:00", 1709251200000),
        # A sub-millisecond time rounds up: a record stamped .250 is before .2501 and is not replayed.
        ("2024-03-01T00:00:00.2501Z", 1709251200251),
    ],
)
def test_parse_datetime_requires_and_honours_the_offset(text: str, expected_ms: int) -> None:
    assert timestamp_ms(parse_datetime(text)) == expected_ms


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("2024-03-01T00:00:00", "has no UTC offset"),
        ("2024-03-01", "has no UTC offset"),
        ("yesterday", "is not an ISO-8601 date-time"),
        ("2024-13-01T00:00:00Z", "is not an ISO-8601 date-time"),
        ("1969-12-31T23:59:59Z", "before 1970"),
    ],
)
def test_parse_datetime_refuses_naive_and_invalid_times(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_datetime(text)


def test_format_ms_shows_milliseconds_only_when_present() -> None:
    assert format_ms(1709251200000) == "2024-03-01T00:00:00Z"
    assert format_ms(1709251200250) == "2024-03-01T00:00:00.250Z"


def test_by_duration_counts_back_from_the_injected_now() -> None:
    strategy = Strategy.by_duration(parse_duration("PT6H"), "PT6H", NOW)
    assert strategy.timestamp_ms == timestamp_ms(datetime(2024, 3, 1, 6, 0, tzinfo=UTC))
    assert strategy.label == "--by-duration PT6H (since 2024-03-01T06:00:00Z)"
    other_zone = NOW.astimezone(timezone(timedelta(hours=5, minutes=30)))
    assert Strategy.by_duration(timedelta(hours=6), "PT6H", other_zone).timestamp_ms == strategy.timestamp_ms


# ---------------------------------------------------------------------------------------------------- topics


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("user-events", ("user-events", None)),
        ("user-events:0", ("user-events", (0,))),
        ("user-events:2,0", ("user-events", (0, 2))),
        ("user-events:1,1", ("user-events", (1,))),
        ("a.b_c-d:3", ("a.b_c-d", (3,))),
    ],
)
def test_parse_topic_selection(text: str, expected: tuple[str, tuple[int, ...] | None]) -> None:
    assert parse_topic_selection(text) == expected


@pytest.mark.parametrize("text", ["", "bad topic", "t:", "t:x", "t:0,", "t:-1", ":0"])
def test_parse_topic_selection_refuses_malformed_input(text: str) -> None:
    with pytest.raises(ValueError):
        parse_topic_selection(text)


PARTITIONS = {"a": [0, 1, 2], "b": [0, 1]}


@pytest.mark.parametrize(
    ("requested", "default", "expected"),
    [
        ([], ["a"], [("a", 0), ("a", 1), ("a", 2)]),
        ([], ["b", "a"], [("a", 0), ("a", 1), ("a", 2), ("b", 0), ("b", 1)]),
        ([("b", None)], ["a"], [("b", 0), ("b", 1)]),
        ([("a", (0, 2))], ["b"], [("a", 0), ("a", 2)]),
        ([("a", (2,)), ("a", (0,))], [], [("a", 0), ("a", 2)]),
        ([("a", (1,)), ("a", None)], [], [("a", 0), ("a", 1), ("a", 2)]),
    ],
)
def test_select_partitions(
    requested: list[tuple[str, tuple[int, ...] | None]], default: list[str], expected: list[TopicPartitionKey]
) -> None:
    assert select_partitions(requested, default, PARTITIONS) == expected


def test_select_partitions_names_unknown_topics_and_partitions() -> None:
    with pytest.raises(ReplayUsageError, match="topic 'c' does not exist"):
        select_partitions([("c", None)], [], PARTITIONS)
    with pytest.raises(ReplayUsageError, match=r"topic 'b' has no partition 2, 5 \(it has 2: 0, 1\)"):
        select_partitions([("b", (0, 2, 5))], [], PARTITIONS)


# ---------------------------------------------------------------------------------------------------- planning

EARLIEST = Strategy.earliest()
LATEST = Strategy.latest()
AT_TIME = Strategy.to_datetime(datetime(2024, 3, 1, tzinfo=UTC))


def state(committed: int | None, low: int, high: int, for_time: int | None = None) -> PartitionState:
    return PartitionState("t", 0, committed, low, high, offset_for_time=for_time)


# (case, state, strategy, new, start, to_read, rewind, skip, change)
PLAN_CASES: list[tuple[str, PartitionState, Strategy, int, int, int, int, int, str]] = [
    ("earliest rewinds everything", state(80, 0, 100), EARLIEST, 0, 80, 100, 80, 0, "rewind 80"),
    ("earliest is the low watermark", state(80, 30, 100), EARLIEST, 30, 80, 70, 50, 0, "rewind 50"),
    ("latest skips the backlog", state(80, 0, 100), LATEST, 100, 80, 0, 0, 20, "SKIP 20 never processed"),
    ("latest when caught up", state(100, 0, 100), LATEST, 100, 100, 0, 0, 0, "unchanged"),
    ("offset inside", state(80, 0, 100), Strategy.to_offset(40), 40, 80, 60, 40, 0, "rewind 40"),
    ("offset ahead is a skip", state(80, 0, 100), Strategy.to_offset(90), 90, 80, 10, 0, 10, "SKIP 10 never processed"),
    (
        "offset below low is clamped", state(80, 30, 100), Strategy.to_offset(5), 30, 80, 70, 50, 0,
        "rewind 50; 5 clamped to earliest retained offset 30",
    ),
    (
        "offset past the end is clamped", state(80, 0, 100), Strategy.to_offset(500), 100, 80, 0, 0, 20,
        "SKIP 20 never processed; 500 clamped to end 100",
    ),
    ("shift back", state(80, 0, 100), Strategy.shift_by(-3), 77, 80, 23, 3, 0, "rewind 3"),
    ("shift forward", state(80, 0, 100), Strategy.shift_by(5), 85, 80, 15, 0, 5, "SKIP 5 never processed"),
    (
        "shift back below low", state(2, 0, 100), Strategy.shift_by(-3), 0, 2, 100, 2, 0,
        "rewind 2; -1 clamped to earliest retained offset 0",
    ),
    (
        "shift forward past the end", state(98, 0, 100), Strategy.shift_by(5), 100, 98, 0, 0, 2,
        "SKIP 2 never processed; 103 clamped to end 100",
    ),
    ("shift by zero", state(50, 0, 100), Strategy.shift_by(0), 50, 50, 50, 0, 0, "unchanged"),
    ("time in the middle", state(80, 0, 100, for_time=42), AT_TIME, 42, 80, 58, 38, 0, "rewind 38"),
    ("time after the committed offset", state(30, 0, 100, for_time=42), AT_TIME, 42, 30, 58, 0, 12,
     "SKIP 12 never processed"),
    (
        "time after the last record", state(80, 0, 100, for_time=None), AT_TIME, 100, 80, 0, 0, 20,
        "SKIP 20 never processed; no record at or after that time: end",
    ),
    (
        "time lookup answered -1", state(100, 0, 100, for_time=-1), AT_TIME, 100, 100, 0, 0, 0,
        "unchanged; no record at or after that time: end",
    ),
    (
        "nothing committed, earliest", state(None, 10, 100), EARLIEST, 10, 10, 90, 0, 0,
        "unchanged; no committed offset (would start at earliest)",
    ),
    (
        "nothing committed, shift counts from the reset position", state(None, 10, 100), Strategy.shift_by(5), 15,
        10, 85, 0, 5, "SKIP 5 never processed; no committed offset (would start at earliest)",
    ),
    (
        "committed offset deleted by retention", state(5, 10, 100), EARLIEST, 10, 10, 90, 0, 0,
        "unchanged; committed 5 is before the earliest retained offset 10",
    ),
    (
        "committed offset past the end", state(150, 0, 100), LATEST, 100, 0, 0, 0, 100,
        "SKIP 100 never processed; committed 150 is past the end 100",
    ),
    ("empty partition", state(None, 0, 0), EARLIEST, 0, 0, 0, 0, 0,
     "unchanged; no committed offset (would start at earliest)"),
    ("emptied partition", state(7, 7, 7), Strategy.shift_by(-3), 7, 7, 0, 0, 0,
     "unchanged; 4 clamped to earliest retained offset 7"),
]


@pytest.mark.parametrize(
    ("state_", "strategy", "new", "start", "to_read", "rewind", "skip", "change"),
    [case[1:] for case in PLAN_CASES],
    ids=[case[0] for case in PLAN_CASES],
)
def test_plan_partition(
    state_: PartitionState, strategy: Strategy, new: int, start: int, to_read: int, rewind: int, skip: int, change: str
) -> None:
    plan = plan_partition(state_, strategy)
    assert (plan.new, plan.start, plan.to_read, plan.rewind, plan.skip, plan.change) == (
        new, start, to_read, rewind, skip, change,
    )
    assert plan.low <= plan.new <= plan.high
    assert plan.current == state_.committed


def test_plan_partition_without_commit_follows_a_latest_reset_policy() -> None:
    plan = plan_partition(state(None, 0, 100), Strategy.shift_by(-10), reset_to="latest")
    assert (plan.start, plan.new, plan.rewind, plan.to_read) == (100, 90, 10, 10)
    assert plan.change == "rewind 10; no committed offset (would start at latest)"


# ---------------------------------------------------------------------------------------------------- output


def test_render_table_and_total() -> None:
    plans = [
        plan_partition(PartitionState("user-events", 0, 80, 0, 100, 42), AT_TIME),
        plan_partition(PartitionState("user-events", 1, None, 0, 7, None), AT_TIME),
    ]
    assert render_table(plans) == [
        "TOPIC        PARTITION  CURRENT  NEW  END  TO-READ  CHANGE",
        "user-events  0          80       42   100  58       rewind 38",
        "user-events  1          -        7    7    0        SKIP 7 never processed; no committed offset (would start "
        "at earliest); no record at or after that time: end",
    ]
    assert total_line(plans) == (
        "total: 2 partitions, 58 records to read, 38 already processed and sent again, 7 skipped"
    )
    results = {("user-events", 0): None, ("user-events", 1): "UNKNOWN_MEMBER_ID: Broker: Unknown member"}
    failed = "FAILED: UNKNOWN_MEMBER_ID: Broker: Unknown member"
    assert render_table(plans, results) == [
        f"TOPIC        PARTITION  CURRENT  NEW  END  TO-READ  {'RESULT'.ljust(len(failed))}  CHANGE",
        f"user-events  0          80       42   100  58       {'ok'.ljust(len(failed))}  rewind 38",
        f"user-events  1          -        7    7    0        {failed}  "
        "SKIP 7 never processed; no committed offset (would start at earliest); no record at or after that time: end",
    ]


# ---------------------------------------------------------------------------------------------------- settings


def test_replay_settings_need_only_kafka() -> None:
    settings = load_replay_settings(
        {
            "KAFKA_BOOTSTRAP_SERVERS": "b1:9092,b2:9092",
            "KAFKA_TOPICS": "user-events, other",
            "KAFKA_CONFIG_SECURITY_PROTOCOL": "SASL_SSL",
            "KAFKA_CONFIG_SASL_PASSWORD": "hunter2",
            "KAFKA_CONFIG_SESSION_TIMEOUT_MS": "10000",
            "KAFKA_CONFIG_AUTO_OFFSET_RESET": "latest",
        }
    )
    assert settings.group_id == "clevertap-processor"
    assert settings.topics == ("user-events", "other")
    assert settings.reset_to == "latest"
    assert settings.read_committed
    # Consumer-only properties would make librdkafka warn on an admin client; security settings pass through.
    assert settings.admin_config() == {
        "bootstrap.servers": "b1:9092,b2:9092",
        "client.id": "clevertap-processor-replay",
        "security.protocol": "SASL_SSL",
        "sasl.password": "hunter2",
    }


def test_missing_bootstrap_servers_exits_2_naming_it(capsys: pytest.CaptureFixture[str]) -> None:
    code = run_replay(["--to-earliest"], {"KAFKA_TOPICS": "t", "KAFKA_CONFIG_GROUP_ID": "x"})
    assert code == EXIT_USAGE
    err = capsys.readouterr().err
    assert "configuration error: KAFKA_BOOTSTRAP_SERVERS: is required" in err
    assert "configuration error: KAFKA_CONFIG_GROUP_ID: group.id is managed by the processor" in err


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        ([], "one of the arguments --to-earliest --to-latest"),
        (["--to-earliest", "--to-latest"], "not allowed with argument"),
        (["--to-datetime", "2024-03-01T00:00:00"], "has no UTC offset"),
        (["--by-duration", "P1M"], "years, months and weeks"),
        (["--to-offset", "-1"], "is not an offset"),
        (["--shift-by", "three"], "is not a whole number"),
        (["--to-earliest", "--topic", "t:x"], "partitions must be a comma-separated list"),
    ],
)
def test_bad_arguments_exit_2(argv: list[str], message: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert run_replay(argv, {"KAFKA_BOOTSTRAP_SERVERS": "b:9092"}) == EXIT_USAGE
    assert message in capsys.readouterr().err


# -------------------------------------------------------------------------------------------- the command, on a fake


class FakeAdmin:
    def __init__(
        self,
        *,
        members: tuple[str, ...] = (),
        committed: Mapping[TopicPartitionKey, int] | None = None,
        partitions: Mapping[str, list[int]] | None = None,
        marks: Mapping[TopicPartitionKey, tuple[int, int]] | None = None,
        alter_errors: Mapping[TopicPartitionKey, str] | None = None,
    ) -> None:
        self.members = members
        self.committed = dict(committed or {})
        self.partitions = dict(partitions or {"t": [0, 1]})
        self.marks = dict(marks or {("t", 0): (0, 10), ("t", 1): (0, 10)})
        self.alter_errors = dict(alter_errors or {})
        self.altered: dict[TopicPartitionKey, int] | None = None

    def describe_group(self, group_id: str) -> GroupDescription:
        return GroupDescription(group_id, "STABLE" if self.members else "EMPTY", self.members)

    def committed_offsets(self, group_id: str) -> tuple[dict[TopicPartitionKey, int], dict[TopicPartitionKey, str]]:
        return dict(self.committed), {}

    def partitions_of(self) -> dict[str, list[int]]:
        return dict(self.partitions)

    def watermarks(
        self, keys: Sequence[TopicPartitionKey]
    ) -> tuple[dict[TopicPartitionKey, tuple[int, int]], dict[TopicPartitionKey, str]]:
        return {k: self.marks[k] for k in keys if k in self.marks}, {
            k: "LEADER_NOT_AVAILABLE: Broker: Leader not available" for k in keys if k not in self.marks
        }

    def offsets_for_time(
        self, keys: Sequence[TopicPartitionKey], ms: int
    ) -> tuple[dict[TopicPartitionKey, int | None], dict[TopicPartitionKey, str]]:
        return dict.fromkeys(keys, 5), {}

    def alter(self, group_id: str, offsets: Mapping[TopicPartitionKey, int]) -> dict[TopicPartitionKey, str | None]:
        self.altered = dict(offsets)
        return {k: self.alter_errors.get(k) for k in offsets}


def run_fake(argv: list[str], fake: FakeAdmin, env: Mapping[str, str] | None = None) -> tuple[int, str, str]:
    from processor.replay import build_parser, replay

    out, err = io.StringIO(), io.StringIO()
    environment = {"KAFKA_BOOTSTRAP_SERVERS": "b:9092", "KAFKA_TOPICS": "t", **(env or {})}
    code = replay(
        build_parser().parse_args(argv), environment, now=lambda: NOW, out=out, err=err,
        admin_factory=lambda settings, timeout: fake,
    )
    return code, out.getvalue(), err.getvalue()


def test_active_members_are_refused_with_the_kubernetes_hint() -> None:
    fake = FakeAdmin(members=("clevertap-processor@10.0.0.7", "clevertap-processor@10.0.0.8"))
    code, out, err = run_fake(["--to-earliest", "--execute"], fake)
    assert code == EXIT_FAILED
    assert out == ""
    assert "consumer group 'clevertap-processor' is STABLE with 2 active members" in err
    assert "clevertap-processor@10.0.0.7, clevertap-processor@10.0.0.8" in err
    assert "kubectl scale deployment/clevertap-processor --replicas=0" in err
    assert "kubectl annotate scaledobject clevertap-processor autoscaling.keda.sh/paused-replicas=0 --overwrite" in err
    assert fake.altered is None


def test_plan_only_changes_nothing() -> None:
    fake = FakeAdmin(committed={("t", 0): 8, ("t", 1): 10})
    code, out, _ = run_fake(["--shift-by", "-3"], fake)
    assert code == EXIT_OK
    assert fake.altered is None
    assert out.splitlines() == [
        "consumer group clevertap-processor (EMPTY, no active members): --shift-by -3",
        "TOPIC  PARTITION  CURRENT  NEW  END  TO-READ  CHANGE",
        "t      0          8        5    10   5        rewind 3",
        "t      1          10       7    10   3        rewind 3",
        "total: 2 partitions, 8 records to read, 6 already processed and sent again, 0 skipped",
        "plan only: nothing changed (add --execute to apply)",
    ]


def test_every_partition_failure_is_reported_and_exits_1() -> None:
    fake = FakeAdmin(
        committed={("t", 0): 8, ("t", 1): 10},
        alter_errors={("t", 1): "UNKNOWN_MEMBER_ID: Broker: Unknown member"},
    )
    code, out, err = run_fake(["--to-earliest", "--execute"], fake)
    assert code == EXIT_FAILED
    assert fake.altered == {("t", 0): 0, ("t", 1): 0}
    assert "t      1          10       0    10   10       FAILED: UNKNOWN_MEMBER_ID: Broker: Unknown member" in out
    assert "FAILED on 1 of 2 partitions; the others were reset" in out
    assert "replay: t partition 1: not reset: UNKNOWN_MEMBER_ID: Broker: Unknown member" in err


def test_a_partition_that_cannot_be_planned_stops_everything() -> None:
    fake = FakeAdmin(marks={("t", 0): (0, 10)})
    code, out, err = run_fake(["--to-earliest", "--execute"], fake)
    assert code == EXIT_FAILED
    assert fake.altered is None
    assert "replay: t partition 1: cannot plan: LEADER_NOT_AVAILABLE" in err
    assert "t      0          -        0    10   10       unchanged" in out
    assert "t      1" not in out
    assert "nothing changed: 1 partition(s) could not be planned" in err


def test_default_topics_are_kafka_topics_plus_the_groups_topics() -> None:
    fake = FakeAdmin(
        committed={("old", 0): 3, ("deleted", 0): 1},
        partitions={"t": [0, 1], "old": [0]},
        marks={("t", 0): (0, 10), ("t", 1): (0, 10), ("old", 0): (0, 4)},
    )
    code, out, err = run_fake(["--to-earliest", "--json"], fake)
    assert code == EXIT_OK
    document = json.loads(out)
    assert [(p["topic"], p["partition"]) for p in document["partitions"]] == [("old", 0), ("t", 0), ("t", 1)]
    assert document["total"] == {"partitions": 3, "to_read": 24, "rewind": 3, "skip": 0}
    assert document["executed"] is False
    assert "ignoring committed offsets of 'deleted': the topic no longer exists" in err


def test_no_topics_at_all_exits_2() -> None:
    code, _, err = run_fake(["--to-earliest"], FakeAdmin(), env={"KAFKA_TOPICS": ""})
    assert code == EXIT_USAGE
    assert "group 'clevertap-processor' has no committed offsets and KAFKA_TOPICS is not set" in err


def test_secrets_are_never_printed() -> None:
    fake = FakeAdmin(committed={("t", 0): 8})
    code, out, err = run_fake(
        ["--to-earliest", "--execute", "--json"], fake, env={"KAFKA_CONFIG_SASL_PASSWORD": "hunter2-secret"}
    )
    assert code == EXIT_OK
    assert "hunter2-secret" not in out + err


def test_plan_partition_type_is_exported() -> None:
    assert PartitionPlan("t", 0, None, 0, 0, 0, 0).change == "unchanged"
    assert ReplaySettings("b:9092").reset_to == "earliest"


# -------------------------------------------------------------------------------------- describing the group, retries


class ScriptedDescribe:
    """Stands in for AdminClient.describe_consumer_groups: raises the scripted errors, then answers."""

    def __init__(self, errors: list[BaseException], members: int = 0) -> None:
        self.errors = errors
        self.members = members
        self.calls = 0

    def describe_consumer_groups(self, group_ids: list[str], request_timeout: float) -> dict[str, Future[Any]]:
        self.calls += 1
        future: Future[Any] = Future()
        if self.errors:
            future.set_exception(self.errors.pop(0))
        else:
            member = SimpleNamespace(client_id="clevertap-processor", host="/10.0.0.7")
            future.set_result(
                SimpleNamespace(state=SimpleNamespace(name="STABLE"), members=[member] * self.members)
            )
        return {group_ids[0]: future}


def scripted_admin(script: ScriptedDescribe, timeout_s: float = 10.0) -> GroupOffsetsAdmin:
    return GroupOffsetsAdmin({"bootstrap.servers": "127.0.0.1:1"}, timeout_s, client=script)  # type: ignore[arg-type]


def kafka_exception(code: int) -> KafkaException:
    return KafkaException(KafkaError(code))


def test_describe_retries_while_the_coordinator_is_not_ready() -> None:
    script = ScriptedDescribe(
        [kafka_exception(KafkaError.NOT_COORDINATOR), kafka_exception(KafkaError._TIMED_OUT)], members=2
    )
    group = scripted_admin(script).describe_group("g")
    assert script.calls == 3
    assert group == GroupDescription("g", "STABLE", ("clevertap-processor@10.0.0.7",) * 2)


def test_describe_of_an_unknown_group_is_an_empty_group() -> None:
    group = scripted_admin(ScriptedDescribe([kafka_exception(KafkaError.GROUP_ID_NOT_FOUND)])).describe_group("g")
    assert group == GroupDescription("g", "DEAD", ())


def test_describe_gives_up_on_other_errors_and_at_the_deadline() -> None:
    script = ScriptedDescribe([kafka_exception(KafkaError.GROUP_AUTHORIZATION_FAILED)])
    with pytest.raises(ReplayFailed, match="cannot describe consumer group 'g': GROUP_AUTHORIZATION_FAILED"):
        scripted_admin(script).describe_group("g")
    assert script.calls == 1
    script = ScriptedDescribe([kafka_exception(KafkaError._TIMED_OUT)] * 10)
    with pytest.raises(ReplayFailed, match=r"can this host reach KAFKA_BOOTSTRAP_SERVERS=127\.0\.0\.1:1"):
        scripted_admin(script, timeout_s=1.0).describe_group("g")
    assert script.calls == 2
