"""Worker nodes end to end: oracle requests → ingest → requests topic → workers → signed
results → ingest → the store, over real buses and stores, against a site on 127.0.0.1.

Ingest learns the worker's stake from a trusted indexer's ``Staked`` event. The worker's
own stake check is the chain's: anvil with the contracts deployed and the worker staked,
for every ``masa worker run`` subprocess; in-process workers get an injected check.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from eth_account.signers.local import LocalAccount
from web3 import Web3

from contracts.client import MasaClient, Role
from contracts.deploy import Deployment, DeployParams, deploy_all
from indexer.bus.base import partition_for
from indexer.events import SignedMessage, make_event
from indexer.ingest.runner import Ingestor
from masa.app.keys import load_keystore
from masa.app.synthetic import ORACLE_ROLE, WORKER_ROLE, Scenario
from masa.app.wiring import ingest_config, worker_config
from masa.errors import ChainError
from tests.integration.conftest import Harness
from tests.support.anvil import AnvilNode
from tests.support.fixtures import start_anvil
from tests.support.llm import count_tokens
from tests.support.llm import vllm_python as find_vllm_python
from tests.support.site import Site, closed_port, serve_site
from workers.llm import build_tiny_model
from workers.node import Worker, result_event_id
from workers.scraping import DataItem, items_digest
from workers.scraping.spec import sort_items

MASA = str(Path(sys.executable).parent / "masa")
PASSWORD = "worker-test-password"
BOTH = pytest.mark.parametrize(
    "harness",
    [("embedded", "sqlite"), ("kafka", "postgres")],
    indirect=True,
    ids=["embedded-sqlite", "kafka-postgres"],
)
EMBEDDED = pytest.mark.parametrize(
    "harness", [("embedded", "sqlite")], indirect=True, ids=["embedded-sqlite"]
)
ARTICLE_FIELDS = {
    "title": {"css": "article h1"},
    "author": {"css": ".author::text"},
    "body": {"xpath": "//div[@class='body']"},
}
FAST = {
    "download_timeout_s": 1.0,
    "download_delay_s": 0.02,
    "heartbeat_interval_s": 1.0,
    "job_timeout_s": 30.0,
    "concurrency": 2,
}


def staked(_address: str) -> None:
    """The in-process workers' stake check: staked."""


@pytest.fixture(scope="module")
def site() -> Iterator[Site]:
    with serve_site() as served:
        yield served
        assert not [hit for hit in served.hits if hit.path.startswith("/private/")]


# --- the network --------------------------------------------------------------------------


@dataclass
class Network:
    """One oracle, one or more workers, three contributors; events to send, then outcomes."""

    harness: Harness
    scenario: Scenario = field(init=False)
    outbox: list[SignedMessage] = field(default_factory=list)

    def __post_init__(self) -> None:
        people = self.harness.people
        self.scenario = Scenario(people, start=datetime.now(UTC) - timedelta(seconds=30))
        self.outbox.append(self.scenario.stake(self.oracle, ORACLE_ROLE))
        self.outbox += self.scenario.fund(self.oracle)  # ingest accepts only funded requests

    @property
    def oracle(self) -> LocalAccount:
        return self.harness.people.oracles[0]

    @property
    def contributors(self) -> list[LocalAccount]:
        return self.harness.people.contributors

    def stake(self, worker: LocalAccount) -> None:
        self.outbox.append(self.scenario.stake(worker, WORKER_ROLE))

    def register(self, contributor: LocalAccount, source: str) -> None:
        payload = {"source": source, "contributor": contributor.address}
        self.outbox.append(make_event(contributor, "DataSourceRegistered", payload))

    def submit(self, kind: str, spec: dict[str, Any], request_id: uuid.UUID | None = None) -> str:
        rid = str(request_id or uuid.uuid4())
        payload = {"request_id": rid, "kind": kind, "spec": spec, "fee": "1000"}
        self.outbox.append(make_event(self.oracle, "RequestSubmitted", payload))
        return rid

    def send(self) -> None:
        self.harness.send(self.outbox)
        self.outbox = []

    def stored(self, type_name: str) -> dict[str, list[dict[str, Any]]]:
        """Stored envelopes of one type, by request id (or by producer for heartbeats)."""
        found: dict[str, list[dict[str, Any]]] = {}
        for record in self.harness.stored():
            envelope = record.envelope
            if envelope["type"] == type_name:
                key = envelope["payload"].get("request_id", envelope["producer"])
                found.setdefault(key, []).append(envelope)
        return found

    def closed(self) -> dict[str, list[dict[str, Any]]]:
        """Completions and failures by request id."""
        outcomes = self.stored("RequestCompleted")
        for rid, failures in self.stored("RequestFailed").items():
            outcomes.setdefault(rid, []).extend(failures)
        return outcomes


def articles_spec(site: Site, path: str = "/", depth: int = 1) -> dict[str, Any]:
    return {
        "start_urls": [site.url(path)],
        "max_depth": depth,
        "fields": ARTICLE_FIELDS,
        "follow": {"css": "a"},
    }


def with_worker(harness: Harness, **changes: Any) -> Harness:
    worker = harness.settings.worker.model_copy(
        update={"group": f"workers-{uuid.uuid4().hex[:8]}", **FAST, **changes}
    )
    return Harness(harness.settings.model_copy(update={"worker": worker}), harness.people)


def finished(worker: Worker) -> int:
    return sum(
        n for name, n in worker.stats.items() if name == "completed" or name.startswith("failed:")
    )


def serve(
    harness: Harness, account: LocalAccount, requests: int, *, timeout_s: float = 90
) -> Worker:
    """Run an in-process worker until it has reported ``requests`` outcomes."""
    worker = Worker(harness.bus, worker_config(harness.settings), account, staked)
    deadline = time.monotonic() + timeout_s
    worker.run(lambda: finished(worker) >= requests or time.monotonic() > deadline)
    return worker


# --- in-process workers -------------------------------------------------------------------


@BOTH
def test_data_requests_are_served_attributed_and_failed_with_reasons(
    harness: Harness, site: Site
) -> None:
    harness = with_worker(harness, blocked_domains=["localhost"])
    net = Network(harness)
    worker_key, (alice, bob, carol) = harness.people.workers[0], net.contributors
    net.stake(worker_key)
    net.register(alice, site.url("/articles"))
    net.register(bob, site.url("/list"))
    net.register(carol, site.url("/articles"))  # too late: the source is alice's
    products = {"name": {"css": ".name"}, "price": {"css": ".price::text"}}
    articles = net.submit("data", articles_spec(site))
    listing = net.submit(
        "data",
        {
            "start_urls": [site.url("/list")],
            "max_depth": 0,
            "item_selector": {"css": "li.product"},
            "fields": products,
        },
    )
    unreachable = net.submit(
        "data", {"start_urls": [f"http://127.0.0.1:{closed_port()}/"], "fields": ARTICLE_FIELDS}
    )
    blocked = net.submit(
        "data",
        {"start_urls": [f"http://localhost:{site.port}/articles/1"], "fields": ARTICLE_FIELDS},
    )
    llm = net.submit("llm", {"model": "tiny-llama", "prompt": "hello", "max_tokens": 4})
    net.send()
    harness.ingest()
    worker = serve(harness, worker_key, 5)
    harness.ingest()

    closed = net.closed()
    assert {rid: len(events) for rid, events in closed.items()} == dict.fromkeys(
        [articles, listing, unreachable, blocked, llm], 1
    )
    done = {rid: events[0]["payload"] for rid, events in closed.items()}
    expected_articles = [site.article(k) for k in (1, 2, 3)]
    assert done[articles] == {
        "request_id": articles,
        "result_digest": items_digest(expected_articles),
        "units": 3,
    }
    expected_products = sort_items(
        DataItem(source_url=site.url("/list"), fields={"name": f"Widget {n}", "price": p})
        for n, p in (("A", "1.00"), ("B", "2.50"), ("C", "9.99"))
    )
    assert done[listing]["result_digest"] == items_digest(expected_products)
    assert done[listing]["units"] == 3
    assert (done[unreachable]["reason"], done[blocked]["reason"], done[llm]["reason"]) == (
        "unreachable",
        "blocked_domain",
        "llm_unavailable",
    )
    used = {rid: events[0]["payload"]["uses"] for rid, events in net.stored("DataUsed").items()}
    assert used == {
        articles: [
            {"source": site.url("/articles"), "contributor": alice.address.lower(), "units": 3}
        ],
        listing: [{"source": site.url("/list"), "contributor": bob.address.lower(), "units": 3}],
    }
    completed = closed[articles][0]
    assert completed["producer"] == worker.address
    assert completed["id"] == str(
        result_event_id(uuid.UUID(articles), worker.address, "RequestCompleted")
    )
    assert all(hit.host == f"127.0.0.1:{site.port}" for hit in site.hits)  # never localhost
    assert "/robots.txt" in site.paths() and "/private/secret" not in site.paths()
    beats = net.stored("Heartbeat")[worker.address]
    assert beats and all(b["payload"]["capabilities"] == ["data"] for b in beats)
    assert [letter.reason for letter in harness.dead_letters()] == ["source_taken"]


@EMBEDDED
def test_a_worker_that_is_not_staked_refuses_to_start(harness: Harness) -> None:
    harness = with_worker(harness)
    net = Network(harness)
    net.submit("data", {"start_urls": ["http://127.0.0.1:9/"], "fields": ARTICLE_FIELDS})
    net.send()
    harness.ingest()
    before = harness.bus.end_offsets(harness.settings.bus.events_topic)

    def not_staked(address: str) -> None:
        raise ChainError(f"{address} is not staked as a worker")

    worker = Worker(
        harness.bus, worker_config(harness.settings), harness.people.workers[0], not_staked
    )
    with pytest.raises(ChainError, match="not staked as a worker"):
        worker.run(lambda: False)
    assert harness.bus.end_offsets(harness.settings.bus.events_topic) == before
    assert worker.stats == Counter()


@EMBEDDED
def test_a_worker_whose_stake_is_gone_stops(harness: Harness) -> None:
    harness = with_worker(harness, stake_recheck_s=0.3)
    checks: list[str] = []

    def staked_once(address: str) -> None:
        checks.append(address)
        if len(checks) > 1:
            raise ChainError(f"{address} is not staked as a worker (it holds no role)")

    worker = Worker(
        harness.bus, worker_config(harness.settings), harness.people.workers[0], staked_once
    )
    started = time.monotonic()
    with pytest.raises(ChainError, match="no role"):
        worker.run(lambda: time.monotonic() - started > 30)
    assert time.monotonic() - started < 10
    assert len(checks) == 2


@EMBEDDED
def test_a_request_served_again_by_the_same_worker_is_stored_once(
    harness: Harness, site: Site
) -> None:
    harness = with_worker(harness)
    net = Network(harness)
    worker_key = harness.people.workers[0]
    net.stake(worker_key)
    net.register(net.contributors[0], site.url("/"))
    requests = [net.submit("data", articles_spec(site, f"/articles/{k}", 0)) for k in (1, 2, 3)]
    net.send()
    harness.ingest()
    serve(harness, worker_key, 3)
    harness.ingest()
    first, before = net.closed(), {r.event_id for r in harness.stored()}
    serve(with_worker(harness), worker_key, 3)  # a new group: as if no offset was committed
    stats = harness.ingest()
    assert stats["duplicate"] == 6  # completions and data used
    added = [r.type for r in harness.stored() if r.event_id not in before]
    assert set(added) == {"Heartbeat"}
    assert net.closed() == first
    assert sorted(first) == sorted(requests)
    assert harness.dead_letters() == []


@EMBEDDED
def test_jobs_in_hand_finish_when_the_worker_stops(harness: Harness, site: Site) -> None:
    harness = with_worker(harness, download_timeout_s=10.0, shutdown_grace_s=20.0)
    net = Network(harness)
    first_key, second_key = harness.people.workers[:2]
    net.stake(first_key)
    net.stake(second_key)
    slow = {"start_urls": [site.url("/slow")], "max_depth": 0, "fields": ARTICLE_FIELDS}
    requests = [net.submit("data", slow) for _ in range(4)]
    net.send()
    harness.ingest()
    first = Worker(harness.bus, worker_config(harness.settings), first_key, staked)
    first.run(lambda: first.stats["taken"] >= 2)
    assert first.stats == Counter(taken=2, completed=2)
    second = serve(harness, second_key, 2)
    assert second.stats == Counter(taken=2, completed=2)
    harness.ingest()
    closed = net.closed()
    assert sorted(closed) == sorted(requests)
    assert all(
        len(events) == 1 and events[0]["type"] == "RequestCompleted" for events in closed.values()
    )
    assert harness.dead_letters() == []


# --- `masa worker run` processes ----------------------------------------------------------


@dataclass
class Chain:
    node: AnvilNode
    w3: Web3
    deployment: Deployment
    deployment_file: Path

    def stake_worker(self, account: LocalAccount) -> None:
        admin = self.node.accounts[0]
        self.w3.eth.send_transaction(
            {"from": admin.address, "to": account.address, "value": 10**18}
        )
        MasaClient(self.w3, self.deployment, admin).mint(account.address, 1_000)
        MasaClient(self.w3, self.deployment, account).stake(Role.WORKER, 1_000)


@pytest.fixture(scope="module")
def chain(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Chain]:
    node = start_anvil()
    try:
        w3 = Web3(Web3.HTTPProvider(node.rpc_url))
        params = DeployParams(cooldown_s=60, min_worker_stake=100, min_oracle_stake=100)
        deployment = deploy_all(w3, node.accounts[0], params)
        path = tmp_path_factory.mktemp("chain") / "deployment.json"
        deployment.save(path)
        yield Chain(node, w3, deployment, path)
    finally:
        node.stop()


class WorkerProcess:
    """``masa worker run`` with its output collected line by line."""

    def __init__(self, env: dict[str, str]) -> None:
        self.proc = subprocess.Popen(
            [MASA, "worker", "run"],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        with self.proc.stdout:
            for line in self.proc.stdout:
                self.lines.append(line)

    def output(self) -> str:
        return "".join(self.lines)

    def wait_for(self, pattern: str, count: int = 1, timeout_s: float = 60) -> None:
        wait_until(lambda: len(re.findall(pattern, self.output())) >= count, timeout_s, self.output)

    def served(self) -> set[str]:
        return set(re.findall(r"serving \w+ request ([0-9a-f-]{36})", self.output()))

    def stop(self, sig: int = signal.SIGTERM, timeout_s: float = 60) -> int:
        self.proc.send_signal(sig)
        code = self.proc.wait(timeout=timeout_s)
        self._reader.join(timeout=5)
        return code

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self._reader.join(timeout=5)


def wait_until(
    condition: Callable[[], bool], timeout_s: float, why: Callable[[], str] = str
) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s}s: {why()[-3000:]}")
        time.sleep(0.3)


@dataclass
class Workers:
    """Keystores made by ``masa keys new``, staked on chain, and their processes."""

    harness: Harness
    chain: Chain
    tmp_path: Path
    running: list[WorkerProcess] = field(default_factory=list)

    def new_key(self, name: str, *, stake: bool = True) -> tuple[Path, LocalAccount]:
        path = self.tmp_path / "keys" / f"{name}.json"
        env = {**os.environ, "MASA_KEY_PASSWORD": PASSWORD}
        subprocess.run(
            [MASA, "keys", "new", "--out", str(path)], env=env, check=True, capture_output=True
        )
        account = load_keystore(path, PASSWORD)
        if stake:
            self.chain.stake_worker(account)
        return path, account

    def staked(self, net: Network, *names: str) -> list[tuple[Path, LocalAccount]]:
        """New keys staked on chain (the worker checks) and in the ledger (ingest checks)."""
        keys = [self.new_key(name) for name in names]
        for _, account in keys:
            net.stake(account)
        return keys

    def start(self, keystore: Path, **settings: Any) -> WorkerProcess:
        env = {**os.environ, **self.harness.env(), "MASA_KEY_PASSWORD": PASSWORD, "COLUMNS": "300"}
        env |= {
            "MASA_CHAIN__RPC_URL": self.chain.node.rpc_url,
            "MASA_CHAIN__DEPLOYMENT_FILE": str(self.chain.deployment_file),
            "MASA_WORKER__KEYSTORE": str(keystore),
            "MASA_LOG_LEVEL": "INFO",
        }
        worker = self.harness.settings.worker.model_dump(mode="json") | settings
        env |= {
            f"MASA_WORKER__{k.upper()}": _env_value(v)
            for k, v in worker.items()
            if v is not None and k != "keystore"
        }
        process = WorkerProcess(env)
        self.running.append(process)
        return process


def _env_value(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value)


@pytest.fixture
def workers(harness: Harness, chain: Chain, tmp_path: Path) -> Iterator[Workers]:
    group = Workers(with_worker(harness), chain, tmp_path)
    try:
        yield group
    finally:
        for process in group.running:
            process.kill()


@contextmanager
def ingesting(harness: Harness) -> Iterator[None]:
    """Ingest in the background for the duration of the block."""
    store = harness.store()
    ingestor = Ingestor(harness.bus, store, ingest_config(harness.settings))
    stop = threading.Event()
    thread = threading.Thread(target=ingestor.run, args=(stop.is_set,))
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()
        store.close()


def spread_ids(count: int, partitions: int) -> list[uuid.UUID]:
    """Request ids that land evenly on every partition, so every worker gets some."""
    ids: list[uuid.UUID] = []
    per = Counter[int]()
    while len(ids) < count:
        rid = uuid.uuid4()
        p = partition_for(str(rid).encode(), partitions)
        if per[p] < count // partitions:
            per[p] += 1
            ids.append(rid)
    return ids


@EMBEDDED
def test_masa_worker_run_refuses_a_key_not_staked_on_chain(workers: Workers) -> None:
    keystore, account = workers.new_key("idle", stake=False)
    process = workers.start(keystore)
    assert process.proc.wait(timeout=60) == 1
    process.kill()
    assert process.output() == (
        f"masa: error: {account.address} is not staked as a worker (it holds no role); "
        "stake first\n"
    )


@BOTH
def test_two_workers_share_requests_and_a_killed_ones_jobs_are_served_once(
    workers: Workers, site: Site
) -> None:
    harness = workers.harness
    net = Network(harness)
    (first_key, first), (second_key, second) = workers.staked(net, "first", "second")
    net.register(net.contributors[0], site.url("/articles"))
    net.send()
    with ingesting(harness):
        one = workers.start(first_key, download_delay_s=0.2)
        one.wait_for("assigned")
        two = workers.start(second_key, download_delay_s=0.2)
        two.wait_for("assigned")
        time.sleep(1.0)  # the first worker gives up its share of the partitions
        ids = spread_ids(9, harness.settings.bus.partitions)
        requests = [net.submit("data", articles_spec(site, "/articles/"), rid) for rid in ids]
        net.send()
        one.wait_for("serving")
        time.sleep(0.3)
        one.kill()  # SIGKILL, mid-job
        wait_until(lambda: len(net.closed()) == len(requests), 120, two.output)
        assert two.stop() == 0, two.output()
    closed = net.closed()
    assert sorted(closed) == sorted(requests)
    assert all(len(events) == 1 for events in closed.values())
    producers = {rid: events[0]["producer"] for rid, events in closed.items()}
    assert set(producers.values()) <= {first.address.lower(), second.address.lower()}
    rerun = {rid for rid in one.served() if producers[rid] == second.address.lower()}
    assert rerun, f"no job of the killed worker was served again: {one.output()}"
    assert all(events[0]["type"] == "RequestCompleted" for events in closed.values())


@EMBEDDED
def test_sigterm_fails_the_jobs_in_hand_after_the_grace_period_and_loses_none(
    workers: Workers, site: Site
) -> None:
    harness = workers.harness
    net = Network(harness)
    (first_key, _), (second_key, _) = workers.staked(net, "first", "second")
    slow = {"start_urls": [site.url("/slow")], "max_depth": 0, "fields": ARTICLE_FIELDS}
    requests = [net.submit("data", slow) for _ in range(5)]
    net.send()
    with ingesting(harness):
        one = workers.start(first_key, download_timeout_s=10.0, shutdown_grace_s=1.0)
        one.wait_for("serving", count=2)
        started = time.monotonic()
        assert one.stop(signal.SIGTERM) == 0, one.output()
        assert time.monotonic() - started < 8
        in_hand = one.served()
        wait_until(lambda: set(net.closed()) >= in_hand, 30)
        closed = net.closed()
        assert {rid: e[0]["payload"]["reason"] for rid, e in closed.items()} == dict.fromkeys(
            in_hand, "shutdown"
        )
        two = workers.start(second_key, download_timeout_s=10.0)
        wait_until(lambda: len(net.closed()) == len(requests), 60, two.output)
        assert two.stop() == 0
    closed = net.closed()
    assert all(len(events) == 1 for events in closed.values())
    assert two.served() == set(requests) - in_hand
    assert all(closed[rid][0]["type"] == "RequestCompleted" for rid in two.served())
    assert harness.dead_letters() == []


# --- LLM jobs on the real vLLM engine -----------------------------------------------------

SERVED = "tiny-llama"
PROMPT = "Workers stake tokens and earn fees."


@pytest.fixture(scope="module")
def vllm_python() -> Path:
    return find_vllm_python()


@pytest.fixture(scope="module")
def tiny_model(vllm_python: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_model(vllm_python, tmp_path_factory.mktemp("models") / SERVED)


@pytest.mark.vllm
@EMBEDDED
def test_llm_requests_run_on_the_engine_deterministically_and_attribute_their_data(
    workers: Workers, vllm_python: Path, tiny_model: Path
) -> None:
    harness = workers.harness
    net = Network(harness)
    [(keystore, account)] = workers.staked(net, "llm")
    alice = net.contributors[0]
    net.register(alice, "https://data.example.org/articles")
    spec = {"model": SERVED, "prompt": PROMPT, "max_tokens": 8, "temperature": 0.0, "seed": 7}
    refs = [
        "https://data.example.org/articles/1",
        "https://data.example.org/articles/2",
        "https://data.example.org/articles/1",  # the same item twice counts once
        "https://elsewhere.example.org/x",  # registered to nobody
    ]
    retrieval = net.submit("llm", {**spec, "data_refs": refs})
    plain = net.submit("llm", spec)
    messages = [{"role": "user", "content": "hello"}]
    chat = net.submit(
        "llm", {**{k: v for k, v in spec.items() if k != "prompt"}, "messages": messages}
    )
    other = net.submit("llm", {**spec, "model": "another-model"})
    net.send()
    with ingesting(harness):
        process = workers.start(
            keystore,
            llm_model_path=str(tiny_model),
            llm_served_model=SERVED,
            llm_max_model_len=128,
            vllm_python=str(vllm_python),
            job_timeout_s=120.0,
        )
        wait_until(lambda: len(net.closed()) == 4, 400, process.output)
        assert process.stop() == 0, process.output()
    done = {rid: events[0]["payload"] for rid, events in net.closed().items()}
    assert done[other]["reason"] == "model_not_served"
    assert done[retrieval]["result_digest"] == done[plain]["result_digest"]
    prompt_tokens = count_tokens(vllm_python, tiny_model, PROMPT)
    assert done[retrieval]["units"] == done[plain]["units"]
    assert prompt_tokens < done[plain]["units"] <= prompt_tokens + 8
    assert done[chat]["units"] > 0
    used = {rid: events[0]["payload"]["uses"] for rid, events in net.stored("DataUsed").items()}
    source = {"source": "https://data.example.org/articles", "contributor": alice.address.lower()}
    assert used == {retrieval: [{**source, "units": 2}]}
    beats = net.stored("Heartbeat")[account.address.lower()]
    assert all(b["payload"]["capabilities"] == ["data", "llm"] for b in beats)
