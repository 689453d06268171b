"""End-to-end latency of a data request as an oracle app sees it: ``OracleClient.submit`` →
ingest → requests topic → worker (a scrapy crawl of one page on 127.0.0.1) → result sealed on
the results topic + ``RequestCompleted`` → ingest → ``OracleClient.result`` (waits for the
stored completion, reads, verifies and decrypts the result).

One ingest and one worker run in this process (threads), as ``masa demo`` does; requests go
one at a time, so the numbers are latency, not throughput. On the embedded defaults (SQLite
store and log) and on Kafka + PostgreSQL (started as the tests do, tests/support/services.py).

    .venv/bin/python bench/results.py [--requests 20] [--backends embedded kafka]

Prints a table and writes bench/results/results.json.
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import statistics
import sys
import tempfile
import threading
import time
from contextlib import ExitStack
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from indexer.ingest.runner import Ingestor  # noqa: E402
from indexer.store.log import EventLog  # noqa: E402
from masa.app.client import OracleClient  # noqa: E402
from masa.app.settings import Settings  # noqa: E402
from masa.app.synthetic import ORACLE_ROLE, WORKER_ROLE, Participants, Scenario  # noqa: E402
from masa.app.wiring import ingest_config, open_bus, open_store, worker_config  # noqa: E402
from tests.support.services import KafkaBroker, PostgresServer  # noqa: E402
from tests.support.site import serve_site  # noqa: E402
from workers.node import Worker  # noqa: E402

RESULTS = ROOT / "bench" / "results"
FIELDS = {"title": {"css": "article h1"}, "author": {"css": ".author::text"}}


def settings_for(backend: str, stack: ExitStack, people: Participants) -> Settings:
    home = Path(tempfile.mkdtemp(prefix="masa-bench-results-"))
    stack.callback(shutil.rmtree, home, ignore_errors=True)
    config: dict[str, Any] = {
        "home": home,
        "ingest": {"poll_timeout_s": 0.1, "trusted_indexers": [people.indexer.address.lower()]},
        "bus": {"partitions": 3},
        "worker": {
            "download_delay_s": 0.01,
            "download_timeout_s": 5,
            "heartbeat_interval_s": 5,
            "concurrency": 2,
        },
    }
    if backend == "kafka":
        pg = stack.enter_context(PostgresServer())
        kafka = stack.enter_context(KafkaBroker())
        pg.create_database("bench")
        info = pg.database("bench")
        config["store"] = {
            "backend": "postgres",
            "postgres_host": info.host,
            "postgres_port": info.port,
            "postgres_user": info.user,
            "postgres_password": info.password,
            "postgres_dbname": "bench",
        }
        config["bus"] |= {"backend": "kafka", "bootstrap_servers": kafka.bootstrap_servers}
    return Settings(**config)


def bench(backend: str, requests: int) -> dict[str, Any]:
    with ExitStack() as stack:
        people = Participants.from_seed(7, workers=1, oracles=1)
        settings = settings_for(backend, stack, people)
        site = stack.enter_context(serve_site())
        oracle, worker_key = people.oracles[0], people.workers[0]
        bus = open_bus(settings)
        scenario = Scenario(people, start=datetime.now(UTC) - timedelta(seconds=30))
        producer = bus.producer()
        for account, role in ((oracle, ORACLE_ROLE), (worker_key, WORKER_ROLE)):
            message = scenario.stake(account, role)
            producer.send(settings.bus.events_topic, message.key.encode(), message.value)
        producer.close()

        stop = threading.Event()
        ingest_store = open_store(settings)
        ingestor = Ingestor(bus, ingest_store, ingest_config(settings))
        worker = Worker(bus, worker_config(settings), worker_key, lambda _address: None)
        threads = [
            threading.Thread(target=ingestor.run, args=(stop.is_set,), daemon=True),
            threading.Thread(target=worker.run, args=(stop.is_set,), daemon=True),
        ]
        for thread in threads:
            thread.start()
        client_store = open_store(settings)
        client = OracleClient(
            bus,
            oracle,
            EventLog(client_store),
            events_topic=settings.bus.events_topic,
            results_topic=settings.bus.results_topic,
            poll_s=0.02,
        )
        spec = {"start_urls": [site.url("/articles/1")], "max_depth": 0, "fields": FIELDS}
        try:
            client.result(client.submit("data", spec, fee=1), timeout_s=120)  # warm up
            latencies, completions = [], []
            for _ in range(requests):
                started = time.perf_counter()
                rid = client.submit("data", spec, fee=1)
                client.wait(rid, timeout_s=120)
                completions.append(time.perf_counter() - started)
                client.result(rid, timeout_s=120)
                latencies.append(time.perf_counter() - started)
        finally:
            stop.set()
            for thread in threads:
                thread.join(timeout=60)
            client_store.close()
            ingest_store.close()
    latencies.sort()
    completions.sort()
    return {
        "backend": {"embedded": "embedded (SQLite log + store)"}.get(backend, "Kafka + PostgreSQL"),
        "requests": requests,
        "completed_p50_s": round(statistics.median(completions), 3),
        "p50_s": round(statistics.median(latencies), 3),
        "p99_s": round(latencies[min(len(latencies) - 1, int(0.99 * len(latencies)))], 3),
        "min_s": round(latencies[0], 3),
        "max_s": round(latencies[-1], 3),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=20)
    parser.add_argument("--backends", nargs="+", default=["embedded", "kafka"])
    args = parser.parse_args()
    rows = [bench(backend, args.requests) for backend in args.backends]
    print("submit → verified result, one request at a time (completed: until the store has it)")
    print(
        f"{'backend':32} {'N':>4} {'p50 s':>7} {'p99 s':>7} {'min s':>7} {'max s':>7}"
        f" {'completed p50 s':>16}"
    )
    for row in rows:
        print(
            f"{row['backend']:32} {row['requests']:>4} {row['p50_s']:>7} {row['p99_s']:>7}"
            f" {row['min_s']:>7} {row['max_s']:>7} {row['completed_p50_s']:>16}"
        )
    RESULTS.mkdir(parents=True, exist_ok=True)
    machine = {"python": platform.python_version(), "machine": platform.machine()}
    (RESULTS / "results.json").write_text(json.dumps({"machine": machine, "rows": rows}, indent=2))


if __name__ == "__main__":
    main()
