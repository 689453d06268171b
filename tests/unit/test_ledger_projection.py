"""The ledger projection's fold: applying a history in random batches, with the state reloaded
from the tables between batches (what a restarted runner does), gives the same tables as one
pass; and a few rules of the read models on hand-made histories.

Histories are decoded events (``LoggedEvent``) made here, without signatures or a store: the
fold only sees what the read port hands it. The tables go through a real SQLite read DB.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from indexer.events import types as t
from indexer.store.log import IngestedAt, LoggedEvent
from projections import ledger
from projections.db import SqliteReadDb
from projections.queries import table_rows
from projections.schema import migrate
from projections.state import LedgerState, load_state
from projections.tables import LEDGER_TABLES

GENESIS = datetime(2026, 1, 1, tzinfo=UTC)
EPOCH_S, INTERVAL_S = 600, 30
CHAIN = 31337
WORKERS = [f"0x{i:040x}" for i in range(1, 4)]
ORACLES = [f"0x{i:040x}" for i in range(10, 12)]
CONTRIBUTORS = [f"0x{i:040x}" for i in range(20, 22)]
SOURCES = ["https://a.example/", "https://b.example/"]
GOVERNOR, INDEXER = "0x" + "99" * 20, "0x" + "98" * 20
SPEC = {"start_urls": ["https://a.example/x"], "max_depth": 0, "fields": {"title": {"css": "h1"}}}


class History:
    """Builds a store-ordered list of decoded events."""

    def __init__(self) -> None:
        self.events: list[LoggedEvent] = []
        self.block = 0
        self.requests: list[str] = []

    def add(self, payload: t.Payload, producer: str, at: datetime, type_name: str) -> str:
        event_id = uuid.uuid4()
        position = len(self.events) + 1
        self.events.append(
            LoggedEvent(
                position=position,
                event_id=event_id,
                type=type_name,
                stored_version=1,
                occurred_at=at,
                producer=producer,
                stream_id=uuid.uuid4(),
                stream_version=1,
                payload=payload,
                ingested=IngestedAt(
                    "ingest", "masa.events", 0, position, at + timedelta(seconds=1)
                ),
                envelope={},
            )
        )
        return str(event_id)

    def finalized(self, block: int, at: datetime) -> None:
        """The indexer's word that the chain is final up to ``block``."""
        payload = t.ChainFinalized(
            chain_id=CHAIN, block_number=block, block_hash="0x" + "00" * 32, log_count=1,
            contracts=["0x" + "5a" * 20],
        )  # fmt: skip
        self.add(payload, INDEXER, at, "ChainFinalized")

    def log(self) -> t.ChainLog:
        self.block += 1
        return t.ChainLog(
            chain_id=CHAIN,
            contract="0x" + "5a" * 20,
            block_number=self.block,
            block_hash="0x" + f"{self.block:064x}",
            tx_hash="0x" + f"{self.block:064x}",
            log_index=0,
        )


def _parameters(epoch: int, emission: int) -> t.ParametersSet:
    return t.ParametersSet(
        effective_epoch=epoch,
        genesis=GENESIS,
        epoch_length_s=EPOCH_S,
        heartbeat_interval_s=INTERVAL_S,
        grace_s=10,
        emission_per_epoch=emission,
        stake_cap=10**21,
        min_uptime_ppm=0,
        protocol_share_bps=500,
        data_share_bps=2000,
        treasury="0x" + "77" * 20,
    )


steps = st.lists(
    st.tuples(
        st.sampled_from(
            [
                "stake",
                "unstake",
                "finalize",
                "retract",
                "heartbeat",
                "submit",
                "complete",
                "fail",
                "deposit",
                "register",
                "use",
                "close",
                "params",
            ]
        ),
        st.integers(0, 2**16),
    ),
    min_size=40,
    max_size=160,
)


def build(plan: list[tuple[str, int]]) -> list[LoggedEvent]:
    h = History()
    clock = GENESIS + timedelta(seconds=5)
    h.add(_parameters(0, 10**20), GOVERNOR, clock, "ParametersSet")
    stakes: list[tuple[str, str]] = []
    closed = -1
    for action, n in plan:
        clock += timedelta(seconds=n % 90 + 1)
        _step(h, action, n, clock, stakes, closed)
        if action == "close":
            closed = max(closed, (clock - GENESIS).seconds // EPOCH_S - 1)
    return h.events


def _step(h: History, action: str, n: int, at: datetime, stakes: list, closed: int) -> None:
    worker, oracle = WORKERS[n % 3], ORACLES[n % 2]
    if action == "stake":
        node, role = (worker, 1) if n % 3 else (oracle, 2)
        eid = h.add(
            t.Staked(
                log=h.log(), node=node, role=role, amount=10**20, new_stake=10**20 * (1 + n % 4)
            ),
            INDEXER,
            at,
            "Staked",
        )
        stakes.append((eid, node))
    elif action == "unstake":
        h.add(
            t.UnstakeRequested(
                log=h.log(),
                node=worker,
                lock_id=n,
                amount=10**19,
                unlock_at=0,
                new_stake=0,
                new_locked=10**19,
            ),
            INDEXER,
            at,
            "UnstakeRequested",
        )
    elif action == "finalize":
        h.add(
            t.ChainFinalized(
                chain_id=CHAIN,
                block_number=max(0, h.block - n % 3),
                block_hash="0x" + "00" * 32,
                log_count=0,
                contracts=["0x" + "5a" * 20],
            ),
            INDEXER,
            at,
            "ChainFinalized",
        )
    elif action == "retract" and stakes:
        eid, node = stakes.pop(n % len(stakes))
        h.add(
            t.ChainLogRetracted(
                log=h.log(), retracted_id=uuid.UUID(eid), retracted_type="Staked", stream_key=node
            ),
            INDEXER,
            at,
            "ChainLogRetracted",
        )
    elif action == "heartbeat":
        h.add(t.Heartbeat(seq=n, capabilities=["data"]), worker, at, "Heartbeat")
    elif action == "submit":
        rid = str(uuid.uuid4())
        h.requests.append(rid)
        h.add(
            t.RequestSubmitted(
                request_id=uuid.UUID(rid), kind="data", spec=SPEC, fee=10**18 * (1 + n % 5)
            ),
            oracle,
            at,
            "RequestSubmitted",
        )
    elif action in ("complete", "fail", "use") and h.requests:
        rid = uuid.UUID(h.requests[n % len(h.requests)])
        if action == "complete":
            h.add(
                t.RequestCompleted(request_id=rid, result_digest="0x" + "ab" * 32, units=n % 7),
                worker,
                at,
                "RequestCompleted",
            )
        elif action == "fail":
            h.add(t.RequestFailed(request_id=rid, reason="timeout"), worker, at, "RequestFailed")
        else:
            uses = [
                t.DataUse(
                    source=SOURCES[n % 2], contributor=CONTRIBUTORS[(n >> 1) % 2], units=1 + n % 9
                )
            ]
            h.add(t.DataUsed(request_id=rid, uses=uses), worker, at, "DataUsed")
    elif action == "deposit":
        h.add(
            t.FeesDeposited(
                log=h.log(),
                oracle=oracle,
                amount=10**18 * (1 + n % 7),
                deposited=0,
                new_total_fees_deposited=0,
            ),
            INDEXER,
            at,
            "FeesDeposited",
        )
    elif action == "register":
        h.add(
            t.DataSourceRegistered(source=SOURCES[n % 2], contributor=CONTRIBUTORS[n % 2]),
            CONTRIBUTORS[n % 2],
            at,
            "DataSourceRegistered",
        )
    elif action == "close":
        epoch = (at - GENESIS).seconds // EPOCH_S - 1
        if epoch > closed and epoch >= 0:
            h.add(
                t.EpochClosed(epoch=epoch, cutoff_position=len(h.events), finalized_block=h.block),
                "0x" + "97" * 20,
                at,
                "EpochClosed",
            )
    elif action == "params":
        epoch = (at - GENESIS).seconds // EPOCH_S + 1
        h.add(_parameters(epoch, 10**20 + n), GOVERNOR, at, "ParametersSet")


def fold(db: SqliteReadDb, events: list[LoggedEvent], cuts: list[int]) -> dict[str, list]:
    """Apply ``events``, writing and reloading the state at each cut."""
    with db.transaction() as tx:
        state = load_state(tx)
    start = 0
    for cut in [*sorted(set(cuts)), len(events)]:
        for event in events[start:cut]:
            ledger.apply(state, event)
        ledger.refresh(state)
        with db.transaction() as tx:
            state.write(tx)
            state = load_state(tx)
        start = max(start, cut)
    return {table.name: table_rows(db, table) for table in LEDGER_TABLES}


def fresh_db(root: Path, name: str) -> SqliteReadDb:
    db = SqliteReadDb(root / f"{name}.sqlite")
    migrate(db.url)
    return db


@settings(
    max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(plan=steps, cuts=st.lists(st.integers(0, 200), max_size=6))
def test_batches_with_reloads_equal_one_pass(tmp_path_factory, plan, cuts):
    root = tmp_path_factory.mktemp("fold")
    events = build(plan)
    one_pass = fold(fresh_db(root, "one"), events, [])
    in_batches = fold(fresh_db(root, "batches"), events, [c % (len(events) + 1) for c in cuts])
    assert in_batches == one_pass


def test_a_retracted_stake_leaves_no_trace_and_pending_is_not_final(tmp_path):
    h = History()
    at = GENESIS + timedelta(seconds=10)
    h.add(_parameters(0, 10**20), GOVERNOR, at, "ParametersSet")
    first = h.add(
        t.Staked(log=h.log(), node=WORKERS[0], role=1, amount=5, new_stake=5), INDEXER, at, "Staked"
    )
    h.finalized(1, at)
    second = h.add(
        t.Staked(log=h.log(), node=WORKERS[0], role=1, amount=7, new_stake=12),
        INDEXER,
        at,
        "Staked",
    )
    db = fresh_db(tmp_path, "r")
    tables = fold(db, h.events, [])
    (node,) = tables["nodes"]
    assert (node["active_stake"], node["pending_active_stake"]) == (5, 12)
    h.add(
        t.ChainLogRetracted(
            log=h.log(),
            retracted_id=uuid.UUID(second),
            retracted_type="Staked",
            stream_key=WORKERS[0],
        ),
        INDEXER,
        at,
        "ChainLogRetracted",
    )
    tables = fold(fresh_db(tmp_path, "r2"), h.events, [])
    (node,) = tables["nodes"]
    assert (node["active_stake"], node["pending_active_stake"]) == (5, 5)
    assert {r["event_id"]: r["retracted"] for r in tables["stake_changes"]} == {
        first: False,
        second: True,
    }


def test_uptime_counts_heartbeats_only_while_finally_staked_and_late_ones_earn_nothing(tmp_path):
    h = History()
    start = GENESIS
    h.add(_parameters(0, 10**20), GOVERNOR, start, "ParametersSet")
    h.add(
        t.Staked(log=h.log(), node=WORKERS[0], role=1, amount=5, new_stake=5),
        INDEXER,
        start + timedelta(seconds=100),
        "Staked",
    )
    for second in (0, 130, 160, 190):  # the first one is before the stake
        h.add(
            t.Heartbeat(seq=second, capabilities=[]),
            WORKERS[0],
            start + timedelta(seconds=second),
            "Heartbeat",
        )
    h.finalized(1, start + timedelta(seconds=200))
    h.add(
        t.EpochClosed(epoch=0, cutoff_position=7, finalized_block=1),
        "0x" + "97" * 20,
        start + timedelta(seconds=EPOCH_S + 20),
        "EpochClosed",
    )
    h.add(
        t.Heartbeat(seq=999, capabilities=[]),
        WORKERS[0],
        start + timedelta(seconds=300),
        "Heartbeat",
    )
    state = LedgerState.empty()
    for event in h.events:
        ledger.apply(state, event)
    ledger.refresh(state)
    row = state["node_uptime"].get(WORKERS[0], 0)
    assert row is not None
    # heartbeats at 130, 160, 190 cover [130, 250); the one at 0 covers [0, 60), before the stake
    assert (row["covered_s"], row["staked_s"], row["expected_s"]) == (120, EPOCH_S - 100, EPOCH_S)
    assert row["uptime_ppm"] == 120 * 1_000_000 // EPOCH_S
    assert (row["heartbeats"], row["late_heartbeats"]) == (4, 1)


def test_completions_beyond_the_final_deposits_are_unpaid_in_store_order(tmp_path):
    h = History()
    at = GENESIS + timedelta(seconds=1)
    h.add(_parameters(0, 10**20), GOVERNOR, at, "ParametersSet")
    h.add(
        t.FeesDeposited(
            log=h.log(), oracle=ORACLES[0], amount=3, deposited=3, new_total_fees_deposited=3
        ),
        INDEXER,
        at,
        "FeesDeposited",
    )
    h.finalized(1, at)
    ids = [uuid.uuid4() for _ in range(3)]
    spec = SPEC
    for rid in ids:  # fees 2, 2, 1: the first is reserved, the second finds 1 left
        fee = 1 if rid == ids[2] else 2
        h.add(
            t.RequestSubmitted(request_id=rid, kind="data", spec=spec, fee=fee),
            ORACLES[0],
            at,
            "RequestSubmitted",
        )
    for rid in ids:
        h.add(
            t.RequestCompleted(request_id=rid, result_digest="0x" + "ab" * 32, units=1),
            WORKERS[0],
            at,
            "RequestCompleted",
        )
    tables = fold(fresh_db(tmp_path, "b"), h.events, [])
    status = {r["request_id"]: r["status"] for r in tables["requests"]}
    assert [status[str(r)] for r in ids] == ["completed", "unpaid", "completed"]
    (balance,) = tables["oracle_balances"]
    assert (balance["deposited"], balance["spent"], balance["available"]) == (3, 3, 0)
    assert balance["unpaid_requests"] == 1
