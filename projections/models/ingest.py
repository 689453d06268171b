"""``ingest_partitions``: per bus partition ingest took events from, the newest event stored
from it and how long that event took to reach the store (its ingestion time less the time its
producer made it). Chain events occur at their block's time and a governor's parameters at
the time they name, so only events stamped by their producer when sent set the delay. The
ledger's own records (fee reservations) are not counted: they come with an event, not from
the bus."""

from __future__ import annotations

from indexer.events import types as t
from indexer.store.log import LoggedEvent
from projections.state import LedgerState

#: Events whose ``occurred_at`` is their producer's clock when it sent them.
STAMPED_WHEN_SENT = (
    t.Heartbeat, t.RequestSubmitted, t.RequestCompleted, t.RequestFailed, t.DataUsed,
    t.DataSourceRegistered, t.EpochClosed,
)  # fmt: skip


def stored(state: LedgerState, event: LoggedEvent) -> None:
    if not event.signed:
        return  # a ledger record (a fee reservation) was written by ingest, not taken from the bus
    source = event.ingested
    table = state["ingest_partitions"]
    row = table.get(source.topic, source.partition) or {
        "source_topic": source.topic, "source_partition": source.partition, "events": 0,
        "last_occurred_at": None, "ingest_delay_s": None,
    }  # fmt: skip
    row = {**row, "consumer": source.consumer, "events": row["events"] + 1,
           "last_offset": max(source.offset, row.get("last_offset", -1)),
           "last_ingested_at": source.at, "position": event.position}  # fmt: skip
    if isinstance(event.payload, STAMPED_WHEN_SENT):
        row["last_occurred_at"] = event.occurred_at
        row["ingest_delay_s"] = max(0.0, (source.at - event.occurred_at).total_seconds())
    table.put(row)
