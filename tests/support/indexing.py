"""Helpers of the chain indexer tests: an anvil with a deployment and random contract
activity, settings for each bus backend, and reading back what the indexer published.

``live(events)`` is what a consumer holds after applying retractions: the chain events
published and not retracted, by id. A fresh index of the final chain must hold the same.
"""

from __future__ import annotations

import random
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
from eth_account.signers.local import LocalAccount
from web3 import Web3

from contracts import load_artifact
from contracts.client import MasaClient, Role
from contracts.deploy import Deployment, DeployParams, deploy_all
from indexer.bus.base import Bus
from indexer.chain.decode import LogDecoder
from indexer.chain.runner import IndexerStats
from indexer.events import CHAIN_TYPES
from masa.app.settings import Settings
from masa.app.wiring import FOLLOWED_CONTRACTS, open_bus, run_indexer

ADMIN, INDEXER = 0, 1
USERS = range(2, 10)


def deploy(w3: Web3, accounts: list[LocalAccount]) -> Deployment:
    params = DeployParams(cooldown_s=60, min_worker_stake=100, min_oracle_stake=100)
    deployment = deploy_all(w3, accounts[ADMIN], params)
    admin = MasaClient(w3, deployment, accounts[ADMIN])
    for i in [ADMIN, *USERS]:
        admin.mint(accounts[i].address, 10**9)
    return deployment


@dataclass
class Activity:
    """Random but valid contract calls: stakes, unstakes, slashes, funding, fee deposits."""

    w3: Web3
    deployment: Deployment
    accounts: list[LocalAccount]
    rng: random.Random = field(default_factory=lambda: random.Random(1))
    _clients: dict[int, MasaClient] = field(default_factory=dict)

    def client(self, index: int) -> MasaClient:
        if index not in self._clients:
            self._clients[index] = MasaClient(self.w3, self.deployment, self.accounts[index])
        return self._clients[index]

    def run(self, calls: int) -> None:
        for _ in range(calls):
            self.call()

    def call(self) -> None:
        user = self.rng.choice(USERS)
        address = self.accounts[user].address
        client = self.client(user)
        stake = client.staking.functions.stakeOf(address).call()
        kind = self.rng.choice(["stake", "stake", "unstake", "slash", "fund", "fees"])
        if kind == "stake" or (kind in ("unstake", "slash") and stake < 200):
            client.stake(Role.WORKER if user % 2 else Role.ORACLE, self.rng.randint(100, 1000))
        elif kind == "unstake":
            client.request_unstake(self.rng.randint(1, stake - 100))
        elif kind == "slash":
            self.client(ADMIN).slash(address, self.rng.randint(1, 50), "test")
        elif kind == "fund":
            self.client(ADMIN).fund(self.rng.randint(1, 10**6))
        else:
            client.deposit_fees(self.rng.randint(1, 10**4))

    def fund_blocks(self, blocks: int) -> None:
        """Exactly ``blocks`` blocks, one ``Funded`` log each (amounts from the generator, so
        the same count after a rewind makes different blocks)."""
        admin = self.client(ADMIN)
        if (
            admin.token.functions.allowance(admin.address, admin.distributor.address).call()
            < 2**200
        ):
            admin.send(admin.token.functions.approve(admin.distributor.address, 2**255))
        for _ in range(blocks):
            admin.send(admin.distributor.functions.fund(self.rng.randint(1, 10**6)))


def indexer_settings(home: Path, backend: str, kafka_topics: Any = None, **chain: Any) -> Settings:
    bus: dict[str, Any] = {"backend": backend, "partitions": 3}
    if backend == "kafka":
        bus |= {
            "bootstrap_servers": kafka_topics.bootstrap_servers,
            "events_topic": kafka_topics.name("events"),
            "requests_topic": kafka_topics.name("requests"),
            "dlq_topic": kafka_topics.name("dlq"),
            "checkpoints_topic": kafka_topics.name("checkpoints"),
        }
    options = {
        "finality_depth": 5,
        "use_finalized_tag": False,
        "poll_interval_s": 0.05,
        "max_block_range": 50,
        "request_timeout_s": 5.0,
        "requests_per_second": 2000.0,
    } | chain
    return Settings(home=home, bus=bus, chain=options)


@dataclass
class Indexing:
    """One deployment on one chain, indexed into one bus."""

    w3: Web3
    deployment: Deployment
    account: LocalAccount
    settings: Settings
    _bus: Bus | None = None

    @property
    def bus(self) -> Bus:
        if self._bus is None:
            self._bus = open_bus(self.settings)
        return self._bus

    def run(self, **options: Any) -> IndexerStats:
        return run_indexer(
            self.w3, self.deployment, self.bus, self.settings, self.account, **options
        )

    def events(self) -> list[dict[str, Any]]:
        return [orjson.loads(r.value) for r in self.bus.read_all(self.settings.bus.events_topic)]

    def fresh(self, home: Path) -> Indexing:
        """The same deployment indexed into a new embedded bus."""
        bus = self.settings.bus.model_copy(update={"backend": "embedded"})
        settings = self.settings.model_copy(update={"home": home, "bus": bus})
        return Indexing(self.w3, self.deployment, self.account, settings)


def live(events: list[dict[str, Any]]) -> dict[str, tuple[str, bytes]]:
    """Chain events not retracted, by id: (type, payload as canonical bytes). Checks that
    no id appears twice and that every retraction names a published, live event."""
    ids = Counter(e["id"] for e in events)
    twice = [i for i, n in ids.items() if n > 1]
    assert not twice, f"ids published twice: {twice}"
    held: dict[str, tuple[str, bytes]] = {}
    for e in events:
        if e["type"] in CHAIN_TYPES:
            held[e["id"]] = (e["type"], orjson.dumps(e["payload"], option=orjson.OPT_SORT_KEYS))
        elif e["type"] == "ChainLogRetracted":
            assert held.pop(e["payload"]["retracted_id"], None) is not None, e
    return held


def chain_logs(w3: Web3, deployment: Deployment) -> int:
    """How many followed-contract logs of chain event types the node holds."""
    decoder = LogDecoder([load_artifact(n).abi for n in FOLLOWED_CONTRACTS], CHAIN_TYPES)
    query = {
        "fromBlock": 0,
        "toBlock": "latest",
        "topics": [list(decoder.topics)],
        "address": [deployment.staking.address, deployment.distributor.address],
    }
    return len(w3.eth.get_logs(query))  # type: ignore[arg-type]
