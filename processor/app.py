"""Builds a pipeline from settings: the one place that knows which edge implementation goes where."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass
from typing import Any

import aiohttp

from processor.clevertap.client import ClevertapClient
from processor.decode import PlainAvroDecoder, RegistryDecoder, load_schema
from processor.kafka.dlq import DeadLetterWriter
from processor.kafka.source import KafkaSource
from processor.kafka.topics import ensure_dead_letter_topics
from processor.observability import HealthServer, Metrics, ProgressLog
from processor.pipeline import Decoder, Pipeline
from processor.schema_registry import SchemaRegistryClient
from processor.settings import Settings
from processor.stats import Stats
from processor.subscriptions import Subscription, load_subscriptions_file, preset_subscriptions

log = logging.getLogger(__name__)


@dataclass
class RunResult:
    stats: Stats
    drained: bool
    breaker_message: str | None = None


def load_subscriptions(settings: Settings) -> list[Subscription]:
    """The Customized Setup file named by ``SUBSCRIPTIONS_FILE``, else the Quick Setup presets.

    Raises :class:`~processor.errors.ConfigError` (setting ``SUBSCRIPTIONS_FILE``) naming the place in the file of
    every problem; nothing is connected before this succeeds.
    """
    if settings.subscriptions_file is None:
        subscriptions = preset_subscriptions()
        source = "Quick Setup presets"
    else:
        subscriptions = load_subscriptions_file(settings.subscriptions_file)
        source = str(settings.subscriptions_file)
    enabled = [s.name for s in subscriptions if s.enabled]
    log.info("subscriptions from %s: %s", source, ", ".join(enabled) or "none enabled")
    return subscriptions


def build_decoder(settings: Settings) -> Decoder:
    if settings.schema_source == "registry":
        return RegistryDecoder()
    return PlainAvroDecoder(load_schema(settings.avro_schema_file))


async def run_processor(
    settings: Settings,
    *,
    stop: asyncio.Event | None = None,
    idle_exit_s: float | None = None,
    on_progress: Callable[[Stats], None] | None = None,
    progress_interval_s: float = 15.0,
    on_pipeline: Callable[[Pipeline], None] | None = None,
) -> RunResult:
    """Run until ``stop`` is set (or idle, see :meth:`Pipeline.run`); everything opened here is closed here."""
    stop = stop or asyncio.Event()
    subscriptions = load_subscriptions(settings)
    decoder = build_decoder(settings)
    stats = Stats()
    metrics = Metrics()
    await asyncio.to_thread(ensure_dead_letter_topics, settings)
    async with AsyncExitStack() as stack:
        if settings.metrics_port:
            server = HealthServer(metrics, settings.metrics_host, settings.metrics_port)
            await server.start()
            stack.push_async_callback(server.stop)
        client = ClevertapClient(
            settings.clevertap_base_url,
            settings.clevertap_account_id,
            settings.clevertap_passcode,
            max_connections=settings.max_concurrency,
            timeout_s=settings.request_timeout_s,
            observer=lambda endpoint, status, seconds: metrics.observe_request(stats, endpoint, status, seconds),
        )
        await stack.enter_async_context(client)
        registry: SchemaRegistryClient | None = None
        if settings.schema_source == "registry":
            assert settings.schema_registry_url is not None
            session = await stack.enter_async_context(aiohttp.ClientSession())
            registry = SchemaRegistryClient(session, settings.schema_registry_url, settings.schema_registry_auth)
        dead_letters = DeadLetterWriter(settings.producer_config())
        stack.push_async_callback(dead_letters.close)

        def make_source(**handlers: Any) -> KafkaSource:
            return KafkaSource(settings.consumer_config(), settings.kafka_topics, **handlers)

        pipeline = Pipeline(
            settings, subscriptions, decoder, client, dead_letters, make_source, registry=registry, stats=stats
        )
        metrics.pipeline = pipeline
        if on_pipeline is not None:
            on_pipeline(pipeline)
        drained = await pipeline.run(
            stop,
            idle_exit_s=idle_exit_s,
            on_progress=on_progress or ProgressLog(metrics),
            progress_interval_s=progress_interval_s,
        )
        return RunResult(pipeline.stats, drained, pipeline.breaker_message)
