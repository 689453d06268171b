"""The unfinalized window, pure: where two chains part, what to retract, what becomes final."""

from __future__ import annotations

import itertools
import uuid

import pytest
from eth_utils import keccak
from hypothesis import given
from hypothesis import strategies as st

from indexer.chain.model import BlockId, BlockRef, ChainEvent, Published
from indexer.chain.window import (
    Fork,
    NeedParent,
    append,
    backfilled,
    event_id,
    finalize,
    initial_state,
    reconcile,
    rollback,
)
from indexer.events import chain_event_id
from indexer.events.types import ChainLog, Funded
from masa.errors import ReorgTooDeep

CONTRACT = "0x" + "ab" * 20
_n = itertools.count()


def h(tag: str = "") -> str:
    return "0x" + keccak(text=f"{tag}{next(_n)}").hex()


def branch(parent: BlockRef, length: int) -> list[BlockRef]:
    blocks = []
    for _ in range(length):
        parent = BlockRef(parent.number + 1, h("b"), parent.hash)
        blocks.append(parent)
    return blocks


def events_of(block: BlockRef, count: int) -> list[ChainEvent]:
    out = []
    for i in range(count):
        log = ChainLog(
            chain_id=1,
            contract=CONTRACT,
            block_number=block.number,
            block_hash=block.hash,
            tx_hash=h("tx"),
            log_index=i,
        )
        payload = Funded(log=log, funder=CONTRACT, amount=1, new_total_funded=1)
        out.append(ChainEvent("Funded", payload, chain_event_id(log), CONTRACT))
    return out


def indexed(blocks: list[BlockRef], logs: int = 1):
    state = initial_state(1, [CONTRACT], blocks[0].number)
    for block in blocks:
        state = append(state, block, events_of(block, logs))
    return state


def walk(state, canonical: dict[int, BlockRef], head: int) -> Fork:
    """Reconcile like the follower: from the header above our tip (or the head), back."""
    chain = [canonical[min(head, state.tip.number + 1)]]
    while isinstance(found := reconcile(state, chain), NeedParent):
        chain.insert(0, canonical[found.number])
    return found


@given(
    common=st.integers(1, 8),
    ours=st.integers(0, 8),
    theirs=st.integers(0, 10),
    logs=st.integers(0, 3),
)
def test_reconcile_finds_the_common_ancestor_and_what_to_retract(common, ours, theirs, logs):
    genesis = BlockRef(0, h("g"), h("p"))
    trunk = branch(genesis, common)
    mine, other = branch(trunk[-1], ours), branch(trunk[-1], theirs)
    state = indexed(trunk + mine, logs)
    canonical = {b.number: b for b in [genesis, *trunk, *other]}
    fork = walk(state, canonical, head=trunk[-1].number + theirs)

    assert fork.ancestor == trunk[-1].id
    fetched_from = min(trunk[-1].number + theirs, state.tip.number + 1)
    assert fork.new == tuple(other[: max(0, fetched_from - trunk[-1].number)])
    after, reorg = rollback(state, fork.ancestor)
    dropped = [p for b in state.blocks[len(trunk) :] for p in b.published][::-1]
    assert [r.published for r in reorg.retracted] == dropped if reorg else dropped == []
    assert after.tip == trunk[-1].id


def test_a_fork_below_the_finalized_block_is_too_deep():
    genesis = BlockRef(0, h("g"), h("p"))
    trunk = branch(genesis, 10)
    state, _ = finalize(indexed(trunk), 6)
    other = branch(trunk[4], 8)  # parts at block 5, below finalized block 6
    canonical = {b.number: b for b in [genesis, *trunk[:5], *other]}
    with pytest.raises(ReorgTooDeep, match="finalized block 6"):
        walk(state, canonical, head=other[-1].number)


def test_a_fork_at_the_finalized_block_is_not_too_deep():
    genesis = BlockRef(0, h("g"), h("p"))
    trunk = branch(genesis, 10)
    state, _ = finalize(indexed(trunk), 6)
    other = branch(trunk[5], 2)
    fork = walk(state, {b.number: b for b in [genesis, *trunk[:6], *other]}, head=8)
    assert fork.ancestor.number == 6
    assert fork.new == tuple(other)


def test_finalize_moves_blocks_out_of_the_window_and_counts_their_logs():
    trunk = branch(BlockRef(0, h("g"), h("p")), 5)
    state, marker = finalize(indexed(trunk, logs=2), 3)
    assert marker is not None and marker.block.number == 3 and marker.log_count == 6
    assert [t.block for t in state.blocks] == trunk[3:]
    assert finalize(state, 3) == (state, None)
    state, marker = finalize(state, 99)
    assert state.blocks == () and marker.log_count == 10 and state.tip == trunk[-1].id


def test_a_block_that_returns_after_a_retraction_gets_new_event_ids():
    trunk = branch(BlockRef(0, h("g"), h("p")), 3)
    returning = branch(trunk[-1], 1)[0]
    state = indexed(trunk)
    first = events_of(returning, 1)[0]
    assert event_id(state, first.log) == first.event_id
    state, _ = rollback(append(state, returning, [first]), trunk[-1].id)
    again = event_id(state, first.log)
    assert again != first.event_id
    state, _ = rollback(append(state, returning, []), trunk[-1].id)
    assert event_id(state, first.log) not in (first.event_id, again)
    state, _ = finalize(state, returning.number)
    assert state.retracted == ((returning.hash, returning.number, 2),)
    state, _ = backfilled(state, BlockId(returning.number + 1, h()), 0)
    assert state.retracted == ()


def test_append_refuses_a_block_that_does_not_extend_the_tip():
    trunk = branch(BlockRef(0, h("g"), h("p")), 2)
    state = indexed(trunk)
    with pytest.raises(Exception, match="does not extend"):
        append(state, BlockRef(3, h(), h()), [])


def test_published_keeps_what_a_retraction_needs():
    block = branch(BlockRef(0, h("g"), h("p")), 1)[0]
    event = events_of(block, 1)[0]
    assert event.published() == Published(
        event.event_id, "Funded", CONTRACT, CONTRACT, event.log.tx_hash, 0
    )
    assert isinstance(event.event_id, uuid.UUID)
