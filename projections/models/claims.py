"""``claims``: every ``Claimed`` log of the distributor, final once its block is finalized, and
marked retracted (never deleted) when a reorg removes it. Only final, unretracted rows are
money that left the distributor."""

from __future__ import annotations

from indexer.events import types as t
from indexer.store.log import LoggedEvent
from projections.state import LedgerState


def claimed(state: LedgerState, event: LoggedEvent, p: t.Claimed) -> None:
    finalized = state.finalized_block(p.log.chain_id)
    state["claims"].put(
        {
            "event_id": str(event.event_id), "account": p.account.lower(), "amount": p.amount,
            "cumulative": p.cumulative, "chain_id": p.log.chain_id,
            "block_number": p.log.block_number, "tx_hash": p.log.tx_hash,
            "final": finalized is not None and p.log.block_number <= finalized,
            "retracted": False, "position": event.position,
        }
    )  # fmt: skip


def finalize(state: LedgerState, chain_id: int, block: int) -> None:
    table = state["claims"]
    for row in list(table.rows.values()):
        if (
            not row["final"]
            and not row["retracted"]
            and row["chain_id"] == chain_id
            and row["block_number"] <= block
        ):
            table.put({**row, "final": True})


def retract(state: LedgerState, retracted_id: str) -> None:
    row = state["claims"].get(retracted_id)
    if row is None or row["retracted"] or row["final"]:
        return
    state["claims"].put({**row, "retracted": True})
