"""End to end on anvil over three 20-second epochs: stakes, requests, completions, data use,
heartbeats with controlled ``occurred_at``, a slash in epoch 1 and a parameter change from
epoch 2; the settler closes each epoch and posts one root per epoch; several addresses claim
(one three epochs at once, one twice, some claimed for by another address) and every token
balance moves by exactly its statement's cumulative entitlement."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from contracts.client import MasaClient
from masa.app.api import create_app
from projections import ledger
from projections.runner import ProjectionRunner
from projections.state import LedgerState
from projections.tables import PAYOUTS
from settlement.posting import State
from tests.support.settling import (
    ADMIN,
    C1,
    C2,
    HELPER,
    TOKEN,
    TREASURY,
    W1,
    W2,
    W3,
    SettleNet,
    deployed_net,
)

pytestmark = [pytest.mark.anvil, pytest.mark.timeout(240)]
L = 20


@pytest.fixture
def net(tmp_path: Path) -> Iterator[SettleNet]:
    with deployed_net(tmp_path) as network:
        yield network


def _sleep_until(t: float) -> None:
    time.sleep(max(0.0, t - time.time()))


def _final(net: SettleNet) -> None:
    """Blocks after now, final, indexed and ingested."""
    net.mine(2)
    net.index()
    net.ingest()


def _settle_epoch(net: SettleNet, epoch: int) -> None:
    settler = net.settler()
    settler.run_once()
    assert net.db.get(epoch).posting.state in (State.MINED, State.CONFIRMED)
    net.mine(net.confirmations)
    settler.run_once()
    assert net.db.get(epoch).posting.state is State.CONFIRMED


def test_three_epochs_settle_post_and_pay_exactly(net: SettleNet):
    net.mine(2)
    net.index()
    net.ingest()
    g = time.time() + 4  # stakes are final before genesis
    events = [
        net.parameters(g, emission=100 * TOKEN, length=L),
        net.parameters(g, effective=2, emission=60 * TOKEN, length=L),
        *net.sources(),
    ]
    net.send(events)  # parameters and sources stored before the work that needs them
    net.ingest()
    events = [
        *net.heartbeats(W1, g, g + 3 * L, 1),
        *net.heartbeats(W2, g, g + L, 1),
        *net.heartbeats(W2, g + L, g + L + 4, 100),  # epoch 1: 6 s of 20, below u_min
        *net.heartbeats(W2, g + 2 * L, g + 3 * L, 200),
        *net.heartbeats(W3, g, g + 3 * L, 1),
        *net.request(W1, g + 2, TOKEN, {C1: 3, C2: 1}),
        *net.request(W2, g + 5, 2 * TOKEN),
        *net.request(W2, g + L + 2, 2 * TOKEN, {C2: 5}),
        *net.request(W3, g + 2 * L + 3, TOKEN // 2),
        *net.request(W1, g + 2 * L + 6, TOKEN, {C1: 1}),
    ]
    net.send(events)
    net.ingest()
    balances = {a: net.client(HELPER).balance_of(net.address(a))
                for a in (W1, W2, W3, C1, C2, TREASURY)}  # fmt: skip

    # epoch 1 starts: slash W3 in it, then settle epoch 0
    _sleep_until(g + L + 1.5)
    net.client(ADMIN).slash(net.address(W3), 5 * TOKEN, "downtime")
    _final(net)
    _settle_epoch(net, 0)
    early = net.db.get(0).statement().line(net.address(W1))
    first_claim = net.client(W1).claim(
        early.address, early.cumulative, net.db.get(0).statement().proof(early.address)
    )
    assert first_claim == early.cumulative

    for epoch in (1, 2):
        _sleep_until(g + (epoch + 1) * L + 1.5)
        _final(net)
        _settle_epoch(net, epoch)

    statements = [net.db.get(e).statement() for e in range(3)]
    assert net.root_posts() == {e + 1: [statements[e].root] for e in range(3)}
    s0, s1, s2 = statements

    def emission(s, who):  # type: ignore[no-untyped-def]
        line = s.line(net.address(who))
        return 0 if line is None else line.emission

    # every wei of E_e to the workers, floor division, dust (< one wei per worker) to the treasury
    assert 100 * TOKEN - 3 <= sum(line.emission for line in s0.lines) <= 100 * TOKEN
    assert 60 * TOKEN - 3 <= sum(line.emission for line in s2.lines) <= 60 * TOKEN  # the change
    assert emission(s1, W3) == 0, "slashed in epoch 1"
    assert emission(s1, W2) == 0, "uptime below u_min in epoch 1"
    assert emission(s0, W3) > 0 and emission(s2, W3) > 0
    # full uptime both: W1 weighs its 100 tokens, W2 its 200 capped at 150
    assert abs(emission(s0, W1) * 150 - emission(s0, W2) * 100) <= 150
    assert s1.line(net.address(C2)).data_fee > 0 and s0.line(net.address(C1)).data_fee > 0
    with net.read_db.transaction() as tx:
        payouts = PAYOUTS.load(tx).values()
    for s in statements:
        assert sum(p["earned"] for p in payouts if p["epoch"] == s.epoch) == s.total_earned

    # claims against the last root: C1 three epochs at once, W1 the rest of its entitlement,
    # the others claimed for by HELPER
    last = s2
    paid: dict[str, int] = {early.address: first_claim}
    for who, sender in [(C1, C1), (W1, W1), (W2, HELPER), (W3, HELPER), (C2, HELPER),
                        (TREASURY, HELPER)]:  # fmt: skip
        address = net.address(who)
        line = last.line(address)
        amount = net.client(sender).claim(address, line.cumulative, last.proof(address))
        paid[address] = paid.get(address, 0) + amount
    assert paid[net.address(C1)] == last.line(net.address(C1)).cumulative
    for who, before in balances.items():
        address = net.address(who)
        assert net.client(HELPER).balance_of(address) - before == last.line(address).cumulative
    assert {line.address for line in last.lines} == set(paid)
    distributor = MasaClient(net.w3, net.deployment).distributor_state()
    assert distributor.total_claimed == last.total_cumulative == distributor.total_cumulative

    # the claims read model sees exactly what was paid, once final
    _final(net)
    state = LedgerState.empty()
    for event in net.log.iterate():
        ledger.apply(state, event)
    claimed: dict[str, int] = {}
    for row in state["claims"].rows.values():
        assert row["final"] and not row["retracted"]
        claimed[row["account"]] = claimed.get(row["account"], 0) + row["amount"]
    assert claimed == paid

    # the claimant's view, through the read API, on the read models a runner keeps
    runner = ProjectionRunner(net.log, net.read_db)
    while runner.step():
        pass
    api = TestClient(create_app(lambda: net.read_db))
    for who in (C1, W1):
        address = net.address(who)
        view = api.get(f"/v1/users/{address}/rewards").json()
        line = last.line(address)
        assert (view["epoch"], view["root"]) == (last.epoch, last.root)
        assert int(view["cumulative"]) == line.cumulative == int(view["claimed"])
        assert view["claimable"] == "0" and view["proof"] == last.proof(address)
        assert view["previous"]["epoch"] == s1.epoch and view["previous"]["accepts"] is False
        kinds = {(b["epoch"], b["kind"]) for b in view["breakdown"]}
        assert sum(int(b["earned"]) for b in view["breakdown"]) == line.cumulative, kinds
        assert all(b.get("event_ids") for b in view["breakdown"] if b["kind"] != "treasury")
    c1 = api.get(f"/v1/users/{net.address(C1)}/rewards").json()
    assert any(b["kind"] == "data_fee" and b["sources"] for b in c1["breakdown"])
    assert c1["pending"]["emission"] is None
