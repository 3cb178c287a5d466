"""Batched, concurrent delivery to CleverTap that keeps each user's operations in partition order.

Operations are spread over ``lanes`` by user: a user always lands in the same lane, and a lane sends one request
at a time, in queue order, retrying it until it is settled before taking the next. So different users travel
concurrently (one request per lane in flight), while one user's upload never overtakes their delete, and a
retried record is never overtaken by that user's later records. A lane's next batch is everything queued meanwhile
(same endpoint, up to the batch size), so batches grow by themselves when CleverTap is slow.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from processor.clevertap.payloads import UploadOutcome
from processor.errors import (
    BadRequestError,
    CredentialsError,
    RecordError,
    RejectedByClevertap,
    RetriableRequestError,
)
from processor.subscriptions import Action, Operation

log = logging.getLogger(__name__)


class Client(Protocol):
    async def upload(self, records: Sequence[dict[str, Any]]) -> UploadOutcome: ...

    async def delete(self, id_key: str, values: Sequence[str]) -> None: ...


@dataclass(slots=True, eq=False)
class Work:
    """One operation on its way to CleverTap; ``origin`` is whatever the caller needs to finish the record."""

    operation: Operation
    origin: Any
    attempts: int = 0
    settled: bool = False  # accepted or rejected: reported once, never sent again
    abandoned: bool = False  # its partition moved to another consumer: this one does not send it (again)


class Delivery(Protocol):
    """What the dispatcher reports. Calls happen on the event loop."""

    def accepted(self, works: Sequence[Work]) -> None: ...

    def rejected(self, work: Work, error: RecordError) -> None: ...

    def retrying(self, works: Sequence[Work], error: Exception, delay_s: float) -> None: ...

    def credentials_changed(self, accepted: bool, message: str) -> None: ...


def backoff_delay(attempt: int, initial_s: float, cap_s: float, rng: random.Random) -> float:
    """Full-jitter exponential backoff: uniform in [0, min(cap, initial * 2**(attempt-1))]."""
    ceiling = min(cap_s, initial_s * (2 ** min(attempt - 1, 30)))
    return rng.uniform(0, ceiling)


@dataclass(frozen=True)
class DispatchConfig:
    lanes: int = 10
    upload_batch: int = 1000
    delete_batch: int = 100
    retry_initial_s: float = 0.5
    retry_max_s: float = 30.0
    credentials_retry_s: float = 30.0


# How many queued works one batch may step over (other users' deletes, a user's later records): bounds the
# re-scan cost when one user or one endpoint dominates a lane.
_HELD_LIMIT = 256


def _endpoint(work: Work) -> str:
    """Works that can share one request have the same endpoint key."""
    operation = work.operation
    if operation.action is Action.DELETE_PROFILE:
        return "delete:" + next(iter(operation.record))
    return "upload"


class _Lane:
    __slots__ = ("queue", "sending", "task", "wake")

    def __init__(self) -> None:
        self.queue: deque[Work] = deque()
        self.wake = asyncio.Event()
        self.sending: list[Work] = []
        self.task: asyncio.Task[None] | None = None


class Dispatcher:
    def __init__(
        self,
        client: Client,
        delivery: Delivery,
        config: DispatchConfig,
        *,
        rng: random.Random | None = None,
        sleep: Callable[[float], Any] = asyncio.sleep,
    ) -> None:
        self._client = client
        self._delivery = delivery
        self._config = config
        self._rng = rng or random.Random()
        self._sleep = sleep
        self._lanes = [_Lane() for _ in range(config.lanes)]
        self._credentials_ok = asyncio.Event()
        self._credentials_ok.set()
        self._closing = False

    @property
    def credentials_ok(self) -> bool:
        return self._credentials_ok.is_set()

    def start(self) -> None:
        for lane in self._lanes:
            lane.task = asyncio.create_task(self._run_lane(lane))

    def submit(self, work: Work) -> None:
        lane = self._lanes[hash(work.operation.user) % len(self._lanes)]
        lane.queue.append(work)
        lane.wake.set()

    @property
    def queued(self) -> int:
        return sum(len(lane.queue) + len(lane.sending) for lane in self._lanes)

    def drop(self, belongs: Callable[[Work], bool]) -> int:
        """Forget queued (not yet sent) works for which ``belongs`` is true; returns how many."""
        dropped = 0
        for lane in self._lanes:
            kept = deque(w for w in lane.queue if not belongs(w))
            dropped += len(lane.queue) - len(kept)
            lane.queue = kept
        return dropped

    def sending(self, belongs: Callable[[Work], bool]) -> int:
        return sum(1 for lane in self._lanes for w in lane.sending if belongs(w))

    def abandon(self, belongs: Callable[[Work], bool]) -> int:
        """Stop retrying in-flight works for which ``belongs`` is true; returns how many.

        A request already on the wire completes, but an abandoned work is never sent again: once its partition
        belongs to another consumer, a late retry would land after that consumer's newer records of the same user
        (an upload after their delete).
        """
        abandoned = 0
        for lane in self._lanes:
            for work in lane.sending:
                if not work.settled and not work.abandoned and belongs(work):
                    work.abandoned = True
                    abandoned += 1
        return abandoned

    async def drain(self, timeout_s: float) -> bool:
        """Send what is queued, then stop the lanes. False when ``timeout_s`` passed first (lanes cancelled)."""
        self._closing = True
        for lane in self._lanes:
            lane.wake.set()
        tasks = [lane.task for lane in self._lanes if lane.task is not None]
        if not tasks:
            return True
        _, unfinished = await asyncio.wait(tasks, timeout=timeout_s)
        for task in unfinished:
            task.cancel()
        if unfinished:
            await asyncio.gather(*unfinished, return_exceptions=True)
        return not unfinished

    async def _run_lane(self, lane: _Lane) -> None:
        while True:
            while not lane.queue:
                if self._closing:
                    return
                lane.wake.clear()
                await lane.wake.wait()
            batch = self._take(lane.queue)
            lane.sending = batch
            try:
                await self._send(batch)
            except asyncio.CancelledError:
                raise
            except Exception:  # a bug must not silently stop a lane: its records would never complete
                log.exception("unexpected error while sending a batch; retrying what is not settled")
                lane.queue.extendleft(reversed([work for work in batch if not work.settled and not work.abandoned]))
                await self._sleep(self._config.retry_initial_s)
            finally:
                lane.sending = []

    def _take(self, queue: deque[Work]) -> list[Work]:
        """The next request: queued works for the endpoint of the queue's head, at most one per user.

        A work is taken only when nothing of its user is ahead of it (in this request or still queued), so each
        user's operations reach CleverTap in queue order. Works of other endpoints (a delete among uploads) are
        stepped over and stay queued, in order, blocking only their own user; a rare delete therefore does not
        cut a stream of uploads into small requests. One record per user per request keeps the order even when
        CleverTap asks to retry a single record (code 555).
        """
        endpoint = _endpoint(queue[0])
        limit = self._config.upload_batch if endpoint == "upload" else self._config.delete_batch
        batch: list[Work] = []
        blocked: set[str] = set()  # users with a work in this batch or one stepped over
        held: list[Work] = []
        while queue and len(batch) < limit and len(held) < _HELD_LIMIT:
            work = queue.popleft()
            user = work.operation.user
            if user in blocked or _endpoint(work) != endpoint:
                held.append(work)
            else:
                batch.append(work)
            blocked.add(user)
        if held:
            queue.extendleft(reversed(held))
        return batch

    async def _send(self, batch: list[Work]) -> None:
        """Settle every work of ``batch``: accepted, rejected, or (after retries) one of those."""
        pending = batch
        attempt = 0
        probing = False  # this lane saw the credentials fail: it keeps trying them while the others wait
        while pending:
            if not probing:
                await self._credentials_ok.wait()
            pending = [work for work in pending if not work.abandoned]
            if not pending:
                return
            for work in pending:
                work.attempts += 1
            try:
                if _endpoint(pending[0]) == "upload":
                    outcome = await self._client.upload([w.operation.record for w in pending])
                else:
                    id_key = next(iter(pending[0].operation.record))
                    await self._client.delete(id_key, [w.operation.record[id_key] for w in pending])
                    outcome = UploadOutcome("success", len(pending))
            except RetriableRequestError as exc:
                attempt += 1
                delay = backoff_delay(attempt, self._config.retry_initial_s, self._config.retry_max_s, self._rng)
                if exc.retry_after is not None:
                    delay = max(delay, min(exc.retry_after, self._config.retry_max_s * 4))
                self._delivery.retrying(pending, exc, delay)
                await self._sleep(delay)
                continue
            except CredentialsError as exc:
                probing = True
                await self._credentials_failed(exc)
                continue
            except BadRequestError as exc:
                self._credentials_accepted()
                if len(pending) == 1:
                    self._reject(pending[0], RejectedByClevertap(str(exc), code=exc.status))
                    return
                await self._split(pending)
                return
            self._credentials_accepted()
            if outcome.ambiguous:
                if len(pending) == 1:
                    self._reject(
                        pending[0], RejectedByClevertap(f"CleverTap did not store the record (status {outcome.status})")
                    )
                    return
                await self._split(pending)
                return
            pending = self._settle(pending, outcome)
            if pending:
                attempt += 1
                delay = backoff_delay(attempt, self._config.retry_initial_s, self._config.retry_max_s, self._rng)
                self._delivery.retrying(pending, RetriableRequestError("per-record code 555"), delay)
                await self._sleep(delay)

    def _settle(self, pending: list[Work], outcome: UploadOutcome) -> list[Work]:
        if not outcome.failures:  # the usual answer: everything stored, one call for the whole request
            for work in pending:
                work.settled = True
            self._delivery.accepted(pending)
            return []
        failures = {f.index: f for f in outcome.failures}
        accepted: list[Work] = []
        retry: list[Work] = []
        for index, work in enumerate(pending):
            failure = failures.get(index)
            if failure is None:
                accepted.append(work)
            elif failure.retriable:
                retry.append(work)
            else:
                self._reject(work, RejectedByClevertap(failure.error, code=failure.code))
        if accepted:
            for work in accepted:
                work.settled = True
            self._delivery.accepted(accepted)
        return retry

    def _reject(self, work: Work, error: RecordError) -> None:
        work.settled = True
        self._delivery.rejected(work, error)

    async def _split(self, pending: list[Work]) -> None:
        # Halves go in order, one after the other, so per-user order holds while the bad record is isolated.
        middle = len(pending) // 2
        await self._send(pending[:middle])
        await self._send(pending[middle:])

    async def _credentials_failed(self, exc: CredentialsError) -> None:
        if self._credentials_ok.is_set():
            self._credentials_ok.clear()
            self._delivery.credentials_changed(False, str(exc))
        await self._sleep(self._config.credentials_retry_s)

    def _credentials_accepted(self) -> None:
        if not self._credentials_ok.is_set():
            self._credentials_ok.set()
            self._delivery.credentials_changed(True, "CleverTap accepts the credentials again")
