"""Counters of what the processor did: printed as the run summary and exported as metrics."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from processor.kafka.offsets import TopicPartition


@dataclass
class Stats:
    read: int = 0
    decoded: int = 0
    decode_errors: int = 0
    skipped: Counter[str] = field(default_factory=Counter)
    operations: Counter[str] = field(default_factory=Counter)  # by action, when the event is routed
    profiles_uploaded: int = 0
    events_uploaded: int = 0
    profiles_deleted: int = 0
    rejected: Counter[int] = field(default_factory=Counter)  # by CleverTap (or would-be) code; 0 = no code
    dead_lettered: int = 0
    retried: int = 0
    timestamp_warnings: int = 0
    requests: Counter[tuple[str, int]] = field(default_factory=Counter)  # (endpoint, HTTP status)
    committed: dict[TopicPartition, int] = field(default_factory=dict)

    def summary_lines(self) -> list[str]:
        rejected = sum(self.rejected.values())
        codes = ", ".join(f"{code or 'no code'}: {n}" for code, n in sorted(self.rejected.items()))
        skipped = sum(self.skipped.values())
        reasons = ", ".join(f"{why}: {n}" for why, n in sorted(self.skipped.items()))
        committed = ", ".join(f"{t}[{p}]={o}" for (t, p), o in sorted(self.committed.items())) or "none"
        return [
            f"events read          {self.read}",
            f"undecodable          {self.decode_errors}",
            f"skipped              {skipped}" + (f" ({reasons})" if reasons else ""),
            f"profiles uploaded    {self.profiles_uploaded}",
            f"events uploaded      {self.events_uploaded}",
            f"profiles deleted     {self.profiles_deleted}",
            f"rejected             {rejected}" + (f" (codes {codes})" if codes else ""),
            f"dead-lettered        {self.dead_lettered}",
            f"retried records      {self.retried}",
            f"offsets committed    {committed}",
        ]
