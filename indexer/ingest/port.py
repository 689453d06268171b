"""Ingest's port to the event store: the records one batch writes atomically, the state
ingest keeps per stream (and its JSON form), and the operations ingest needs from a store.

The store adapters (``indexer.store.postgres``, ``indexer.store.sqlite``) implement
``IngestStore``; this module is the only part of ``indexer.ingest`` they may import (an import
contract in the test suite), so the pure core and the loop stay above the store.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Collection, Iterable
from dataclasses import dataclass, field
from typing import Any
from uuid import UUID

from eventsourcing.persistence import StoredEvent, Tracking

from indexer.bus.base import TopicPartition
from masa.errors import RetryableError

#: Chain entries kept per stream: enough to undo any reorg shallower than the finality depth.
CHAIN_HISTORY = 256


@dataclass(frozen=True)
class ChainEntry:
    event_id: str
    new_stake: int | None = None
    role: int | None = None


@dataclass(frozen=True)
class Deposit:
    """A ``FeesDeposited`` of an oracle that was not final when ingest last looked."""

    event_id: str
    chain_id: int
    block: int
    amount: int


@dataclass(frozen=True)
class Funds:
    """An oracle's prepaid fees as ingest knows them (its own stream, ``indexer.ingest.fees``).

    ``final``: deposits known final; ``pending``: deposits not final yet (a reorg may still
    retract them); ``committed``: fees reserved for accepted requests, open or completed, less
    the releases of failed ones. What a new request may take is ``final - committed`` plus the
    pending deposits final by then."""

    final: int = 0
    pending: tuple[Deposit, ...] = ()
    committed: int = 0

    def to_json(self) -> dict[str, Any]:
        pending = [[d.event_id, d.chain_id, d.block, str(d.amount)] for d in self.pending]
        return {"final": str(self.final), "pending": pending, "committed": str(self.committed)}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Funds:
        pending = tuple(
            Deposit(eid, chain, block, int(n)) for eid, chain, block, n in data["pending"]
        )
        return cls(int(data["final"]), pending, int(data["committed"]))


@dataclass(frozen=True)
class StreamState:
    """What validation needs to know about one aggregate; stored as JSON beside the events.

    ``fee``: on a request's stream, the fee ingest reserved for it (None: nothing reserved);
    ``funds``: on an oracle's node stream, its prepaid fees; ``final_block``: on a chain's
    stream (key: the chain id), the highest block a ``ChainFinalized`` declared final."""

    key: str
    version: int = 0
    submitted_by: str | None = None
    closed: str | None = None
    closed_by: str | None = None
    data_used_by: tuple[str, ...] = ()
    last_seq: int | None = None
    contributor: str | None = None
    chain: tuple[ChainEntry, ...] = ()
    fee: int | None = None
    funds: Funds | None = None
    final_block: int | None = None

    @property
    def stake(self) -> int | None:
        """Active stake after the latest chain event that set one; None if never staked."""
        return next((e.new_stake for e in reversed(self.chain) if e.new_stake is not None), None)

    @property
    def role(self) -> int | None:
        return next((e.role for e in reversed(self.chain) if e.role is not None), None)

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {"key": self.key, "version": self.version}
        names = ("submitted_by", "closed", "closed_by", "last_seq", "contributor", "final_block")
        for name in names:
            if (value := getattr(self, name)) is not None:
                data[name] = value
        if self.data_used_by:
            data["data_used_by"] = list(self.data_used_by)
        if self.chain:
            data["chain"] = [[e.event_id, _str_or_none(e.new_stake), e.role] for e in self.chain]
        if self.fee is not None:
            data["fee"] = str(self.fee)
        if self.funds is not None:
            data["funds"] = self.funds.to_json()
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> StreamState:
        chain = tuple(
            ChainEntry(eid, int(total) if total is not None else None, role)
            for eid, total, role in data.get("chain", ())
        )
        return cls(
            key=data["key"],
            version=data["version"],
            submitted_by=data.get("submitted_by"),
            closed=data.get("closed"),
            closed_by=data.get("closed_by"),
            data_used_by=tuple(data.get("data_used_by", ())),
            last_seq=data.get("last_seq"),
            contributor=data.get("contributor"),
            chain=chain,
            fee=int(data["fee"]) if "fee" in data else None,
            funds=Funds.from_json(data["funds"]) if "funds" in data else None,
            final_block=data.get("final_block"),
        )


def _str_or_none(value: int | None) -> str | None:
    return None if value is None else str(value)


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


class IngestStore(ABC):
    """What ingest needs from an event store: one atomic write per batch, and the state it
    reads back on assignment (offsets, streams, holds, the outbox, known ids, replays)."""

    @abstractmethod
    def write(self, batch: IngestWrite) -> None:
        """Commit a batch; raises ``WriteConflict`` when another writer got there first."""

    @abstractmethod
    def max_tracking_id(self, application_name: str) -> int | None: ...

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
