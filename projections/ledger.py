"""The ledger projection: one fold over the store's events that keeps every read model at one
position, so a dashboard joining ``requests`` with ``oracle_balances`` or ``node_uptime`` with
``nodes`` sees one consistent moment. ``apply`` routes an event to its models; ``refresh``
recomputes the derived rows (stakes, uptime, balances, epoch totals) before a write."""

from __future__ import annotations

from indexer.events import types as t
from indexer.store.log import LoggedEvent
from projections.models import attribution, claims, epochs, ingest, nodes, requests, uptime
from projections.state import LedgerState

NAME = "ledger"


def apply(state: LedgerState, event: LoggedEvent) -> None:
    ingest.stored(state, event)
    p = event.payload
    match p:
        case t.Heartbeat():
            nodes.heartbeat(state, event, p)
            uptime.heartbeat(state, event)
        case t.Staked() | t.UnstakeRequested() | t.Withdrawn() | t.LockSlashed() | t.Slashed():
            nodes.stake_log(state, event, p)
        case t.RequestSubmitted():
            requests.submitted(state, event, p)
        case t.RequestCompleted():
            requests.completed(state, event, p)
        case t.RequestFailed():
            requests.failed(state, event, p)
        case t.FeesDeposited():
            requests.deposited(state, event, p)
        case t.Claimed():
            claims.claimed(state, event, p)
        case t.DataSourceRegistered():
            attribution.registered(state, event, p)
        case t.DataUsed():
            attribution.used(state, event, p)
        case t.ParametersSet():
            epochs.parameters_set(state, event, p)
        case t.EpochClosed():
            uptime.refresh(state, p.epoch)  # the epoch's figures as they stand at its close
            epochs.epoch_closed(state, event, p)
        case t.ChainFinalized():
            _finalized(state, event, p)
        case t.ChainLogRetracted():
            _retracted(state, p)


def _finalized(state: LedgerState, event: LoggedEvent, p: t.ChainFinalized) -> None:
    epochs.chain_finalized(state, event, p)
    nodes.finalize_stake_logs(state, p.chain_id, p.block_number)
    requests.finalize_deposits(state, p.chain_id, p.block_number)
    claims.finalize(state, p.chain_id, p.block_number)


def _retracted(state: LedgerState, p: t.ChainLogRetracted) -> None:
    retracted = str(p.retracted_id)
    if p.retracted_type in nodes.STAKE_TYPES:
        nodes.retract_stake_log(state, retracted)
    elif p.retracted_type == "FeesDeposited":
        requests.retract_deposit(state, retracted)
    elif p.retracted_type == "Claimed":
        claims.retract(state, retracted)


def refresh(state: LedgerState) -> None:
    nodes.refresh(state)
    uptime.refresh(state)
    requests.refresh(state)
