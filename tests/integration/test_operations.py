"""Metrics, health and the failure-rate breaker, on the real broker with the HTTP stand-in."""

from __future__ import annotations

import asyncio
import secrets
import socket

import aiohttp
import pytest

from processor.app import run_processor
from processor.embedded.clevertap_standin import ClevertapStandin, StandinConfig
from processor.embedded.events import create_topics, encode_plain, produce
from processor.pipeline import Pipeline
from tests.integration.helpers import (
    BASE_TS,
    SCHEMA,
    committed_and_end_offsets,
    iso,
    processor_settings,
    read_all,
    unique,
)

pytestmark = pytest.mark.integration


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def metric_value(text: str, sample: str) -> float:
    for line in text.splitlines():
        if line.startswith(sample + " "):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"{sample} not in metrics:\n{text}")


async def test_metrics_and_health_endpoints(kafka_bootstrap: str) -> None:
    topic, group = unique("ops"), unique("group")
    create_topics(kafka_bootstrap, {topic: 2})
    events = [
        {"messageId": f"m{i}", "type": "track", "userId": f"u{i % 7}", "event": "Song Played",
         "timestamp": iso(BASE_TS + i), "properties": {"n": i}}
        for i in range(40)
    ] + [{"messageId": "p1", "type": "page", "userId": "u1", "name": "Home"}]
    produce(kafka_bootstrap, topic, [(e["userId"].encode(), encode_plain(SCHEMA, e)) for e in events]
            + [(b"x", b"\x07garbage")])
    port = free_port()
    passcode = secrets.token_hex(16)
    seen: dict[str, object] = {}

    async with ClevertapStandin(StandinConfig(account_id="TEST-ACCOUNT", passcode=passcode)) as standin:
        settings = processor_settings(
            kafka_bootstrap, topic, group, standin.base_url, passcode, METRICS_PORT=str(port), METRICS_HOST="127.0.0.1"
        )

        async def probe(pipeline: Pipeline) -> None:
            base = f"http://127.0.0.1:{port}"
            async with aiohttp.ClientSession() as session:
                async with session.get(base + "/livez") as response:
                    seen["livez"] = response.status
                while pipeline.stats.read < len(events) + 1 or pipeline.tracker.in_flight:
                    await asyncio.sleep(0.05)
                await pipeline.commit()
                async with session.get(base + "/readyz") as response:
                    seen["readyz"] = response.status
                    seen["readyz_body"] = await response.json()
                async with session.get(base + "/metrics") as response:
                    seen["metrics"] = await response.text()

        tasks: list[asyncio.Task[None]] = []
        result = await run_processor(
            settings, idle_exit_s=1.0, on_pipeline=lambda p: tasks.append(asyncio.create_task(probe(p)))
        )
        await asyncio.gather(*tasks)

    assert result.drained
    assert seen["livez"] == 200
    assert seen["readyz"] == 200
    body = seen["readyz_body"]
    assert isinstance(body, dict)
    assert body["ready"] is True and body["credentials_accepted"] is True and body["assigned_partitions"] == 2
    text = str(seen["metrics"])
    p = "clevertap_processor_"
    assert metric_value(text, p + "records_consumed_total") == 42
    assert metric_value(text, p + "records_undecodable_total") == 1
    assert metric_value(text, p + 'records_skipped_total{reason="no subscription matched"}') == 1
    assert metric_value(text, p + 'records_accepted_total{action="upload_event"}') == 40
    assert metric_value(text, p + "records_dead_lettered_total") == 1
    assert metric_value(text, p + "records_in_flight") == 0
    assert metric_value(text, p + "credentials_accepted") == 1
    committed, ends = committed_and_end_offsets(kafka_bootstrap, topic, group, 2)
    assert committed == ends
    for partition in (0, 1):
        assert metric_value(text, p + f'committed_offset{{partition="{partition}",topic="{topic}"}}') == ends[partition]
    requests = sum(
        float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
        if line.startswith(p + 'clevertap_requests_total{endpoint="/1/upload",status="200"}')
    )
    assert requests >= 1
    assert metric_value(text, p + 'clevertap_request_duration_seconds_count{endpoint="/1/upload"}') == requests
    assert passcode not in text


async def test_breaker_stops_instead_of_dead_lettering_the_topic(kafka_bootstrap: str) -> None:
    topic, group = unique("breaker"), unique("group")
    create_topics(kafka_bootstrap, {topic: 1})
    produce(kafka_bootstrap, topic, [(b"k", b"\x09not avro %d" % i) for i in range(300)])
    passcode = secrets.token_hex(16)
    async with ClevertapStandin(StandinConfig(account_id="TEST-ACCOUNT", passcode=passcode)) as standin:
        settings = processor_settings(
            kafka_bootstrap, topic, group, standin.base_url, passcode,
            PROCESSOR_BREAKER_WINDOW="100", PROCESSOR_BREAKER_THRESHOLD="0.5", PROCESSOR_BREAKER_MIN_RECORDS="50",
        )
        result = await asyncio.wait_for(run_processor(settings), timeout=60)
    assert result.breaker_message is not None
    assert "stage decode" in result.breaker_message and "DecodeError" in result.breaker_message
    assert result.stats.dead_lettered == 50
    committed, ends = committed_and_end_offsets(kafka_bootstrap, topic, group, 1)
    assert ends == [300]
    assert committed == [50]
    letters = read_all(kafka_bootstrap, f"{topic}.dlq", 50)
    assert sorted(m.value() for m in letters) == sorted(b"\x09not avro %d" % i for i in range(50))
