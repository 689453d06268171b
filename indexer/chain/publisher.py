"""Turns a follower's step into bus records, signed by the indexer's key, and writes them
with the new checkpoint in one transaction: a crash leaves either all of them or none.

Order within a step: retractions (newest log first), then new logs in chain order, then
the finality marker. A retraction goes to its original's stream, so to the same partition,
after it.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from uuid import UUID

from eth_account.signers.local import LocalAccount

from indexer.bus.base import Bus, TransactionalProducer
from indexer.chain import checkpoint
from indexer.chain.model import Finalized, IndexerState, LogsBatch, Reorg, Retraction, Step
from indexer.events import MASA_NAMESPACE, SignedMessage, make_event, retraction_id
from indexer.events.types import ChainFinalized, ChainLog, ChainLogRetracted


@dataclass(frozen=True)
class Topics:
    events: str
    checkpoints: str


def marker_id(state: IndexerState, finalized: Finalized) -> UUID:
    block = finalized.block
    contracts = ",".join(state.contracts)
    return uuid.uuid5(
        MASA_NAMESPACE, f"finalized:{state.chain_id}:{contracts}:{block.number}:{block.hash}"
    )


class Publisher:
    """Owns the transactional producer of one indexer (its id fences older instances).

    A ``ChainFinalized`` marker is written when finality advanced and either the number of
    final logs changed or ``marker_interval_s`` passed since the last marker, so a quiet
    chain still shows progress without a marker per block.
    """

    def __init__(
        self,
        bus: Bus,
        account: LocalAccount,
        topics: Topics,
        key: bytes,
        *,
        marker_interval_s: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.bus = bus
        self.account = account
        self.topics = topics
        self.key = key
        self.marker_interval_s = marker_interval_s
        self._clock = clock
        self._last_marker: tuple[int, float] | None = None
        self._producer: TransactionalProducer = bus.transactional_producer(self.transactional_id)

    @property
    def transactional_id(self) -> str:
        return f"masa-indexer-{self.key.decode()}"

    def load(self) -> IndexerState | None:
        """The last committed checkpoint (read after the producer fenced older ones)."""
        return checkpoint.load(self.bus, self.topics.checkpoints, self.key)

    def publish(self, step: Step) -> int:
        """Sign, send and commit; returns the number of events written."""
        marker = self._due_marker(step)
        messages = list(self._messages(step, marker))
        for message in messages:
            self._producer.send(self.topics.events, message.key.encode(), message.value)
        self._producer.send(self.topics.checkpoints, self.key, checkpoint.encode(step.state))
        self._producer.commit()
        if marker is not None:
            self._last_marker = (marker.log_count, self._clock())
        return len(messages)

    def reopen(self) -> None:
        """After a failed commit: a new producer settles the old transaction either way."""
        self._producer.close()
        self._producer = self.bus.transactional_producer(self.transactional_id)

    def close(self) -> None:
        self._producer.close()

    def _messages(self, step: Step, marker: Finalized | None) -> Iterator[SignedMessage]:
        for stage in step.stages:
            match stage:
                case Reorg(retracted=retracted):
                    yield from (self._retraction(step.state, r) for r in retracted)
                case LogsBatch(events=events):
                    for e in events:
                        yield make_event(
                            self.account, e.type, e.payload, event_id=e.event_id,
                            occurred_at=_block_datetime(e.block_time),
                        )  # fmt: skip
        if marker is not None:
            yield self._marker(step.state, marker)

    def _retraction(self, state: IndexerState, retraction: Retraction) -> SignedMessage:
        p, block = retraction.published, retraction.block
        assert block.hash is not None
        log = ChainLog(
            chain_id=state.chain_id,
            contract=p.contract,
            block_number=block.number,
            block_hash=block.hash,
            tx_hash=p.tx_hash,
            log_index=p.log_index,
        )
        payload = ChainLogRetracted(
            log=log, retracted_id=p.event_id, retracted_type=p.type, stream_key=p.stream_key
        )
        return make_event(
            self.account, "ChainLogRetracted", payload, event_id=retraction_id(p.event_id)
        )

    def _due_marker(self, step: Step) -> Finalized | None:
        finalized = next((s for s in step.stages if isinstance(s, Finalized)), None)
        last = self._last_marker
        if finalized is None or last is None:
            return finalized
        quiet = self._clock() - last[1] < self.marker_interval_s
        return None if quiet and last[0] == finalized.log_count else finalized

    def _marker(self, state: IndexerState, finalized: Finalized) -> SignedMessage:
        block = finalized.block
        assert block.hash is not None
        payload = ChainFinalized(
            chain_id=state.chain_id,
            block_number=block.number,
            block_hash=block.hash,
            log_count=finalized.log_count,
            contracts=list(state.contracts),
        )
        return make_event(
            self.account, "ChainFinalized", payload, event_id=marker_id(state, finalized)
        )


def _block_datetime(block_time: int | None) -> datetime | None:
    return None if block_time is None else datetime.fromtimestamp(block_time, UTC)
