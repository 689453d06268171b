"""Read API latency: ``masa serve`` (uvicorn on 127.0.0.1) over PostgreSQL read models with
``--addresses`` nodes, against the goal of p99 <= 50 ms.

The rows are written directly through ``projections.tables`` upserts (the projection's own
write path, one transaction), not by ingesting and projecting events: 100k staked nodes would
take some 300k signed events and minutes of ingest, and what is measured here is only the read
side, which sees the same tables either way. Each node gets ``--epochs`` uptime rows and one
stake change, so ``/v1/nodes/{address}`` reads its three tables as it would in production.

The API connects as the SELECT-only reader role (``masa db grant-reader``), as deployed. Each
endpoint is called ``--requests`` times in a bounded loop over one keep-alive connection
(latency), then by ``--clients`` threads at once (throughput):

    node list      GET /v1/nodes?limit=100&cursor=<a random address's>  (page + COUNT(*))
    one node       GET /v1/nodes/{random address}                       (node, uptime, stake)

``/v1/users/{address}/rewards`` is measured when the API has it (it does not yet: skipped).

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
from projections.queries import encode_cursor  # noqa: E402
from projections.schema import grant_reader, migrate  # noqa: E402
from projections.tables import NODE_UPTIME, NODES, STAKE_CHANGES  # noqa: E402
from tests.support.services import PostgresServer  # noqa: E402
from tests.support.site import closed_port  # noqa: E402

RESULTS = ROOT / "bench" / "results"
GOAL_P99_MS = 50.0
READER, READER_PASSWORD = "bench_reader", "bench-reader"


def address(i: int) -> str:
    return f"0x{i:040x}"


def fill(settings: Settings, addresses: int, epochs: int) -> float:
    """Nodes, their uptime and a stake change each, written as the projection writes them."""
    started = time.perf_counter()
    now = datetime.now(UTC)
    nodes, uptime, stakes = [], [], []
    for i in range(addresses):
        a = address(i)
        nodes.append(
            {
                "address": a, "role": "worker" if i % 10 else "oracle", "status": "staked",
                "active_stake": 10**21 + i, "locked_stake": 0, "pending_status": "staked",
                "pending_active_stake": 10**21 + i, "pending_locked_stake": 0, "slashed": 0,
                "first_seen": now - timedelta(days=1), "last_seen": now, "last_heartbeat": now,
                "heartbeats": 100, "capabilities": "data,llm",
            }
        )  # fmt: skip
        stakes.append(
            {
                "event_id": f"stake-{i}", "position": i, "node": a, "kind": "Staked", "role": 1,
                "amount": 10**21 + i, "stake_after": 10**21 + i, "locked_after": 0,
                "chain_id": 1, "block_number": i // 50, "log_index": i % 50,
                "block_hash": "0x" + "ab" * 32, "tx_hash": "0x" + "cd" * 32,
                "block_time": now - timedelta(days=1), "final": True, "retracted": False,
            }
        )  # fmt: skip
        for e in range(epochs):
            ppm = (i * 7919 + e * 104729) % 1_000_001
            uptime.append(
                {
                    "node": a, "epoch": e, "covered_s": ppm * 36 // 10_000, "staked_s": 3600,
                    "expected_s": 3600, "uptime_ppm": ppm, "heartbeats": 120,
                    "late_heartbeats": 0, "coverage": "[]",
                }
            )  # fmt: skip
    db = open_read_db(settings)
    try:
        migrate(db.url)
        with db.transaction() as tx:
            NODES.upsert(tx, nodes)
            STAKE_CHANGES.upsert(tx, stakes)
            NODE_UPTIME.upsert(tx, uptime)
            tx.execute("ANALYZE")
        grant_reader(db, READER)
    finally:
        db.close()
    return time.perf_counter() - started


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
    parser.add_argument("--epochs", type=int, default=3)
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
    }
    results: dict[str, dict] = {}
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
        print(f"writing {n:,} nodes, {n * args.epochs:,} uptime rows ...", file=sys.stderr)
        fill_s = fill(settings, n, args.epochs)
        port = closed_port()
        url = f"http://127.0.0.1:{port}"
        with tempfile.TemporaryFile() as log:
            child = serve(settings, port, log)
            try:
                wait_up(url, child)
                paths = httpx.get(url + "/openapi.json").json()["paths"]
                if "/v1/users/{address}/rewards" in paths:
                    endpoints["user rewards"] = lambda r: (
                        f"/v1/users/{address(r.randrange(n))}/rewards"
                    )
                for name, path in endpoints.items():
                    print(f"measuring {name} ...", file=sys.stderr)
                    results[name] = measure(url, path, args.requests, args.clients)
            finally:
                child.terminate()
                child.wait(timeout=30)
    report(results, fill_s, args)


def report(results: dict[str, dict], fill_s: float, args: argparse.Namespace) -> None:
    rps_key = f"rps_{args.clients}_clients"
    load = os.getloadavg()[0]
    print(
        f"\n{args.addresses:,} addresses in the read models (filled in {fill_s:.0f} s);"
        f" {os.cpu_count()} CPUs, load average {load:.1f} (client and server share them)"
    )
    print(f"{'endpoint':26} {'p50 ms':>8} {'p99 ms':>8} {'goal':>6} {'req/s':>8} "
          f"{f'req/s x{args.clients}':>10}")  # fmt: skip
    for name, r in results.items():
        mark = "ok" if r["p99_ms"] <= GOAL_P99_MS else "OVER"
        print(f"{name:26} {r['p50_ms']:8.1f} {r['p99_ms']:8.1f} {mark:>6} "
              f"{r['rps_one_client']:8.0f} {r[rps_key]:10.0f}")  # fmt: skip
    rewards = "measured" if "user rewards" in results else "not in the API yet, skipped"
    print(f"(goal: p99 <= {GOAL_P99_MS:.0f} ms; /v1/users/{{address}}/rewards: {rewards})")
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(
        json.dumps(
            {
                "addresses": args.addresses,
                "epochs": args.epochs,
                "clients": args.clients,
                "cpus": os.cpu_count(),
                "load_average_1m": round(os.getloadavg()[0], 2),
                "python": platform.python_version(),
                "when": datetime.now(UTC).isoformat(),
                "goal_p99_ms": GOAL_P99_MS,
                "fill_seconds": round(fill_s, 1),
                "endpoints": results,
            },
            indent=2,
        )
    )
    print(f"\nwrote {args.output}")


if __name__ == "__main__":
    main()
