"""The pure core of fee reservation (``indexer.ingest.fees``) and how ``decide`` uses it:
properties against a brute-force reference, and against the read models' own balance rule
(``projections.rules.OracleBalance``), which must reach the same reservations (invariant 3)."""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from indexer.events import Reason, decode_message
from indexer.ingest import fees
from indexer.ingest.decide import Accept, Hold, Policy, decide, evolve, released, reserved
from indexer.ingest.port import ChainEntry, Deposit, Funds, StreamState
from masa.app.synthetic import ORACLE_ROLE, Participants, Scenario
from projections.rules import OracleBalance

CHAINS = (1, 2)
NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
PEOPLE = Participants.from_seed(77, oracles=3)
POLICY = Policy(trusted_indexers=frozenset({PEOPLE.indexer.address.lower()}))


# --- the core against a brute-force reference ---------------------------------------------


@dataclass
class Reference:
    """An oracle's money the slow way: every deposit with whether it ever became final while
    not retracted, every reservation by id."""

    finality: dict[int, int] = field(default_factory=dict)
    deposits: dict[str, tuple[int, int, int]] = field(default_factory=dict)  # chain, block, n
    final: set[str] = field(default_factory=set)
    retracted: set[str] = field(default_factory=set)
    reservations: dict[int, int] = field(default_factory=dict)

    def finalize(self, chain: int, block: int) -> None:
        self.finality[chain] = max(block, self.finality.get(chain, 0))
        for eid, (c, b, _) in self.deposits.items():
            if c == chain and b <= self.finality[chain] and eid not in self.retracted:
                self.final.add(eid)

    def available(self) -> int:
        return sum(self.deposits[e][2] for e in self.final) - sum(self.reservations.values())


# small numbers, so that fees often fit exactly, just, or not at all
ops = st.lists(
    st.one_of(
        st.tuples(
            st.just("deposit"), st.sampled_from(CHAINS), st.integers(0, 6), st.integers(0, 100)
        ),
        st.tuples(st.just("finalize"), st.sampled_from(CHAINS), st.integers(0, 6)),
        st.tuples(st.just("reserve"), st.integers(0, 60)),
        st.tuples(st.just("reserve"), st.integers(0, 60)),
        st.tuples(st.just("release"), st.integers(0, 50)),
        st.tuples(st.just("retract"), st.integers(0, 50)),
    ),
    min_size=4,
    max_size=60,
)


@settings(max_examples=300)
@given(ops)
def test_reservations_never_overdraw_and_match_the_reference(steps):
    funds, ref = fees.NO_FUNDS, Reference()
    for n, step in enumerate(steps):
        match step:
            case ("deposit", chain, block, amount):
                eid = f"d{n}"
                ref.deposits[eid] = (chain, block, amount)
                if block <= ref.finality.get(chain, -1):
                    ref.final.add(eid)
                funds = fees.deposit(funds, Deposit(eid, chain, block, amount))
            case ("finalize", chain, block):
                ref.finalize(chain, block)
            case ("reserve", fee):
                after = fees.reserve(funds, fee, ref.finality)
                assert (after is not None) == (fee <= ref.available())
                if after is not None:
                    funds, ref.reservations[n] = after, fee
            case ("release", pick) if ref.reservations:
                rid = sorted(ref.reservations)[pick % len(ref.reservations)]
                funds = fees.release(funds, ref.reservations.pop(rid))
            case ("retract", pick) if ref.deposits:
                eid = sorted(ref.deposits)[pick % len(ref.deposits)]
                if eid not in ref.final:
                    ref.retracted.add(eid)
                funds = fees.retract(funds, eid, ref.finality)
        assert fees.available(funds, ref.finality) == ref.available() >= 0
        assert funds.committed == sum(ref.reservations.values())


funds_values = st.builds(
    Funds,
    st.integers(0, 10**30),
    st.lists(
        st.builds(
            Deposit,
            st.uuids().map(str),
            st.sampled_from(CHAINS),
            st.integers(0, 20),
            st.integers(0, 10**30),
        ),
        max_size=4,
    ).map(tuple),
    st.just(0),
)
finalities = st.dictionaries(st.sampled_from(CHAINS), st.integers(0, 20))


@given(funds_values, st.integers(0, 10**30), finalities)
def test_a_release_restores_what_the_reservation_took(funds, fee, finality):
    before = fees.available(funds, finality)
    after = fees.reserve(funds, fee, finality)
    if after is None:
        assert fee > before
        return
    assert fees.available(after, finality) == before - fee
    back = fees.release(after, fee)
    assert fees.available(back, finality) == before
    assert fees.pending(back, finality) == fees.pending(funds, finality)


@given(funds_values, finalities)
def test_settling_final_deposits_changes_nothing_but_their_bookkeeping(funds, finality):
    settled = fees.settled(funds, finality)
    assert fees.available(settled, finality) == fees.available(funds, finality)
    assert all(not fees.is_final(d, finality) for d in settled.pending)


def test_amounts_are_natural_wei():
    for bad in (-1, True, 1.5):
        with pytest.raises(ValueError):
            fees.reserve(fees.NO_FUNDS, bad, {})  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        fees.release(Funds(final=5, committed=3), 4)


# --- decide and evolve with real events -----------------------------------------------------


def event(message):
    return decode_message(
        message.value, message.key.encode(), now=NOW, max_clock_skew=timedelta(minutes=5)
    )


def oracle_stream(oracle) -> StreamState:
    return StreamState(
        key=oracle.address.lower(), version=1, chain=(ChainEntry("s", 10**21, ORACLE_ROLE),)
    )


def request(s: Scenario, oracle, fee: int):
    body = {"request_id": str(s._uuid()), "kind": "llm", "spec": s.llm_spec(), "fee": str(fee)}
    return event(s._event(oracle, "RequestSubmitted", body))


def test_an_unfunded_request_is_held_for_the_balance_with_what_to_do():
    s = Scenario(PEOPLE, seed=1, start=NOW - timedelta(minutes=1))
    oracle = PEOPLE.oracles[0]
    node = oracle_stream(oracle)
    asked = request(s, oracle, 500)
    decision = decide(asked, StreamState(key=asked.key), node, POLICY, {})
    assert isinstance(decision, Hold)
    assert decision.awaiting == f"balance:{node.key}"
    assert decision.reason == Reason.INSUFFICIENT_BALANCE
    assert "deposit at least 500 wei more" in decision.detail

    deposit = event(s.deposit(oracle, 400))
    node = evolve(node, deposit)
    chain = deposit.payload.log.chain_id
    block = deposit.payload.log.block_number
    waiting = decide(asked, StreamState(key=asked.key), node, POLICY, {chain: block})
    assert isinstance(waiting, Hold) and "deposit at least 100 wei more" in waiting.detail
    for _ in range(4):
        s.chain_log()  # the next deposit is in a later block
    node = evolve(node, event(s.deposit(oracle, 100)))
    not_yet = decide(asked, StreamState(key=asked.key), node, POLICY, {chain: block})
    assert isinstance(not_yet, Hold) and "not final yet" in not_yet.detail
    finality = {chain: block + 1}
    assert decide(asked, StreamState(key=asked.key), node, POLICY, finality) == Accept()
    after = reserved(node, 500, finality)
    assert after.version == node.version + 1
    assert fees.available(after.funds, finality) == 0
    assert fees.available(released(after, 500).funds, finality) == 500


def test_a_retracted_deposit_that_was_not_final_counts_for_nothing():
    s = Scenario(PEOPLE, seed=2, start=NOW - timedelta(minutes=1))
    oracle = PEOPLE.oracles[0]
    deposit = event(s.deposit(oracle, 1000))
    node = evolve(oracle_stream(oracle), deposit)
    retraction = event(
        s._event(
            PEOPLE.indexer,
            "ChainLogRetracted",
            {
                "log": deposit.payload.log.model_dump(mode="json"),
                "retracted_id": str(deposit.envelope.id),
                "retracted_type": "FeesDeposited",
                "stream_key": deposit.key,
            },
        )
    )
    node = evolve(node, retraction)
    asked = request(s, oracle, 1)
    finality = {deposit.payload.log.chain_id: 10**6}
    assert isinstance(decide(asked, StreamState(key=asked.key), node, POLICY, finality), Hold)


@settings(max_examples=40, deadline=None)
@given(
    st.lists(
        st.tuples(st.integers(0, 2), st.sampled_from(["deposit", "request"]), st.integers(1, 900)),
        max_size=24,
    ),
    st.randoms(use_true_random=False),
)
def test_the_order_of_independent_oracles_changes_nothing(steps, rng: random.Random):
    """Each oracle's events in its own order, the oracles interleaved two ways: every oracle
    gets the same decisions and ends with the same funds."""
    s = Scenario(PEOPLE, seed=3, start=NOW - timedelta(minutes=1))
    events = [
        (i, event(s.deposit(PEOPLE.oracles[i], n)) if kind == "deposit" else None, n)
        for i, kind, n in steps
    ]
    events = [(i, e if e is not None else request(s, PEOPLE.oracles[i], n)) for i, e, n in events]
    finality = {s.chain_id: 10**6}

    def run(order):
        nodes = {i: oracle_stream(o) for i, o in enumerate(PEOPLE.oracles)}
        decisions: dict[int, list[object]] = {0: [], 1: [], 2: []}
        for i, e in order:
            if e.envelope.type == "FeesDeposited":
                nodes[i] = evolve(nodes[i], e)
                continue
            d = decide(e, StreamState(key=e.key), nodes[i], POLICY, finality)
            decisions[i].append(type(d))
            if isinstance(d, Accept):
                nodes[i] = reserved(nodes[i], e.payload.fee, finality)
        return decisions, {
            i: fees.available(n.funds or Funds(), finality) for i, n in nodes.items()
        }

    shuffled = _interleave(events, rng)
    assert run(events) == run(shuffled)


def _interleave(events, rng):
    queues: dict[int, list] = {}
    for i, e in events:
        queues.setdefault(i, []).append((i, e))
    merged = []
    while queues:
        i = rng.choice(sorted(queues))
        merged.append(queues[i].pop(0))
        if not queues[i]:
            del queues[i]
    return merged


# --- ingest's reservations equal the read models' (invariant 3) ---------------------------


@settings(max_examples=300)
@given(
    st.lists(
        st.one_of(
            st.tuples(st.just("deposit"), st.integers(0, 6), st.integers(0, 100)),
            st.tuples(st.just("finalize"), st.integers(0, 6), st.booleans()),
            st.tuples(st.just("submit"), st.integers(0, 60)),
            st.tuples(st.just("submit"), st.integers(0, 60)),
            st.tuples(st.just("complete"), st.integers(0, 40)),
            st.tuples(st.just("fail"), st.integers(0, 40)),
        ),
        min_size=4,
        max_size=60,
    )
)
def test_the_projection_reserves_every_request_ingest_accepted(steps):
    """One oracle's events in store order, as ingest writes them (a request only once its fee
    is reserved) and as the projection folds them. Ingest may see a finality later than the
    store holds it (``seen`` false: another partition's ingestor has not read it yet), never
    earlier. The projection must then reserve every stored request and agree on what is
    available once ingest has caught up: never ``unpaid``, never a different balance."""
    chain = 1
    funds, ingest_finality = fees.NO_FUNDS, {}
    balance, store_final, unfinal = OracleBalance(), None, []
    open_requests: list[int] = []
    for step in steps:
        match step:
            case ("deposit", block, amount):
                funds = fees.deposit(funds, Deposit(str(len(unfinal)), chain, block, amount))
                if store_final is not None and block <= store_final:
                    balance = balance.deposit(amount)
                else:
                    unfinal.append((block, amount))
            case ("finalize", block, seen):
                store_final = max(store_final or 0, block)
                for _, amount in [d for d in unfinal if d[0] <= store_final]:
                    balance = balance.deposit(amount)
                unfinal = [d for d in unfinal if d[0] > store_final]
                if seen:
                    ingest_finality = {chain: store_final}
            case ("submit", fee):
                after = fees.reserve(funds, fee, ingest_finality)
                if after is None:
                    continue  # held by ingest: never stored
                funds = after
                balance, ok = balance.reserve(fee)
                assert ok, "the projection could not reserve a request ingest accepted"
                open_requests.append(fee)
            case ("complete", pick) if open_requests:
                fee = open_requests.pop(pick % len(open_requests))
                balance, paid = balance.settle(fee, reserved=True)
                assert paid
            case ("fail", pick) if open_requests:
                fee = open_requests.pop(pick % len(open_requests))
                funds = fees.release(funds, fee)
                balance = balance.release(fee)
        assert fees.available(funds, ingest_finality) <= balance.available
    caught_up = {} if store_final is None else {chain: store_final}
    assert fees.available(funds, caught_up) == balance.available
    assert funds.committed == balance.reserved + balance.spent
