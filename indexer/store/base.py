"""The event-store port of ingest: eventsourcing's process recorder (stored events, single-row
tracking, notification log) plus the few tables ingest keeps in the same transaction:

- ``ingest_event_ids``: every stored event id, the dedupe of last resort;
- ``ingest_streams``: per aggregate, the version and the state validation needs;
- ``ingest_holds``: events waiting for their request or their producer's stake;
- ``ingest_outbox``: dead letters and accepted requests, published to the bus after commit;
- ``dlq_replays``: dead letters an operator sent back to the events topic.

Two adapters implement it, PostgreSQL (COPY) and SQLite, behind eventsourcing's
``insert_events(stored_events, **kwargs)`` interface.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Collection, Iterable
from dataclasses import dataclass, field
from typing import Any
from uuid import UUID

from eventsourcing.persistence import Notification, ProcessRecorder, StoredEvent, Tracking

from indexer.bus.base import TopicPartition
from indexer.ingest.decide import StreamState
from masa.errors import RetryableError


class WriteConflict(RetryableError):
    """Another writer got there first (offsets moved, an event id or version exists): reload
    from the store and redo the batch."""


@dataclass(frozen=True)
class HeldRecord:
    consumer: str
    topic: str
    partition: int
    offset: int
    event_id: UUID
    producer: str
    awaiting: str
    reason: str
    detail: str
    held_at_ms: int
    key: bytes | None
    value: bytes

    @property
    def position(self) -> TopicPartition:
        return TopicPartition(self.topic, self.partition)

    def row(self) -> tuple[Any, ...]:
        """The ``ingest_holds`` row, in column order (event id as a UUID)."""
        return (
            self.consumer, self.topic, self.partition, self.offset, self.event_id, self.producer,
            self.awaiting, self.reason, self.detail, self.held_at_ms, self.key, self.value,
        )  # fmt: skip

    @property
    def slot(self) -> HoldSlot:
        """Where the held message sits in the log: its identity."""
        return (self.topic, self.partition, self.offset)


HoldSlot = tuple[str, int, int]


@dataclass(frozen=True)
class OutboxRecord:
    id: UUID
    consumer: str
    source: TopicPartition
    topic: str
    key: bytes | None
    value: bytes


@dataclass
class IngestWrite:
    """Everything one batch changes, committed atomically."""

    consumer: str
    last_offsets: dict[TopicPartition, int] = field(default_factory=dict)
    events: list[StoredEvent] = field(default_factory=list)
    event_ids: list[tuple[UUID, UUID, int]] = field(default_factory=list)
    streams: dict[UUID, StreamState] = field(default_factory=dict)
    holds: dict[HoldSlot, HeldRecord] = field(default_factory=dict)
    released: list[HeldRecord] = field(default_factory=list)
    outbox: list[OutboxRecord] = field(default_factory=list)

    def is_empty(self) -> bool:
        return not (self.last_offsets or self.streams or self.holds or self.released or self.outbox)

    def trackings(self) -> list[Tracking]:
        return [
            Tracking(tracking_name(self.consumer, tp), off) for tp, off in self.last_offsets.items()
        ]


def tracking_name(consumer: str, tp: TopicPartition) -> str:
    return f"{consumer}/{tp.topic}/{tp.partition}"


class EventStore(ProcessRecorder, ABC):
    """What ingest, the CLI and projections need from a store backend."""

    @abstractmethod
    def write(self, batch: IngestWrite) -> None:
        """Commit a batch; raises ``WriteConflict`` when another writer got there first."""

    def next_offsets(
        self, consumer: str, partitions: Iterable[TopicPartition]
    ) -> dict[TopicPartition, int]:
        result = {}
        for tp in partitions:
            last = self.max_tracking_id(tracking_name(consumer, tp))
            result[tp] = 0 if last is None else last + 1
        return result

    @abstractmethod
    def load_streams(self, stream_ids: Collection[UUID]) -> dict[UUID, StreamState]: ...

    @abstractmethod
    def known_event_ids(self, event_ids: Collection[UUID]) -> set[UUID]: ...

    @abstractmethod
    def load_holds(
        self, consumer: str, partitions: Collection[TopicPartition]
    ) -> list[HeldRecord]: ...

    @abstractmethod
    def unpublished(
        self, consumer: str, partitions: Collection[TopicPartition]
    ) -> list[OutboxRecord]: ...

    @abstractmethod
    def mark_published(self, ids: Collection[UUID], at_ms: int) -> None: ...

    @abstractmethod
    def record_replays(self, dlq_ids: Collection[UUID], at_ms: int) -> None:
        """Remember dead letters that ``masa dlq replay`` sent back."""

    @abstractmethod
    def replayed(self) -> dict[UUID, int]:
        """Dead letters already replayed, with when (ms)."""

    @abstractmethod
    def count_events(self) -> dict[str, int]:
        """Stored events per topic (``Type.vN``)."""

    @abstractmethod
    def close(self) -> None: ...

    def notifications(self, start: int = 1, limit: int = 1000) -> list[Notification]:
        return list(self.select_notifications(start, limit))
