"""The ledger projection's state: every read-model row it owns, kept in memory, with the rows
changed since the last write marked dirty, plus the indices the rules need (a node's chain
facts, the parameter schedule, finality, the source registry), all derived from the rows so a
runner that starts again loads them from the tables it wrote.

The per-model modules (``nodes``, ``uptime``, ``requests``, ``attribution``, ``epochs``) apply
events to it; ``runner`` writes the dirty rows with the position in one transaction.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from indexer.store.log import LoggedEvent
from projections.db import Tx
from projections.rules import ChainFact, Coverage, OracleBalance, Parameters, ParameterSchedule
from projections.rules.stakes import Kind
from projections.tables import LEDGER_TABLES, Row, Table


@dataclass
class TableState:
    table: Table
    rows: dict[tuple[Any, ...], Row] = field(default_factory=dict)
    dirty: set[tuple[Any, ...]] = field(default_factory=set)

    def get(self, *key: Any) -> Row | None:
        return self.rows.get(key)

    def put(self, row: Row) -> Row:
        key = self.table.key_of(row)
        self.rows[key] = row
        self.dirty.add(key)
        return row

    def touch(self, *key: Any) -> None:
        self.dirty.add(key)

    def take_dirty(self) -> list[Row]:
        rows = [self.rows[k] for k in sorted(self.dirty, key=repr)]
        self.dirty.clear()
        return rows


@dataclass
class LedgerState:
    tables: dict[str, TableState]
    schedule: ParameterSchedule = field(default_factory=ParameterSchedule)
    finalized: dict[int, int] = field(default_factory=dict)
    facts: dict[str, list[ChainFact]] = field(default_factory=lambda: defaultdict(list))
    fact_chain: dict[str, int] = field(default_factory=dict)
    retracted: set[str] = field(default_factory=set)
    unfinal_stake: set[str] = field(default_factory=set)
    unfinal_deposits: set[str] = field(default_factory=set)
    registry: dict[str, str] = field(default_factory=dict)
    unregistered_uses: dict[str, list[tuple[str, str]]] = field(default_factory=dict)
    balances: dict[str, OracleBalance] = field(default_factory=dict)
    unpaid: dict[str, int] = field(default_factory=dict)
    coverage: dict[tuple[str, int], Coverage] = field(default_factory=dict)
    node_epochs: dict[str, set[int]] = field(default_factory=lambda: defaultdict(set))
    epoch_requests: dict[int, set[str]] = field(default_factory=lambda: defaultdict(set))
    dirty_nodes: set[str] = field(default_factory=set)
    dirty_uptime: set[tuple[str, int]] = field(default_factory=set)
    dirty_fees: set[int] = field(default_factory=set)
    dirty_balances: set[str] = field(default_factory=set)

    @classmethod
    def empty(cls) -> LedgerState:
        return cls({t.name: TableState(t) for t in LEDGER_TABLES})

    def __getitem__(self, name: str) -> TableState:
        return self.tables[name]

    # --- epochs -------------------------------------------------------------------------

    @property
    def closed_epochs(self) -> Iterator[int]:
        return (row["epoch"] for row in self["epochs"].rows.values() if row["closed"])

    def is_closed(self, epoch: int) -> bool:
        row = self["epochs"].get(epoch)
        return bool(row and row["closed"])

    def last_closed(self) -> int | None:
        return max(self.closed_epochs, default=None)

    def epoch_of(self, at: datetime) -> int | None:
        return self.schedule.epoch_of(unix(at))

    def money_epoch(self, event: LoggedEvent) -> int | None:
        """The epoch a money-bearing event counts in: the one it occurred in, or, once that one
        is closed, the epoch open at its ingestion (never a closed one)."""
        epoch = self.epoch_of(event.occurred_at)
        if epoch is None or not self.is_closed(epoch):
            return epoch
        at_ingestion = self.epoch_of(event.ingested.at)
        last = self.last_closed()
        assert last is not None
        if at_ingestion is None or at_ingestion <= last:
            return last + 1
        return at_ingestion

    def params(self, epoch: int) -> Parameters | None:
        return self.schedule.in_force(epoch)

    # --- chain --------------------------------------------------------------------------

    def finalized_block(self, chain_id: int | None) -> int | None:
        return None if chain_id is None else self.finalized.get(chain_id)

    def node_finalized_block(self, node: str) -> int | None:
        return self.finalized_block(self.fact_chain.get(node))

    # --- writing ------------------------------------------------------------------------

    def write(self, tx: Tx, target: Callable[[str], str] = str) -> int:
        """Upsert every dirty row (into the table ``target(name)``); how many were written."""
        written = 0
        for state in self.tables.values():
            rows = state.take_dirty()
            state.table.upsert(tx, rows, target(state.table.name))
            written += len(rows)
        return written


def unix(at: datetime) -> int:
    return int(at.timestamp())


def from_unix(seconds: int) -> datetime:
    return datetime.fromtimestamp(seconds, UTC)


def load_state(tx: Tx) -> LedgerState:
    """The state a runner continues from: the rows it wrote, and the indices derived from them."""
    state = LedgerState.empty()
    for table_state in state.tables.values():
        table_state.rows = table_state.table.load(tx)
    _index(state)
    return state


def _index(state: LedgerState) -> None:
    for row in sorted(state["parameters"].rows.values(), key=lambda r: r["position"]):
        state.schedule = state.schedule.with_set(parameters_of(row))
    for row in state["chain_finality"].rows.values():
        state.finalized[row["chain_id"]] = row["finalized_block"]
    for row in state["stake_changes"].rows.values():
        _index_fact(state, row)
    for row in state["data_sources"].rows.values():
        state.registry[row["source"]] = row["contributor"]
    for key, row in sorted(state["data_uses"].rows.items(), key=lambda kv: kv[1]["position"]):
        if row["refusal"] == "unregistered_source":
            state.unregistered_uses.setdefault(row["source"], []).append(key)
    for row in state["fee_deposits"].rows.values():
        if not row["final"] and not row["retracted"]:
            state.unfinal_deposits.add(row["event_id"])
    for row in state["oracle_balances"].rows.values():
        state.balances[row["oracle"]] = OracleBalance(
            row["deposited"], row["reserved"], row["spent"]
        )
        state.unpaid[row["oracle"]] = row["unpaid_requests"]
    for node, epoch in state["node_uptime"].rows:
        state.node_epochs[node].add(epoch)
    for row in state["requests"].rows.values():
        if row["epoch"] is not None:
            state.epoch_requests[row["epoch"]].add(row["request_id"])


def _index_fact(state: LedgerState, row: Row) -> None:
    fact = fact_of(row)
    state.facts[fact.node].append(fact)
    state.fact_chain[fact.node] = row["chain_id"]
    if row["retracted"]:
        state.retracted.add(fact.event_id)
    elif not row["final"]:
        state.unfinal_stake.add(fact.event_id)


def fact_of(row: Row) -> ChainFact:
    return ChainFact(
        row["event_id"],
        row["block_number"],
        row["log_index"],
        unix(row["block_time"]),
        Kind(row["kind"]),
        row["node"],
        role=row["role"],
        amount=row["amount"],
        stake_after=row["stake_after"],
        locked_after=row["locked_after"],
    )


def parameters_of(row: Row) -> Parameters:
    return Parameters(
        effective_epoch=row["effective_epoch"],
        genesis=unix(row["genesis"]),
        epoch_length_s=row["epoch_length_s"],
        heartbeat_interval_s=row["heartbeat_interval_s"],
        grace_s=row["grace_s"],
        emission_per_epoch=row["emission_per_epoch"],
        stake_cap=row["stake_cap"],
        min_uptime_ppm=row["min_uptime_ppm"],
        protocol_share_bps=row["protocol_share_bps"],
        data_share_bps=row["data_share_bps"],
        treasury=row["treasury"],
    )
