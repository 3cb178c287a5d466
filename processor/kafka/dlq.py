"""The dead-letter edge: writes records that cannot be delivered to a Kafka topic, unchanged, with headers that say
why and where they came from. A record counts as done only once the broker acknowledged its dead letter.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from confluent_kafka import KafkaError, Message, Producer

log = logging.getLogger(__name__)

HEADER_PREFIX = "x-dlq-"


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """A record that could not be delivered, and why."""

    topic: str
    partition: int
    offset: int
    timestamp_ms: int | None
    key: bytes | None
    value: bytes | None
    headers: Sequence[tuple[str, bytes | None]] | None
    stage: str
    error_class: str
    message: str
    code: int | None = None
    attempts: int = 1
    subscription: str | None = None


def dead_letter_headers(letter: DeadLetter) -> list[tuple[str, str | bytes | None]]:
    """The record's own headers first (a schema id header must survive a re-drive), then ours."""
    headers: list[tuple[str, str | bytes | None]] = [
        (name, value if value is not None else b"")
        for name, value in (letter.headers or [])
        if not name.startswith(HEADER_PREFIX)
    ]
    ours: dict[str, object] = {
        "stage": letter.stage,
        "error-class": letter.error_class,
        "error-code": letter.code,
        "error-message": letter.message[:1000],
        "source-topic": letter.topic,
        "source-partition": letter.partition,
        "source-offset": letter.offset,
        "source-timestamp": letter.timestamp_ms,
        "attempts": letter.attempts,
        "subscription": letter.subscription,
    }
    headers.extend(
        (HEADER_PREFIX + name, str(value).encode("utf-8")) for name, value in ours.items() if value is not None
    )
    return headers


class DeadLetterError(Exception):
    """The broker did not acknowledge a dead letter; the record is not done and must be written again."""


class DeadLetterWriter:
    """Produces dead letters with acks=all and idempotence; :meth:`write` resolves once the broker acknowledged."""

    def __init__(self, config: dict[str, Any]) -> None:
        self._producer = Producer({**config, "logger": logging.getLogger("processor.librdkafka")})
        self._stop = threading.Event()
        self._poller = threading.Thread(target=self._poll, name="dlq-producer", daemon=True)
        self._poller.start()
        self.written = 0

    def _poll(self) -> None:
        while not self._stop.is_set():
            self._producer.poll(0.1)

    async def write(self, topic: str, letter: DeadLetter) -> None:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[None] = loop.create_future()

        def delivered(error: KafkaError | None, message: Message) -> None:
            if error is None:
                loop.call_soon_threadsafe(_resolve, future, None)
            else:
                loop.call_soon_threadsafe(_resolve, future, DeadLetterError(f"dead letter to {topic}: {error.str()}"))

        while True:
            try:
                self._producer.produce(
                    topic,
                    value=letter.value,
                    key=letter.key,
                    headers=dead_letter_headers(letter),
                    timestamp=letter.timestamp_ms or 0,
                    on_delivery=delivered,
                )
                break
            except BufferError:
                await asyncio.sleep(0.05)  # the local queue is full: wait for deliveries to drain it
        await future
        self.written += 1

    async def close(self, timeout_s: float = 10.0) -> int:
        """Deliver what is queued (up to ``timeout_s``) and stop; returns how many letters were still queued."""
        remaining: int = await asyncio.get_running_loop().run_in_executor(None, self._producer.flush, timeout_s)
        self._stop.set()
        self._poller.join(timeout=2)
        self._producer.close()
        if remaining:
            log.error("%d dead letters not acknowledged before shutdown; their offsets stay uncommitted", remaining)
        return remaining


def _resolve(future: asyncio.Future[None], error: Exception | None) -> None:
    if future.done():
        return
    if error is None:
        future.set_result(None)
    else:
        future.set_exception(error)
