"""``masa demo``: the whole network on embedded defaults, in one process, with no services.

The steps follow the data flow of DESIGN §1, then the money of §7:

1. chain: deploy the contracts on an in-process EVM; workers and oracles stake, oracles
   prepay fees, emissions are funded (``demo_chain``);
2. index: the chain indexer turns those logs into signed events on the (embedded) bus;
3. epochs: a governor publishes short epochs starting in a moment; ingest and a live worker
   run on threads (``demo_network``); an oracle app asks for a news summary of a local website
   (``demo_oracle``: a scrapy data request, then an LLM request over its items when vLLM is
   installed), and the rest of the synthetic network reports what it did in each epoch:
   heartbeats, requests served, data used;
4. money: the settler closes each epoch and posts its root; a worker and a contributor claim;
   their statement lines, ``explain`` and ``verify`` (``demo_money``);
5. volume: malformed messages among valid ones, each rejected with its reason;
6. report: what was stored, what was rejected and why, the read models.
"""

from __future__ import annotations

import math
import shutil
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from uuid import UUID

import orjson
from eth_account import Account
from eth_account.signers.local import LocalAccount
from eth_utils import keccak

from contracts.client import MasaClient
from contracts.deploy import Deployment
from indexer.bus.base import Bus
from indexer.events import SignedMessage, make_event
from indexer.events.fields import format_timestamp
from indexer.events.types import DataUsed
from indexer.ingest.dlq import read_dead_letters
from indexer.store.base import EventStore
from indexer.store.log import EventLog
from masa.app.client import OracleClient
from masa.app.demo_chain import EMISSION, STAKE, DemoChain, set_up
from masa.app.demo_money import Ledger, Money, Payee, claim_for, epoch_rows, read_back, settle
from masa.app.demo_network import Network
from masa.app.demo_oracle import NewsSummary, run_news_summary
from masa.app.demo_site import DemoSite
from masa.app.settings import Settings
from masa.app.synthetic import Participants, Scenario
from masa.app.wiring import (
    open_bus,
    open_read_db,
    open_store,
    run_indexer,
    runner_config,
    worker_config,
)
from projections import queries
from projections.db import ReadDb
from projections.runner import ProjectionRunner
from projections.schema import migrate
from settlement.settler import SettlementDb
from workers.node import Worker, chain_stake_check

Progress = Callable[[str, int, int], None]
EPOCH_S = 3
"""The demo's epochs: short, so that two of them settle in seconds."""
GRACE_S = 1
LEAD_S = 2
"""Epoch 0 starts this long after the parameters are sent: time to store them before any of
the epoch's heartbeats."""
NO_VLLM = "skipped: vLLM is not installed (scripts/provision-vllm installs it)"


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
    news: NewsSummary | None = None
    money: Money | None = None
    read_models: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0

    def to_json(self) -> dict[str, Any]:
        return {
            "chain": self.chain,
            "chain_events_indexed": dict(sorted(self.indexed.items())),
            "live_requests": dict(sorted(self.live.items())),
            "attribution_units": self.attribution,
            "llm": self.llm,
            "news_summary": None if self.news is None else self.news.to_json(),
            "settlement": None if self.money is None else self.money.to_json(),
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
        ingest={"hold_timeout_s": 5, "poll_timeout_s": 0.1},
        chain={"rpc_url": "inprocess", "finality_depth": 2, "poll_interval_s": 0.1},
        worker={
            "download_delay_s": 0.05,
            "job_timeout_s": 60,
            "heartbeat_interval_s": 1,
            "shutdown_grace_s": 5,
            "stake_recheck_s": 3600,
        },
        settlement={"confirmations": 2, "close_wait_s": 30, "poll_interval_s": 0.2},
    )


@dataclass(frozen=True)
class Epochs:
    """The demo's schedule: epoch ``e`` covers ``[genesis + e·length, genesis + (e+1)·length)``."""

    genesis: int
    length: int = EPOCH_S

    def start(self, epoch: int) -> int:
        return self.genesis + epoch * self.length

    def of(self, unix_s: float) -> int:
        return max(0, int(unix_s - self.genesis) // self.length)


def run_demo(
    settings: Settings,
    *,
    requests: int,
    seed: int,
    progress: Progress,
    llm: Any | None = None,
    skip_llm: str = NO_VLLM,
) -> DemoReport:
    """``llm`` is a started ``VllmEngine`` serving ``tiny-llama``, or None for data jobs only
    (``skip_llm`` says why)."""
    started = time.monotonic()
    demo = Demo(_trusting(settings, Participants.from_seed(seed)), seed, progress)
    try:
        report = demo.run(requests, llm, skip_llm)
    finally:
        demo.close()
    report.seconds = time.monotonic() - started
    return report


class Demo:
    """One run: the participants, the embedded bus and store (this thread's read port: the
    oracle app's and the settler's), the read models, and the steps in order."""

    def __init__(self, settings: Settings, seed: int, progress: Progress) -> None:
        self.settings = settings
        self.people = Participants.from_seed(seed)
        self.worker_key = live_worker(seed)
        self.treasury = _key(f"masa-demo-treasury:{seed}")
        self.scenario = Scenario(self.people, seed=seed)
        self.progress = progress
        self.produced = 0
        self.bus = open_bus(settings)
        self.store = open_store(settings)
        self.log = EventLog(self.store)
        self.read_db = open_read_db(settings)
        migrate(self.read_db.url)

    def close(self) -> None:
        try:
            self.store.close()
        finally:
            self.read_db.close()

    def run(self, requests: int, llm: Any | None, skip_llm: str) -> DemoReport:
        report = DemoReport(llm="on" if llm is not None else skip_llm)
        chain, deployment = self.chain_up(report)
        with Network(self.bus, self.settings) as net:
            with DemoSite() as site:
                epochs = self.open_epochs(net, chain, deployment, site.url, llm)
                report.news = self.oracle_app(site.url, None if llm is not None else skip_llm)
                assert "/private/notes.html" not in site.requested, "robots.txt was not obeyed"
            through = self.end_epochs(net, epochs)
            report.live = _outcomes(net.worker)
            self.backfill(epochs, through, requests)
            net.wait_ingested()
            report.money = self.money(net, chain, deployment, epochs, through)
            self.send(self.scenario.probes(), "produce malformed messages among valid ones")
            net.wait_ingested()
            report.ingest = Counter(net.ingest_stats)
        self.report_store(report)
        return report

    # --- 1, 2: chain and index --------------------------------------------------------------

    def chain_up(self, report: DemoReport) -> tuple[DemoChain, Deployment]:
        people, chain = self.people, DemoChain.open()
        assert people.settler is not None
        workers = [*people.workers, self.worker_key]
        deployment = set_up(chain, workers, people.oracles, people.settler,
                            finality_depth=self.settings.chain.finality_depth)  # fmt: skip
        report.chain = {
            "chain_id": deployment.chain_id,
            **{name: c.address for name, c in deployment.contracts().items()},
            "staked_workers": len(workers),
            "staked_oracles": len(people.oracles),
            "head": chain.w3.eth.block_number,
        }
        self.progress("deploy and stake on the in-process EVM", 1, 1)
        run_indexer(chain.w3, deployment, self.bus, self.settings, people.indexer)
        chain.go_live()
        self.progress("index the chain", 1, 1)
        return chain, deployment

    # --- 3: the epochs ----------------------------------------------------------------------

    def open_epochs(
        self, net: Network, chain: DemoChain, deployment: Deployment, site: str, llm: Any | None
    ) -> Epochs:
        """Register the sources, start the live worker, then publish the parameters: epoch 0
        starts in a moment, once they are stored (its heartbeats then all count)."""
        self.send([*_live_sources(site, self.people), *self.scenario.sources()])
        net.wait_ingested()
        self.start_worker(net, chain, deployment, llm)
        assert self.people.governor is not None
        epochs = Epochs(math.ceil(max(time.time(), chain.head_time())) + LEAD_S)
        self.send([_parameters(self.people.governor, self.treasury, epochs)])
        net.wait_ingested()
        self._wait_until(epochs.genesis, "epoch 0 starts", net)
        return epochs

    def start_worker(
        self, net: Network, chain: DemoChain, deployment: Deployment, llm: Any | None
    ) -> None:
        checked = threading.Event()
        check = chain_stake_check(MasaClient(chain.w3, deployment))

        def stake_check(address: str) -> None:  # once, at the worker's start
            check(address)
            checked.set()

        worker = Worker(self.bus, worker_config(self.settings), self.worker_key, stake_check, llm)
        net.start_worker(worker)
        while not checked.wait(0.1):  # py-evm is not thread-safe: nothing else reads it now
            net.check()

    def oracle_app(self, site: str, skip_llm: str | None) -> NewsSummary:
        client = OracleClient(
            self.bus, self.people.oracles[0], self.log, poll_s=0.05,
            events_topic=self.settings.bus.events_topic,
            results_topic=self.settings.bus.results_topic,
        )  # fmt: skip
        step = "oracle app: news summary (scrapy" + (")" if skip_llm else ", vLLM)")
        self.progress(step, 0, 1)
        news = run_news_summary(client, self.log, site, skip_llm)
        self.progress(step, 1, 1)
        return news

    def end_epochs(self, net: Network, epochs: Epochs) -> int:
        """The last epoch to settle: at least epoch 1, and the one the live work ended in.
        The governor makes the epochs after it long (the demo's are over), the demo waits for
        its end and grace, then stops the live worker."""
        through = max(1, epochs.of(time.time()))
        assert self.people.governor is not None
        self.send([_parameters(self.people.governor, self.treasury, epochs, through + 1)])
        self._wait_until(epochs.start(through + 1) + GRACE_S, f"epochs 0 to {through} end", net)
        net.stop_worker()
        return through

    def backfill(self, epochs: Epochs, through: int, requests: int) -> None:
        """What the synthetic network did in each epoch, reported now: heartbeats every
        second, requests served with the data they used (stamped inside each epoch)."""
        messages: list[SignedMessage] = []
        for epoch in range(through + 1):
            share = requests // (through + 1) + (epoch < requests % (through + 1))
            start = datetime.fromtimestamp(epochs.start(epoch), UTC)
            messages += self.scenario.epoch(start, epochs.length, share,
                                            first_seq=epoch * epochs.length + 1)  # fmt: skip
        self.send(messages, "produce the synthetic network's epochs")

    def _wait_until(self, unix_s: float, step: str, net: Network) -> None:
        total = max(1, math.ceil(unix_s - time.time()))
        while (left := unix_s - time.time()) > 0:
            net.check()
            self.progress(step, total - math.ceil(left), total)
            time.sleep(min(0.2, left))
        self.progress(step, total, total)

    # --- 4: money ---------------------------------------------------------------------------

    def money(
        self, net: Network, chain: DemoChain, deployment: Deployment, epochs: Epochs, through: int
    ) -> Money:
        people = self.people
        assert people.settler is not None
        ledger = Ledger(chain, deployment, self.bus, self.settings, people.indexer, net,
                        self.log, SettlementDb(self.read_db))  # fmt: skip
        records, lines = settle(ledger, people.settler, through, self.progress)
        payees = [Payee("worker", self.worker_key.address.lower()),
                  Payee("contributor", people.contributors[0].address.lower())]  # fmt: skip
        claim_for(ledger, self.worker_key, payees[0])  # the worker claims for itself;
        claim_for(ledger, chain.admin(), payees[1])  # anyone may claim for a contributor
        ledger.advance(self.settings.chain.finality_depth + 1)  # the Claimed logs, final
        settled, checks = read_back(ledger, payees)
        self.progress("claim, explain and verify", 1, 1)
        genesis = format_timestamp(datetime.fromtimestamp(epochs.genesis, UTC))
        return Money(genesis, epochs.length, epoch_rows(records, settled), payees, checks, lines)

    # --- 5, 6: volume and report ------------------------------------------------------------

    def send(self, messages: list[Any], step: str | None = None) -> None:
        producer = self.bus.producer()
        try:
            for done, m in enumerate(messages, 1):
                key = m.key.encode() if isinstance(m.key, str) else m.key
                producer.send(self.settings.bus.events_topic, key, m.value)
                if step and done % 100 == 0:
                    self.progress(step, done, len(messages))
            producer.flush()
        finally:
            producer.close()
        if step:
            self.produced += len(messages)
            self.progress(step, len(messages), len(messages))

    def report_store(self, report: DemoReport) -> None:
        live = {a.request_id for a in _answers(report.news)}
        report.produced = self.produced
        report.attribution = _attribution(self.log, live)
        report.stored_by_type = self.store.count_events()
        report.read_models = _read_models(self.read_db, self.store, self.settings, self.progress)
        topic = self.settings.bus.dlq_topic
        report.dead_letters = Counter(d.reason for d in read_dead_letters(self.bus, topic))
        report.indexed = _chain_types(self.bus, self.settings, self.people.indexer.address.lower())


def _trusting(settings: Settings, people: Participants) -> Settings:
    assert people.governor is not None and people.settler is not None
    trusted = {
        "trusted_indexers": [people.indexer.address.lower()],
        "trusted_governors": [people.governor.address.lower()],
        "trusted_settlers": [people.settler.address.lower()],
    }
    return settings.model_copy(update={"ingest": settings.ingest.model_copy(update=trusted)})


def _parameters(
    governor: LocalAccount, treasury: LocalAccount, epochs: Epochs, after: int | None = None
) -> SignedMessage:
    """The demo's short epochs from genesis; with ``after``, hour-long ones from that epoch."""
    genesis = datetime.fromtimestamp(epochs.genesis, UTC)
    payload = {
        "effective_epoch": after or 0, "genesis": format_timestamp(genesis),
        "epoch_length_s": epochs.length if after is None else 3600,
        "heartbeat_interval_s": 1, "grace_s": GRACE_S,
        "emission_per_epoch": str(EMISSION), "stake_cap": str(STAKE),
        "min_uptime_ppm": 100_000, "protocol_share_bps": 500, "data_share_bps": 2_000,
        "treasury": treasury.address.lower(),
    }  # fmt: skip
    return make_event(governor, "ParametersSet", payload)


def _key(label: str) -> LocalAccount:
    account: LocalAccount = Account.from_key(keccak(label.encode()))
    return account


def live_worker(seed: int) -> LocalAccount:
    """The worker that serves real jobs; the synthetic network's workers only sign events."""
    return _key(f"masa-demo-live-worker:{seed}")


def _live_sources(site: str, people: Participants) -> list[SignedMessage]:
    """The news site's two desks, each registered by a contributor."""
    desks = [("science", people.contributors[0]), ("markets", people.contributors[1])]
    return [
        make_event(
            c, "DataSourceRegistered", {"source": f"{site}/{desk}/", "contributor": c.address}
        )
        for desk, c in desks
    ]


def _outcomes(worker: Worker | None) -> Counter[str]:
    stats = worker.stats if worker is not None else Counter()
    return Counter({k: v for k, v in stats.items() if k == "completed" or k.startswith("failed")})


def _answers(news: NewsSummary | None) -> list[Any]:
    if news is None:
        return []
    return [a for a in (news.data, news.failed, news.summary) if a is not None]


def _attribution(log: EventLog, requests: set[UUID]) -> dict[str, int]:
    """DataUsed units by contributor, for the live requests."""
    units: Counter[str] = Counter()
    for event in log.iterate(types=["DataUsed"]):
        assert isinstance(event.payload, DataUsed)
        if event.payload.request_id in requests:
            for use in event.payload.uses:
                units[use.contributor] += use.units
    return dict(units)


def _chain_types(bus: Bus, settings: Settings, indexer: str) -> Counter[str]:
    """The chain events the indexer put on the bus, by type (the probes' forgeries aside)."""
    counts: Counter[str] = Counter()
    for record in bus.read_all(settings.bus.events_topic):
        try:
            data = orjson.loads(record.value)
        except orjson.JSONDecodeError:
            continue
        if not isinstance(data, dict) or str(data.get("producer", "")).lower() != indexer:
            continue
        if isinstance(data.get("payload"), dict) and "log" in data["payload"]:
            counts[data["type"]] += 1
    return counts


def _read_models(
    db: ReadDb, store: EventStore, settings: Settings, progress: Progress
) -> dict[str, Any]:
    """Bring the read models up to the store's head, and read them back."""
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
        python, model, served_model="tiny-llama", max_model_len=512, log_path=home / "vllm.log"
    ) as engine:
        yield engine
