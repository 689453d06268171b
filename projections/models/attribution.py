"""``data_sources``, ``data_uses`` and ``contributor_attribution``: which contributor owns each
source (the first registration wins: ingest refuses later claims), every use a worker reported,
credited or refused with the reason, and per contributor, epoch and source the units and the
requests that used them. Only a source registered to the named contributor is credited; the
workers' longest-prefix rule already chose the source.

A registration and a use travel in different partitions, so a use can be stored just before
the registration its worker saw. Such a use is refused as ``unregistered_source`` and credited
when the registration is stored, as long as its epoch is still open; a closed epoch never
changes."""

from __future__ import annotations

from indexer.events import types as t
from indexer.store.log import LoggedEvent
from projections.rules import attribute
from projections.rules.attribution import uses_of
from projections.state import LedgerState


def registered(state: LedgerState, event: LoggedEvent, p: t.DataSourceRegistered) -> None:
    if p.source in state.registry:
        return
    state.registry[p.source] = p.contributor
    _credit_waiting(state, p.source, p.contributor)
    state["data_sources"].put(
        {
            "source": p.source,
            "contributor": p.contributor,
            "registered_at": event.occurred_at,
            "position": event.position,
        }
    )


def used(state: LedgerState, event: LoggedEvent, p: t.DataUsed) -> None:
    epoch = state.money_epoch(event)
    result = attribute(uses_of(p), state.registry)
    refused = [(use, reason.value) for use, reason in result.refused]
    for use, refusal in [*((u, None) for u in result.credited), *refused]:
        if refusal == "unregistered_source":
            state.unregistered_uses.setdefault(use.source, []).append(
                (str(event.event_id), use.source)
            )
        state["data_uses"].put(
            {
                "event_id": str(event.event_id), "request_id": str(p.request_id),
                "contributor": use.contributor, "source": use.source, "units": use.units,
                "credited": refusal is None, "refusal": refusal, "epoch": epoch,
                "position": event.position,
            }
        )  # fmt: skip
    if epoch is None:
        return
    for use in result.credited:
        _credit(state, use.contributor, epoch, use.source, use.units)


def _credit(state: LedgerState, contributor: str, epoch: int, source: str, units: int) -> None:
    table = state["contributor_attribution"]
    row = table.get(contributor, epoch, source) or {
        "contributor": contributor, "epoch": epoch, "source": source, "units": 0, "requests": 0,
    }  # fmt: skip
    row["units"] += units
    row["requests"] += 1
    table.put(row)


def _credit_waiting(state: LedgerState, source: str, contributor: str) -> None:
    """Credit the uses of ``source`` stored before its registration, in open epochs."""
    table = state["data_uses"]
    for key in state.unregistered_uses.pop(source, []):
        row = table.rows[key]
        if row["contributor"] != contributor or row["epoch"] is None:
            continue
        if state.is_closed(row["epoch"]):
            continue
        table.put({**row, "credited": True, "refusal": None})
        _credit(state, contributor, row["epoch"], source, row["units"])
