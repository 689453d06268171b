"""The posting state machine's transitions (pure): every state against what the chain can say,
and the driver persisting each record before it acts."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from settlement.posting import (
    Action,
    ChainView,
    Policy,
    PostedRoot,
    PostingRecord,
    SignedPost,
    State,
    decide,
    drive_once,
)

NOW = datetime(2026, 12, 1, tzinfo=UTC)
ROOT, OTHER, STATEMENT = "0x" + "11" * 32, "0x" + "22" * 32, "0x" + "33" * 32
POLICY = Policy(confirmations=3, replace_after_s=60)
FRESH = PostingRecord(epoch=4, root=ROOT, statement_hash=STATEMENT, total_cumulative=10)
SIGNED = replace(FRESH, state=State.SIGNED, nonce=7, raw_tx="0xraw", tx_hash="0xaa",
                 max_fee_per_gas=100, max_priority_fee_per_gas=10)  # fmt: skip
SENT = replace(SIGNED, state=State.BROADCAST, broadcast_at=NOW - timedelta(seconds=5))


def view(current: int = 4, head: int = 100, posted: PostedRoot | None = None,
         nonce: int = 7, known: bool = True) -> ChainView:  # fmt: skip
    return ChainView(current, head, posted, nonce, known)


def posted(root: str = ROOT, block: int = 99) -> PostedRoot:
    return PostedRoot(5, root, STATEMENT, 10, block, "0xbb")


def test_ledger_epoch_e_is_chain_epoch_e_plus_one():
    assert FRESH.chain_epoch == 5


@pytest.mark.parametrize(
    ("record", "action", "state"),
    [
        (FRESH, Action.SIGN, State.COMPUTED),
        (SIGNED, Action.BROADCAST, State.SIGNED),
        (SENT, Action.WAIT, State.BROADCAST),
        (replace(SENT, state=State.MINED, block_number=90), Action.BROADCAST, State.SIGNED),
    ],
)
def test_not_on_chain_yet(record, action, state):
    decision = decide(record, view(), POLICY, NOW)
    assert (decision.action, decision.record.state) == (action, state)


@pytest.mark.parametrize("record", [FRESH, SIGNED, SENT])
def test_our_root_on_chain_is_mined_then_confirmed(record):
    shallow = decide(record, view(current=5, posted=posted(block=99)), POLICY, NOW)
    assert shallow.record.state is State.MINED and shallow.action is Action.WAIT
    deep = decide(record, view(current=5, posted=posted(block=98)), POLICY, NOW)
    assert deep.record.state is State.CONFIRMED and deep.record.block_number == 98
    assert deep.record.tx_hash == "0xbb"


@pytest.mark.parametrize("record", [FRESH, SIGNED, SENT])
def test_another_root_for_our_epoch_is_refused(record):
    decision = decide(record, view(current=5, posted=posted(OTHER)), POLICY, NOW)
    assert decision.record.state is State.REFUSED
    assert decision.record.refusal.startswith("root_conflict")


def test_never_a_skipped_epoch():
    decision = decide(FRESH, view(current=3), POLICY, NOW)
    assert decision.record.refusal.startswith("not_next_epoch")
    ahead = decide(FRESH, view(current=6), POLICY, NOW)
    assert ahead.record.refusal.startswith("chain_ahead")


def test_nonce_used_by_something_else_is_refused():
    decision = decide(SENT, view(nonce=8), POLICY, NOW)
    assert decision.record.refusal.startswith("nonce_taken")


def test_a_lost_transaction_is_broadcast_again():
    assert decide(SENT, view(known=False), POLICY, NOW).action is Action.BROADCAST


def test_a_stuck_transaction_is_signed_again_at_the_same_nonce_with_higher_fees():
    stuck = replace(SENT, broadcast_at=NOW - timedelta(seconds=61))
    decision = decide(stuck, view(), POLICY, NOW)
    assert decision.action is Action.SIGN and decision.record.nonce == 7
    assert decision.record.max_fee_per_gas > 110 and decision.record.max_priority_fee_per_gas > 11


@pytest.mark.parametrize("state", [State.CONFIRMED, State.REFUSED])
def test_final_states_stay(state):
    record = replace(SENT, state=state)
    assert decide(record, view(current=9, posted=posted(OTHER)), POLICY, NOW).record == record


class FakeChain:
    def __init__(self, chain: ChainView) -> None:
        self.chain = chain
        self.calls: list[str] = []

    def view(self, record):  # type: ignore[no-untyped-def]
        return self.chain

    def sign_post(self, record, nonce, max_fee, max_priority):  # type: ignore[no-untyped-def]
        self.calls.append(f"sign {nonce} {max_fee}")
        return SignedPost(nonce if nonce is not None else 7, "0xraw2", "0xcc", 125, 12)

    def broadcast(self, raw_tx, tx_hash):  # type: ignore[no-untyped-def]
        self.calls.append(f"broadcast {tx_hash}")


def test_the_driver_stores_the_signed_transaction_before_broadcasting_it():
    chain, stored = FakeChain(view()), []

    def persist(record: PostingRecord) -> None:
        stored.append((record.state, tuple(chain.calls)))

    step = drive_once(FRESH, chain, persist, POLICY, lambda: NOW)
    assert step.record.state is State.SIGNED and stored == [(State.SIGNED, ("sign None None",))]
    step = drive_once(step.record, chain, persist, POLICY, lambda: NOW)
    assert step.record.state is State.BROADCAST
    assert stored[-1] == (State.BROADCAST, ("sign None None", "broadcast 0xcc"))


def test_a_replacement_keeps_the_earlier_hash():
    chain, stored = FakeChain(view()), []
    stuck = replace(SENT, broadcast_at=NOW - timedelta(seconds=61))
    step = drive_once(stuck, chain, stored.append, POLICY, lambda: NOW)
    assert [r.state for r in stored] == [State.COMPUTED, State.SIGNED]
    assert step.record.replaced_tx_hashes == ("0xaa",) and step.record.tx_hash == "0xcc"
    assert chain.calls == ["sign 7 126"]
