"""``parameters``, ``epochs`` and ``chain_finality``: the governor's parameter sets, the epochs
they define (bounds, closed or not, the settler's cutoff) and each chain's finalized block."""

from __future__ import annotations

from indexer.events import types as t
from indexer.store.log import LoggedEvent
from projections.state import LedgerState, from_unix, parameters_of


def parameters_set(state: LedgerState, event: LoggedEvent, p: t.ParametersSet) -> None:
    """A set for an epoch already closed never changes it; a set for a later epoch replaces
    an earlier set for the same epoch. The first set's genesis holds for ever."""
    last = state.last_closed()
    if last is not None and p.effective_epoch <= last:
        return
    genesis = from_unix(state.schedule.genesis) if state.schedule.genesis else p.genesis
    row = state["parameters"].put(
        {
            "effective_epoch": p.effective_epoch,
            "genesis": genesis,
            "epoch_length_s": p.epoch_length_s,
            "heartbeat_interval_s": p.heartbeat_interval_s,
            "grace_s": p.grace_s,
            "emission_per_epoch": p.emission_per_epoch,
            "stake_cap": p.stake_cap,
            "min_uptime_ppm": p.min_uptime_ppm,
            "protocol_share_bps": p.protocol_share_bps,
            "data_share_bps": p.data_share_bps,
            "treasury": p.treasury,
            "event_id": str(event.event_id),
            "position": event.position,
        }
    )
    state.schedule = state.schedule.with_set(parameters_of(row))
    _rebound_open_epochs(state, p.effective_epoch)


def _rebound_open_epochs(state: LedgerState, since: int) -> None:
    for row in list(state["epochs"].rows.values()):
        if not row["closed"] and row["epoch"] >= since:
            ensure_epoch(state, row["epoch"])
    state.dirty_fees |= {e for e in state.epoch_requests if e >= since}
    state.dirty_uptime |= {
        (node, epoch)
        for node, epochs in state.node_epochs.items()
        for epoch in epochs
        if epoch >= since and not state.is_closed(epoch)
    }


def ensure_epoch(state: LedgerState, epoch: int) -> None:
    """The ``epochs`` row of ``epoch``, with its bounds under the parameters known now."""
    start, end = state.schedule.bounds(epoch)
    row = state["epochs"].get(epoch)
    if row and row["closed"]:
        return
    current = row or {"epoch": epoch, "closed": False, "cutoff_position": None,
                      "finalized_block": None, "closed_at": None}  # fmt: skip
    updated = {**current, "start_at": from_unix(start), "end_at": from_unix(end)}
    if updated != row:
        state["epochs"].put(updated)


def epoch_closed(state: LedgerState, event: LoggedEvent, p: t.EpochClosed) -> None:
    if state.schedule.genesis is None:
        return
    ensure_epoch(state, p.epoch)
    row = state["epochs"].get(p.epoch)
    assert row is not None
    state["epochs"].put(
        {
            **row,
            "closed": True,
            "cutoff_position": p.cutoff_position,
            "finalized_block": p.finalized_block,
            "closed_at": event.occurred_at,
        }
    )


def chain_finalized(state: LedgerState, event: LoggedEvent, p: t.ChainFinalized) -> None:
    previous = state.finalized.get(p.chain_id)
    if previous is not None and p.block_number <= previous:
        return
    state.finalized[p.chain_id] = p.block_number
    state["chain_finality"].put(
        {
            "chain_id": p.chain_id,
            "finalized_block": p.block_number,
            "block_hash": p.block_hash,
            "position": event.position,
        }
    )


def epoch_window(state: LedgerState, epoch: int) -> tuple[int, int]:
    return state.schedule.bounds(epoch)


__all__ = ["chain_finalized", "ensure_epoch", "epoch_closed", "epoch_window", "parameters_set"]
