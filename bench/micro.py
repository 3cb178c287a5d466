"""The processor's own per-record CPU cost, without Kafka or HTTP: ``python -m bench.micro [-n 100000]``.

The real :class:`processor.pipeline.Pipeline` (decode, route, offsets, dispatcher lanes, completion, commits) runs
on an in-memory source that hands out the benchmark's events in batches of 1000, and a client that builds the real
request bodies (``upload_body`` / ``delete_body``, i.e. the JSON encoding) and accepts every record at once. It
prints CPU microseconds per record for the whole loop and for decode and route alone, so a change to the hot path
can be judged in seconds and without the noise of the broker and the stand-in sharing the machine's two cores.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import json
import pstats
import sys
import time
from collections.abc import Sequence
from typing import Any

from bench.workload import Workload
from processor.app import build_decoder, load_subscriptions
from processor.clevertap.payloads import UploadOutcome, delete_body, upload_body
from processor.pipeline import Pipeline
from processor.settings import load_settings
from processor.subscriptions import route


class FakeMessage:
    __slots__ = ("_key", "_offset", "_partition", "_topic", "_value")

    def __init__(self, topic: str, partition: int, offset: int, key: bytes, value: bytes) -> None:
        self._topic, self._partition, self._offset, self._key, self._value = topic, partition, offset, key, value

    def topic(self) -> str:
        return self._topic

    def partition(self) -> int:
        return self._partition

    def offset(self) -> int:
        return self._offset

    def key(self) -> bytes:
        return self._key

    def value(self) -> bytes:
        return self._value

    def headers(self) -> None:
        return None

    def timestamp(self) -> tuple[int, int]:
        return 1, 1_700_000_000_000

    def error(self) -> None:
        return None


class MemorySource:
    def __init__(self, messages: list[FakeMessage], partitions: int, on_assign: Any, on_revoke: Any) -> None:
        self._messages = messages
        self._at = 0
        self._on_assign = on_assign
        self.assigned = {("bench", p) for p in range(partitions)}
        self.paused: set[Any] = set()

    async def start(self) -> None:
        await self._on_assign(sorted(self.assigned))

    async def consume(self, max_messages: int, timeout_s: float) -> list[Any]:
        await asyncio.sleep(0)
        ready = [m for m in self._messages[self._at : self._at + max_messages]]
        if self.paused:
            ready = [m for m in ready if ("bench", m.partition()) not in self.paused]
            # Keep it simple: a paused partition's records wait; the rest of the slice is taken in order.
            if len(ready) < min(max_messages, len(self._messages) - self._at):
                ready = []
        self._at += len(ready)
        if not ready:
            await asyncio.sleep(0.001)
        return ready

    async def commit(self, positions: dict[Any, int]) -> bool:
        return True

    async def set_paused(self, wanted: set[Any]) -> None:
        self.paused = set(wanted)

    async def high_watermarks(self) -> dict[Any, int]:
        return {}

    async def close(self) -> None:
        pass


class AcceptingClient:
    async def upload(self, records: Sequence[dict[str, Any]]) -> UploadOutcome:
        upload_body(records)
        await asyncio.sleep(0)
        return UploadOutcome("success", len(records))

    async def delete(self, id_key: str, values: Sequence[str]) -> None:
        delete_body(id_key, values)
        await asyncio.sleep(0)


class NoDeadLetters:
    async def write(self, topic: str, letter: Any) -> None:
        raise AssertionError("no dead letters expected")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.micro", description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=100_000)
    parser.add_argument("--partitions", type=int, default=6)
    parser.add_argument("--profile", default="", help="write cProfile stats of the pipeline loop to this file")
    args = parser.parse_args(argv)

    settings = load_settings(
        {
            "KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:1",
            "KAFKA_TOPICS": "bench",
            "CLEVERTAP_ACCOUNT_ID": "X",
            "CLEVERTAP_PASSCODE": "Y",
            "CLEVERTAP_BASE_URL": "http://127.0.0.1:1",
            "METRICS_PORT": "0",
        }
    )
    workload = Workload()
    offsets = [0] * args.partitions
    messages = []
    for _ in range(args.n):
        key, value, _ = workload.next(1_700_000_000_000_000)
        partition = hash(key) % args.partitions
        messages.append(FakeMessage("bench", partition, offsets[partition], key, value))
        offsets[partition] += 1

    decoder = build_decoder(settings)
    subscriptions = load_subscriptions(settings)
    sample = [m.value() for m in messages[:20000]]
    t0 = time.process_time()
    events = [decoder.decode(v) for v in sample]
    t1 = time.process_time()
    for event in events:
        route(event, subscriptions)
    t2 = time.process_time()

    def make_source(**handlers: Any) -> MemorySource:
        return MemorySource(messages, args.partitions, handlers["on_assign"], handlers["on_revoke"])

    pipeline = Pipeline(settings, subscriptions, decoder, AcceptingClient(), NoDeadLetters(), make_source)
    profiler = cProfile.Profile() if args.profile else None
    started_cpu, started = time.process_time(), time.perf_counter()
    if profiler:
        profiler.enable()
    asyncio.run(pipeline.run(asyncio.Event(), idle_exit_s=0.05, progress_interval_s=3600))
    if profiler:
        profiler.disable()
        profiler.dump_stats(args.profile)
        pstats.Stats(args.profile).sort_stats("tottime").print_stats(25)
    cpu, wall = time.process_time() - started_cpu, time.perf_counter() - started
    stats = pipeline.stats
    delivered = stats.profiles_uploaded + stats.events_uploaded + stats.profiles_deleted
    result = {
        "records": args.n,
        "delivered": delivered,
        "pipeline_cpu_us_per_record": round(cpu / args.n * 1e6, 2),
        "decode_cpu_us_per_record": round((t1 - t0) / len(sample) * 1e6, 2),
        "route_cpu_us_per_record": round((t2 - t1) / len(sample) * 1e6, 2),
        "rest_cpu_us_per_record": round((cpu / args.n - (t2 - t0) / len(sample)) * 1e6, 2),
        "wall_s": round(wall, 2),
    }
    print(json.dumps(result))
    return 0 if delivered == args.n else 1


if __name__ == "__main__":
    sys.exit(main())
