"""The unfinalized window: reorg detection and bookkeeping, as pure functions of values.

The follower fetches headers; ``reconcile`` tells it where the canonical chain and the
window part (the common ancestor) or that it needs one more header below. ``rollback``,
``append``, ``backfilled`` and ``finalize`` turn the state into the next one and say what to
publish. Nothing here performs I/O.
"""

from __future__ import annotations

import itertools
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, replace
from uuid import UUID

from indexer.chain.model import (
    BlockId,
    BlockRef,
    ChainEvent,
    Finalized,
    IndexerState,
    Reorg,
    Retraction,
    TrackedBlock,
)
from indexer.events import MASA_NAMESPACE, chain_event_id
from indexer.events.types import ChainLog
from masa.errors import ChainError, ReorgTooDeep


def initial_state(chain_id: int, contracts: Sequence[str], start_block: int) -> IndexerState:
    """Nothing processed yet: the block before ``start_block`` counts as final, hash unknown."""
    return IndexerState(
        chain_id,
        tuple(sorted(c.lower() for c in contracts)),
        start_block,
        BlockId(start_block - 1, None),
    )


def event_id(state: IndexerState, log: ChainLog) -> UUID:
    """The id to publish ``log`` under: ``chain_event_id`` unless its block was retracted
    before, then a new id per return of that block to the canonical chain."""
    base = chain_event_id(log)
    times = state.times_retracted(log.block_hash)
    return base if times == 0 else uuid.uuid5(MASA_NAMESPACE, f"{base}:returned:{times}")


# --- where the chain and the window part ------------------------------------------------


@dataclass(frozen=True)
class Fork:
    """The canonical chain agrees with ours up to ``ancestor``; ``new`` follows it."""

    ancestor: BlockId
    new: tuple[BlockRef, ...]


@dataclass(frozen=True)
class NeedParent:
    """No common block in the headers given: fetch the header at ``number`` and prepend it."""

    number: int


def reconcile(state: IndexerState, chain: Sequence[BlockRef]) -> Fork | NeedParent:
    """Compare canonical headers with the window.

    ``chain`` is a linked, ascending run of canonical headers that starts between the
    finalized block and one block above our tip. Raises ``ReorgTooDeep`` when the chain
    replaced the finalized block.
    """
    _check_chain(state, chain)
    canonical = {c.number: c.hash for c in chain}
    canonical[chain[0].number - 1] = chain[0].parent_hash
    lowest = max(state.finalized.number, chain[0].number - 1)
    for number in range(min(state.tip.number, chain[-1].number), lowest - 1, -1):
        ours = state.hash_at(number)
        if ours == canonical[number] or (ours is None and number == state.finalized.number):
            new = tuple(c for c in chain if c.number > number)
            return Fork(BlockId(number, canonical[number]), new)
    if lowest <= state.finalized.number:
        raise ReorgTooDeep(
            f"the chain replaced finalized block {state.finalized.number}"
            f" ({state.finalized.hash} is now {canonical[state.finalized.number]}):"
            " a reorg deeper than the finality depth"
        )
    return NeedParent(chain[0].number - 1)


def _check_chain(state: IndexerState, chain: Sequence[BlockRef]) -> None:
    if not chain:
        raise ValueError("reconcile needs at least one header")
    if not state.finalized.number <= chain[0].number <= state.tip.number + 1:
        raise ValueError(f"headers from {chain[0].number} do not meet the window at {state.tip}")
    for before, after in itertools.pairwise(chain):
        if after.number != before.number + 1 or after.parent_hash != before.hash:
            raise ValueError(f"headers {before.number} and {after.number} do not link")


# --- state transitions ------------------------------------------------------------------


def rollback(state: IndexerState, ancestor: BlockId) -> tuple[IndexerState, Reorg | None]:
    """Drop the window's blocks above ``ancestor``; what they published is to be retracted."""
    keep = ancestor.number - state.finalized.number
    dropped = state.blocks[keep:]
    if not dropped:
        return state, None
    retracted = tuple(
        Retraction(p, tracked.block.id)
        for tracked in reversed(dropped)
        for p in reversed(tracked.published)
    )
    counts = {h: (n, t) for h, n, t in state.retracted}
    for tracked in dropped:
        n, times = counts.get(tracked.block.hash, (tracked.block.number, 0))
        counts[tracked.block.hash] = (n, times + 1)
    new = replace(state, blocks=state.blocks[:keep], retracted=_sorted_counts(counts))
    return new, Reorg(ancestor, len(dropped), retracted)


def append(state: IndexerState, block: BlockRef, events: Sequence[ChainEvent]) -> IndexerState:
    """Add a processed block on top of the tip."""
    tip = state.tip
    if block.number != tip.number + 1 or (tip.hash is not None and block.parent_hash != tip.hash):
        raise ChainError(f"block {block.number} ({block.hash}) does not extend {tip}")
    tracked = TrackedBlock(block, tuple(e.published() for e in events))
    return replace(state, blocks=(*state.blocks, tracked))


def backfilled(state: IndexerState, last: BlockId, logs: int) -> tuple[IndexerState, Finalized]:
    """Finalized blocks up to ``last`` were published in one range (the window is empty)."""
    if state.blocks or last.number < state.finalized.number:
        raise ChainError(f"cannot backfill to {last.number} from {state.tip}")
    return _finalized(state, last, (), state.log_count + logs)


def finalize(state: IndexerState, number: int) -> tuple[IndexerState, Finalized | None]:
    """Blocks of the window up to ``number`` become final."""
    count = min(number, state.tip.number) - state.finalized.number
    if count <= 0:
        return state, None
    done, rest = state.blocks[:count], state.blocks[count:]
    logs = state.log_count + sum(len(t.published) for t in done)
    return _finalized(state, done[-1].block.id, rest, logs)


def _finalized(
    state: IndexerState, last: BlockId, rest: tuple[TrackedBlock, ...], log_count: int
) -> tuple[IndexerState, Finalized]:
    retracted = tuple(r for r in state.retracted if r[1] > last.number)
    new = replace(state, finalized=last, blocks=rest, log_count=log_count, retracted=retracted)
    return new, Finalized(last, log_count)


def _sorted_counts(counts: dict[str, tuple[int, int]]) -> tuple[tuple[str, int, int], ...]:
    return tuple(sorted(((h, n, t) for h, (n, t) in counts.items()), key=lambda r: (r[1], r[0])))
