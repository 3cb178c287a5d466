"""The benchmark's CleverTap stand-in: the project's stand-in in cheap mode, plus a small ``/_bench`` API.

Run as its own process (``python -m bench.standin --latency-ms N``) so it never shares a GIL with the processor.
It is :class:`processor.embedded.clevertap_standin.ClevertapStandin` with ``cheap_validation=True`` (envelope
checks, counting, no storage); the subclass only adds what the benchmark must read from outside:

* ``GET /_bench/stats``: counters plus the wall-clock time of the first request's arrival and of the last
  answer sent (so a phase's delivery span is known to the millisecond), and records delivered = upload records
  accepted + identities deleted;
* ``POST /_bench/reset?latency=1``: forget everything; with ``latency=1`` also record, for every upload record
  carrying ``bench_sent_us`` (its produce() time, written by the benchmark's producer), the pair (produce time,
  arrival time of the request carrying it). Arrival is taken when the request's headers arrive, before the body
  is read and before the simulated round trip, i.e. the moment the record reached "CleverTap";
* ``GET /_bench/latency?since=<wall seconds>``: percentiles of arrival - produce over records produced at or after
  ``since`` (to leave out a warm-up).

Both processes run on the same machine, so their ``time.time()`` clocks are the same clock.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from array import array
from typing import Any

import orjson
from aiohttp import web

from processor.embedded.clevertap_standin import (
    MAX_BODY_BYTES,
    ClevertapStandin,
    StandinConfig,
    serve_until_signal,
)

STAMP_FIELD = "bench_sent_us"


class BenchStandin(ClevertapStandin):
    def __init__(self, config: StandinConfig) -> None:
        super().__init__(config)
        self._clear_bench()

    def _clear_bench(self) -> None:
        self.first_arrival: float | None = None
        self.last_answer: float | None = None
        self.identities_deleted = 0
        self.track_latency = False
        self.sent_at = array("d")
        self.arrived_at = array("d")
        self._arrival_wall = 0.0

    def make_app(self) -> web.Application:
        app = web.Application(client_max_size=MAX_BODY_BYTES)
        app.router.add_get("/_bench/stats", self._bench_stats)
        app.router.add_post("/_bench/reset", self._bench_reset)
        app.router.add_get("/_bench/latency", self._bench_latency)
        app.router.add_route("*", "/{tail:.*}", self._dispatch)
        return app

    async def _dispatch(self, request: web.Request) -> web.StreamResponse:
        if self.first_arrival is None:
            self.first_arrival = time.time()
        response = await super()._dispatch(request)
        self.last_answer = time.time()
        return response

    def _process(
        self, request: web.Request, raw: bytes, arrived: float, arrived_wall: float
    ) -> tuple[int, dict[str, Any]]:
        self._arrival_wall = arrived_wall
        return super()._process(request, raw, arrived, arrived_wall)

    def _upload(self, payload: Any, dry_run: bool) -> dict[str, Any]:
        body = super()._upload(payload, dry_run)
        if self.track_latency:
            arrival = self._arrival_wall
            for record in payload["d"]:
                data = record.get("evtData") or record.get("profileData") or {}
                stamp = data.get(STAMP_FIELD) if isinstance(data, dict) else None
                if isinstance(stamp, str) and stamp.isdigit():
                    self.sent_at.append(int(stamp) / 1_000_000)
                    self.arrived_at.append(arrival)
        return body

    def _delete(self, payload: Any, dry_run: bool) -> dict[str, Any]:
        body = super()._delete(payload, dry_run)
        values = payload.get("identity") if payload.get("identity") is not None else payload.get("guid")
        self.identities_deleted += len(values) if isinstance(values, list) else 1
        return body

    # ---- /_bench ------------------------------------------------------------------------------------------------

    async def _bench_stats(self, request: web.Request) -> web.Response:
        stats = self.counters()
        stats.update(
            now=time.time(),
            first_arrival=self.first_arrival,
            last_answer=self.last_answer,
            identities_deleted=self.identities_deleted,
            delivered=self.records_accepted + self.identities_deleted,
            latency_samples=len(self.sent_at),
        )
        return web.Response(body=orjson.dumps(stats), content_type="application/json")

    async def _bench_reset(self, request: web.Request) -> web.Response:
        self.reset()
        self._clear_bench()
        self.track_latency = request.query.get("latency") == "1"
        return web.Response(body=b'{"ok":true}', content_type="application/json")

    async def _bench_latency(self, request: web.Request) -> web.Response:
        since = float(request.query.get("since", "0"))
        until = float(request.query.get("until", "inf"))
        pairs = [(s, a - s) for s, a in zip(self.sent_at, self.arrived_at, strict=True) if since <= s <= until]
        delays = sorted(d for _, d in pairs)
        # The worst delay per second of produce time: shows whether the tail is spread out or a few stalls.
        per_second: dict[int, float] = {}
        for sent, delay in pairs:
            second = int(sent - since)
            per_second[second] = max(per_second.get(second, 0.0), delay)
        result: dict[str, Any] = {
            "count": len(delays),
            "total_samples": len(self.sent_at),
            "max_ms_by_second": [round(per_second.get(i, 0.0) * 1000) for i in range(max(per_second, default=-1) + 1)],
        }
        if delays:

            def pct(p: float) -> float:
                return delays[min(len(delays) - 1, int(p / 100 * len(delays)))] * 1000

            result.update(
                p50_ms=pct(50), p90_ms=pct(90), p99_ms=pct(99), p999_ms=pct(99.9), max_ms=delays[-1] * 1000,
                min_ms=delays[0] * 1000, mean_ms=sum(delays) / len(delays) * 1000,
            )
        return web.Response(body=orjson.dumps(result), content_type="application/json")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.standin", description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--account-id", default="BENCH-ACCOUNT")
    parser.add_argument("--passcode", default="bench-passcode")
    parser.add_argument("--latency-ms", type=float, default=0.0)
    parser.add_argument("--max-concurrency", type=int, default=15)
    args = parser.parse_args(argv)
    config = StandinConfig(
        account_id=args.account_id,
        passcode=args.passcode,
        max_concurrency=args.max_concurrency,
        latency_s=args.latency_ms / 1000.0,
        cheap_validation=True,
    )
    asyncio.run(serve_until_signal(BenchStandin(config), args.host, args.port))
    return 0


if __name__ == "__main__":
    sys.exit(main())
