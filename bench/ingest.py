"""Ingest throughput: Kafka → validate → verify → dedupe → PostgreSQL, against the limits.

Starts a real PostgreSQL (fsync on) and Apache Kafka (tests/support/services.py), produces
``--events`` realistic signed events (stakes, requests with completions and data use,
heartbeats) to a 6-partition topic, then measures, in the same run:

    raw COPY            psycopg binary COPY of the same stored-event rows (the ceiling)
    eventsourcing       the library's own PostgreSQL recorder, batches of the same size
    store path          our COPY recorder with everything ingest writes per batch
                        (events, ids, stream states, offsets), decoding skipped
    decode + verify     JSON, schema and signature checks alone, no I/O
    ingest, N procs     the real thing: N `masa ingest` processes in one consumer group

    .venv/bin/python bench/ingest.py [--events 50000] [--batch 5000] [--processes 1 2]

Prints a table and writes bench/results/ingest.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import psycopg  # noqa: E402
from eventsourcing.persistence import StoredEvent  # noqa: E402
from eventsourcing.postgres import PostgresApplicationRecorder, PostgresDatastore  # noqa: E402

from indexer.bus.base import Record  # noqa: E402
from indexer.events import SignedMessage, decode_message, stream_id  # noqa: E402
from indexer.ingest.batch import BatchBuilder, BatchContext  # noqa: E402
from masa.app.settings import Settings  # noqa: E402
from masa.app.synthetic import Participants, Scenario  # noqa: E402
from masa.app.wiring import ingest_config, open_bus, open_store  # noqa: E402
from tests.support.services import KafkaBroker, PostgresServer  # noqa: E402

RESULTS = ROOT / "bench" / "results"


def generate(count: int, seed: int = 1) -> tuple[Participants, list[SignedMessage]]:
    """Stakes and sources first, then requests (3 events each) and heartbeats, ~85/15."""
    people = Participants.from_seed(seed, workers=50, oracles=10, contributors=20)
    s = Scenario(people, seed=seed, start=datetime.now(UTC) - timedelta(minutes=10))
    messages = [*s.stakes(), *s.sources()]
    beats_per_worker = max(1, count * 15 // 100 // len(people.workers))
    requests = max(1, (count - len(messages) - beats_per_worker * len(people.workers)) // 3)
    messages += list(s.traffic(requests, beats_per_worker))
    return people, messages[:count]


def settings_for(
    pg: PostgresServer, db: str, kafka: KafkaBroker, people: Participants, run: str, batch: int
) -> Settings:
    info = pg.database(db)
    return Settings(
        home=Path(tempfile.mkdtemp(prefix="masa-bench-")),
        store={
            "backend": "postgres",
            "postgres_host": info.host,
            "postgres_port": info.port,
            "postgres_user": info.user,
            "postgres_password": info.password,
            "postgres_dbname": db,
        },
        bus={
            "backend": "kafka",
            "bootstrap_servers": kafka.bootstrap_servers,
            "partitions": 6,
            "events_topic": f"{run}.events",
            "requests_topic": f"{run}.requests",
            "dlq_topic": f"{run}.dlq",
        },
        ingest={
            "consumer_name": f"{run}-ingest",
            "batch_max_events": batch,
            "trusted_indexers": [people.indexer.address.lower()],
            "max_clock_skew_s": 86400,
            "poll_timeout_s": 0.5,
        },
    )


def stored_rows(messages: list[SignedMessage]) -> list[StoredEvent]:
    """What ingest stores for these messages, built without ingest (for the COPY baselines)."""
    now = datetime.now(UTC)
    versions: dict[str, int] = {}
    rows = []
    for m in messages:
        event = decode_message(m.value, m.key.encode(), now=now, max_clock_skew=timedelta(days=1))
        versions[event.key] = versions.get(event.key, 0) + 1
        rows.append(
            StoredEvent(event.stream_id, versions[event.key], f"{event.envelope.type}.v1", m.value)
        )
    return rows


def bench_raw_copy(dsn: str, rows: list[StoredEvent], batch: int) -> float:
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(
            "CREATE TABLE raw_copy (originator_id uuid, originator_version bigint, topic text,"
            " state bytea, notification_id bigserial,"
            " PRIMARY KEY (originator_id, originator_version))"
        )
        conn.execute("CREATE UNIQUE INDEX ON raw_copy (notification_id)")
        started = time.perf_counter()
        for i in range(0, len(rows), batch):
            with (
                conn.transaction(),
                conn.cursor().copy(
                    "COPY raw_copy (originator_id, originator_version, topic, state)"
                    " FROM STDIN (FORMAT BINARY)"
                ) as copy,
            ):
                copy.set_types(["uuid", "int8", "text", "bytea"])
                for r in rows[i : i + batch]:
                    copy.write_row((r.originator_id, r.originator_version, r.topic, r.state))
        return len(rows) / (time.perf_counter() - started)


def bench_eventsourcing(info: Any, rows: list[StoredEvent], batch: int) -> float:
    datastore = PostgresDatastore(info.dbname, info.host, info.port, info.user, info.password)
    recorder = PostgresApplicationRecorder(datastore, events_table_name="es_events")
    recorder.create_table()
    started = time.perf_counter()
    for i in range(0, len(rows), batch):
        recorder.insert_events(rows[i : i + batch])
    elapsed = time.perf_counter() - started
    datastore.close()
    return len(rows) / elapsed


def bench_store_path(settings: Settings, messages: list[SignedMessage], batch: int) -> float:
    """Our recorder writing exactly what ingest writes, with decoding done beforehand."""
    store = open_store(settings)
    config = ingest_config(settings)
    now = datetime.now(UTC)
    records = [
        Record("bench", i % 6, i // 6, m.key.encode(), m.value, 0) for i, m in enumerate(messages)
    ]
    decoded = [
        (r, decode_message(r.value, r.key, now=now, max_clock_skew=timedelta(days=1)))
        for r in records
    ]
    producers = {e.envelope.producer for _, e in decoded}
    writes = []
    streams: dict[Any, Any] = {}
    for i in range(0, len(decoded), batch):
        chunk = decoded[i : i + batch]
        nodes = {p: streams[stream_id(p)] for p in producers if stream_id(p) in streams}
        ctx = BatchContext(
            consumer="bench",
            topics=config.topics,
            policy=config.policy,
            now=now,
            max_clock_skew=config.max_clock_skew,
            streams=dict(streams),
            nodes=nodes,
            known_ids=set(),
        )
        builder = BatchBuilder(ctx)
        builder.add_records(chunk)
        streams.update(builder.write.streams)
        writes.append(builder.write)
    started = time.perf_counter()
    for write in writes:
        store.write(write)
    elapsed = time.perf_counter() - started
    store.close()
    return sum(len(w.events) for w in writes) / elapsed


def bench_decode(messages: list[SignedMessage]) -> float:
    now = datetime.now(UTC)
    started = time.perf_counter()
    for m in messages:
        decode_message(m.value, m.key.encode(), now=now, max_clock_skew=timedelta(days=1))
    return len(messages) / (time.perf_counter() - started)


def produce(settings: Settings, messages: list[SignedMessage]) -> None:
    bus = open_bus(settings)
    producer = bus.producer()
    for m in messages:
        producer.send(settings.bus.events_topic, m.key.encode(), m.value)
    producer.close()


def bench_ingest(settings: Settings, total: int, processes: int) -> tuple[float, float]:
    """N `masa ingest` processes in one group: (events/s from the first stored batch to the
    last event, seconds from start to the first batch: process start and group join)."""
    env = {**os.environ, **flatten(settings)}
    cmd = [str(Path(sys.executable).parent / "masa"), "ingest", "--until-idle", "3"]
    started = time.perf_counter()
    with tempfile.TemporaryFile() as log:
        children = [
            subprocess.Popen(cmd, env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=log)
            for _ in range(processes)
        ]
        store = open_store(settings)
        try:
            first_at, first = _first_batch(store, children, log)
            while (stored := store.max_notification_id() or 0) < total:
                _check_alive(children, log)
                time.sleep(0.02)
            steady = (stored - first) / (time.perf_counter() - first_at)
        finally:
            store.close()
        for child in children:
            child.wait(timeout=60)
    return steady, first_at - started


def _first_batch(
    store: Any, children: list[subprocess.Popen[bytes]], log: Any
) -> tuple[float, int]:
    while not (stored := store.max_notification_id() or 0):
        _check_alive(children, log)
        time.sleep(0.02)
    return time.perf_counter(), stored


def _check_alive(children: list[subprocess.Popen[bytes]], log: Any) -> None:
    if all(c.poll() is not None for c in children):
        log.seek(0)
        raise RuntimeError(log.read().decode()[-2000:])


def flatten(settings: Settings) -> dict[str, str]:
    env = {"MASA_HOME": str(settings.home)}
    for section in ("store", "bus", "ingest"):
        for name, value in getattr(settings, section).model_dump(mode="json").items():
            if value is not None:
                env[f"MASA_{section.upper()}__{name.upper()}"] = (
                    value if isinstance(value, str) else json.dumps(value)
                )
    return env


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=50_000)
    parser.add_argument("--batch", type=int, default=5000)
    parser.add_argument("--processes", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--output", type=Path, default=RESULTS / "ingest.json")
    args = parser.parse_args()

    print(f"generating {args.events} signed events ...", file=sys.stderr)
    people, messages = generate(args.events)
    rows = stored_rows(messages)
    results: dict[str, float] = {}
    startups: dict[int, float] = {}
    with PostgresServer(fsync=True) as pg, KafkaBroker() as kafka:
        run = f"bench-{uuid.uuid4().hex[:6]}"
        pg.create_database("raw")
        results["raw COPY (the limit)"] = bench_raw_copy(pg.database("raw").dsn, rows, args.batch)
        pg.create_database("es")
        results["eventsourcing recorder"] = bench_eventsourcing(pg.database("es"), rows, args.batch)
        pg.create_database("store")
        results["our store path"] = bench_store_path(
            settings_for(pg, "store", kafka, people, run + "s", args.batch), messages, args.batch
        )
        results["decode + verify (CPU only)"] = bench_decode(messages)
        for n in args.processes:
            db = f"ingest{n}"
            pg.create_database(db)
            settings = settings_for(pg, db, kafka, people, f"{run}-{n}", args.batch)
            produce(settings, messages)
            rate, startup = bench_ingest(settings, len(messages), n)
            results[f"ingest Kafka→PostgreSQL, {n} process{'es' if n > 1 else ''}"] = rate
            startups[n] = startup
    report(results, startups, args)


def report(results: dict[str, float], startups: dict[int, float], args: argparse.Namespace) -> None:
    limit = results["raw COPY (the limit)"]
    print(f"\n{'path':44} {'events/s':>10} {'of COPY':>8}")
    for name, rate in results.items():
        print(f"{name:44} {rate:10,.0f} {rate / limit:8.0%}")
    for n, seconds in startups.items():
        print(f"(ingest with {n} process(es): {seconds:.1f} s from start to its first batch)")
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(
        json.dumps(
            {
                "events": args.events,
                "batch": args.batch,
                "cpus": os.cpu_count(),
                "python": platform.python_version(),
                "when": datetime.now(UTC).isoformat(),
                "events_per_second": results,
                "startup_seconds_by_processes": startups,
            },
            indent=2,
        )
    )
    print(f"\nwrote {args.output}")


if __name__ == "__main__":
    main()
