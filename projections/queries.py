"""One query per question a reader asks of the read models, shared by the CLI, the demo and
the API, so they never disagree. Lists are pages in key order with an opaque cursor (keyset
pagination: stable while rows are added) and a count where it is cheap."""

from __future__ import annotations

import base64
import weakref
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson

from projections.db import ReadDb
from projections.tables import (
    CONTRIBUTOR_ATTRIBUTION,
    DATA_USES,
    EPOCH_FEES,
    EPOCHS,
    INGEST_PARTITIONS,
    NODE_UPTIME,
    NODES,
    ORACLE_BALANCES,
    PARAMETERS,
    PROJECTION_POSITIONS,
    REQUESTS,
    SETTLEMENTS,
    STAKE_CHANGES,
    Row,
    Table,
)

MAX_PAGE = 500


class BadCursor(ValueError):
    """A cursor this server did not hand out."""


@dataclass(frozen=True)
class Page:
    items: list[Row]
    next_cursor: str | None
    total: int


def _rows(db: ReadDb, table: Table, where: str = "", params: tuple[Any, ...] = (),
          order: str = "", limit: int | None = None,
          columns: tuple[str, ...] = ()) -> list[Row]:  # fmt: skip
    names = list(columns or table.columns)
    sql = f"SELECT {', '.join(names)} FROM {table.name}"
    sql += f" WHERE {where}" if where else ""
    sql += f" ORDER BY {order or ', '.join(table.key)}"
    sql += f" LIMIT {int(limit)}" if limit is not None else ""
    with db.reading() as tx:
        rows = tx.fetchall(sql, params)
    return table.rows_from_db(names, rows, db.dialect)


def select(
    db: ReadDb, table: Table, where: str = "", params: tuple[Any, ...] = (), *,
    columns: tuple[str, ...] = (), order: str = "", limit: int | None = None,
) -> list[Row]:  # fmt: skip
    """Rows of ``table`` matching a ``WHERE`` clause (``?`` placeholders), in key order (or
    ``order``), only ``columns`` if given: for readers with a question of their own
    (settlement's claimant view)."""
    return _rows(db, table, where, params, order, limit, columns)


def _filters(filters: Mapping[str, Any]) -> tuple[list[str], list[Any]]:
    used = {k: v for k, v in sorted(filters.items()) if v is not None}
    return [f"{column} = ?" for column in used], list(used.values())


def page(
    db: ReadDb,
    table: Table,
    filters: Mapping[str, Any] | None = None,
    cursor: str | None = None,
    limit: int = 100,
    at_most: Mapping[str, Any] | None = None,
) -> Page:
    """Rows of ``table`` matching ``filters`` (column = value) and ``at_most`` (column <=
    value; None: no bound), after ``cursor``, in key order."""
    limit = max(1, min(limit, MAX_PAGE))
    clauses, params = _filters(filters or {})
    for column, bound in sorted((at_most or {}).items()):
        _upto(clauses, params, column, bound)
    total = _count(db, table, clauses, params)
    if cursor is not None:
        keys = ", ".join(table.key)
        clauses.append(f"({keys}) > ({', '.join('?' for _ in table.key)})")
        params += decode_cursor(cursor, len(table.key))
    rows = _rows(db, table, " AND ".join(clauses), tuple(params), limit=limit + 1)
    more = len(rows) > limit
    items = rows[:limit]
    next_cursor = encode_cursor(table.key_of(items[-1])) if more and items else None
    return Page(items, next_cursor, total)


#: Per connection, counts already made at a projection position. The read models move only
#: in the projection's transactions, which also move its position: a count taken at a position
#: holds until the position moves (COUNT(*) of 100k rows costs more than the page itself).
_COUNTS: weakref.WeakKeyDictionary[ReadDb, dict[Any, int]] = weakref.WeakKeyDictionary()
_COUNTS_KEPT = 256


def _count(db: ReadDb, table: Table, clauses: list[str], params: list[Any]) -> int:
    where = f" WHERE {' AND '.join(clauses)}" if clauses else ""
    sql = f"SELECT COUNT(*) FROM {table.name}{where}"
    with db.reading() as tx:
        at = tuple(tx.fetchall(f"SELECT name, position FROM {PROJECTION_POSITIONS.name}"))
        key = (sql, tuple(params), at)
        memo = _COUNTS.setdefault(db, {})
        if key not in memo:
            if len(memo) >= _COUNTS_KEPT:
                memo.clear()
            memo[key] = int(tx.fetchall(sql, params)[0][0])
        return memo[key]


def encode_cursor(key: tuple[Any, ...]) -> str:
    return base64.urlsafe_b64encode(orjson.dumps(list(key))).decode().rstrip("=")


def decode_cursor(cursor: str, parts: int) -> list[Any]:
    try:
        key = orjson.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    except (ValueError, orjson.JSONDecodeError) as exc:
        raise BadCursor(f"not a cursor of this list: {cursor!r}") from exc
    if not isinstance(key, list) or len(key) != parts:
        raise BadCursor(f"not a cursor of this list: {cursor!r}")
    return key


def _one(db: ReadDb, table: Table, **key: Any) -> Row | None:
    clauses, params = _filters(key)
    rows = _rows(db, table, " AND ".join(clauses), tuple(params), limit=1)
    return rows[0] if rows else None


# --- the questions ------------------------------------------------------------------------


def projection_status(db: ReadDb, store_head: int | None = None) -> list[Row]:
    """Each projection's position, with the lag against the store's head now (when given)."""
    rows = _rows(db, PROJECTION_POSITIONS)
    for row in rows:
        if store_head is not None:
            row["head"] = store_head
            row["lag_events"] = max(0, store_head - row["position"])
    return rows


def nodes(db: ReadDb) -> list[Row]:
    return _rows(db, NODES)


def node(db: ReadDb, address: str) -> Row | None:
    return _one(db, NODES, address=address)


def node_uptime(db: ReadDb, node: str | None = None, as_of_epoch: int | None = None) -> list[Row]:
    clauses, params = _filters({"node": node})
    if as_of_epoch is not None:
        clauses.append("epoch <= ?")
        params.append(as_of_epoch)
    return _rows(db, NODE_UPTIME, " AND ".join(clauses), tuple(params))


def stake_changes(db: ReadDb, node: str) -> list[Row]:
    return _rows(db, STAKE_CHANGES, "node = ?", (node,), order="block_number, log_index")


def requests(db: ReadDb, status: str | None = None) -> list[Row]:
    clauses, params = _filters({"status": status})
    return _rows(db, REQUESTS, " AND ".join(clauses), tuple(params), order="submitted_position")


def request(db: ReadDb, request_id: str) -> Row | None:
    return _one(db, REQUESTS, request_id=request_id)


def request_uses(db: ReadDb, request_id: str) -> list[Row]:
    return _rows(db, DATA_USES, "request_id = ?", (request_id,))


def oracle_balances(db: ReadDb) -> list[Row]:
    return _rows(db, ORACLE_BALANCES)


def oracle_balance(db: ReadDb, oracle: str) -> Row | None:
    return _one(db, ORACLE_BALANCES, oracle=oracle)


def attribution(
    db: ReadDb, contributor: str | None = None, as_of_epoch: int | None = None
) -> list[Row]:
    clauses, params = _filters({"contributor": contributor})
    if as_of_epoch is not None:
        clauses.append("epoch <= ?")
        params.append(as_of_epoch)
    return _rows(db, CONTRIBUTOR_ATTRIBUTION, " AND ".join(clauses), tuple(params))


def epochs(db: ReadDb, as_of_epoch: int | None = None) -> list[Row]:
    if as_of_epoch is None:
        return _rows(db, EPOCHS)
    return _rows(db, EPOCHS, "epoch <= ?", (as_of_epoch,))


def epoch(db: ReadDb, number: int) -> Row | None:
    return _one(db, EPOCHS, epoch=number)


def epoch_fees(db: ReadDb, number: int) -> Row | None:
    return _one(db, EPOCH_FEES, epoch=number)


def parameters(db: ReadDb) -> list[Row]:
    return _rows(db, PARAMETERS)


def table_rows(db: ReadDb, table: Table) -> list[Row]:
    """Every row of a read model in key order (for comparisons and exports)."""
    return _rows(db, table)


def counts_by(db: ReadDb, table: Table, column: str) -> dict[str, int]:
    """``{value: rows}`` of one column (metrics and the dashboard's overview)."""
    with db.reading() as tx:
        rows = tx.fetchall(f"SELECT {column}, COUNT(*) FROM {table.name} GROUP BY {column}")
    return {str(value): int(count) for value, count in rows}


def ingest_partitions(db: ReadDb) -> list[Row]:
    """Per bus partition: the newest event stored from it and how long it took to arrive."""
    return _rows(db, INGEST_PARTITIONS)


def settlement_states(db: ReadDb) -> list[Row]:
    """Per state of the posting machine: how many epochs are in it, and the newest."""
    with db.reading() as tx:
        rows = tx.fetchall(
            f"SELECT state, COUNT(*), MAX(epoch) FROM {SETTLEMENTS.name} GROUP BY state"
        )
    return [{"state": s, "epochs": int(n), "latest": int(e)} for s, n, e in sorted(rows)]


# --- aggregates for dashboards --------------------------------------------------------------


def _upto(clauses: list[str], params: list[Any], column: str, bound: int | None) -> None:
    if bound is not None:
        clauses.append(f"{column} <= ?")
        params.append(bound)


def _ts_param(db: ReadDb, value: datetime) -> Any:
    """A time as the dialect stores it (ISO-8601 UTC text on SQLite, sortable as text)."""
    return value if db.dialect == "postgresql" else value.astimezone(UTC).isoformat()


def total_stake(db: ReadDb) -> dict[str, int]:
    """Sums of final active and locked stake over every node, in wei (SQLite keeps wei as
    text, whose SUM would round: summed here in Python there)."""
    columns = ("active_stake", "locked_stake", "slashed")
    with db.reading() as tx:
        if db.dialect == "postgresql":
            sums = ", ".join(f"COALESCE(SUM({c}), 0)" for c in columns)
            row = tx.fetchall(f"SELECT {sums} FROM {NODES.name}")[0]
            return {c: int(v) for c, v in zip(columns, row, strict=True)}
        rows = tx.fetchall(f"SELECT {', '.join(columns)} FROM {NODES.name}")
    return {c: sum(int(r[i] or 0) for r in rows) for i, c in enumerate(columns)}


def requests_per_minute(
    db: ReadDb, minutes: int = 60, now: datetime | None = None
) -> list[tuple[datetime, int]]:
    """Requests submitted in each of the last ``minutes`` whole minutes up to ``now``, oldest
    first (a minute with none is there with 0)."""
    now = (now or datetime.now(UTC)).astimezone(UTC)
    end = now.replace(second=0, microsecond=0) + timedelta(minutes=1)
    start = end - timedelta(minutes=minutes)
    with db.reading() as tx:
        rows = tx.fetchall(
            f"SELECT submitted_at FROM {REQUESTS.name} WHERE submitted_at >= ?",
            (_ts_param(db, start),),
        )
    counts = [0] * minutes
    for (value,) in rows:
        at = value if isinstance(value, datetime) else datetime.fromisoformat(value)
        index = int((at.astimezone(UTC) - start).total_seconds() // 60)
        if 0 <= index < minutes:
            counts[index] += 1
    return [(start + timedelta(minutes=i), n) for i, n in enumerate(counts)]


def percentile(values: list[int], q: float) -> float | None:
    """The ``q`` quantile (0..1) by linear interpolation between closest ranks (numpy's
    default), None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    rank = q * (len(ordered) - 1)
    low = int(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def latency_by_kind(db: ReadDb, as_of_epoch: int | None = None) -> list[Row]:
    """Per request kind: requests by status, and p50/p95/max latency (ms) of closed ones
    (computed in Python from the rows: the same on both dialects). ``as_of_epoch``: only
    requests closed in epochs up to it (open ones are then left out)."""
    clauses: list[str] = []
    params: list[Any] = []
    _upto(clauses, params, "epoch", as_of_epoch)
    where = f" WHERE {' AND '.join(clauses)}" if clauses else ""
    with db.reading() as tx:
        rows = tx.fetchall(f"SELECT kind, status, latency_ms FROM {REQUESTS.name}{where}", params)
    kinds: dict[str, dict[str, Any]] = {}
    for kind, status, latency in rows:
        entry = kinds.setdefault(kind, {"statuses": {}, "latencies": []})
        entry["statuses"][status] = entry["statuses"].get(status, 0) + 1
        if latency is not None:
            entry["latencies"].append(int(latency))
    out = []
    for kind, entry in sorted(kinds.items()):
        latencies = entry["latencies"]
        out.append(
            {
                "kind": kind,
                "requests": sum(entry["statuses"].values()),
                "by_status": dict(sorted(entry["statuses"].items())),
                "closed": len(latencies),
                "p50_ms": percentile(latencies, 0.50),
                "p95_ms": percentile(latencies, 0.95),
                "max_ms": max(latencies) if latencies else None,
            }
        )
    return out


def attribution_by_epoch(db: ReadDb, as_of_epoch: int | None = None) -> list[Row]:
    """Per contributor and epoch, the units and requests credited over all its sources."""
    clauses: list[str] = []
    params: list[Any] = []
    _upto(clauses, params, "epoch", as_of_epoch)
    where = f" WHERE {' AND '.join(clauses)}" if clauses else ""
    sql = (
        f"SELECT contributor, epoch, SUM(units), SUM(requests), COUNT(*)"
        f" FROM {CONTRIBUTOR_ATTRIBUTION.name}{where}"
        f" GROUP BY contributor, epoch ORDER BY contributor, epoch"
    )
    with db.reading() as tx:
        rows = tx.fetchall(sql, params)
    return [
        {"contributor": c, "epoch": int(e), "units": int(u), "requests": int(r), "sources": int(s)}
        for c, e, u, r, s in rows
    ]


def all_epoch_fees(db: ReadDb, as_of_epoch: int | None = None) -> list[Row]:
    clauses: list[str] = []
    params: list[Any] = []
    _upto(clauses, params, "epoch", as_of_epoch)
    return _rows(db, EPOCH_FEES, " AND ".join(clauses), tuple(params))


def uptime_page(
    db: ReadDb, as_of_epoch: int | None = None, cursor: str | None = None, limit: int = 100
) -> Page:
    """``node_uptime`` rows in (node, epoch) order, up to ``as_of_epoch``, a page at a time."""
    return page(db, NODE_UPTIME, None, cursor, limit, at_most={"epoch": as_of_epoch})
