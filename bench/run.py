"""End-to-end benchmark of the processor: ceiling, processor, per-event sender, latency, memory, profile.

    .venv/bin/python -m bench.run              # the full run, about 10 minutes on 2 cores
    .venv/bin/python -m bench.run --quick      # a one-minute smoke run (small N, short windows, no 1M backlog)

See bench/README.md for what each figure means and how it is measured.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import os
import platform
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from collections import deque
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any

from confluent_kafka import Consumer, TopicPartition

from bench.workload import Workload, fill, produce_paced
from processor.embedded.events import create_topics
from processor.embedded.kafka_broker import KafkaBroker

REPO = Path(__file__).resolve().parents[1]
PYTHON = sys.executable
CLK_TCK = os.sysconf("SC_CLK_TCK")
ACCOUNT_ID = "BENCH-ACCOUNT"
PASSCODE = "bench-passcode"
# Set from --processor-env: extra settings for every processor run (e.g. PROCESSOR_MAX_IN_FLIGHT=50000).
PROCESSOR_ENV: dict[str, str] = {}
ASSIGNED_RE = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}) .*partitions assigned: (.*)$")


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# ---- /proc helpers ---------------------------------------------------------------------------------------------


def proc_cpu_seconds(pid: int) -> float:
    """utime + stime of a process (all its threads), in seconds."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def proc_status_kb(pid: int) -> dict[str, int]:
    out: dict[str, int] = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(("VmRSS:", "VmHWM:")):
                name, value = line.split(":", 1)
                out[name] = int(value.split()[0])
    return out


def proc_threads_cpu(pid: int) -> dict[str, float]:
    """CPU seconds per thread name (librdkafka names its threads rdk:*; Python threads keep the process name)."""
    out: dict[str, float] = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            name = (task / "comm").read_text().strip()
            fields = (task / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        name = re.sub(r"\d+", "N", name) if name.startswith("rdk:") else name
        out[name] = out.get(name, 0.0) + (int(fields[11]) + int(fields[12])) / CLK_TCK
    return out


def _children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
            found.append(int(entry.name))
    return found


class MachineLoad:
    """Share of both cores busy during a phase (all processes, ours and others'), and the load average."""

    def __init__(self) -> None:
        self._start = self._read()

    @staticmethod
    def _read() -> tuple[int, int]:
        with open("/proc/stat") as f:
            values = [int(v) for v in f.readline().split()[1:]]
        idle = values[3] + values[4]
        return sum(values), idle

    def finish(self) -> dict[str, float]:
        total, idle = self._read()
        d_total, d_idle = total - self._start[0], idle - self._start[1]
        with open("/proc/loadavg") as f:
            load1 = float(f.read().split()[0])
        return {"machine_busy_pct": round(100 * (1 - d_idle / d_total), 1) if d_total else 0.0, "loadavg_1m": load1}


# ---- child processes ---------------------------------------------------------------------------------------------


def _clean_env() -> dict[str, str]:
    prefixes = ("KAFKA_", "CLEVERTAP_", "PROCESSOR_", "SCHEMA_", "AVRO_", "METRICS_", "LOG_", "SUBSCRIPTIONS_")
    return {k: v for k, v in os.environ.items() if not k.startswith(prefixes)}


class Standin:
    """bench/standin.py in its own process."""

    def __init__(self, latency_ms: float, log_path: Path) -> None:
        self.latency_ms = latency_ms
        self._log = log_path.open("wb")
        self.proc = subprocess.Popen(
            [PYTHON, "-m", "bench.standin", "--latency-ms", str(latency_ms), "--account-id", ACCOUNT_ID,
             "--passcode", PASSCODE],
            cwd=REPO, stdout=subprocess.PIPE, stderr=self._log, env=_clean_env(),
        )
        assert self.proc.stdout is not None
        self.base_url = self.proc.stdout.readline().decode().strip()
        if not self.base_url.startswith("http"):
            raise RuntimeError(f"stand-in did not start (see {log_path})")

    def _call(self, method: str, path: str) -> dict[str, Any]:
        request = urllib.request.Request(self.base_url + path, method=method, data=b"" if method == "POST" else None)
        with urllib.request.urlopen(request, timeout=30) as response:
            result: dict[str, Any] = json.loads(response.read())
            return result

    def stats(self) -> dict[str, Any]:
        return self._call("GET", "/_bench/stats")

    def reset(self, latency: bool = False) -> None:
        self._call("POST", "/_bench/reset" + ("?latency=1" if latency else ""))

    def latency(self, since: float, until: float) -> dict[str, Any]:
        return self._call("GET", f"/_bench/latency?since={since}&until={until}")

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()


class ProcessorProcess:
    """``python -m processor run`` configured by environment, its stderr teed to a log file."""

    def __init__(
        self,
        name: str,
        *,
        bootstrap: str,
        topic: str,
        base_url: str,
        out_dir: Path,
        extra_env: dict[str, str] | None = None,
        group: str | None = None,
    ) -> None:
        self.name = name
        self.group = group or f"bench-{name}-{uuid.uuid4().hex[:8]}"
        env = _clean_env()
        env.update(
            {
                "KAFKA_BOOTSTRAP_SERVERS": bootstrap,
                "KAFKA_TOPICS": topic,
                "KAFKA_GROUP_ID": self.group,
                "CLEVERTAP_ACCOUNT_ID": ACCOUNT_ID,
                "CLEVERTAP_PASSCODE": PASSCODE,
                "CLEVERTAP_BASE_URL": base_url,
                "METRICS_PORT": "0",
                "LOG_LEVEL": "info",
                "LOG_FORMAT": "text",
                "PYTHONUNBUFFERED": "1",
            }
        )
        env.update(PROCESSOR_ENV)
        env.update(extra_env or {})
        self.env_overrides = {**PROCESSOR_ENV, **(extra_env or {})}
        self.log_path = out_dir / f"processor-{name}.log"
        self._log: IO[str] = self.log_path.open("w")
        self.assigned = threading.Event()
        self.assigned_wall: float | None = None  # from the log line's own timestamp
        self.assigned_seen_wall: float | None = None  # when the bench read that line
        self.tail: deque[str] = deque(maxlen=60)
        self.proc = subprocess.Popen(
            [PYTHON, "-m", "processor", "run"], cwd=REPO, env=env, stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, bufsize=1,
        )
        self.pid = self.proc.pid
        self._reader = threading.Thread(target=self._read, name=f"log-{name}", daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            now = time.time()
            self._log.write(line)
            self.tail.append(line)
            if not self.assigned.is_set():
                match = ASSIGNED_RE.match(line)
                if match:
                    stamp = dt.datetime.strptime(match[1], "%Y-%m-%d %H:%M:%S,%f").timestamp()
                    self.assigned_wall = stamp
                    self.assigned_seen_wall = now
                    self.assigned.set()
        self._log.flush()

    def wait_assigned(self, timeout_s: float = 90.0) -> float:
        deadline = time.monotonic() + timeout_s
        while not self.assigned.wait(0.1):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(
                    f"processor {self.name} never got partitions (exit {self.proc.poll()}); last log lines:\n"
                    + "".join(self.tail)
                )
        assert self.assigned_wall is not None
        return self.assigned_wall

    def cpu_seconds(self) -> float:
        """The processor's CPU time, plus that of its live child processes (worker pools, if any)."""
        try:
            total = proc_cpu_seconds(self.pid)
        except OSError:
            return float("nan")
        for child in _children(self.pid):
            with contextlib.suppress(OSError):
                total += proc_cpu_seconds(child)
        return total

    def memory_kb(self) -> dict[str, int]:
        try:
            return proc_status_kb(self.pid)
        except OSError:
            return {}

    def stop(self, *, at_once: bool = False, timeout_s: float = 40.0) -> int | None:
        """SIGTERM (drain, commit, close); with ``at_once`` a second SIGTERM follows (the processor exits at once)."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            if at_once:
                time.sleep(0.3)
                if self.proc.poll() is None:
                    self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._reader.join(5)
        self._log.close()
        return self.proc.returncode


class CommitWatcher:
    """Reads a group's committed offsets (OffsetFetch) without joining the group."""

    def __init__(self, bootstrap: str, group: str, partitions: list[TopicPartition]) -> None:
        self._consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group, "enable.auto.commit": False})
        self._partitions = [TopicPartition(p.topic, p.partition) for p in partitions]

    def committed(self) -> int:
        offsets = self._consumer.committed(self._partitions, timeout=10)
        return sum(max(0, p.offset) for p in offsets)

    def close(self) -> None:
        self._consumer.close()


def end_offsets(bootstrap: str, topic: str, partitions: int) -> list[TopicPartition]:
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "bench-watermarks"})
    try:
        out = []
        for p in range(partitions):
            _, high = consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)
            out.append(TopicPartition(topic, p, high))
        return out
    finally:
        consumer.close()


# ---- phases ------------------------------------------------------------------------------------------------------


class Bench:
    def __init__(self, args: argparse.Namespace, out_dir: Path) -> None:
        self.args = args
        self.out_dir = out_dir
        self.results: dict[str, Any] = {"phases": {}, "timings_s": {}}
        self.broker: KafkaBroker | None = None
        self.standins: dict[float, Standin] = {}
        self.bootstrap = ""
        self.topic = ""
        self.ends: list[TopicPartition] = []
        self.total = 0
        self.kinds: dict[str, int] = {}

    @contextlib.contextmanager
    def timed(self, name: str) -> Iterator[None]:
        started = time.monotonic()
        log(f"phase {name} ...")
        try:
            yield
        finally:
            seconds = round(time.monotonic() - started, 1)
            self.results["timings_s"][name] = seconds
            log(f"phase {name} done in {seconds}s")

    # -- set-up
    def setup(self) -> None:
        args = self.args
        with self.timed("setup"):
            self.broker = KafkaBroker()
            self.broker.start(timeout=120)
            self.bootstrap = self.broker.bootstrap_servers
            for rtt in sorted({0.0, float(args.rtt_ms), float(args.backlog_rtt_ms)}):
                self.standins[rtt] = Standin(rtt, self.out_dir / f"standin-{rtt:g}ms.log")
            self.workload = Workload(seed=args.seed, identify_share=args.identify_share,
                                     delete_share=args.delete_share, users=args.users)
        self.results["workload"] = {
            "avg_value_bytes": {k: round(v) for k, v in self.workload.sizes().items()},
            "identify_share": args.identify_share,
            "delete_share": args.delete_share,
            "users": args.users,
            "traits_per_identify": 16,
            "properties_per_track": 10,
        }

    def fill_topic(self, name: str, count: int) -> tuple[str, list[TopicPartition], dict[str, int]]:
        topic = f"bench.{name}.{uuid.uuid4().hex[:6]}"
        create_topics(self.bootstrap, {topic: self.args.partitions})
        started = time.monotonic()
        kinds = fill(self.bootstrap, topic, self.workload, count)
        seconds = time.monotonic() - started
        ends = end_offsets(self.bootstrap, topic, self.args.partitions)
        if sum(p.offset for p in ends) != count:
            raise RuntimeError(f"{topic} holds {sum(p.offset for p in ends)} records, expected {count}")
        log(f"filled {topic}: {count} events in {seconds:.1f}s ({count / seconds:,.0f}/s) {kinds}")
        return topic, ends, kinds

    def close(self) -> None:
        for standin in self.standins.values():
            standin.close()
        if self.broker is not None:
            self.broker.close()

    # -- 1. ceiling
    def ceiling(self, processes: int = 1) -> dict[str, Any]:
        partitions = self.args.partitions
        groups = [[p for p in range(partitions) if p % processes == k] for k in range(processes)]
        load = MachineLoad()
        start_at = time.time() + 2.0  # every process has its consumer ready before the clock starts
        procs = []
        for group in groups:
            expect = sum(self.ends[p].offset for p in group)
            procs.append(subprocess.Popen(
                [PYTHON, "-m", "bench.ceiling", "--bootstrap", self.bootstrap, "--topic", self.topic,
                 "--partitions", ",".join(map(str, group)), "--expect", str(expect), "--start-at", str(start_at)],
                cwd=REPO, stdout=subprocess.PIPE, text=True, env=_clean_env(),
            ))
        outputs = []
        for proc in procs:
            out, _ = proc.communicate(timeout=900)
            if proc.returncode != 0:
                raise RuntimeError(f"ceiling process failed: {out}")
            outputs.append(json.loads(out.strip().splitlines()[-1]))
        records = sum(o["records"] for o in outputs)
        started = min(o["started_wall"] for o in outputs)
        finished = max(o["finished_wall"] for o in outputs)
        cpu = sum(o["cpu_seconds"] for o in outputs)
        decode = sum(o["decode_loop_seconds"] for o in outputs)
        return {
            "processes": processes,
            "events": records,
            "seconds": round(finished - started, 3),
            "rate": records / (finished - started),
            "cpu_us_per_event": cpu / records * 1e6,
            "decode_loop_us_per_event": decode / records * 1e6,
            **load.finish(),
        }

    # -- 2./3. processor end to end, whole topic
    def processor_run(
        self, name: str, rtt: float, extra_env: dict[str, str] | None = None, *, replicas: int = 1,
        topic: str | None = None, ends: list[TopicPartition] | None = None, profile: bool = False,
        sample_memory_s: float = 0.0,
    ) -> dict[str, Any]:
        """From the first fetch (the "partitions assigned" log line's timestamp) to the moment the group's committed
        offsets equal the end offsets (polled every 50 ms), and to the stand-in's last answer."""
        topic = topic or self.topic
        ends = ends or self.ends
        total = sum(p.offset for p in ends)
        standin = self.standins[rtt]
        standin.reset()
        load = MachineLoad()
        first_proc = ProcessorProcess(
            name, bootstrap=self.bootstrap, topic=topic, base_url=standin.base_url, out_dir=self.out_dir,
            extra_env=extra_env,
        )
        # Replicas share one group, so they split the topic's partitions.
        procs = [first_proc] + [
            ProcessorProcess(
                f"{name}-r{i}", bootstrap=self.bootstrap, topic=topic, base_url=standin.base_url,
                out_dir=self.out_dir, extra_env=extra_env, group=first_proc.group,
            )
            for i in range(1, replicas)
        ]
        profiler: subprocess.Popen[bytes] | None = None
        profile_path = self.out_dir / "profile.pyspy.txt"
        watcher = CommitWatcher(self.bootstrap, procs[0].group, ends)
        memory: list[tuple[float, int, int]] = []  # (seconds since start, committed, VmRSS kB)
        try:
            first = min(p.wait_assigned() for p in procs)
            if profile:
                # Attached once the partitions are assigned: start-up (imports, group join) stays out of it.
                profiler = subprocess.Popen(
                    [str(Path(PYTHON).parent / "py-spy"), "record", "--pid", str(procs[0].pid), "--rate",
                     str(self.args.profile_rate), "--format", "raw", "--output", str(profile_path), "--nonblocking"],
                    stdout=subprocess.DEVNULL, stderr=(self.out_dir / "py-spy.log").open("wb"),
                )
            # The group settles with every replica before the clock matters; later assignments are later fetches.
            if replicas > 1:
                for p in procs:
                    p.wait_assigned()
            cpu_at_start = sum(p.cpu_seconds() for p in procs)
            threads_at_start = _safe_threads(procs[0].pid)
            deadline = time.monotonic() + self.args.phase_timeout
            committed = 0
            next_memory = 0.0
            while True:
                committed = watcher.committed()
                now = time.time()
                if sample_memory_s and now >= next_memory:
                    memory.append((now - first, committed, procs[0].memory_kb().get("VmRSS", 0)))
                    next_memory = now + sample_memory_s
                if committed >= total:
                    break
                if time.monotonic() > deadline or any(p.proc.poll() is not None for p in procs):
                    raise RuntimeError(
                        f"{name}: {committed}/{total} committed after the phase timeout or a processor exit; log:\n"
                        + "".join(procs[0].tail)
                    )
                time.sleep(0.05)
            committed_wall = time.time()
            cpu = sum(p.cpu_seconds() for p in procs) - cpu_at_start
            threads = _safe_threads(procs[0].pid)
            memory_kb = [p.memory_kb() for p in procs]
            stats = standin.stats()
        finally:
            watcher.close()
            if profiler is not None:
                profiler.send_signal(signal.SIGINT)
                try:
                    profiler.wait(60)
                except subprocess.TimeoutExpired:
                    profiler.kill()
            for p in procs:
                p.stop(at_once=True)
        last_answer = stats["last_answer"] or committed_wall
        result = {
            "events": total,
            "delivered": stats["delivered"],
            "requests": stats["requests_total"],
            "replicas": replicas,
            "env": procs[0].env_overrides,
            "seconds": round(committed_wall - first, 3),
            "rate": total / (committed_wall - first),
            "delivery_seconds": round(last_answer - first, 3),
            "delivery_rate": stats["delivered"] / (last_answer - first),
            "cpu_us_per_event": cpu / total * 1e6,
            "processor_cpu_pct": round(100 * cpu / (committed_wall - first), 1),
            "thread_cpu_us_per_event": {
                name: round((seconds - threads_at_start.get(name, 0.0)) / (total / replicas) * 1e6, 1)
                for name, seconds in sorted(threads.items(), key=lambda kv: -kv[1])
                if seconds - threads_at_start.get(name, 0.0) > 0
            },
            "peak_rss_mb": max(m.get("VmHWM", 0) for m in memory_kb) / 1024,
            "assigned_log_lag_ms": round(((procs[0].assigned_seen_wall or 0) - (procs[0].assigned_wall or 0)) * 1000),
            **load.finish(),
        }
        if memory:
            result["memory_samples"] = memory
        if profile:
            result["profile_file"] = str(profile_path)
        return result

    # -- 3. per-event sender on a bounded sample
    def per_event(self, name: str, rtt: float) -> dict[str, Any]:
        """Batch sizes 1: the rate over a bounded window from the stand-in's first request (window seconds or
        max events, whichever comes first), extrapolated; the processor is then stopped at once."""
        args = self.args
        standin = self.standins[rtt]
        standin.reset()
        load = MachineLoad()
        proc = ProcessorProcess(
            name, bootstrap=self.bootstrap, topic=self.topic, base_url=standin.base_url, out_dir=self.out_dir,
            extra_env={"CLEVERTAP_UPLOAD_BATCH_SIZE": "1", "CLEVERTAP_DELETE_BATCH_SIZE": "1"},
        )
        try:
            proc.wait_assigned()
            deadline = time.monotonic() + 60
            while True:
                stats = standin.stats()
                if stats["first_arrival"] is not None:
                    break
                if time.monotonic() > deadline:
                    raise RuntimeError(f"{name}: no request reached the stand-in; log:\n" + "".join(proc.tail))
                time.sleep(0.05)
            first = stats["first_arrival"]
            while True:
                time.sleep(0.2)
                stats = standin.stats()
                elapsed = stats["now"] - first
                if elapsed >= args.per_event_window or stats["delivered"] >= args.per_event_max:
                    break
            cpu = proc.cpu_seconds()
        finally:
            proc.stop(at_once=True)
        rate = stats["delivered"] / elapsed
        return {
            "events": stats["delivered"],
            "requests": stats["requests_total"],
            "window_seconds": round(elapsed, 3),
            "rate": rate,
            "bounded_sample": True,
            "extrapolated_seconds_for_topic": round(self.total / rate, 1),
            "cpu_seconds_whole_process": round(cpu, 2),
            **load.finish(),
        }

    # -- 4. latency at half the maximum rate
    def latency(self, rate: float, rtt: float) -> dict[str, Any]:
        args = self.args
        topic = f"bench.latency.{uuid.uuid4().hex[:6]}"
        create_topics(self.bootstrap, {topic: args.partitions})
        standin = self.standins[rtt]
        standin.reset(latency=True)
        load = MachineLoad()
        proc = ProcessorProcess(
            "latency", bootstrap=self.bootstrap, topic=topic, base_url=standin.base_url, out_dir=self.out_dir
        )
        try:
            proc.wait_assigned()
            time.sleep(2.0)  # the first fetch (empty topic) and offset look-ups are done
            cpu_at_start = proc.cpu_seconds()
            produced = produce_paced(self.bootstrap, topic, self.workload, rate, args.latency_duration)
            expected = produced["sent"]
            deadline = time.monotonic() + 60
            while True:
                stats = standin.stats()
                if stats["delivered"] >= expected or time.monotonic() > deadline:
                    break
                time.sleep(0.1)
            cpu = proc.cpu_seconds() - cpu_at_start
            memory = proc.memory_kb()
            since = produced["started_wall"] + args.latency_warmup
            result = standin.latency(since, produced["finished_wall"])
        finally:
            proc.stop(at_once=True)
        result.update(
            target_rate=rate,
            achieved_rate=produced["achieved_rate"],
            produced=expected,
            delivered=stats["delivered"],
            warmup_s=args.latency_warmup,
            duration_s=args.latency_duration,
            rtt_ms=rtt,
            processor_cpu_pct=round(100 * cpu / (produced["finished_wall"] - produced["started_wall"]), 1),
            peak_rss_mb=memory.get("VmHWM", 0) / 1024,
            note="deletes carry no attribute in their request body, so the samples are the upload records (99%)",
            **load.finish(),
        )
        return result

    # -- 5. memory with a 1 M-event backlog
    def backlog(self, rtt: float) -> dict[str, Any]:
        count = self.args.backlog
        with self.timed("backlog-fill"):
            topic, ends, _ = self.fill_topic("backlog", count)
        with self.timed("backlog-run"):
            result = self.processor_run("backlog", rtt, topic=topic, ends=ends, sample_memory_s=0.5)
        samples = result.pop("memory_samples", [])
        rss = [kb / 1024 for _, _, kb in samples]
        if rss:
            # Flatness: least-squares slope of RSS against records committed, over the second half of the run.
            half = [(c, kb / 1024) for _, c, kb in samples if c >= count / 2]
            slope = _slope(half) * 100_000 if len(half) > 2 else 0.0
            quarters = {}
            for q in (0.25, 0.5, 0.75, 1.0):
                at = next((kb / 1024 for _, c, kb in samples if c >= q * count), rss[-1])
                quarters[f"{int(q * 100)}%"] = round(at, 1)
            result.update(rss_mb_max_sampled=round(max(rss), 1), rss_mb_at_progress=quarters,
                          rss_slope_mb_per_100k_events_second_half=round(slope, 2))
        (self.out_dir / "backlog-rss.json").write_text(json.dumps(samples))
        result["rtt_ms"] = rtt
        return result


def _safe_threads(pid: int) -> dict[str, float]:
    try:
        return proc_threads_cpu(pid)
    except OSError:
        return {}


def _slope(points: list[tuple[float, float]]) -> float:
    n = len(points)
    mx = sum(x for x, _ in points) / n
    my = sum(y for _, y in points) / n
    var = sum((x - mx) ** 2 for x, _ in points)
    return sum((x - mx) * (y - my) for x, y in points) / var if var else 0.0


# ---- profile summary ---------------------------------------------------------------------------------------------

_FRAME_RE = re.compile(r"^(?P<func>.*) \((?P<file>[^()]*?)(?::(?P<line>\d+))?\)$")

# Inclusive share of these frames answers "where does the time go" at a glance.
WATCHED = [
    ("Pipeline.run (the loop, everything on the event loop)", "Pipeline.run", "processor/pipeline.py"),
    ("Pipeline._handle (per record)", "Pipeline._handle", "processor/pipeline.py"),
    ("  decode (fastavro)", "PlainAvroDecoder.decode", "processor/decode.py"),
    ("  route (subscriptions)", "route", "processor/subscriptions.py"),
    ("    event_time_to_unix_seconds", "event_time_to_unix_seconds", "processor/timestamps.py"),
    ("  Pipeline._origin", "Pipeline._origin", "processor/pipeline.py"),
    ("  Dispatcher.submit", "Dispatcher.submit", "processor/dispatch.py"),
    ("Dispatcher._send (lanes)", "Dispatcher._send", "processor/dispatch.py"),
    ("  ClevertapClient._post (aiohttp)", "ClevertapClient._post", "processor/clevertap/client.py"),
    ("  upload_body (orjson)", "upload_body", "processor/clevertap/payloads.py"),
    ("  Pipeline.accepted", "Pipeline.accepted", "processor/pipeline.py"),
    ("KafkaSource.consume (loop side)", "KafkaSource.consume", "processor/kafka/source.py"),
    ("consumer thread (inside consume())", "_WorkItem.run", "concurrent/futures/thread.py"),
    ("Pipeline._apply_backpressure", "Pipeline._apply_backpressure", "processor/pipeline.py"),
    ("Pipeline.commit", "Pipeline.commit", "processor/pipeline.py"),
    ("DLQ producer poll thread", "DeadLetterWriter._poll", "processor/kafka/dlq.py"),
    ("asyncio select (epoll wait, on CPU)", "EpollSelector.select", "selectors.py"),
]


def _frame_key(frame: str) -> tuple[str, str]:
    match = _FRAME_RE.match(frame.strip())
    if not match:
        return frame.strip(), ""
    path = match["file"]
    for marker in ("/site-packages/", "/lib/python3.11/", str(REPO) + "/"):
        if marker in path:
            path = path.split(marker, 1)[1]
    return match["func"], path


def summarize_profile(path: Path, top: int = 25) -> dict[str, Any]:
    self_counts: dict[tuple[str, str], int] = {}
    incl_counts: dict[tuple[str, str], int] = {}
    total = 0
    for line in path.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = [_frame_key(f) for f in stack.split(";") if f]
        if not frames:
            continue
        total += count
        self_counts[frames[-1]] = self_counts.get(frames[-1], 0) + count
        for key in set(frames):
            incl_counts[key] = incl_counts.get(key, 0) + count

    def table(counts: dict[tuple[str, str], int]) -> list[dict[str, Any]]:
        rows = sorted(counts.items(), key=lambda kv: -kv[1])[:top]
        return [{"pct": round(100 * n / total, 1), "function": f, "file": file} for (f, file), n in rows]

    by_file: dict[str, int] = {}
    for (_, file), n in self_counts.items():
        by_file[file] = by_file.get(file, 0) + n
    files = sorted(by_file.items(), key=lambda kv: -kv[1])[:top]
    watched = []
    for label, func, file in WATCHED:
        n = sum(c for (f, p), c in incl_counts.items() if f == func and p.endswith(file))
        watched.append({"what": label, "inclusive_pct": round(100 * n / total, 1) if total else 0.0})
    return {
        "samples": total,
        "self_top": table(self_counts),
        "inclusive_top": table(incl_counts),
        "self_by_file": [{"pct": round(100 * n / total, 1), "file": f} for f, n in files],
        "watched": watched,
    }


def profile_text(summary: dict[str, Any]) -> str:
    lines = [
        f"py-spy samples (on-CPU, all Python threads): {summary['samples']}",
        "(--nonblocking sampling also counts some threads that wait inside C: the consumer thread in consume(), the"
        " DLQ producer's poll(), the loop's epoll; read those rows as upper bounds)",
        "",
    ]
    lines.append("where the time goes (inclusive):")
    lines += [f"  {w['inclusive_pct']:5.1f}%  {w['what']}" for w in summary["watched"]]
    lines += ["", "self time by file:"]
    lines += [f"  {r['pct']:5.1f}%  {r['file']}" for r in summary.get("self_by_file", [])]
    lines += ["", "top self time:"]
    lines += [f"  {r['pct']:5.1f}%  {r['function']}  ({r['file']})" for r in summary["self_top"]]
    lines += ["", "top inclusive time:"]
    lines += [f"  {r['pct']:5.1f}%  {r['function']}  ({r['file']})" for r in summary["inclusive_top"]]
    return "\n".join(lines) + "\n"


# ---- report ------------------------------------------------------------------------------------------------------


def report(results: dict[str, Any]) -> str:
    phases = results["phases"]
    rtt = results["config"]["rtt_ms"]
    rows = []

    def row(label: str, key: str, note: str = "") -> None:
        p = phases.get(key)
        if not p:
            return
        cpu = p.get("cpu_us_per_event")
        rss = p.get("peak_rss_mb")
        secs = p.get("seconds", p.get("window_seconds"))
        rows.append(
            f"{label:<40} {p['events']:>9,} {secs:>8.1f} {p['rate']:>11,.0f}"
            f" {f'{cpu:.1f}' if cpu else '-':>9} {f'{rss:.0f}' if rss else '-':>8}  {note}"
        )

    header = f"{'measurement':<40} {'events':>9} {'seconds':>8} {'events/s':>11} {'cpu µs/ev':>9} {'RSS MB':>8}"
    rows.append(header)
    rows.append("-" * len(header))
    row("1. ceiling: consume + Avro decode", "ceiling")
    row("   ceiling, 2 processes (2 cores)", "ceiling_2proc")
    row("2. processor, stand-in at 0 ms", "processor_0ms",
        f"delivery-only {phases.get('processor_0ms', {}).get('delivery_rate', 0):,.0f}/s")
    row(f"2. processor, stand-in at {rtt:g} ms", "processor_rtt",
        f"delivery-only {phases.get('processor_rtt', {}).get('delivery_rate', 0):,.0f}/s")
    row(f"   processor x2 replicas, {rtt:g} ms", "processor_2replicas_rtt")
    row("3. per-event sender, 0 ms (sample)", "per_event_0ms", "bounded sample, rate extrapolated")
    row(f"3. per-event sender, {rtt:g} ms (sample)", "per_event_rtt", "bounded sample, rate extrapolated")
    row("   profiled processor run, 0 ms", "profile_run", "under py-spy, informative only")
    out = ["", "\n".join(rows), ""]
    derived = results.get("derived", {})
    for line in derived.get("lines", []):
        out.append(line)
    out.append("")
    out.append("phase timings (s): " + ", ".join(f"{k} {v}" for k, v in results["timings_s"].items()))
    return "\n".join(out)


def derive(results: dict[str, Any]) -> None:
    phases = results["phases"]
    rtt = results["config"]["rtt_ms"]
    lines: list[str] = []
    derived: dict[str, Any] = {"lines": lines}
    ceiling = phases.get("ceiling", {}).get("rate")
    for key, label in (("processor_0ms", "0 ms"), ("processor_rtt", f"{rtt:g} ms")):
        p = phases.get(key)
        if p and ceiling:
            ratio = p["rate"] / ceiling
            derived[f"{key}_over_ceiling"] = ratio
            derived[f"{key}_delivery_over_ceiling"] = p["delivery_rate"] / ceiling
            cpu_ratio = phases["ceiling"]["cpu_us_per_event"] / p["cpu_us_per_event"]
            derived[f"{key}_cpu_over_ceiling_cpu"] = cpu_ratio
            lines.append(
                f"processor/ceiling at {label}: {ratio:.0%} (to last commit), "
                f"{p['delivery_rate'] / ceiling:.0%} (to last delivery)   target >= 75%"
                + ("  OK" if ratio >= 0.75 else "  MISSED")
                + f"   [CPU per event: ceiling {phases['ceiling']['cpu_us_per_event']:.1f} µs, processor "
                f"{p['cpu_us_per_event']:.1f} µs -> {cpu_ratio:.0%} when each has a core to itself]"
            )
    pairs = (("processor_0ms", "per_event_0ms", "0 ms"), ("processor_rtt", "per_event_rtt", f"{rtt:g} ms"))
    for key, per_key, label in pairs:
        p, q = phases.get(key), phases.get(per_key)
        if p and q:
            ratio = p["rate"] / q["rate"]
            derived[f"{key}_over_per_event"] = ratio
            target = "   target >= 50x" + ("  OK" if ratio >= 50 else "  MISSED") if key == "processor_rtt" else ""
            lines.append(f"processor/per-event at {label}: {ratio:,.1f}x{target}")
    lat = phases.get("latency")
    if lat and lat.get("count"):
        ok = lat["p99_ms"] <= 500
        lines.append(
            f"produce->stand-in latency at {lat['target_rate']:,.0f} ev/s (half the {lat['rtt_ms']:g} ms max), "
            f"{lat['count']:,} records: p50 {lat['p50_ms']:.0f} ms, p90 {lat['p90_ms']:.0f} ms, "
            f"p99 {lat['p99_ms']:.0f} ms, max {lat['max_ms']:.0f} ms   target p99 <= 500 ms"
            + ("  OK" if ok else "  MISSED")
        )
    bl = phases.get("backlog")
    if bl:
        ok = bl["peak_rss_mb"] <= 250
        lines.append(
            f"peak RSS with a {bl['events']:,}-event backlog: {bl['peak_rss_mb']:.0f} MB (VmHWM); RSS at progress "
            f"{bl.get('rss_mb_at_progress')}; slope over the 2nd half "
            f"{bl.get('rss_slope_mb_per_100k_events_second_half')} MB/100k events   target <= 250 MB"
            + ("  OK" if ok else "  MISSED")
        )
    results["derived"] = derived


def environment() -> dict[str, Any]:
    import confluent_kafka
    import fastavro

    def git(*cmd: str) -> str:
        try:
            return subprocess.run(["git", *cmd], cwd=REPO, capture_output=True, text=True, check=False).stdout.strip()
        except OSError:
            return ""

    with open("/proc/loadavg") as f:
        load = f.read().split()[:3]
    model = ""
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as f:
        model = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), "")
    return {
        "python": platform.python_version(),
        "cpu": model,
        "cores": os.cpu_count(),
        "fastavro": fastavro.__version__,
        "confluent_kafka": str(confluent_kafka.version()),
        "librdkafka": confluent_kafka.libversion()[0],
        "git_commit": git("rev-parse", "--short", "HEAD"),
        "processor_dirty_files": git("status", "--short", "processor").splitlines(),
        "loadavg_at_start": load,
    }


PHASES = (
    "ceiling",
    "ceiling_2proc",
    "processor_0ms",
    "processor_rtt",
    "processor_2replicas_rtt",
    "per_event_0ms",
    "per_event_rtt",
    "latency",
    "profile_run",
    "backlog",
)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__.splitlines()[0])
    parser.add_argument("--events", "-n", type=int, default=300_000, help="events in the main topic (default 300000)")
    parser.add_argument("--partitions", type=int, default=6)
    parser.add_argument("--rtt-ms", type=float, default=50.0, help="simulated round trip to CleverTap (default 50)")
    parser.add_argument("--out", type=Path, default=None,
                        help="results JSON path (default bench/results/<UTC time>/results.json); "
                        "artefacts go next to it")
    parser.add_argument("--quick", action="store_true", help="a one-minute smoke run")
    parser.add_argument("--backlog", type=int, default=1_000_000, help="events for the peak-RSS phase")
    parser.add_argument("--backlog-rtt-ms", type=float, default=0.0,
                        help="stand-in round trip for the backlog phase (default 0: memory is bounded by the in-flight "
                        "cap and librdkafka's prefetch queue either way, and 0 keeps the phase short)")
    parser.add_argument("--skip-backlog", action="store_true", help="skip the 1 M-event backlog RSS phase")
    parser.add_argument("--skip-profile", action="store_true")
    parser.add_argument("--skip-replicas", action="store_true", help="skip the 2-process ceiling and 2-replica run")
    parser.add_argument("--processor-env", action="append", default=[], metavar="NAME=VALUE",
                        help="an extra environment setting for every processor run (repeatable)")
    parser.add_argument("--only", default="", help=f"comma-separated phases to run, among: {', '.join(PHASES)}")
    parser.add_argument("--per-event-window", type=float, default=20.0, help="seconds of per-event sending measured")
    parser.add_argument("--per-event-max", type=int, default=50_000, help="or this many events, whichever first")
    parser.add_argument("--latency-duration", type=float, default=30.0, help="seconds of paced producing")
    parser.add_argument("--latency-warmup", type=float, default=5.0, help="seconds left out of the percentiles")
    parser.add_argument("--latency-rate", type=float, default=None, help="events/s (default: half the processor's max)")
    parser.add_argument("--profile-rate", type=int, default=200, help="py-spy samples per second")
    parser.add_argument("--phase-timeout", type=float, default=600.0)
    parser.add_argument("--identify-share", type=float, default=0.25)
    parser.add_argument("--delete-share", type=float, default=0.01)
    parser.add_argument("--users", type=int, default=50_000)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args(argv)
    if args.quick:
        args.events = min(args.events, 30_000)
        args.per_event_window = 4.0
        args.per_event_max = 5_000
        args.latency_duration = 8.0
        args.latency_warmup = 2.0
        args.skip_backlog = True
        args.skip_replicas = True
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    for item in args.processor_env:
        name, _, value = item.partition("=")
        PROCESSOR_ENV[name] = value
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    out_path: Path = args.out or REPO / "bench" / "results" / stamp / "results.json"
    out_dir = out_path.parent
    out_dir.mkdir(parents=True, exist_ok=True)
    bench = Bench(args, out_dir)
    results = bench.results
    results["config"] = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()}
    results["environment"] = environment()
    rtt = float(args.rtt_ms)
    started = time.monotonic()

    def phase(key: str, fn: Callable[[], dict[str, Any]]) -> None:
        with bench.timed(key):
            results["phases"][key] = fn()
        save()

    def save() -> None:
        out_path.write_text(json.dumps(results, indent=2, default=str))

    try:
        bench.setup()
        with bench.timed("fill"):
            bench.topic, bench.ends, bench.kinds = bench.fill_topic("main", args.events)
            bench.total = args.events
        results["workload"]["kinds"] = bench.kinds
        wanted = set(args.only.split(",")) if args.only else set(PHASES)
        if args.skip_replicas:
            wanted -= {"ceiling_2proc", "processor_2replicas_rtt"}
        if args.skip_profile:
            wanted.discard("profile_run")
        if args.skip_backlog:
            wanted.discard("backlog")
        runs: dict[str, Callable[[], dict[str, Any]]] = {
            "ceiling": bench.ceiling,
            "ceiling_2proc": lambda: bench.ceiling(2),
            "processor_0ms": lambda: bench.processor_run("processor-0ms", 0.0),
            "processor_rtt": lambda: bench.processor_run(f"processor-{rtt:g}ms", rtt),
            "processor_2replicas_rtt": lambda: bench.processor_run(
                f"processor-2x-{rtt:g}ms", rtt, {"CLEVERTAP_MAX_CONCURRENCY": "7"}, replicas=2
            ),
            "per_event_0ms": lambda: bench.per_event("per-event-0ms", 0.0),
            "per_event_rtt": lambda: bench.per_event(f"per-event-{rtt:g}ms", rtt),
            "latency": lambda: bench.latency(
                args.latency_rate or results["phases"]["processor_rtt"]["rate"] / 2, rtt
            ),
            "profile_run": lambda: bench.processor_run("profile-0ms", 0.0, profile=True),
            "backlog": lambda: bench.backlog(float(args.backlog_rtt_ms)),
        }
        for key in PHASES:
            if key not in wanted:
                continue
            if key == "latency" and not args.latency_rate and "processor_rtt" not in results["phases"]:
                log("latency skipped: it needs the processor_rtt phase or --latency-rate")
                continue
            phase(key, runs[key])
            if key == "profile_run":
                summary = summarize_profile(out_dir / "profile.pyspy.txt")
                results["profile"] = summary
                (out_dir / "profile-top.txt").write_text(profile_text(summary))
                save()
    finally:
        results["timings_s"]["total"] = round(time.monotonic() - started, 1)
        if results["phases"]:
            derive(results)
        save()
        bench.close()
    print(report(results))
    if "profile" in results:
        print()
        print(profile_text(results["profile"]))
    print(f"results: {out_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
