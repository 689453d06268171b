"""Posting an epoch's root: a persisted state machine, as a pure transition function.

States (``PostingRecord.state``)::

    computed ──sign──► signed ──broadcast──► broadcast ──(RootPosted seen)──► mined
                          ▲                      │                              │
                          └──replace (same nonce,│higher fee) after a timeout   │ N blocks
                                                 │                              ▼
                                                 └──(RootPosted seen, deep)──► confirmed
    any state ──(chain has another root for the epoch, or our nonce went elsewhere)──► refused

:func:`decide` looks at one :class:`ChainView` (what the chain says now) and a record and returns
the next record and the one action the driver must take (sign, broadcast, wait, nothing). The
driver (:func:`drive`) persists every new record *before* acting on it: the nonce and the raw
transaction are stored before anything is broadcast, so a process killed at any point restarts
from the record and the chain alone:

- the chain is the truth: a ``RootPosted`` for our chain epoch with our root makes the record
  ``mined`` (then ``confirmed`` once ``confirmations`` blocks deep) whatever state it was in;
  with another root it is refused loudly (two roots for one epoch are never posted);
- ``signed`` (killed before or after the broadcast) broadcasts the same bytes again: a node that
  has them already answers "known", a nonce already mined shows up as ``RootPosted``;
- ``mined`` whose ``RootPosted`` is gone (a reorg dropped the block) goes back to ``signed``
  and the same bytes are broadcast again;
- ``broadcast`` for longer than ``replace_after_s`` goes back to ``computed`` keeping its nonce,
  with both fee fields raised, and is signed again at that nonce (a replacement: at most one
  of the two can be mined, both post the same root; the earlier hash is kept);
- the distributor must be at ``chain_epoch - 1``: it cannot skip an epoch, and neither do we.

Ledger epoch ``e`` is posted as chain epoch ``e + 1`` (the distributor's ``currentEpoch`` is 0
before any post and ``postRoot`` wants ``currentEpoch + 1``; ledger epochs count from 0).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import datetime
from enum import StrEnum
from typing import Any, Protocol


class State(StrEnum):
    COMPUTED = "computed"
    SIGNED = "signed"
    BROADCAST = "broadcast"
    MINED = "mined"
    CONFIRMED = "confirmed"
    REFUSED = "refused"


FINAL_STATES = frozenset({State.CONFIRMED, State.REFUSED})


class Action(StrEnum):
    SIGN = "sign"
    """Sign postRoot at ``record.nonce`` (None: the account's next nonce) and the record's fees
    (None: the node's suggestion)."""
    BROADCAST = "broadcast"
    """Send ``record.raw_tx`` (again)."""
    WAIT = "wait"
    """Nothing to do until the chain moves (a receipt, more blocks)."""
    NONE = "none"
    """The record is final."""


def chain_epoch_of(epoch: int) -> int:
    """The distributor's epoch number for ledger epoch ``epoch``."""
    return epoch + 1


@dataclass(frozen=True)
class PostingRecord:
    """The ``settlements`` row's posting part."""

    epoch: int
    root: str
    statement_hash: str
    total_cumulative: int
    state: State = State.COMPUTED
    nonce: int | None = None
    raw_tx: str | None = None
    tx_hash: str | None = None
    replaced_tx_hashes: tuple[str, ...] = ()
    max_fee_per_gas: int | None = None
    max_priority_fee_per_gas: int | None = None
    broadcast_at: datetime | None = None
    block_number: int | None = None
    refusal: str | None = None

    @property
    def chain_epoch(self) -> int:
        return chain_epoch_of(self.epoch)

    @property
    def tx_hashes(self) -> tuple[str, ...]:
        return (*self.replaced_tx_hashes, *((self.tx_hash,) if self.tx_hash else ()))


@dataclass(frozen=True)
class PostedRoot:
    """A ``RootPosted`` log on the canonical chain."""

    chain_epoch: int
    root: str
    statement_hash: str
    total_cumulative: int
    block_number: int
    tx_hash: str


@dataclass(frozen=True)
class ChainView:
    """What the chain says now, for one record."""

    current_epoch: int
    head: int
    posted: PostedRoot | None
    """``RootPosted`` for the record's chain epoch, if the canonical chain has one."""
    confirmed_nonce: int
    """The settler account's transaction count at the head (nonces below it are used)."""
    known: bool = False
    """Whether the node knows the record's transaction (pending or mined)."""


@dataclass(frozen=True)
class Policy:
    confirmations: int = 3
    """Blocks (the RootPosted's included) after which a posting is confirmed."""
    replace_after_s: float = 120.0
    """A broadcast transaction not mined after this long is replaced with a higher fee."""
    fee_bump_percent: int = 25
    """Raise both fee fields by this much per replacement (nodes want at least 10%)."""


@dataclass(frozen=True)
class Decision:
    record: PostingRecord
    action: Action
    note: str = ""


def _refuse(record: PostingRecord, code: str, message: str) -> Decision:
    refused = replace(record, state=State.REFUSED, refusal=f"{code}: {message}")
    return Decision(refused, Action.NONE, refused.refusal or "")


def decide(record: PostingRecord, chain: ChainView, policy: Policy, now: datetime) -> Decision:
    """The next record and action for ``record`` given ``chain`` (pure)."""
    if record.state in FINAL_STATES:
        return Decision(record, Action.NONE)
    posted = chain.posted
    if posted is not None:
        if posted.root.lower() != record.root.lower() or (
            posted.statement_hash.lower() != record.statement_hash.lower()
        ):
            return _refuse(
                record,
                "root_conflict",
                f"the distributor has root {posted.root} (statement {posted.statement_hash}) "
                f"for chain epoch {posted.chain_epoch} in tx {posted.tx_hash}, ours is "
                f"{record.root} (statement {record.statement_hash}); never posting a second "
                "root: find who else holds the poster role",
            )
        depth = chain.head - posted.block_number + 1
        state = State.CONFIRMED if depth >= policy.confirmations else State.MINED
        mined = replace(record, state=state, block_number=posted.block_number,
                        tx_hash=posted.tx_hash)  # fmt: skip
        return Decision(mined, Action.NONE if state is State.CONFIRMED else Action.WAIT)
    if chain.current_epoch >= record.chain_epoch:
        return _refuse(
            record,
            "chain_ahead",
            f"the distributor is at epoch {chain.current_epoch} but shows no RootPosted for "
            f"chain epoch {record.chain_epoch}; check the RPC node and the deployment",
        )
    if chain.current_epoch != record.chain_epoch - 1:
        return _refuse(
            record,
            "not_next_epoch",
            f"the distributor is at epoch {chain.current_epoch}; chain epoch "
            f"{record.chain_epoch} is not the next one; post the epochs in order",
        )
    if record.nonce is not None and chain.confirmed_nonce > record.nonce:
        return _refuse(
            record,
            "nonce_taken",
            f"nonce {record.nonce} of the settler was used by a transaction that posted no root "
            f"for chain epoch {record.chain_epoch} (ours: {', '.join(record.tx_hashes)}, "
            "reverted or replaced by another transaction); use the settler key for nothing else",
        )
    if record.state is State.COMPUTED:
        return Decision(record, Action.SIGN)
    if record.state is State.MINED:
        # our RootPosted was seen, and is gone: a reorg dropped its block
        back = replace(record, state=State.SIGNED, block_number=None)
        return Decision(back, Action.BROADCAST, "receipt dropped by a reorg: broadcast again")
    if record.state is State.SIGNED:
        return Decision(record, Action.BROADCAST)
    # broadcast, not mined yet
    if not chain.known:
        return Decision(record, Action.BROADCAST, "the node lost the transaction: send again")
    assert record.broadcast_at is not None
    if (now - record.broadcast_at).total_seconds() >= policy.replace_after_s:
        bumped = replace(
            record,
            state=State.COMPUTED,
            max_fee_per_gas=_bump(record.max_fee_per_gas, policy),
            max_priority_fee_per_gas=_bump(record.max_priority_fee_per_gas, policy),
        )
        return Decision(bumped, Action.SIGN, f"replace {record.tx_hash}: not mined in time")
    return Decision(record, Action.WAIT)


def _bump(fee: int | None, policy: Policy) -> int | None:
    if fee is None:
        return None
    return fee * (100 + policy.fee_bump_percent) // 100 + 1


# --- the driver ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class SignedPost:
    nonce: int
    raw_tx: str
    tx_hash: str
    max_fee_per_gas: int
    max_priority_fee_per_gas: int


class PostingChain(Protocol):
    """The chain as the posting machine needs it (built in ``masa.app.wiring``)."""

    def view(self, record: PostingRecord) -> ChainView: ...

    def sign_post(
        self,
        record: PostingRecord,
        nonce: int | None,
        max_fee_per_gas: int | None,
        max_priority_fee_per_gas: int | None,
    ) -> SignedPost: ...

    def broadcast(self, raw_tx: str, tx_hash: str) -> None: ...


def signed(record: PostingRecord, post: SignedPost) -> PostingRecord:
    """``record`` with a new signed transaction (a replacement keeps the earlier hash)."""
    earlier = record.replaced_tx_hashes
    if record.tx_hash and record.tx_hash != post.tx_hash:
        earlier = (*earlier, record.tx_hash)
    return replace(
        record,
        state=State.SIGNED,
        nonce=post.nonce,
        raw_tx=post.raw_tx,
        tx_hash=post.tx_hash,
        replaced_tx_hashes=earlier,
        max_fee_per_gas=post.max_fee_per_gas,
        max_priority_fee_per_gas=post.max_priority_fee_per_gas,
    )


@dataclass
class Step:
    record: PostingRecord
    action: Action
    notes: list[str] = field(default_factory=list)


def drive_once(
    record: PostingRecord,
    chain: PostingChain,
    persist: Callable[[PostingRecord], None],
    policy: Policy,
    now: Callable[[], datetime],
) -> Step:
    """One transition: decide, persist the new record, then act (sign or broadcast) and
    persist what the action produced. Returns where it stopped."""
    decision = decide(record, chain.view(record), policy, now())
    current = decision.record
    if current != record:
        persist(current)
    step = Step(current, decision.action, [decision.note] if decision.note else [])
    if decision.action is Action.SIGN:
        post = chain.sign_post(
            current, current.nonce, current.max_fee_per_gas, current.max_priority_fee_per_gas
        )
        current = signed(current, post)
        persist(current)  # nonce and raw transaction stored before the broadcast
        step.record = current
    elif decision.action is Action.BROADCAST:
        assert current.raw_tx is not None and current.tx_hash is not None
        chain.broadcast(current.raw_tx, current.tx_hash)
        current = replace(current, state=State.BROADCAST, broadcast_at=now())
        persist(current)
        step.record = current
    return step


def to_json(record: PostingRecord) -> dict[str, Any]:
    return {
        "epoch": record.epoch,
        "chain_epoch": record.chain_epoch,
        "state": str(record.state),
        "root": record.root,
        "statement_hash": record.statement_hash,
        "total_cumulative": str(record.total_cumulative),
        "nonce": record.nonce,
        "tx_hash": record.tx_hash,
        "replaced_tx_hashes": list(record.replaced_tx_hashes),
        "block_number": record.block_number,
        "refusal": record.refusal,
    }


def hashes_text(hashes: tuple[str, ...]) -> str:
    return json.dumps(list(hashes))


def hashes_from(text: str | None) -> tuple[str, ...]:
    return tuple(json.loads(text)) if text else ()
