"""Which offsets may be committed. Pure bookkeeping, no Kafka client.

Records complete out of order (different users go to CleverTap concurrently), but a partition's committed offset
must never pass a record that is not done: the commit position is the offset of the first record not yet done,
or one past the last record seen when all are done.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable

TopicPartition = tuple[str, int]


class PartitionOffsets:
    """Offsets of one partition in the order they were read; O(1) amortised per record."""

    __slots__ = ("_committed", "_done", "_last", "_order", "_position", "_settled")

    def __init__(self) -> None:
        self._order: deque[int] = deque()
        self._done: set[int] = set()
        self._settled: deque[int] = deque()  # done in order, not yet committed: a crash would read them again
        self._last: int | None = None  # the last offset tracked, done or not
        self._position: int | None = None  # next offset to commit, once known
        self._committed: int | None = None

    def track(self, offset: int) -> None:
        """Register a record just read. Offsets must increase (Kafka may skip some: compaction, transactions)."""
        if self._last is not None and offset <= self._last:
            raise ValueError(f"offset {offset} is not after {self._last}")
        self._order.append(offset)
        self._last = offset

    def done(self, offset: int) -> None:
        """Mark a tracked record done; unknown offsets (a partition revoked and re-read) are ignored."""
        order = self._order
        if order and order[0] == offset:
            settled = self._settled
            settled.append(order.popleft())
            done = self._done
            while order and order[0] in done:
                head = order.popleft()
                done.discard(head)
                settled.append(head)
            # The first record not done, or one past the last record read; offsets between do not exist.
            self._position = order[0] if order else (self._last or offset) + 1
        elif order and order[0] < offset <= order[-1]:
            self._done.add(offset)

    @property
    def in_flight(self) -> int:
        return len(self._order)

    @property
    def uncommitted(self) -> int:
        """Records read since the committed position, done or not: what a crash makes the next run send again."""
        return len(self._order) + len(self._settled)

    def committable(self) -> int | None:
        """The offset to commit now, or None when nothing new is done since the last :meth:`committed`."""
        if self._position is None or self._position == self._committed:
            return None
        return self._position

    def committed(self, offset: int) -> None:
        self._committed = offset
        settled = self._settled
        while settled and settled[0] < offset:
            settled.popleft()


class OffsetTracker:
    """Per-partition tracking for everything assigned to this consumer.

    :meth:`track` returns the partition's state object; records remember it and report completion to it directly.
    A partition that is revoked and later assigned again gets a new state object, so late completions from the
    earlier assignment cannot mark records of the new one done.
    """

    def __init__(self) -> None:
        self._partitions: dict[TopicPartition, PartitionOffsets] = {}

    def assign(self, partitions: Iterable[TopicPartition]) -> None:
        for tp in partitions:
            self._partitions.setdefault(tp, PartitionOffsets())

    def revoke(self, partitions: Iterable[TopicPartition]) -> None:
        for tp in partitions:
            self._partitions.pop(tp, None)

    def track(self, tp: TopicPartition, offset: int) -> PartitionOffsets:
        state = self._partitions.get(tp)
        if state is None:
            state = self._partitions[tp] = PartitionOffsets()
        state.track(offset)
        return state

    @property
    def in_flight(self) -> int:
        return sum(state.in_flight for state in self._partitions.values())

    @property
    def uncommitted(self) -> int:
        return sum(state.uncommitted for state in self._partitions.values())

    def partition_in_flight(self) -> dict[TopicPartition, int]:
        return {tp: state.in_flight for tp, state in self._partitions.items()}

    def committable(self, only: Iterable[TopicPartition] | None = None) -> dict[TopicPartition, int]:
        chosen = list(self._partitions) if only is None else [tp for tp in only if tp in self._partitions]
        positions: dict[TopicPartition, int] = {}
        for tp in chosen:
            position = self._partitions[tp].committable()
            if position is not None:
                positions[tp] = position
        return positions

    def committed(self, positions: dict[TopicPartition, int]) -> None:
        for tp, offset in positions.items():
            state = self._partitions.get(tp)
            if state is not None:
                state.committed(offset)

    def partitions(self) -> list[TopicPartition]:
        return list(self._partitions)
