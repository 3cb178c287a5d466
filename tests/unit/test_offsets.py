"""Table-driven and randomized tests for processor.kafka.offsets.

The contract (module docstring): the commit position of a partition is the offset of the first record not yet
done, or one past the last record seen when all are done; it never passes a record that is not done.
``in_flight`` is expected to count the records the commit position has not passed yet (those still held for
the partition: not done, or done but behind one that is not).
"""

from __future__ import annotations

import random

import pytest

from processor.kafka.offsets import OffsetTracker, PartitionOffsets

# A step is ("done", offset), ("track", offset) or ("committed", offset); each is followed by the expected
# committable() and in_flight after it.
Step = tuple[str, int, int | None, int]

SCENARIOS: list[tuple[str, list[int], list[Step]]] = [
    (
        "in order",
        [0, 1, 2, 3, 4],
        [("done", 0, 1, 4), ("done", 1, 2, 3), ("done", 2, 3, 2), ("done", 3, 4, 1), ("done", 4, 5, 0)],
    ),
    (
        "in order, not starting at zero",
        [100, 101, 102],
        [("done", 100, 101, 2), ("done", 101, 102, 1), ("done", 102, 103, 0)],
    ),
    (
        "reverse order",
        [0, 1, 2, 3],
        [("done", 3, None, 4), ("done", 2, None, 4), ("done", 1, None, 4), ("done", 0, 4, 0)],
    ),
    (
        "out of order",
        [0, 1, 2, 3, 4],
        [("done", 2, None, 5), ("done", 1, None, 5), ("done", 0, 3, 2), ("done", 4, 3, 2), ("done", 3, 5, 0)],
    ),
    (
        "head last among the first three",
        [10, 11, 12, 13],
        [("done", 11, None, 4), ("done", 12, None, 4), ("done", 10, 13, 1), ("done", 13, 14, 0)],
    ),
    (
        "done twice is harmless",
        [0, 1, 2],
        [("done", 1, None, 3), ("done", 1, None, 3), ("done", 0, 2, 1), ("done", 0, 2, 1), ("done", 1, 2, 1)],
    ),
    (
        "unknown offsets are ignored",
        [5, 6, 7],
        [("done", 4, None, 3), ("done", 8, None, 3), ("done", 100, None, 3), ("done", 5, 6, 2), ("done", 2, 6, 2)],
    ),
    (
        "committed then nothing new",
        [0, 1, 2],
        [
            ("done", 0, 1, 2),
            ("committed", 1, None, 2),
            ("done", 2, None, 2),
            ("done", 1, 3, 0),
            ("committed", 3, None, 0),
        ],
    ),
    (
        "commit of an older position leaves the newer one committable",
        [0, 1, 2],
        [("done", 0, 1, 2), ("done", 1, 2, 1), ("committed", 1, 2, 1), ("committed", 2, None, 1)],
    ),
    (
        "tracking continues after everything was done",
        [0, 1],
        [
            ("done", 0, 1, 1),
            ("done", 1, 2, 0),
            ("committed", 2, None, 0),
            ("track", 2, None, 1),
            ("track", 3, None, 2),
            ("done", 3, None, 2),
            ("done", 2, 4, 0),
        ],
    ),
    # Gaps (compacted topics, transaction markers). Rows here are those where the first not-done offset
    # is unambiguous: everything before it done and it directly follows a done record, or all are done.
    (
        "gaps 3,7,8 completed last-first",
        [3, 7, 8],
        [("done", 8, None, 3), ("done", 7, None, 3), ("done", 3, 9, 0)],
    ),
    (
        "gaps 3,7,8 head then rest",
        [3, 7, 8],
        [("done", 7, None, 3), ("done", 3, 8, 1), ("done", 8, 9, 0)],
    ),
    (
        "done of an offset inside a gap is ignored",
        [3, 7, 8],
        [("done", 5, None, 3), ("done", 8, None, 3), ("done", 7, None, 3), ("done", 3, 9, 0)],
    ),
    (
        "gaps 100,200,300,400",
        [100, 200, 300, 400],
        [("done", 300, None, 4), ("done", 200, None, 4), ("done", 400, None, 4), ("done", 100, 401, 0)],
    ),
]


@pytest.mark.parametrize(("label", "tracked", "steps"), SCENARIOS, ids=[s[0] for s in SCENARIOS])
def test_partition_scenarios(label: str, tracked: list[int], steps: list[Step]) -> None:
    state = PartitionOffsets()
    assert state.committable() is None
    for offset in tracked:
        state.track(offset)
    assert state.committable() is None
    assert state.in_flight == len(tracked)
    for i, (kind, offset, committable, in_flight) in enumerate(steps):
        getattr(state, kind)(offset)
        assert (state.committable(), state.in_flight) == (committable, in_flight), f"after step {i}: {kind} {offset}"


@pytest.mark.parametrize(
    ("tracked", "done", "first_not_done"),
    [([3, 7, 8], [3], 7), ([10, 20, 30], [10], 20), ([0, 1, 5], [0, 1], 5)],
)
def test_gap_after_head_commits_first_not_done(tracked: list[int], done: list[int], first_not_done: int) -> None:
    state = PartitionOffsets()
    for offset in tracked:
        state.track(offset)
    for offset in done:
        state.done(offset)
    assert state.committable() == first_not_done


def test_done_before_anything_tracked() -> None:
    state = PartitionOffsets()
    state.done(0)
    assert state.committable() is None
    assert state.in_flight == 0


@pytest.mark.parametrize(
    ("tracked", "bad", "message"),
    [
        ([5], 5, "offset 5 is not after 5"),
        ([5], 4, "offset 4 is not after 5"),
        ([0, 1, 2], 0, "offset 0 is not after 2"),
        ([0, 1, 2], 2, "offset 2 is not after 2"),
        ([3, 7], 6, "offset 6 is not after 7"),
    ],
)
def test_non_increasing_track_raises(tracked: list[int], bad: int, message: str) -> None:
    state = PartitionOffsets()
    for offset in tracked:
        state.track(offset)
    with pytest.raises(ValueError) as info:
        state.track(bad)
    assert str(info.value) == message
    assert state.in_flight == len(tracked)


def test_non_increasing_track_raises_after_everything_done() -> None:
    state = PartitionOffsets()
    state.track(5)
    state.done(5)
    assert state.committable() == 6
    with pytest.raises(ValueError):
        state.track(3)


# ------------------------------------------------------------------------------------------------
# Randomized: the commit position never passes a record that is not done
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", [1, 2, 3, 42, 2024])
def test_random_operations_never_commit_past_a_not_done_record(seed: int) -> None:
    """Independent model: the list of tracked offsets, the set of done ones, and ``head``, the index of the
    first tracked offset not done (everything before it is done)."""
    rng = random.Random(seed)
    state = PartitionOffsets()
    tracked: list[int] = []
    done: set[int] = set()
    open_offsets: list[int] = []  # tracked and not done, any order
    head = 0
    next_offset = rng.randrange(0, 1000)
    last_seen: int | None = None
    committed: int | None = None
    checks = 0
    for step in range(4000):
        roll = rng.random()
        if roll < 0.40 or not tracked:
            state.track(next_offset)
            tracked.append(next_offset)
            open_offsets.append(next_offset)
            next_offset += rng.choice((1, 1, 1, 2, 5))  # gaps as in compacted topics
        elif roll < 0.80 and open_offsets:
            # Favour the first not-done record sometimes, so the position advances often.
            if rng.random() < 0.3 and head < len(tracked):
                offset = tracked[head]
                open_offsets.remove(offset)
            else:
                i = rng.randrange(len(open_offsets))
                open_offsets[i], open_offsets[-1] = open_offsets[-1], open_offsets[i]
                offset = open_offsets.pop()
            state.done(offset)
            done.add(offset)
        elif roll < 0.88:
            # Late, duplicate and unknown completions must change nothing.
            candidates = [tracked[0] - 1, next_offset, next_offset + 3]
            if done:
                candidates.append(rng.choice(tracked[:head]) if head else tracked[0] - 2)
            state.done(rng.choice(candidates))
        else:
            position = state.committable()
            if position is not None:
                state.committed(position)
                committed = position

        while head < len(tracked) and tracked[head] in done:
            head += 1
        first_not_done = tracked[head] if head < len(tracked) else None
        limit = first_not_done if first_not_done is not None else tracked[-1] + 1
        position = state.committable()
        where = f"seed {seed} step {step}"
        if head == 0:
            assert position is None, where  # the first record read is not done: nothing may be committed
        elif position is not None:
            assert position <= limit, where  # never past a record that is not done
            assert position >= tracked[head - 1] + 1, where  # and past every record of the done prefix
            assert position != committed, where
            assert last_seen is None or position >= last_seen, where  # never moves backwards
            last_seen = position
            checks += 1
        else:
            # Nothing new since the last commit: the commit already covers the whole done prefix.
            assert committed is not None and committed == last_seen, where
            assert tracked[head - 1] + 1 <= committed <= limit, where
        assert state.in_flight == len(tracked) - head, where
    assert checks > 100  # the property was exercised, not vacuously true
    assert head > 100


# ------------------------------------------------------------------------------------------------
# OffsetTracker
# ------------------------------------------------------------------------------------------------

A = ("events", 0)
B = ("events", 1)
C = ("other", 0)


def test_tracker_per_partition_positions() -> None:
    tracker = OffsetTracker()
    tracker.assign([A, B])
    a = [tracker.track(A, o) for o in (0, 1, 2)]
    b = [tracker.track(B, o) for o in (10, 11)]
    assert a[0] is a[1] is a[2]
    assert b[0] is b[1]
    assert a[0] is not b[0]
    assert tracker.in_flight == 5
    assert tracker.partition_in_flight() == {A: 3, B: 2}
    assert tracker.committable() == {}

    a[0].done(1)
    assert tracker.committable() == {}
    a[0].done(0)
    assert tracker.committable() == {A: 2}
    b[0].done(10)
    assert tracker.committable() == {A: 2, B: 11}
    assert tracker.committable(only=[B]) == {B: 11}
    assert tracker.committable(only=[C, A]) == {A: 2}
    assert tracker.committable(only=[]) == {}
    assert tracker.partition_in_flight() == {A: 1, B: 1}
    assert tracker.in_flight == 2

    tracker.committed({A: 2, B: 11})
    assert tracker.committable() == {}
    a[0].done(2)
    assert tracker.committable() == {A: 3}
    assert tracker.in_flight == 1


def test_tracker_committed_ignores_unknown_partitions() -> None:
    tracker = OffsetTracker()
    state = tracker.track(A, 0)
    state.done(0)
    tracker.committed({C: 5, A: 1})
    assert tracker.partitions() == [A]
    assert tracker.committable() == {}


def test_track_without_assign_creates_the_partition() -> None:
    tracker = OffsetTracker()
    tracker.track(C, 7)
    assert tracker.partitions() == [C]
    assert tracker.partition_in_flight() == {C: 1}


def test_assign_again_keeps_state() -> None:
    tracker = OffsetTracker()
    tracker.assign([A])
    state = tracker.track(A, 0)
    tracker.assign([A, B])
    assert tracker.track(A, 1) is state
    state.done(0)
    assert tracker.committable() == {A: 1}
    assert tracker.partitions() == [A, B]
    assert tracker.partition_in_flight() == {A: 1, B: 0}


def test_revoke_drops_partition() -> None:
    tracker = OffsetTracker()
    tracker.assign([A, B])
    tracker.track(A, 0).done(0)
    tracker.track(B, 5)
    tracker.revoke([A, C])  # C was never assigned: ignored
    assert tracker.partitions() == [B]
    assert tracker.committable() == {}
    assert tracker.in_flight == 1
    assert tracker.partition_in_flight() == {B: 1}


@pytest.mark.parametrize("reassign_by", ["assign", "track"])
def test_reassigned_partition_gets_fresh_state(reassign_by: str) -> None:
    tracker = OffsetTracker()
    tracker.assign([A])
    old = tracker.track(A, 0)
    tracker.track(A, 1)
    tracker.revoke([A])
    if reassign_by == "assign":
        tracker.assign([A])
    new = tracker.track(A, 0)  # the partition is read again from its committed offset
    tracker.track(A, 1)
    assert new is not old
    assert tracker.in_flight == 2

    # Late completions from the earlier assignment reach only the old state object.
    old.done(0)
    old.done(1)
    assert old.committable() == 2
    assert tracker.committable() == {}
    assert tracker.partition_in_flight() == {A: 2}

    new.done(0)
    assert tracker.committable() == {A: 1}


def test_in_flight_counts_across_partitions() -> None:
    tracker = OffsetTracker()
    states = {}
    for tp in (A, B, C):
        for offset in range(4):
            states[tp] = tracker.track(tp, offset)
    assert tracker.in_flight == 12
    states[A].done(0)
    states[B].done(3)  # behind a not-done record: still held
    states[C].done(0)
    states[C].done(1)
    assert tracker.partition_in_flight() == {A: 3, B: 4, C: 2}
    assert tracker.in_flight == 9
