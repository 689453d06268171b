"""The read models' pure rules (projections.rules): examples with hand-computed numbers, and
properties against brute-force references on small integers."""

from __future__ import annotations

import dataclasses
import random
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from indexer.events.types import ChainLog, LockSlashed, Slashed, Staked
from projections.rules.attribution import Refusal, Use, attribute, first_registrations
from projections.rules.balances import OracleBalance
from projections.rules.epochs import Parameters, ParameterSchedule
from projections.rules.fees import split_by_units, split_fee
from projections.rules.stakes import (
    ChainFact,
    Kind,
    NodeStakeView,
    StakePayload,
    Status,
    canonical,
    lowest_active_stake,
    slashed_during,
    staked_coverage,
    state_after,
)
from projections.rules.uptime import Coverage, EpochUptime, epoch_uptime

TREASURY = "0x" + "7e" * 20
NODE = "0x" + "a1" * 20
ALICE = "0x" + "a1" * 20
BOB = "0x" + "b2" * 20
CAROL = "0x" + "c3" * 20


# -- epochs ---------------------------------------------------------------------------------


def params(effective_epoch: int = 0, genesis: int = 1000, length: int = 100) -> Parameters:
    return Parameters(
        effective_epoch=effective_epoch,
        genesis=genesis,
        epoch_length_s=length,
        heartbeat_interval_s=10,
        grace_s=5,
        emission_per_epoch=10**18,
        stake_cap=10**20,
        min_uptime_ppm=500_000,
        protocol_share_bps=1_000,
        data_share_bps=2_000,
        treasury=TREASURY,
    )


def test_epochs_from_genesis_with_one_length() -> None:
    schedule = ParameterSchedule.of(params(genesis=1000, length=100))
    assert [schedule.epoch_of(t) for t in (999, 1000, 1099, 1100)] == [None, 0, 0, 1]
    assert schedule.bounds(3) == (1300, 1400)


def test_a_new_length_starts_where_the_previous_epoch_ended() -> None:
    schedule = ParameterSchedule.of(params(0, 1000, 100), params(2, genesis=5, length=50))
    assert [schedule.bounds(e) for e in (1, 2, 3)] == [(1100, 1200), (1200, 1250), (1250, 1300)]
    assert [schedule.epoch_of(t) for t in (1199, 1200, 1249, 1250)] == [1, 2, 2, 3]
    assert schedule.genesis == 1000  # the later set's genesis is ignored


def test_the_later_set_for_an_epoch_wins() -> None:
    first, second = params(3, length=100), params(3, length=60)
    schedule = ParameterSchedule.of(params(0), first, second)
    assert schedule.in_force(3) is second
    assert schedule.bounds(4) == (1000 + 300 + 60, 1000 + 300 + 120)


def test_no_parameters_no_epochs() -> None:
    schedule = ParameterSchedule()
    assert schedule.epoch_of(10**9) is None
    assert schedule.in_force(0) is None
    with pytest.raises(ValueError):
        schedule.bounds(0)


def test_epochs_before_the_first_effective_epoch_have_no_parameters() -> None:
    schedule = ParameterSchedule.of(params(effective_epoch=2, genesis=1000, length=100))
    assert schedule.in_force(1) is None
    assert schedule.bounds(1) == (1100, 1200)
    assert schedule.bounds(2) == (1200, 1300)


@pytest.mark.parametrize(
    "change",
    [
        {"protocol_share_bps": 6_000, "data_share_bps": 4_001},
        {"min_uptime_ppm": 1_000_001},
        {"epoch_length_s": 0},
        {"stake_cap": -1},
        {"emission_per_epoch": 1.5},
        {"grace_s": True},
        {"treasury": "0x" + "7E" * 20},
        {"treasury": "0x" + "7e" * 19},
    ],
)
def test_invalid_parameters_are_refused(change: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        dataclasses.replace(params(), **change)


parameter_sets = st.lists(
    st.builds(
        params,
        effective_epoch=st.integers(0, 12),
        genesis=st.integers(0, 1000),
        length=st.integers(1, 40),
    ),
    min_size=1,
    max_size=5,
)


@given(parameter_sets, st.integers(0, 30), st.data())
def test_every_second_of_an_epoch_maps_back_to_it(
    sets: list[Parameters], epoch: int, data: st.DataObject
) -> None:
    schedule = ParameterSchedule.of(*sets)
    start, end = schedule.bounds(epoch)
    assert start >= sets[0].genesis
    for ts in {start, end - 1, data.draw(st.integers(start, end - 1))}:
        assert schedule.epoch_of(ts) == epoch
    assert schedule.epoch_of(end) == epoch + 1
    assert schedule.bounds(epoch + 1)[0] == end
    if epoch > 0:
        assert schedule.bounds(epoch - 1)[1] == start
    else:
        assert start == sets[0].genesis and schedule.epoch_of(start - 1) is None


@given(parameter_sets, st.integers(0, 30))
def test_in_force_is_the_latest_added_set_effective_by_then(
    sets: list[Parameters], epoch: int
) -> None:
    latest: dict[int, Parameters] = {}
    for p in sets:
        latest[p.effective_epoch] = p
    effective = [e for e in latest if e <= epoch]
    expected = latest[max(effective)] if effective else None
    assert ParameterSchedule.of(*sets).in_force(epoch) is expected


@given(parameter_sets, st.integers(0, 12), st.integers(1, 40))
def test_a_change_applies_from_its_effective_epoch_only(
    sets: list[Parameters], effective: int, length: int
) -> None:
    before = ParameterSchedule.of(*sets)
    change = params(effective, genesis=sets[0].genesis + 7, length=length)
    after = before.with_set(change)
    for epoch in range(effective):
        assert after.in_force(epoch) is before.in_force(epoch)
        if epoch >= min(p.effective_epoch for p in sets):
            assert after.bounds(epoch) == before.bounds(epoch)
    assert after.in_force(effective) is change
    assert after.bounds(effective)[1] - after.bounds(effective)[0] == length


# -- coverage -------------------------------------------------------------------------------

small_intervals = st.lists(st.tuples(st.integers(0, 30), st.integers(0, 30)), max_size=12)


def seconds(intervals: list[tuple[int, int]]) -> set[int]:
    return {s for start, end in intervals for s in range(start, end)}


def assert_canonical(coverage: Coverage) -> None:
    for start, end in coverage.intervals:
        assert start < end
    for (_, end), (start, _) in zip(coverage.intervals, coverage.intervals[1:], strict=False):
        assert end < start  # sorted, disjoint and not even adjacent


def test_coverage_merges_touching_and_overlapping_intervals() -> None:
    coverage = Coverage().add(0, 10).add(10, 20).add(30, 40).add(15, 31).add(50, 55).add(2, 3)
    assert coverage.intervals == ((0, 40), (50, 55))
    assert coverage.measure() == 45
    assert coverage.clip(5, 52).intervals == ((5, 40), (50, 52))
    assert coverage.add(40, 45).add(45, 50).intervals == ((0, 55),)
    assert Coverage.of([(0, 5), (10, 20)]).add(5, 7).intervals == ((0, 7), (10, 20))
    assert Coverage.of([(0, 5), (10, 20)]).add(8, 10).intervals == ((0, 5), (8, 20))


@given(small_intervals)
def test_coverage_add_in_any_order_is_the_union(intervals: list[tuple[int, int]]) -> None:
    coverage = Coverage()
    for start, end in intervals:
        coverage = coverage.add(start, end)
    assert_canonical(coverage)
    assert coverage == Coverage.of(intervals) == Coverage.of(reversed(intervals))
    assert coverage.measure() == len(seconds(intervals))
    assert {s for s in range(-1, 62) if s in coverage} == seconds(intervals)


@given(small_intervals, small_intervals, st.integers(0, 60), st.integers(0, 60))
def test_intersect_and_clip_match_sets_of_seconds(
    mine: list[tuple[int, int]], theirs: list[tuple[int, int]], start: int, end: int
) -> None:
    both = Coverage.of(mine).intersect(Coverage.of(theirs))
    assert_canonical(both)
    assert seconds(list(both.intervals)) == seconds(mine) & seconds(theirs)
    clipped = Coverage.of(mine).clip(start, end)
    assert_canonical(clipped)
    assert seconds(list(clipped.intervals)) == seconds(mine) & set(range(start, end))


@given(small_intervals, st.tuples(st.integers(0, 60), st.integers(0, 60)))
def test_add_leaves_the_original_unchanged(
    intervals: list[tuple[int, int]], extra: tuple[int, int]
) -> None:
    original = Coverage.of(intervals)
    copy = Coverage(original.intervals)
    original.add(*extra)
    assert original == copy


# -- uptime ---------------------------------------------------------------------------------


def test_uptime_by_hand() -> None:
    beats = [-15, 0, 20, 40]  # covers [-15, 60) at interval 10
    staked = Coverage.of([(30, 200)])
    uptime = epoch_uptime(beats, 10, (0, 100), staked)
    assert (uptime.covered_s, uptime.staked_s, uptime.expected_s) == (30, 70, 100)
    assert uptime.uptime_ppm == 300_000
    assert uptime.heartbeats == 3
    assert epoch_uptime([0, 7], 5, (0, 30), Coverage.of([(0, 30)])).uptime_ppm == 566_666


Case = dict[str, Any]

uptime_cases = st.fixed_dictionaries(
    {
        "beats": st.lists(st.integers(-30, 150), max_size=15),
        "interval": st.integers(1, 10),
        "start": st.integers(0, 40),
        "length": st.integers(1, 80),
        "staked": small_intervals.map(lambda xs: [(a * 2, b * 2) for a, b in xs]),
    }
)


def uptime_of(case: Case, beats: list[int] | None = None) -> EpochUptime:
    window = (case["start"], case["start"] + case["length"])
    staked = Coverage.of(case["staked"])
    return epoch_uptime(case["beats"] if beats is None else beats, case["interval"], window, staked)


@given(uptime_cases)
def test_uptime_matches_counting_seconds(case: Case) -> None:
    start, end, i = case["start"], case["start"] + case["length"], case["interval"]
    staked = seconds(case["staked"])
    covered = [
        s
        for s in range(start, end)
        if s in staked and any(t <= s < t + 2 * i for t in case["beats"])
    ]
    uptime = uptime_of(case)
    assert uptime.covered_s == len(covered)
    assert uptime.staked_s == len(staked & set(range(start, end)))
    assert uptime.expected_s == case["length"]
    assert uptime.uptime_ppm == len(covered) * 1_000_000 // case["length"]
    assert 0 <= uptime.uptime_ppm <= 1_000_000
    assert uptime.covered_s <= uptime.staked_s <= uptime.expected_s


@given(uptime_cases, st.lists(st.integers(-30, 150), max_size=5))
def test_more_heartbeats_never_lower_uptime(case: Case, more: list[int]) -> None:
    assert uptime_of(case, case["beats"] + more).covered_s >= uptime_of(case).covered_s


@given(uptime_cases, st.randoms(use_true_random=False))
def test_duplicate_or_reordered_heartbeats_change_nothing(
    case: Case,
    rnd: random.Random,
) -> None:
    shuffled = case["beats"] * 2
    rnd.shuffle(shuffled)
    again, once = uptime_of(case, shuffled), uptime_of(case)
    assert (again.covered_s, again.uptime_ppm) == (once.covered_s, once.uptime_ppm)


@given(uptime_cases)
def test_no_uptime_while_not_staked(case: Case) -> None:
    uptime = uptime_of({**case, "staked": []})
    assert (uptime.covered_s, uptime.uptime_ppm) == (0, 0)


def test_full_uptime_needs_the_whole_epoch_staked_and_covered() -> None:
    window = (100, 200)
    beats = list(range(90, 200, 10))
    assert epoch_uptime(beats, 10, window, Coverage.of([(0, 300)])).uptime_ppm == 1_000_000
    assert epoch_uptime(beats, 10, window, Coverage.of([(0, 199)])).uptime_ppm == 990_000


# -- stakes ---------------------------------------------------------------------------------


@dataclasses.dataclass
class Contract:
    """A reference NodeStaking for one node: emits the facts the contract's events state."""

    prefix: str = "x"
    block: int = 1
    log: int = 0
    active: int = 0
    locks: dict[int, int] = dataclasses.field(default_factory=dict)
    facts: list[ChainFact] = dataclasses.field(default_factory=list)

    @property
    def locked(self) -> int:
        return sum(self.locks.values())

    def next_block(self, step: int = 1) -> None:
        if step:
            self.block, self.log = self.block + step, 0

    def emit(self, kind: Kind, amount: int, **totals: int | None) -> None:
        event_id = f"{self.prefix}-{len(self.facts)}"
        fact = ChainFact(
            event_id, self.block, self.log, self.block * 10, kind, NODE, amount=amount, **totals
        )
        self.facts.append(fact)
        self.log += 1

    def stake(self, amount: int) -> None:
        self.active += amount
        self.emit(Kind.STAKED, amount, role=1, stake_after=self.active)

    def unstake(self, amount: int) -> None:
        self.active -= amount
        self.locks[len(self.facts)] = amount
        self.emit(Kind.UNSTAKE_REQUESTED, amount, stake_after=self.active, locked_after=self.locked)

    def withdraw(self, lock_id: int) -> None:
        amount = self.locks.pop(lock_id)
        self.emit(Kind.WITHDRAWN, amount, locked_after=self.locked)

    def slash(self, wanted: int) -> None:
        taken = min(wanted, self.active)
        self.active -= taken
        for lock_id in sorted(self.locks, reverse=True):
            cut = min(wanted - taken, self.locks[lock_id])
            if cut:
                self.locks[lock_id] -= cut
                taken += cut
                self.emit(Kind.LOCK_SLASHED, cut)
                if not self.locks[lock_id]:
                    del self.locks[lock_id]
        self.emit(Kind.SLASHED, taken, stake_after=self.active, locked_after=self.locked)


@st.composite
def contracts(draw: st.DrawFn, prefix: str = "x", first_block: int = 1) -> Contract:
    contract = Contract(prefix=prefix, block=first_block)
    for _ in range(draw(st.integers(0, 12))):
        contract.next_block(draw(st.integers(0, 2)))
        action = draw(st.sampled_from(["stake", "stake", "unstake", "withdraw", "slash"]))
        if action == "stake":
            contract.stake(draw(st.integers(1, 100)))
        elif action == "unstake" and contract.active:
            contract.unstake(draw(st.integers(1, contract.active)))
        elif action == "withdraw" and contract.locks:
            contract.withdraw(draw(st.sampled_from(sorted(contract.locks))))
        elif action == "slash":
            contract.slash(draw(st.integers(0, 150)))
    return contract


def shuffled(facts: list[ChainFact], rnd: random.Random) -> list[ChainFact]:
    facts = list(facts)
    rnd.shuffle(facts)
    return facts


def test_status_through_a_node_s_life() -> None:
    contract, seen = Contract(), []
    for step in (
        lambda: contract.stake(100),
        lambda: contract.unstake(100),
        lambda: contract.withdraw(1),
        lambda: contract.stake(50),
        lambda: contract.slash(20),
        lambda: contract.unstake(30),
        lambda: contract.stake(10),
    ):
        contract.next_block()
        step()
        seen.append(state_after(contract.facts).status)
    assert seen == [
        Status.STAKED,
        Status.UNSTAKING,
        Status.UNSTAKED,
        Status.STAKED,
        Status.SLASHED,
        Status.SLASHED,  # a slashed node stays marked until it stakes again
        Status.STAKED,
    ]
    final = state_after(contract.facts)
    assert (final.active, final.locked, final.role) == (10, 30, 1)
    assert state_after([]).status is Status.NEVER_STAKED


@given(contracts(), st.randoms(use_true_random=False))
def test_the_state_is_the_contract_s_post_state(contract: Contract, rnd: random.Random) -> None:
    view = NodeStakeView.of(shuffled(contract.facts, rnd), set(), contract.block)
    assert (view.pending.active, view.pending.locked) == (contract.active, contract.locked)
    assert view.final == view.pending


@given(contracts(), st.data())
def test_a_retracted_log_leaves_no_trace(contract: Contract, data: st.DataObject) -> None:
    facts = contract.facts
    gone = data.draw(st.sets(st.sampled_from([f.event_id for f in facts]))) if facts else set()
    kept = [f for f in facts if f.event_id not in gone]
    finalized = data.draw(st.integers(0, contract.block + 1))
    start, end = sorted(data.draw(st.tuples(st.integers(0, 300), st.integers(0, 300))))
    window = (start, end)
    for rule in (lowest_active_stake, slashed_during):
        assert rule(facts, gone, finalized, window) == rule(kept, set(), finalized, window)
    assert NodeStakeView.of(facts, gone, finalized) == NodeStakeView.of(kept, set(), finalized)
    assert staked_coverage(facts, gone, finalized, 400) == staked_coverage(kept, (), finalized, 400)


@given(contracts(prefix="common"), st.data())
def test_after_a_reorg_the_state_is_the_canonical_chain_s(
    common: Contract, data: st.DataObject
) -> None:
    fork = data.draw(st.integers(1, common.block + 1))
    old = [f for f in common.facts if f.block_number >= fork]
    new = data.draw(contracts(prefix="new", first_block=fork)).facts
    canonical_chain = [f for f in common.facts if f.block_number < fork] + new
    seen, retracted = common.facts + new, {f.event_id for f in old}
    finalized = data.draw(st.integers(0, fork + 30))
    assert NodeStakeView.of(seen, retracted, finalized) == NodeStakeView.of(
        canonical_chain, set(), finalized
    )
    assert canonical(seen, retracted) == sorted(canonical_chain, key=lambda f: f.position)


@given(contracts(), contracts(prefix="later"), st.data())
def test_unfinalized_logs_never_count_as_final(
    contract: Contract, later: Contract, data: st.DataObject
) -> None:
    finalized = data.draw(st.integers(0, contract.block))
    above = [dataclasses.replace(f, block_number=f.block_number + finalized) for f in later.facts]
    facts = contract.facts + above
    final_facts = [f for f in facts if f.block_number <= finalized]
    window = (0, 10**6)
    view = NodeStakeView.of(facts, set(), finalized)
    assert view.final == state_after(final_facts)
    assert view.pending == state_after(canonical(facts, set()))
    assert lowest_active_stake(facts, set(), finalized, window) == lowest_active_stake(
        final_facts, set(), finalized, window
    )
    assert NodeStakeView.of(facts, set(), None).final == state_after([])
    assert lowest_active_stake(facts, set(), None, window) == 0


def test_lowest_active_stake_by_hand() -> None:
    contract = Contract()  # block b is timed b * 10
    contract.next_block(0)  # block 1, t=10
    contract.stake(100)
    contract.next_block(4)  # block 5, t=50
    contract.unstake(40)
    contract.next_block(5)  # block 10, t=100: out and back in one block
    contract.unstake(60)
    contract.stake(80)
    facts = contract.facts
    assert lowest_active_stake(facts, set(), 10, (0, 100)) == 0  # not staked at 0
    assert lowest_active_stake(facts, set(), 10, (10, 100)) == 60
    assert lowest_active_stake(facts, set(), 10, (20, 40)) == 100
    assert lowest_active_stake(facts, set(), 10, (60, 110)) == 0  # unstaked at t=100
    assert lowest_active_stake(facts, set(), 10, (101, 200)) == 80
    assert lowest_active_stake(facts, set(), 9, (101, 200)) == 60  # block 10 not final
    assert staked_coverage(facts, set(), 10, 500) == Coverage.of([(10, 500)])


@given(contracts(), st.integers(0, 200), st.integers(1, 100))
def test_lowest_active_stake_matches_every_state_held(
    contract: Contract, start: int, length: int
) -> None:
    end = start + length
    facts = contract.facts
    running, held = (
        [(f.block_time, state_after(facts[: i + 1]).active) for i, f in enumerate(facts)],
        [],
    )
    at_start = [active for time, active in running if time <= start]
    held.append(at_start[-1] if at_start else 0)
    held += [active for time, active in running if start <= time < end]
    assert lowest_active_stake(facts, set(), contract.block, (start, end)) == min(held)


@given(contracts(), st.integers(0, 300))
def test_staked_coverage_matches_the_state_each_second(contract: Contract, until: int) -> None:
    facts = contract.facts
    coverage = staked_coverage(facts, set(), contract.block, until)
    for second in range(until):
        in_force = state_after([f for f in facts if f.block_time <= second])
        assert (second in coverage) == (in_force.active > 0)


def test_slashed_during_counts_final_slashes_inside_the_window() -> None:
    contract = Contract()
    contract.stake(100)  # t=10
    contract.next_block(4)
    contract.unstake(30)  # t=50
    contract.next_block(5)
    contract.slash(90)  # t=100: the 70 active, then 20 of the lock's 30
    facts = contract.facts
    assert [f.kind for f in facts[-2:]] == [Kind.LOCK_SLASHED, Kind.SLASHED]
    assert slashed_during(facts, set(), 10, (100, 200))
    assert not slashed_during(facts, set(), 10, (0, 100))
    assert not slashed_during(facts, set(), 9, (100, 200))
    assert not slashed_during(facts, {facts[-1].event_id, facts[-2].event_id}, 10, (100, 200))
    assert state_after(facts).status is Status.SLASHED
    assert (state_after(facts).active, state_after(facts).locked) == (0, 10)


def test_facts_from_stored_chain_events() -> None:
    def log(index: int) -> ChainLog:
        return ChainLog(
            chain_id=1,
            contract=TREASURY,
            block_number=7,
            block_hash="0x" + "11" * 32,
            tx_hash="0x" + "22" * 32,
            log_index=index,
        )

    staked = Staked(log=log(0), node=NODE, role=1, amount=5, new_stake=105)
    lock_slashed = LockSlashed(log=log(1), node=NODE, lock_id=3, amount=4, remaining=6)
    slashed = Slashed(
        log=log(2), node=NODE, reason="0x" + "00" * 32, amount=9, new_stake=100, new_locked=6
    )
    payloads: list[StakePayload] = [staked, lock_slashed, slashed]
    facts = [ChainFact.of(f"e{i}", p, 70) for i, p in enumerate(payloads)]
    assert facts[0] == ChainFact("e0", 7, 0, 70, Kind.STAKED, NODE, 1, 5, 105, None)
    assert (facts[1].stake_after, facts[1].locked_after) == (None, None)  # remaining: one lock
    assert (state_after(facts).active, state_after(facts).locked) == (100, 6)


# -- balances -------------------------------------------------------------------------------


def test_balance_by_hand() -> None:
    balance = OracleBalance().deposit(100)
    balance, ok = balance.reserve(60)
    assert ok and balance.available == 40
    assert balance.reserve(41) == (balance, False)
    balance, paid = balance.settle(30, reserved=False)  # fits in the 40 available
    assert paid and balance.available == 10
    assert balance.settle(11, reserved=False) == (balance, False)  # unpaid, not partly paid
    balance = balance.release(60)
    assert balance == OracleBalance(deposited=100, reserved=0, spent=30)
    with pytest.raises(ValueError):
        balance.release(1)


balance_ops = st.lists(
    st.one_of(
        st.tuples(st.just("deposit"), st.integers(0, 100)),
        st.tuples(st.just("submit"), st.integers(0, 80)),
        st.tuples(st.just("complete_unreserved"), st.integers(0, 80)),
        st.tuples(st.just("complete"), st.integers(0, 20)),
        st.tuples(st.just("fail"), st.integers(0, 20)),
    ),
    max_size=30,
)


@given(balance_ops)
def test_balance_debits_in_store_order_and_never_goes_negative(ops: list[tuple[str, int]]) -> None:
    # reference: a ledger of every request's fee and state, summed from scratch at each step
    deposits: list[int] = []
    requests: list[tuple[int, str]] = []  # (fee, state): reserved refused paid unpaid released

    def available() -> int:
        held = sum(fee for fee, state in requests if state in ("reserved", "paid"))
        return sum(deposits) - held

    def open_ids() -> list[int]:
        return [i for i, (_, state) in enumerate(requests) if state in ("reserved", "refused")]

    balance = OracleBalance()
    for op, n in ops:
        if op == "deposit":
            deposits.append(n)
            balance = balance.deposit(n)
        elif op == "submit":
            ok = n <= available()
            requests.append((n, "reserved" if ok else "refused"))
            balance, reserved = balance.reserve(n)
            assert reserved == ok
        elif op == "complete_unreserved":
            paid = n <= available()
            requests.append((n, "paid" if paid else "unpaid"))
            balance, did_pay = balance.settle(n, reserved=False)
            assert did_pay == paid
        elif open_ids():
            index = open_ids()[n % len(open_ids())]
            fee, state = requests[index]
            if op == "fail":
                requests[index] = (fee, "released")
                balance = balance.release(fee) if state == "reserved" else balance
            elif state == "reserved":
                requests[index] = (fee, "paid")
                balance, paid = balance.settle(fee, reserved=True)
                assert paid
            else:  # accepted with no reservation: paid from what is available now
                paid = fee <= available()
                requests[index] = (fee, "paid" if paid else "unpaid")
                balance, did_pay = balance.settle(fee, reserved=False)
                assert did_pay == paid
        assert balance.available == available() >= 0
        assert balance.deposited == sum(deposits)
        assert balance.spent == sum(fee for fee, state in requests if state == "paid")
        assert min(balance.reserved, balance.spent) >= 0


# -- fees -----------------------------------------------------------------------------------


def test_split_fee_by_hand() -> None:
    split = split_fee(1001, protocol_bps=1_000, data_bps=2_000)
    assert (split.protocol, split.data, split.worker) == (100, 200, 701)
    assert split_fee(9, 5_000, 5_000) == type(split)(4, 4, 1)
    with pytest.raises(ValueError):
        split_fee(10, 6_000, 4_001)


@given(
    st.integers(0, 2**256 - 1),
    st.integers(0, 10_000).flatmap(lambda p: st.tuples(st.just(p), st.integers(0, 10_000 - p))),
)
def test_split_fee_sums_to_the_fee(fee: int, shares: tuple[int, int]) -> None:
    protocol_bps, data_bps = shares
    split = split_fee(fee, protocol_bps, data_bps)
    assert split.protocol + split.data + split.worker == fee
    assert min(split.protocol, split.data, split.worker) >= 0
    assert split.protocol == fee * protocol_bps // 10_000
    assert split.data == fee * data_bps // 10_000


def test_split_by_units_by_hand() -> None:
    assert split_by_units(10, {BOB: 1, ALICE: 1, CAROL: 1}) == ({ALICE: 3, BOB: 3, CAROL: 3}, 1)
    assert split_by_units(100, {ALICE: 3, BOB: 1}) == ({ALICE: 75, BOB: 25}, 0)
    assert split_by_units(7, {}) == ({}, 7)


@given(
    st.integers(0, 10**30),
    st.dictionaries(st.sampled_from([ALICE, BOB, CAROL, TREASURY]), st.integers(0, 10**6)),
    st.randoms(use_true_random=False),
)
def test_split_by_units_conserves_and_ignores_order(
    amount: int, units: dict[str, int], rnd: random.Random
) -> None:
    shares, dust = split_by_units(amount, units)
    assert sum(shares.values()) + dust == amount
    assert set(shares) == set(units) and min([dust, *shares.values()]) >= 0
    total = sum(units.values())
    if total:
        assert dust < len(units)
        for key, share in shares.items():
            assert share * total <= amount * units[key] < (share + 1) * total
    items = list(units.items())
    rnd.shuffle(items)
    again = split_by_units(amount, dict(items))
    assert again == (shares, dust) and list(again[0]) == list(shares)


# -- attribution ----------------------------------------------------------------------------


def test_attribution_by_hand() -> None:
    registry = first_registrations(
        [("http://a.io/", ALICE), ("http://b.io/", BOB), ("http://a.io/", CAROL)]
    )
    assert registry == {"http://a.io/": ALICE, "http://b.io/": BOB}
    uses = [
        Use("http://a.io/", ALICE, 5),
        Use("http://a.io/", CAROL, 2),  # CAROL's claim came second
        Use("http://a.io/x", ALICE, 3),  # exact pattern only
        Use("http://b.io/", BOB, 1),
    ]
    result = attribute(uses, registry)
    assert result.credited == (uses[0], uses[3])
    assert result.refused == (
        (uses[1], Refusal.REGISTERED_TO_OTHER),
        (uses[2], Refusal.UNREGISTERED_SOURCE),
    )
    assert (result.credited_units, result.refused_units) == (6, 5)
    assert result.units_by_contributor() == {ALICE: 5, BOB: 1}


sources = st.sampled_from(["http://a.io/", "http://b.io/", "http://c.io/x"])
contributors = st.sampled_from([ALICE, BOB, CAROL])


@given(
    st.lists(st.tuples(sources, contributors, st.integers(1, 1000)), max_size=10),
    st.lists(st.tuples(sources, contributors), max_size=5),
)
def test_every_unit_is_credited_or_refused(
    uses: list[tuple[str, str, int]], registrations: list[tuple[str, str]]
) -> None:
    registry = first_registrations(registrations)
    result = attribute(uses, registry)
    assert result.credited_units + result.refused_units == sum(u[2] for u in uses)
    assert sorted(result.credited + tuple(u for u, _ in result.refused)) == sorted(uses)
    for use in result.credited:
        assert (use.source, use.contributor) == next(r for r in registrations if r[0] == use.source)
    for use, reason in result.refused:
        expected = (
            Refusal.UNREGISTERED_SOURCE
            if use.source not in dict(registrations)
            else Refusal.REGISTERED_TO_OTHER
        )
        assert reason is expected
    assert sum(result.units_by_contributor().values()) == result.credited_units
