"""How far the group may commit, per partition, while jobs finish out of order (pure).

A partition's committable offset is its lowest offset still in hand, or one past the last
offset taken when none is: everything below it has its result on the bus.
"""

from __future__ import annotations

from collections.abc import Iterable

from indexer.bus.base import TopicPartition


class OffsetTracker:
    def __init__(self) -> None:
        self._in_hand: dict[TopicPartition, set[int]] = {}
        self._next: dict[TopicPartition, int] = {}
        self._committed: dict[TopicPartition, int] = {}

    def taken(self, tp: TopicPartition, offset: int) -> None:
        """A record was taken to serve; it stays in hand until ``done``."""
        self._in_hand.setdefault(tp, set()).add(offset)
        self._next[tp] = max(self._next.get(tp, 0), offset + 1)

    def done(self, tp: TopicPartition, offset: int) -> None:
        """The record's result is on the bus (or it needed none)."""
        self._in_hand.get(tp, set()).discard(offset)

    def committable(self) -> dict[TopicPartition, int]:
        """Offsets to commit now: those ahead of the last commit."""
        offsets = {}
        for tp, next_offset in self._next.items():
            in_hand = self._in_hand.get(tp)
            target = min(in_hand) if in_hand else next_offset
            if target > self._committed.get(tp, -1):
                offsets[tp] = target
        return offsets

    def committed(self, offsets: dict[TopicPartition, int]) -> None:
        self._committed.update(offsets)

    def forget(self, partitions: Iterable[TopicPartition]) -> None:
        """Partitions this consumer no longer owns: never commit them."""
        for tp in partitions:
            self._in_hand.pop(tp, None)
            self._next.pop(tp, None)
            self._committed.pop(tp, None)
