"""Read API latency: ``masa serve`` (uvicorn on 127.0.0.1) over PostgreSQL read models with
``--addresses`` nodes and a posted settlement whose statement has a line for each of them,
against the goal of p99 <= 50 ms.

The read models are written by the projection's own write path (``LedgerState.write``: the
runner's upserts, one transaction), not by ingesting and projecting events: 100k staked
nodes would take some 600k signed events and many minutes of ingest, and what is measured
here is the read side, which sees the same tables either way. Every address is a worker with
a final stake, ``--epochs`` uptime rows and one paid request per epoch it is served in, whose
data three other addresses supplied (credited uses). The settlement then goes the settler's
way: the runner's ``load_state`` reads those tables back, ``epoch_inputs`` -> formula ->
statement for epochs 0 .. epochs-2, each recorded by ``SettlementDb.save_computed`` (the
record, payouts, statement lines and tree) and marked confirmed (no chain: posting is not
what is measured; bench/settlement.py and bench/contracts_gas.py measure that). The last
epoch stays open, so each address has pending fees too.

The API connects as the SELECT-only reader role (``masa db grant-reader``), as deployed. Each
endpoint is called ``--requests`` times in a bounded loop over one keep-alive connection
(latency), then by ``--clients`` threads at once (throughput):

    node list      GET /v1/nodes?limit=100&cursor=<a random address's>  (page + count)
    one node       GET /v1/nodes/{random address}                       (node, uptime, stake)
    user rewards   GET /v1/users/{random address}/rewards               (line, proof, previous
                                                                         root, breakdown,
                                                                         pending)

    .venv/bin/python bench/api.py [--addresses 100000] [--requests 2000] [--clients 4]

Prints a table and writes bench/results/api.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402
import psycopg  # noqa: E402

from masa.app.settings import Settings  # noqa: E402
from masa.app.wiring import open_read_db  # noqa: E402
from projections.db import ReadDb  # noqa: E402
from projections.queries import encode_cursor  # noqa: E402
from projections.schema import grant_reader, migrate  # noqa: E402
from projections.state import LedgerState, load_state  # noqa: E402
from projections.tables import Row  # noqa: E402
from settlement.compute import epoch_inputs  # noqa: E402
from settlement.formula import compute_rewards  # noqa: E402
from settlement.posting import PostingRecord, State  # noqa: E402
from settlement.settler import Settlement, SettlementDb  # noqa: E402
from settlement.statement import Statement, build_statement  # noqa: E402
from tests.support.services import PostgresServer  # noqa: E402
from tests.support.site import closed_port  # noqa: E402

RESULTS = ROOT / "bench" / "results"
GOAL_P99_MS = 50.0
READER, READER_PASSWORD = "bench_reader", "bench-reader"
EPOCH_S = 3600
GENESIS = datetime(2026, 11, 1, tzinfo=UTC)
TREASURY = "0x" + "77" * 20
USES = 3  # credited data uses per request


def address(i: int) -> str:
    return f"0x{i:040x}"


def ledger_rows(addresses: int, epochs: int) -> LedgerState:
    """The read-model rows of the network described above, as the projection holds them."""
    state = LedgerState.empty()
    put = {name: table.put for name, table in state.tables.items()}
    put["parameters"](_parameters())
    put["chain_finality"]({"chain_id": 1, "finalized_block": 10**6,
                           "block_hash": "0x" + "ab" * 32, "position": 1})  # fmt: skip
    for e in range(epochs):
        start = GENESIS + timedelta(seconds=e * EPOCH_S)
        put["epochs"]({"epoch": e, "start_at": start, "end_at": start + timedelta(seconds=EPOCH_S),
                       "closed": e < epochs - 1, "cutoff_position": None, "finalized_block": None,
                       "closed_at": None})  # fmt: skip
    for i in range(addresses):
        _node(put, i, epochs)
        _request(put, i, addresses, epochs)
    return state


def _parameters() -> Row:
    return {"effective_epoch": 0, "genesis": GENESIS, "epoch_length_s": EPOCH_S,
            "heartbeat_interval_s": 30, "grace_s": 60, "emission_per_epoch": 10**24,
            "stake_cap": 10**22, "min_uptime_ppm": 100_000, "protocol_share_bps": 500,
            "data_share_bps": 2_000, "treasury": TREASURY, "event_id": "params-0",
            "position": 0}  # fmt: skip


def _node(put: dict[str, Callable[[Row], Row]], i: int, epochs: int) -> None:
    a, stake, seen = address(i), 10**21 + i, GENESIS - timedelta(days=1)
    last = GENESIS + timedelta(seconds=epochs * EPOCH_S)
    put["nodes"]({"address": a, "role": "worker", "status": "staked", "active_stake": stake,
                  "locked_stake": 0, "pending_status": "staked", "pending_active_stake": stake,
                  "pending_locked_stake": 0, "slashed": 0, "first_seen": seen,
                  "last_seen": last, "last_heartbeat": last, "heartbeats": 120 * epochs,
                  "capabilities": "data,llm"})  # fmt: skip
    put["stake_changes"]({"event_id": f"stake-{i}", "position": 10 + i, "node": a,
                          "kind": "Staked", "role": 1, "amount": stake, "stake_after": stake,
                          "locked_after": 0, "chain_id": 1, "block_number": i // 50,
                          "log_index": i % 50, "block_hash": "0x" + "ab" * 32,
                          "tx_hash": "0x" + "cd" * 32, "block_time": seen, "final": True,
                          "retracted": False})  # fmt: skip
    for e in range(epochs):
        ppm = (i * 7919 + e * 104729) % 1_000_001
        put["node_uptime"]({"node": a, "epoch": e, "covered_s": ppm * EPOCH_S // 10**6,
                            "staked_s": EPOCH_S, "expected_s": EPOCH_S, "uptime_ppm": ppm,
                            "heartbeats": 120, "late_heartbeats": 0, "coverage": "[]"})  # fmt: skip


def _request(put: dict[str, Callable[[Row], Row]], i: int, addresses: int, epochs: int) -> None:
    """Address ``i`` serves one paid request in epoch ``i % epochs``; three others supplied
    its data."""
    rid, epoch = f"{i:032x}", i % epochs
    at = GENESIS + timedelta(seconds=epoch * EPOCH_S + i % EPOCH_S)
    put["requests"]({"request_id": rid, "kind": "data", "oracle": TREASURY, "fee": 10**18 + i,
                     "reserved": True, "status": "completed", "worker": address(i), "units": 6,
                     "result_digest": "0x" + "ee" * 32, "failure_reason": None,
                     "submitted_at": at, "closed_at": at + timedelta(seconds=2),
                     "latency_ms": 2000, "epoch": epoch, "submitted_position": 10**6 + 2 * i,
                     "closed_position": 10**6 + 2 * i + 1,
                     "closed_event_id": f"done-{i}"})  # fmt: skip
    for u in range(USES):
        contributor = address((i * 7919 + 1 + u) % addresses)
        put["data_uses"]({"event_id": f"use-{i}", "request_id": rid, "contributor": contributor,
                          "source": f"https://s{u}.example/", "units": 1 + u, "credited": True,
                          "refusal": None, "epoch": epoch,
                          "position": 2 * 10**6 + i})  # fmt: skip


def fill(settings: Settings, addresses: int, epochs: int) -> tuple[dict[str, float], Statement]:
    """The read models written, then the settlements; seconds of each step, the last
    statement."""
    seconds: dict[str, float] = {}
    started = time.perf_counter()
    state = ledger_rows(addresses, epochs)
    db = open_read_db(settings)
    try:
        migrate(db.url)
        with db.transaction() as tx:
            state.write(tx)
            tx.execute("ANALYZE")
        seconds["read models"] = time.perf_counter() - started
        settled, statement = settle(db, epochs - 1)
        seconds |= settled
        with db.transaction() as tx:
            tx.execute("ANALYZE")
        grant_reader(db, READER)
    finally:
        db.close()
    return seconds, statement


def settle(db: ReadDb, epochs: int) -> tuple[dict[str, float], Statement]:
    """Epochs ``0 .. epochs-1`` settled as the settler does, from the tables just written."""
    with db.snapshot() as tx:
        state = load_state(tx)  # what a runner (and the settler's fold) holds
    records, previous = SettlementDb(db), {}
    seconds: dict[str, float] = {"compute": 0.0, "record": 0.0}
    for epoch in range(epochs):
        mark = time.perf_counter()
        statement = build_statement(compute_rewards(epoch_inputs(state, epoch, previous)), previous)
        statement.tree()
        seconds["compute"] += time.perf_counter() - mark
        mark = time.perf_counter()
        record(records, statement)
        seconds["record"] += time.perf_counter() - mark
        previous = statement.cumulative()
        seconds["lines"] = len(statement.lines)
    return seconds, statement


def record(records: SettlementDb, statement: Statement) -> None:
    s = statement
    posting = PostingRecord(s.epoch, s.root, s.statement_hash, s.total_cumulative)
    text = s.canonical_bytes().decode()
    settlement = Settlement(posting, 0, 10**6, text, datetime.now(UTC))
    records.save_computed(settlement, s)
    confirmed = replace(posting, state=State.CONFIRMED, tx_hash="0x" + "cd" * 32,
                        block_number=10**6 + s.epoch)  # fmt: skip
    records.save(replace(settlement, posting=confirmed))


def serve(settings: Settings, port: int, log: Any) -> subprocess.Popen[bytes]:
    s = settings.store
    env = {
        **os.environ, "MASA_HOME": str(settings.home), "MASA_LOG_LEVEL": "WARNING",
        "MASA_STORE__BACKEND": "postgres", "MASA_STORE__POSTGRES_HOST": s.postgres_host,
        "MASA_STORE__POSTGRES_PORT": str(s.postgres_port),
        "MASA_STORE__POSTGRES_USER": s.postgres_user,
        "MASA_STORE__POSTGRES_PASSWORD": s.postgres_password,
        "MASA_STORE__POSTGRES_DBNAME": s.postgres_dbname,
        "MASA_API__READER_USER": READER, "MASA_API__READER_PASSWORD": READER_PASSWORD,
    }  # fmt: skip
    masa = str(Path(sys.executable).with_name("masa"))
    cmd = [masa, "serve", "--host", "127.0.0.1", "--port", str(port)]
    return subprocess.Popen(cmd, env=env, cwd=ROOT, stdout=log, stderr=log)


def wait_up(url: str, child: subprocess.Popen[bytes], timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if child.poll() is not None:
            raise RuntimeError("masa serve exited")
        try:
            if httpx.get(url + "/v1/nodes?limit=1", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise RuntimeError("masa serve did not answer")


def percentile(sorted_ms: list[float], q: float) -> float:
    return sorted_ms[min(len(sorted_ms) - 1, int(q * len(sorted_ms)))]


def measure(url: str, path: Callable[[random.Random], str], requests: int, clients: int) -> dict:
    """One client's latencies over ``requests`` calls, then ``clients`` threads' throughput."""
    rng = random.Random(1)
    latencies = []
    with httpx.Client(base_url=url, timeout=10) as client:
        for _ in range(50):  # warm-up: connections, plans, caches
            client.get(path(rng)).raise_for_status()
        started = time.perf_counter()
        for _ in range(requests):
            t = time.perf_counter()
            client.get(path(rng)).raise_for_status()
            latencies.append((time.perf_counter() - t) * 1000)
        serial = requests / (time.perf_counter() - started)
    latencies.sort()
    per_client = max(1, requests // clients)
    errors: list[BaseException] = []

    def worker(seed: int) -> None:
        local = random.Random(seed)
        try:
            with httpx.Client(base_url=url, timeout=10) as c:
                for _ in range(per_client):
                    c.get(path(local)).raise_for_status()
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(clients)]
    started = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]
    concurrent = per_client * clients / (time.perf_counter() - started)
    return {
        "requests": requests,
        "p50_ms": round(percentile(latencies, 0.50), 2),
        "p99_ms": round(percentile(latencies, 0.99), 2),
        "max_ms": round(latencies[-1], 2),
        "rps_one_client": round(serial, 1),
        f"rps_{clients}_clients": round(concurrent, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--addresses", type=int, default=100_000)
    parser.add_argument(
        "--epochs", type=int, default=3, help="uptime epochs; all but the last settled"
    )
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--output", type=Path, default=RESULTS / "api.json")
    args = parser.parse_args()

    n = args.addresses
    endpoints: dict[str, Callable[[random.Random], str]] = {
        "node list (page of 100)": lambda r: (
            f"/v1/nodes?limit=100&cursor={encode_cursor((address(r.randrange(n)),))}"
        ),
        "one node": lambda r: f"/v1/nodes/{address(r.randrange(n))}",
        "user rewards": lambda r: f"/v1/users/{address(r.randrange(n))}/rewards",
    }
    results: dict[str, dict[str, Any]] = {}
    with PostgresServer(fsync=True) as pg:
        info = pg.create_database("api")
        with psycopg.connect(info.dsn, autocommit=True) as conn:
            conn.execute(f"CREATE ROLE {READER} LOGIN PASSWORD '{READER_PASSWORD}'")
        settings = Settings(
            home=Path(tempfile.mkdtemp(prefix="masa-bench-api-")),
            store={"backend": "postgres", "postgres_host": info.host,
                   "postgres_port": info.port, "postgres_user": info.user,
                   "postgres_password": info.password, "postgres_dbname": info.dbname},
        )  # fmt: skip
        print(f"writing {n:,} nodes and {args.epochs} epochs, settling "
              f"{args.epochs - 1} ...", file=sys.stderr)  # fmt: skip
        fill_s, statement = fill(settings, n, args.epochs)
        port = closed_port()
        url = f"http://127.0.0.1:{port}"
        with tempfile.TemporaryFile() as log:
            child = serve(settings, port, log)
            try:
                wait_up(url, child)
                check_rewards(url, statement)
                for name, path in endpoints.items():
                    print(f"measuring {name} ...", file=sys.stderr)
                    results[name] = measure(url, path, args.requests, args.clients)
            finally:
                child.terminate()
                child.wait(timeout=30)
    report(results, fill_s, args)


def check_rewards(url: str, statement: Statement) -> None:
    """The route answers from the posted statement: its lines' cumulatives and proofs."""
    for line in random.Random(2).sample(statement.lines, 20):
        view = httpx.get(f"{url}/v1/users/{line.address}/rewards", timeout=30).json()
        assert view["epoch"] == statement.epoch and int(view["cumulative"]) == line.cumulative
        assert view["proof"] == statement.proof(line.address), view


def report(results: dict[str, dict[str, Any]], fill_s: dict[str, float],
           args: argparse.Namespace) -> None:  # fmt: skip
    rps_key = f"rps_{args.clients}_clients"
    load = os.getloadavg()[0]
    lines = int(fill_s.pop("lines", 0))
    steps = ", ".join(f"{k} {v:.1f} s" for k, v in fill_s.items())
    print(
        f"\n{args.addresses:,} addresses in the read models, {args.epochs - 1} posted statements"
        f" of {lines:,} lines ({steps}); {os.cpu_count()} CPUs, load average {load:.1f}"
        " (client, server and PostgreSQL share them)"
    )
    print(f"| endpoint | p50 ms | p99 ms | goal p99 {GOAL_P99_MS:.0f} ms | req/s, 1 client "
          f"| req/s, {args.clients} clients |\n|---|---:|---:|---|---:|---:|")  # fmt: skip
    for name, r in results.items():
        mark = "met" if r["p99_ms"] <= GOAL_P99_MS else "**not met**"
        print(f"| {name} | {r['p50_ms']:.1f} | {r['p99_ms']:.1f} | {mark} "
              f"| {r['rps_one_client']:.0f} | {r[rps_key]:.0f} |")  # fmt: skip
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(
        json.dumps(
            {
                "addresses": args.addresses,
                "epochs": args.epochs,
                "statement_lines": lines,
                "clients": args.clients,
                "cpus": os.cpu_count(),
                "load_average_1m": round(load, 2),
                "python": platform.python_version(),
                "when": datetime.now(UTC).isoformat(),
                "goal_p99_ms": GOAL_P99_MS,
                "fill_seconds": {k: round(v, 1) for k, v in fill_s.items()},
                "endpoints": results,
            },
            indent=2,
        )
        + "\n"
    )
    print(f"\nwrote {args.output}")


if __name__ == "__main__":
    main()
