"""A node's stake from NodeStaking's logs, with finality and reorg retractions.

Every NodeStaking event carries the node's post-state totals (``new_stake``, ``new_locked``),
so the state after a set of logs is the post-state of the last one in chain order
``(block_number, log_index)`` that carries each total. ``LockSlashed.remaining`` is what is left
in one lock, not the node's total: a ``LockSlashed`` changes no total (the ``Slashed`` that
follows it in the same transaction carries them) but it is a slash.

Two views of one node's facts:

- **final**: logs in blocks up to the last ``ChainFinalized`` block, not retracted. Money and
  emissions use this one only.
- **pending**: every log not retracted, final or not (what the chain says now).

A retracted log is removed before anything is computed, so it leaves no trace.

Status: ``never_staked`` before any ``Staked``; ``slashed`` if a slash (``Slashed`` or
``LockSlashed``) comes after the node's last ``Staked`` in chain order, whatever its totals
(a slashed node stays marked until it stakes again); otherwise ``staked`` (active > 0),
``unstaking`` (active 0, locked > 0) or ``unstaked`` (both 0).

``block_time`` is the log's block timestamp (the event's ``occurred_at``) in unix seconds.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from dataclasses import dataclass
from enum import StrEnum
from functools import reduce

from indexer.events.types import LockSlashed, Slashed, Staked, UnstakeRequested, Withdrawn
from projections.rules.uptime import Coverage, Interval

StakePayload = Staked | UnstakeRequested | Withdrawn | LockSlashed | Slashed


class Kind(StrEnum):
    """The NodeStaking events that concern one node's stake."""

    STAKED = "Staked"
    UNSTAKE_REQUESTED = "UnstakeRequested"
    WITHDRAWN = "Withdrawn"
    LOCK_SLASHED = "LockSlashed"
    SLASHED = "Slashed"


SLASHES = frozenset({Kind.SLASHED, Kind.LOCK_SLASHED})


class Status(StrEnum):
    NEVER_STAKED = "never_staked"
    STAKED = "staked"
    UNSTAKING = "unstaking"
    UNSTAKED = "unstaked"
    SLASHED = "slashed"


@dataclass(frozen=True)
class ChainFact:
    """One NodeStaking log about ``node``. ``None`` totals: the log does not carry them."""

    event_id: str
    block_number: int
    log_index: int
    block_time: int
    kind: Kind
    node: str
    role: int | None = None
    amount: int = 0
    stake_after: int | None = None
    locked_after: int | None = None

    @property
    def position(self) -> tuple[int, int, str]:
        """Chain order (the event id only breaks ties that a canonical chain never has)."""
        return self.block_number, self.log_index, self.event_id

    @classmethod
    def of(cls, event_id: str, payload: StakePayload, block_time: int) -> ChainFact:
        """The fact a stored chain event states."""
        log = payload.log
        kind = Kind(type(payload).__name__)
        return cls(
            event_id,
            log.block_number,
            log.log_index,
            block_time,
            kind,
            payload.node,
            amount=payload.amount,
            **_totals(payload),
        )


def _totals(payload: StakePayload) -> dict[str, int | None]:
    match payload:
        case Staked():
            return {"role": payload.role, "stake_after": payload.new_stake}
        case UnstakeRequested() | Slashed():
            return {"stake_after": payload.new_stake, "locked_after": payload.new_locked}
        case Withdrawn():
            return {"locked_after": payload.new_locked}
        case LockSlashed():
            return {}


@dataclass(frozen=True)
class NodeStake:
    """A node's stake after some logs. ``role``: that of its last ``Staked``."""

    active: int = 0
    locked: int = 0
    role: int | None = None
    status: Status = Status.NEVER_STAKED

    def after(self, fact: ChainFact) -> NodeStake:
        """The state after ``fact``, the next log in chain order."""
        active = self.active if fact.stake_after is None else fact.stake_after
        locked = self.locked if fact.locked_after is None else fact.locked_after
        role = fact.role if fact.kind is Kind.STAKED else self.role
        staked_once = self.status is not Status.NEVER_STAKED or fact.kind is Kind.STAKED
        slashed = fact.kind in SLASHES or (
            self.status is Status.SLASHED and fact.kind is not Kind.STAKED
        )
        status = _status(active, locked, staked_once, slashed)
        return NodeStake(active, locked, role, status)


def _status(active: int, locked: int, staked_once: bool, slashed: bool) -> Status:
    if not staked_once:
        return Status.NEVER_STAKED
    if slashed:
        return Status.SLASHED
    if active > 0:
        return Status.STAKED
    return Status.UNSTAKING if locked > 0 else Status.UNSTAKED


def canonical(facts: Iterable[ChainFact], retracted_ids: Collection[str]) -> list[ChainFact]:
    """The facts not retracted, in chain order."""
    return sorted((f for f in facts if f.event_id not in retracted_ids), key=_position)


def final(
    facts: Iterable[ChainFact], retracted_ids: Collection[str], finalized_block: int | None
) -> list[ChainFact]:
    """The canonical facts in finalized blocks (none while nothing is finalized)."""
    if finalized_block is None:
        return []
    return [f for f in canonical(facts, retracted_ids) if f.block_number <= finalized_block]


def _position(fact: ChainFact) -> tuple[int, int, str]:
    return fact.position


def states(ordered: Iterable[ChainFact]) -> Iterable[tuple[ChainFact, NodeStake]]:
    """Each fact (in chain order) with the node's state right after it."""
    state = NodeStake()
    for fact in ordered:
        state = state.after(fact)
        yield fact, state


def state_after(ordered: Iterable[ChainFact]) -> NodeStake:
    """The node's state after all ``ordered`` facts."""
    return reduce(NodeStake.after, ordered, NodeStake())


@dataclass(frozen=True)
class NodeStakeView:
    """One node's stake, final and pending (see the module's docstring)."""

    final: NodeStake
    pending: NodeStake

    @classmethod
    def of(
        cls, facts: Iterable[ChainFact], retracted_ids: Collection[str], finalized_block: int | None
    ) -> NodeStakeView:
        facts = list(facts)
        return cls(
            final=state_after(final(facts, retracted_ids, finalized_block)),
            pending=state_after(canonical(facts, retracted_ids)),
        )


def lowest_active_stake(
    facts: Iterable[ChainFact],
    retracted_ids: Collection[str],
    finalized_block: int | None,
    window: Interval,
) -> int:
    """The lowest final active stake held during ``window = [start, end)``: the stake in force
    at ``start`` (after every log timed at or before it) and the post-state of every log timed
    inside the window, the intermediate ones of a block included. Unstaked at any time in the
    window: 0. Only final logs count; a log not final yet has not happened for this rule."""
    start, end = window
    held: list[int] = []
    opening = 0
    for fact, state in states(final(facts, retracted_ids, finalized_block)):
        if fact.block_time <= start:
            opening = state.active
        if start <= fact.block_time < end:
            held.append(state.active)
    return min([opening, *held])


def slashed_during(
    facts: Iterable[ChainFact],
    retracted_ids: Collection[str],
    finalized_block: int | None,
    window: Interval,
) -> bool:
    """Whether a final slash (``Slashed`` or ``LockSlashed``) is timed inside ``window``."""
    start, end = window
    return any(
        f.kind in SLASHES and start <= f.block_time < end
        for f in final(facts, retracted_ids, finalized_block)
    )


def staked_coverage(
    facts: Iterable[ChainFact],
    retracted_ids: Collection[str],
    finalized_block: int | None,
    until: int,
    role: int | None = None,
) -> Coverage:
    """The seconds in which the node held a final active stake (in ``role``, if given), up to
    ``until`` for a stake still held: what ``uptime.epoch_uptime`` takes as ``staked``."""
    coverage, since = Coverage(), None
    for fact, state in states(final(facts, retracted_ids, finalized_block)):
        holding = state.active > 0 and (role is None or state.role == role)
        if holding and since is None:
            since = fact.block_time
        elif not holding and since is not None:
            coverage, since = coverage.add(since, fact.block_time), None
    return coverage if since is None else coverage.add(since, until)
