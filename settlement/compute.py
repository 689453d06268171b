"""Statements from the store: one fold of the ledger projection over the stored events, and at
each ``EpochClosed{e}`` the epoch's inputs taken from the read-model rows as they stand just
before it, the reward formula applied, and the cumulative carried to the next epoch.

An epoch's statement is therefore a pure function of the events stored before its
``EpochClosed``: events stored after it that occurred in the epoch count in the next one (the
projection's rule), and anyone holding those events (a bundle) recomputes the same bytes.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass

from indexer.events import types as t
from indexer.store.log import LoggedEvent
from masa.errors import PermanentError
from projections import ledger
from projections.rules.stakes import lowest_active_stake, slashed_during
from projections.state import LedgerState
from settlement.formula import Rewards, compute_rewards
from settlement.inputs import CreditedUse, EpochInputs, PaidRequest, RewardParameters, WorkerEpoch
from settlement.statement import Statement, build_statement

WORKER_ROLE = 1


class EpochNotSettleable(PermanentError):
    """An epoch closed without parameters in force: nothing defines its rewards."""


@dataclass(frozen=True)
class Settled:
    """One epoch's result: its inputs, the rewards, the statement, and where it closed."""

    epoch: int
    close_position: int
    finalized_block: int
    inputs: EpochInputs
    rewards: Rewards
    statement: Statement


def settle_all(events: Iterable[LoggedEvent]) -> Iterator[Settled]:
    """Every closed epoch's statement, in order, from the events in store order."""
    state = LedgerState.empty()
    cumulative: Mapping[str, int] = {}
    for event in events:
        if isinstance(event.payload, t.EpochClosed) and _first_close(state, event.payload):
            settled = settle_epoch(state, event, cumulative)
            cumulative = settled.statement.cumulative()
            yield settled
        ledger.apply(state, event)


def _first_close(state: LedgerState, closed: t.EpochClosed) -> bool:
    return state.schedule.genesis is not None and not state.is_closed(closed.epoch)


def settle_epoch(state: LedgerState, close: LoggedEvent, previous: Mapping[str, int]) -> Settled:
    """The statement of the epoch ``close`` closes, from ``state`` just before it."""
    assert isinstance(close.payload, t.EpochClosed)
    epoch = close.payload.epoch
    ledger.refresh(state)
    inputs = epoch_inputs(state, epoch, previous)
    rewards = compute_rewards(inputs)
    statement = build_statement(rewards, previous)
    return Settled(epoch, close.position, close.payload.finalized_block, inputs, rewards, statement)


def epoch_inputs(state: LedgerState, epoch: int, previous: Mapping[str, int]) -> EpochInputs:
    """The formula's inputs for ``epoch`` from the read-model rows of ``state``."""
    params = state.params(epoch)
    if params is None:
        raise EpochNotSettleable(f"epoch {epoch} has no parameters in force")
    parameters = RewardParameters(
        epoch=epoch,
        emission=params.emission_per_epoch,
        stake_cap=params.stake_cap,
        min_uptime_ppm=params.min_uptime_ppm,
        protocol_share_bps=params.protocol_share_bps,
        data_share_bps=params.data_share_bps,
        treasury=params.treasury,
    )
    return EpochInputs(
        parameters=parameters,
        workers=tuple(_workers(state, epoch)),
        requests=tuple(_requests(state, epoch)),
        previous_cumulative=dict(previous),
    )


def _workers(state: LedgerState, epoch: int) -> Iterator[WorkerEpoch]:
    window = state.schedule.bounds(epoch)
    for node in sorted(state.facts):
        facts = state.facts[node]
        if not any(f.role == WORKER_ROLE for f in facts):
            continue
        finalized = state.node_finalized_block(node)
        uptime = state["node_uptime"].get(node, epoch)
        stake_history = tuple(  # the logs that set its stake up to the epoch's end
            f.event_id for f in facts
            if f.block_time < window[1] and f.event_id not in state.retracted
        )  # fmt: skip
        yield WorkerEpoch(
            address=node,
            uptime_ppm=uptime["uptime_ppm"] if uptime else 0,
            lowest_stake=lowest_active_stake(facts, state.retracted, finalized, window),
            slashed=slashed_during(facts, state.retracted, finalized, window),
            evidence_event_ids=stake_history,
        )


def _requests(state: LedgerState, epoch: int) -> Iterator[PaidRequest]:
    uses = _credited_uses(state)
    requests = state["requests"].rows.values()
    for row in sorted(requests, key=lambda r: r["request_id"]):
        if row["epoch"] != epoch or row["status"] not in ("completed", "unpaid"):
            continue
        yield PaidRequest(
            request_id=row["request_id"],
            worker=row["worker"],
            fee=row["fee"],
            paid=row["status"] == "completed",
            completed_event_id=row["closed_event_id"],
            uses=tuple(uses.get(row["request_id"], ())),
        )


def _credited_uses(state: LedgerState) -> dict[str, list[CreditedUse]]:
    uses: dict[str, list[CreditedUse]] = {}
    for row in state["data_uses"].rows.values():
        if row["credited"]:
            use = CreditedUse(row["contributor"], row["source"], row["units"], row["event_id"])
            uses.setdefault(row["request_id"], []).append(use)
    return uses
