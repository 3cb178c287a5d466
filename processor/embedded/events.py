"""Writing user events to Kafka for the demo, the tests and the benchmark: Avro encoding, topics, producing."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import fastavro
from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, NewTopic  # type: ignore[attr-defined]

from processor.settings import default_schema_path

# The demo's and tests' own Kafka clients log here; the demo keeps only errors (a fresh broker's "coordinator load
# in progress" retries are expected).
EMBEDDED_KAFKA_LOG = logging.getLogger("processor.embedded.librdkafka")


def sample_events_path() -> Path:
    return default_schema_path().parent / "examples" / "user_events.jsonl"


def load_sample_events(path: Path | None = None) -> list[dict[str, Any]]:
    lines = (path or sample_events_path()).read_text(encoding="utf-8").splitlines()
    return [json.loads(line) for line in lines if line.strip()]


def complete(event: Mapping[str, Any]) -> dict[str, Any]:
    """Fill the optional fields of the bundled schema so a partial event dict can be written."""
    full: dict[str, Any] = {
        "userId": None, "anonymousId": None, "event": None, "name": None, "groupId": None,
        "previousId": None, "timestamp": None, "traits": {}, "properties": {}, "context": {},
    }
    full.update(event)
    return full


def encode_plain(schema: Any, event: Mapping[str, Any]) -> bytes:
    buffer = io.BytesIO()
    fastavro.schemaless_writer(buffer, schema, complete(event))
    return buffer.getvalue()


def encode_registry(schema: Any, schema_id: int, event: Mapping[str, Any]) -> bytes:
    """Confluent wire format: magic byte 0, 4-byte big-endian schema id, Avro body."""
    return b"\x00" + schema_id.to_bytes(4, "big") + encode_plain(schema, event)


def event_key(event: Mapping[str, Any]) -> bytes | None:
    """Producers key user events by user, so one user's events share a partition (and its order)."""
    user = event.get("userId") or event.get("anonymousId")
    return str(user).encode() if user else None


def create_topics(bootstrap: str, topics: Mapping[str, int], timeout_s: float = 30.0) -> None:
    config: dict[str, Any] = {"bootstrap.servers": bootstrap, "logger": EMBEDDED_KAFKA_LOG}
    admin = AdminClient(config)
    futures = admin.create_topics(
        [NewTopic(name, num_partitions=parts, replication_factor=1) for name, parts in topics.items()],
        operation_timeout=timeout_s,
    )
    for name, future in futures.items():
        try:
            future.result(timeout=timeout_s)
        except Exception as exc:
            if "TOPIC_ALREADY_EXISTS" not in str(exc):
                raise RuntimeError(f"cannot create topic {name}: {exc}") from exc


def produce(
    bootstrap: str,
    topic: str,
    messages: Iterable[tuple[bytes | None, bytes | None]],
    *,
    partition_of: Sequence[int] | None = None,
    headers: Sequence[list[tuple[str, bytes]] | None] | None = None,
    timeout_s: float = 60.0,
) -> int:
    """Produce (key, value) pairs and wait for every acknowledgement; returns how many were written."""
    producer = Producer(
        {"bootstrap.servers": bootstrap, "acks": "all", "linger.ms": 5, "enable.idempotence": True,
         "logger": EMBEDDED_KAFKA_LOG}
    )
    errors: list[str] = []

    def delivered(error: Any, message: Any) -> None:
        if error is not None:
            errors.append(str(error))

    count = 0
    for index, (key, value) in enumerate(messages):
        kwargs: dict[str, Any] = {"key": key, "value": value, "on_delivery": delivered}
        if partition_of is not None:
            kwargs["partition"] = partition_of[index]
        if headers is not None and headers[index]:
            kwargs["headers"] = headers[index]
        while True:
            try:
                producer.produce(topic, **kwargs)
                break
            except BufferError:
                producer.poll(0.1)
        producer.poll(0)
        count += 1
    remaining = producer.flush(timeout_s)
    if remaining or errors:
        raise RuntimeError(f"producing to {topic}: {remaining} unacknowledged, errors: {errors[:3]}")
    return count
