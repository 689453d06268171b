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

Every read is keyed by the address (or by the requests it served or supplied data to), so a
request costs the same with a statement of ten lines or of a million: the cumulative and the
leaf's position come from ``statement_lines``, the proof from the few ``merkle_nodes`` on the
leaf's path (both written by the settler with the statement), never from the statement text.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from masa.errors import PermanentError
from projections.db import ReadDb
from projections.queries import select
from projections.rules import ParameterSchedule, split_fee
from projections.state import parameters_of
from projections.tables import (
    CLAIMS,
    DATA_USES,
    MERKLE_NODES,
    PARAMETERS,
    PAYOUTS,
    REQUESTS,
    SETTLEMENTS,
    STAKE_CHANGES,
    STATEMENT_LINES,
    Row,
    Table,
)
from settlement.merkle import proof_nodes
from settlement.statement import ZERO_ROOT

POSTED = ("mined", "confirmed")
_CHUNK = 500  # ids per IN (...) list


class StatementLinesMissing(PermanentError):
    """A posted statement's lines are not in the read models (recorded before revision 0004)."""


def user_rewards(db: ReadDb, address: str) -> dict[str, Any]:
    """The claimant's view of ``address`` (lower case)."""
    posted = select(db, SETTLEMENTS, "state IN (?, ?)", POSTED, order="epoch DESC", limit=2,
                    columns=("epoch", "chain_epoch", "root"))  # fmt: skip
    latest, previous = (posted[0] if posted else None), (posted[1] if len(posted) > 1 else None)
    claims = select(db, CLAIMS, "account = ? AND retracted = ?", (address, False),
                    columns=("event_id", "cumulative", "final"))  # fmt: skip
    claimed = max((c["cumulative"] for c in claims), default=0)
    claimed_final = max((c["cumulative"] for c in claims if c["final"]), default=0)
    current = _position(db, latest, address)
    settled = {r["epoch"] for r in select(db, SETTLEMENTS, columns=("epoch",))}
    facts = _Facts.of(db, address)
    return {
        "address": address,
        "epoch": latest["epoch"] if latest else None,
        "chain_epoch": latest["chain_epoch"] if latest else None,
        "root": latest["root"] if latest else None,
        "cumulative": str(current["cumulative"]),
        "claimed": str(claimed),
        "claimed_final": str(claimed_final),
        "claimable": str(max(0, current["cumulative"] - claimed)),
        "proof": current["proof"],
        "previous": _previous(db, previous, address, claimed),
        "breakdown": _breakdown(db, address, facts),
        "pending": _pending(db, facts, settled),
    }


def _position(db: ReadDb, settlement: Row | None, address: str) -> dict[str, Any]:
    """The address's cumulative in a posted statement, and its proof against the root."""
    if settlement is None:
        return {"cumulative": 0, "proof": []}
    epoch = settlement["epoch"]
    lines = select(db, STATEMENT_LINES, "epoch = ? AND address = ?", (epoch, address),
                   columns=("cumulative", "tree_index"))  # fmt: skip
    if not lines:
        _require_lines(db, settlement)
        return {"cumulative": 0, "proof": []}
    path = proof_nodes(lines[0]["tree_index"])
    hashes = {r["node"]: r["hash"] for r in _in(db, MERKLE_NODES, "node", path, epoch=epoch)}
    if len(hashes) != len(path):
        raise PermanentError(f"the tree of epoch {epoch} lacks nodes of {address}'s proof")
    return {"cumulative": lines[0]["cumulative"], "proof": [hashes[n] for n in path]}


def _require_lines(db: ReadDb, settlement: Row) -> None:
    """An address with no line is owed nothing, unless the statement's lines were never
    written (a statement with leaves always has some): then say what to run."""
    epoch = settlement["epoch"]
    if settlement["root"] == ZERO_ROOT:
        return
    if not select(db, STATEMENT_LINES, "epoch = ?", (epoch,), columns=("address",), limit=1):
        raise StatementLinesMissing(
            f"the lines of epoch {epoch}'s statement are not in the read models yet (recorded"
            " before revision 0004): run 'masa settle run' once, which writes them"
        )


def _previous(
    db: ReadDb, settlement: Row | None, address: str, claimed: int
) -> dict[str, Any] | None:
    """The previous root, which the distributor still accepts a proof against."""
    if settlement is None:
        return None
    position = _position(db, settlement, address)
    return {
        "epoch": settlement["epoch"],
        "root": settlement["root"],
        "cumulative": str(position["cumulative"]),
        "proof": position["proof"],
        "accepts": position["cumulative"] > claimed,
    }


@dataclass(frozen=True)
class _Facts:
    """What the address did, read once: requests it served, data uses that credited it, the
    requests those uses were for and every credited use of them (its share), its stake logs."""

    served: list[Row]
    used: list[Row]
    requests: dict[str, Row]
    credited_units: dict[str, int]
    stakes: list[Row]

    @classmethod
    def of(cls, db: ReadDb, address: str) -> _Facts:
        served = select(db, REQUESTS, "worker = ? AND status = ?", (address, "completed"),
                        columns=("request_id", "epoch", "fee", "closed_event_id"))  # fmt: skip
        used = select(db, DATA_USES, "contributor = ? AND credited = ?", (address, True),
                      columns=("event_id", "source", "request_id", "units"))  # fmt: skip
        ids = sorted({u["request_id"] for u in used})
        about = ("request_id", "epoch", "status", "fee")
        requests = {r["request_id"]: r for r in _in(db, REQUESTS, "request_id", ids, about)}
        credited: dict[str, int] = defaultdict(int)
        for use in _in(db, DATA_USES, "request_id", ids, credited=True,
                       columns=("request_id", "units")):  # fmt: skip
            credited[use["request_id"]] += use["units"]
        stakes = select(db, STAKE_CHANGES, "node = ? AND retracted = ?", (address, False),
                        columns=("event_id", "final"))  # fmt: skip
        return cls(served, used, requests, dict(credited), stakes)


def _in(
    db: ReadDb, table: Table, column: str, values: Sequence[Any],
    columns: tuple[str, ...] = (), **equal: Any,
) -> Iterable[Row]:  # fmt: skip
    """Rows whose ``column`` is one of ``values`` (and ``equal``'s columns equal), in chunks."""
    fixed = [f"{c} = ?" for c in equal]
    for start in range(0, len(values), _CHUNK):
        chunk = tuple(values[start : start + _CHUNK])
        where = " AND ".join([*fixed, f"{column} IN ({', '.join('?' for _ in chunk)})"])
        yield from select(db, table, where, (*equal.values(), *chunk), columns=columns)


def _breakdown(db: ReadDb, address: str, facts: _Facts) -> list[dict[str, Any]]:
    payouts = select(db, PAYOUTS, "address = ?", (address,))
    out = []
    for row in sorted(payouts, key=lambda r: (r["epoch"], r["kind"])):
        epoch, kind = row["epoch"], row["kind"]
        entry: dict[str, Any] = {"epoch": epoch, "kind": kind, "earned": str(row["earned"]),
                                 "cumulative": str(row["cumulative"])}  # fmt: skip
        if kind == "worker_fee":
            entry["event_ids"] = sorted(
                r["closed_event_id"] for r in facts.served if r["epoch"] == epoch
            )
        elif kind == "data_fee":
            mine = [u for u in facts.used if _epoch_of(facts, u["request_id"]) == epoch]
            entry["sources"] = _units_by_source(mine)
            entry["event_ids"] = sorted({u["event_id"] for u in mine})
        elif kind == "emission":
            entry["event_ids"] = sorted(s["event_id"] for s in facts.stakes if s["final"])
        out.append(entry)
    return out


def _epoch_of(facts: _Facts, request_id: str) -> int | None:
    request = facts.requests.get(request_id)
    return None if request is None else request["epoch"]


def _pending(db: ReadDb, facts: _Facts, settled: set[int]) -> dict[str, Any]:
    schedule = _schedule(db)
    worker_fee = data_fee = 0
    epochs: set[int] = set()
    for request in facts.served:
        params = _open_params(schedule, request["epoch"], settled)
        if params is not None:
            split = split_fee(request["fee"], params.protocol_share_bps, params.data_share_bps)
            worker_fee += split.worker
            epochs.add(request["epoch"])
    for units, total, request in _data_shares(facts):
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


def _data_shares(facts: _Facts) -> Iterable[tuple[int, int, Row]]:
    """Per completed request that credited the address: its units, all credited units, and
    the request."""
    mine: dict[str, int] = defaultdict(int)
    for use in facts.used:
        mine[use["request_id"]] += use["units"]
    for request_id, units in sorted(mine.items()):
        request = facts.requests.get(request_id)
        if request is not None and request["status"] == "completed":
            yield units, facts.credited_units.get(request_id, 0), request


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
