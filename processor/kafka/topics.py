"""Start-up check of the dead-letter topics: a dead letter that cannot be written blocks its partition, so a
missing topic is found (and created, when allowed) before any record is consumed."""

from __future__ import annotations

import logging
from typing import Any

from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient, NewTopic  # type: ignore[attr-defined]

from processor.errors import ConfigError
from processor.settings import Settings

log = logging.getLogger(__name__)


def ensure_dead_letter_topics(settings: Settings, timeout_s: float = 15.0) -> None:
    """Raise :class:`ConfigError` naming ``KAFKA_DLQ_TOPIC`` when a dead-letter topic is missing and cannot be made."""
    config: dict[str, Any] = {**settings.admin_config(), "logger": logging.getLogger("processor.librdkafka")}
    admin = AdminClient(config)
    try:
        metadata = admin.list_topics(timeout=timeout_s)
    except KafkaException as exc:
        raise ConfigError("KAFKA_BOOTSTRAP_SERVERS", f"cannot reach the Kafka cluster: {exc.args[0]}") from exc
    wanted: dict[str, int] = {}
    for source in settings.kafka_topics:
        target = settings.dlq_topic_for(source)
        if target in metadata.topics:
            continue
        partitions = len(metadata.topics[source].partitions) if source in metadata.topics else 1
        wanted[target] = max(wanted.get(target, 1), partitions)
    if not wanted:
        return
    if not settings.dlq_create:
        raise ConfigError(
            "KAFKA_DLQ_TOPIC",
            f"dead-letter topic(s) {', '.join(sorted(wanted))} do not exist "
            "(create them, or set KAFKA_DLQ_CREATE=true)",
        )
    futures = admin.create_topics(
        [NewTopic(name, num_partitions=count, replication_factor=-1) for name, count in wanted.items()],
        operation_timeout=timeout_s,
    )
    for name, future in futures.items():
        try:
            future.result(timeout=timeout_s)
            log.info("created dead-letter topic %s (%d partitions)", name, wanted[name])
        except Exception as exc:
            if "TOPIC_ALREADY_EXISTS" in str(exc):
                continue
            raise ConfigError(
                "KAFKA_DLQ_TOPIC", f"dead-letter topic {name} does not exist and could not be created: {exc}"
            ) from exc
