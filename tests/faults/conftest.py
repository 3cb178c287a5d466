"""Options, sizes and the figures table of the fault-injection suite.

Sizes come from ``--fault-events`` / ``--soak`` / ``--fault-seed`` when pytest is pointed at ``tests/faults`` (only
then is this conftest loaded early enough to add options), or from ``FAULT_EVENTS`` / ``FAULT_SOAK`` /
``FAULT_SEED`` in the environment (works from any invocation). Every scenario appends a row to the JSON file named
by ``FAULT_SUITE_REPORT`` (default ``/tmp/fault-suite-report.json``) and the table is printed at the session end.
"""

from __future__ import annotations

import json
import os
import random
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.faults.harness import Row

DEFAULT_EVENTS = 20_000
DEFAULT_SEED = 20240301
SOAK_FACTOR = 5

_rows: list[Row] = []
_report_path: Path | None = None


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("faults", "fault-injection suite")
    group.addoption("--fault-events", type=int, default=None,
                    help=f"events per scenario (default {DEFAULT_EVENTS}, env FAULT_EVENTS)")
    group.addoption("--soak", action="store_true", default=None,
                    help=f"soak run: {SOAK_FACTOR}x events and more kills/restarts (env FAULT_SOAK=1)")
    group.addoption("--fault-seed", default=None,
                    help=f"base seed of every random choice, or 'random' (default {DEFAULT_SEED}, env FAULT_SEED)")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "faults: fault-injection scenario on the real broker (see tests/faults)")


@dataclass(frozen=True)
class FaultSize:
    events: int
    soak: bool
    seed: int

    @property
    def factor(self) -> int:
        return SOAK_FACTOR if self.soak else 1

    def timeout(self, base_s: float) -> float:
        """A wait bound that grows with the workload."""
        return base_s * max(1.0, self.events / DEFAULT_EVENTS)


def _option(config: pytest.Config, name: str) -> Any:
    try:
        return config.getoption(name)
    except ValueError:  # the option was not registered (pytest run from the repo root)
        return None


@pytest.fixture(scope="session")
def fault_size(request: pytest.FixtureRequest) -> FaultSize:
    config = request.config
    soak = bool(_option(config, "--soak") or os.environ.get("FAULT_SOAK", "") not in ("", "0"))
    events = _option(config, "--fault-events") or int(os.environ.get("FAULT_EVENTS") or 0) or DEFAULT_EVENTS
    if soak and not (_option(config, "--fault-events") or os.environ.get("FAULT_EVENTS")):
        events *= SOAK_FACTOR
    seed_text = _option(config, "--fault-seed") or os.environ.get("FAULT_SEED") or str(DEFAULT_SEED)
    seed = random.SystemRandom().randrange(2**31) if seed_text == "random" else int(seed_text)
    return FaultSize(events=events, soak=soak, seed=seed)


_SESSION_STAMP = time.strftime("%Y%m%d-%H%M%S") + f"-{os.getpid()}"


@pytest.fixture
def fault_logs(request: pytest.FixtureRequest) -> Path:
    """Where a scenario's processor logs go (kept after the run: FAULT_LOG_DIR, default /tmp/fault-suite-logs)."""
    root = Path(os.environ.get("FAULT_LOG_DIR") or "/tmp/fault-suite-logs")
    path: Path = root / _SESSION_STAMP / str(request.node.name)
    path.mkdir(parents=True, exist_ok=True)
    return path


def _report_file() -> Path:
    return Path(os.environ.get("FAULT_SUITE_REPORT") or "/tmp/fault-suite-report.json")


@pytest.fixture
def record_row(fault_size: FaultSize, request: pytest.FixtureRequest) -> Any:
    known_bug = request.node.get_closest_marker("xfail") is not None

    def record(row: Row) -> None:
        global _report_path
        if known_bug:
            # An xfail scenario reproduces a processor bug: failing is the expected outcome until it is fixed.
            row.status = "bug" if row.status != "ok" else "fixed?"
        _rows.append(row)
        _report_path = _report_file()
        payload = {
            "generated": time.strftime("%Y-%m-%dT%H:%M:%S"),
            "events_per_scenario": fault_size.events,
            "soak": fault_size.soak,
            "seed": fault_size.seed,
            "rows": [asdict(r) for r in _rows],
        }
        _report_path.write_text(json.dumps(payload, indent=2))

    return record


COLUMNS = (
    ("scenario", "scenario", 20), ("events", "events", 7), ("delivered", "delivered", 9), ("lost", "lost", 4),
    ("duplicates", "dups", 5), ("max_dup_per_incident", "dup/inc", 7), ("dlq_expected", "dlq exp", 7),
    ("dlq_actual", "dlq got", 7), ("dlq_wrong", "dlq bad", 7), ("order_violations", "order", 5),
    ("state_mismatches", "state", 5), ("incidents", "incid", 5), ("peak_in_flight", "inflight", 8),
    ("peak_rss_mb", "rss MB", 6), ("max_drain_s", "drain s", 7), ("wall_s", "wall s", 6), ("status", "status", 6),
)


def format_table(rows: list[Row]) -> list[str]:
    header = " ".join(f"{t:<{w}}" if key == "scenario" else f"{t:>{w}}" for key, t, w in COLUMNS)
    lines = [header, "-" * len(header)]
    for row in rows:
        data = asdict(row)
        cells = []
        for key, _, width in COLUMNS:
            value = data[key]
            cells.append(f"{value!s:<{width}}" if key == "scenario" else f"{value!s:>{width}}")
        lines.append(" ".join(cells))
        if row.notes:
            lines.append(f"{'':<20}   {row.incident_kind + ': ' if row.incident_kind else ''}{row.notes}")
        elif row.incident_kind:
            lines.append(f"{'':<20}   {row.incident_kind}")
    return lines


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:
    if not _rows:
        return
    seeds = sorted({row.seed for row in _rows})
    terminalreporter.section("fault-injection figures")
    for line in format_table(_rows):
        terminalreporter.write_line(line)
    terminalreporter.write_line(
        f"scenario seeds {seeds}; total scenario wall time {sum(r.wall_s for r in _rows):.0f}s; "
        f"rows written to {_report_path}"
    )
