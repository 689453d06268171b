"""The chain indexer on anvil: reorgs at the head and during backfill, the backfill→head
handoff, provider faults through a proxy, a head that moves back, a reorg too deep, and the
whole path chain → indexer → bus → ingest → store. Each result is compared with a fresh
index of the final chain (and with the node's own count of logs)."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest
from web3 import Web3

from indexer.chain.errors import HeadBehind
from indexer.ingest.runner import Ingestor
from indexer.store.log import EventLog, LoggedEvent
from masa.app.wiring import ingest_config, open_store
from masa.errors import ReorgTooDeep
from tests.support.anvil import AnvilNode
from tests.support.chains import EvmChain
from tests.support.indexing import (
    INDEXER,
    Activity,
    Indexing,
    chain_logs,
    deploy,
    indexer_settings,
    live,
)
from tests.support.rpc_proxy import Faults, FaultyRpc

FINALITY = 5
BACKENDS = ["embedded", pytest.param("kafka", marks=pytest.mark.kafka)]


@pytest.fixture
def anvil(fresh_anvil: AnvilNode) -> AnvilNode:
    """Each test reorgs its own chain."""
    return fresh_anvil


@pytest.fixture
def chain(anvil: AnvilNode) -> Activity:
    w3 = Web3(Web3.HTTPProvider(anvil.rpc_url))
    return Activity(w3, deploy(w3, anvil.accounts), anvil.accounts)


@pytest.fixture(params=["anvil", "inprocess"])
def evm(request: pytest.FixtureRequest) -> tuple[EvmChain, Activity]:
    """Either test chain, for the tests that need only snapshots (no anvil_* methods)."""
    if request.param == "anvil":
        evm = EvmChain.anvil(request.getfixturevalue("anvil"))
    else:
        evm = EvmChain.inprocess()
    return evm, Activity(evm.w3, deploy(evm.w3, evm.accounts), evm.accounts)


def indexing(
    chain: Activity, home: Path, backend: str = "embedded", request=None, **options
) -> Indexing:
    topics = request.getfixturevalue("kafka_topics") if backend == "kafka" else None
    settings = indexer_settings(home, backend, topics, **options)
    return Indexing(chain.w3, chain.deployment, chain.accounts[INDEXER], settings)


def assert_same_as_fresh(run: Indexing, tmp_path: Path) -> dict:
    held = live(run.events())
    fresh = run.fresh(tmp_path / "fresh")
    fresh.run(until_head=True)
    assert held == live(fresh.events())
    assert len(held) == chain_logs(run.w3, run.deployment)
    return held


@pytest.mark.parametrize("backend", BACKENDS)
def test_backfill_then_head_publishes_every_log_once(chain, tmp_path, backend, request):
    chain.run(30)
    run = indexing(chain, tmp_path, backend, request, max_block_range=7)
    stats = run.run(until_head=True)
    assert stats.logs == chain_logs(chain.w3, chain.deployment) > 30
    assert stats.finalized == chain.w3.eth.block_number - FINALITY
    chain.run(10)
    again = run.run(until_head=True)
    assert again.logs > 0 and again.retracted == 0
    markers = [e for e in run.events() if e["type"] == "ChainFinalized"]
    assert markers and markers[-1]["payload"]["log_count"] <= len(live(run.events()))
    assert_same_as_fresh(run, tmp_path)


@pytest.mark.parametrize("depth", range(1, FINALITY + 1))
def test_a_reorg_at_the_head_retracts_then_publishes(evm, tmp_path, depth):
    node, chain = evm
    chain.run(12)
    chain.fund_blocks(1)
    run = indexing(chain, tmp_path)
    snapshot = node.snapshot()
    chain.fund_blocks(depth)
    run.run(until_head=True)
    node.revert(snapshot)
    chain.fund_blocks(depth + 1)
    stats = run.run(until_head=True)
    assert (stats.reorgs, stats.retracted) == (1, depth)
    assert_same_as_fresh(run, tmp_path)


def test_anvil_reorg_with_new_transactions_is_followed(chain, anvil, tmp_path):
    chain.run(15)
    outsider = chain.client(9)  # sends nothing in the blocks the reorg replaces
    outsider.send(outsider.token.functions.approve(outsider.distributor.address, 10**6))
    chain.fund_blocks(4)
    run = indexing(chain, tmp_path)
    run.run(until_head=True)
    nonce = chain.w3.eth.get_transaction_count(outsider.address)
    tx = outsider.distributor.functions.fund(7).build_transaction(
        {"from": outsider.address, "nonce": nonce, "gas": 200_000}
    )
    raw = chain.accounts[9].sign_transaction(tx).raw_transaction.to_0x_hex()
    anvil.rpc("anvil_reorg", 3, [[raw, 1]])
    stats = run.run(until_head=True)
    assert stats.reorgs == 1
    assert any(e["type"] == "Funded" and e["payload"]["amount"] == "7" for e in run.events())
    assert_same_as_fresh(run, tmp_path)


@pytest.mark.parametrize("depth", [1, FINALITY])
def test_a_reorg_during_backfill(chain, anvil, tmp_path, depth):
    """The chain reorgs within the finality depth while the indexer still backfills up to
    the finalized height it read before: the new blocks are followed at the head."""
    chain.run(40)
    run = indexing(chain, tmp_path, max_block_range=2, requests_per_second=30)
    result: list = []
    thread = threading.Thread(target=lambda: result.append(run.run(until_head=True)))
    thread.start()
    time.sleep(0.5)
    assert thread.is_alive(), "the backfill finished before the reorg"
    anvil.rpc("anvil_rollback", depth)
    chain.fund_blocks(depth + 2)
    thread.join(60)
    assert result and result[0].reorgs == 0  # it never saw the replaced blocks
    assert_same_as_fresh(run, tmp_path)


def test_the_handoff_from_backfill_to_head_with_logs_arriving(chain, tmp_path):
    chain.run(25)
    run = indexing(chain, tmp_path, max_block_range=3, requests_per_second=100)
    stop = threading.Event()
    stats: list = []
    thread = threading.Thread(
        target=lambda: stats.append(run.run(until_head=False, should_stop=stop.is_set))
    )
    thread.start()
    try:
        chain.run(20)
        deadline = time.monotonic() + 30
        while len(live(run.events())) < chain_logs(chain.w3, chain.deployment):
            assert time.monotonic() < deadline, "the indexer did not catch up"
            time.sleep(0.1)
    finally:
        stop.set()
        thread.join(30)
    assert stats[0].tip == chain.w3.eth.block_number
    assert_same_as_fresh(run, tmp_path)


def test_a_head_that_moves_back_is_a_provider_fault(chain, anvil, tmp_path):
    chain.run(20)
    with FaultyRpc(anvil.rpc_url, Faults(stale_head_every=2, stale_by=4)) as proxy:
        run = indexing(chain, tmp_path, max_block_range=4)
        run.w3 = Web3(Web3.HTTPProvider(proxy.url))
        for _ in range(4):
            chain.fund_blocks(2)
            stats = run.run(until_head=True)
            assert stats.retracted == 0
            assert stats.faults[HeadBehind.__name__] > 0
    run.w3 = chain.w3
    assert_same_as_fresh(run, tmp_path)


def test_a_shorter_chain_that_persists_is_followed(evm, tmp_path):
    node, chain = evm
    chain.run(12)
    run = indexing(chain, tmp_path)
    snapshot = node.snapshot()
    chain.fund_blocks(3)
    run.run(until_head=True)
    node.revert(snapshot)
    stats = run.run(until_head=True)
    assert stats.faults[HeadBehind.__name__] == 2
    assert (stats.reorgs, stats.retracted) == (1, 3)
    assert_same_as_fresh(run, tmp_path)


def test_a_reorg_deeper_than_finality_stops_the_indexer(evm, tmp_path):
    node, chain = evm
    chain.run(10)
    snapshot = node.snapshot()
    chain.fund_blocks(FINALITY + 2)
    run = indexing(chain, tmp_path)
    run.run(until_head=True)
    published = len(run.events())
    node.revert(snapshot)
    chain.fund_blocks(FINALITY + 4)
    with pytest.raises(ReorgTooDeep, match="deeper than the finality depth"):
        run.run(until_head=True)
    assert len(run.events()) == published


@pytest.mark.parametrize("backend", BACKENDS)
def test_provider_faults_do_not_change_the_result(chain, anvil, tmp_path, backend, request):
    chain.run(40)
    faults = Faults(rate_limited=0.1, hang=0.05, hang_s=0.6, max_log_blocks=8, max_logs=6, seed=11)
    with FaultyRpc(anvil.rpc_url, faults) as proxy:
        run = indexing(chain, tmp_path, backend, request, request_timeout_s=0.3, max_block_range=64)
        run.w3 = Web3(Web3.HTTPProvider(proxy.url))
        stats = run.run(until_head=True)
    assert proxy.counts["429"] and proxy.counts["hang"] and proxy.counts["too_many"]
    assert (
        stats.faults["RangeTooLarge"] and stats.faults["RateLimited"] and stats.faults["RpcTimeout"]
    )
    run.w3 = chain.w3
    assert_same_as_fresh(run, tmp_path)


@pytest.mark.parametrize(
    ("backend", "store"),
    [("embedded", "sqlite"), pytest.param("kafka", "postgres", marks=pytest.mark.kafka)],
)
def test_chain_to_store_equals_the_canonical_chain(evm, tmp_path, backend, store, request):
    node, chain = evm
    chain.run(15)
    run = indexing(chain, tmp_path, backend, request)
    run.settings = _with_store(run, store, request)
    snapshot = node.snapshot()
    chain.run(3)
    run.run(until_head=True)
    node.revert(snapshot)
    chain.rng.seed(7)
    chain.run(4)
    run.run(until_head=True)
    held = assert_same_as_fresh(run, tmp_path)
    stats = _ingest(run)
    assert stats["stored"] == len(run.events()) and not any(k.startswith("rejected") for k in stats)
    stored = [r.envelope for r in _stored(run)]
    assert live(stored) == held
    assert {e["type"] for e in stored} >= {"ChainLogRetracted", "ChainFinalized", "Staked"}


def _with_store(run: Indexing, backend: str, request: pytest.FixtureRequest):
    store: dict = {"backend": backend}
    if backend == "postgres":
        db = request.getfixturevalue("pg_database")
        store |= {
            "postgres_host": db.host,
            "postgres_port": db.port,
            "postgres_user": db.user,
            "postgres_password": db.password,
            "postgres_dbname": db.dbname,
        }
    ingest = {"trusted_indexers": [run.account.address.lower()], "poll_timeout_s": 0.2}
    if run.settings.bus.backend == "kafka":
        ingest["consumer_name"] = f"ingest-{run.settings.bus.events_topic}"
    return run.settings.model_copy(
        update={
            "store": run.settings.store.model_copy(update=store),
            "ingest": run.settings.ingest.model_copy(update=ingest),
        }
    )


def _ingest(run: Indexing):
    store = open_store(run.settings)
    ingestor = Ingestor(run.bus, store, ingest_config(run.settings))
    last = time.monotonic()

    def on_batch(_):
        nonlocal last
        last = time.monotonic()

    try:
        ingestor.run(lambda: time.monotonic() - last > 2.0, on_batch)
    finally:
        store.close()
    return ingestor.stats


def _stored(run: Indexing) -> list[LoggedEvent]:
    store = open_store(run.settings)
    try:
        return list(EventLog(store).iterate())
    finally:
        store.close()
