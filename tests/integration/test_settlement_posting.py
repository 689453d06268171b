"""Posting an epoch's root on anvil, with the settler killed after every persisted state of
the posting machine (in-process and with SIGKILL), a reorg that drops the receipt, a stuck
transaction replaced at the same nonce, and another root already on chain: exactly one root per
epoch, and claims pay exactly the statement."""

from __future__ import annotations

import json
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from contracts.client import to_bytes32
from masa.app.settle_chain import SettlementChain
from settlement.posting import PostingRecord, State
from settlement.settler import SettlementRefused, SimulatedCrash
from tests.support.settling import (
    ADMIN,
    C1,
    C2,
    HELPER,
    TOKEN,
    W1,
    W2,
    SettleNet,
    deployed_net,
    keystore,
)

pytestmark = [pytest.mark.anvil, pytest.mark.timeout(180)]


@pytest.fixture
def net(tmp_path: Path) -> Iterator[SettleNet]:
    with deployed_net(tmp_path) as network:
        yield network


def close_epoch_zero(net: SettleNet) -> None:
    """Epoch 0 (15 s) ended 5 s ago with two paid requests in it; the chain is final past it
    in the store; epoch 1 is not due."""
    genesis = time.time() - 20
    net.index()
    net.ingest()
    net.send([net.parameters(genesis), *net.sources()])
    net.ingest()
    net.send(
        [
            *net.request(W1, genesis + 3, 10**18, {C1: 3, C2: 1}),
            *net.request(W2, genesis + 5, 2 * 10**18),
        ]
    )
    net.ingest()
    net.mine(2)
    net.index()
    net.ingest()


def settle(net: SettleNet, rounds: int = 2) -> None:
    for _ in range(rounds):
        net.settler().run_once()
        net.mine(net.confirmations)
    net.settler().run_once()
    assert net.db.get(0).posting.state is State.CONFIRMED


def assert_one_root_and_claims_pay(net: SettleNet) -> None:
    settlement = net.db.get(0)
    assert settlement is not None
    assert net.root_posts() == {1: [settlement.posting.root]}
    statement = settlement.statement()
    assert statement.total_cumulative > 0
    payer = net.client(HELPER)
    for line in statement.lines:
        before = payer.balance_of(line.address)
        paid = payer.claim(line.address, line.cumulative, statement.proof(line.address))
        assert paid == line.cumulative
        assert payer.balance_of(line.address) - before == line.cumulative
        assert payer.claimed(line.address) == line.cumulative


@pytest.mark.parametrize("crash_after", ["computed", "signed", "broadcast"])
def test_killed_after_each_persisted_state_posts_one_root(net: SettleNet, crash_after: str):
    close_epoch_zero(net)
    with pytest.raises(SimulatedCrash):
        net.settler(stop_after=lambda r: r.state == crash_after).run_once()
    record = net.db.get(0)
    assert record is not None and record.posting.state == crash_after
    if crash_after != "computed":
        assert record.posting.nonce is not None and record.posting.raw_tx
    settle(net)
    assert_one_root_and_claims_pay(net)


def test_killed_between_broadcast_and_its_record(net: SettleNet, monkeypatch):
    """The transaction left, the record still says signed: the restart finds it mined."""
    close_epoch_zero(net)
    sent = SettlementChain.broadcast

    def broadcast_then_die(self, raw_tx, tx_hash):  # type: ignore[no-untyped-def]
        sent(self, raw_tx, tx_hash)
        raise SimulatedCrash(net.db.get(0).posting)

    monkeypatch.setattr(SettlementChain, "broadcast", broadcast_then_die)
    with pytest.raises(SimulatedCrash):
        net.settler().run_once()
    monkeypatch.setattr(SettlementChain, "broadcast", sent)
    assert net.db.get(0).posting.state is State.SIGNED
    settle(net)
    assert_one_root_and_claims_pay(net)


def test_killed_before_the_receipt_then_mined(net: SettleNet):
    close_epoch_zero(net)
    net.rpc("evm_setAutomine", False)
    with pytest.raises(SimulatedCrash):
        net.settler(stop_after=lambda r: r.state == "broadcast").run_once()
    progress = net.settler().run_once()  # pending: nothing to do but wait
    assert not progress.moved and net.db.get(0).posting.state is State.BROADCAST
    net.mine(1)
    net.rpc("evm_setAutomine", True)
    settle(net)
    assert_one_root_and_claims_pay(net)


def _run_until_mined(net: SettleNet) -> PostingRecord:
    """Settler passes until the record says mined (one pass usually; a loaded machine may
    need another to see the receipt)."""
    for _ in range(25):
        net.settler().run_once()
        record = net.db.get(0).posting
        if record.state is State.MINED:
            break
        time.sleep(0.2)
    return record


def test_reorg_that_drops_the_receipt_posts_again(net: SettleNet):
    close_epoch_zero(net)
    mined = _run_until_mined(net)
    assert mined.state is State.MINED and net.root_posts() == {1: [mined.root]}
    net.rpc("anvil_reorg", 2, [])  # the block with RootPosted is replaced by empty ones
    assert net.root_posts() == {}
    again = _run_until_mined(net)
    assert again.state is State.MINED and again.tx_hash == mined.tx_hash
    settle(net)
    assert_one_root_and_claims_pay(net)


def test_stuck_transaction_is_replaced_at_the_same_nonce(net: SettleNet):
    net.settings.settlement.replace_after_s = 1.0
    close_epoch_zero(net)
    net.rpc("evm_setAutomine", False)
    net.settler().run_once()
    first = net.db.get(0).posting
    assert first.state is State.BROADCAST
    time.sleep(1.2)
    net.settler().run_once()
    second = net.db.get(0).posting
    assert second.state is State.BROADCAST and second.nonce == first.nonce
    assert second.replaced_tx_hashes == (first.tx_hash,)
    assert second.max_fee_per_gas > first.max_fee_per_gas
    net.mine(1)
    net.rpc("evm_setAutomine", True)
    settle(net)
    assert net.db.get(0).posting.tx_hash == second.tx_hash
    assert net.w3.eth.get_transaction_receipt(second.tx_hash)["status"] == 1
    assert_one_root_and_claims_pay(net)


def test_another_root_on_chain_is_refused_loudly(net: SettleNet):
    close_epoch_zero(net)
    with pytest.raises(SimulatedCrash):
        net.settler(stop_after=lambda r: r.state == "computed").run_once()
    admin = net.client(ADMIN)
    key = str(keystore(net, ADMIN))
    granted = net.masa("rewards", "grant-poster", net.address(ADMIN), "--key-file", key)
    assert granted.returncode == 0, granted.stderr
    admin.post_root(1, "0x" + "ab" * 32, 0, to_bytes32("someone else"))
    with pytest.raises(SettlementRefused, match="root_conflict"):
        net.settler().run_once()
    result = net.masa("settle", "run", "--once")
    assert result.returncode == 3, result.stderr
    assert result.stderr.splitlines()[-1].startswith("masa: error: epoch 0 refused: root_conflict")
    rows = json.loads(net.masa("settle", "status", "--json").stdout)
    assert rows[0]["state"] == "refused" and rows[0]["refusal"].startswith("root_conflict")
    assert net.root_posts() == {1: ["0x" + "ab" * 32]}


def test_sigkilled_settle_run_resumes(net: SettleNet):
    """A real ``masa settle run`` killed with SIGKILL while its postRoot waits to be mined."""
    close_epoch_zero(net)
    net.rpc("evm_setAutomine", False)
    ingest = net.popen("ingest")
    settler = net.popen("settle", "run")
    try:
        deadline = time.monotonic() + 60
        while True:
            record = net.db.get(0)
            if record is not None and record.posting.state is State.BROADCAST:
                break
            assert settler.poll() is None, (net.home / "settle.log").read_text()
            assert time.monotonic() < deadline, "settle run never broadcast"
            time.sleep(0.2)
        settler.send_signal(signal.SIGKILL)
        settler.wait(10)
    finally:
        if settler.poll() is None:
            settler.kill()
    try:
        net.mine(1)
        net.rpc("evm_setAutomine", True)
        result = net.masa("settle", "run", "--once", "--json")
        assert result.returncode == 0, result.stderr
        assert [r["state"] for r in json.loads(result.stdout)["settlements"]] == ["mined"]
        settle(net, rounds=1)
    finally:
        ingest.send_signal(signal.SIGTERM)
        ingest.wait(20)
    assert_one_root_and_claims_pay(net)


def test_claim_command_for_oneself_and_for_another(net: SettleNet):
    close_epoch_zero(net)
    settle(net)
    statement = net.db.get(0).statement()
    contributor = net.address(C1)
    line = statement.line(contributor)
    assert line is not None
    before = net.client(HELPER).balance_of(contributor)
    out = net.masa("claim", contributor, "--key-file", str(keystore(net, HELPER)), "--json")
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["paid"] == str(line.cumulative)
    assert net.client(HELPER).balance_of(contributor) - before == line.cumulative
    worker = net.address(W1)
    out = net.masa("claim", "--key-file", str(keystore(net, W1)), "--json")
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["account"] == worker
    assert net.client(HELPER).claimed(worker) == statement.line(worker).cumulative
    admin = net.client(ADMIN)
    admin.mint(admin.address, 5 * TOKEN)
    funded = admin.distributor_state().total_funded
    out = net.masa("rewards", "fund", "--amount", "2.5", "--key-file", str(keystore(net, ADMIN)))
    assert out.returncode == 0, out.stderr
    assert admin.distributor_state().total_funded - funded == 5 * TOKEN // 2


def test_a_post_that_would_revert_is_recorded_and_retried(net: SettleNet):
    """Without the poster role nothing is sent; the record says why; granted, it posts."""
    close_epoch_zero(net)
    admin = net.client(ADMIN)
    fns = admin.distributor.functions
    role, settler = fns.POSTER_ROLE().call(), net.settler_account.address
    admin.send(fns.revokeRole(role, settler))
    with pytest.raises(SettlementRefused, match="post_failed"):
        net.settler().run_once()
    record = net.db.get(0).posting
    assert record.state is State.COMPUTED and record.refusal.startswith("post_failed")
    assert "AccessControlUnauthorizedAccount" in record.refusal
    admin.send(fns.grantRole(role, settler))
    settle(net)
    assert net.db.get(0).posting.refusal is None
    assert_one_root_and_claims_pay(net)
