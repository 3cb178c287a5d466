"""The loop that wires the stages: Kafka → decode → route → dispatch → done → commit.

A record is done when CleverTap accepted every operation made from it, when nothing was to be done for it, or
when its dead letter was acknowledged by the broker. Only done records count toward a partition's commit.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from processor.breaker import FailureBreaker
from processor.decode import Headers, RegistryDecoder
from processor.dispatch import DispatchConfig, Dispatcher, Work
from processor.errors import DecodeError, RecordError, RejectedByClevertap, SchemaRegistryUnavailable
from processor.kafka.dlq import DeadLetter, DeadLetterError
from processor.kafka.offsets import OffsetTracker, PartitionOffsets, TopicPartition
from processor.settings import Settings
from processor.stats import Stats
from processor.subscriptions import Action, Subscription, route

log = logging.getLogger(__name__)


class Decoder(Protocol):
    def decode(self, value: bytes | None, headers: Headers = None) -> dict[str, Any]: ...


class Source(Protocol):
    assigned: set[TopicPartition]

    async def start(self) -> None: ...

    async def consume(self, max_messages: int, timeout_s: float) -> list[Any]: ...

    async def commit(self, positions: dict[TopicPartition, int]) -> bool: ...

    async def set_paused(self, wanted: set[TopicPartition]) -> None: ...

    async def high_watermarks(self) -> dict[TopicPartition, int]: ...

    async def close(self) -> None: ...


class DeadLetterSink(Protocol):
    async def write(self, topic: str, letter: DeadLetter) -> None: ...


class RegistryFetcher(Protocol):
    async def fetch_into(self, decoder: RegistryDecoder, refs: Any) -> None: ...


@dataclass(slots=True, eq=False)
class Origin:
    """A Kafka record on its way through the pipeline; ``pending`` operations remain before it is done."""

    tp: TopicPartition
    offset: int
    state: PartitionOffsets
    key: bytes | None
    value: bytes | None
    headers: Headers
    timestamp_ms: int | None
    pending: int



class Pipeline:
    def __init__(
        self,
        settings: Settings,
        subscriptions: Sequence[Subscription],
        decoder: Decoder,
        client: Any,
        dead_letters: DeadLetterSink,
        make_source: Callable[..., Source],
        *,
        registry: RegistryFetcher | None = None,
        stats: Stats | None = None,
    ) -> None:
        self.settings = settings
        self.subscriptions = list(subscriptions)
        self.decoder = decoder
        self.registry = registry
        self.dead_letters = dead_letters
        self.stats = stats or Stats()
        self.tracker = OffsetTracker()
        self.dispatcher = Dispatcher(
            client,
            self,
            DispatchConfig(
                lanes=settings.max_concurrency,
                upload_batch=settings.upload_batch_size,
                delete_batch=settings.delete_batch_size,
                retry_initial_s=settings.retry_initial_s,
                retry_max_s=settings.retry_max_s,
                credentials_retry_s=settings.credentials_retry_s,
            ),
        )
        self.source = make_source(on_assign=self._assigned, on_revoke=self._revoked)
        self._letters: set[asyncio.Task[None]] = set()
        self.last_progress = time.monotonic()  # for liveness: the loop went round recently
        self.credentials_message: str | None = None
        self.draining = False
        self._assigned_at = 0.0
        # Two windows, each comparing outcomes known at the same moment: records read (decoded and routed, or
        # not) and CleverTap's answers (accepted or refused). One window mixing both saw read-time failures at once
        # but successes only when CleverTap answered, so a little garbage at start-up looked like a storm.
        self.breaker = FailureBreaker(
            settings.breaker_window, settings.breaker_threshold, settings.breaker_min_records
        )
        self.input_breaker = FailureBreaker(
            settings.breaker_window, settings.breaker_threshold, settings.breaker_min_records
        )
        self.breaker_message: str | None = None
        self._stop: asyncio.Event | None = None
        self.high_watermarks: dict[TopicPartition, int] = {}

    # --- Delivery callbacks (from the dispatcher, on the loop) -------------------------------------------------
    def accepted(self, works: Sequence[Work]) -> None:
        # Called once per request with up to 1000 works: count per action once, finish origins inline.
        profiles = deletes = 0
        for work in works:
            action = work.operation.action
            if action is Action.UPLOAD_PROFILE:
                profiles += 1
            elif action is Action.DELETE_PROFILE:
                deletes += 1
            origin = work.origin
            origin.pending -= 1
            if origin.pending == 0:
                origin.state.done(origin.offset)
        stats = self.stats
        stats.profiles_uploaded += profiles
        stats.profiles_deleted += deletes
        stats.events_uploaded += len(works) - profiles - deletes
        self.breaker.success(len(works))

    def rejected(self, work: Work, error: RecordError) -> None:
        origin: Origin = work.origin
        self.stats.rejected[error.code or 0] += 1
        log.warning(
            "%s[%d]@%d rejected by CleverTap (%s, code %s): %s",
            origin.tp[0], origin.tp[1], origin.offset, work.operation.subscription, error.code, error.message,
        )
        self._dead_letter(origin, error, attempts=work.attempts, subscription=work.operation.subscription)

    def retrying(self, works: Sequence[Work], error: Exception, delay_s: float) -> None:
        self.stats.retried += len(works)
        log.info("retrying %d records in %.2fs: %s", len(works), delay_s, error)

    def credentials_changed(self, accepted: bool, message: str) -> None:
        if accepted:
            self.credentials_message = None
            log.warning("CleverTap credentials accepted again; consumption resumes")
        else:
            self.credentials_message = message
            log.error(
                "CleverTap refuses the credentials (%s). Consumption is paused for every partition and nothing is "
                "dead-lettered; check CLEVERTAP_ACCOUNT_ID / CLEVERTAP_PASSCODE / CLEVERTAP_REGION. Retrying every "
                "%.0fs.", message, self.settings.credentials_retry_s,
            )

    # --- Record completion ----------------------------------------------------------------------------------------
    def _operation_done(self, origin: Origin) -> None:
        origin.pending -= 1
        if origin.pending == 0:
            origin.state.done(origin.offset)

    def _dead_letter(
        self, origin: Origin, error: RecordError, *, attempts: int = 1, subscription: str | None = None
    ) -> None:
        signature = (error.stage, type(error).__name__, error.code)
        breaker = self.breaker if isinstance(error, RejectedByClevertap) else self.input_breaker
        if breaker.failure(signature) and self.breaker_message is None:
            self.breaker_message = (
                f"stopping: {breaker.share(signature):.0%} of the last {breaker.seen} records failed the "
                f"same way (stage {error.stage}, {type(error).__name__}, code {error.code}): {error.message}. "
                "Fix the cause, then start the processor again; it resumes from the last committed offset "
                "(PROCESSOR_BREAKER_THRESHOLD sets the share that stops it)"
            )
            log.critical("%s", self.breaker_message)
            if self._stop is not None:
                self._stop.set()
        letter = DeadLetter(
            topic=origin.tp[0],
            partition=origin.tp[1],
            offset=origin.offset,
            timestamp_ms=origin.timestamp_ms,
            key=origin.key,
            value=origin.value,
            headers=origin.headers,
            stage=error.stage,
            error_class=type(error).__name__,
            message=error.message,
            code=error.code,
            attempts=attempts,
            subscription=subscription,
        )
        task = asyncio.create_task(self._write_dead_letter(origin, letter))
        self._letters.add(task)
        task.add_done_callback(self._letters.discard)

    async def _write_dead_letter(self, origin: Origin, letter: DeadLetter) -> None:
        topic = self.settings.dlq_topic_for(origin.tp[0])
        attempt = 0
        while True:
            try:
                await self.dead_letters.write(topic, letter)
                break
            except DeadLetterError as exc:
                # Never drop it: the record stays not-done (its partition cannot commit past it) until written.
                attempt += 1
                log.error("could not write dead letter for %s[%d]@%d: %s", *origin.tp, origin.offset, exc)
                await asyncio.sleep(min(30.0, 0.5 * 2**attempt))
        self.stats.dead_lettered += 1
        self._operation_done(origin)

    # --- Rebalance ------------------------------------------------------------------------------------------------
    async def _assigned(self, partitions: list[TopicPartition]) -> None:
        self.tracker.assign(partitions)
        self._assigned_at = time.monotonic()

    async def _revoked(self, partitions: list[TopicPartition], lost: bool) -> dict[TopicPartition, int]:
        gone = set(partitions)

        def belongs(work: Work) -> bool:
            return bool(work.origin.tp in gone)

        dropped = self.dispatcher.drop(belongs)
        positions: dict[TopicPartition, int] = {}
        if not lost:
            # Let requests already on the wire finish (briefly) so their records are committed, not sent twice.
            deadline = time.monotonic() + min(5.0, self.settings.drain_timeout_s)
            while self.dispatcher.sending(belongs) and time.monotonic() < deadline:
                await asyncio.sleep(0.02)
            positions = self.tracker.committable(partitions)
            self.stats.committed.update(positions)
        # What is still being retried now belongs to the next owner, which reads it again from the committed offset;
        # sending it from here too would land it after that owner's newer records of the same user.
        abandoned = self.dispatcher.abandon(belongs)
        if abandoned:
            log.info("stopped retrying %d operations of released partitions (the new owner sends them)", abandoned)
        self.tracker.revoke(partitions)
        if dropped:
            log.info("dropped %d queued operations of released partitions (the new owner sends them)", dropped)
        return positions

    # --- Main loop --------------------------------------------------------------------------------------------
    def _handle(self, message: Any) -> None:
        tp = (message.topic(), message.partition())
        offset = message.offset()
        try:
            state = self.tracker.track(tp, offset)
        except ValueError:
            # librdkafka handed out an offset this assignment already read: it is being handled, skip the copy.
            log.warning("%s[%d]@%d read twice in one assignment; the copy is skipped", tp[0], tp[1], offset)
            return
        value = message.value()
        headers = message.headers()
        try:
            event = self.decoder.decode(value, headers)
            result = route(event, self.subscriptions, collect_errors=True)
        except RecordError as exc:
            if isinstance(exc, DecodeError):
                self.stats.decode_errors += 1
            log.warning("%s[%d]@%d %s error: %s", tp[0], tp[1], offset, exc.stage, exc.message)
            self._dead_letter(self._origin(message, tp, offset, state, value, headers, 1), exc)
            return
        self.stats.decoded += 1
        if result.timestamp_warnings:
            self.stats.timestamp_warnings += result.timestamp_warnings
        operations = result.operations
        failures = result.errors
        if not operations and not failures:
            self.stats.skipped[result.skipped_reason or "no subscription matched"] += 1
            self.input_breaker.success()
            state.done(offset)
            return
        origin = self._origin(message, tp, offset, state, value, headers, len(operations) + len(failures))
        if not failures:
            self.input_breaker.success()
        for failure in failures:
            # Refused before sending (the code is the one CleverTap would give): the other subscriptions of the
            # event still deliver; this one goes to the dead-letter topic, naming the subscription.
            error = failure.error
            self.stats.rejected[error.code or 0] += 1
            log.warning(
                "%s[%d]@%d %s error (%s, code %s): %s",
                tp[0], tp[1], offset, error.stage, failure.subscription, error.code, error.message,
            )
            self._dead_letter(origin, error, subscription=failure.subscription)
        for operation in operations:
            self.stats.operations[operation.action.value] += 1
            self.dispatcher.submit(Work(operation, origin))

    @staticmethod
    def _origin(
        message: Any, tp: TopicPartition, offset: int, state: PartitionOffsets, value: bytes | None,
        headers: Headers, pending: int,
    ) -> Origin:
        kind, timestamp = message.timestamp()
        return Origin(tp, offset, state, message.key(), value, headers, timestamp if kind else None, pending)

    async def _resolve_schemas(self, messages: list[Any]) -> None:
        """Fetch the registry schemas a batch needs; while the registry is away, keep the group alive (paused)."""
        if self.registry is None or not isinstance(self.decoder, RegistryDecoder):
            return
        attempt = 0
        while True:
            refs = self.decoder.unknown_refs([(m.value(), m.headers()) for m in messages])
            if not refs:
                return
            try:
                await self.registry.fetch_into(self.decoder, refs)
                return
            except SchemaRegistryUnavailable as exc:
                attempt += 1
                delay = min(30.0, 0.5 * 2**attempt)
                log.error("%s; retrying in %.1fs (consumption paused)", exc, delay)
                await self.source.set_paused(set(self.source.assigned))
                # Keep polling (paused) so the group does not evict this consumer while the registry is away;
                # anything that still arrives joins the batch rather than being dropped.
                late = await self.source.consume(self.settings.poll_batch_size, delay)
                if late:
                    self.stats.read += len(late)
                    messages.extend(late)

    async def _apply_backpressure(self) -> bool:
        """Pause what must wait. True when every partition waits only for records in flight to complete."""
        assigned = self.source.assigned
        # The cap counts every record a crash would make the next run send again: those in flight and those done
        # since the last commit. Reaching it commits at once rather than at the next interval, so only a commit
        # that fails (the broker away) keeps the partitions paused.
        if self.tracker.uncommitted >= self.settings.max_in_flight and self.tracker.committable():
            await self.commit()
        waiting = not self.dispatcher.credentials_ok or self.draining
        if waiting or self.tracker.uncommitted >= self.settings.max_in_flight:
            wanted = set(assigned)
        else:
            cap = self.settings.max_in_flight_per_partition
            wanted = {tp for tp, n in self.tracker.partition_in_flight().items() if n >= cap}
        await self.source.set_paused(wanted)
        return not waiting and bool(assigned) and wanted >= assigned

    def lag(self) -> dict[TopicPartition, int]:
        """Records not yet committed per partition, from the last known high watermarks."""
        committed = self.stats.committed
        return {
            tp: max(0, high - committed[tp]) for tp, high in self.high_watermarks.items() if tp in committed
        }

    async def commit(self) -> None:
        positions = self.tracker.committable()
        if positions and await self.source.commit(positions):
            self.tracker.committed(positions)
            self.stats.committed.update(positions)

    async def run(
        self,
        stop: asyncio.Event,
        *,
        idle_exit_s: float | None = None,
        on_progress: Callable[[Stats], None] | None = None,
        progress_interval_s: float = 5.0,
    ) -> bool:
        """Consume until ``stop`` is set (or, with ``idle_exit_s``, until nothing arrived for that long and every
        record read is done and committed). Returns True when the drain finished within its deadline."""
        self._stop = stop
        await self.source.start()
        self.dispatcher.start()
        settings = self.settings
        last_commit = last_progress = idle_since = time.monotonic()
        try:
            while not stop.is_set():
                throttled = await self._apply_backpressure()
                # Everything paused for backpressure: poll briefly, so reading resumes as soon as lanes free room
                # (a 0.1 s poll on paused partitions left the loop idle while lanes had already drained).
                room = max(1, settings.max_in_flight - self.tracker.uncommitted)
                messages = await self.source.consume(min(settings.poll_batch_size, room), 0.01 if throttled else 0.1)
                now = time.monotonic()
                self.last_progress = now
                if messages:
                    self.stats.read += len(messages)
                    await self._resolve_schemas(messages)
                    for message in messages:
                        if self.breaker_message is not None:
                            break  # the rest stays untracked: not committed, read again after the fix
                        self._handle(message)
                    idle_since = now
                if now - last_commit >= settings.commit_interval_s:
                    await self.commit()
                    last_commit = now
                if now - last_progress >= progress_interval_s:
                    self.high_watermarks = await self.source.high_watermarks()
                    if on_progress is not None:
                        on_progress(self.stats)
                    last_progress = now
                if (
                    idle_exit_s is not None
                    and self.source.assigned
                    and self.tracker.in_flight == 0
                    and not self._letters
                ):
                    if self.tracker.committable():
                        await self.commit()
                        last_commit = now
                    elif now - max(idle_since, self._assigned_at) >= idle_exit_s:
                        break
        finally:
            drained = await self.shutdown()
        return drained

    async def shutdown(self) -> bool:
        """Stop fetching, finish what is in flight (up to the drain deadline), commit, close."""
        self.draining = True
        deadline = time.monotonic() + self.settings.drain_timeout_s
        try:
            await self._apply_backpressure()
        except Exception as exc:  # the consumer may be gone (fatal error); draining must still happen
            log.warning("could not pause partitions for the drain: %s", exc)
        drained = await self.dispatcher.drain(max(0.0, deadline - time.monotonic()))
        if self._letters:
            _, unfinished = await asyncio.wait(set(self._letters), timeout=max(0.1, deadline - time.monotonic()))
            for task in unfinished:
                task.cancel()
            drained = drained and not unfinished
        if not drained:
            log.error("drain deadline passed with records in flight; they stay uncommitted and will be re-read")
        try:
            await self.commit()
        except Exception as exc:
            log.warning("final commit failed: %s", exc)
        await self.source.close()
        return drained
