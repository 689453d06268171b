"""The follower: reads the chain through a ``ChainRpc`` and turns the indexer's state into the
next ``Step`` (stages + the state after them). It writes nothing; the publisher does.

One cursor, the state's tip, drives both modes, so the handoff cannot skip or repeat a block:

* backfill: while the window is empty and the tip is below the finalized height, the next
  range of final blocks is read with one ``eth_getLogs`` (adaptive size, see ``ranges.py``);
* head: above the finalized height, block by block: headers first, reconciled with the window
  (``window.reconcile``), then each new block's logs by its hash, so logs always belong to
  the header they are recorded under.

The finalized height is ``head - finality_depth``, lowered to the node's ``finalized`` block
where it reports one, and never moves back.
"""

from __future__ import annotations

import itertools
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from indexer.chain.decode import LogDecoder
from indexer.chain.errors import SHRINKING, ChainMoved, HeadBehind, RangeTooLarge, RpcUnavailable
from indexer.chain.model import (
    BlockRef,
    ChainEvent,
    IndexerState,
    LogsBatch,
    RawLog,
    Stage,
    Step,
)
from indexer.chain.ranges import RangeSizer
from indexer.chain.rpc import ChainRpc
from indexer.chain.window import Fork, append, backfilled, event_id, finalize, reconcile, rollback
from masa.errors import ChainError

log = logging.getLogger("masa.index")


@dataclass(frozen=True)
class FollowConfig:
    finality_depth: int
    use_finalized_tag: bool = True
    max_block_range: int = 2000
    target_logs: int = 10_000
    realtime_batch: int = 100
    """Blocks read header by header in one step."""
    backward_patience: int = 3
    """Consecutive polls a head below our tip is taken for a lagging node."""
    range_attempts: int = 16


class Follower:
    def __init__(
        self,
        rpc: ChainRpc,
        decoder: LogDecoder,
        config: FollowConfig,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.rpc = rpc
        self.decoder = decoder
        self.config = config
        self.sizer = RangeSizer(config.max_block_range, config.target_logs)
        self._sleep = sleep
        self._behind = 0
        self._final = -1
        self._head = -1

    def step(self, state: IndexerState) -> Step | None:
        """The next step from ``state``; None when caught up with the head."""
        if not state.blocks and state.tip.number < self._final:
            return self._backfill(state, self._final)
        head = self._read_head(state)
        final = self._final_height(head, state)
        tip = state.tip
        if not state.blocks and tip.number < final:
            return self._backfill(state, final)
        if head.number < tip.number:
            chain = [head]
        elif state.blocks and tip.number <= final:
            chain = [self._header(tip.number)]
        elif head.number == tip.number:
            chain = [head]
        else:
            chain = self._headers(
                tip.number + 1, min(head.number, tip.number + self.config.realtime_batch)
            )
        step = self._follow(state, head.number, final, chain)
        return step if step.state != state else None

    # --- head and finality --------------------------------------------------------------

    def _read_head(self, state: IndexerState) -> BlockRef:
        head = self._header("latest")
        self._head = max(self._head, head.number)
        if head.number >= state.tip.number:
            self._behind = 0
            return head
        self._behind += 1
        if self._behind < self.config.backward_patience or head.number < state.finalized.number:
            raise HeadBehind(
                f"node head {head.number} is below our tip {state.tip.number}"
                f" ({self._behind} polls); waiting for it"
            )
        log.warning("head %d stayed below our tip %d: following it", head.number, state.tip.number)
        return head

    def _final_height(self, head: BlockRef, state: IndexerState) -> int:
        final = head.number - self.config.finality_depth
        if self.config.use_finalized_tag:
            tagged = self.rpc.finalized()
            if tagged is not None:
                final = min(final, tagged.number)
        self._final = max(self._final, final, state.finalized.number)
        return self._final

    # --- backfill -----------------------------------------------------------------------

    def _backfill(self, state: IndexerState, final: int) -> Step:
        first = state.tip.number + 1
        logs, last = self._fetch_range(state, first, final)
        if any(not first <= raw.block_number <= last for raw in logs):
            raise ChainMoved(f"eth_getLogs {first}..{last} returned logs outside the range")
        end = self._header(last)
        events = self._events(state, logs)
        state, finalized = backfilled(state, end.id, len(events))
        stages: list[Stage] = [LogsBatch(first, end.id, events)] if events else []
        return Step((*stages, finalized), state, max(self._head, last), last - first + 1)

    def _fetch_range(self, state: IndexerState, first: int, final: int) -> tuple[list[RawLog], int]:
        for attempt in range(self.config.range_attempts):
            last = min(final, first + self.sizer.size - 1)
            try:
                logs = self.rpc.logs(state.contracts, self.decoder.topics, first, last)
            except SHRINKING as exc:
                self.sizer = self.sizer.shrink()
                log.info(
                    "eth_getLogs %d..%d: %s; next range %d blocks",
                    first,
                    last,
                    exc,
                    self.sizer.size,
                )
                if not isinstance(exc, RangeTooLarge):
                    self._sleep(min(5.0, 0.05 * 2**attempt))  # short: the range shrinks too
                continue
            self.sizer = self.sizer.grow(last - first + 1, len(logs))
            return logs, last
        raise RpcUnavailable(f"eth_getLogs from {first} failed {self.config.range_attempts} times")

    # --- head following -----------------------------------------------------------------

    def _follow(self, state: IndexerState, head: int, final: int, chain: list[BlockRef]) -> Step:
        fork = self._fork(state, chain)
        state, reorg = rollback(state, fork.ancestor)
        if reorg is not None:
            log.warning("reorg: %d blocks above %d replaced", reorg.depth, fork.ancestor.number)
        events: list[ChainEvent] = []
        for block in fork.new:
            found = self._events(state, self._block_logs(state, block))
            state = append(state, block, found)
            events += found
        state, finalized = finalize(state, final)
        stages: list[Stage] = [reorg] if reorg is not None else []
        if events:
            stages.append(LogsBatch(fork.new[0].number, fork.new[-1].id, tuple(events)))
        if finalized is not None:
            stages.append(finalized)
        return Step(tuple(stages), state, head, len(fork.new))

    def _fork(self, state: IndexerState, chain: list[BlockRef]) -> Fork:
        while True:
            found = reconcile(state, chain)
            if isinstance(found, Fork):
                return found
            parent = self._header(found.number)
            if parent.hash != chain[0].parent_hash:
                raise ChainMoved(f"block {parent.number} changed while walking back")
            chain.insert(0, parent)

    def _block_logs(self, state: IndexerState, block: BlockRef) -> list[RawLog]:
        logs = self.rpc.block_logs(state.contracts, self.decoder.topics, block)
        if any(raw.block_hash != block.hash for raw in logs):
            raise ChainMoved(f"logs of block {block.number} carry another block hash")
        return logs

    # --- reading ------------------------------------------------------------------------

    def _header(self, at: int | str) -> BlockRef:
        block = self.rpc.block(at)
        if block is None:
            raise ChainMoved(f"the node has no block {at}")
        return block

    def _headers(self, first: int, last: int) -> list[BlockRef]:
        chain = [self._header(n) for n in range(first, last + 1)]
        for before, after in itertools.pairwise(chain):
            if after.parent_hash != before.hash:
                raise ChainMoved(f"blocks {before.number} and {after.number} do not link")
        return chain

    def _events(self, state: IndexerState, logs: list[RawLog]) -> tuple[ChainEvent, ...]:
        events = []
        times: dict[tuple[int, str], int] = {}
        for raw in sorted(logs, key=lambda r: (r.block_number, r.log_index)):
            if raw.address not in state.contracts:
                raise ChainError(f"log of {raw.address}, which is not followed")
            decoded = self.decoder.decode(raw, state.chain_id)
            if decoded is not None:
                name, payload, key = decoded
                at = self._block_time(raw, times)
                events.append(ChainEvent(name, payload, event_id(state, payload.log), key, at))
        return tuple(events)

    def _block_time(self, raw: RawLog, known: dict[tuple[int, str], int]) -> int:
        """A chain event occurred when its block was made (not when it was indexed)."""
        if raw.block_timestamp is not None:
            return raw.block_timestamp
        block = (raw.block_number, raw.block_hash)
        if block not in known:
            known[block] = self.rpc.block_time(*block)
        return known[block]
