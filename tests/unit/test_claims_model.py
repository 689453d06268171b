"""The ``claims`` read model: every Claimed log, final once its block is, retracted (kept, no
effect) when a reorg removes it before finality; a retraction after finality changes nothing."""

from __future__ import annotations

import itertools
import uuid
from datetime import UTC, datetime

from indexer.events import types as t
from indexer.store.log import IngestedAt, LoggedEvent
from projections import ledger
from projections.state import LedgerState

CHAIN = 31337
CONTRACT = "0x" + "5a" * 20
ACCOUNT = "0x" + "ab" * 20
_positions = itertools.count(1)


def logged(payload: t.Payload) -> LoggedEvent:
    at = datetime(2026, 12, 1, tzinfo=UTC)
    return LoggedEvent(
        position=next(_positions), event_id=uuid.uuid4(), type=type(payload).__name__,
        stored_version=1, occurred_at=at, producer="0x" + "01" * 20, stream_id=uuid.uuid4(),
        stream_version=1, payload=payload, ingested=IngestedAt("ingest", "events", 0, 0, at),
        envelope={},
    )  # fmt: skip


def log(block: int, index: int) -> t.ChainLog:
    return t.ChainLog(
        chain_id=CHAIN, contract=CONTRACT, block_number=block,
        block_hash="0x" + f"{block:064x}", tx_hash="0x" + f"{index:064x}", log_index=index,
    )  # fmt: skip


def claimed(block: int, index: int, amount: int, cumulative: int) -> LoggedEvent:
    return logged(t.Claimed(log=log(block, index), account=ACCOUNT, amount=amount,
                            cumulative=cumulative))  # fmt: skip


def finalized(block: int) -> LoggedEvent:
    return logged(t.ChainFinalized(chain_id=CHAIN, block_number=block,
                                   block_hash="0x" + f"{block:064x}", log_count=0,
                                   contracts=[CONTRACT]))  # fmt: skip


def retracted(event: LoggedEvent) -> LoggedEvent:
    payload = event.payload
    assert isinstance(payload, t.Claimed)
    return logged(t.ChainLogRetracted(log=payload.log, retracted_id=event.event_id,
                                      retracted_type="Claimed", stream_key=ACCOUNT))  # fmt: skip


def test_claims_become_final_and_retractions_undo_only_unfinal_ones():
    state = LedgerState.empty()
    first, dropped, second = claimed(10, 1, 5, 5), claimed(12, 2, 7, 12), claimed(13, 3, 7, 12)
    for event in (first, finalized(10), dropped, retracted(dropped), second, finalized(13)):
        ledger.apply(state, event)
    late = retracted(first)  # after finality: no effect
    ledger.apply(state, late)
    rows = {row["event_id"]: row for row in state["claims"].rows.values()}
    one, two, three = (rows[str(e.event_id)] for e in (first, dropped, second))
    assert one["final"] and not one["retracted"]
    assert two["retracted"] and not two["final"]
    assert three["final"] and not three["retracted"]
    paid = sum(r["amount"] for r in rows.values() if r["final"] and not r["retracted"])
    assert paid == 12 and rows[str(second.event_id)]["cumulative"] == 12
