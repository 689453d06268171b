"""The read-model tables as the projections write them: each table's key and column kinds, and
the conversion of Python values to each dialect and back (wei are ints of any size, stored as
NUMERIC on PostgreSQL and as decimal text on SQLite; timestamps are UTC datetimes).

The DDL is in ``migrations/``; a test holds these specs equal to the migrated schema.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

from projections.db import Dialect, Tx

Kind = Literal["text", "int", "wei", "ts", "bool", "float"]
Row = dict[str, Any]


@dataclass(frozen=True)
class Table:
    name: str
    key: tuple[str, ...]
    columns: Mapping[str, Kind]

    def key_of(self, row: Row) -> tuple[Any, ...]:
        return tuple(row[c] for c in self.key)

    def load(self, tx: Tx, table: str | None = None) -> dict[tuple[Any, ...], Row]:
        names = list(self.columns)
        rows = tx.fetchall(f"SELECT {', '.join(names)} FROM {table or self.name}")
        loaded = (self._from_db(dict(zip(names, values, strict=True))) for values in rows)
        return {self.key_of(row): row for row in loaded}

    def upsert(self, tx: Tx, rows: Iterable[Row], table: str | None = None) -> None:
        names = list(self.columns)
        updates = [c for c in names if c not in self.key]
        assignments = ", ".join(f"{c} = excluded.{c}" for c in updates)
        conflict = f"DO UPDATE SET {assignments}" if updates else "DO NOTHING"
        sql = (
            f"INSERT INTO {table or self.name} ({', '.join(names)}) "
            f"VALUES ({', '.join('?' for _ in names)}) "
            f"ON CONFLICT ({', '.join(self.key)}) {conflict}"
        )
        tx.executemany(sql, [self._to_db(row, tx.dialect) for row in rows])

    def _to_db(self, row: Row, dialect: Dialect) -> tuple[Any, ...]:
        return tuple(_to_db(row[c], kind, dialect) for c, kind in self.columns.items())

    def _from_db(self, row: Row) -> Row:
        return {c: _from_db(row[c], kind) for c, kind in self.columns.items()}

    def rows_from_db(
        self, names: Sequence[str], rows: Iterable[Sequence[Any]], dialect: Dialect
    ) -> list[Row]:
        """Rows of ``names`` (a subset of the columns, in that order) as read by a dialect's
        driver, converted to Python values. Only the columns the dialect returns in another
        form are touched (PostgreSQL: wei from NUMERIC; SQLite also times, booleans): a page of
        a list is read without a conversion call per value."""
        converting = [(c, self.columns[c]) for c in names if self.columns[c] in _CONVERTED[dialect]]
        out = [dict(zip(names, values, strict=True)) for values in rows]
        for row in out:
            for column, kind in converting:
                value = row[column]
                if value is not None:
                    row[column] = _from_db(value, kind)
        return out


#: The kinds each dialect's driver returns in another form than the Python value.
_CONVERTED: dict[Dialect, frozenset[Kind]] = {
    "postgresql": frozenset({"wei"}),
    "sqlite": frozenset({"wei", "ts", "bool", "float"}),
}


def _to_db(value: Any, kind: Kind, dialect: Dialect) -> Any:
    if value is None or dialect == "postgresql":
        return value
    if kind == "wei":
        return str(value)
    if kind == "ts":
        return value.astimezone(UTC).isoformat()
    if kind == "bool":
        return int(value)
    return value


def _from_db(value: Any, kind: Kind) -> Any:
    if value is None:
        return None
    if kind == "wei":
        return int(value)
    if kind == "ts":
        return value if isinstance(value, datetime) else datetime.fromisoformat(value)
    if kind == "bool":
        return bool(value)
    if kind == "float":
        return float(value)
    return value


def _t(table: str, key: tuple[str, ...], **columns: Kind) -> Table:
    return Table(table, key, columns)


NODES = _t(
    "nodes", ("address",),
    address="text", role="text", status="text", active_stake="wei", locked_stake="wei",
    pending_status="text", pending_active_stake="wei", pending_locked_stake="wei",
    slashed="wei", first_seen="ts", last_seen="ts", last_heartbeat="ts", heartbeats="int",
    capabilities="text",
)  # fmt: skip
STAKE_CHANGES = _t(
    "stake_changes", ("event_id",),
    event_id="text", position="int", node="text", kind="text", role="int", amount="wei",
    stake_after="wei", locked_after="wei", chain_id="int", block_number="int",
    log_index="int", block_hash="text", tx_hash="text", block_time="ts", final="bool",
    retracted="bool",
)  # fmt: skip
NODE_UPTIME = _t(
    "node_uptime", ("node", "epoch"),
    node="text", epoch="int", covered_s="int", staked_s="int", expected_s="int",
    uptime_ppm="int", heartbeats="int", late_heartbeats="int", coverage="text",
)  # fmt: skip
REQUESTS = _t(
    "requests", ("request_id",),
    request_id="text", kind="text", oracle="text", fee="wei", reserved="bool", status="text",
    worker="text", units="int", result_digest="text", failure_reason="text",
    submitted_at="ts", closed_at="ts", latency_ms="int", epoch="int",
    submitted_position="int", closed_position="int", closed_event_id="text",
)  # fmt: skip
ORACLE_BALANCES = _t(
    "oracle_balances", ("oracle",),
    oracle="text", deposited="wei", pending_deposits="wei", reserved="wei", spent="wei",
    available="wei", unpaid_requests="int",
)  # fmt: skip
FEE_DEPOSITS = _t(
    "fee_deposits", ("event_id",),
    event_id="text", oracle="text", amount="wei", chain_id="int", block_number="int",
    final="bool", retracted="bool", position="int",
)  # fmt: skip
DATA_SOURCES = _t(
    "data_sources", ("source",),
    source="text", contributor="text", registered_at="ts", position="int",
)  # fmt: skip
CONTRIBUTOR_ATTRIBUTION = _t(
    "contributor_attribution", ("contributor", "epoch", "source"),
    contributor="text", epoch="int", source="text", units="int", requests="int",
)  # fmt: skip
DATA_USES = _t(
    "data_uses", ("event_id", "source"),
    event_id="text", request_id="text", contributor="text", source="text", units="int",
    credited="bool", refusal="text", epoch="int", position="int",
)  # fmt: skip
EPOCH_FEES = _t(
    "epoch_fees", ("epoch",),
    epoch="int", paid_requests="int", unpaid_requests="int", failed_requests="int",
    fees_paid="wei", protocol_part="wei", data_part="wei", worker_part="wei",
)  # fmt: skip
PARAMETERS = _t(
    "parameters", ("effective_epoch",),
    effective_epoch="int", genesis="ts", epoch_length_s="int", heartbeat_interval_s="int",
    grace_s="int", emission_per_epoch="wei", stake_cap="wei", min_uptime_ppm="int",
    protocol_share_bps="int", data_share_bps="int", treasury="text", event_id="text",
    position="int",
)  # fmt: skip
EPOCHS = _t(
    "epochs", ("epoch",),
    epoch="int", start_at="ts", end_at="ts", closed="bool", cutoff_position="int",
    finalized_block="int", closed_at="ts",
)  # fmt: skip
CHAIN_FINALITY = _t(
    "chain_finality", ("chain_id",),
    chain_id="int", finalized_block="int", block_hash="text", position="int",
)  # fmt: skip
CLAIMS = _t(
    "claims", ("event_id",),
    event_id="text", account="text", amount="wei", cumulative="wei", chain_id="int",
    block_number="int", tx_hash="text", final="bool", retracted="bool", position="int",
)  # fmt: skip
SETTLEMENTS = _t(
    "settlements", ("epoch",),
    epoch="int", chain_epoch="int", root="text", statement_hash="text",
    total_cumulative="wei", state="text", nonce="int", raw_tx="text", tx_hash="text",
    replaced_tx_hashes="text", max_fee_per_gas="wei", max_priority_fee_per_gas="wei",
    broadcast_at="ts", block_number="int", close_position="int", finalized_block="int",
    statement="text", refusal="text", updated_at="ts",
)  # fmt: skip
PAYOUTS = _t(
    "payouts", ("epoch", "address", "kind"),
    epoch="int", address="text", kind="text", earned="wei", cumulative="wei",
)  # fmt: skip
STATEMENT_LINES = _t(
    "statement_lines", ("epoch", "address"),
    epoch="int", address="text", earned="wei", cumulative="wei", tree_index="int",
)  # fmt: skip
MERKLE_NODES = _t("merkle_nodes", ("epoch", "node"), epoch="int", node="int", hash="text")
DEAD_LETTERS = _t(
    "dead_letters", ("dlq_id",),
    dlq_id="text", reason="text", detail="text", source_topic="text", source_partition="int",
    source_offset="int", consumer="text", rejected_at="ts", published_at="ts",
)  # fmt: skip
INGEST_PARTITIONS = _t(
    "ingest_partitions", ("source_topic", "source_partition"),
    source_topic="text", source_partition="int", consumer="text", last_offset="int",
    events="int", last_ingested_at="ts", last_occurred_at="ts", ingest_delay_s="float",
    position="int",
)  # fmt: skip
PROJECTION_POSITIONS = _t(
    "projection_positions", ("name",),
    name="text", position="int", head="int", lag_events="int", lag_seconds="float",
    events_applied="int", updated_at="ts", last_error="text",
)  # fmt: skip

#: The tables the ledger projection fills (rebuilt together, swapped together).
LEDGER_TABLES = (
    NODES, STAKE_CHANGES, NODE_UPTIME, REQUESTS, ORACLE_BALANCES, FEE_DEPOSITS, DATA_SOURCES,
    CONTRIBUTOR_ATTRIBUTION, DATA_USES, EPOCH_FEES, PARAMETERS, EPOCHS, CHAIN_FINALITY, CLAIMS,
    INGEST_PARTITIONS,
)  # fmt: skip
#: The settler's tables: written by ``masa settle run``, not by a projection (never rebuilt).
SETTLEMENT_TABLES = (SETTLEMENTS, PAYOUTS, STATEMENT_LINES, MERKLE_NODES)
#: Copied from the store's dead letters by the projection runner (not events: never rebuilt).
INGEST_TABLES = (DEAD_LETTERS,)
#: Every table a dashboard may read (what ``masa db grant-reader`` grants).
READ_MODEL_TABLES = (*LEDGER_TABLES, *SETTLEMENT_TABLES, *INGEST_TABLES, PROJECTION_POSITIONS)
