"""Workers serve only funded requests: ingest reserves each request's fee against its oracle's
final deposits, in the oracle's stream, with the store's ``(stream, version)`` key as the guard
when two ingestors reserve at once (DESIGN §7, docs/decisions.md).

- two ingestors, each owning some partitions of one oracle's requests, reserve at the same
  moment (their first reserving batches meet at a barrier before writing): one write conflicts
  and is redone, the oracle is never overdrawn, on Kafka + PostgreSQL and embedded + SQLite;
- an unfunded oracle's request is held, then dead-lettered ``insufficient_balance`` with what to
  do; it never reaches the requests topic and a running worker serves only the funded one; once
  a deposit is final, ``masa dlq replay`` brings it in;
- a failure releases its reservation (a held request then fits), and the read model
  ``oracle_balances`` shows deposited, reserved, spent and available as ingest decided.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest
from eth_account.signers.local import LocalAccount

from indexer.bus.base import partition_for
from indexer.events import SignedMessage, stream_id
from indexer.ingest.dlq import replay
from indexer.ingest.port import IngestWrite
from indexer.ingest.runner import Ingestor
from masa.app.keys import save_keystore
from masa.app.synthetic import ORACLE_ROLE, WORKER_ROLE, Scenario
from masa.app.wiring import ingest_config, open_read_db, worker_config
from projections import queries
from tests.integration.conftest import Harness
from tests.integration.test_cli_breaking import Result
from tests.integration.test_cli_breaking import masa as run_masa
from tests.support.readmodels import project
from workers.node import Worker

FEE = 10**15
BOTH = pytest.mark.parametrize(
    "harness",
    [("kafka", "postgres"), ("embedded", "sqlite")],
    indirect=True,
    ids=["kafka-postgres", "embedded-sqlite"],
)
EMBEDDED = pytest.mark.parametrize(
    "harness", [("embedded", "sqlite")], indirect=True, ids=["embedded-sqlite"]
)


def scenario(harness: Harness) -> Scenario:
    return Scenario(harness.people, seed=5, start=datetime.now(UTC) - timedelta(minutes=1))


def submit(s: Scenario, oracle: LocalAccount, fee: int = FEE) -> SignedMessage:
    body = {"request_id": str(uuid.uuid4()), "kind": "llm", "spec": s.llm_spec(), "fee": str(fee)}
    return s._event(oracle, "RequestSubmitted", body)


def spread(s: Scenario, oracle: LocalAccount, partitions: int, each: int) -> list[SignedMessage]:
    """Requests of ``oracle``, at least ``each`` in every partition."""
    by_partition: dict[int, list[SignedMessage]] = {p: [] for p in range(partitions)}
    while any(len(ms) < each for ms in by_partition.values()):
        message = submit(s, oracle)
        by_partition[partition_for(message.key.encode(), partitions)].append(message)
    return [m for ms in by_partition.values() for m in ms[:each]]


def wait_for(condition: Callable[[], bool], timeout_s: float = 90) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.1)


def stored_requests(harness: Harness) -> dict[str, int]:
    """Stored RequestSubmitted: request id -> fee."""
    return {
        str(e.payload.request_id): e.payload.fee  # type: ignore[attr-defined]
        for e in harness.stored()
        if e.type == "RequestSubmitted"
    }


def requests_topic(harness: Harness) -> set[str]:
    topic = harness.settings.bus.requests_topic
    return {orjson.loads(r.value)["payload"]["request_id"] for r in harness.bus.read_all(topic)}


class RacingStore:
    """The store, except that the first batch reserving a fee waits at ``barrier`` for the
    other ingestor's: both were built from the same oracle version, both then write."""

    def __init__(self, store: Any, barrier: threading.Barrier) -> None:
        self._store, self._barrier, self._raced = store, barrier, False

    def write(self, batch: IngestWrite) -> None:
        if not self._raced and any(e.topic == "FeeReserved.v1" for e in batch.events):
            self._raced = True
            self._barrier.wait()
        self._store.write(batch)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)


@BOTH
def test_two_ingestors_reserving_for_one_oracle_at_once_never_overdraw(harness: Harness) -> None:
    s = scenario(harness)
    oracle = harness.people.oracles[0]
    deposit = 10 * FEE
    harness.send([s.stake(oracle, ORACLE_ROLE), *s.fund(oracle, deposit)])
    harness.ingest(idle_s=0.5)
    partitions = harness.settings.bus.partitions
    asked = spread(s, oracle, partitions, each=6)  # 18 requests for 10 fees

    barrier = threading.Barrier(2, timeout=60)
    stores = [harness.store() for _ in range(2)]
    ingestors = [
        Ingestor(harness.bus, RacingStore(store, barrier), ingest_config(harness.settings))  # type: ignore[arg-type]
        for store in stores
    ]
    stop = threading.Event()
    threads = [threading.Thread(target=i.run, args=(stop.is_set,)) for i in ingestors]
    try:
        # one member at a time: two fresh Kafka consumers joining at once may get an empty
        # assignment (kafka-python's leader assigns before it has the topic's metadata)
        threads[0].start()
        wait_for(lambda: len(ingestors[0]._owned) == partitions)
        threads[1].start()
        wait_for(lambda: all(owned(ingestors)) and sum(map(len, owned(ingestors))) == partitions)
        harness.send(asked)
        wait_for(
            lambda: (
                len(stored_requests(harness)) == 10
                and sum(i.stats["held"] for i in ingestors) >= len(asked) - 10
            )
        )
    finally:
        stop.set()
        for t in threads:
            if t.is_alive():
                t.join(timeout=60)
        for store in stores:
            store.close()

    accepted = stored_requests(harness)
    assert sum(accepted.values()) == deposit  # every fee that fits, and not one more
    reservations = [r for r in harness.records() if r.type == "FeeReserved"]
    assert sorted(str(r.payload.request_id) for r in reservations) == sorted(accepted)  # type: ignore[attr-defined]
    # Staked, FeesDeposited, then one FeeReserved per accepted request: no version twice
    assert harness.streams()[stream_id(oracle.address.lower())] == list(range(1, 2 + 10 + 1))
    assert requests_topic(harness) == set(accepted)
    assert sum(i.stats["conflicts"] for i in ingestors) >= 1, "the race was not run"
    assert harness.dead_letters() == []


def owned(ingestors: list[Ingestor]) -> list[set[Any]]:
    return [set(i._owned) for i in ingestors]


@EMBEDDED
def test_an_unfunded_request_is_dead_lettered_never_served_and_replayed_once_funded(
    harness: Harness,
) -> None:
    from tests.integration.test_results import EchoEngine
    from tests.integration.test_worker import finished, staked, with_worker

    harness = with_worker(harness)
    s = scenario(harness)
    rich, poor = harness.people.oracles
    worker = harness.people.workers[0]
    harness.send(
        [s.stake(worker, WORKER_ROLE), s.stake(rich, ORACLE_ROLE), s.stake(poor, ORACLE_ROLE)]
    )
    harness.send(s.fund(rich, FEE))
    funded, unfunded = submit(s, rich), submit(s, poor)
    harness.send([funded, unfunded])
    harness.with_ingest(hold_timeout_s=1.0).ingest(idle_s=2.5)

    [letter] = harness.dead_letters()
    assert letter.reason == "insufficient_balance"
    assert letter.detail.startswith(f"held too long: fee {FEE} wei is more than the 0 wei")
    assert "deposit at least" in letter.detail and "masa oracle deposit" in letter.detail
    assert requests_topic(harness) == {_rid(funded)}
    served = Worker(harness.bus, worker_config(harness.settings), worker, staked, EchoEngine())
    deadline = time.monotonic() + 60
    served.run(lambda: finished(served) >= 1 or time.monotonic() > deadline)
    harness.ingest(idle_s=0.5)
    served_ids = {
        str(e.payload.request_id) for e in harness.stored() if e.type == "RequestCompleted"
    }  # type: ignore[attr-defined]
    assert served_ids == {_rid(funded)}
    assert served.stats["completed"] == 1

    harness.send(s.fund(poor, FEE))
    harness.ingest(idle_s=0.5)
    store = harness.store()
    try:
        assert replay(harness.bus, store, [letter]) == 1
    finally:
        store.close()
    harness.ingest(idle_s=0.5)
    assert set(stored_requests(harness)) == {_rid(funded), _rid(unfunded)}
    assert requests_topic(harness) == {_rid(funded), _rid(unfunded)}


def _rid(message: SignedMessage) -> str:
    return str(orjson.loads(message.value)["payload"]["request_id"])


@EMBEDDED
def test_a_failure_releases_its_fee_and_the_read_model_shows_the_balance(
    harness: Harness,
) -> None:
    s = scenario(harness)
    oracle, worker = harness.people.oracles[0], harness.people.workers[0]
    harness.send([s.stake(worker, WORKER_ROLE), s.stake(oracle, ORACLE_ROLE)])
    harness.send(s.fund(oracle, 2 * FEE))
    asked = {_rid(m): m for m in (submit(s, oracle) for _ in range(3))}
    harness.send(asked.values())
    harness.ingest(idle_s=0.5)
    accepted = set(stored_requests(harness))
    assert len(accepted) == 2  # which two: the order ingest read their partitions in
    first, second = sorted(accepted)
    [third] = set(asked) - accepted

    failed = s._event(worker, "RequestFailed", {"request_id": first, "reason": "timeout"})
    done = {"request_id": second, "result_digest": "0x" + "ab" * 32, "units": 3}
    harness.send([failed, s._event(worker, "RequestCompleted", done)])
    harness.ingest(idle_s=0.5)  # the failure's release lets the third in
    assert set(stored_requests(harness)) == set(asked)
    kinds = Counter(r.type for r in harness.records())
    assert kinds == {"FeeReserved": 3, "FeeReleased": 1}
    assert harness.dead_letters() == []

    project(harness)
    db = open_read_db(harness.settings)
    try:
        balance = queries.oracle_balance(db, oracle.address.lower())
        statuses = {r["request_id"]: r["status"] for r in queries.requests(db)}
    finally:
        db.close()
    assert balance is not None
    assert {k: balance[k] for k in ("deposited", "reserved", "spent", "available")} == {
        "deposited": 2 * FEE, "reserved": FEE, "spent": FEE, "available": 0,
    }  # fmt: skip
    assert balance["unpaid_requests"] == 0
    assert statuses == {first: "failed", second: "completed", third: "submitted"}


@EMBEDDED
def test_oracle_balance_and_request_submit_refuse_a_fee_beyond_it(
    harness: Harness, tmp_path: Path
) -> None:
    """``masa oracle balance`` reads the read models; ``masa request submit`` refuses, in one
    line, a fee beyond the available balance, unless ``--force``."""
    s = scenario(harness)
    oracle = harness.people.oracles[0]
    harness.send([s.stake(oracle, ORACLE_ROLE), *s.fund(oracle, 3 * FEE)])
    for _ in range(4):
        s.chain_log()  # a later block, not final yet
    harness.send([s.deposit(oracle, FEE)])
    harness.send([submit(s, oracle)])
    harness.ingest(idle_s=0.5)
    keystore = tmp_path / "oracle.json"
    save_keystore(oracle, keystore, "pw")
    env: dict[str, str | None] = {**harness.env(), "MASA_KEY_PASSWORD": "pw"}

    def masa(*args: str) -> Result:  # the command line's main(), in this process
        return run_masa(list(args), tmp_path, env)

    before = masa("oracle", "balance", "--key-file", str(keystore), "--json")
    assert before.code == 1  # no read models yet: one line saying what to run
    assert before.stderr.strip().endswith("run 'masa db migrate' and 'masa project run'")
    project(harness)
    shown = json.loads(masa("oracle", "balance", oracle.address, "--json").stdout)
    assert shown == {
        "oracle": oracle.address.lower(), "deposited": str(3 * FEE),
        "pending_deposits": str(FEE), "reserved": str(FEE), "spent": "0",
        "debited": str(FEE), "available": str(2 * FEE), "unpaid_requests": 0,
    }  # fmt: skip

    spec = tmp_path / "spec.json"
    spec.write_text(json.dumps(s.llm_spec()))
    submit_args = ["request", "submit", "--kind", "llm", "--spec", str(spec)]
    key = ["--key-file", str(keystore)]
    refused = masa(*submit_args, "--fee", str(2 * FEE + 1), *key)
    assert refused.code == 1
    [line] = refused.stderr.strip().splitlines()
    assert line.startswith(
        f"masa: error: insufficient_balance: fee {2 * FEE + 1} wei is more than the {2 * FEE}"
    )
    assert "deposit at least 1 wei more" in line and "--force" in line
    fits = masa(*submit_args, "--fee", str(2 * FEE), *key, "--json")
    forced = masa(*submit_args, "--fee", str(2 * FEE + 1), *key, "--force", "--json")
    assert (fits.code, forced.code) == (0, 0), fits.stderr + forced.stderr
    harness.ingest(idle_s=0.5)
    stored = stored_requests(harness)
    assert json.loads(fits.stdout)["request_id"] in stored  # the balance covered it
    assert json.loads(forced.stdout)["request_id"] not in stored  # held: nothing left for it
