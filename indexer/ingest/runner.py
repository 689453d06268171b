"""The ingest loop: poll the events topic, build one batch, commit it with the offsets, publish
the outbox. Any failed write is handled like a restart: caches are dropped and every owned
partition re-reads from the offset stored with the events."""

from __future__ import annotations

import logging
import time
from collections import Counter, OrderedDict
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from uuid import UUID

from indexer.bus.base import Bus, Record, TopicPartition, partition_for
from indexer.events import Event, NodeRole, Reason, stream_id
from indexer.events.types import FeesDeposited
from indexer.ingest.batch import (
    BALANCE,
    BatchBuilder,
    BatchContext,
    Holds,
    Topics,
    decode_or_reject,
)
from indexer.ingest.decide import Policy
from indexer.ingest.port import IngestStore, OutboxRecord, StreamState, WriteConflict
from indexer.retry import Backoff
from masa.errors import EventRejected, RetryableError

log = logging.getLogger("masa.ingest")


@dataclass(frozen=True)
class IngestConfig:
    consumer_name: str
    topics: Topics
    policy: Policy
    instance_id: str | None = None
    batch_max_events: int = 5000
    poll_timeout_s: float = 0.5
    max_clock_skew: timedelta = timedelta(minutes=5)
    hold_timeout: timedelta = timedelta(hours=1)
    hold_recheck_s: float = 1.0
    retry_budget_s: float | None = None
    """Stop (re-raise) once steps have failed for this long in a row; None: retry forever."""
    stream_cache_size: int = 200_000


def _slot(record: Record) -> tuple[str, int, int]:
    return (record.topic, record.partition, record.offset)


def _shared(state: StreamState) -> bool:
    """Whether other partitions write to this stream too: an oracle's, where every ingestor
    that accepts one of its requests records the reservation. Never cached: each batch reads
    it from the store, and the ``(stream, version)`` key turns a race into a redo."""
    return state.funds is not None or state.role == NodeRole.ORACLE


class _LRU(OrderedDict[UUID, StreamState]):
    def __init__(self, size: int) -> None:
        super().__init__()
        self.size = size

    def put(self, key: UUID, value: StreamState) -> None:
        self[key] = value
        self.move_to_end(key)
        while len(self) > self.size:
            self.popitem(last=False)


class Ingestor:
    """Owns some partitions of the events topic (as a member of the consumer group)."""

    def __init__(
        self,
        bus: Bus,
        store: IngestStore,
        config: IngestConfig,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.config = config
        self.store = store
        self.clock = clock
        self.stats: Counter[str] = Counter()
        self._consumer = bus.consumer(group=config.consumer_name, instance_id=config.instance_id)
        self._producer = bus.producer()
        self._partitions = bus.partitions(config.topics.events)
        self._owned: set[TopicPartition] = set()
        self._cache = _LRU(config.stream_cache_size)
        self._held = Holds()
        self._unpublished: list[OutboxRecord] = []
        #: The checked records of a batch that conflicted, by slot, for its redo.
        self._redo: dict[tuple[str, int, int], Event | EventRejected] = {}
        self._last_recheck = 0.0
        #: The error of the last step when it failed (None once a step succeeds).
        self.failing: RetryableError | None = None

    # --- group membership -------------------------------------------------------------------

    def on_assigned(self, partitions: list[TopicPartition]) -> Mapping[TopicPartition, int | None]:
        log.info("assigned %s", ", ".join(f"{tp.topic}[{tp.partition}]" for tp in partitions))
        self._owned |= set(partitions)
        self._load_holds(partitions)
        self._unpublished += self.store.unpublished(self.config.consumer_name, partitions)
        return dict(self.store.next_offsets(self.config.consumer_name, partitions))

    def on_revoked(self, partitions: list[TopicPartition]) -> None:
        if partitions:
            log.info("revoked %s", ", ".join(f"{tp.topic}[{tp.partition}]" for tp in partitions))
        self._owned -= set(partitions)
        self._cache.clear()
        self._redo.clear()
        self._held.drop(partitions)

    def _load_holds(self, partitions: Collection[TopicPartition]) -> None:
        for hold in self.store.load_holds(self.config.consumer_name, partitions):
            self._held.add(hold)

    # --- the loop ---------------------------------------------------------------------------

    def run(
        self,
        should_stop: Callable[[], bool],
        on_batch: Callable[[Counter[str]], None] | None = None,
    ) -> None:
        self._consumer.subscribe([self.config.topics.events], self)
        backoff = Backoff()
        failing_since = 0.0
        try:
            while not should_stop():
                try:
                    batch_stats = self.step()
                    backoff.reset()
                    self.failing = None
                except RetryableError as exc:
                    if self.failing is None:
                        failing_since = time.monotonic()
                    self.failing = exc
                    budget = self.config.retry_budget_s
                    if budget is not None and time.monotonic() - failing_since >= budget:
                        raise
                    delay = backoff.next_delay()
                    log.warning("%s; retrying in %.1fs", exc, delay)
                    self._reset()
                    backoff.pause(delay, should_stop)
                    continue
                if on_batch and batch_stats:
                    on_batch(batch_stats)
        finally:
            self.close()

    def step(self) -> Counter[str]:
        """One poll, one batch, one transaction, then publishing. Returns what it did."""
        records = self._consumer.poll(self.config.batch_max_events, self.config.poll_timeout_s)
        self._publish()
        due = self._holds_due()
        if not records and not due:
            return Counter()
        now = self.clock()
        redo, self._redo = self._redo, {}
        decoded = [(r, redo.get(_slot(r)) or self._decode(r, now)) for r in records]
        builder = BatchBuilder(self._context(decoded, now))
        builder.add_records(decoded)
        if due:
            self._recheck_holds(builder, now)
        if not self._commit(builder):
            # the records come again from the stored offsets: keep their checks (an offset's
            # bytes never change), so a redo costs no second signature recovery
            self._redo = {_slot(r): outcome for r, outcome in decoded}
        return builder.stats

    def _decode(self, record: Record, now: datetime) -> Event | EventRejected:
        outcome = decode_or_reject(
            record.value, record.key, now=now, max_clock_skew=self.config.max_clock_skew
        )
        if isinstance(outcome, Event):
            expected = partition_for(outcome.key.encode(), self._partitions)
            if record.partition != expected:
                return EventRejected(
                    Reason.WRONG_KEY,
                    f"key {outcome.key!r} belongs in partition {expected}, not {record.partition}",
                )
        return outcome

    def _holds_due(self) -> bool:
        if not self._held:
            return False
        return time.monotonic() - self._last_recheck >= self.config.hold_recheck_s

    def _recheck_holds(self, builder: BatchBuilder, now: datetime) -> None:
        self._last_recheck = time.monotonic()
        cutoff_ms = int((now - self.config.hold_timeout).timestamp() * 1000)
        holds = self._held.all()
        builder.expire([h for h in holds if h.held_at_ms <= cutoff_ms])
        builder.retry_holds([h for h in holds if h.awaiting.startswith(("stake:", BALANCE))])

    def _context(
        self, decoded: list[tuple[Record, Event | EventRejected]], now: datetime
    ) -> BatchContext:
        holds = self._held.all()
        events = [d for _, d in decoded if isinstance(d, Event)]
        keys = {e.key for e in events} | {h.key.decode() for h in holds if h.key is not None}
        producers = {e.envelope.producer for e in events} | {h.producer for h in holds}
        streams = self._load({stream_id(k) for k in keys} | {stream_id(p) for p in producers})
        # the oracles of the requests touched (a failure releases its fee in the oracle's
        # stream), then the chains their pending deposits wait on
        oracles = {s.submitted_by for s in streams.values() if s.submitted_by is not None}
        streams |= self._load({stream_id(o) for o in oracles} - streams.keys())
        chains = {d.chain_id for s in streams.values() if s.funds for d in s.funds.pending}
        chains |= {e.payload.log.chain_id for e in events if isinstance(e.payload, FeesDeposited)}
        streams |= self._load({stream_id(str(c)) for c in chains} - streams.keys())
        producers |= oracles
        ids = {e.envelope.id for e in events} | {h.event_id for h in holds}
        return BatchContext(
            consumer=self.config.consumer_name,
            topics=self.config.topics,
            policy=self.config.policy,
            now=now,
            max_clock_skew=self.config.max_clock_skew,
            streams=streams,
            nodes={p: s for p in producers if (s := streams.get(stream_id(p))) is not None},
            known_ids=self.store.known_event_ids(ids),
            held=self._held,
        )

    def _load(self, wanted: set[UUID]) -> dict[UUID, StreamState]:
        cached = {sid: self._cache[sid] for sid in wanted if sid in self._cache}
        return cached | self.store.load_streams(wanted - cached.keys())

    def _commit(self, builder: BatchBuilder) -> bool:
        """Write the batch; False when another writer got there first (then reset)."""
        write = builder.write
        if write.is_empty():
            return True
        try:
            self.store.write(write)
        except WriteConflict:
            log.warning("batch conflicted with another writer; re-reading from stored offsets")
            self.stats["conflicts"] += 1
            self._reset()
            return False
        except Exception:
            self._reset()
            raise
        for sid, state in write.streams.items():
            if self._owns(state.key) and not _shared(state):
                self._cache.put(sid, state)
            else:
                self._cache.pop(sid, None)
        self.stats.update(builder.stats)
        self._unpublished += write.outbox
        self._publish()
        return True

    def _owns(self, key: str) -> bool:
        tp = TopicPartition(
            self.config.topics.events, partition_for(key.encode(), self._partitions)
        )
        return tp in self._owned

    def _reset(self) -> None:
        """Forget everything not in the store and re-read owned partitions from it."""
        self._cache.clear()
        self._held = Holds()
        self._load_holds(self._owned)
        offsets = self.store.next_offsets(self.config.consumer_name, self._owned)
        for tp, offset in offsets.items():
            self._consumer.seek(tp, offset)

    def _publish(self) -> None:
        if not self._unpublished:
            return
        pending, self._unpublished = self._unpublished, []
        try:
            for record in pending:
                self._producer.send(record.topic, record.key, record.value)
            self._producer.flush()
            self.store.mark_published([r.id for r in pending], int(time.time() * 1000))
        except RetryableError as exc:
            log.warning("publishing %d outbox records failed (%s); will retry", len(pending), exc)
            self._unpublished = pending + self._unpublished

    def close(self) -> None:
        try:
            self._publish()
        finally:
            self._consumer.close()
            self._producer.close()
