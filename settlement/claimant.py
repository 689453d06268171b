"""The claimant's view: what an address has been paid for, what it may claim now and with
which proof, and what it is earning in epochs not settled yet (shown apart, never in
``claimable``), from the read models alone (the API's reader role can answer it).

- ``cumulative``, ``root``, ``proof``: from the newest posted statement (``settlements`` in
  state ``mined`` or ``confirmed``); the distributor also accepts a proof against the
  previous root, given under ``previous``.
- ``claimed``: the largest cumulative of the address's ``Claimed`` logs not retracted
  (``claimed_final``: of final ones only); ``claimable = cumulative - claimed``.
- ``breakdown``: per settled epoch and kind the amount and where it came from: the requests
  served (closing event ids), the data used (sources, units, ``DataUsed`` ids), the stake
  logs behind an emission.
- ``pending``: fees of requests closed in epochs with no statement yet, split as the formula
  will split them; emissions are only known when the epoch closes.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from functools import lru_cache
from typing import Any

from projections.db import ReadDb
from projections.queries import select
from projections.rules import ParameterSchedule, split_fee
from projections.state import parameters_of
from projections.tables import CLAIMS, DATA_USES, PARAMETERS, PAYOUTS, REQUESTS, STAKE_CHANGES, Row
from settlement.settler import Settlement, SettlementDb
from settlement.statement import Statement, load_statement

POSTED = ("mined", "confirmed")


def user_rewards(db: ReadDb, address: str) -> dict[str, Any]:
    """The claimant's view of ``address`` (lower case)."""
    posted = [s for s in SettlementDb(db).all() if s.posting.state.value in POSTED]
    latest, previous = (posted[-1] if posted else None), (posted[-2] if len(posted) > 1 else None)
    claims = select(db, CLAIMS, "account = ? AND retracted = ?", (address, False))
    claimed = max((c["cumulative"] for c in claims), default=0)
    claimed_final = max((c["cumulative"] for c in claims if c["final"]), default=0)
    current = _position(latest, address)
    settled = {s.epoch for s in SettlementDb(db).all()}
    return {
        "address": address,
        "epoch": latest.epoch if latest else None,
        "chain_epoch": latest.posting.chain_epoch if latest else None,
        "root": latest.posting.root if latest else None,
        "cumulative": str(current["cumulative"]),
        "claimed": str(claimed),
        "claimed_final": str(claimed_final),
        "claimable": str(max(0, current["cumulative"] - claimed)),
        "proof": current["proof"],
        "previous": _previous(previous, address, claimed),
        "breakdown": _breakdown(db, address),
        "pending": _pending(db, address, settled),
    }


@lru_cache(maxsize=8)
def _posted_statement(epoch: int, statement_hash: str, statement_json: str) -> Statement:
    """A posted statement, parsed and its tree built once per process (posted, it never
    changes): a claimant's request then costs a lookup, not a tree of every address."""
    statement = load_statement(statement_json)
    if statement.lines:
        statement.tree()
    return statement


def _position(settlement: Settlement | None, address: str) -> dict[str, Any]:
    if settlement is None:
        return {"cumulative": 0, "proof": []}
    p = settlement.posting
    statement = _posted_statement(p.epoch, p.statement_hash, settlement.statement_json)
    line = statement.line(address)
    if line is None:
        return {"cumulative": 0, "proof": []}
    return {"cumulative": line.cumulative, "proof": statement.proof(address)}


def _previous(settlement: Settlement | None, address: str, claimed: int) -> dict[str, Any] | None:
    """The previous root, which the distributor still accepts a proof against."""
    if settlement is None:
        return None
    position = _position(settlement, address)
    return {
        "epoch": settlement.epoch,
        "root": settlement.posting.root,
        "cumulative": str(position["cumulative"]),
        "proof": position["proof"],
        "accepts": position["cumulative"] > claimed,
    }


def _breakdown(db: ReadDb, address: str) -> list[dict[str, Any]]:
    payouts = select(db, PAYOUTS, "address = ?", (address,))
    served = select(db, REQUESTS, "worker = ? AND status = ?", (address, "completed"))
    used = select(db, DATA_USES, "contributor = ? AND credited = ?", (address, True))
    request_epochs = _request_epochs(db, {u["request_id"] for u in used})
    stakes = select(db, STAKE_CHANGES, "node = ? AND retracted = ?", (address, False))
    out = []
    for row in sorted(payouts, key=lambda r: (r["epoch"], r["kind"])):
        epoch, kind = row["epoch"], row["kind"]
        entry: dict[str, Any] = {"epoch": epoch, "kind": kind, "earned": str(row["earned"]),
                                 "cumulative": str(row["cumulative"])}  # fmt: skip
        if kind == "worker_fee":
            entry["event_ids"] = sorted(r["closed_event_id"] for r in served if r["epoch"] == epoch)
        elif kind == "data_fee":
            mine = [u for u in used if request_epochs.get(u["request_id"]) == epoch]
            entry["sources"] = _units_by_source(mine)
            entry["event_ids"] = sorted({u["event_id"] for u in mine})
        elif kind == "emission":
            entry["event_ids"] = sorted(s["event_id"] for s in stakes if s["final"])
        out.append(entry)
    return out


def _pending(db: ReadDb, address: str, settled: set[int]) -> dict[str, Any]:
    schedule = _schedule(db)
    worker_fee = data_fee = 0
    epochs: set[int] = set()
    served = select(db, REQUESTS, "worker = ? AND status = ?", (address, "completed"))
    for request in served:
        params = _open_params(schedule, request["epoch"], settled)
        if params is not None:
            split = split_fee(request["fee"], params.protocol_share_bps, params.data_share_bps)
            worker_fee += split.worker
            epochs.add(request["epoch"])
    for _request, units, total, request in _data_shares(db, address):
        params = _open_params(schedule, request["epoch"], settled)
        if params is not None and total:
            data = split_fee(request["fee"], params.protocol_share_bps, params.data_share_bps).data
            data_fee += data * units // total
            epochs.add(request["epoch"])
    return {"epochs": sorted(epochs), "worker_fee": str(worker_fee), "data_fee": str(data_fee),
            "emission": None, "note": "emissions are computed when the epoch closes"}  # fmt: skip


def _open_params(schedule: ParameterSchedule, epoch: int | None, settled: set[int]) -> Any:
    if epoch is None or epoch in settled:
        return None
    return schedule.in_force(epoch)


def _data_shares(db: ReadDb, address: str) -> Iterable[tuple[str, int, int, Row]]:
    """Per completed request that credited ``address``: its units and all credited units."""
    used = select(db, DATA_USES, "contributor = ? AND credited = ?", (address, True))
    mine: dict[str, int] = defaultdict(int)
    for use in used:
        mine[use["request_id"]] += use["units"]
    for request_id, units in sorted(mine.items()):
        requests = select(db, REQUESTS, "request_id = ? AND status = ?", (request_id, "completed"))
        if not requests:
            continue
        every = select(db, DATA_USES, "request_id = ? AND credited = ?", (request_id, True))
        yield request_id, units, sum(u["units"] for u in every), requests[0]


def _request_epochs(db: ReadDb, request_ids: set[str]) -> dict[str, int | None]:
    epochs = {}
    for request_id in sorted(request_ids):
        rows = select(db, REQUESTS, "request_id = ?", (request_id,))
        if rows:
            epochs[request_id] = rows[0]["epoch"]
    return epochs


def _units_by_source(uses: list[Row]) -> dict[str, int]:
    units: dict[str, int] = defaultdict(int)
    for use in uses:
        units[use["source"]] += use["units"]
    return dict(sorted(units.items()))


def _schedule(db: ReadDb) -> ParameterSchedule:
    schedule = ParameterSchedule()
    for row in sorted(select(db, PARAMETERS, "", ()), key=lambda r: r["position"]):
        schedule = schedule.with_set(parameters_of(row))
    return schedule
