"""A small network on anvil for the settlement tests: contracts deployed, workers and an oracle
staked, fees deposited, emissions funded, the chain indexed into an embedded bus and a SQLite
store, and the settler wired as ``masa settle run`` wires it (its own key, poster role)."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from eth_account import Account
from eth_account.signers.local import LocalAccount
from eth_utils import keccak
from web3 import Web3

from contracts.client import MasaClient, Role
from contracts.deploy import WEI_PER_TOKEN, DeployParams, deploy_all
from indexer.events import SignedMessage, make_event
from indexer.events.fields import format_timestamp
from indexer.ingest.runner import Ingestor
from indexer.store.log import EventLog
from masa.app.keys import save_keystore
from masa.app.settings import Settings
from masa.app.settle_chain import SettlementChain
from masa.app.wiring import (
    ingest_config,
    open_bus,
    open_read_db,
    open_store,
    run_indexer,
    settler_config,
)
from projections.schema import migrate
from settlement.posting import PostingRecord
from settlement.settler import SettlementDb, Settler
from tests.support.anvil import AnvilNode

TOKEN = WEI_PER_TOKEN
PASSWORD = "settle-test"
ADMIN, SETTLER, W1, W2, W3, ORACLE, C1, C2, TREASURY, HELPER = range(10)
WORKERS = (W1, W2, W3)
STAKES = {W1: 100 * TOKEN, W2: 200 * TOKEN, W3: 80 * TOKEN}


def _key(label: str) -> LocalAccount:
    return Account.from_key(keccak(f"masa-settle-test:{label}".encode()))


@dataclass
class SettleNet:
    anvil: AnvilNode
    home: Path
    confirmations: int = 2
    replace_after_s: float = 120.0
    indexer: LocalAccount = field(default_factory=lambda: _key("indexer"))
    governor: LocalAccount = field(default_factory=lambda: _key("governor"))

    def __post_init__(self) -> None:
        self.w3 = Web3(Web3.HTTPProvider(self.anvil.rpc_url))
        self.accounts = self.anvil.accounts
        self.settler_account = self.accounts[SETTLER]
        self.settings = Settings(
            home=self.home,
            chain={"rpc_url": self.anvil.rpc_url, "finality_depth": 1,
                   "use_finalized_tag": False, "poll_interval_s": 0.1},
            ingest={
                "trusted_indexers": [self.indexer.address.lower()],
                "trusted_governors": [self.governor.address.lower()],
                "trusted_settlers": [self.settler_account.address.lower()],
                "poll_timeout_s": 0.1,
            },
            settlement={"confirmations": self.confirmations, "close_wait_s": 30,
                        "replace_after_s": self.replace_after_s, "poll_interval_s": 0.2},
        )  # fmt: skip
        save_keystore(self.settler_account, self.settings.settler_keystore_path, PASSWORD)
        self.bus = open_bus(self.settings)
        self.store = open_store(self.settings)
        self.log = EventLog(self.store)
        self.read_db = open_read_db(self.settings)
        migrate(self.read_db.url)
        self.db = SettlementDb(self.read_db)

    # --- chain ---------------------------------------------------------------------------

    def client(self, index: int) -> MasaClient:
        return MasaClient(self.w3, self.deployment, self.accounts[index])

    def address(self, index: int) -> str:
        return self.accounts[index].address.lower()

    def deploy(self, *, fund: int = 1_000 * TOKEN, fees: int = 50 * TOKEN) -> None:
        params = DeployParams(
            cooldown_s=3600, min_worker_stake=10 * TOKEN, min_oracle_stake=10 * TOKEN,
            poster=self.settler_account.address,
        )  # fmt: skip
        self.deployment = deploy_all(self.w3, self.accounts[ADMIN], params)
        self.deployment.save(self.settings.deployment_path)
        admin = self.client(ADMIN)
        for index, amount in STAKES.items():
            admin.mint(self.accounts[index].address, amount)
            self.client(index).stake(Role.WORKER, amount)
        admin.mint(self.accounts[ORACLE].address, 10 * TOKEN + fees)
        self.client(ORACLE).stake(Role.ORACLE, 10 * TOKEN)
        self.client(ORACLE).deposit_fees(fees)
        admin.mint(self.accounts[ADMIN].address, fund)
        admin.fund(fund)

    def mine(self, blocks: int = 1) -> None:
        self.anvil.rpc("anvil_mine", hex(blocks))

    def rpc(self, method: str, *params: Any) -> Any:
        return self.anvil.rpc(method, *params)

    def index(self) -> None:
        run_indexer(self.w3, self.deployment, self.bus, self.settings, self.indexer)

    def chain(self, index: int = SETTLER) -> SettlementChain:
        return SettlementChain(self.client(index))

    # --- events --------------------------------------------------------------------------

    def send(self, messages: list[SignedMessage]) -> None:
        producer = self.bus.producer()
        for m in messages:
            producer.send(self.settings.bus.events_topic, m.key.encode(), m.value)
        producer.flush()
        producer.close()

    def ingest(self, idle_s: float = 0.6) -> None:
        ingestor = Ingestor(self.bus, self.store, ingest_config(self.settings))
        last = time.monotonic()

        def on_batch(_: Any) -> None:
            nonlocal last
            last = time.monotonic()

        ingestor.run(lambda: time.monotonic() - last > idle_s, on_batch)

    def parameters(
        self, genesis: float, *, effective: int = 0, length: int = 15, emission: int = 100 * TOKEN
    ) -> SignedMessage:
        payload = {
            "effective_epoch": effective,
            "genesis": format_timestamp(datetime.fromtimestamp(genesis, UTC)),
            "epoch_length_s": length, "heartbeat_interval_s": 2, "grace_s": 1,
            "emission_per_epoch": str(emission), "stake_cap": str(150 * TOKEN),
            "min_uptime_ppm": 500_000, "protocol_share_bps": 1_000, "data_share_bps": 2_000,
            "treasury": self.address(TREASURY),
        }  # fmt: skip
        return make_event(self.governor, "ParametersSet", payload)

    def at(self, seconds: float) -> datetime:
        return datetime.fromtimestamp(seconds, UTC)

    def sources(self) -> list[SignedMessage]:
        return [
            make_event(self.accounts[c], "DataSourceRegistered",
                       {"source": f"https://data{c}.example.org/", "contributor": self.address(c)})
            for c in (C1, C2)
        ]  # fmt: skip

    def heartbeats(self, worker: int, start: float, end: float, seq0: int) -> list[SignedMessage]:
        """One heartbeat every 2 s in ``[start, end)``, seqs from ``seq0``."""
        out, t, seq = [], start, seq0
        while t < end:
            out.append(
                make_event(
                    self.accounts[worker],
                    "Heartbeat",
                    {"seq": seq, "capabilities": ["data"]},
                    occurred_at=self.at(t),
                )
            )
            t, seq = t + 2, seq + 1  # fmt: skip
        return out

    def request(
        self, worker: int, at: float, fee: int, uses: dict[int, int] | None = None
    ) -> list[SignedMessage]:
        """Submitted, completed and its data used by contributors (index -> units)."""
        rid = str(uuid.uuid4())
        spec = {"start_urls": ["https://data6.example.org/i.html"], "max_depth": 1,
                "fields": {"title": {"css": "title"}}}  # fmt: skip
        oracle, w = self.accounts[ORACLE], self.accounts[worker]
        out = [
            make_event(oracle, "RequestSubmitted",
                       {"request_id": rid, "kind": "data", "spec": spec, "fee": str(fee)},
                       occurred_at=self.at(at)),
            make_event(w, "RequestCompleted",
                       {"request_id": rid, "result_digest": "0x" + keccak(rid.encode()).hex(),
                        "units": 10}, occurred_at=self.at(at + 0.5)),
        ]  # fmt: skip
        if uses:
            entries = [{"source": f"https://data{c}.example.org/", "contributor": self.address(c),
                        "units": units} for c, units in uses.items()]  # fmt: skip
            out.append(make_event(w, "DataUsed", {"request_id": rid, "uses": entries},
                                  occurred_at=self.at(at + 0.6)))  # fmt: skip
        return out

    # --- settling ------------------------------------------------------------------------

    def settler(self, stop_after: Callable[[PostingRecord], bool] = lambda _: False) -> Settler:
        return Settler(
            self.log, self.db, self.chain(), self.settler_account, self._produce,
            settler_config(self.settings), wait_stored=self.ingest, stop_after=stop_after,
        )  # fmt: skip

    def _produce(self, message: SignedMessage) -> None:
        self.send([message])

    def root_posts(self) -> dict[int, list[str]]:
        """Every RootPosted on the canonical chain: chain epoch -> roots."""
        logs = self.chain().client.distributor.events.RootPosted.get_logs(
            from_block=self.deployment.start_block
        )
        posts: dict[int, list[str]] = {}
        for entry in logs:
            posts.setdefault(int(entry["args"]["epoch"]), []).append(
                "0x" + bytes(entry["args"]["root"]).hex()
            )
        return posts

    # --- subprocesses --------------------------------------------------------------------

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("MASA_")}
        env |= {"MASA_HOME": str(self.home), "MASA_KEY_PASSWORD": PASSWORD}
        for section in ("store", "bus", "ingest", "chain", "settlement"):
            values = getattr(self.settings, section).model_dump(mode="json")
            for name, value in values.items():
                if value is not None:
                    text = value if isinstance(value, str) else _json(value)
                    env[f"MASA_{section.upper()}__{name.upper()}"] = text
        return env

    def masa(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [_masa(), *args],
            env=self.env(), capture_output=True, text=True, timeout=timeout, check=False,
        )  # fmt: skip

    def popen(self, *args: str) -> subprocess.Popen[bytes]:
        """``masa ARGS`` in the background, its output in ``<home>/<first arg>.log``."""
        with open(self.home / f"{args[0]}.log", "ab") as output:
            return subprocess.Popen(
                [_masa(), *args], env=self.env(), stdout=output, stderr=subprocess.STDOUT
            )

    def close(self) -> None:
        self.store.close()
        self.read_db.close()


def _json(value: Any) -> str:
    import json

    return json.dumps(value)


def _masa() -> str:
    return str(Path(sys.executable).parent / "masa")


def keystore(net: SettleNet, index: int) -> Path:
    path = net.home / "keys" / f"account{index}.json"
    if not path.exists():
        save_keystore(net.accounts[index], path, PASSWORD)
    return path


@contextlib.contextmanager
def deployed_net(tmp_path: Path) -> Iterator[SettleNet]:
    """A fresh anvil with the contracts deployed and a settler wired to it; stopped after."""
    from tests.support.fixtures import start_anvil

    node = start_anvil()
    network = SettleNet(node, tmp_path)
    try:
        network.deploy()
        yield network
    finally:
        network.close()
        node.stop()
