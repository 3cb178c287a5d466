"""A failure-rate breaker: stop instead of draining a whole topic into the dead-letter topic.

When a deployment goes wrong (a new schema the processor cannot read, a mapping that no longer fits), every record
fails the same way. Dead-lettering them all would empty the topic into the DLQ and hide the real problem; stopping
with a clear message lets the operator fix the cause and carry on from where the processor stopped.
"""

from __future__ import annotations

from collections import Counter, deque

Signature = tuple[str, str, int | None]  # (stage, error class, code)


class FailureBreaker:
    """Trips when, among the last ``window`` records, one failure signature accounts for more than ``threshold``.

    Nothing trips before ``min_records`` outcomes were seen, so a few bad records at start-up cannot stop the service.
    ``threshold >= 1`` disables it. O(1) per outcome.
    """

    def __init__(self, window: int = 1000, threshold: float = 0.5, min_records: int = 200) -> None:
        if window < 1:
            raise ValueError("window must be at least 1")
        self.window = window
        self.threshold = threshold
        self.min_records = min(min_records, window)
        self._outcomes: deque[Signature | None] = deque()
        self._failures: Counter[Signature] = Counter()
        self.tripped: Signature | None = None

    def _push(self, outcome: Signature | None) -> None:
        outcomes = self._outcomes
        outcomes.append(outcome)
        if len(outcomes) > self.window:
            old = outcomes.popleft()
            if old is not None:
                left = self._failures[old] - 1
                if left:
                    self._failures[old] = left
                else:
                    del self._failures[old]

    def success(self, count: int = 1) -> None:
        for _ in range(min(count, self.window)):
            self._push(None)

    def failure(self, signature: Signature) -> bool:
        """Record a failure; True when the breaker is (now) tripped."""
        self._push(signature)
        self._failures[signature] += 1
        seen = len(self._outcomes)
        if (
            self.tripped is None
            and self.threshold < 1
            and seen >= self.min_records
            and self._failures[signature] > self.threshold * seen
        ):
            self.tripped = signature
        return self.tripped is not None

    def share(self, signature: Signature) -> float:
        return self._failures[signature] / len(self._outcomes) if self._outcomes else 0.0

    @property
    def seen(self) -> int:
        return len(self._outcomes)
