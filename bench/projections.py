"""Read side throughput and lag on PostgreSQL, against the limit measured in the same run.

Starts a real PostgreSQL (fsync on, tests/support/services.py), fills the event store with
``--events`` stored events, then measures:

    read log            ``EventLog.iterate`` over the whole store: fetch + decode (the limit
                        of any projection: what the rebuild has to read anyway)
    rebuild             ``projections.rebuild``: the same read, the ledger projection applied,
                        every read model written into shadow tables and swapped in
    live lag            a ``ProjectionRunner`` following the store while a writer process
                        commits ``--rate`` events/s; per batch, the seconds from the ingest
                        commit of the batch's first and last event to the read-model commit

How the store is filled. Ingest signs nothing, but checks every signature (~1 ms each in
Python), so a million events through Kafka and ``masa ingest`` would take most of an hour.
The events are built here instead, as ingest stores them (``{"envelope", "ingest"}``, same
topics, streams and versions), and written with the store adapter's COPY path
(``PostgresEventStore.insert_events``) in batches of 10,000. Their signatures are a fixed
dummy: the read side never verifies them (ingest did). The mix is that of a running network:
the first parameters, sources, stakes and deposits, then requests (submitted, completed with
data used, 10% failed), a heartbeat per worker per minute, a ``ChainFinalized`` every 500
events, stake changes and deposits now and then, and an ``EpochClosed`` per hour of
occurred_at (0.18 s of occurred_at per event: ~15% heartbeats). The live writer uses the
same path with fresh requests, ``ingested_at`` set just before its commit, so the lag is
ingest commit to read-model commit.

    .venv/bin/python bench/projections.py [--events 1000000] [--rate 2000] [--seconds 30]
    .venv/bin/python bench/projections.py --events 200000 --profile  # cProfile of a rebuild

Prints a table and writes bench/results/projections.json.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import json
import multiprocessing
import os
import platform
import pstats
import random
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from eth_utils import keccak  # noqa: E402
from eventsourcing.persistence import StoredEvent  # noqa: E402

from indexer.events import stream_id  # noqa: E402
from indexer.events.fields import format_timestamp  # noqa: E402
from indexer.store.log import EventLog, LoggedEvent  # noqa: E402
from masa.app.settings import Settings  # noqa: E402
from masa.app.synthetic import Participants  # noqa: E402
from masa.app.wiring import open_read_db, open_store  # noqa: E402
from projections.rebuild import rebuild  # noqa: E402
from projections.runner import ProjectionRunner, RunnerConfig  # noqa: E402
from projections.schema import migrate  # noqa: E402
from tests.support.services import PostgresServer  # noqa: E402

RESULTS = ROOT / "bench" / "results"
SIGNATURE = "0x" + "ab" * 65
EPOCH_S, DAY_S = 3600, 86400
CHAIN_ID = 31337
DATA_SPEC = {
    "start_urls": ["https://data0.example.org/index.html"],
    "max_depth": 1,
    "fields": {"title": {"css": "title"}},
}
LLM_SPEC = {"model": "tiny-llama", "prompt": "summarise", "max_tokens": 64}


def _address(label: str) -> str:
    return "0x" + keccak(label.encode())[-20:].hex()


class Network:
    """Stored events of a synthetic network, in commit order (see the module docstring)."""

    def __init__(self, seed: int, start: datetime, span_s: float, total: int) -> None:
        self.rng = random.Random(seed)
        people = Participants.from_seed(seed, workers=50, oracles=10, contributors=20)
        self.workers = [a.address.lower() for a in people.workers]
        self.oracles = [a.address.lower() for a in people.oracles]
        self.contributors = [a.address.lower() for a in people.contributors]
        self.indexer, self.governor = _address("indexer"), _address("governor")
        self.settler = _address("settler")
        self.start, self.step_s = start, span_s / max(total, 1)
        self.t = 0.0
        self.versions: dict[str, int] = {}
        self.offset = 0
        self.block, self.log_index = 1, 0
        self.seq: dict[str, int] = {}
        self.next_beat = {w: self.rng.uniform(0, 60) for w in self.workers}
        self.closed = -1
        self.since_final = 0

    # --- one stored event -------------------------------------------------------------------

    def stored(
        self,
        key: str,
        type_name: str,
        producer: str,
        payload: dict[str, Any],
        *,
        event_id: str | None = None,
        ingested_at: datetime | None = None,
        at: float | None = None,
    ) -> StoredEvent:
        import orjson

        version = self.versions[key] = self.versions.get(key, 0) + 1
        occurred = self.start + timedelta(seconds=self.t if at is None else at)
        envelope = {
            "id": event_id or str(uuid.UUID(int=self.rng.getrandbits(128), version=4)),
            "type": type_name,
            "version": 2 if type_name == "Heartbeat" else 1,
            "occurred_at": format_timestamp(occurred),
            "producer": producer,
            "payload": payload,
            "signature": SIGNATURE,
        }
        self.offset += 1
        ingest = {
            "consumer": "bench",
            "topic": "bench.events",
            "partition": self.offset % 6,
            "offset": self.offset // 6,
            "ingested_at": format_timestamp(ingested_at or occurred),
        }
        state = orjson.dumps({"envelope": envelope, "ingest": ingest})
        return StoredEvent(stream_id(key), version, f"{type_name}.v{envelope['version']}", state)

    def log(self) -> dict[str, Any]:
        self.log_index += 1
        if self.log_index > 8:
            self.block, self.log_index = self.block + 1, 1
        return {
            "chain_id": CHAIN_ID,
            "contract": "0x" + "5a" * 20,
            "block_number": self.block,
            "block_hash": "0x" + keccak(f"b{self.block}".encode()).hex(),
            "tx_hash": "0x" + keccak(f"t{self.block}:{self.log_index}".encode()).hex(),
            "log_index": self.log_index,
        }

    # --- the flows --------------------------------------------------------------------------

    def genesis(self) -> Iterator[StoredEvent]:
        params = {
            "effective_epoch": 0,
            "genesis": format_timestamp(self.start),
            "epoch_length_s": EPOCH_S,
            "heartbeat_interval_s": 60,
            "grace_s": 30,
            "emission_per_epoch": str(10**21),
            "stake_cap": str(10**24),
            "min_uptime_ppm": 500_000,
            "protocol_share_bps": 1000,
            "data_share_bps": 2000,
            "treasury": "0x" + "7e" * 20,
        }
        yield self.stored(self.governor, "ParametersSet", self.governor, params)
        for i, c in enumerate(self.contributors):
            source = f"https://data{i}.example.org/"
            yield self.stored(
                source, "DataSourceRegistered", c, {"source": source, "contributor": c}
            )
        for node in [*self.workers, *self.oracles]:
            yield self.staked(node, 2 if node in self.oracles else 1)
        for oracle in self.oracles:
            yield self.deposit(oracle)
        yield self.finalized()

    def staked(self, node: str, role: int) -> StoredEvent:
        amount = str(10**21)
        return self.stored(
            node,
            "Staked",
            self.indexer,
            {"log": self.log(), "node": node, "role": role, "amount": amount, "new_stake": amount},
        )

    def deposit(self, oracle: str) -> StoredEvent:
        amount = str(10**24)
        return self.stored(
            oracle,
            "FeesDeposited",
            self.indexer,
            {
                "log": self.log(),
                "oracle": oracle,
                "amount": amount,
                "deposited": amount,
                "new_total_fees_deposited": amount,
            },
        )

    def finalized(self) -> StoredEvent:
        block = self.block
        return self.stored(
            str(CHAIN_ID),
            "ChainFinalized",
            self.indexer,
            {
                "chain_id": CHAIN_ID,
                "block_number": block,
                "block_hash": "0x" + keccak(f"b{block}".encode()).hex(),
                "log_count": 0,
                "contracts": ["0x" + "5a" * 20],
            },
        )

    def request(self, ingested_at: datetime | None = None) -> list[StoredEvent]:
        rng = self.rng
        oracle, worker = rng.choice(self.oracles), rng.choice(self.workers)
        rid = str(uuid.UUID(int=rng.getrandbits(128), version=4))
        kind = rng.choice(["data", "llm"])
        body = {
            "request_id": rid,
            "kind": kind,
            "spec": LLM_SPEC if kind == "llm" else DATA_SPEC,
            "fee": str(rng.randrange(10**15, 10**17)),
        }
        at = dict(ingested_at=ingested_at)
        events = [self.stored(rid, "RequestSubmitted", oracle, body, **at)]
        if rng.random() < 0.1:
            failed = {"request_id": rid, "reason": "timeout", "detail": ""}
            return [*events, self.stored(rid, "RequestFailed", worker, failed, **at)]
        done = {
            "request_id": rid,
            "result_digest": "0x" + keccak(rid.encode()).hex(),
            "units": rng.randrange(1, 500),
        }
        events.append(self.stored(rid, "RequestCompleted", worker, done, **at))
        i = rng.randrange(len(self.contributors))
        uses = [
            {
                "source": f"https://data{i}.example.org/",
                "contributor": self.contributors[i],
                "units": done["units"],
            }
        ]
        events.append(self.stored(rid, "DataUsed", worker, {"request_id": rid, "uses": uses}, **at))
        return events

    def history(self, total: int) -> Iterator[StoredEvent]:
        count = 0
        for event in self.genesis():
            count += 1
            yield event
        while count < total:
            batch: list[StoredEvent] = []
            self.t += self.step_s * 3
            for w in self.workers:
                if self.next_beat[w] <= self.t:
                    self.next_beat[w] = self.t + 60
                    seq = self.seq[w] = self.seq.get(w, 0) + 1
                    batch.append(
                        self.stored(
                            w, "Heartbeat", w, {"seq": seq, "capabilities": ["data", "llm"]}
                        )
                    )
            batch += self.request()
            self.since_final += len(batch)
            if self.since_final >= 500:
                self.since_final = 0
                if self.rng.random() < 0.3:
                    batch.append(self.deposit(self.rng.choice(self.oracles)))
                if self.rng.random() < 0.3:
                    batch.append(self.staked(self.rng.choice(self.workers), 1))
                batch.append(self.finalized())
            epoch = int(self.t // EPOCH_S)
            if epoch - 1 > self.closed and self.t - epoch * EPOCH_S > 120:
                self.closed = epoch - 1
                body = {
                    "epoch": self.closed,
                    "cutoff_position": count,
                    "finalized_block": self.block,
                }
                batch.append(self.stored(self.settler, "EpochClosed", self.settler, body))
            count += len(batch)
            yield from batch


def fill(settings: Settings, total: int) -> float:
    """Write ``total`` events; returns the seconds it took."""
    started = time.perf_counter()
    store = open_store(settings)
    span_s = 0.18 * total  # 50 workers beating once a minute: ~15% heartbeats
    network = Network(1, datetime.now(UTC) - timedelta(seconds=span_s + DAY_S), span_s, total)
    batch: list[StoredEvent] = []
    written = 0
    for event in network.history(total):
        batch.append(event)
        if len(batch) == 10_000:
            store.insert_events(batch)
            written += len(batch)
            batch = []
            print(f"  filled {written:,}", file=sys.stderr, end="\r")
    if batch:
        store.insert_events(batch)
    store.close()
    print(file=sys.stderr)
    return time.perf_counter() - started


def writer(settings: Settings, rate: int, seconds: float, done: Any) -> None:
    """Commit ~``rate`` events/s of fresh requests for ``seconds`` (a separate process)."""
    store = open_store(settings)
    network = Network(99, datetime.now(UTC) - timedelta(hours=1), 3600, 10**6)
    network.t = 1800
    started, written = time.perf_counter(), 0
    tick = 0.05
    while (elapsed := time.perf_counter() - started) < seconds:
        due = int(rate * (elapsed + tick)) - written
        events: list[StoredEvent] = []
        now = datetime.now(UTC)
        while len(events) < due:
            network.t += 0.01
            events += network.request(ingested_at=now)
        if events:
            store.insert_events(events)
            written += len(events)
        time.sleep(max(0.0, started + elapsed + tick - time.perf_counter()))
    store.close()
    done.put(written / (time.perf_counter() - started))


class _Watched(EventLog):
    """The log, remembering the last batch read (for the lag after the read-model commit)."""

    last: tuple[LoggedEvent, ...] = ()

    def read(self, after: int = 0, limit: int = 1000, types: Any = ()) -> list[LoggedEvent]:
        events = super().read(after, limit, types)
        if events:
            self.last = tuple(events)
        return events


def bench_read(settings: Settings, batch: int, profile: bool = False) -> tuple[float, int, str]:
    store = open_store(settings)
    profiler = cProfile.Profile() if profile else None
    started, count = time.perf_counter(), 0
    if profiler:
        profiler.enable()
    for _ in EventLog(store).iterate(batch=batch):
        count += 1
    if profiler:
        profiler.disable()
    rate = count / (time.perf_counter() - started)
    store.close()
    return rate, count, _stats(profiler) if profiler else ""


def _stats(profiler: cProfile.Profile) -> str:
    out = io.StringIO()
    pstats.Stats(profiler, stream=out).sort_stats("cumulative").print_stats(40)
    out.write("\n--- by own time ---\n")
    pstats.Stats(profiler, stream=out).sort_stats("tottime").print_stats(30)
    return out.getvalue()


def bench_rebuild(settings: Settings, batch: int, profile: bool) -> tuple[float, str]:
    store = open_store(settings)
    db = open_read_db(settings)
    log = EventLog(store)
    profiler = cProfile.Profile() if profile else None
    started = time.perf_counter()
    if profiler:
        profiler.enable()
    position = rebuild(log, db, batch_size=batch)
    if profiler:
        profiler.disable()
    rate = position / (time.perf_counter() - started)  # positions are dense: no rollbacks here
    db.close()
    store.close()
    return rate, _stats(profiler) if profiler else ""


def bench_lag(settings: Settings, rate: int, seconds: float) -> dict[str, Any]:
    store = open_store(settings)
    db = open_read_db(settings)
    log = _Watched(store)
    runner = ProjectionRunner(
        log, db, RunnerConfig(batch_size=settings.projections.batch_size, poll_interval_s=0.1)
    )
    runner.load()
    context = multiprocessing.get_context("spawn")
    done = context.Queue()
    child = context.Process(target=writer, args=(settings, rate, seconds, done))
    first, last, sizes = [], [], []
    stop = threading.Event()

    def on_batch(_: Any) -> None:
        now = datetime.now(UTC)
        first.append((now - log.last[0].ingested.at).total_seconds())
        last.append((now - log.last[-1].ingested.at).total_seconds())
        sizes.append(len(log.last))

    child.start()
    finished: list[float] = []

    def watch() -> None:
        finished.append(done.get())
        child.join()
        time.sleep(1.0)
        stop.set()

    watcher = threading.Thread(target=watch)
    watcher.start()
    runner.run(stop.is_set, on_batch)
    watcher.join()
    db.close()
    store.close()
    return {
        "writer_events_per_s": finished[0],
        "batches": len(sizes),
        "mean_batch": sum(sizes) / max(1, len(sizes)),
        "lag_first_event_s": _quantiles(first),
        "lag_last_event_s": _quantiles(last),
        "runner_lag_s": _quantiles(runner.stats.lag_s),
    }


def _quantiles(values: list[float]) -> dict[str, float]:
    if not values:
        return {}
    ordered = sorted(values)

    def q(p: float) -> float:
        return round(ordered[min(len(ordered) - 1, int(p * len(ordered)))], 4)

    return {"p50": q(0.5), "p90": q(0.9), "p99": q(0.99), "max": round(ordered[-1], 4)}


def settings_for(pg: PostgresServer, db: str) -> Settings:
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
            "pool_size": 2,
        },
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--batch", type=int, default=5000)
    parser.add_argument("--rate", type=int, default=2000)
    parser.add_argument("--seconds", type=float, default=30)
    parser.add_argument("--profile", action="store_true", help="cProfile the rebuild")
    parser.add_argument("--output", type=Path, default=RESULTS / "projections.json")
    args = parser.parse_args()

    with PostgresServer(fsync=True) as pg:
        pg.create_database("bench")
        settings = settings_for(pg, "bench")
        print(f"filling the store with {args.events:,} events ...", file=sys.stderr)
        fill_s = fill(settings, args.events)
        db = open_read_db(settings)
        migrate(db.url)
        db.close()
        print("reading the log ...", file=sys.stderr)
        read_rate, count, read_profile = bench_read(settings, args.batch, args.profile)
        print("rebuilding ...", file=sys.stderr)
        rebuild_rate, profile = bench_rebuild(settings, args.batch, args.profile)
        print(f"live lag at {args.rate} events/s for {args.seconds:.0f} s ...", file=sys.stderr)
        lag = bench_lag(settings, args.rate, args.seconds)
    profile = (
        f"=== read log ===\n{read_profile}\n=== rebuild ===\n{profile}" if args.profile else ""
    )
    report(args, count, fill_s, read_rate, rebuild_rate, lag, profile)


def report(
    args: argparse.Namespace,
    count: int,
    fill_s: float,
    read_rate: float,
    rebuild_rate: float,
    lag: dict[str, Any],
    profile: str,
) -> None:
    print(f"\n{count:,} stored events (filled in {fill_s:.0f} s, COPY path)")
    print(f"{'path':44} {'events/s':>10} {'of read':>8}")
    print(f"{'read log: EventLog.iterate (the limit)':44} {read_rate:10,.0f} {1:8.0%}")
    print(
        f"{'rebuild: projections.rebuild':44} {rebuild_rate:10,.0f} {rebuild_rate / read_rate:8.0%}"
    )
    print(
        f"\nlive: writer at {lag['writer_events_per_s']:,.0f} events/s, {lag['batches']} batches"
        f" of {lag['mean_batch']:.0f} events on average"
    )
    for name in ("lag_first_event_s", "lag_last_event_s", "runner_lag_s"):
        q = lag[name]
        print(
            f"  {name:20} p50 {q.get('p50', 0):.3f}  p90 {q.get('p90', 0):.3f}"
            f"  p99 {q.get('p99', 0):.3f}  max {q.get('max', 0):.3f}"
        )
    goals = {
        "rebuild >= 50% of read": rebuild_rate >= read_rate / 2,
        "rebuild >= 50k events/s": rebuild_rate >= 50_000,
        "live lag p99 <= 1 s": lag["lag_first_event_s"].get("p99", 99) <= 1.0,
    }
    for goal, met in goals.items():
        print(f"  goal {goal}: {'met' if met else 'NOT met'}")
    if profile:
        (args.output.parent).mkdir(parents=True, exist_ok=True)
        args.output.with_suffix(".profile.txt").write_text(profile)
        print(f"profile: {args.output.with_suffix('.profile.txt')}")
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(
        json.dumps(
            {
                "events": count,
                "batch": args.batch,
                "cpus": os.cpu_count(),
                "python": platform.python_version(),
                "when": datetime.now(UTC).isoformat(),
                "fill_seconds": fill_s,
                "profiled": args.profile,
                "events_per_second": {"read log (the limit)": read_rate, "rebuild": rebuild_rate},
                "live": lag,
                "goals_met": goals,
            },
            indent=2,
        )
    )
    print(f"\nwrote {args.output}")


if __name__ == "__main__":
    main()
