"""The read side end to end: a randomized history of every event type, sent through the real
bus and ingested by the real ``Ingestor`` into SQLite or PostgreSQL, then projected live (small
random batches interleaved with ingest, a reload in the middle), under SIGKILL, by three runners
at once, and rebuilt; the read models must come out identical. Plus the migrations (every
revision, up and down, specs equal to the migrated schema) and the dashboards' reader role."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest
from alembic import command
from alembic.config import Config
from alembic.script import ScriptDirectory
from eth_account import Account
from eth_account.signers.local import LocalAccount
from eth_utils import keccak
from sqlalchemy import create_engine, inspect

import migrations
from indexer.events import SignedMessage, chain_event_id, make_event, retraction_id
from indexer.events.types import ChainLog
from indexer.store.log import EventLog
from masa.app.synthetic import Participants
from masa.app.wiring import open_event_log, open_read_db
from projections.db import ReadDb
from projections.queries import table_rows
from projections.rebuild import rebuild
from projections.runner import ProjectionRunner, RunnerConfig
from projections.schema import head_revision, migrate
from projections.tables import LEDGER_TABLES, READ_MODEL_TABLES, Row, Table
from tests.integration.conftest import Harness

MASA = str(Path(sys.executable).parent / "masa")
EVENTS = 5200
CHAIN_ID = 31337
STAKING = "0x" + "5a" * 20
DISTRIBUTOR = "0x" + "d1" * 20
EPOCH_S, HEARTBEAT_S = 900, 60
WORKER, ORACLE = 1, 2
BACKEND_IDS = ["postgres", "sqlite"]
BACKENDS = [("embedded", "postgres"), ("embedded", "sqlite")]

# --- a randomized history -------------------------------------------------------------------


def _account(seed: int, label: str) -> LocalAccount:
    return Account.from_key(keccak(f"masa-projections-test:{seed}:{label}".encode()))


@dataclass
class History:
    """Signed messages in send order, and what the test expects some of them to do."""

    people: Participants
    governor: LocalAccount
    settler: LocalAccount
    messages: list[SignedMessage] = field(default_factory=list)
    retracted: list[str] = field(default_factory=list)
    late_heartbeats: int = 0
    early_completions: int = 0
    submitted: int = 0


class _Builder:
    """Builds a history in occurrence order with the disorder ingest must cope with: events
    sent before what they refer to (held, then released), duplicates, reorgs, late events."""

    def __init__(self, seed: int, start: datetime) -> None:
        self.rng = random.Random(seed)
        self.start = start
        people = Participants.from_seed(seed, workers=4, oracles=2, contributors=3)
        self.h = History(people, _account(seed, "governor"), _account(seed, "settler"))
        self.t = 0.0
        self.block, self.log_index, self.block_t = 1, 0, 0.0
        self.finalized = 0
        self.totals: dict[str, list[int]] = {}  # node -> [stake, locked, next lock id]
        self.locks: dict[str, list[tuple[int, int]]] = {}
        self.seq: dict[str, int] = {}
        self.next_beat: dict[str, float] = {}
        self.chain_since_final = 0
        self.closed = -1
        self.deposited: dict[str, int] = {}
        self.total_fees = 0

    # helpers

    def at(self, offset: float | None = None) -> datetime:
        return self.start + timedelta(seconds=self.t if offset is None else offset)

    def send(self, message: SignedMessage) -> SignedMessage:
        self.h.messages.append(message)
        return message

    def signed(self, account: LocalAccount, type_name: str, payload: dict, at: datetime):
        event_id = None
        if "log" not in payload:
            event_id = uuid.UUID(int=self.rng.getrandbits(128), version=4)
        return make_event(account, type_name, payload, occurred_at=at, event_id=event_id)

    def log(self) -> dict[str, Any]:
        if self.t - self.block_t >= 12:
            self.block += 1 + int((self.t - self.block_t) // 12)
            self.block_t, self.log_index = self.t, 0
        self.log_index += 1
        return {
            "chain_id": CHAIN_ID,
            "contract": STAKING,
            "block_number": self.block,
            "block_hash": "0x" + keccak(f"block:{self.block}".encode()).hex(),
            "tx_hash": "0x" + keccak(f"tx:{self.block}:{self.log_index}".encode()).hex(),
            "log_index": self.log_index,
        }

    def chain(self, type_name: str, payload: dict, *, retractable: bool = True) -> None:
        node = payload.get("node") or payload.get("oracle")
        before = (list(self.totals.get(node, [0, 0, 0])), list(self.locks.get(node, [])))
        message = self.send(self.signed(self.h.people.indexer, type_name, payload, self.at()))
        self.chain_since_final += 1
        if (
            retractable
            and self.rng.random() < 0.12
            and payload["log"]["block_number"] > (self.finalized)
        ):
            log = ChainLog.model_validate(payload["log"])
            retracted = chain_event_id(log)
            assert retracted == message.event_id
            body = {
                "log": payload["log"],
                "retracted_id": str(retracted),
                "retracted_type": type_name,
                "stream_key": node.lower(),
            }
            self.send(
                make_event(
                    self.h.people.indexer,
                    "ChainLogRetracted",
                    body,
                    occurred_at=self.at(),
                    event_id=retraction_id(retracted),
                )
            )
            self.h.retracted.append(str(retracted))
            if type_name == "FeesDeposited":
                self.deposited[node] -= int(payload["amount"])
                self.total_fees -= int(payload["amount"])
            self.totals[node], self.locks[node] = before
        if self.chain_since_final >= 20:
            self.finalize()

    def finalize(self) -> None:
        block = max(self.finalized, self.block - 2)
        if block <= self.finalized:
            return
        self.finalized = block
        self.chain_since_final = 0
        payload = {
            "chain_id": CHAIN_ID,
            "block_number": block,
            "block_hash": "0x" + keccak(f"block:{block}".encode()).hex(),
            "log_count": 0,
            "contracts": [STAKING, DISTRIBUTOR],
        }
        self.send(self.signed(self.h.people.indexer, "ChainFinalized", payload, self.at()))

    # chain events

    def stake(self, node: LocalAccount, role: int, amount: int, *, retractable: bool) -> None:
        totals = self.totals.setdefault(node.address, [0, 0, 1])
        totals[0] += amount
        self.chain(
            "Staked",
            {
                "log": self.log(),
                "node": node.address,
                "role": role,
                "amount": str(amount),
                "new_stake": str(totals[0]),
            },
            retractable=retractable,
        )

    def unstake(self, node: LocalAccount) -> None:
        totals = self.totals[node.address]
        amount = totals[0] // self.rng.randint(4, 10)
        lock_id = totals[2]
        totals[0] -= amount
        totals[1] += amount
        totals[2] += 1
        self.locks.setdefault(node.address, []).append((lock_id, amount))
        self.chain(
            "UnstakeRequested",
            {
                "log": self.log(),
                "node": node.address,
                "lock_id": str(lock_id),
                "amount": str(amount),
                "unlock_at": int(self.t) + 3600,
                "new_stake": str(totals[0]),
                "new_locked": str(totals[1]),
            },
        )

    def withdraw(self, node: LocalAccount) -> None:
        if not self.locks.get(node.address):
            return
        lock_id, amount = self.locks[node.address].pop(0)
        totals = self.totals[node.address]
        totals[1] -= amount
        self.chain(
            "Withdrawn",
            {
                "log": self.log(),
                "node": node.address,
                "lock_id": str(lock_id),
                "amount": str(amount),
                "new_locked": str(totals[1]),
            },
        )

    def slash(self, node: LocalAccount) -> None:
        totals = self.totals[node.address]
        if self.locks.get(node.address):
            lock_id, amount = self.locks[node.address][0]
            cut = amount // 2
            self.locks[node.address][0] = (lock_id, amount - cut)
            totals[1] -= cut
            self.chain(
                "LockSlashed",
                {
                    "log": self.log(),
                    "node": node.address,
                    "lock_id": str(lock_id),
                    "amount": str(cut),
                    "remaining": str(amount - cut),
                },
                retractable=False,
            )
        cut = totals[0] // 10
        totals[0] -= cut
        self.chain(
            "Slashed",
            {
                "log": self.log(),
                "node": node.address,
                "reason": "0x" + keccak(b"late").hex(),
                "amount": str(cut),
                "new_stake": str(totals[0]),
                "new_locked": str(totals[1]),
            },
            retractable=False,
        )

    def deposit(self, oracle: LocalAccount, amount: int) -> None:
        self.deposited[oracle.address] = self.deposited.get(oracle.address, 0) + amount
        self.total_fees += amount
        log = {**self.log(), "contract": DISTRIBUTOR}
        payload = {
            "log": log,
            "oracle": oracle.address,
            "amount": str(amount),
            "deposited": str(self.deposited[oracle.address]),
            "new_total_fees_deposited": str(self.total_fees),
        }
        self.chain("FeesDeposited", payload)

    # off-chain events

    def parameters(self, effective: int, *, genesis_offset: int = 0, **changes: Any) -> None:
        payload = {
            "effective_epoch": effective,
            "genesis": (self.start + timedelta(seconds=genesis_offset)).isoformat(),
            "epoch_length_s": EPOCH_S,
            "heartbeat_interval_s": HEARTBEAT_S,
            "grace_s": 30,
            "emission_per_epoch": str(10**21),
            "stake_cap": str(10**24),
            "min_uptime_ppm": 500_000,
            "protocol_share_bps": 1000,
            "data_share_bps": 2000,
            "treasury": "0x" + "7e" * 20,
            **changes,
        }
        self.send(self.signed(self.h.governor, "ParametersSet", payload, self.at()))

    def heartbeat(self, worker: LocalAccount, at: datetime | None = None) -> SignedMessage:
        seq = self.seq[worker.address] = self.seq.get(worker.address, 0) + 1
        caps = self.rng.choice([["data"], ["llm"], ["data", "llm"], []])
        payload = {"seq": seq, "capabilities": caps}
        return self.signed(worker, "Heartbeat", payload, at or self.at())

    def request(self) -> None:
        people = self.h.people
        oracle, worker = self.rng.choice(people.oracles), self.rng.choice(people.workers[:3])
        request_id = str(uuid.UUID(int=self.rng.getrandbits(128), version=4))
        fee = self.rng.randrange(10**15, 10**17)
        if self.rng.random() < 0.04:
            fee = 10**22  # beyond any balance: ingest holds it, it is never stored
        kind = self.rng.choice(["data", "llm"])
        spec = (
            {"model": "tiny-llama", "prompt": "summarise", "max_tokens": 64}
            if kind == "llm"
            else {
                "start_urls": ["https://data0.example.org/index.html"],
                "max_depth": 1,
                "fields": {"title": {"css": "title"}},
            }
        )
        body = {"request_id": request_id, "kind": kind, "spec": spec, "fee": str(fee)}
        submitted = self.signed(oracle, "RequestSubmitted", body, self.at())
        self.h.submitted += 1
        closed_at = self.at(self.t + self.rng.uniform(0.2, 30))
        closing: list[SignedMessage] = []
        if self.rng.random() < 0.1:
            failed = {"request_id": request_id, "reason": "timeout"}
            closing.append(self.signed(worker, "RequestFailed", failed, closed_at))
        else:
            digest = "0x" + keccak(request_id.encode()).hex()
            units = self.rng.randrange(1, 500)
            done = {"request_id": request_id, "result_digest": digest, "units": units}
            closing.append(self.signed(worker, "RequestCompleted", done, closed_at))
            uses = []
            for i in self.rng.sample(range(3), self.rng.randint(1, 3)):
                contributor = people.contributors[i].address
                source = f"https://data{i}.example.org/"
                roll = self.rng.random()
                if roll < 0.1:
                    source = f"https://unregistered{i}.example.org/"
                elif roll < 0.15:
                    contributor = people.contributors[(i + 1) % 3].address
                uses.append(
                    {
                        "source": source,
                        "contributor": contributor,
                        "units": self.rng.randint(1, 100),
                    }
                )
            closing.append(
                self.signed(worker, "DataUsed", {"request_id": request_id, "uses": uses}, closed_at)
            )
        if self.rng.random() < 0.08:  # sent before its submission: held, then released
            self.h.early_completions += 1
            for message in [closing[0], submitted, *closing[1:]]:
                self.send(message)
        else:
            for message in [submitted, *closing]:
                self.send(message)

    def close_epoch(self, epoch: int) -> None:
        body = {
            "epoch": epoch,
            "cutoff_position": len(self.h.messages),
            "finalized_block": self.finalized,
        }
        self.send(self.signed(self.h.settler, "EpochClosed", body, self.at()))
        self.closed = epoch
        end = (epoch + 1) * EPOCH_S
        for worker in self.h.people.workers[:3]:  # heartbeats of the closed epoch, late
            self.send(self.heartbeat(worker, self.at(end - self.rng.uniform(1, 50))))
            self.h.late_heartbeats += 1

    # the whole history

    def build(self, count: int) -> History:
        people, rng = self.h.people, self.rng
        self.t = 1
        self.parameters(0)
        for i, contributor in enumerate(people.contributors):
            body = {"source": f"https://data{i}.example.org/", "contributor": contributor.address}
            self.send(self.signed(contributor, "DataSourceRegistered", body, self.at()))
        late_worker = people.workers[3]
        for _ in range(3):  # heartbeats before the stake: held until it arrives
            self.send(self.heartbeat(late_worker))
        for worker in people.workers[:3]:
            self.stake(worker, WORKER, 10**21, retractable=False)
        for oracle in people.oracles:
            self.stake(oracle, ORACLE, 10**21, retractable=False)
        self.deposit(people.oracles[0], 10**20)
        self.deposit(people.oracles[1], 10**17)
        self.t += 5
        self.stake(late_worker, WORKER, 2 * 10**21, retractable=False)
        self.finalize()
        changes_done = set()
        while len(self.h.messages) < count:
            self.t += rng.uniform(1.5, 5.0)
            epoch = int(self.t // EPOCH_S)
            if epoch - 1 > self.closed and self.t - epoch * EPOCH_S > 60:
                self.close_epoch(epoch - 1)
            if epoch == 3 and "params" not in changes_done:
                changes_done.add("params")
                self.parameters(5, heartbeat_interval_s=45, protocol_share_bps=1500)
                self.parameters(0, protocol_share_bps=7000)  # ignored if stored after the close
                self.parameters(6, genesis_offset=3600, data_share_bps=500)  # genesis kept
                self.parameters(6, data_share_bps=700)  # the same epoch again: replaces
            for worker in people.workers:
                if self.next_beat.get(worker.address, 0) <= self.t:
                    self.next_beat[worker.address] = self.t + rng.uniform(20, 70)
                    if worker is not people.workers[2] or rng.random() < 0.5:
                        self.send(self.heartbeat(worker))
            roll = rng.random()
            if roll < 0.55:
                self.request()
            elif roll < 0.63:
                node = rng.choice([*people.workers, *people.oracles])
                kind = rng.random()
                if kind < 0.3:
                    self.stake(
                        node, WORKER if node in people.workers else ORACLE, 10**20, retractable=True
                    )
                elif kind < 0.55:
                    self.unstake(node)
                elif kind < 0.7:
                    self.withdraw(node)
                elif kind < 0.78:
                    self.slash(node)
                else:
                    oracle = rng.choice(people.oracles)
                    self.deposit(oracle, rng.randrange(10**17, 10**19))
            elif roll < 0.66 and len(self.h.messages) > 50:
                self.send(rng.choice(self.h.messages))  # a duplicate
            elif roll < 0.68:
                self.finalize()
        self.finalize()
        return self.h


@pytest.fixture(scope="module")
def history() -> History:
    start = (datetime.now(UTC) - timedelta(hours=3)).replace(second=0, microsecond=0)
    return _Builder(20261201, start).build(EVENTS)


def _for(harness: Harness, history: History) -> Harness:
    return harness.with_people(history.people).with_ingest(
        trusted_governors=[history.governor.address.lower()],
        trusted_settlers=[history.settler.address.lower()],
        max_clock_skew_s=4 * 3600,
        poll_timeout_s=0.05,
    )


# --- helpers --------------------------------------------------------------------------------


def snapshot(db: ReadDb) -> dict[str, list[Row]]:
    return {table.name: table_rows(db, table) for table in LEDGER_TABLES}


def assert_same(left: dict[str, list[Row]], right: dict[str, list[Row]]) -> None:
    for name in left:
        a, b = left[name], right[name]
        assert len(a) == len(b), f"{name}: {len(a)} rows against {len(b)}"
        for row_a, row_b in zip(a, b, strict=True):
            assert row_a == row_b, f"{name} differs"


def rebuilt(harness: Harness) -> dict[str, list[Row]]:
    log, store = open_event_log(harness.settings)
    db = open_read_db(harness.settings)
    try:
        position = rebuild(log, db, batch_size=997)
        assert position == log.head()
        return snapshot(db)
    finally:
        db.close()
        store.close()


def catch_up(runner: ProjectionRunner) -> None:
    while True:
        conflicts = runner.stats.conflicts
        if runner.step() == 0 and runner.stats.conflicts == conflicts:
            return


def masa(harness: Harness, *args: str) -> Any:
    """``masa ARGS --json`` in this process (the same commands, without a second's start)."""
    from typer.testing import CliRunner

    from masa.app.cli.commands import app

    done = CliRunner().invoke(app, [*args, "--json"], env=harness.env(), catch_exceptions=False)
    assert done.exit_code == 0, done.output[-3000:]
    return json.loads(done.stdout)


def ingested(harness: Harness, history: History) -> Harness:
    harness = _for(harness, history)
    harness.send(history.messages)
    harness.ingest(idle_s=1.0)
    return harness


def assert_facts(tables: dict[str, list[Row]], history: History) -> None:
    """What the history must have produced, so that equality cannot hold on empty tables."""
    uptime = tables["node_uptime"]
    assert any(r["uptime_ppm"] > 0 and r["covered_s"] > 0 for r in uptime)
    # a late heartbeat is one stored after its epoch's EpochClosed; the settler's and the
    # workers' streams are on different partitions, so some sent late are stored in time
    assert 0 < sum(r["late_heartbeats"] for r in uptime) <= history.late_heartbeats
    requests = {r["status"] for r in tables["requests"]}
    assert {"completed", "failed"} <= requests
    # ingest stores a request only once its fee is reserved: the read models reserve it too,
    # so none is ever unpaid (and those beyond the balance were held, never stored)
    assert "unpaid" not in requests
    assert all(r["reserved"] for r in tables["requests"] if r["status"] != "failed")
    assert 0 < len(tables["requests"]) < history.submitted
    uses = tables["data_uses"]
    assert any(r["credited"] for r in uses) and any(not r["credited"] for r in uses)
    changes = tables["stake_changes"]
    retracted = {r["event_id"] for r in changes if r["retracted"]}
    assert retracted and retracted <= set(history.retracted)
    assert {r["kind"] for r in changes} == {
        "Staked",
        "UnstakeRequested",
        "Withdrawn",
        "LockSlashed",
        "Slashed",
    }
    assert any(r["retracted"] for r in tables["fee_deposits"])
    assert any(r["closed"] for r in tables["epochs"])
    parameters = {r["effective_epoch"]: r for r in tables["parameters"]}
    # 0, 5 and 6 (the last set for 6 replaced the first); the second set for epoch 0 came
    # after its EpochClosed in send order, but on another partition, so it may be stored before
    assert sorted(parameters) == [0, 5, 6], parameters
    assert {r["data_share_bps"] for r in tables["parameters"]} == {2000, 700}
    assert len({r["genesis"] for r in tables["parameters"]}) == 1
    assert any(r["protocol_part"] for r in tables["epoch_fees"])
    assert all(r["unpaid_requests"] == 0 for r in tables["oracle_balances"])
    assert all(r["available"] >= 0 for r in tables["oracle_balances"])
    assert any(r["slashed"] > 0 for r in tables["nodes"])
    assert len(tables["nodes"]) == 6
    assert history.early_completions > 0


# --- replay equality ------------------------------------------------------------------------


@pytest.mark.parametrize("harness", BACKENDS, indirect=True, ids=BACKEND_IDS)
def test_live_projection_equals_rebuild(harness: Harness, history: History) -> None:
    harness = _for(harness, history)
    rng = random.Random(11)
    db = open_read_db(harness.settings)
    log, store = open_event_log(harness.settings)
    try:
        migrate(db.url)
        runner = ProjectionRunner(log, db)
        messages, sent, reloaded = history.messages, 0, False
        while sent < len(messages):
            chunk = rng.randint(200, 900)
            harness.send(messages[sent : sent + chunk])
            sent += chunk
            harness.ingest(idle_s=0.3)
            for _ in range(rng.randint(1, 6)):
                runner.config = RunnerConfig(batch_size=rng.randint(1, 400))
                runner.step()
            if not reloaded and sent > len(messages) // 2:
                runner = ProjectionRunner(log, db, RunnerConfig(batch_size=333))
                reloaded = True
        harness.ingest(idle_s=1.5)  # the holds still due
        runner.config = RunnerConfig(batch_size=250)
        catch_up(runner)
        assert runner.position == log.head() > 0
        live = snapshot(db)
    finally:
        db.close()
        store.close()
    assert_facts(live, history)
    assert_same(live, rebuilt(harness))


# --- SIGKILL --------------------------------------------------------------------------------


def _position(db: ReadDb) -> int:
    rows = db.query("SELECT position FROM projection_positions WHERE name = 'ledger'")
    return int(rows[0][0]) if rows else 0


def wait_for(condition: Any, what: str, timeout_s: float = 120) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, what
        time.sleep(0.02)


@pytest.mark.parametrize(
    ("harness", "kills"),
    [(BACKENDS[0], 10), (BACKENDS[1], 1)],
    indirect=["harness"],
    ids=BACKEND_IDS,
)
def test_sigkilled_runner_ends_equal_to_rebuild(
    harness: Harness, history: History, kills: int
) -> None:
    """``masa project run`` SIGKILLed at random moments of its work, restarted each time.

    A process takes seconds to start (imports), so the next one starts while the previous
    one works (two runners at once is allowed), which keeps the test short. On PostgreSQL a
    process is known to be at work once its connection (``PGAPPNAME``) shows."""
    harness = ingested(harness, history)
    db = open_read_db(harness.settings)
    head = EventLog(store := harness.store()).head()
    store.close()
    env = {
        **os.environ,
        **harness.env(),
        "MASA_PROJECTIONS__BATCH_SIZE": "3",
        "MASA_PROJECTIONS__POLL_INTERVAL_S": "0.1",
    }
    rng = random.Random(5)
    children: list[tuple[subprocess.Popen[bytes], str]] = []

    def spawn(k: int) -> None:
        name = f"masa-kill-{os.getpid()}-{k}"
        child = subprocess.Popen(
            [MASA, "project", "run"],
            env={**env, "PGAPPNAME": name},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        children.append((child, name))

    def connected(name: str) -> bool:
        if db.dialect != "postgresql":
            return True
        sql = "SELECT count(*) FROM pg_stat_activity WHERE application_name = ?"
        return db.query(sql, (name,))[0][0] > 0

    mid_stream, spawned = 0, 0
    try:
        migrate(db.url)
        for _ in range(min(2, kills)):
            spawn(spawned)
            spawned += 1
        for _ in range(kills):
            child, name = children.pop(0)
            wait_for(lambda: connected(name) or child.poll() is not None, "no connection")  # noqa: B023
            assert child.poll() is None, f"masa project run exited with {child.returncode}"
            before = _position(db)
            wait_for(lambda: _position(db) > before, "the runners made no progress")  # noqa: B023
            time.sleep(rng.uniform(0.0, 0.3))
            child.send_signal(signal.SIGKILL)
            child.wait()
            mid_stream += _position(db) < head
            if spawned < kills:
                spawn(spawned)
                spawned += 1
        assert mid_stream == kills, "the runners caught up before the last kill: slow them down"
        final = masa(harness, "project", "run", "--until-idle", "1")
        assert final["position"] == head
        live = snapshot(db)
    finally:
        for child, _ in children:
            child.kill()
            child.wait()
        db.close()
    assert_facts(live, history)
    assert_same(live, rebuilt(harness))


# --- three runners at once ------------------------------------------------------------------


@pytest.mark.parametrize("harness", BACKENDS, indirect=True, ids=BACKEND_IDS)
def test_three_runners_at_once_equal_one(harness: Harness, history: History) -> None:
    harness = ingested(harness, history)
    db = open_read_db(harness.settings)
    migrate(db.url)
    db.close()
    errors: list[BaseException] = []
    stats = []

    def work(seed: int) -> None:
        log, store = open_event_log(harness.settings)
        db = open_read_db(harness.settings)
        try:
            runner = ProjectionRunner(
                log, db, RunnerConfig(batch_size=random.Random(seed).randint(20, 200))
            )
            catch_up(runner)
            stats.append(runner.stats)
        except BaseException as exc:  # reported below
            errors.append(exc)
        finally:
            db.close()
            store.close()

    threads = [threading.Thread(target=work, args=(seed,)) for seed in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=180)
    assert not errors, errors
    assert sum(s.applied for s in stats) >= len({m.event_id for m in history.messages}) - 50
    db = open_read_db(harness.settings)
    try:
        together = snapshot(db)
        head = EventLog(store := harness.store()).head()
        store.close()
        assert _position(db) == head
        applied = db.query("SELECT events_applied FROM projection_positions")[0][0]
    finally:
        db.close()
    assert applied == sum(s.applied for s in stats)  # no event applied twice
    assert_facts(together, history)
    assert_same(together, rebuilt(harness))


# --- migrations -----------------------------------------------------------------------------


def _alembic(url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(migrations.SCRIPT_LOCATION))
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


def schema_of(url: str) -> dict[str, Any]:
    engine = create_engine(url)
    try:
        inspector = inspect(engine)
        names = [
            n
            for n in inspector.get_table_names()
            if n in {t.name for t in READ_MODEL_TABLES} or n == "read_model_readers"
        ]
        return {
            name: {
                "columns": [
                    (c["name"], str(c["type"]), c["nullable"]) for c in inspector.get_columns(name)
                ],
                "key": inspector.get_pk_constraint(name)["constrained_columns"],
                "indexes": sorted(
                    (i["name"], tuple(i["column_names"])) for i in inspector.get_indexes(name)
                ),
            }
            for name in sorted(names)
        }
    finally:
        engine.dispose()


@pytest.mark.parametrize("harness", BACKENDS, indirect=True, ids=BACKEND_IDS)
def test_migrations_from_empty_every_revision_and_back(harness: Harness) -> None:
    db = open_read_db(harness.settings)
    url = db.url
    db.close()
    head = head_revision()
    assert masa(harness, "db", "status")["revision"] is None
    assert masa(harness, "db", "migrate") == {"from": None, "to": head}
    assert masa(harness, "db", "status") == {"revision": head, "head": head, "database": db.dialect}
    assert masa(harness, "db", "migrate") == {"from": head, "to": head}  # again: nothing to do
    reference = schema_of(url)
    assert set(reference) == {t.name for t in READ_MODEL_TABLES} | {"read_model_readers"}

    revisions = [r.revision for r in ScriptDirectory.from_config(_alembic(url)).walk_revisions()]
    assert revisions[0] == head
    for revision in reversed(revisions):  # from each revision (head included) up to head
        command.downgrade(_alembic(url), "base")
        assert schema_of(url) == {}
        command.upgrade(_alembic(url), revision)
        assert migrate(url) == head
        assert schema_of(url) == reference


_TYPES = {
    "postgresql": {
        "text": {"TEXT"},
        "int": {"BIGINT", "INTEGER"},
        "wei": {"NUMERIC(78, 0)"},
        "ts": {"TIMESTAMP"},
        "bool": {"BOOLEAN"},
        "float": {"DOUBLE PRECISION"},
    },
    "sqlite": {
        "text": {"TEXT"},
        "int": {"BIGINT", "INTEGER"},
        "wei": {"TEXT"},
        "ts": {"TEXT"},
        "bool": {"BOOLEAN"},
        "float": {"REAL"},
    },
}


@pytest.mark.parametrize("harness", BACKENDS, indirect=True, ids=BACKEND_IDS)
def test_table_specs_equal_the_migrated_schema(harness: Harness) -> None:
    db = open_read_db(harness.settings)
    migrate(db.url)
    schema, dialect = schema_of(db.url), db.dialect
    db.close()

    def spec(table: Table) -> dict[str, Any]:
        return {"columns": list(table.columns), "key": list(table.key)}

    for table in READ_MODEL_TABLES:
        migrated = schema[table.name]
        assert spec(table) == {
            "columns": [c[0] for c in migrated["columns"]],
            "key": migrated["key"],
        }, table.name
        for name, type_name, _ in migrated["columns"]:
            kind = table.columns[name]
            assert type_name in _TYPES[dialect][kind], f"{table.name}.{name}: {type_name}"


# --- the reader role ------------------------------------------------------------------------


@pytest.mark.parametrize("harness", [BACKENDS[0]], indirect=True, ids=["postgres"])
def test_reader_role_reads_read_models_only(harness: Harness, history: History) -> None:
    harness = _for(harness, history)
    harness.send(history.messages[:800])
    harness.ingest(idle_s=0.5)
    s = harness.settings.store
    admin = psycopg.connect(
        host=s.postgres_host,
        port=s.postgres_port,
        user=s.postgres_user,
        password=s.postgres_password,
        dbname=s.postgres_dbname,
        autocommit=True,
    )
    role = f"dashboard_{os.getpid()}"
    admin.execute(f"CREATE ROLE {role} LOGIN PASSWORD 'dash'")
    try:
        masa(harness, "db", "migrate")
        assert masa(harness, "project", "run", "--until-idle", "0.5")["applied"] > 0
        granted = masa(harness, "db", "grant-reader", role)
        assert set(granted["tables"]) == {t.name for t in READ_MODEL_TABLES}

        def reader() -> psycopg.Connection:
            return psycopg.connect(
                host=s.postgres_host,
                port=s.postgres_port,
                user=role,
                password="dash",
                dbname=s.postgres_dbname,
                autocommit=True,
            )

        def can_read_everything() -> None:
            with reader() as conn:
                for table in READ_MODEL_TABLES:
                    conn.execute(f"SELECT * FROM {table.name} LIMIT 1").fetchall()
                assert conn.execute("SELECT count(*) FROM nodes").fetchone()[0] > 0

        can_read_everything()
        refused = [
            "INSERT INTO nodes (address, status, active_stake, locked_stake, pending_status,"
            " pending_active_stake, pending_locked_stake, slashed, heartbeats, capabilities)"
            " VALUES ('x', 'staked', 0, 0, 'staked', 0, 0, 0, 0, '')",
            "UPDATE requests SET status = 'completed'",
            "DELETE FROM oracle_balances",
            "UPDATE projection_positions SET position = 0",
            "SELECT * FROM stored_events LIMIT 1",
            "SELECT * FROM ingest_streams LIMIT 1",
            "SELECT * FROM ingest_event_ids LIMIT 1",
            "SELECT * FROM read_model_readers",
        ]
        with reader() as conn:
            for statement in refused:
                with pytest.raises(psycopg.errors.InsufficientPrivilege):
                    conn.execute(statement)
        tables = {
            r[0]
            for r in admin.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
        }
        assert {"stored_events", "ingest_streams"} <= tables  # the names refused above exist
        assert masa(harness, "project", "rebuild")["position"] > 0
        can_read_everything()
        with reader() as conn, pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("DELETE FROM nodes")
    finally:
        admin.execute(f"DROP OWNED BY {role}")
        admin.execute(f"DROP ROLE {role}")
        admin.close()
