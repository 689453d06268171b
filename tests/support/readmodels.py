"""Read models filled the real way for the API, dashboard and Grafana tests: signed synthetic
events (masa/app/synthetic.py) through the bus and ingest into the store, then the ledger
projection over the store's log, exactly as ``masa project run`` does. Nothing is inserted by
hand.

The network: the governor's ``ParametersSet`` (2-minute epochs from about nine minutes ago),
4 workers and 2 oracles staked on chain with fees deposited and the blocks final, 3
contributors' sources, then in each of epochs 0-3 a few requests (10 % failing) with
realistic latencies and heartbeats that cover each worker a different share of the epoch.
"""

from __future__ import annotations

import os
import random
import subprocess
import sys
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import psycopg
from eth_account.signers.local import LocalAccount
from eth_utils import keccak

from indexer.events import SignedMessage, make_event
from indexer.events.fields import format_timestamp
from indexer.store.log import EventLog
from masa.app.settings import Settings
from masa.app.synthetic import WORKER_ROLE, Participants, Scenario
from masa.app.wiring import open_read_db, open_store, runner_config
from projections.runner import ProjectionRunner
from projections.schema import migrate

if TYPE_CHECKING:
    from tests.integration.conftest import Harness

EPOCH_S = 120
HEARTBEAT_S = 10
EPOCHS = 4
REQUESTS_PER_EPOCH = 5
FEES = 10**21


class TimedScenario(Scenario):
    """The synthetic flows with time between events (50 ms to 4 s): requests get latencies a
    dashboard can show, where the plain scenario spaces events by a millisecond."""

    def _at(self) -> datetime:
        self._clock += self._rng.randrange(50, 4000)
        return self.start + timedelta(milliseconds=self._clock)


@dataclass
class Network:
    harness: Harness
    genesis: datetime
    scenario: TimedScenario
    seq: dict[str, int]

    @property
    def nodes(self) -> int:
        return len(self.harness.people.workers) + len(self.harness.people.oracles)


def trusting(harness: Harness) -> Harness:
    """The harness with its governor trusted (for ``ParametersSet``)."""
    assert harness.people.governor is not None
    return harness.with_ingest(
        trusted_governors=[harness.people.governor.address.lower()], hold_timeout_s=10
    )


def parameters(governor: LocalAccount, genesis: datetime, treasury: str) -> SignedMessage:
    payload = {
        "effective_epoch": 0, "genesis": format_timestamp(genesis), "epoch_length_s": EPOCH_S,
        "heartbeat_interval_s": HEARTBEAT_S, "grace_s": 5, "emission_per_epoch": str(10**21),
        "stake_cap": str(10**22), "min_uptime_ppm": 100_000, "protocol_share_bps": 500,
        "data_share_bps": 2_000, "treasury": treasury.lower(),
    }  # fmt: skip
    return make_event(governor, "ParametersSet", payload, occurred_at=genesis)


def deposit(scenario: Scenario, oracle: LocalAccount, amount: int) -> SignedMessage:
    payload = {"log": scenario.chain_log(), "oracle": oracle.address, "amount": str(amount),
               "deposited": str(amount), "new_total_fees_deposited": str(amount)}  # fmt: skip
    return make_event(scenario.people.indexer, "FeesDeposited", payload, occurred_at=scenario._at())


def finalized(scenario: Scenario, logs: int) -> SignedMessage:
    payload = {"chain_id": scenario.chain_id, "block_number": 10_000,
               "block_hash": "0x" + keccak(b"final").hex(), "log_count": logs,
               "contracts": [scenario.contract]}  # fmt: skip
    return make_event(scenario.people.indexer, "ChainFinalized", payload)


def stake(scenario: Scenario, node: LocalAccount) -> SignedMessage:
    return scenario.stake(node, WORKER_ROLE)


def heartbeats(
    network: Network, worker: LocalAccount, start: datetime, count: int
) -> list[SignedMessage]:
    out = []
    for j in range(count):
        network.seq[worker.address] = seq = network.seq.get(worker.address, 0) + 1
        payload = {"seq": seq, "capabilities": ["data", "llm"]}
        at = start + timedelta(seconds=j * HEARTBEAT_S)
        out.append(make_event(worker, "Heartbeat", payload, occurred_at=at, event_id=uuid.uuid4()))
    return out


def fill(harness: Harness, seed: int = 7) -> Network:
    """Send, ingest and project the network described above; the read models' database is
    migrated first. Returns what later steps need to add events."""
    people = harness.people
    assert people.governor is not None
    genesis = datetime.now(UTC).replace(second=0, microsecond=0) - timedelta(
        seconds=EPOCH_S * EPOCHS + 60
    )
    setup = TimedScenario(people, seed=seed, start=genesis + timedelta(seconds=1))
    network = Network(harness, genesis, setup, {})
    first: list[Any] = [parameters(people.governor, genesis, people.contributors[-1].address)]
    first += setup.stakes()
    first += [deposit(setup, o, FEES) for o in people.oracles]
    first.append(finalized(setup, len(first) - 1))
    first += setup.sources()
    harness.send(first)
    harness.ingest(idle_s=1.0)
    rng = random.Random(seed)
    traffic: list[Any] = []
    for epoch in range(EPOCHS):
        start = genesis + timedelta(seconds=epoch * EPOCH_S + 3)
        flows = TimedScenario(people, seed=seed * 100 + epoch, start=start)
        for i in range(REQUESTS_PER_EPOCH + epoch):
            traffic += flows.request(fail=i % 10 == 9 or rng.random() < 0.1)
        for w, worker in enumerate(people.workers):
            count = max(1, (EPOCH_S // HEARTBEAT_S) * (len(people.workers) - w) // 4 - epoch)
            traffic += heartbeats(network, worker, start, count)
    harness.send(traffic)
    harness.ingest(idle_s=1.0)
    project(harness)
    return network


def project(harness: Harness) -> int:
    """Migrate the read models and run the projection up to the store's head."""
    db = open_read_db(harness.settings)
    store = open_store(harness.settings)
    try:
        migrate(db.url)
        runner = ProjectionRunner(EventLog(store), db, runner_config(harness.settings))
        applied = 0
        while n := runner.step():
            applied += n
        return applied
    finally:
        store.close()
        db.close()


def add_worker(network: Network, label: str) -> LocalAccount:
    """A new worker staked on chain (final), ingested and projected: one more node."""
    from eth_account import Account

    harness = network.harness
    account = Account.from_key(keccak(f"masa-test-late-worker:{label}".encode()))
    scenario = network.scenario
    harness.send([stake(scenario, account), finalized_again(scenario)])
    harness.ingest(idle_s=1.0)
    project(harness)
    return account


def finalized_again(scenario: Scenario) -> SignedMessage:
    block = 10_000 + scenario._log_index
    payload = {"chain_id": scenario.chain_id, "block_number": block,
               "block_hash": "0x" + keccak(f"final:{block}".encode()).hex(),
               "log_count": scenario._log_index, "contracts": [scenario.contract]}  # fmt: skip
    return make_event(scenario.people.indexer, "ChainFinalized", payload)


READER_PASSWORD = "reader-secret"


@contextmanager
def filled_postgres(postgres_server: Any, home: Path, seed: int) -> Iterator[Network]:
    """A fresh database on the session's PostgreSQL, the embedded bus under ``home``, the
    network sent, ingested and projected, and a SELECT-only reader role made with
    ``masa db grant-reader``: the harness's settings carry it as ``api.reader_user``."""
    tag = uuid.uuid4().hex[:8]
    name, role = f"readmodels_{tag}", f"reader_{tag}"
    db = postgres_server.create_database(name)
    people = Participants.from_seed(seed)
    config: dict[str, Any] = {
        "home": home,
        "ingest": {"trusted_indexers": [people.indexer.address.lower()], "poll_timeout_s": 0.2},
        "bus": {"backend": "embedded", "partitions": 3},
        "store": {"backend": "postgres", "postgres_host": db.host, "postgres_port": db.port,
                  "postgres_user": db.user, "postgres_password": db.password,
                  "postgres_dbname": db.dbname},
        "api": {"reader_user": role, "reader_password": READER_PASSWORD},
    }  # fmt: skip
    from tests.integration.conftest import Harness

    harness = trusting(Harness(Settings(**config), people))
    try:
        network = fill(harness, seed)
        with psycopg.connect(db.dsn, autocommit=True) as conn:
            conn.execute(f"CREATE ROLE {role} LOGIN PASSWORD '{READER_PASSWORD}'")
        masa(harness, "db", "grant-reader", role)
        yield network
    finally:
        postgres_server.drop_database(name)
        with psycopg.connect(postgres_server.dsn, autocommit=True) as conn:
            conn.execute(f"DROP ROLE IF EXISTS {role}")


def env(harness: Harness) -> dict[str, str]:
    """The harness's settings as MASA_ variables, the API's reader role included."""
    api = harness.settings.api
    return {**os.environ, **harness.env(), "MASA_API__READER_USER": api.reader_user,
            "MASA_API__READER_PASSWORD": api.reader_password}  # fmt: skip


def masa(harness: Harness, *args: str) -> str:
    done = subprocess.run(
        [str(Path(sys.executable).with_name("masa")), *args],
        env=env(harness), capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    return done.stdout
