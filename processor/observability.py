"""Metrics, health and progress: the third I/O edge (a small aiohttp server on ``METRICS_PORT``).

Counters live in :class:`processor.stats.Stats` as plain integers (cheap on the hot path) and are read at scrape
time by a custom collector; only request latency uses a prometheus-client histogram, observed once per request.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING

from aiohttp import web
from prometheus_client import CollectorRegistry, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from processor.stats import Stats

if TYPE_CHECKING:
    from processor.pipeline import Pipeline

log = logging.getLogger(__name__)

PREFIX = "clevertap_processor_"
# The loop goes round at least every few hundred milliseconds; a minute without a round means it is stuck.
LIVENESS_STALL_S = 60.0


class Metrics:
    """One registry per processor (tests run several in one process)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=False)
        self.pipeline: Pipeline | None = None
        self.request_seconds = Histogram(
            PREFIX + "clevertap_request_duration_seconds",
            "Time from sending a CleverTap request to reading its answer",
            ["endpoint"],
            buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0),
            registry=self.registry,
        )
        self.registry.register(_PipelineCollector(self))

    def observe_request(self, stats: Stats, endpoint: str, status: int, seconds: float) -> None:
        stats.requests[(endpoint, status)] += 1
        self.request_seconds.labels(endpoint).observe(seconds)

    def render(self) -> bytes:
        return generate_latest(self.registry)


def _counter(name: str, doc: str, value: float, labels: dict[str, str] | None = None) -> CounterMetricFamily:
    family = CounterMetricFamily(PREFIX + name, doc, labels=list(labels) if labels else None)
    family.add_metric(list(labels.values()) if labels else [], value)
    return family


class _PipelineCollector:
    def __init__(self, metrics: Metrics) -> None:
        self._metrics = metrics

    def describe(self) -> list[Metric]:
        return []

    def collect(self) -> Iterator[Metric]:
        pipeline = self._metrics.pipeline
        if pipeline is None:
            return
        stats = pipeline.stats
        yield _counter("records_consumed", "Records read from Kafka", stats.read)
        yield _counter("records_decoded", "Records decoded into events", stats.decoded)
        yield _counter("records_undecodable", "Records that are not valid Avro of a known schema", stats.decode_errors)
        skipped = CounterMetricFamily(
            PREFIX + "records_skipped", "Events with nothing to send, by reason", labels=["reason"]
        )
        for reason, count in sorted(stats.skipped.items()):
            skipped.add_metric([reason], count)
        yield skipped
        operations = CounterMetricFamily(
            PREFIX + "operations", "CleverTap operations made from events, by action", labels=["action"]
        )
        for action, count in sorted(stats.operations.items()):
            operations.add_metric([action], count)
        yield operations
        delivered = CounterMetricFamily(
            PREFIX + "records_accepted", "Operations CleverTap accepted, by action", labels=["action"]
        )
        delivered.add_metric(["upload_profile"], stats.profiles_uploaded)
        delivered.add_metric(["upload_event"], stats.events_uploaded)
        delivered.add_metric(["delete_profile"], stats.profiles_deleted)
        yield delivered
        rejected = CounterMetricFamily(
            PREFIX + "records_rejected", "Operations refused (by CleverTap or before sending), by code", labels=["code"]
        )
        for code, count in sorted(stats.rejected.items()):
            rejected.add_metric([str(code)], count)
        yield rejected
        yield _counter("records_dead_lettered", "Records written to the dead-letter topic", stats.dead_lettered)
        yield _counter("records_retried", "Record sends retried (429, 5xx, timeouts, code 555)", stats.retried)
        yield _counter(
            "timestamp_warnings", "ISO-8601-shaped strings that are no real instant (left unchanged)",
            stats.timestamp_warnings,
        )
        requests = CounterMetricFamily(
            PREFIX + "clevertap_requests", "CleverTap requests by endpoint and HTTP status (0: no answer)",
            labels=["endpoint", "status"],
        )
        for (endpoint, status), count in sorted(stats.requests.items()):
            requests.add_metric([endpoint, str(status)], count)
        yield requests
        in_flight = GaugeMetricFamily(PREFIX + "records_in_flight", "Records read and not yet done")
        in_flight.add_metric([], pipeline.tracker.in_flight)
        yield in_flight
        queued = GaugeMetricFamily(PREFIX + "operations_queued", "Operations waiting for or in a CleverTap request")
        queued.add_metric([], pipeline.dispatcher.queued)
        yield queued
        committed = GaugeMetricFamily(
            PREFIX + "committed_offset", "Last committed offset per partition", labels=["topic", "partition"]
        )
        for (topic, partition), offset in sorted(stats.committed.items()):
            committed.add_metric([topic, str(partition)], offset)
        yield committed
        lag = GaugeMetricFamily(
            PREFIX + "consumer_lag",
            "High watermark minus committed offset per partition",
            labels=["topic", "partition"],
        )
        for (topic, partition), value in sorted(pipeline.lag().items()):
            lag.add_metric([topic, str(partition)], value)
        yield lag
        assigned = GaugeMetricFamily(PREFIX + "assigned_partitions", "Partitions assigned to this consumer")
        assigned.add_metric([], len(pipeline.source.assigned))
        yield assigned
        credentials = GaugeMetricFamily(
            PREFIX + "credentials_accepted", "1 while CleverTap accepts the credentials, 0 while it refuses them"
        )
        credentials.add_metric([], 1 if pipeline.dispatcher.credentials_ok else 0)
        yield credentials
        breaker = GaugeMetricFamily(
            PREFIX + "breaker_tripped", "1 once the failure-rate breaker stopped the processor"
        )
        breaker.add_metric([], 1 if pipeline.breaker_message else 0)
        yield breaker


def health(pipeline: Pipeline | None) -> tuple[bool, bool, dict[str, object]]:
    """(live, ready, details). Live: the loop goes round. Ready: partitions assigned, credentials accepted, not
    draining."""
    if pipeline is None:
        return True, False, {"starting": True}
    stalled_s = time.monotonic() - pipeline.last_progress
    live = stalled_s < LIVENESS_STALL_S
    details: dict[str, object] = {
        "loop_seconds_since_progress": round(stalled_s, 3),
        "assigned_partitions": len(pipeline.source.assigned),
        "credentials_accepted": pipeline.dispatcher.credentials_ok,
        "draining": pipeline.draining,
    }
    if pipeline.credentials_message:
        details["credentials_problem"] = pipeline.credentials_message
    ready = live and bool(pipeline.source.assigned) and pipeline.dispatcher.credentials_ok and not pipeline.draining
    return live, ready, details


class HealthServer:
    """Serves ``/metrics``, ``/livez`` and ``/readyz``."""

    def __init__(self, metrics: Metrics, host: str, port: int) -> None:
        self._metrics = metrics
        self._host = host
        self._port = port
        self._runner: web.AppRunner | None = None
        self.port: int | None = None

    async def start(self) -> None:
        app = web.Application()
        app.router.add_get("/metrics", self._serve_metrics)
        app.router.add_get("/livez", self._livez)
        app.router.add_get("/readyz", self._readyz)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self._host, self._port)
        await site.start()
        server = site._server
        sockets = getattr(server, "sockets", None) or []
        self.port = sockets[0].getsockname()[1] if sockets else self._port
        log.info("metrics and health on http://%s:%s (/metrics, /livez, /readyz)", self._host, self.port)

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def _serve_metrics(self, request: web.Request) -> web.Response:
        return web.Response(body=self._metrics.render(), headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def _livez(self, request: web.Request) -> web.Response:
        live, _, details = health(self._metrics.pipeline)
        return web.json_response({"live": live, **details}, status=200 if live else 503)

    async def _readyz(self, request: web.Request) -> web.Response:
        _, ready, details = health(self._metrics.pipeline)
        return web.json_response({"ready": ready, **details}, status=200 if ready else 503)


class ProgressLog:
    """A periodic progress line: rates since the previous line, lag and in-flight records."""

    def __init__(self, pipeline_ref: Metrics) -> None:
        self._metrics = pipeline_ref
        self._last = time.monotonic()
        self._last_read = 0
        self._last_accepted = 0

    def __call__(self, stats: Stats) -> None:
        pipeline = self._metrics.pipeline
        now = time.monotonic()
        elapsed = max(1e-6, now - self._last)
        accepted = stats.profiles_uploaded + stats.events_uploaded + stats.profiles_deleted
        lag = sum(pipeline.lag().values()) if pipeline is not None else 0
        in_flight = pipeline.tracker.in_flight if pipeline is not None else 0
        log.info(
            "progress: read %d (%.0f/s), accepted %d (%.0f/s), rejected %d, dead-lettered %d, in flight %d, lag %d",
            stats.read, (stats.read - self._last_read) / elapsed, accepted, (accepted - self._last_accepted) / elapsed,
            sum(stats.rejected.values()), stats.dead_lettered, in_flight, lag,
            extra={"records_read": stats.read, "records_accepted": accepted, "lag": lag, "in_flight": in_flight},
        )
        self._last, self._last_read, self._last_accepted = now, stats.read, accepted
