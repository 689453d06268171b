"""One query per question a reader asks of the read models, shared by the CLI, the demo and
the API, so they never disagree."""

from __future__ import annotations

from typing import Any

from projections.db import ReadDb
from projections.tables import (
    CONTRIBUTOR_ATTRIBUTION,
    NODE_UPTIME,
    NODES,
    ORACLE_BALANCES,
    PROJECTION_POSITIONS,
    REQUESTS,
    Row,
    Table,
)


def _select(db: ReadDb, table: Table, where: str = "", params: tuple[Any, ...] = (),
            order: str = "") -> list[Row]:  # fmt: skip
    names = list(table.columns)
    sql = f"SELECT {', '.join(names)} FROM {table.name}"
    sql += f" WHERE {where}" if where else ""
    sql += f" ORDER BY {order or ', '.join(table.key)}"
    with db.transaction() as tx:
        rows = tx.fetchall(sql, params)
    return [table._from_db(dict(zip(names, r, strict=True))) for r in rows]


def projection_status(db: ReadDb, store_head: int) -> list[Row]:
    """Each projection's position, with the lag against the store's head now."""
    rows = _select(db, PROJECTION_POSITIONS)
    for row in rows:
        row["head"] = store_head
        row["lag_events"] = max(0, store_head - row["position"])
    return rows


def nodes(db: ReadDb) -> list[Row]:
    return _select(db, NODES)


def node_uptime(db: ReadDb, node: str | None = None) -> list[Row]:
    if node is None:
        return _select(db, NODE_UPTIME)
    return _select(db, NODE_UPTIME, "node = ?", (node,))


def requests(db: ReadDb, status: str | None = None) -> list[Row]:
    if status is None:
        return _select(db, REQUESTS, order="submitted_position")
    return _select(db, REQUESTS, "status = ?", (status,), order="submitted_position")


def oracle_balances(db: ReadDb) -> list[Row]:
    return _select(db, ORACLE_BALANCES)


def attribution(db: ReadDb, contributor: str | None = None) -> list[Row]:
    if contributor is None:
        return _select(db, CONTRIBUTOR_ATTRIBUTION)
    return _select(db, CONTRIBUTOR_ATTRIBUTION, "contributor = ?", (contributor,))


def table_rows(db: ReadDb, table: Table) -> list[Row]:
    """Every row of a read model in key order (for comparisons and exports)."""
    return _select(db, table)
