"""Turns one poll of records into one ``IngestWrite``: decode, dedupe, decide, evolve, hold,
release. Everything it reads is loaded before it starts; it performs no I/O of its own."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from uuid import UUID

import orjson
from eventsourcing.persistence import StoredEvent

from indexer.bus.base import Record, TopicPartition
from indexer.events import Event, Reason, decode_message, stream_id
from indexer.events.fields import format_timestamp
from indexer.events.types import RequestSubmitted
from indexer.ingest.decide import Accept, Hold, Policy, Reject, decide, evolve
from indexer.ingest.dlq import DeadLetter, dlq_id
from indexer.ingest.port import HeldRecord, HoldSlot, IngestWrite, OutboxRecord, StreamState
from masa.errors import EventRejected


@dataclass(frozen=True)
class Topics:
    events: str
    requests: str
    dlq: str


@dataclass
class Inbound:
    """A message to decide: fresh from the log, or a held one being retried."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes
    held: HeldRecord | None = None

    @classmethod
    def from_record(cls, record: Record) -> Inbound:
        return cls(record.topic, record.partition, record.offset, record.key, record.value)

    @classmethod
    def from_hold(cls, hold: HeldRecord) -> Inbound:
        return cls(hold.topic, hold.partition, hold.offset, hold.key, hold.value, hold)

    @property
    def position(self) -> TopicPartition:
        return TopicPartition(self.topic, self.partition)


@dataclass
class BatchContext:
    """What the batch may read: the states loaded for it and the settings."""

    consumer: str
    topics: Topics
    policy: Policy
    now: datetime
    max_clock_skew: timedelta
    streams: dict[UUID, StreamState]
    """States of every stream the batch touches (owned by this consumer)."""
    nodes: dict[str, StreamState]
    """Node streams of the producers in the batch, as currently known."""
    known_ids: set[UUID]
    held: Holds = field(default_factory=lambda: Holds())
    """Holds of the owned partitions; the builder updates them as it goes."""


class Holds:
    """Held messages of the owned partitions, indexed by what they await and by their slot,
    with the decoded event kept for those held in this process (no second decode)."""

    def __init__(self, records: Iterable[HeldRecord] = ()) -> None:
        self._by_awaiting: dict[str, dict[HoldSlot, HeldRecord]] = {}
        self._decoded: dict[HoldSlot, Event] = {}
        for record in records:
            self.add(record)

    def add(self, record: HeldRecord, decoded: Event | None = None) -> None:
        self._by_awaiting.setdefault(record.awaiting, {})[record.slot] = record
        if decoded is not None:
            self._decoded[record.slot] = decoded

    def remove(self, record: HeldRecord) -> None:
        del self._by_awaiting[record.awaiting][record.slot]
        self._decoded.pop(record.slot, None)

    def __contains__(self, record: HeldRecord) -> bool:
        return record.slot in self._by_awaiting.get(record.awaiting, {})

    def __bool__(self) -> bool:
        return any(self._by_awaiting.values())

    def waiting_for(self, awaiting: str) -> list[HeldRecord]:
        return sorted(self._by_awaiting.get(awaiting, {}).values(), key=lambda h: h.slot)

    def all(self) -> list[HeldRecord]:
        return sorted(
            (h for hs in self._by_awaiting.values() for h in hs.values()), key=lambda h: h.slot
        )

    def decoded(self, record: HeldRecord) -> Event | None:
        return self._decoded.get(record.slot)

    def drop(self, partitions: Iterable[TopicPartition]) -> None:
        lost = set(partitions)
        for held in self._by_awaiting.values():
            for slot in [slot for slot, h in held.items() if h.position in lost]:
                del held[slot]
                self._decoded.pop(slot, None)


class BatchBuilder:
    def __init__(self, ctx: BatchContext) -> None:
        self.ctx = ctx
        self.write = IngestWrite(consumer=ctx.consumer)
        self.stats: Counter[str] = Counter()
        self._seen: set[UUID] = set()
        self._now_ms = int(ctx.now.timestamp() * 1000)

    def add_records(self, decoded: Iterable[tuple[Record, Event | EventRejected]]) -> None:
        for record, outcome in decoded:
            self.write.last_offsets[record.position] = record.offset
            self._handle(Inbound.from_record(record), outcome)

    def retry_holds(self, holds: Iterable[HeldRecord]) -> None:
        """Decide held messages again (their stake may have arrived on another partition)."""
        for hold in holds:
            self._retry(hold)

    def expire(self, holds: Iterable[HeldRecord]) -> None:
        for hold in holds:
            if hold in self.ctx.held:
                self._release(hold)
                self._reject(
                    Inbound.from_hold(hold), Reason(hold.reason), f"held too long: {hold.detail}"
                )

    def _retry(self, hold: HeldRecord) -> None:
        if hold in self.ctx.held:
            inbound = Inbound.from_hold(hold)
            event = self.ctx.held.decoded(hold)
            self._handle(inbound, event or decode(inbound.value, inbound.key, self.ctx))

    def _handle(self, inbound: Inbound, outcome: Event | EventRejected) -> None:
        if isinstance(outcome, EventRejected):
            self._finish_hold(inbound)
            self._reject(inbound, Reason(outcome.reason), outcome.detail)
            return
        event = outcome
        if event.envelope.id in self.ctx.known_ids or event.envelope.id in self._seen:
            self._finish_hold(inbound)
            self.stats["duplicate"] += 1
            return
        stream = self._stream(event)
        producer = self._node(event.envelope.producer) if event.event_type.role.node_role else None
        match decide(event, stream, producer, self.ctx.policy):
            case Accept():
                self._finish_hold(inbound)
                self._accept(inbound, event, stream)
            case Reject(reason, detail):
                self._finish_hold(inbound)
                self._reject(inbound, reason, detail)
            case Hold() as hold:
                self._hold(inbound, event, hold)

    def _node(self, address: str) -> StreamState | None:
        return self.write.streams.get(stream_id(address)) or self.ctx.nodes.get(address)

    def _stream(self, event: Event) -> StreamState:
        sid = event.stream_id
        state = self.write.streams.get(sid) or self.ctx.streams.get(sid)
        return state or StreamState(key=event.key)

    def _accept(self, inbound: Inbound, event: Event, stream: StreamState) -> None:
        new = evolve(stream, event)
        sid = event.stream_id
        self.write.streams[sid] = new
        self.write.events.append(self._stored(inbound, event, sid, new.version))
        self.write.event_ids.append((event.envelope.id, sid, new.version))
        self._seen.add(event.envelope.id)
        self.stats["stored"] += 1
        if isinstance(event.payload, RequestSubmitted):
            self.write.outbox.append(
                OutboxRecord(
                    event.envelope.id,
                    self.ctx.consumer,
                    inbound.position,
                    self.ctx.topics.requests,
                    event.key.encode(),
                    inbound.value,
                )
            )
        if stream.version == 0:
            self._release_waiting(f"request:{event.key}")
        if new.stake and not stream.stake:
            self._release_waiting(f"stake:{event.key}")

    def _stored(self, inbound: Inbound, event: Event, sid: UUID, version: int) -> StoredEvent:
        state = orjson.dumps(
            {
                "envelope": event.raw,
                "ingest": {
                    "consumer": self.ctx.consumer,
                    "topic": inbound.topic,
                    "partition": inbound.partition,
                    "offset": inbound.offset,
                    "ingested_at": format_timestamp(self.ctx.now),
                },
            }
        )
        return StoredEvent(sid, version, f"{event.envelope.type}.v{event.envelope.version}", state)

    def _release_waiting(self, awaiting: str) -> None:
        for hold in self.ctx.held.waiting_for(awaiting):
            self._retry(hold)

    def _hold(self, inbound: Inbound, event: Event, hold: Hold) -> None:
        previous = inbound.held
        if previous is not None and previous.awaiting == hold.awaiting:
            return
        held_at_ms = self._now_ms
        if previous is not None:
            self._release(previous)
            held_at_ms = previous.held_at_ms
        record = HeldRecord(
            self.ctx.consumer,
            inbound.topic,
            inbound.partition,
            inbound.offset,
            event.envelope.id,
            event.envelope.producer,
            hold.awaiting,
            hold.reason,
            hold.detail,
            held_at_ms,
            inbound.key,
            inbound.value,
        )
        self.write.holds[record.slot] = record
        self.ctx.held.add(record, event)
        self.stats["held"] += 1

    def _finish_hold(self, inbound: Inbound) -> None:
        if inbound.held is not None:
            self._release(inbound.held)
            self.stats["released"] += 1

    def _release(self, hold: HeldRecord) -> None:
        self.ctx.held.remove(hold)
        if self.write.holds.pop(hold.slot, None) is None:
            self.write.released.append(hold)

    def _reject(self, inbound: Inbound, reason: Reason, detail: str) -> None:
        self.stats[f"rejected:{reason}"] += 1
        letter = DeadLetter(
            id=dlq_id(self.ctx.consumer, inbound.position, inbound.offset),
            reason=str(reason),
            detail=detail,
            source=inbound.position,
            offset=inbound.offset,
            consumer=self.ctx.consumer,
            rejected_at=format_timestamp(self.ctx.now),
            key=inbound.key,
            value=inbound.value,
        )
        self.write.outbox.append(
            OutboxRecord(
                letter.id,
                self.ctx.consumer,
                inbound.position,
                self.ctx.topics.dlq,
                inbound.key,
                letter.encode(),
            )
        )


def decode(value: bytes, key: bytes | None, ctx: BatchContext) -> Event | EventRejected:
    return decode_or_reject(value, key, now=ctx.now, max_clock_skew=ctx.max_clock_skew)


def decode_or_reject(
    value: bytes, key: bytes | None, *, now: datetime, max_clock_skew: timedelta
) -> Event | EventRejected:
    try:
        return decode_message(value, key, now=now, max_clock_skew=max_clock_skew)
    except EventRejected as exc:
        return exc
