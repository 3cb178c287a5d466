"""The main job on an embedded default: a local Kafka broker, a local CleverTap stand-in, the sample events."""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from typing import Any

from confluent_kafka import Consumer

from processor.app import run_processor
from processor.decode import load_schema
from processor.embedded.clevertap_standin import ClevertapStandin, StandinConfig
from processor.embedded.events import (
    EMBEDDED_KAFKA_LOG,
    create_topics,
    encode_plain,
    event_key,
    load_sample_events,
    produce,
)
from processor.embedded.kafka_broker import KafkaBroker
from processor.settings import default_schema_path, load_settings
from processor.stats import Stats

TOPIC = "user-events"
PARTITIONS = 3
# Payloads a real topic sometimes carries: a JSON producer's output and truncated Avro.
FOREIGN_PAYLOADS = [b'{"type":"identify","userId":"u-json"}', b"\x02\x10truncated"]


def _progress(stats: Stats) -> None:
    if stats.read == 0:
        return  # still joining the consumer group
    print(
        f"  progress: read {stats.read}, profiles {stats.profiles_uploaded}, events {stats.events_uploaded}, "
        f"deletes {stats.profiles_deleted}, rejected {sum(stats.rejected.values())}, "
        f"dead-lettered {stats.dead_lettered}",
        flush=True,
    )


def _count_dead_letters(bootstrap: str, topic: str, expected: int) -> list[dict[str, str]]:
    consumer = Consumer(
        {"bootstrap.servers": bootstrap, "group.id": f"demo-dlq-reader-{secrets.token_hex(4)}",
         "auto.offset.reset": "earliest", "enable.auto.commit": False, "logger": EMBEDDED_KAFKA_LOG}
    )
    consumer.subscribe([topic])
    letters: list[dict[str, str]] = []
    deadline = time.monotonic() + 15
    try:
        while len(letters) < expected and time.monotonic() < deadline:
            message = consumer.poll(0.5)
            if message is None or message.error():
                continue
            headers: dict[str, str] = {}
            raw: Any = message.headers() or []
            for name, value in raw:
                headers[str(name)] = value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value or "")
            letters.append(headers)
    finally:
        consumer.close()
    return letters


async def run_demo(keep_broker: bool = False) -> int:
    logging.getLogger().setLevel(logging.WARNING)
    EMBEDDED_KAFKA_LOG.setLevel(logging.ERROR)
    print("Starting a local Apache Kafka broker ...", flush=True)
    broker = KafkaBroker()
    await asyncio.to_thread(broker.start)
    standin = ClevertapStandin(StandinConfig(account_id="DEMO-ACCOUNT", passcode=secrets.token_hex(12)))
    try:
        await standin.start()
        print(f"Kafka broker at {broker.bootstrap_servers}; CleverTap stand-in at {standin.base_url}")
        events = load_sample_events()
        schema = load_schema(default_schema_path())
        messages: list[tuple[bytes | None, bytes | None]] = [(event_key(e), encode_plain(schema, e)) for e in events]
        messages += [(b"foreign", payload) for payload in FOREIGN_PAYLOADS]
        await asyncio.to_thread(create_topics, broker.bootstrap_servers, {TOPIC: PARTITIONS})
        await asyncio.to_thread(produce, broker.bootstrap_servers, TOPIC, messages)
        print(f"Produced {len(messages)} messages to {TOPIC} ({PARTITIONS} partitions); processing ...", flush=True)
        settings = load_settings(
            {
                "KAFKA_BOOTSTRAP_SERVERS": broker.bootstrap_servers,
                "KAFKA_TOPICS": TOPIC,
                "KAFKA_GROUP_ID": "clevertap-processor-demo",
                "CLEVERTAP_ACCOUNT_ID": standin.config.account_id,
                "CLEVERTAP_PASSCODE": standin.config.passcode,
                "CLEVERTAP_BASE_URL": standin.base_url,
                "PROCESSOR_COMMIT_INTERVAL_S": "0.5",
                "METRICS_PORT": "0",
            }
        )
        started = time.monotonic()
        result = await run_processor(settings, idle_exit_s=1.5, on_progress=_progress, progress_interval_s=1.0)
        elapsed = time.monotonic() - started
        print(f"\nSummary ({elapsed:.1f}s):")
        for line in result.stats.summary_lines():
            print("  " + line)
        letters = await asyncio.to_thread(
            _count_dead_letters, broker.bootstrap_servers, settings.dlq_topic_for(TOPIC), result.stats.dead_lettered
        )
        print(f"\nDead-letter topic {settings.dlq_topic_for(TOPIC)} holds {len(letters)} records:")
        for headers in letters:
            print(
                f"  {headers.get('x-dlq-source-topic')}[{headers.get('x-dlq-source-partition')}]"
                f"@{headers.get('x-dlq-source-offset')} stage={headers.get('x-dlq-stage')} "
                f"code={headers.get('x-dlq-error-code', '-')}: {headers.get('x-dlq-error-message', '')[:90]}"
            )
        _show_standin(standin)
        return 0 if result.drained else 1
    finally:
        await standin.stop()
        if not keep_broker:
            await asyncio.to_thread(broker.close)


def _show_standin(standin: ClevertapStandin) -> None:
    uploads = [r for r in standin.requests if r.path == "/1/upload"]
    deletes = [r for r in standin.requests if r.path != "/1/upload"]
    print(
        f"\nCleverTap stand-in received {len(uploads)} upload requests and {len(deletes)} delete requests; "
        f"it now holds {len(standin.profiles)} profiles and {len(standin.events)} events, "
        f"deleted {len(standin.deleted)} profiles."
    )
    if standin.profiles:
        identity, profile = sorted(standin.profiles.items())[0]
        shown: dict[str, Any] = dict(profile)
        print(f"  profile {identity}: {shown}")
    if standin.events:
        print(f"  first event: {standin.events[0]}")
    charged = [event for event in standin.events if event.get("evtName") == "Charged"]
    if charged:
        print(f"  first Charged event: {charged[0]}")
