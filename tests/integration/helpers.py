"""Shared pieces of the integration tests: topics, producing Avro events, reading the group's offsets and the DLQ."""

from __future__ import annotations

import calendar
import time
import uuid
from typing import Any

from confluent_kafka import Consumer, TopicPartition

from processor.decode import load_schema
from processor.settings import Settings, default_schema_path, load_settings

SCHEMA = load_schema(default_schema_path())
BASE_TS = calendar.timegm((2024, 3, 1, 0, 0, 0))


def iso(seconds: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(seconds))


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def processor_settings(bootstrap: str, topic: str, group: str, base_url: str, passcode: str, **extra: str) -> Settings:
    env = {
        "KAFKA_BOOTSTRAP_SERVERS": bootstrap,
        "KAFKA_TOPICS": topic,
        "KAFKA_GROUP_ID": group,
        "CLEVERTAP_ACCOUNT_ID": "TEST-ACCOUNT",
        "CLEVERTAP_PASSCODE": passcode,
        "CLEVERTAP_BASE_URL": base_url,
        "PROCESSOR_COMMIT_INTERVAL_S": "0.2",
        "PROCESSOR_RETRY_INITIAL_S": "0.05",
        "PROCESSOR_RETRY_MAX_S": "0.5",
        "KAFKA_CONFIG_SESSION_TIMEOUT_MS": "10000",
        "KAFKA_CONFIG_HEARTBEAT_INTERVAL_MS": "1000",
        "METRICS_PORT": "0",
    }
    env.update(extra)
    return load_settings(env)


def committed_and_end_offsets(bootstrap: str, topic: str, group: str, partitions: int) -> tuple[list[int], list[int]]:
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group, "enable.auto.commit": False})
    try:
        tps = [TopicPartition(topic, p) for p in range(partitions)]
        committed = [tp.offset for tp in consumer.committed(tps, timeout=10)]
        ends = [consumer.get_watermark_offsets(tp, timeout=10)[1] for tp in tps]
    finally:
        consumer.close()
    return committed, ends


def read_all(bootstrap: str, topic: str, expected: int, timeout_s: float = 20.0) -> list[Any]:
    """Every message of ``topic`` (waits until ``expected`` arrived or the timeout passed)."""
    consumer = Consumer(
        {"bootstrap.servers": bootstrap, "group.id": unique("reader"), "auto.offset.reset": "earliest",
         "enable.auto.commit": False}
    )
    consumer.subscribe([topic])
    messages: list[Any] = []
    deadline = time.monotonic() + timeout_s
    try:
        while time.monotonic() < deadline and len(messages) < expected:
            message = consumer.poll(0.3)
            if message is not None and message.error() is None:
                messages.append(message)
        # Anything beyond what was expected is a defect too: look a little longer.
        extra_deadline = time.monotonic() + 1.0
        while time.monotonic() < extra_deadline:
            message = consumer.poll(0.2)
            if message is not None and message.error() is None:
                messages.append(message)
    finally:
        consumer.close()
    return messages


def headers_of(message: Any) -> dict[str, str]:
    out: dict[str, str] = {}
    for name, value in message.headers() or []:
        out[name] = value.decode() if isinstance(value, bytes) else str(value)
    return out
