"""The Kafka edge: the only module that talks to confluent-kafka's consumer.

librdkafka calls block, so every consumer call runs on one dedicated thread (calls are serialised, the event loop
never waits on a poll). Rebalance callbacks fire on that thread inside ``consume()``; they hand the work to the
event loop and wait for its answer, so the pipeline decides what to commit before partitions move away.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import time
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, TopicPartition

from processor.kafka.offsets import TopicPartition as TP

log = logging.getLogger(__name__)

_ERROR_LOG_INTERVAL_S = 10.0

# The pipeline's answers to partition movements; revoke returns the offsets to commit for those partitions.
AssignHandler = Callable[[list[TP]], Awaitable[None]]
RevokeHandler = Callable[[list[TP], bool], Awaitable[dict[TP, int]]]


class FatalKafkaError(Exception):
    """librdkafka reported an error it cannot recover from (e.g. a fenced or misconfigured client)."""


class KafkaSource:
    def __init__(
        self,
        config: dict[str, Any],
        topics: Iterable[str],
        *,
        on_assign: AssignHandler,
        on_revoke: RevokeHandler,
    ) -> None:
        self._config = dict(config)
        self._config["error_cb"] = self._error_cb
        self._config["logger"] = logging.getLogger("processor.librdkafka")
        self._topics = list(topics)
        self._on_assign = on_assign
        self._on_revoke = on_revoke
        self._executor = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="kafka-consumer")
        self._loop: asyncio.AbstractEventLoop | None = None
        self._consumer: Consumer | None = None
        self._paused: set[TP] = set()
        self.assigned: set[TP] = set()
        self.fatal: str | None = None
        self._error_seen: dict[str, tuple[float, int]] = {}

    def _error_cb(self, error: KafkaError) -> None:
        if error.fatal():
            self.fatal = str(error)
        text = error.str()
        # While a broker is away librdkafka reports the same error many times a second: log each text at most once
        # per interval, with how often it was repeated meanwhile.
        now = time.monotonic()
        last, repeated = self._error_seen.get(text, (0.0, 0))
        if now - last >= _ERROR_LOG_INTERVAL_S:
            suffix = f" (repeated {repeated} times)" if repeated else ""
            log.warning("kafka: %s%s", text, suffix)
            self._error_seen[text] = (now, 0)
        else:
            self._error_seen[text] = (last, repeated + 1)


    async def _call(self, fn: Callable[..., Any], *args: Any) -> Any:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, fn, *args)

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()

        def create() -> None:
            consumer = Consumer(self._config)
            consumer.subscribe(
                self._topics, on_assign=self._assign_cb, on_revoke=self._revoke_cb, on_lost=self._lost_cb
            )
            self._consumer = consumer

        await self._call(create)

    # Rebalance callbacks: run on the consumer thread, inside consume().
    def _run_on_loop(self, coro: Awaitable[Any]) -> Any:
        assert self._loop is not None
        future: concurrent.futures.Future[Any] = asyncio.run_coroutine_threadsafe(coro, self._loop)  # type: ignore[arg-type]
        return future.result()

    def _assign_cb(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        tps = [(p.topic, p.partition) for p in partitions]
        self.assigned.update(tps)
        log.info("partitions assigned: %s", _fmt(tps))
        self._run_on_loop(self._on_assign(tps))

    def _release(self, consumer: Consumer, partitions: list[TopicPartition], lost: bool) -> None:
        tps = [(p.topic, p.partition) for p in partitions]
        log.info("partitions %s: %s", "lost" if lost else "revoked", _fmt(tps))
        positions: dict[TP, int] = self._run_on_loop(self._on_revoke(tps, lost))
        if positions and not lost:
            self._commit_now(consumer, positions)
        self.assigned.difference_update(tps)
        self._paused.difference_update(tps)

    def _revoke_cb(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        self._release(consumer, partitions, lost=False)

    def _lost_cb(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        self._release(consumer, partitions, lost=True)

    @staticmethod
    def _commit_now(consumer: Consumer, positions: dict[TP, int]) -> bool:
        offsets = [TopicPartition(t, p, o) for (t, p), o in positions.items()]
        try:
            consumer.commit(offsets=offsets, asynchronous=False)
        except KafkaException as exc:
            log.warning("commit of %s failed: %s", _fmt_positions(positions), exc.args[0])
            return False
        return True

    async def consume(self, max_messages: int, timeout_s: float) -> list[Message]:
        """Up to ``max_messages`` records; partition-level errors are logged, fatal ones raised."""
        consumer = self._consumer
        assert consumer is not None
        messages: list[Message] = await self._call(_consume_available, consumer, max_messages, timeout_s)
        if self.fatal is not None:
            raise FatalKafkaError(self.fatal)
        if not messages or (messages[-1].error() is None and messages[0].error() is None):
            good = messages
        else:
            good = []
            for message in messages:
                error = message.error()
                if error is None:
                    good.append(message)
                elif error.code() != KafkaError._PARTITION_EOF:
                    if error.fatal():
                        raise FatalKafkaError(error.str())
                    log.warning(
                        "kafka %s[%s]: %s", message.topic(), message.partition(), error.str()
                    )
        return good

    async def commit(self, positions: dict[TP, int]) -> bool:
        """Commit synchronously; False (already logged) when the broker refused, e.g. during a rebalance."""
        consumer = self._consumer
        assert consumer is not None
        # Only partitions still owned: committing for a partition that moved would overwrite the new owner.
        owned = {tp: o for tp, o in positions.items() if tp in self.assigned}
        if not owned:
            return True
        ok: bool = await self._call(self._commit_now, consumer, owned)
        return ok

    async def set_paused(self, wanted: set[TP]) -> None:
        """Pause exactly ``wanted`` among the assigned partitions (paused partitions still keep the group alive)."""
        consumer = self._consumer
        assert consumer is not None
        wanted = wanted & self.assigned
        to_pause = wanted - self._paused
        to_resume = (self._paused - wanted) & self.assigned
        if not to_pause and not to_resume:
            return

        def apply() -> None:
            if to_pause:
                consumer.pause([TopicPartition(t, p) for t, p in to_pause])
            if to_resume:
                consumer.resume([TopicPartition(t, p) for t, p in to_resume])

        await self._call(apply)
        self._paused = (self._paused | to_pause) - to_resume

    async def high_watermarks(self) -> dict[TP, int]:
        """The last high watermark librdkafka saw per assigned partition (no broker round trip)."""
        consumer = self._consumer
        if consumer is None:
            return {}
        assigned = list(self.assigned)

        def read() -> dict[TP, int]:
            marks: dict[TP, int] = {}
            for t, p in assigned:
                try:
                    _, high = consumer.get_watermark_offsets(TopicPartition(t, p), cached=True)
                except KafkaException:
                    continue
                if high is not None and high >= 0:
                    marks[(t, p)] = high
            return marks

        result: dict[TP, int] = await self._call(read)
        return result

    async def close(self) -> None:
        """Leave the group (the revoke callback commits what is done) and release the consumer."""
        consumer = self._consumer
        if consumer is None:
            return
        try:
            await self._call(consumer.close)
        finally:
            self._consumer = None
            self._executor.shutdown(wait=True)


def _consume_available(consumer: Consumer, max_messages: int, timeout_s: float) -> list[Message]:
    """What is there, up to ``max_messages``; waits up to ``timeout_s`` only while nothing is.

    ``consume(n, timeout)`` returns when n records are there or the timeout passed, so at a moderate rate every
    record of a batch waited for the batch to fill (up to 100 ms at the pipeline's poll timeout).
    """
    messages: list[Message] = consumer.consume(max_messages, 0)
    if not messages:
        messages = consumer.consume(1, timeout_s)
        if messages and max_messages > 1:
            messages.extend(consumer.consume(max_messages - 1, 0))
    return messages


def _fmt(tps: Iterable[TP]) -> str:
    return ", ".join(f"{t}[{p}]" for t, p in sorted(tps)) or "none"


def _fmt_positions(positions: dict[TP, int]) -> str:
    return ", ".join(f"{t}[{p}]@{o}" for (t, p), o in sorted(positions.items()))
