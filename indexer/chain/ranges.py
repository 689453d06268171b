"""Adaptive ``eth_getLogs`` range sizing, as a pure value.

Providers refuse ranges that return too much ("query returned more than 10000 results",
"log response size exceeded"), time out on them or rate-limit them. The range halves on any
of these and grows by a quarter after each success, never beyond ``maximum``. After a range
that returned more than ``target_logs`` logs the next one is sized to the density just seen,
so one step (one bus transaction) stays about that big however dense the logs are.
"""

from __future__ import annotations

from dataclasses import dataclass, replace


@dataclass(frozen=True)
class RangeSizer:
    maximum: int
    target_logs: int = 10_000
    size: int = 0
    """Blocks per request; 0 means ``maximum``."""

    def __post_init__(self) -> None:
        if self.maximum < 1 or self.target_logs < 1:
            raise ValueError("maximum and target_logs must be positive")
        if not 0 <= self.size <= self.maximum:
            raise ValueError(f"size {self.size} outside 0..{self.maximum}")
        if self.size == 0:
            object.__setattr__(self, "size", self.maximum)

    def shrink(self) -> RangeSizer:
        """After a refusal, a timeout or a rate limit."""
        return replace(self, size=max(1, self.size // 2))

    def grow(self, blocks: int, logs: int) -> RangeSizer:
        """After a range of ``blocks`` blocks returned ``logs`` logs."""
        if logs > self.target_logs:
            return replace(self, size=max(1, min(self.size, blocks * self.target_logs // logs)))
        return replace(self, size=min(self.maximum, self.size + max(1, self.size // 4)))
