"""Fault-injection suite as a standalone run: the scenarios of tests/faults, then their figures as a Markdown table.

    .venv/bin/python -m bench.faults                     # the CI size (20000 events per scenario), ~6 min on 2 cores
    .venv/bin/python -m bench.faults --soak              # 5x the events and kills/restarts
    .venv/bin/python -m bench.faults --events 50000 --seed random -k sigkill
    .venv/bin/python -m bench.faults --table /tmp/fault-suite-report.json   # only print the table of a past run

The scenarios, what they check and how the accounting works: tests/faults/test_faults.py and harness.py.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]

COLUMNS = (
    ("scenario", "scenario"), ("events", "events"), ("delivered", "delivered"), ("lost", "lost"),
    ("duplicates", "duplicates"), ("max_dup_per_incident", "max dup / incident"), ("dlq_expected", "DLQ expected"),
    ("dlq_actual", "DLQ actual"), ("dlq_wrong", "DLQ wrong"), ("order_violations", "order violations"),
    ("state_mismatches", "final-state mismatches"), ("incidents", "incidents"), ("peak_in_flight", "peak in flight"),
    ("peak_rss_mb", "peak RSS MB"), ("max_drain_s", "max drain s"), ("wall_s", "wall s"), ("status", "status"),
)


def markdown(report: dict[str, Any]) -> str:
    lines = [
        f"Fault-injection suite, {report['events_per_scenario']} events per scenario"
        f"{' (soak)' if report['soak'] else ''}, base seed {report['seed']}, {report['generated']}:",
        "",
        "| " + " | ".join(title for _, title in COLUMNS) + " |",
        "|" + "|".join("---" if key == "scenario" else "---:" for key, _ in COLUMNS) + "|",
    ]
    for row in report["rows"]:
        lines.append("| " + " | ".join(str(row[key]) for key, _ in COLUMNS) + " |")
    lines.append("")
    for row in report["rows"]:
        detail = "; ".join(part for part in (row.get("incident_kind"), row.get("notes")) if part)
        if detail:
            lines.append(f"- **{row['scenario']}** (seed {row['seed']}): {detail}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.faults", description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, help="events per scenario (default 20000; 100000 with --soak)")
    parser.add_argument("--soak", action="store_true", help="5x the events and kills/restarts")
    parser.add_argument("--seed", help="base seed, or 'random' (default: the suite's fixed seed)")
    parser.add_argument("-k", dest="keyword", help="only scenarios matching this pytest -k expression")
    parser.add_argument("--report", type=Path, help="JSON report path (default /tmp/fault-suite-<time>.json)")
    parser.add_argument("--table", type=Path, help="print the table of an existing report and exit")
    args = parser.parse_args(argv)

    if args.table:
        print(markdown(json.loads(args.table.read_text())))
        return 0

    import pytest

    report = args.report or Path(f"/tmp/fault-suite-{time.strftime('%Y%m%d-%H%M%S')}.json")
    os.environ["FAULT_SUITE_REPORT"] = str(report)
    pytest_args = [str(REPO / "tests" / "faults"), "-q", "-p", "no:cacheprovider", "--rootdir", str(REPO)]
    if args.events:
        pytest_args.append(f"--fault-events={args.events}")
    if args.soak:
        pytest_args.append("--soak")
    if args.seed:
        pytest_args.append(f"--fault-seed={args.seed}")
    if args.keyword:
        pytest_args += ["-k", args.keyword]
    started = time.monotonic()
    os.chdir(REPO)
    code = int(pytest.main(pytest_args))
    print(f"\nwall time {time.monotonic() - started:.0f}s; exit {code}; report {report}\n")
    if report.exists():
        print(markdown(json.loads(report.read_text())))
    return code


if __name__ == "__main__":
    sys.exit(main())
