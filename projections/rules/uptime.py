"""Uptime of a worker in an epoch (DESIGN §7).

A valid heartbeat at ``t`` covers ``[t, t + 2·interval)``. A worker's covered time in an epoch
is the union of its heartbeats' covers, intersected with the intervals in which it was staked,
clipped to the epoch window; ``uptime_ppm = covered * 1_000_000 // epoch_length``: the
denominator is the whole epoch, so time not staked counts as down. Integers only.

Late heartbeats (stored after their epoch closed) earn nothing and are not passed in: the read
model counts them apart.

``Coverage`` is an immutable set of seconds, kept as sorted, disjoint, non-adjacent half-open
intervals. Adding at the end (the common case: heartbeats arrive in time order) compares with
the last interval only; the tuple copy it makes is as long as the number of disjoint
intervals, which is the number of outages, not of heartbeats.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections.abc import Iterable
from dataclasses import dataclass

PPM = 1_000_000

Interval = tuple[int, int]


@dataclass(frozen=True)
class Coverage:
    """Sorted, disjoint, non-adjacent half-open intervals ``[start, end)`` of unix seconds."""

    intervals: tuple[Interval, ...] = ()

    @classmethod
    def of(cls, intervals: Iterable[Interval]) -> Coverage:
        """The union of ``intervals`` (any order, overlaps allowed; empty ones ignored)."""
        merged: list[Interval] = []
        for start, end in sorted(i for i in intervals if i[0] < i[1]):
            if merged and start <= merged[-1][1]:
                merged[-1] = (merged[-1][0], max(merged[-1][1], end))
            else:
                merged.append((start, end))
        return cls(tuple(merged))

    def add(self, start: int, end: int) -> Coverage:
        """This coverage with ``[start, end)`` added, merged with what it touches."""
        if start >= end:
            return self
        if not self.intervals or start > self.intervals[-1][1]:
            return Coverage((*self.intervals, (start, end)))
        last_start, last_end = self.intervals[-1]
        if start >= last_start:
            return Coverage((*self.intervals[:-1], (last_start, max(last_end, end))))
        return self._merged_in(start, end)

    def _merged_in(self, start: int, end: int) -> Coverage:
        """``add`` anywhere: replace the intervals that overlap or touch ``[start, end)``."""
        ends = [e for _, e in self.intervals]
        starts = [s for s, _ in self.intervals]
        first = bisect_left(ends, start)
        last = bisect_right(starts, end)
        touched = self.intervals[first:last]
        if touched:
            start, end = min(start, touched[0][0]), max(end, touched[-1][1])
        return Coverage((*self.intervals[:first], (start, end), *self.intervals[last:]))

    def measure(self) -> int:
        """Seconds covered."""
        return sum(end - start for start, end in self.intervals)

    def clip(self, start: int, end: int) -> Coverage:
        """The part of this coverage inside ``[start, end)``."""
        return self.intersect(Coverage(((start, end),) if start < end else ()))

    def intersect(self, other: Coverage) -> Coverage:
        """Seconds covered by both (a linear merge of the two sorted lists)."""
        mine, theirs = self.intervals, other.intervals
        out: list[Interval] = []
        i = j = 0
        while i < len(mine) and j < len(theirs):
            start, end = max(mine[i][0], theirs[j][0]), min(mine[i][1], theirs[j][1])
            if start < end:
                out.append((start, end))
            if mine[i][1] < theirs[j][1]:
                i += 1
            else:
                j += 1
        return Coverage(tuple(out))

    def __contains__(self, second: object) -> bool:
        """Whether the second ``[second, second + 1)`` is covered."""
        if not isinstance(second, int):
            return False
        index = bisect_right([start for start, _ in self.intervals], second) - 1
        return index >= 0 and self.intervals[index][1] > second


@dataclass(frozen=True)
class EpochUptime:
    """A worker's uptime in one epoch, with its evidence.

    ``covered_s``: seconds covered by heartbeats while staked; ``staked_s``: seconds staked;
    ``expected_s``: the epoch's length (the denominator); ``heartbeats``: heartbeats timed
    inside the window (each one counted, duplicates of a time included).
    """

    covered_s: int
    staked_s: int
    expected_s: int
    uptime_ppm: int
    heartbeats: int


def heartbeat_coverage(heartbeat_times: Iterable[int], interval: int) -> Coverage:
    """Union of ``[t, t + 2·interval)`` over the heartbeats."""
    return Coverage.of((t, t + 2 * interval) for t in heartbeat_times)


def epoch_uptime(
    heartbeat_times: Iterable[int], interval: int, window: Interval, staked: Coverage
) -> EpochUptime:
    """The uptime of a worker in the epoch ``window = (start, end)``.

    ``heartbeat_times`` may include heartbeats from before the window: their cover is clipped.
    """
    start, end = window
    if interval <= 0 or end <= start:
        raise ValueError("interval and the epoch window must be positive")
    times = list(heartbeat_times)
    staked_here = staked.clip(start, end)
    covered = heartbeat_coverage(times, interval).intersect(staked_here).measure()
    return EpochUptime(
        covered_s=covered,
        staked_s=staked_here.measure(),
        expected_s=end - start,
        uptime_ppm=covered * PPM // (end - start),
        heartbeats=sum(1 for t in times if start <= t < end),
    )
