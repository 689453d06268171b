"""The follower on anvil, through its JSON-RPC client and a fault-injecting proxy: random
chains with random forks (depth ≤ finality) made by ``anvil_rollback``, ``anvil_reorg`` and
``evm_snapshot``/``evm_revert``, lagging heads, refused ranges and restarts from the
checkpoint. The logs emitted minus the logs retracted are the logs of the final canonical
chain, each once, the same as a fresh index of it; a fork below the finalized block stops it.

One anvil per module, mining only on demand; every test and every hypothesis example starts
from a snapshot of the same deployed baseline. With a base fee of 0, anvil mines the same
transactions on the same parent at the same time into the same block, so an old branch is
brought back by rolling back to where it forked and mining its blocks again (``switch``);
blocks also come back when a lagging head that persisted was followed (``lag``).
"""

from __future__ import annotations

import itertools
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from contracts import load_artifact
from indexer.chain import checkpoint
from indexer.chain.decode import LogDecoder
from indexer.chain.errors import HeadBehind
from indexer.chain.follower import FollowConfig, Follower
from indexer.chain.model import BlockRef, Finalized, IndexerState, LogsBatch, Reorg, Step
from indexer.chain.rpc import HttpRpc
from indexer.chain.window import initial_state
from indexer.events import CHAIN_TYPES
from masa.errors import ReorgTooDeep
from tests.support import logspam
from tests.support.anvil import AnvilNode
from tests.support.fixtures import require
from tests.support.rpc_proxy import Faults, FaultyRpc
from tests.support.services import ServiceUnavailable

pytestmark = pytest.mark.anvil

DEPTH = 4
EPOCH_SLOTS = 3
"""anvil reports ``finalized`` = head - 2 epochs = head - 6, so the tag binds here."""
DECODER = LogDecoder([load_artifact("NodeStaking").abi], CHAIN_TYPES)
STAKED = "0x" + logspam.STAKED_TOPIC.hex()

Tx = tuple[bool, int]
"""(to the followed contract?, logs): one ``spam(logs)`` call."""
Block = Sequence[Tx]
LogKey = tuple[str, str, int]
"""(block hash, transaction hash, log index)"""
Held = tuple[str, str, int, str, str]
"""A log key with the event type and payload (JSON)."""


class ReplayAnvil(AnvilNode):
    """anvil with a base fee of 0 (so it never changes, and the same transactions on the same
    parent at the same time make the same block: old branches can be mined again) and short
    epochs (``finalized`` = head - 2 epochs = head - 6, so the tag binds in short chains)."""

    def _argv(self, binary: Path) -> list[str]:
        return [*super()._argv(binary), "--base-fee", "0", "--slots-in-an-epoch", str(EPOCH_SLOTS)]


@dataclass(frozen=True)
class Snapshot:
    id: str
    number: int
    hash: str


@dataclass(frozen=True)
class Mined:
    """A block above the floor and how to mine it again."""

    number: int
    hash: str
    parent: str
    timestamp: int
    txs: tuple[dict[str, str], ...]


class Chain:
    """The anvil under test, the proxy in front of it, and what the test knows of its
    history: every block mined above the floor (to mine an old branch again), the heads
    so far, the highest one (forks stay within ``DEPTH`` of it) and the snapshots taken."""

    def __init__(self, node: AnvilNode, proxy: FaultyRpc) -> None:
        self.node, self.proxy = node, proxy
        self.sender = node.accounts[0].address
        self._salts = itertools.count(1)
        self.followed = self._deploy()
        self.other = self._deploy()
        self.floor = 0
        self._forget()
        self.mine([[(True, 2)], [(True, 1), (False, 2)]])
        self.base = self.head()
        self.floor = self.base.number + 1
        self._baseline = self.rpc("evm_snapshot")
        self.reset()

    def rpc(self, method: str, *params: object) -> Any:
        return self.node.rpc(method, *params)

    def reset(self, faults: Faults | None = None) -> None:
        """Back to the deployed baseline (anvil forgets a snapshot once used: take it again),
        then mine the floor: a block of this example, the lowest a fork may reach. (anvil
        1.7.1 rolls back to a block 500 or more below its head with the contracts' code
        gone, and the baseline's block gets that old over a module.)"""
        assert self.rpc("evm_revert", self._baseline) is True
        assert self.head() == self.base, "anvil did not return to the baseline"
        self._baseline = self.rpc("evm_snapshot")
        self._forget()
        self.mine([[(True, 1)]])
        self.proxy.faults = faults or Faults()

    def _forget(self) -> None:
        self.max_head = self.floor
        self.blocks: dict[str, Mined] = {}
        self.tips: list[str] = []
        self.snapshots: list[Snapshot] = []
        self.done: Counter[str] = Counter()

    # --- shaping the chain ----------------------------------------------------------------

    def mine(self, blocks: Sequence[Block]) -> None:
        for block in blocks:
            for tx in self._unique(block):
                self.rpc("eth_sendTransaction", self._tx(tx))
            latest = self.rpc("eth_getBlockByNumber", "latest", False)
            self.rpc("evm_mine", int(latest["timestamp"], 16) + 1)
        self._record()

    def fork(self, depth: int, blocks: Sequence[Block], how: str) -> None:
        """Replace the last ``depth`` blocks (as far as finality allows) by ``blocks``."""
        depth = min(depth, self.number() - self.lowest_forkable())
        if depth <= 0:
            self.mine(blocks or [[]])
        else:
            self.done[f"fork by {how}"] += 1
            self.replace(depth, blocks, how)

    def replace(self, depth: int, blocks: Sequence[Block], how: str) -> None:
        """``anvil_reorg`` (same height, then more blocks) or ``anvil_rollback`` and mine."""
        if how == "reorg" and len(blocks) >= depth:
            txs = [
                [self._tx(tx), i]
                for i, block in enumerate(blocks[:depth])
                for tx in self._unique(block)
            ]
            self.rpc("anvil_reorg", depth, txs)
            self._record()
            self.mine(blocks[depth:])
        else:
            self.rpc("anvil_rollback", depth)
            self.mine(blocks)

    def snapshot(self) -> None:
        head = self.head()
        self.snapshots.append(Snapshot(str(self.rpc("evm_snapshot")), head.number, head.hash))

    def revert(self, pick: int, blocks: Sequence[Block]) -> None:
        """Back to a snapshot whose block is still canonical and above the forkable height,
        then mine another branch. (Reverting to one whose block is gone leaves anvil without
        a latest block, so those are skipped.)"""
        usable = [
            s
            for s in self.snapshots
            if s.number >= self.lowest_forkable() and self.hash_at(s.number) == s.hash
        ]
        if not usable:
            self.mine(blocks)
            return
        target = usable[pick % len(usable)]
        del self.snapshots[self.snapshots.index(target) :]  # anvil drops the later ones too
        assert self.rpc("evm_revert", target.id) is True
        assert self.head().hash == target.hash
        self.done["snapshot reverted"] += 1
        self.mine(blocks)

    def switch(self, pick: int) -> None:
        """Make an earlier head that left the canonical chain its head again, if it forked
        off above the forkable height: roll back to the fork and mine its blocks again."""
        gone = [t for t in dict.fromkeys(self.tips) if self.hash_at(self.blocks[t].number) != t]
        if not gone:
            return
        target = branch = gone[pick % len(gone)]
        old: list[Mined] = []
        while branch in self.blocks and self.hash_at(self.blocks[branch].number) != branch:
            old.append(self.blocks[branch])
            branch = self.blocks[branch].parent
        ancestor = old[-1].number - 1
        if ancestor < self.lowest_forkable():
            return
        if self.number() > ancestor:
            self.rpc("anvil_rollback", self.number() - ancestor)
        for block in reversed(old):
            for tx in block.txs:
                self.rpc("eth_sendTransaction", tx)
            self.rpc("evm_mine", block.timestamp)
        assert self.head().hash == target, "anvil did not mine the old branch the same again"
        self.done["old branch back"] += 1
        self._record()

    def lowest_forkable(self) -> int:
        """Forks reach neither below the deepest block any head so far made final, nor
        below the floor (see ``reset``)."""
        return max(self.floor, self.max_head - DEPTH)

    def _record(self) -> None:
        """Note the canonical blocks not seen before, and the head."""
        block = self.rpc("eth_getBlockByNumber", "latest", True)
        head = number = int(block["number"], 16)
        self.max_head = max(self.max_head, head)
        if number > self.floor:
            self.tips.append(block["hash"])
        while number > self.floor and block["hash"] not in self.blocks:
            txs = tuple(
                {
                    "from": tx["from"],
                    "to": tx["to"],
                    "data": tx["input"],
                    "gas": tx["gas"],
                    "gasPrice": tx["gasPrice"],
                    "nonce": tx["nonce"],
                }
                for tx in block["transactions"]
            )
            timestamp = int(block["timestamp"], 16)
            self.blocks[block["hash"]] = Mined(
                number, block["hash"], block["parentHash"], timestamp, txs
            )
            number -= 1
            block = self.rpc("eth_getBlockByNumber", hex(number), True)

    def _deploy(self) -> str:
        tx = {"from": self.sender, "data": "0x" + logspam.INIT.hex(), "gas": hex(200_000)}
        sent = self.rpc("eth_sendTransaction", tx)
        self.rpc("evm_mine")
        return str(self.rpc("eth_getTransactionReceipt", sent)["contractAddress"]).lower()

    @staticmethod
    def _unique(block: Block) -> Block:
        """At least one transaction, and each one salted (``_tx``): anvil mines the same
        transactions on the same parent at the same time into the same block, and a fork
        must replace blocks (``switch`` relies on the same rule to bring a branch back)."""
        return block or [(False, 0)]

    def _tx(self, tx: Tx) -> dict[str, str]:
        followed, logs = tx
        salt = next(self._salts).to_bytes(32, "big")  # spam() reads only the first word
        return {
            "from": self.sender,
            "to": self.followed if followed else self.other,
            "data": "0x" + (logspam.calldata(logs) + salt).hex(),
            "gas": hex(60_000 + logspam.GAS_PER_LOG * logs),
            "gasPrice": hex(10**9),
        }

    # --- reading it back ------------------------------------------------------------------

    def number(self) -> int:
        return int(str(self.rpc("eth_blockNumber")), 16)

    def head(self) -> BlockRef:
        block = self.rpc("eth_getBlockByNumber", "latest", False)
        return BlockRef(int(block["number"], 16), block["hash"], block["parentHash"])

    def hash_at(self, number: int) -> str | None:
        block = self.rpc("eth_getBlockByNumber", hex(number), False)
        return block["hash"] if isinstance(block, dict) else None

    def logs(self, first: int, last: int | None = None) -> list[LogKey]:
        """The node's own followed logs in ``first..last`` (default: the head)."""
        query = {
            "fromBlock": hex(first),
            "toBlock": "latest" if last is None else hex(last),
            "address": self.followed,
            "topics": [STAKED],
        }
        found = self.rpc("eth_getLogs", query)
        return sorted((x["blockHash"], x["transactionHash"], int(x["logIndex"], 16)) for x in found)


@pytest.fixture(scope="module")
def bench() -> Iterator[Chain]:
    node = ReplayAnvil(auto_mine=False)
    try:
        node.start()
    except ServiceUnavailable as error:
        require(str(error))
    try:
        with FaultyRpc(node.rpc_url, Faults()) as proxy:
            yield Chain(node, proxy)
    finally:
        node.stop()


@pytest.fixture
def chain(bench: Chain) -> Chain:
    bench.reset()
    return bench


# --- driving the follower -----------------------------------------------------------------


@dataclass
class Ledger:
    """What a consumer of the stages ends up holding; checks every stage as it comes."""

    live: dict[UUID, Held] = field(default_factory=dict)
    ever: dict[UUID, Held] = field(default_factory=dict)
    finalized: int = -1
    stages: Counter[str] = field(default_factory=Counter)

    def apply(self, step: Step) -> None:
        for stage in step.stages:
            self.stages[type(stage).__name__] += 1
            match stage:
                case Reorg(retracted=retracted):
                    for r in retracted:
                        assert r.block.number > self.finalized, "retracted a final log"
                        del self.live[r.published.event_id]
                case LogsBatch(events=events):
                    for e in events:
                        assert e.event_id not in self.ever, "an event id was published twice"
                        log = e.log
                        held = (log.block_hash, log.tx_hash, log.log_index, e.type)
                        self.ever[e.event_id] = self.live[e.event_id] = (
                            *held,
                            e.payload.model_dump_json(),
                        )
                case Finalized(block=block):
                    assert block.number > self.finalized
                    self.finalized = block.number

    def held(self) -> list[Held]:
        return sorted(self.live.values())

    def came_back(self) -> int:
        """Logs published more than once (under different ids: ``apply`` checks that)."""
        return sum(n - 1 for n in Counter(self.ever.values()).values())

    def keys(self) -> list[LogKey]:
        return sorted(h[:3] for h in self.live.values())


def open_rpc(url: str) -> HttpRpc:
    return HttpRpc(url, timeout_s=10.0, requests_per_second=1e6, attempts=3)


def follower(rpc: HttpRpc, use_tag: bool = False, **config: int) -> Follower:
    options = {"max_block_range": 3, "realtime_batch": 2, "backward_patience": 2} | config
    follow = FollowConfig(DEPTH, use_finalized_tag=use_tag, **options)
    return Follower(rpc, DECODER, follow, sleep=lambda _: None)


def take(f: Follower, state: IndexerState, ledger: Ledger, steps: int) -> IndexerState:
    """Up to ``steps`` steps (a lagging head's refusal counts as one)."""
    for _ in range(steps):
        try:
            step = f.step(state)
        except HeadBehind:
            continue
        if step is None:
            break
        ledger.apply(step)
        state = step.state
    return state


def catch_up(f: Follower, state: IndexerState, ledger: Ledger) -> IndexerState:
    for _ in range(1000):
        try:
            step = f.step(state)
        except HeadBehind:
            continue
        if step is None:
            return state
        ledger.apply(step)
        state = step.state
    raise AssertionError("the follower did not catch up")


def start_state(chain: Chain, start: int) -> IndexerState:
    return initial_state(chain.node.chain_id, [chain.followed], start)


def fresh_index(chain: Chain, start: int) -> list[Held]:
    """A new follower straight on the node, no faults, over the final chain."""
    ledger = Ledger()
    catch_up(
        follower(open_rpc(chain.node.rpc_url), max_block_range=50),
        start_state(chain, start),
        ledger,
    )
    return ledger.held()


def assert_canonical(chain: Chain, state: IndexerState, ledger: Ledger, start: int) -> None:
    head = chain.head()
    assert state.tip == head.id
    assert ledger.keys() == chain.logs(start)
    assert ledger.held() == fresh_index(chain, start)
    assert state.log_count == len(chain.logs(start, state.finalized.number))


HOW = ["rollback", "reorg"]

# --- the property -------------------------------------------------------------------------

txs = st.lists(st.tuples(st.sampled_from([True, True, False]), st.integers(0, 3)), max_size=2)
blocks = st.lists(txs, min_size=0, max_size=DEPTH + 2)
forks = st.tuples(st.just("fork"), st.integers(1, DEPTH), blocks, st.sampled_from(HOW))
switches = st.tuples(st.just("switch"), st.integers(0, 100))
operations = st.lists(
    st.tuples(
        st.one_of(
            st.tuples(st.just("mine"), st.lists(txs, min_size=1, max_size=6)),
            forks,
            forks,
            st.just(("snap",)),
            st.tuples(st.just("revert"), st.integers(0, 100), blocks),
            switches,
            switches,
            st.tuples(st.just("lag"), st.integers(1, 2), st.integers(1, 2 * DEPTH)),
            st.just(("restart",)),
        ),
        st.integers(0, 6),
    ),
    min_size=3,
    max_size=20,
)
"""Each change to the chain (or to the provider, or a restart), then up to so many steps."""
refusals = st.sampled_from(
    [Faults(), Faults(max_log_blocks=1), Faults(max_log_blocks=2), Faults(max_logs=6)]
)
"""A block holds at most 6 followed logs (2 calls of 3), so no single block is refused."""


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    prefix=st.lists(txs, max_size=3 * DEPTH),
    ops=operations,
    below_floor=st.integers(0, 3),
    use_tag=st.booleans(),
    faults=refusals,
    deep=st.booleans(),
)
def test_emitted_minus_retracted_is_the_final_canonical_chain(
    bench: Chain, prefix, ops, below_floor, use_tag, faults, deep
):
    chain = bench
    chain.reset(faults)
    chain.mine(prefix)
    start = chain.floor - below_floor
    rpc = open_rpc(chain.proxy.url)
    f, state, ledger = follower(rpc, use_tag), start_state(chain, start), Ledger()
    for op, steps in ops:
        match op:
            case ("mine", mined):
                chain.mine(mined)
            case ("fork", depth, mined, how):
                chain.fork(depth, mined, how)
            case ("snap",):
                chain.snapshot()
            case ("revert", pick, mined):
                chain.revert(pick, mined)
            case ("switch", pick):
                chain.switch(pick)
            case ("lag", every, by):
                chain.proxy.faults = replace(faults, stale_head_every=every, stale_by=by)
            case ("restart",):
                assert checkpoint.decode(checkpoint.encode(state)) == state
                state, f = checkpoint.decode(checkpoint.encode(state)), follower(rpc, use_tag)
        state = take(f, state, ledger, steps)
        chain.proxy.faults = faults
    state = catch_up(f, state, ledger)

    assert_canonical(chain, state, ledger, start)
    event(f"operations: {len(ops) // 5 * 5}+")
    event(f"reorgs followed: {min(ledger.stages['Reorg'], 3)}")
    event(f"logs published again: {ledger.came_back() > 0}")
    event(f"ranges refused: {rpc.faults['RangeTooLarge'] > 0}")
    for done in chain.done:
        event(f"chain: {done}")
    if deep and state.finalized.number > chain.floor:
        event("deep fork")
        depth = state.tip.number - state.finalized.number + 1
        chain.replace(depth, [[(True, 1)]] * (depth + 1), "rollback")
        with pytest.raises(ReorgTooDeep, match=f"finalized block {state.finalized.number}"):
            f.step(state)


# --- the deterministic cases ----------------------------------------------------------------


def indexed(chain: Chain, blocks: int) -> tuple[HttpRpc, Follower, IndexerState, Ledger]:
    chain.mine([[(True, 1)]] * blocks)
    rpc, ledger = open_rpc(chain.proxy.url), Ledger()
    f = follower(rpc)
    return rpc, f, catch_up(f, start_state(chain, 1), ledger), ledger


@pytest.mark.parametrize("how", HOW)
def test_a_fork_below_the_finalized_block_stops_the_follower(chain, how):
    _, f, state, _ = indexed(chain, 20)
    head = chain.number()
    assert state.finalized.number == head - DEPTH
    chain.replace(DEPTH + 1, [[(True, 1)]] * (DEPTH + 3), how)
    with pytest.raises(ReorgTooDeep, match=f"finalized block {head - DEPTH}"):
        f.step(state)


@pytest.mark.parametrize("how", HOW)
def test_a_fork_of_the_finality_depth_is_followed(chain, how):
    _, f, state, ledger = indexed(chain, 20)
    chain.replace(DEPTH, [[(True, 2)]] * (DEPTH + 1), how)
    state = catch_up(f, state, ledger)
    assert ledger.stages["Reorg"] == 1
    assert len(ledger.ever) - len(ledger.live) == DEPTH
    assert_canonical(chain, state, ledger, 1)


def test_a_head_behind_the_tip_is_a_provider_fault_until_it_persists(chain):
    _, f, state, _ = indexed(chain, 10)
    chain.proxy.faults = Faults(stale_head_every=1, stale_by=3)
    with pytest.raises(HeadBehind):
        f.step(state)
    chain.proxy.faults = Faults()
    assert f.step(state) is None
    chain.replace(2, [], "rollback")
    with pytest.raises(HeadBehind):
        f.step(state)
    step = f.step(state)
    assert step is not None
    assert [type(s).__name__ for s in step.stages] == ["Reorg"]
    assert step.stages[0].depth == 2 and step.state.tip.hash == chain.head().hash


def test_blocks_that_come_back_after_a_lagging_head_was_followed_get_new_ids(chain):
    _, f, state, ledger = indexed(chain, 10)
    chain.proxy.faults = Faults(stale_head_every=1, stale_by=2)
    state = take(f, state, ledger, 3)
    assert ledger.stages["Reorg"] == 1 and state.tip.number == chain.number() - 2
    chain.proxy.faults = Faults()
    state = catch_up(f, state, ledger)
    retracted = {i: ledger.ever[i] for i in ledger.ever.keys() - ledger.live.keys()}
    back = {held: i for i, held in ledger.live.items()}
    assert len(retracted) == 2 and set(retracted.values()) <= set(back)
    assert all(back[held] != i for i, held in retracted.items()), "came back under its old id"
    assert ledger.came_back() == 2
    assert_canonical(chain, state, ledger, 1)


@pytest.mark.parametrize(
    "faults", [Faults(max_logs=5), Faults(max_log_blocks=2)], ids=["max_logs", "max_log_blocks"]
)
def test_refused_ranges_shrink_and_the_result_is_the_same(chain, faults):
    chain.mine([[(True, n)] if n else [] for n in [3, 0, 5, 1, 1, 1, 2, 0, 0, 4] * 3 + [0] * DEPTH])
    chain.proxy.faults = faults
    refused = chain.proxy.counts["too_many"]
    rpc, ledger = open_rpc(chain.proxy.url), Ledger()
    state = catch_up(follower(rpc, max_block_range=8), start_state(chain, 1), ledger)
    assert chain.proxy.counts["too_many"] > refused and rpc.faults["RangeTooLarge"] > 0
    assert_canonical(chain, state, ledger, 1)
