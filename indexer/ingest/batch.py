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
from indexer.events import types as t
from indexer.events.fields import format_timestamp
from indexer.events.records import FeeReleased, FeeReserved, make_record, record_topic
from indexer.ingest.decide import (
    Accept,
    Hold,
    Policy,
    Reject,
    decide,
    evolve,
    released,
    reserved,
)
from indexer.ingest.dlq import DeadLetter, dlq_id
from indexer.ingest.fees import Finality
from indexer.ingest.port import HeldRecord, HoldSlot, IngestWrite, OutboxRecord, StreamState
from masa.errors import EventRejected

BALANCE = "balance:"
"""Prefix of what a request beyond its oracle's balance awaits (``balance:<oracle>``)."""


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
    """States of every stream the batch touches (owned by this consumer), and of the chains
    whose finality its oracles' pending deposits wait for."""
    nodes: dict[str, StreamState]
    """Node streams of the producers in the batch and of the oracles of its requests, as
    currently known."""
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

    def waiting_with(self, prefix: str) -> list[HeldRecord]:
        """Held messages awaiting anything that starts with ``prefix``, in log order."""
        return sorted(
            (h for a, hs in self._by_awaiting.items() if a.startswith(prefix) for h in hs.values()),
            key=lambda h: h.slot,
        )

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
        match decide(event, stream, producer, self.ctx.policy, self._finality(producer)):
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

    def _oracle(self, address: str) -> StreamState:
        """The node stream of a request's oracle: the runner loads it for every request the
        batch touches, so a missing one is a bug, not an oracle without a stream."""
        state = self._node(address)
        if state is None:
            raise LookupError(f"the stream of oracle {address} was not loaded for this batch")
        return state

    def _finality(self, oracle: StreamState | None) -> Finality:
        """The final block of each chain ``oracle``'s pending deposits are on, as stored (or
        accepted earlier in this batch: written before, so stored before)."""
        if oracle is None or oracle.funds is None:
            return {}
        finality = {}
        for chain_id in {d.chain_id for d in oracle.funds.pending}:
            sid = stream_id(str(chain_id))
            chain = self.write.streams.get(sid) or self.ctx.streams.get(sid)
            if chain is not None and chain.final_block is not None:
                finality[chain_id] = chain.final_block
        return finality

    def _stream(self, event: Event) -> StreamState:
        sid = event.stream_id
        state = self.write.streams.get(sid) or self.ctx.streams.get(sid)
        return state or StreamState(key=event.key)

    def _accept(self, inbound: Inbound, event: Event, stream: StreamState) -> None:
        new = evolve(stream, event, self._finality(stream))
        sid = event.stream_id
        self.write.streams[sid] = new
        self.write.events.append(self._stored(inbound, event, sid, new.version))
        self.write.event_ids.append((event.envelope.id, sid, new.version))
        self._seen.add(event.envelope.id)
        self.stats["stored"] += 1
        if isinstance(event.payload, t.RequestSubmitted):
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
        self._fees(inbound, event, stream)
        if stream.version == 0:
            self._release_waiting(f"request:{event.key}")
        if new.stake and not stream.stake:
            self._release_waiting(f"stake:{event.key}")

    def _fees(self, inbound: Inbound, event: Event, stream: StreamState) -> None:
        """What an accepted event does to an oracle's balance: a request reserves its fee, a
        failure releases it (a record in the oracle's stream, at its next version: the guard
        against another ingestor reserving at once); a deposit, a release or a finality may
        let held requests through."""
        payload = event.payload
        match payload:
            case t.RequestSubmitted(fee=fee) if fee > 0:
                oracle = self._oracle(event.envelope.producer)
                after = reserved(oracle, fee, self._finality(oracle))
                reservation = FeeReserved(
                    request_id=payload.request_id, oracle=oracle.key, fee=fee,
                    cause=event.envelope.id,
                )  # fmt: skip
                self._record(inbound, event, after, reservation)
            case t.RequestFailed() if stream.fee and stream.submitted_by is not None:
                oracle = self._oracle(stream.submitted_by)
                release = FeeReleased(
                    request_id=payload.request_id, oracle=oracle.key, fee=stream.fee,
                    cause=event.envelope.id,
                )  # fmt: skip
                self._record(inbound, event, released(oracle, stream.fee), release)
                self._release_waiting(f"{BALANCE}{oracle.key}")
            case t.FeesDeposited():
                self._release_waiting(f"{BALANCE}{event.key}")
            case t.ChainFinalized():
                for hold in self.ctx.held.waiting_with(BALANCE):
                    self._retry(hold)

    def _record(
        self,
        inbound: Inbound,
        cause: Event,
        oracle: StreamState,
        record: FeeReserved | FeeReleased,
    ) -> None:
        """Append a ledger record to the oracle's stream at ``oracle.version``."""
        sid = stream_id(oracle.key)
        self.write.streams[sid] = oracle
        body = make_record(record, cause.raw["occurred_at"])
        state = orjson.dumps({"record": body, "ingest": self._ingested(inbound)})
        self.write.events.append(StoredEvent(sid, oracle.version, record_topic(body), state))
        self.write.event_ids.append((UUID(body["id"]), sid, oracle.version))
        self.stats["records"] += 1

    def _stored(self, inbound: Inbound, event: Event, sid: UUID, version: int) -> StoredEvent:
        state = orjson.dumps({"envelope": event.raw, "ingest": self._ingested(inbound)})
        return StoredEvent(sid, version, f"{event.envelope.type}.v{event.envelope.version}", state)

    def _ingested(self, inbound: Inbound) -> dict[str, object]:
        return {
            "consumer": self.ctx.consumer,
            "topic": inbound.topic,
            "partition": inbound.partition,
            "offset": inbound.offset,
            "ingested_at": format_timestamp(self.ctx.now),
        }

    def _release_waiting(self, awaiting: str) -> None:
        for hold in self.ctx.held.waiting_for(awaiting):
            self._retry(hold)

    def _hold(self, inbound: Inbound, event: Event, hold: Hold) -> None:
        """Hold a message, or keep holding it: the record is rewritten only when what it
        awaits or why changed (a balance's shortfall moves), and keeps its first hold time."""
        previous = inbound.held
        if previous is not None and (previous.awaiting, previous.detail) == (
            hold.awaiting,
            hold.detail,
        ):
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
        if previous is None or previous.awaiting != hold.awaiting:
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
