"""Fault injection on the real broker: every produced record is accounted for after each kind of failure.

Each scenario streams a known workload (``--fault-events``, default 20000 records over 300 users on 6 partitions,
a third of the users deleted once mid-stream), runs ``python -m processor run`` as a subprocess against a CleverTap
stand-in, injects its fault, waits until every record is stored or dead-lettered and the group committed the end
offsets, stops the processor with SIGTERM, then checks the accounting (:mod:`tests.faults.harness`): nothing lost,
dead letters exact, per-user order and final profile state kept, offsets at the end, in-flight records capped.
Figures go to the table printed at the end of the session and to ``FAULT_SUITE_REPORT``.

Scenarios 1b (duplicates per kill bounded by the in-flight cap), 4b (the breaker does not trip on a few percent
of garbage) and 5b (no stale retries after a rebalance) guard against bugs this suite found.
"""

from __future__ import annotations

import random
import time
from pathlib import Path
from typing import Any

import pytest

from processor.embedded.clevertap_standin import StandinConfig
from processor.embedded.kafka_broker import KafkaBroker
from tests.faults.conftest import FaultSize
from tests.faults.harness import (
    ACCOUNT_ID,
    BASE_PROCESSOR_ENV,
    PASSCODE,
    Accounting,
    FaultRun,
    build_workload,
    scenario_seed,
)

pytestmark = [pytest.mark.faults, pytest.mark.integration, pytest.mark.timeout(900)]

MAX_IN_FLIGHT = int(BASE_PROCESSOR_ENV["PROCESSOR_MAX_IN_FLIGHT"])


def standin(**knobs: Any) -> StandinConfig:
    return StandinConfig(account_id=ACCOUNT_ID, passcode=PASSCODE, **knobs)


def note(run: FaultRun, text: str) -> None:
    run.row.notes = text + (f"; {run.row.notes}" if run.row.notes else "")


def assert_accounted(run: FaultRun, acc: Accounting, *, duplicates: bool) -> None:
    """Nothing lost, nothing unexpected, dead letters exact, per-user order and final state kept, offsets at the
    end, in-flight records capped; repeated deliveries only where the scenario allows them."""
    assert not acc.lost, run.explain(f"{len(acc.lost)} records lost")
    assert not acc.unexpected, run.explain("records that map to no produced event")
    assert not acc.wrong_dead, run.explain("wrong dead letters")
    assert not acc.skipped_leaks, run.explain("skipped events were dead-lettered")
    assert not acc.order_violations, run.explain(f"{len(acc.order_violations)} per-user order violations")
    assert not acc.state_mismatches, run.explain(f"{len(acc.state_mismatches)} users end in the wrong state")
    assert run.final_offsets is not None and run.final_offsets[0] == run.final_offsets[1], run.explain(
        "committed offsets are not the end offsets"
    )
    if not duplicates:
        assert acc.duplicates == 0, run.explain(f"{acc.duplicates} duplicates where none may happen")
        assert acc.dead_duplicates == 0, run.explain(f"{acc.dead_duplicates} repeated dead letters")
    # The cap is checked before each poll, so one poll batch may overshoot it.
    cap = int(run.env["PROCESSOR_MAX_IN_FLIGHT"]) + int(run.env["PROCESSOR_POLL_BATCH_SIZE"])
    assert run.row.peak_in_flight <= cap, run.explain(f"{run.row.peak_in_flight} records in flight, cap {cap}")


# ---- 1. SIGKILL ------------------------------------------------------------------------------------------------------


def test_1_sigkill_at_random_moments(
    kafka_bootstrap: str, fault_size: FaultSize, record_row: Any, fault_logs: Path
) -> None:
    """SIGKILL the processor at random moments mid-stream and restart it at once, many times: nothing lost, and
    each kill duplicates at most PROCESSOR_MAX_IN_FLIGHT records."""
    seed = scenario_seed(fault_size.seed, "sigkill")
    rng = random.Random(seed)
    workload = build_workload(fault_size.events, seed=seed)
    deliverable = workload.count("deliver")
    kills = max(1, min(5 * fault_size.factor, deliverable // 1000))  # at least ~1000 records per incarnation
    with FaultRun("1-sigkill", kafka_bootstrap, workload, log_dir=fault_logs, standin=standin(latency_s=0.01),
                  record=record_row) as run:
        run.row.incident_kind = f"SIGKILL x{kills} at random moments, restart at once"
        points = sorted(rng.uniform(0.05, 0.9) * deliverable for _ in range(kills))
        run.stream()
        process = run.spawn()
        for k, point in enumerate(points):
            # Some fresh progress by each incarnation, so every kill lands mid-delivery.
            run.wait_progress(point, fault_size.timeout(120), fresh=deliverable // (8 * kills))
            time.sleep(rng.uniform(0.0, 0.25))
            run.incident(f"kill {k + 1}")
            process.kill()
            process = run.spawn()
        run.wait_done(fault_size.timeout(180))
        acc = run.finish()
        per_kill = run.per_incident[:-1]
        note(run, f"duplicates per kill {per_kill}")
        assert_accounted(run, acc, duplicates=True)
        assert max(per_kill) <= MAX_IN_FLIGHT, run.explain(
            f"a kill duplicated {max(per_kill)} records, more than PROCESSOR_MAX_IN_FLIGHT={MAX_IN_FLIGHT}: {per_kill}"
        )


def test_1b_sigkill_with_the_default_commit_interval(
    kafka_bootstrap: str, fault_size: FaultSize, record_row: Any, fault_logs: Path
) -> None:
    """The same bound with PROCESSOR_COMMIT_INTERVAL_S at its default (2 s) and each kill timed just before a
    commit is due: a kill must still duplicate at most PROCESSOR_MAX_IN_FLIGHT records."""
    seed = scenario_seed(fault_size.seed, "sigkill-2s")
    rng = random.Random(seed)
    # A backlog (the bound matters when the processor runs at full speed), large enough for every kill to land
    # mid-stream: each incarnation delivers for a commit interval or two before it is killed.
    workload = build_workload(2 * fault_size.events, seed=seed)
    deliverable = workload.count("deliver")
    kills = max(1, min(3 * fault_size.factor, deliverable // 10000))
    with FaultRun("1b-sigkill-commit-2s", kafka_bootstrap, workload, log_dir=fault_logs, standin=standin(),
                  env={"PROCESSOR_COMMIT_INTERVAL_S": "2"}, record=record_row) as run:
        run.row.incident_kind = f"SIGKILL x{kills}, each 1.6-1.9 s after a commit (commit interval 2 s)"
        run.stream()
        process = run.spawn()
        for k in range(kills):
            run.wait_progress(0, fault_size.timeout(120), fresh=deliverable // 40)
            run.next_commit(5.0)
            time.sleep(rng.uniform(1.6, 1.9))
            run.incident(f"kill {k + 1}")
            process.kill()
            process = run.spawn()
        run.wait_done(fault_size.timeout(180))
        acc = run.finish()
        per_kill = run.per_incident[:-1]
        note(run, f"duplicates per kill {per_kill}")
        assert_accounted(run, acc, duplicates=True)
        assert max(per_kill) <= MAX_IN_FLIGHT, run.explain(
            f"a kill duplicated {max(per_kill)} records, more than PROCESSOR_MAX_IN_FLIGHT={MAX_IN_FLIGHT}: {per_kill}"
        )


# ---- 2. Flaky CleverTap ----------------------------------------------------------------------------------------------


def test_2_flaky_clevertap(kafka_bootstrap: str, fault_size: FaultSize, record_row: Any, fault_logs: Path) -> None:
    """30 % 5xx, 10 % 429, slow answers and dropped connections: nothing lost, nothing dead-lettered, and nothing
    sent twice (the stand-in fails those requests before storing anything)."""
    seed = scenario_seed(fault_size.seed, "flaky")
    workload = build_workload(fault_size.events, seed=seed)
    config = standin(error_5xx_rate=0.3, error_429_rate=0.1, slow_rate=0.05, slow_latency_s=1.0,
                     drop_connection_rate=0.03)
    with FaultRun("2-flaky-clevertap", kafka_bootstrap, workload, log_dir=fault_logs, standin=config,
                  record=record_row) as run:
        run.row.incident_kind = "5xx 30 %, 429 10 %, slow (1 s) 5 %, dropped connections 3 % of requests"
        run.stream()
        run.spawn()
        run.wait_done(fault_size.timeout(240))
        acc = run.finish()
        assert run.standin is not None
        counts = run.standin.counters()
        statuses = counts["status_counts"]
        note(run, f"HTTP answers {statuses}, {counts['dropped_connections']} dropped connections")
        assert_accounted(run, acc, duplicates=False)
        assert not acc.dead, run.explain("records dead-lettered although every failure was transient")
        assert sum(statuses.get(code, 0) for code in ("500", "502", "503")) > 0 and statuses.get("429", 0) > 0
        assert counts["dropped_connections"] > 0


# ---- 3. Records refused inside 200 -----------------------------------------------------------------------------------


def test_3_records_rejected_inside_200(
    kafka_bootstrap: str, fault_size: FaultSize, record_row: Any, fault_logs: Path
) -> None:
    """CleverTap refuses chosen records inside 200 answers (every upload of 15 chosen users, each with its own
    code), and 2 % of the records are invalid by themselves (bad e-mail, phone or gender, system event names):
    exactly those records are in the DLQ, each with its code, and everything else is delivered once."""
    seed = scenario_seed(fault_size.seed, "rejects")
    workload = build_workload(fault_size.events, seed=seed, reject_users=15, bad_record_share=0.02)
    with FaultRun("3-rejected-in-200", kafka_bootstrap, workload, log_dir=fault_logs, standin=standin(),
                  env={"PROCESSOR_BREAKER_THRESHOLD": "1"}, record=record_row) as run:
        codes = sorted({item.code for item in workload.items if item.code})
        run.row.incident_kind = f"per-record codes {codes}"
        run.stream()
        run.spawn()
        run.wait_done(fault_size.timeout(120))
        acc = run.finish()
        by_stage: dict[str, int] = {}
        assert run.dlq is not None
        for letter in run.dlq.letters:
            stage = letter.headers.get("x-dlq-stage", "?")
            by_stage[stage] = by_stage.get(stage, 0) + 1
        note(run, f"dead letters by stage {by_stage}")
        assert_accounted(run, acc, duplicates=False)
        assert len(acc.dead) == workload.count("dlq") > 0


def test_3b_per_record_555_is_retried_in_order(
    kafka_bootstrap: str, fault_size: FaultSize, record_row: Any, fault_logs: Path
) -> None:
    """Per-record 555 (retriable) for the first record of 20 users: retried, delivered, never dead-lettered, and
    the user's later records do not overtake it."""
    seed = scenario_seed(fault_size.seed, "555")
    workload = build_workload(max(2000, fault_size.events // 4), seed=seed, retry_555_users=20)
    with FaultRun("3b-per-record-555", kafka_bootstrap, workload, log_dir=fault_logs, standin=standin(),
                  record=record_row) as run:
        run.row.incident_kind = "per-record 555 once for 20 users"
        run.stream()
        run.spawn()
        run.wait_done(fault_size.timeout(120))
        acc = run.finish()
        assert not acc.dead, run.explain("a 555 was dead-lettered")
        assert_accounted(run, acc, duplicates=False)


# ---- 4. Corrupt and foreign payloads ---------------------------------------------------------------------------------


def test_4_corrupt_and_foreign_payloads(
    kafka_bootstrap: str, fault_size: FaultSize, record_row: Any, fault_logs: Path
) -> None:
    """10 % undecodable or foreign payloads (empty, tombstones, JSON, text, registry framing, truncated or padded
    Avro, another schema, random bytes) and some unmappable tracks, interleaved: all dead-lettered unchanged with
    their headers, every valid event delivered, the processor never crashes."""
    seed = scenario_seed(fault_size.seed, "corrupt")
    workload = build_workload(fault_size.events, seed=seed, corrupt_share=0.1)
    with FaultRun("4-corrupt-payloads", kafka_bootstrap, workload, log_dir=fault_logs, standin=standin(),
                  env={"PROCESSOR_BREAKER_THRESHOLD": "1"}, record=record_row) as run:
        labels = sorted({item.label for item in workload.items if item.kind in ("corrupt", "unmappable")})
        run.row.incident_kind = f"{workload.count('dlq')} bad payloads: {', '.join(labels)}"
        run.stream()
        run.spawn()
        run.wait_done(fault_size.timeout(120))
        acc = run.finish()
        assert_accounted(run, acc, duplicates=False)
        assert len(acc.dead) == workload.count("dlq")


def test_4b_breaker_tolerates_interleaved_garbage(
    kafka_bootstrap: str, fault_size: FaultSize, record_row: Any, fault_logs: Path
) -> None:
    """5 % interleaved garbage with the default breaker and in-flight settings and CleverTap answering in 300 ms:
    5 % is far below the breaker's 50 %, so the processor must not stop."""
    seed = scenario_seed(fault_size.seed, "breaker")
    workload = build_workload(max(2000, fault_size.events // 4), seed=seed, corrupt_share=0.05)
    defaults = {"PROCESSOR_MAX_IN_FLIGHT": "20000", "PROCESSOR_POLL_BATCH_SIZE": "1000"}
    with FaultRun("4b-breaker-defaults", kafka_bootstrap, workload, log_dir=fault_logs,
                  standin=standin(latency_s=0.3), env=defaults, record=record_row) as run:
        run.row.incident_kind = "5 % garbage, default breaker (50 % of 1000, min 200), CleverTap latency 300 ms"
        run.stream()
        run.spawn()
        run.wait_done(fault_size.timeout(120))
        acc = run.finish()
        assert_accounted(run, acc, duplicates=False)


# ---- 5. Consumers join and leave -------------------------------------------------------------------------------------


def test_5_consumers_join_and_leave(
    kafka_bootstrap: str, fault_size: FaultSize, record_row: Any, fault_logs: Path
) -> None:
    """A second and a third consumer join mid-stream, then leave (SIGTERM): nothing lost, per-user order kept."""
    seed = scenario_seed(fault_size.seed, "rebalance")
    rng = random.Random(seed)
    workload = build_workload(fault_size.events, seed=seed)
    deliverable = workload.count("deliver")
    cycles = fault_size.factor
    with FaultRun("5-join-and-leave", kafka_bootstrap, workload, log_dir=fault_logs, standin=standin(latency_s=0.01),
                  env={"CLEVERTAP_MAX_CONCURRENCY": "5"}, record=record_row) as run:
        run.row.incident_kind = f"{cycles}x: 2nd and 3rd consumer join, then leave (SIGTERM)"
        run.stream(rate=len(workload.items) / 20.0)  # ~20 s of stream: the group changes while records arrive
        run.spawn("first")
        step = deliverable / (4 * cycles + 1)
        timeout = fault_size.timeout(120)
        for cycle in range(cycles):
            base = 4 * cycle
            run.wait_progress(step * (base + 1), timeout)
            run.incident(f"second joins ({cycle + 1})")
            second = run.spawn("second")
            run.wait_progress(step * (base + 2), timeout)
            run.incident(f"third joins ({cycle + 1})")
            third = run.spawn("third")
            for leaving, name, at in ((second, "second", base + 3), (third, "third", base + 4)):
                run.wait_progress(step * at, timeout)
                time.sleep(rng.uniform(0, 0.5))
                run.incident(f"{name} leaves ({cycle + 1})")
                code, seconds = leaving.terminate(60)
                run.drains.append(seconds)
                assert code == 0, run.explain(f"{name} consumer exited {code} after SIGTERM")
        run.wait_done(fault_size.timeout(180))
        acc = run.finish()
        note(run, f"duplicates per membership change {run.per_incident[:-1]}")
        assert_accounted(run, acc, duplicates=True)


def test_5b_rebalance_while_clevertap_fails(
    kafka_bootstrap: str, fault_size: FaultSize, record_row: Any, fault_logs: Path
) -> None:
    """A second consumer joins while CleverTap answers 5xx to everything, so the first one's lanes are backing off
    with batches of the partitions it must hand over. Once CleverTap recovers, nothing may be lost and no user's
    operations reordered: the new owner re-sends from the committed offset; the old owner must not send late."""
    seed = scenario_seed(fault_size.seed, "rebalance-5xx")
    workload = build_workload(max(4000, fault_size.events // 2), seed=seed)
    deliverable = workload.count("deliver")
    with FaultRun("5b-rebalance-in-5xx", kafka_bootstrap, workload, log_dir=fault_logs,
                  standin=standin(latency_s=0.01), env={"PROCESSOR_RETRY_MAX_S": "8", "CLEVERTAP_MAX_CONCURRENCY": "5"},
                  record=record_row) as run:
        run.row.incident_kind = "2nd consumer joins during 10 s of 100 % 5xx (retry cap 8 s), then CleverTap recovers"
        assert run.standin is not None
        # A paced stream keeps every partition's records interleaved in the lanes (a backlog is read one partition
        # at a time), so the batches stuck in retries hold records of the partitions that move.
        run.stream(rate=len(workload.items) / 20.0)
        run.spawn("first")
        run.wait_progress(deliverable // 4, fault_size.timeout(120))
        run.incident("CleverTap fails")
        run.standin.config.error_5xx_rate = 1.0
        time.sleep(2.0)
        run.incident("second joins")
        run.spawn("second")
        time.sleep(8.0)
        run.incident("CleverTap recovers")
        run.standin.config.error_5xx_rate = 0.0
        run.wait_done(fault_size.timeout(180))
        acc = run.finish()
        assert_accounted(run, acc, duplicates=True)


# ---- 6. Broker restarts ----------------------------------------------------------------------------------------------


def test_6_broker_stopped_and_restarted(
    fault_size: FaultSize, record_row: Any, fault_logs: Path, tmp_path: Path
) -> None:
    """The broker is stopped (SIGTERM) and later killed (SIGKILL) mid-stream, each time started again on the same
    port and data after a few seconds: the processor rides it out; nothing lost, dead letters exact."""
    seed = scenario_seed(fault_size.seed, "broker")
    rng = random.Random(seed)
    workload = build_workload(fault_size.events, seed=seed, corrupt_share=0.01)
    deliverable = workload.count("deliver")
    outages = 2 * fault_size.factor
    with (
        KafkaBroker(tmp_path / "broker") as broker,
        FaultRun("6-broker-restart", broker.bootstrap_servers, workload, log_dir=fault_logs,
                 standin=standin(latency_s=0.01), env={"PROCESSOR_BREAKER_THRESHOLD": "1"}, record=record_row) as run,
    ):
        run.row.incident_kind = f"{outages} broker outages of 2-4 s (SIGTERM, SIGKILL alternately)"
        run.stream(rate=len(workload.items) / 20.0)
        run.spawn()
        for n in range(outages):
            run.wait_progress(deliverable * (n + 1) / (outages + 1), fault_size.timeout(180))
            time.sleep(rng.uniform(0, 0.3))
            if n % 2 == 0:
                run.incident(f"broker stopped ({n + 1})")
                broker.stop()
            else:
                run.incident(f"broker killed ({n + 1})")
                broker.kill()
            time.sleep(rng.uniform(2.0, 4.0))
            broker.start(timeout=120)
        run.wait_done(fault_size.timeout(240))
        acc = run.finish()
        note(run, f"duplicates per outage {run.per_incident[:-1]}")
        assert_accounted(run, acc, duplicates=True)


# ---- 7. Credentials refused ------------------------------------------------------------------------------------------


def test_7_credentials_refused_for_a_while(
    kafka_bootstrap: str, fault_size: FaultSize, record_row: Any, fault_logs: Path
) -> None:
    """401 for a few seconds mid-stream, then accepted again: nothing dead-lettered, nothing stored while refused,
    everything delivered after, nothing sent twice."""
    seed = scenario_seed(fault_size.seed, "401")
    rng = random.Random(seed)
    workload = build_workload(fault_size.events, seed=seed)
    deliverable = workload.count("deliver")
    windows = fault_size.factor
    with FaultRun("7-credentials-401", kafka_bootstrap, workload, log_dir=fault_logs, standin=standin(latency_s=0.01),
                  record=record_row) as run:
        run.row.incident_kind = f"{windows}x 401 for 3-5 s"
        run.stream(rate=len(workload.items) / 15.0)
        run.spawn()
        assert run.standin is not None
        for n in range(windows):
            run.wait_progress(deliverable * (n + 1) / (windows + 2), fault_size.timeout(120))
            run.incident(f"401 from ({n + 1})")
            run.standin.config.auth_failing = True
            time.sleep(0.5)  # requests that passed the check just before may still be storing
            stored = run.accepted()
            time.sleep(rng.uniform(3.0, 5.0))
            assert run.accepted() == stored, run.explain("records stored while the credentials were refused")
            run.standin.config.auth_failing = False
            run.incident(f"401 until ({n + 1})")
        run.wait_done(fault_size.timeout(180))
        acc = run.finish()
        refused = run.standin.counters()["status_counts"].get("401", 0)
        note(run, f"{refused} requests answered 401")
        assert refused > 0
        assert_accounted(run, acc, duplicates=False)
        assert not acc.dead, run.explain("records dead-lettered because of 401")
        logs = "".join(p.log_text() for p in run.processes)
        assert "CleverTap refuses the credentials" in logs and "credentials accepted again" in logs


# ---- 8. SIGTERM drains -----------------------------------------------------------------------------------------------


def test_8_sigterm_drains_within_the_deadline(
    kafka_bootstrap: str, fault_size: FaultSize, record_row: Any, fault_logs: Path
) -> None:
    """SIGTERM mid-stream: the processor finishes what is in flight, commits and exits 0 within
    PROCESSOR_DRAIN_TIMEOUT_S, so the next run sends nothing twice. When CleverTap is too slow for the deadline it
    still exits in time (code 1), and the records it could not finish are sent again by the next run."""
    seed = scenario_seed(fault_size.seed, "drain")
    rng = random.Random(seed)
    workload = build_workload(fault_size.events, seed=seed)
    deliverable = workload.count("deliver")
    stops = max(1, min(3 * fault_size.factor, deliverable // 5000))
    drain_s, short_s = 10.0, 3.0
    with FaultRun("8-sigterm-drain", kafka_bootstrap, workload, log_dir=fault_logs, standin=standin(latency_s=0.05),
                  env={"PROCESSOR_DRAIN_TIMEOUT_S": str(drain_s)}, record=record_row) as run:
        run.row.incident_kind = (f"SIGTERM x{stops + 1} (drain deadline {drain_s:.0f} s), then 1 with CleverTap "
                                 f"answering in 8 s and a {short_s:.0f} s deadline")
        assert run.standin is not None
        run.stream()
        process = run.spawn()
        # The drained stops within the first 60 % of the stream, so records are still in flight for the last one.
        fresh = deliverable // (8 * (stops + 2))
        for n in range(stops + 1):
            run.wait_progress(0.6 * deliverable * (n + 1) / (stops + 1), fault_size.timeout(120), fresh=fresh)
            time.sleep(rng.uniform(0, 0.3))
            run.incident(f"SIGTERM {n + 1}")
            code, seconds = process.terminate(drain_s + 30)
            run.drains.append(seconds)
            assert code == 0 and seconds <= drain_s + 5, run.explain(f"SIGTERM {n + 1}: exit {code}, {seconds:.1f}s")
            # The last restart gets the short deadline for the slow-CleverTap stop below.
            process = run.spawn(**({"PROCESSOR_DRAIN_TIMEOUT_S": str(short_s)} if n == stops else {}))
        run.wait_progress(0.65 * deliverable, fault_size.timeout(120), fresh=fresh)
        run.standin.config.latency_s = 8.0
        run.wait_for(lambda: (process.in_flight() or 0) > 0, 30, "records in flight with CleverTap slow")
        time.sleep(0.5)
        run.incident("SIGTERM with CleverTap slower than the deadline")
        code, seconds = process.terminate(60)
        run.drains.append(seconds)
        assert code == 1 and seconds <= short_s + 5, run.explain(f"late drain: exit {code} after {seconds:.1f}s")
        run.standin.config.latency_s = 0.01
        run.spawn("after")
        run.wait_done(fault_size.timeout(180))
        acc = run.finish()
        per_stop = run.per_incident[:-1]
        note(run, f"duplicates per SIGTERM {per_stop}")
        assert_accounted(run, acc, duplicates=True)
        assert per_stop[: stops + 1] == [0] * (stops + 1), run.explain(f"a drained SIGTERM left duplicates: {per_stop}")
