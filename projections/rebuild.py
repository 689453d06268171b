"""Rebuilding the read models from the store alone (no RPC, no Kafka): replay from position 0
into shadow tables while the live tables keep serving, then swap them in atomically with the
position, once caught up. A killed rebuild leaves only shadow tables, dropped by the next one.

Shadow tables: on PostgreSQL, same-named tables in the schema ``<schema>_rebuild`` (created
``LIKE`` the live ones, moved with ``SET SCHEMA``); on SQLite, ``<table>__rebuild`` in the same
file, with the live table's indexes recreated after the rename.
"""

from __future__ import annotations

from collections.abc import Callable

from indexer.store.log import EventLog
from projections import ledger
from projections.db import ReadDb, Tx
from projections.runner import ensure_position_row
from projections.state import LedgerState
from projections.tables import LEDGER_TABLES

SQLITE_SUFFIX = "__rebuild"


def rebuild(
    log: EventLog,
    db: ReadDb,
    *,
    name: str = ledger.NAME,
    batch_size: int = 5000,
    on_progress: Callable[[int, int], None] | None = None,
    schema: str = "public",
) -> int:
    """Replay everything into shadow tables, swap them in; returns the position reached."""
    shadow = _Shadow(db.dialect, schema)
    with db.transaction() as tx:
        shadow.create(tx)
    state, position = LedgerState.empty(), 0
    while True:
        events = log.read(position, batch_size)
        if events:
            for event in events:
                ledger.apply(state, event)
            ledger.refresh(state)
            with db.transaction() as tx:
                state.write(tx, shadow.table)
            position = events[-1].position
            if on_progress is not None:
                on_progress(position, log.head())
            continue
        with db.transaction() as tx:
            if log.read(position, 1):  # more arrived while writing: catch up first
                continue
            shadow.swap(tx, name, position)
        return position


class _Shadow:
    def __init__(self, dialect: str, schema: str) -> None:
        self.dialect = dialect
        self.schema = schema
        self.rebuild_schema = f"{schema}_rebuild"
        self._indexes: dict[str, list[str]] = {}

    def table(self, name: str) -> str:
        """Where the rebuild writes ``name``."""
        if self.dialect == "sqlite":
            return name + SQLITE_SUFFIX
        return f"{self.rebuild_schema}.{name}"

    def create(self, tx: Tx) -> None:
        if self.dialect == "postgresql":
            tx.execute(f"DROP SCHEMA IF EXISTS {self.rebuild_schema} CASCADE")
            tx.execute(f"CREATE SCHEMA {self.rebuild_schema}")
            for table in LEDGER_TABLES:
                tx.execute(
                    f"CREATE TABLE {self.rebuild_schema}.{table.name}"
                    f" (LIKE {self.schema}.{table.name} INCLUDING ALL)"
                )
            return
        for table in LEDGER_TABLES:
            shadow = table.name + SQLITE_SUFFIX
            tx.execute(f"DROP TABLE IF EXISTS {shadow}")
            (ddl,) = tx.fetchall(
                "SELECT sql FROM sqlite_master WHERE type = 'table' AND name = ?", (table.name,)
            )[0]
            tx.execute(ddl.replace(f"CREATE TABLE {table.name}", f"CREATE TABLE {shadow}", 1))

    def swap(self, tx: Tx, name: str, position: int) -> None:
        ensure_position_row(tx, name)
        tx.execute(
            "UPDATE projection_positions SET position = ?, head = ?, lag_events = 0,"
            " lag_seconds = 0, last_error = NULL WHERE name = ?",
            (position, position, name),
        )
        if self.dialect == "postgresql":
            self._swap_postgres(tx)
        else:
            self._swap_sqlite(tx)

    def _swap_postgres(self, tx: Tx) -> None:
        readers = [r for (r,) in tx.fetchall("SELECT role FROM read_model_readers")]
        for table in LEDGER_TABLES:
            tx.execute(f"DROP TABLE {self.schema}.{table.name}")
            tx.execute(f"ALTER TABLE {self.rebuild_schema}.{table.name} SET SCHEMA {self.schema}")
            for role in readers:
                tx.execute(f'GRANT SELECT ON {self.schema}.{table.name} TO "{role}"')
        tx.execute(f"DROP SCHEMA {self.rebuild_schema}")

    def _swap_sqlite(self, tx: Tx) -> None:
        for table in LEDGER_TABLES:
            indexes = tx.fetchall(
                "SELECT sql FROM sqlite_master WHERE type = 'index' AND tbl_name = ?"
                " AND sql IS NOT NULL",
                (table.name,),
            )
            tx.execute(f"DROP TABLE {table.name}")
            tx.execute(f"ALTER TABLE {table.name}{SQLITE_SUFFIX} RENAME TO {table.name}")
            for (ddl,) in indexes:
                tx.execute(ddl)
