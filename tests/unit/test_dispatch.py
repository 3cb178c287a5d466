"""Tests for processor.dispatch: batching, per-user order, retries, bisection, credentials, drop and drain.

No network, no real sleeping: the client is an in-test fake that records every request and answers from a
script, ``sleep`` is injected (it records the delays and only yields to the event loop, or waits on a gate the
test opens), and the jitter comes from a seeded ``random.Random``. Expected jitter values are computed here
from the documented full-jitter rule, uniform(0, min(cap, initial * 2**(attempt-1))), with a second Random of
the same seed.
"""

from __future__ import annotations

import asyncio
import copy
import inspect
import itertools
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import pytest

from processor.clevertap.payloads import RecordFailure, UploadOutcome
from processor.dispatch import DispatchConfig, Dispatcher, Work, backoff_delay
from processor.errors import (
    BadRequestError,
    CredentialsError,
    RecordError,
    RetriableRequestError,
)
from processor.subscriptions import Action, Operation

SEED = 1234
INITIAL = 0.5
CAP = 30.0
CREDENTIALS_RETRY = 30.0
BAD_CREDENTIALS = "CleverTap /1/upload answered HTTP 401: Account ID is not valid"


# ------------------------------------------------------------------------------------------------
# Fakes
# ------------------------------------------------------------------------------------------------


@dataclass
class Call:
    index: int
    kind: str  # "upload" or "delete"
    id_key: str | None
    payload: list[Any]  # upload: the records; delete: the id values

    @property
    def users(self) -> set[str]:
        if self.kind == "upload":
            return {r["identity"] for r in self.payload}
        return set(self.payload)

    @property
    def labels(self) -> list[str]:
        if self.kind == "upload":
            return [r["label"] for r in self.payload]
        return [f"{v}/rm" for v in self.payload]


Answer = UploadOutcome | BaseException | None


@dataclass
class FakeClient:
    """``respond(call)`` returns the answer (an outcome, None for plain success, or an exception to raise), or an
    awaitable of it. Records every request and the start/end timeline."""

    respond: Callable[[Call], Any] = lambda call: None
    calls: list[Call] = field(default_factory=list)
    timeline: list[tuple[str, int]] = field(default_factory=list)
    in_flight: list[Call] = field(default_factory=list)
    overlaps: list[tuple[int, int, set[str]]] = field(default_factory=list)
    max_in_flight: int = 0
    succeeded: list[int] = field(default_factory=list)

    async def upload(self, records: Sequence[dict[str, Any]]) -> UploadOutcome:
        answer = await self._handle(Call(len(self.calls), "upload", None, copy.deepcopy(list(records))))
        return answer if answer is not None else UploadOutcome("success", len(records))

    async def delete(self, id_key: str, values: Sequence[str]) -> None:
        await self._handle(Call(len(self.calls), "delete", id_key, list(values)))

    async def _handle(self, call: Call) -> Any:
        self.calls.append(call)
        self.timeline.append(("start", call.index))
        for other in self.in_flight:
            shared = other.users & call.users
            if shared:
                self.overlaps.append((other.index, call.index, shared))
        self.in_flight.append(call)
        self.max_in_flight = max(self.max_in_flight, len(self.in_flight))
        try:
            answer = self.respond(call)
            if inspect.isawaitable(answer):
                answer = await answer
            await asyncio.sleep(0)
            if isinstance(answer, BaseException):
                raise answer
            if not isinstance(answer, UploadOutcome) or not answer.failures:
                self.succeeded.append(call.index)
            return answer
        finally:
            self.in_flight.remove(call)
            self.timeline.append(("end", call.index))

    def payloads(self) -> list[tuple[str, str | None, list[str]]]:
        return [(c.kind, c.id_key, c.labels) for c in self.calls]


def script(*answers: Answer) -> Callable[[Call], Answer]:
    """Answers in call order; plain success once the script is used up."""
    queue = list(answers)
    return lambda call: queue.pop(0) if queue else None


class RecordingDelivery:
    def __init__(self) -> None:
        self.events: list[tuple[Any, ...]] = []

    def accepted(self, works: Sequence[Work]) -> None:
        self.events.append(("accepted", [w.origin for w in works]))

    def rejected(self, work: Work, error: RecordError) -> None:
        self.events.append(("rejected", work.origin, type(error).__name__, error.code, str(error)))

    def retrying(self, works: Sequence[Work], error: Exception, delay_s: float) -> None:
        self.events.append(("retrying", [w.origin for w in works], type(error).__name__, delay_s))

    def credentials_changed(self, accepted: bool, message: str) -> None:
        self.events.append(("credentials", accepted, message))

    def of(self, kind: str) -> list[tuple[Any, ...]]:
        return [e for e in self.events if e[0] == kind]


class Sleeper:
    """The injected sleep: records each delay; waits for ``gate`` when one is given, else only yields."""

    def __init__(self, gate: asyncio.Event | None = None) -> None:
        self.delays: list[float] = []
        self.gate = gate

    async def __call__(self, delay: float) -> None:
        self.delays.append(delay)
        if self.gate is not None:
            await self.gate.wait()
        await asyncio.sleep(0)


def up(user: str, n: int = 0) -> Work:
    label = f"{user}/up{n}"
    record = {"type": "profile", "identity": user, "profileData": {"n": n}, "label": label}
    return Work(Operation(Action.UPLOAD_PROFILE, f"identity:{user}", record, "test"), origin=label)


def rm(user: str, key: str = "identity") -> Work:
    return Work(Operation(Action.DELETE_PROFILE, f"{key}:{user}", {key: user}, "test"), origin=f"{user}/rm")


def make(
    client: FakeClient,
    *,
    lanes: int = 1,
    upload_batch: int = 1000,
    delete_batch: int = 100,
    sleeper: Sleeper | None = None,
) -> tuple[Dispatcher, RecordingDelivery, Sleeper]:
    delivery = RecordingDelivery()
    sleeper = sleeper or Sleeper()
    config = DispatchConfig(
        lanes=lanes,
        upload_batch=upload_batch,
        delete_batch=delete_batch,
        retry_initial_s=INITIAL,
        retry_max_s=CAP,
        credentials_retry_s=CREDENTIALS_RETRY,
    )
    dispatcher = Dispatcher(client, delivery, config, rng=random.Random(SEED), sleep=sleeper)
    return dispatcher, delivery, sleeper


async def pump(rounds: int = 30) -> None:
    for _ in range(rounds):
        await asyncio.sleep(0)


async def run_all(dispatcher: Dispatcher, works: Sequence[Work]) -> None:
    dispatcher.start()
    for work in works:
        dispatcher.submit(work)
    assert await dispatcher.drain(10.0) is True
    assert dispatcher.queued == 0


def users_in_lanes(lanes: int, count: int) -> list[str]:
    """``count`` user ids that land in pairwise different lanes (the dispatcher spreads users by hash)."""
    chosen: dict[int, str] = {}
    for i in range(10_000):
        user = f"user{i}"
        chosen.setdefault(hash(f"identity:{user}") % lanes, user)
        if len(chosen) == count:
            return list(chosen.values())
    raise AssertionError("no users found")


# ------------------------------------------------------------------------------------------------
# backoff_delay
# ------------------------------------------------------------------------------------------------


class EdgeRng(random.Random):
    """uniform() returns its upper (or lower) bound, so the ceiling is observable exactly."""

    def __init__(self, upper: bool) -> None:
        super().__init__(0)
        self.upper = upper
        self.bounds: list[tuple[float, float]] = []

    def uniform(self, a: float, b: float) -> float:
        self.bounds.append((a, b))
        return b if self.upper else a


BACKOFF = [
    (1, 0.5, 30.0, 0.5),
    (2, 0.5, 30.0, 1.0),
    (3, 0.5, 30.0, 2.0),
    (6, 0.5, 30.0, 16.0),
    (7, 0.5, 30.0, 30.0),  # 32 capped
    (8, 0.5, 30.0, 30.0),
    (50, 0.5, 30.0, 30.0),
    (1, 2.0, 1.0, 1.0),  # cap below the initial delay
    (4, 0.1, 1000.0, 0.8),
    (31, 1.0, 1e12, 2.0**30),  # the exponent stops growing at 30
    (1000, 1.0, 1e12, 2.0**30),
    (5, 0.001, 3600.0, 0.016),
]


@pytest.mark.parametrize(("attempt", "initial", "cap", "ceiling"), BACKOFF)
def test_backoff_delay_bounds(attempt: int, initial: float, cap: float, ceiling: float) -> None:
    high = EdgeRng(upper=True)
    assert backoff_delay(attempt, initial, cap, high) == pytest.approx(ceiling, rel=1e-12)
    assert high.bounds == [(0, pytest.approx(ceiling, rel=1e-12))]
    assert backoff_delay(attempt, initial, cap, EdgeRng(upper=False)) == 0


@pytest.mark.parametrize(("attempt", "initial", "cap", "ceiling"), BACKOFF)
def test_backoff_delay_seeded_draws_within_bounds(attempt: int, initial: float, cap: float, ceiling: float) -> None:
    rng = random.Random(attempt)
    expected = random.Random(attempt)
    for _ in range(200):
        delay = backoff_delay(attempt, initial, cap, rng)
        assert 0 <= delay <= ceiling * (1 + 1e-12)
        assert delay == expected.uniform(0, ceiling)


# ------------------------------------------------------------------------------------------------
# Batching
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("count", "batch", "sizes"),
    [(1, 1000, [1]), (5, 2, [2, 2, 1]), (3, 3, [3]), (4, 1, [1, 1, 1, 1]), (7, 3, [3, 3, 1]), (1001, 1000, [1000, 1])],
)
async def test_upload_batches(count: int, batch: int, sizes: list[int]) -> None:
    client = FakeClient()
    dispatcher, delivery, _ = make(client, upload_batch=batch)
    works = [up(f"u{i}", 0) for i in range(count)]
    await run_all(dispatcher, works)
    labels = [f"u{i}/up0" for i in range(count)]
    expected, start = [], 0
    for size in sizes:
        expected.append(("upload", None, labels[start : start + size]))
        start += size
    assert client.payloads() == expected
    assert delivery.events == [("accepted", labels_) for _, _, labels_ in expected]
    assert all(w.attempts == 1 for w in works)


async def test_a_users_delete_blocks_only_that_user() -> None:
    # v's delete sits between uploads: the other users' uploads go together; v's later upload waits until v's
    # delete was sent, and u's second upload waits for u's first.
    client = FakeClient()
    dispatcher, _, _ = make(client, lanes=1)
    works = [up("u", 0), up("v", 0), rm("v"), up("w", 0), up("v", 1), up("x", 0), up("u", 1)]
    await run_all(dispatcher, works)
    assert client.payloads() == [
        ("upload", None, ["u/up0", "v/up0", "w/up0", "x/up0"]),
        ("delete", "identity", ["v/rm"]),
        ("upload", None, ["v/up1", "u/up1"]),
    ]


async def test_one_record_per_user_per_request_in_order() -> None:
    # u has three uploads queued among others: each goes in its own request, in order, while the other users'
    # records fill the first request.
    client = FakeClient()
    dispatcher, delivery, _ = make(client, upload_batch=1000, lanes=1)
    works = [up("u", 0), up("v", 0), up("u", 1), up("w", 0), up("u", 2)]
    await run_all(dispatcher, works)
    assert client.payloads() == [
        ("upload", None, ["u/up0", "v/up0", "w/up0"]),
        ("upload", None, ["u/up1"]),
        ("upload", None, ["u/up2"]),
    ]
    assert delivery.events == [
        ("accepted", ["u/up0", "v/up0", "w/up0"]),
        ("accepted", ["u/up1"]),
        ("accepted", ["u/up2"]),
    ]


@pytest.mark.parametrize(
    ("count", "batch", "sizes"), [(1, 100, [1]), (5, 2, [2, 2, 1]), (101, 100, [100, 1]), (3, 100, [3])]
)
async def test_delete_batches(count: int, batch: int, sizes: list[int]) -> None:
    client = FakeClient()
    dispatcher, delivery, _ = make(client, delete_batch=batch)
    await run_all(dispatcher, [rm(f"u{i}") for i in range(count)])
    users = [f"u{i}" for i in range(count)]
    expected, start = [], 0
    for size in sizes:
        expected.append(("delete", "identity", [f"{u}/rm" for u in users[start : start + size]]))
        start += size
    assert client.payloads() == expected
    assert [c.payload for c in client.calls] == [users[a : a + n] for a, n in zip(_starts(sizes), sizes, strict=True)]
    assert len(delivery.of("accepted")) == len(sizes)


def _starts(sizes: list[int]) -> list[int]:
    starts, total = [], 0
    for size in sizes:
        starts.append(total)
        total += size
    return starts


# Each work belongs to a different user, so a delete among uploads is stepped over and sent in its own request
# later; requests never mix endpoints.
MIXED: list[tuple[str, list[str], int, int, list[tuple[str, str | None, int]]]] = [
    (
        "U U D D U",
        ["U", "U", "D", "D", "U"],
        1000,
        100,
        [("upload", None, 3), ("delete", "identity", 2)],
    ),
    (
        "alternating",
        ["U", "D", "U", "D", "U"],
        1000,
        100,
        [("upload", None, 3), ("delete", "identity", 2)],
    ),
    (
        "deletes first, small delete batch",
        ["D", "D", "D", "U", "U", "U"],
        1000,
        2,
        [("delete", "identity", 2), ("delete", "identity", 1), ("upload", None, 3)],
    ),
    (
        "identity and guid deletes apart",
        ["U", "U", "D", "G", "G", "U"],
        1000,
        100,
        [("upload", None, 3), ("delete", "identity", 1), ("delete", "guid", 2)],
    ),
    (
        "small upload batch",
        ["U", "U", "U", "D", "U", "U", "U"],
        2,
        100,
        [("upload", None, 2), ("upload", None, 2), ("delete", "identity", 1), ("upload", None, 2)],
    ),
]


@pytest.mark.parametrize(
    ("label", "kinds", "upload_batch", "delete_batch", "expected"), MIXED, ids=[m[0] for m in MIXED]
)
async def test_uploads_and_deletes_never_share_a_request(
    label: str, kinds: list[str], upload_batch: int, delete_batch: int, expected: list[tuple[str, str | None, int]]
) -> None:
    client = FakeClient()
    dispatcher, delivery, _ = make(client, upload_batch=upload_batch, delete_batch=delete_batch)
    works = []
    for i, kind in enumerate(kinds):
        user = f"u{i}"
        works.append(up(user) if kind == "U" else rm(user, "guid" if kind == "G" else "identity"))
    await run_all(dispatcher, works)
    assert [(c.kind, c.id_key, len(c.payload)) for c in client.calls] == expected
    # Within a request, works keep submission order; everything was sent and accepted exactly once.
    for call in client.calls:
        positions = [[w.origin for w in works].index(label) for label in call.labels]
        assert positions == sorted(positions)
    sent = [label for c in client.calls for label in c.labels]
    assert sorted(sent) == sorted(w.origin for w in works)
    assert [o for e in delivery.of("accepted") for o in e[1]] == sent


# ------------------------------------------------------------------------------------------------
# Per-user order across lanes
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", [1, 2, 3, 4])
async def test_per_user_order_across_lanes(seed: int) -> None:
    rng = random.Random(seed)
    users = users_in_lanes(4, 4) + [f"u{i}" for i in range(6)]  # every lane has a user
    flaky = set(rng.sample(users, 3))
    failed_once: set[str] = set()

    async def respond(call: Call) -> Answer:
        for _ in range(rng.randrange(0, 4)):  # different requests take different times
            await asyncio.sleep(0)
        hit = (call.users & flaky) - failed_once
        if hit and call.kind == "upload":
            failed_once.update(hit)
            return RetriableRequestError("HTTP 503", status=503)
        return None

    client = FakeClient(respond=respond)
    dispatcher, delivery, _ = make(client, lanes=4, upload_batch=3, delete_batch=2)
    works: list[Work] = []
    for n in range(3):
        works += [up(u, n) for u in users]
    works += [rm(u) for u in users]
    works += [up(u, 9) for u in users[::2]]
    dispatcher.start()
    for work in works:
        dispatcher.submit(work)
        if rng.random() < 0.3:
            await asyncio.sleep(0)
    assert await dispatcher.drain(10.0) is True

    assert client.overlaps == []  # one user is never in two requests at the same time
    assert 1 < client.max_in_flight <= 4  # concurrency across lanes, at most one request per lane
    assert failed_once == flaky  # the retry path was exercised

    position = {event: i for i, event in enumerate(client.timeline)}
    for user in users:
        submitted = [w.origin for w in works if w.origin.startswith(f"{user}/")]
        good = [c for c in client.calls if c.index in client.succeeded and user in c.users]
        delivered = [label for c in good for label in c.labels if label.startswith(f"{user}/")]
        assert delivered == submitted, user
        for earlier, later in itertools.pairwise(good):
            # the later operation is sent only after the request with the earlier one completed
            assert position[("end", earlier.index)] < position[("start", later.index)], user
    accepted = [o for e in delivery.of("accepted") for o in e[1]]
    assert sorted(accepted) == sorted(w.origin for w in works)
    assert delivery.of("rejected") == []


async def test_delete_waits_for_the_users_retried_upload() -> None:
    client = FakeClient(respond=script(RetriableRequestError("HTTP 503", status=503), RetriableRequestError("x")))
    dispatcher, delivery, sleeper = make(client)
    await run_all(dispatcher, [up("a"), rm("a"), up("a", 1)])
    assert client.payloads() == [
        ("upload", None, ["a/up0"]),
        ("upload", None, ["a/up0"]),
        ("upload", None, ["a/up0"]),
        ("delete", "identity", ["a/rm"]),
        ("upload", None, ["a/up1"]),
    ]
    assert len(sleeper.delays) == 2
    assert delivery.of("accepted") == [("accepted", ["a/up0"]), ("accepted", ["a/rm"]), ("accepted", ["a/up1"])]


# ------------------------------------------------------------------------------------------------
# Retries
# ------------------------------------------------------------------------------------------------


def jitter(*ceilings: float) -> list[float]:
    rng = random.Random(SEED)
    return [rng.uniform(0, c) for c in ceilings]


RETRIES: list[tuple[str, list[RetriableRequestError], list[float]]] = [
    ("one 503", [RetriableRequestError("HTTP 503", status=503)], jitter(0.5)),
    (
        "three in a row",
        [RetriableRequestError("a"), RetriableRequestError("b"), RetriableRequestError("c")],
        jitter(0.5, 1.0, 2.0),
    ),
    ("Retry-After 7", [RetriableRequestError("HTTP 429", status=429, retry_after=7.0)], [7.0]),
    (
        "Retry-After capped at 4 x retry_max",
        [RetriableRequestError("HTTP 429", status=429, retry_after=1000.0)],
        [120.0],
    ),
    ("Retry-After 0 keeps the jitter", [RetriableRequestError("HTTP 429", status=429, retry_after=0.0)], jitter(0.5)),
    (
        "Retry-After then plain",
        [RetriableRequestError("429", retry_after=3.0), RetriableRequestError("503")],
        [3.0, *jitter(0.5, 1.0)[1:]],
    ),
]


@pytest.mark.parametrize(("label", "errors", "delays"), RETRIES, ids=[r[0] for r in RETRIES])
async def test_retriable_request_error_retries_the_same_batch(
    label: str, errors: list[RetriableRequestError], delays: list[float]
) -> None:
    client = FakeClient(respond=script(*errors))
    dispatcher, delivery, sleeper = make(client)
    works = [up("a"), up("b"), up("c")]
    await run_all(dispatcher, works)
    assert client.payloads() == [("upload", None, ["a/up0", "b/up0", "c/up0"])] * (len(errors) + 1)
    assert sleeper.delays == delays
    retrying = [("retrying", ["a/up0", "b/up0", "c/up0"], "RetriableRequestError", d) for d in delays]
    assert delivery.events == [*retrying, ("accepted", ["a/up0", "b/up0", "c/up0"])]
    assert [w.attempts for w in works] == [len(errors) + 1] * 3


async def test_retry_after_smaller_than_jitter() -> None:
    # The first draw of Random(SEED) from [0, 0.5] is compared with a Retry-After of 0.001.
    (draw,) = jitter(0.5)
    client = FakeClient(respond=script(RetriableRequestError("429", retry_after=0.001)))
    dispatcher, _, sleeper = make(client)
    await run_all(dispatcher, [up("a")])
    assert sleeper.delays == [max(draw, 0.001)]


async def test_per_record_555_retries_only_that_record() -> None:
    outcome = UploadOutcome("partial", 2, [RecordFailure(1, 555, "Miscellaneous error.Skipped record number : 2")])
    client = FakeClient(respond=script(outcome))
    dispatcher, delivery, sleeper = make(client)
    works = [up("a"), up("b"), up("c")]
    await run_all(dispatcher, works)
    assert client.payloads() == [("upload", None, ["a/up0", "b/up0", "c/up0"]), ("upload", None, ["b/up0"])]
    assert sleeper.delays == jitter(0.5)
    assert delivery.events == [
        ("accepted", ["a/up0", "c/up0"]),
        ("retrying", ["b/up0"], "RetriableRequestError", jitter(0.5)[0]),
        ("accepted", ["b/up0"]),
    ]
    assert [w.attempts for w in works] == [1, 2, 1]


async def test_per_record_555_twice_backs_off_further() -> None:
    first = UploadOutcome("partial", 1, [RecordFailure(0, 555, "Misc.Skipped record number : 1")])
    second = UploadOutcome("fail", 0, [RecordFailure(0, 555, "Misc.Skipped record number : 1")])
    client = FakeClient(respond=script(first, second))
    dispatcher, delivery, sleeper = make(client)
    await run_all(dispatcher, [up("a"), up("b")])
    assert client.payloads() == [
        ("upload", None, ["a/up0", "b/up0"]),
        ("upload", None, ["a/up0"]),
        ("upload", None, ["a/up0"]),
    ]
    assert sleeper.delays == jitter(0.5, 1.0)
    assert delivery.of("accepted") == [("accepted", ["b/up0"]), ("accepted", ["a/up0"])]


SETTLE: list[tuple[str, list[RecordFailure], list[tuple[Any, ...]]]] = [
    (
        "515 email",
        [RecordFailure(1, 515, "Profile data is incorrect. Email is not valid.Skipped record number : 2")],
        [
            (
                "rejected",
                "b/up0",
                "RejectedByClevertap",
                515,
                "Profile data is incorrect. Email is not valid.Skipped record number : 2",
            ),
            ("accepted", ["a/up0", "c/up0"]),
        ],
    ),
    (
        "all rejected",
        [RecordFailure(0, 523, "e1"), RecordFailure(1, 509, "e2"), RecordFailure(2, 516, "e3")],
        [
            ("rejected", "a/up0", "RejectedByClevertap", 523, "e1"),
            ("rejected", "b/up0", "RejectedByClevertap", 509, "e2"),
            ("rejected", "c/up0", "RejectedByClevertap", 516, "e3"),
        ],
    ),
    (
        "code unknown",
        [RecordFailure(2, None, "odd")],
        [("rejected", "c/up0", "RejectedByClevertap", None, "odd"), ("accepted", ["a/up0", "b/up0"])],
    ),
]


@pytest.mark.parametrize(("label", "failures", "events"), SETTLE, ids=[s[0] for s in SETTLE])
async def test_permanent_record_failures_are_rejected(
    label: str, failures: list[RecordFailure], events: list[tuple[Any, ...]]
) -> None:
    client = FakeClient(respond=script(UploadOutcome("partial", 3 - len(failures), failures)))
    dispatcher, delivery, sleeper = make(client)
    await run_all(dispatcher, [up("a"), up("b"), up("c")])
    assert len(client.calls) == 1
    assert delivery.events == events
    assert sleeper.delays == []


# ------------------------------------------------------------------------------------------------
# Isolating bad records
# ------------------------------------------------------------------------------------------------

BAD_REQUEST = "CleverTap /1/upload answered HTTP 400: Bad request"

BISECT: list[tuple[str, int, set[int], list[list[int]], list[tuple[Any, ...]]]] = [
    (
        "4, bad 2",
        4,
        {2},
        [[0, 1, 2, 3], [0, 1], [2, 3], [2], [3]],
        [("accepted", [0, 1]), ("rejected", 2), ("accepted", [3])],
    ),
    (
        "4, bad 0",
        4,
        {0},
        [[0, 1, 2, 3], [0, 1], [0], [1], [2, 3]],
        [("rejected", 0), ("accepted", [1]), ("accepted", [2, 3])],
    ),
    (
        "4, bad 3",
        4,
        {3},
        [[0, 1, 2, 3], [0, 1], [2, 3], [2], [3]],
        [("accepted", [0, 1]), ("accepted", [2]), ("rejected", 3)],
    ),
    (
        "5, bad 1 and 3",
        5,
        {1, 3},
        [[0, 1, 2, 3, 4], [0, 1], [0], [1], [2, 3, 4], [2], [3, 4], [3], [4]],
        [("accepted", [0]), ("rejected", 1), ("accepted", [2]), ("rejected", 3), ("accepted", [4])],
    ),
    ("1, bad 0", 1, {0}, [[0]], [("rejected", 0)]),
    ("3, none bad", 3, set(), [[0, 1, 2]], [("accepted", [0, 1, 2])]),
    ("2, both bad", 2, {0, 1}, [[0, 1], [0], [1]], [("rejected", 0), ("rejected", 1)]),
]


@pytest.mark.parametrize(("label", "count", "bad", "calls", "outcome"), BISECT, ids=[b[0] for b in BISECT])
async def test_bad_request_bisection(
    label: str, count: int, bad: set[int], calls: list[list[int]], outcome: list[tuple[Any, ...]]
) -> None:
    bad_labels = {f"u{i}/up0" for i in bad}

    def respond(call: Call) -> Answer:
        if bad_labels & set(call.labels):
            return BadRequestError(BAD_REQUEST, status=400)
        return None

    client = FakeClient(respond=respond)
    dispatcher, delivery, sleeper = make(client)
    await run_all(dispatcher, [up(f"u{i}") for i in range(count)])
    assert client.payloads() == [("upload", None, [f"u{i}/up0" for i in c]) for c in calls]
    expected = []
    for kind, value in outcome:
        if kind == "accepted":
            expected.append(("accepted", [f"u{i}/up0" for i in value]))
        else:
            expected.append(("rejected", f"u{value}/up0", "RejectedByClevertap", 400, BAD_REQUEST))
    assert delivery.events == expected
    assert sleeper.delays == []


async def test_bad_delete_is_isolated() -> None:
    def respond(call: Call) -> Answer:
        if "bad" in call.payload:
            return BadRequestError("CleverTap refused the deletion: invalid identity", status=200)
        return None

    client = FakeClient(respond=respond)
    dispatcher, delivery, _ = make(client)
    await run_all(dispatcher, [rm("a"), rm("bad"), rm("c")])
    assert [c.payload for c in client.calls] == [["a", "bad", "c"], ["a"], ["bad", "c"], ["bad"], ["c"]]
    assert delivery.events == [
        ("accepted", ["a/rm"]),
        ("rejected", "bad/rm", "RejectedByClevertap", 200, "CleverTap refused the deletion: invalid identity"),
        ("accepted", ["c/rm"]),
    ]


async def test_ambiguous_outcome_is_split() -> None:
    ambiguous = UploadOutcome("fail", 0, [], ambiguous=True)
    client = FakeClient(respond=script(ambiguous, None, ambiguous))
    dispatcher, delivery, _ = make(client)
    await run_all(dispatcher, [up("a"), up("b")])
    assert client.payloads() == [
        ("upload", None, ["a/up0", "b/up0"]),
        ("upload", None, ["a/up0"]),
        ("upload", None, ["b/up0"]),
    ]
    assert delivery.events == [
        ("accepted", ["a/up0"]),
        ("rejected", "b/up0", "RejectedByClevertap", None, "CleverTap did not store the record (status fail)"),
    ]


# ------------------------------------------------------------------------------------------------
# Credentials
# ------------------------------------------------------------------------------------------------


async def test_credentials_failure_stops_every_lane_until_accepted() -> None:
    a, b = users_in_lanes(2, 2)
    client = FakeClient(
        respond=script(CredentialsError(BAD_CREDENTIALS, status=401), CredentialsError(BAD_CREDENTIALS, status=401))
    )
    gate = asyncio.Event()
    dispatcher, delivery, sleeper = make(client, lanes=2, sleeper=Sleeper(gate))
    dispatcher.start()
    dispatcher.submit(up(a))
    await pump()
    assert [c.labels for c in client.calls] == [[f"{a}/up0"]]
    assert dispatcher.credentials_ok is False
    assert delivery.events == [("credentials", False, BAD_CREDENTIALS)]
    assert sleeper.delays == [CREDENTIALS_RETRY]

    dispatcher.submit(up(b))  # another lane: it waits for the credentials
    await pump()
    assert len(client.calls) == 1
    assert dispatcher.queued == 2

    gate.set()  # the probing lane tries again: 401 once more (no second alert), then accepted
    assert await dispatcher.drain(10.0) is True
    assert [c.labels for c in client.calls] == [[f"{a}/up0"], [f"{a}/up0"], [f"{a}/up0"], [f"{b}/up0"]]
    assert sleeper.delays == [CREDENTIALS_RETRY, CREDENTIALS_RETRY]
    assert dispatcher.credentials_ok is True
    assert delivery.events == [
        ("credentials", False, BAD_CREDENTIALS),
        ("credentials", True, "CleverTap accepts the credentials again"),
        ("accepted", [f"{a}/up0"]),
        ("accepted", [f"{b}/up0"]),
    ]


async def test_credentials_failing_in_two_lanes_alerts_once() -> None:
    a, b = users_in_lanes(2, 2)
    client = FakeClient(
        respond=script(CredentialsError(BAD_CREDENTIALS, status=401), CredentialsError(BAD_CREDENTIALS, status=403))
    )
    dispatcher, delivery, sleeper = make(client, lanes=2)
    await run_all(dispatcher, [up(a), up(b)])
    assert delivery.of("credentials") == [
        ("credentials", False, BAD_CREDENTIALS),
        ("credentials", True, "CleverTap accepts the credentials again"),
    ]
    assert sorted(o for e in delivery.of("accepted") for o in e[1]) == sorted([f"{a}/up0", f"{b}/up0"])
    assert sleeper.delays == [CREDENTIALS_RETRY, CREDENTIALS_RETRY]
    assert len(client.calls) == 4


async def test_credentials_failure_on_delete() -> None:
    client = FakeClient(respond=script(CredentialsError("HTTP 403: not allowed", status=403)))
    dispatcher, delivery, sleeper = make(client)
    await run_all(dispatcher, [rm("a")])
    assert [c.payload for c in client.calls] == [["a"], ["a"]]
    assert delivery.events == [
        ("credentials", False, "HTTP 403: not allowed"),
        ("credentials", True, "CleverTap accepts the credentials again"),
        ("accepted", ["a/rm"]),
    ]
    assert sleeper.delays == [CREDENTIALS_RETRY]


# ------------------------------------------------------------------------------------------------
# drop / drain / unexpected errors
# ------------------------------------------------------------------------------------------------


async def test_drop_removes_queued_works_only() -> None:
    release = asyncio.Event()

    async def respond(call: Call) -> Answer:
        if call.index == 0:
            await release.wait()
        return None

    client = FakeClient(respond=respond)
    dispatcher, delivery, _ = make(client)
    dispatcher.start()
    works = [up("u", i) for i in range(4)]
    dispatcher.submit(works[0])
    await pump()
    for work in works[1:]:
        dispatcher.submit(work)
    assert dispatcher.queued == 4
    assert dispatcher.sending(lambda w: True) == 1
    assert dispatcher.sending(lambda w: w.origin == "u/up1") == 0
    assert dispatcher.drop(lambda w: w.origin in ("u/up0", "u/up1", "u/up3")) == 2  # up0 is already being sent
    assert dispatcher.queued == 2
    assert dispatcher.drop(lambda w: False) == 0
    release.set()
    assert await dispatcher.drain(10.0) is True
    assert client.payloads() == [("upload", None, ["u/up0"]), ("upload", None, ["u/up2"])]
    assert delivery.events == [("accepted", ["u/up0"]), ("accepted", ["u/up2"])]


async def test_drain_without_start() -> None:
    dispatcher, _, _ = make(FakeClient())
    assert await dispatcher.drain(1.0) is True


async def test_drain_sends_everything_queued() -> None:
    client = FakeClient()
    dispatcher, delivery, _ = make(client, lanes=3, upload_batch=2)
    works = [up(f"u{i}", n) for n in range(3) for i in range(5)]
    dispatcher.start()
    for work in works:
        dispatcher.submit(work)
    assert dispatcher.queued == 15
    assert await dispatcher.drain(10.0) is True
    assert dispatcher.queued == 0
    assert sorted(o for e in delivery.of("accepted") for o in e[1]) == sorted(w.origin for w in works)


async def test_drain_gives_up_when_a_request_never_ends() -> None:
    never = asyncio.Event()

    async def respond(call: Call) -> Answer:
        await never.wait()
        return None

    client = FakeClient(respond=respond)
    dispatcher, delivery, _ = make(client)
    dispatcher.start()
    dispatcher.submit(up("a"))
    await pump()
    assert await dispatcher.drain(0.05) is False
    assert delivery.events == []
    assert client.in_flight == []  # the request was cancelled


async def test_unexpected_error_retries_the_batch() -> None:
    client = FakeClient(respond=script(RuntimeError("bug in the client")))
    dispatcher, delivery, sleeper = make(client)
    await run_all(dispatcher, [up("a"), up("b")])
    assert client.payloads() == [("upload", None, ["a/up0", "b/up0"])] * 2
    assert sleeper.delays == [INITIAL]
    assert delivery.events == [("accepted", ["a/up0", "b/up0"])]


async def test_unexpected_error_after_partial_settlement_resends_only_unsettled() -> None:
    outcome = UploadOutcome("partial", 2, [RecordFailure(1, 555, "Misc.Skipped record number : 2")])
    client = FakeClient(respond=script(outcome, RuntimeError("bug in the client")))
    dispatcher, delivery, _ = make(client)
    await run_all(dispatcher, [up("a"), up("b"), up("c")])
    assert client.payloads() == [
        ("upload", None, ["a/up0", "b/up0", "c/up0"]),
        ("upload", None, ["b/up0"]),
        ("upload", None, ["b/up0"]),
    ]
    assert delivery.of("accepted") == [("accepted", ["a/up0", "c/up0"]), ("accepted", ["b/up0"])]
