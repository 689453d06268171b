"""``masa demo``: the whole pipeline on embedded defaults, in one process, with no services.

The steps follow the data flow of DESIGN §1:

1. chain: deploy the contracts on an in-process EVM; workers and oracles stake; oracles
   prepay fees;
2. index: the chain indexer turns those logs into signed events on the (embedded) bus;
3. live work: contributors register the sources of a local website, an oracle submits data
   jobs (and LLM jobs when vLLM is installed), ingest accepts them, a worker serves them
   with scrapy (and vLLM), ingest stores the results and the data use;
4. volume: a few hundred more signed events of every type from a synthetic network, with
   malformed ones among them, ingested like the rest;
5. report: what was stored, what was rejected and why, who earned attribution.
"""

from __future__ import annotations

import shutil
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
from eth_account import Account
from eth_account.signers.local import LocalAccount
from eth_utils import keccak
from web3 import Web3
from web3.types import Wei

from contracts.client import MasaClient, Role
from contracts.deploy import WEI_PER_TOKEN, Deployment, DeployParams, deploy_all
from indexer.bus.base import Bus
from indexer.events import SignedMessage, make_event
from indexer.events.fields import format_timestamp
from indexer.events.types import DataUsed
from indexer.ingest.dlq import read_dead_letters
from indexer.ingest.runner import Ingestor
from indexer.store.base import EventStore
from indexer.store.log import EventLog
from masa.app.demo_site import DemoSite
from masa.app.settings import Settings
from masa.app.synthetic import Participants, Scenario
from masa.app.wiring import (
    ingest_config,
    open_bus,
    open_read_db,
    open_store,
    open_web3,
    run_indexer,
    runner_config,
    worker_config,
)
from projections import queries
from projections.runner import ProjectionRunner
from projections.schema import migrate
from workers.node import Worker, chain_stake_check

Progress = Callable[[str, int, int], None]
STAKE = 1_000 * WEI_PER_TOKEN
FEES = 50 * WEI_PER_TOKEN


@dataclass
class DemoReport:
    chain: dict[str, Any] = field(default_factory=dict)
    indexed: Counter[str] = field(default_factory=Counter)
    live: Counter[str] = field(default_factory=Counter)
    attribution: dict[str, int] = field(default_factory=dict)
    produced: int = 0
    ingest: Counter[str] = field(default_factory=Counter)
    stored_by_type: dict[str, int] = field(default_factory=dict)
    dead_letters: Counter[str] = field(default_factory=Counter)
    llm: str = "off"
    read_models: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0

    def to_json(self) -> dict[str, Any]:
        return {
            "chain": self.chain,
            "chain_events_indexed": dict(sorted(self.indexed.items())),
            "live_requests": dict(sorted(self.live.items())),
            "attribution_units": self.attribution,
            "llm": self.llm,
            "produced": self.produced,
            "stored_by_type": self.stored_by_type,
            "stored": sum(self.stored_by_type.values()),
            "rejected_by_reason": dict(sorted(self.dead_letters.items())),
            "ingest": dict(sorted(self.ingest.items())),
            "read_models": self.read_models,
            "seconds": round(self.seconds, 2),
        }


def demo_settings(home: Path) -> Settings:
    """Embedded defaults under ``home/demo``, wiped first so every run starts the same."""
    root = home / "demo"
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir(parents=True)
    return Settings(
        home=root,
        ingest={"hold_timeout_s": 5},
        chain={"rpc_url": "inprocess", "finality_depth": 2, "poll_interval_s": 0.1},
        worker={
            "download_delay_s": 0.05,
            "job_timeout_s": 60,
            "heartbeat_interval_s": 1,
            "shutdown_grace_s": 5,
        },
    )


def run_demo(
    settings: Settings, *, requests: int, seed: int, progress: Progress, llm: Any | None = None
) -> DemoReport:
    """``llm`` is a started ``VllmEngine`` serving ``tiny-llama``, or None for data jobs only."""
    started = time.monotonic()
    report = DemoReport(llm="on" if llm else "off")
    people = Participants.from_seed(seed)
    settings = _trusting(settings, people)
    bus = open_bus(settings)
    store = open_store(settings)
    try:
        w3 = open_web3(settings)
        worker = live_worker(seed)
        deployment = _stake_on_chain(w3, people, worker, report)
        progress("deploy and stake on the in-process EVM", 1, 1)
        report.indexed = _index(w3, deployment, bus, settings, people.indexer)
        progress("index the chain", 1, 1)
        assert people.governor is not None
        _send(bus, settings, [_parameters(people.governor, people.contributors[-1])])
        report.live, report.attribution = _live_work(
            w3, deployment, bus, store, settings, people, worker, llm, progress
        )
        report.produced = _volume(bus, settings, people, seed, requests, progress)
        report.ingest = _ingest(bus, store, settings, "ingest the volume", progress)
        report.stored_by_type = store.count_events()
        report.read_models = _read_models(settings, store, progress)
        report.dead_letters = Counter(
            d.reason for d in read_dead_letters(bus, settings.bus.dlq_topic)
        )
    finally:
        store.close()
    report.seconds = time.monotonic() - started
    return report


def _trusting(settings: Settings, people: Participants) -> Settings:
    assert people.governor is not None and people.settler is not None
    trusted = {
        "trusted_indexers": [people.indexer.address.lower()],
        "trusted_governors": [people.governor.address.lower()],
        "trusted_settlers": [people.settler.address.lower()],
    }
    return settings.model_copy(update={"ingest": settings.ingest.model_copy(update=trusted)})


def _parameters(governor: LocalAccount, treasury: LocalAccount) -> SignedMessage:
    """Short epochs for the demo: two minutes each, from ten minutes ago (the synthetic
    traffic starts five minutes ago)."""
    now = datetime.now(UTC).replace(second=0, microsecond=0)
    payload = {
        "effective_epoch": 0, "genesis": format_timestamp(now - timedelta(minutes=10)),
        "epoch_length_s": 120, "heartbeat_interval_s": 1, "grace_s": 5,
        "emission_per_epoch": str(1_000 * WEI_PER_TOKEN), "stake_cap": str(STAKE),
        "min_uptime_ppm": 100_000, "protocol_share_bps": 500, "data_share_bps": 2_000,
        "treasury": treasury.address.lower(),
    }  # fmt: skip
    return make_event(governor, "ParametersSet", payload)


# --- 1. chain -------------------------------------------------------------------------------


def live_worker(seed: int) -> LocalAccount:
    """The worker that serves real jobs; the synthetic network's workers only sign events."""
    account: LocalAccount = Account.from_key(keccak(f"masa-demo-live-worker:{seed}".encode()))
    return account


def _stake_on_chain(
    w3: Web3, people: Participants, worker: LocalAccount, report: DemoReport
) -> Deployment:
    admin = _funded_admin(w3)
    params = DeployParams(
        cooldown_s=3600, min_worker_stake=STAKE // 10, min_oracle_stake=STAKE // 10
    )
    deployment = deploy_all(w3, admin, params)
    minter = MasaClient(w3, deployment, admin)
    workers = [*people.workers, worker]
    for account, role in [
        *((w, Role.WORKER) for w in workers),
        *((o, Role.ORACLE) for o in people.oracles),
    ]:
        w3.eth.send_transaction(
            {"from": admin.address, "to": account.address, "value": Wei(10**18)}
        )
        minter.mint(account.address, STAKE + FEES)
        node = MasaClient(w3, deployment, account)
        node.stake(role, STAKE)
        if role is Role.ORACLE:
            node.deposit_fees(FEES)
    _mine_past_finality(w3, blocks=3)
    report.chain = {
        "chain_id": deployment.chain_id,
        **{name: c.address for name, c in deployment.contracts().items()},
        "staked_workers": len(workers),
        "staked_oracles": len(people.oracles),
        "head": w3.eth.block_number,
    }
    return deployment


def _mine_past_finality(w3: Web3, blocks: int) -> None:
    """Empty blocks, so that the last deposits and stakes are final when indexed."""
    provider: Any = w3.provider
    provider.ethereum_tester.mine_blocks(blocks)


def _funded_admin(w3: Web3) -> LocalAccount:
    provider: Any = w3.provider
    key = provider.ethereum_tester.backend.account_keys[0]
    account: LocalAccount = Account.from_key(key.to_bytes())
    return account


# --- 2. index -------------------------------------------------------------------------------


def _index(
    w3: Web3, deployment: Deployment, bus: Bus, settings: Settings, indexer: LocalAccount
) -> Counter[str]:
    before = _chain_types(bus, settings)
    run_indexer(w3, deployment, bus, settings, indexer, until_head=True)
    return _chain_types(bus, settings) - before


def _chain_types(bus: Bus, settings: Settings) -> Counter[str]:
    counts: Counter[str] = Counter()
    for record in bus.read_all(settings.bus.events_topic):
        data = orjson.loads(record.value)
        if "log" in data.get("payload", {}):
            counts[data["type"]] += 1
    return counts


# --- 3. live work ---------------------------------------------------------------------------


def _live_work(
    w3: Web3,
    deployment: Deployment,
    bus: Bus,
    store: EventStore,
    settings: Settings,
    people: Participants,
    account: LocalAccount,
    llm: Any | None,
    progress: Progress,
) -> tuple[Counter[str], dict[str, int]]:
    with DemoSite() as site:
        messages = _live_requests(site.url, people, llm is not None)
        _send(bus, settings, messages)
        _ingest(bus, store, settings, "ingest the requests", progress)
        worker = Worker(
            bus,
            worker_config(settings),
            account,
            chain_stake_check(MasaClient(w3, deployment)),
            llm,
        )
        jobs = sum(1 for m in messages if b'"RequestSubmitted"' in m.value)
        deadline = time.monotonic() + 300
        worker.run(lambda: _finished(worker) >= jobs or time.monotonic() > deadline)
        progress(
            "serve the requests (scrapy" + (", vLLM)" if llm else ")"), _finished(worker), jobs
        )
        assert "/private/notes.html" not in site.requested, "robots.txt was not obeyed"
    _ingest(bus, store, settings, "ingest the results", progress)
    live = Counter(
        {k: v for k, v in worker.stats.items() if k == "completed" or k.startswith("failed")}
    )
    return live, _attribution(store)


def _finished(worker: Worker) -> int:
    return sum(v for k, v in worker.stats.items() if k == "completed" or k.startswith("failed"))


def _live_requests(site: str, people: Participants, with_llm: bool) -> list[SignedMessage]:
    science, markets = people.contributors[0], people.contributors[1]
    messages = [
        make_event(
            science,
            "DataSourceRegistered",
            {"source": f"{site}/science/", "contributor": science.address},
        ),
        make_event(
            markets,
            "DataSourceRegistered",
            {"source": f"{site}/markets/", "contributor": markets.address},
        ),
    ]
    spec = {
        "start_urls": [f"{site}/index.html"],
        "max_depth": 1,
        "item_limit": 20,
        "follow": {"css": "a"},
        "fields": {"headline": {"css": "h1::text"}, "lede": {"css": "p.lede::text"}},
    }
    oracle = people.oracles[0]
    for _ in range(3):
        messages.append(_request(oracle, "data", spec))
    messages.append(_request(oracle, "data", {**spec, "start_urls": ["http://127.0.0.1:9/"]}))
    if with_llm:
        refs = [f"{site}/science/1.html", f"{site}/markets/2.html"]
        llm_spec = {
            "model": "tiny-llama",
            "prompt": "Summarise the news.",
            "max_tokens": 16,
            "seed": 1,
            "data_refs": refs,
        }
        messages += [_request(oracle, "llm", llm_spec) for _ in range(2)]
    return messages


def _request(oracle: LocalAccount, kind: str, spec: dict[str, Any]) -> SignedMessage:
    payload = {"request_id": str(uuid.uuid4()), "kind": kind, "spec": spec, "fee": str(10**16)}
    return make_event(oracle, "RequestSubmitted", payload)


def _attribution(store: EventStore) -> dict[str, int]:
    units: Counter[str] = Counter()
    for event in EventLog(store).iterate(types=["DataUsed"]):
        assert isinstance(event.payload, DataUsed)
        for use in event.payload.uses:
            units[use.contributor] += use.units
    return dict(units)


def _read_models(settings: Settings, store: EventStore, progress: Progress) -> dict[str, Any]:
    """Migrate the read models, bring them up to the store's head, and read them back."""
    db = open_read_db(settings)
    try:
        migrate(db.url)
        runner = ProjectionRunner(EventLog(store), db, runner_config(settings))
        while runner.step():
            progress("project the read models", runner.position, runner.stats.head)
        return {
            "nodes": [_public(r, NODE_COLUMNS) for r in queries.nodes(db)],
            "uptime": [_public(r, UPTIME_COLUMNS) for r in queries.node_uptime(db)],
            "requests": _request_totals(queries.requests(db)),
            "oracle_balances": [_public(r, BALANCE_COLUMNS) for r in queries.oracle_balances(db)],
            "attribution": [_public(r, ATTRIBUTION_COLUMNS) for r in queries.attribution(db)],
        }
    finally:
        db.close()


NODE_COLUMNS = ("address", "role", "status", "active_stake", "heartbeats", "last_heartbeat")
UPTIME_COLUMNS = ("node", "epoch", "covered_s", "staked_s", "expected_s", "uptime_ppm",
                  "heartbeats", "late_heartbeats")  # fmt: skip
BALANCE_COLUMNS = ("oracle", "deposited", "reserved", "spent", "available", "unpaid_requests")
ATTRIBUTION_COLUMNS = ("contributor", "epoch", "source", "units", "requests")


def _public(row: dict[str, Any], columns: tuple[str, ...]) -> dict[str, Any]:
    """JSON-safe: wei (beyond 2^53) as decimal strings, times as RFC 3339."""
    return {c: _json_value(row[c]) for c in columns}


def _json_value(value: Any) -> Any:
    if isinstance(value, datetime):
        return format_timestamp(value)
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) > 2**53:
        return str(value)
    return value


def _request_totals(rows: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    totals: dict[str, dict[str, Any]] = {}
    for row in rows:
        entry = totals.setdefault(row["status"], {"count": 0, "fees": 0})
        entry["count"] += 1
        entry["fees"] += row["fee"]
    return {k: {"count": v["count"], "fees": str(v["fees"])} for k, v in sorted(totals.items())}


# --- 4. volume ------------------------------------------------------------------------------


def _volume(
    bus: Bus, settings: Settings, people: Participants, seed: int, requests: int, progress: Progress
) -> int:
    scenario = Scenario(people, seed=seed, start=datetime.now(UTC) - timedelta(minutes=5))
    messages: list[Any] = [
        *scenario.sources(),
        *scenario.traffic(requests, heartbeats_per_worker=max(1, requests // 10)),
    ]
    messages += scenario.probes()
    _send(bus, settings, messages, progress)
    return len(messages)


def _send(
    bus: Bus, settings: Settings, messages: list[Any], progress: Progress | None = None
) -> None:
    producer = bus.producer()
    try:
        for done, m in enumerate(messages, 1):
            key = m.key.encode() if isinstance(m.key, str) else m.key
            producer.send(settings.bus.events_topic, key, m.value)
            if progress and done % 100 == 0:
                progress("produce signed events", done, len(messages))
        producer.flush()
    finally:
        producer.close()
    if progress:
        progress("produce signed events", len(messages), len(messages))


# --- ingest ---------------------------------------------------------------------------------


def _ingest(
    bus: Bus, store: EventStore, settings: Settings, step: str, progress: Progress
) -> Counter[str]:
    ingestor = Ingestor(bus, store, ingest_config(settings))
    idle_since = time.monotonic()

    def on_batch(_: Counter[str]) -> None:
        nonlocal idle_since
        idle_since = time.monotonic()
        progress(step, ingestor.stats["stored"], ingestor.stats["stored"])

    ingestor.run(lambda: time.monotonic() - idle_since > 1.5, on_batch)
    progress(step, ingestor.stats["stored"], ingestor.stats["stored"])
    return ingestor.stats


@contextmanager
def tiny_llm(home: Path) -> Iterator[Any | None]:
    """A vLLM engine on a tiny model built here, when the vLLM venv is installed."""
    from workers.llm import VllmEngine, build_tiny_model, default_vllm_python, vllm_installed

    python = default_vllm_python()
    if not vllm_installed(python):
        with nullcontext(None) as none:
            yield none
        return
    model = build_tiny_model(python, home / "models" / "tiny-llama")
    with VllmEngine(
        python, model, served_model="tiny-llama", max_model_len=128, log_path=home / "vllm.log"
    ) as engine:
        yield engine
