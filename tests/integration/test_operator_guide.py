"""docs/operator-guide.md, run as written: every command of its ``sh`` blocks, in order, in the
working directory of a clean machine (no ``MASA_`` variable set), against a PostgreSQL, a
Kafka broker and an anvil chain of this test's own, each step's documented outcome checked;
then every row of its failure-mode table provoked and compared with what the commands print
(tests/support/guide.py reads the guide).

The test supplies only what the guide leaves to the site: the values of the exports that name
hosts, ports, the database, its user and password and the RPC URL (``SITE``), the read API's port
(8000 may be taken on a shared machine), and what the guide says happens outside masa: a funded
key in admin.hex, ETH for the worker's gas, the DBA creating the database roles.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from eth_account import Account
from web3 import Web3

from masa.app.settings import Settings
from tests.support.anvil import AnvilNode
from tests.support.guide import Seen, Step, assert_matches_row, failure_rows, steps
from tests.support.outages import MASA, Finished, Process, StoppablePostgres, wait_for
from tests.support.services import KafkaBroker, ServiceUnavailable, free_port

BIN = str(Path(sys.executable).parent)
GUIDE_PASSWORD = "..."  # the guide's "...": a password the operator chooses, taken literally
SITE_NAMES = (
    "MASA_BUS__BOOTSTRAP_SERVERS",
    "MASA_STORE__POSTGRES_HOST",
    "MASA_STORE__POSTGRES_PORT",
    "MASA_STORE__POSTGRES_DBNAME",
    "MASA_STORE__POSTGRES_USER",
    "MASA_STORE__POSTGRES_PASSWORD",
    "MASA_CHAIN__RPC_URL",
)
WEI = 10**18


def clean_env(**extra: str) -> dict[str, str]:
    """This process's environment without a single ``MASA_`` variable, masa on the PATH."""
    env = {k: v for k, v in os.environ.items() if not k.upper().startswith("MASA_")}
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
    return env | extra


@dataclass
class Network:
    """The services the guide's commands run against."""

    pg: StoppablePostgres
    kafka: KafkaBroker
    anvil: AnvilNode
    dbname: str
    api_port: int

    @property
    def site(self) -> dict[str, str]:
        db = self.pg.database(self.dbname)
        values = [self.kafka.bootstrap_servers, db.host, str(db.port), db.dbname, db.user]
        return dict(zip(SITE_NAMES, [*values, db.password, self.anvil.rpc_url], strict=True))

    def settings(self, home: Path) -> Settings:
        """What the guide's exports configure, for looking into the store from the test."""
        db = self.pg.database(self.dbname)
        return Settings(
            home=home,
            store={"backend": "postgres", "postgres_host": db.host, "postgres_port": db.port,
                   "postgres_dbname": db.dbname, "postgres_user": db.user,
                   "postgres_password": db.password},
            bus={"backend": "kafka", "bootstrap_servers": self.kafka.bootstrap_servers},
        )  # fmt: skip

    def stored(self, home: Path) -> dict[str, int]:
        from masa.app.wiring import open_store

        store = open_store(self.settings(home))
        try:
            return store.count_events()
        finally:
            store.close()


@contextmanager
def network() -> Iterator[Network]:
    from tests.support.fixtures import require

    started: list[Any] = []
    try:
        for server in (StoppablePostgres(), KafkaBroker(), AnvilNode()):
            try:
                server.start()
            except ServiceUnavailable as error:
                require(str(error))
            started.append(server)
        pg, kafka, anvil = started
        pg.create_database("masa")
        yield Network(pg, kafka, anvil, "masa", free_port())
    finally:
        for server in reversed(started):
            server.stop()


@dataclass
class Walk:
    """One operator's shell: the guide's exports accumulate, each command runs in bash."""

    net: Network
    home: Path
    env: dict[str, str]
    values: dict[str, str] = field(default_factory=dict)
    background: dict[str, Process] = field(default_factory=dict)
    exported: set[str] = field(default_factory=set)

    def run(self, step: Step) -> Finished | Process:
        command = step.filled(self.values)
        if command.startswith("export "):
            return self._export(command)
        if step.background:
            process = Process(["bash", "-c", _exec(command)], self.env, self.home)
            self.background[step.text] = process
            return process
        done = subprocess.run(
            ["bash", "-c", command],
            env=self.env,
            cwd=self.home,
            capture_output=True,
            text=True,
            timeout=180,
        )
        return Finished([command], done.returncode, done.stdout, done.stderr)

    def _export(self, command: str) -> Finished:
        """Run an ``export`` line in bash, keep what it set; a site value becomes the test's."""
        names = re.findall(r"\b([A-Z][A-Z0-9_]*)=", command)
        show = "".join(f'; printf "%s\\0" "${{{name}}}"' for name in names)
        done = subprocess.run(
            ["bash", "-c", command + show], env=self.env, capture_output=True, text=True
        )
        assert done.returncode == 0, done.stderr
        values = done.stdout.split("\0")[: len(names)]
        for name, value in zip(names, values, strict=True):
            self.env[name] = self.net.site.get(name, value)
            self.exported.add(name)
        return Finished([command], 0, "", done.stderr)


def _exec(command: str) -> str:
    """``A=b masa x`` as ``A=b exec masa x``: the process started is masa itself, so the
    signals the test sends reach it, as a supervisor's would."""
    found = re.fullmatch(r"((?:[A-Z_][A-Z0-9_]*=\S*\s+)*)(.*)", command)
    assert found is not None
    return f"{found[1]}exec {found[2]}"


# --- what each step does, as the guide says --------------------------------------------------


def address_of(done: Finished) -> str:
    """The checksummed address 'masa keys new|show|import' prints first."""
    address = done.out.split()[0]
    assert Web3.is_checksum_address(address), done.out
    return address


def before_import_admin(walk: Walk) -> None:
    # outside masa: "a key that holds ETH for gas"; anvil's first account has some
    (walk.home / "admin.hex").write_text(walk.net.anvil.accounts[0].key.hex() + "\n")


def after_import_admin(walk: Walk, done: Finished) -> None:
    assert address_of(done) == walk.net.anvil.accounts[0].address
    assert (walk.home / "admin.json").is_file()


def after_deploy(walk: Walk, done: Finished) -> None:
    deployment = json.loads((walk.home / ".masa" / "deployment.json").read_text())
    assert deployment["chain_id"] == 31337 and "31337" in done.out


def after_new_indexer_key(walk: Walk, done: Finished) -> None:
    walk.values["new indexer"] = address_of(done)
    assert (walk.home / ".masa" / "keys" / "indexer.json").is_file()


def after_config_show(walk: Walk, done: Finished) -> None:
    for shown in ("postgres", "kafka", walk.net.kafka.bootstrap_servers, "***"):
        assert shown in done.out, (shown, done.out)
    assert walk.net.pg.password not in done.out  # masked


def after_show_indexer_key(walk: Walk, done: Finished) -> None:
    walk.values["indexer address"] = address_of(done)
    assert walk.values["indexer address"] == walk.values["new indexer"]


def before_store_stats(walk: Walk) -> None:
    wait_for(
        lambda: (
            {"MinimumStakeUpdated.v1", "CooldownUpdated.v1", "TreasuryUpdated.v1"}
            <= walk.net.stored(walk.home).keys()
        ),
        "the deployment's logs indexed and ingested",
    )


def after_store_stats(walk: Walk, done: Finished) -> None:
    for logged in ("MinimumStakeUpdated", "CooldownUpdated", "TreasuryUpdated", "dead_letters"):
        assert logged in done.out, done.out


def after_new_worker_key(walk: Walk, done: Finished) -> None:
    walk.values["worker address"] = address_of(done)
    # outside masa: "sends its address ETH for gas (from any wallet)"
    w3 = Web3(Web3.HTTPProvider(walk.net.anvil.rpc_url))
    payer = walk.net.anvil.accounts[1].address
    tx = w3.eth.send_transaction({"from": payer, "to": address_of(done), "value": WEI})
    w3.eth.wait_for_transaction_receipt(tx)


def after_mint(walk: Walk, done: Finished) -> None:
    assert f"minted 1000 MASA to {walk.values['worker address']}" in done.err


def active_stake(done: Finished) -> None:
    assert re.search(r"active\s*│\s*True", done.out), done.out
    assert re.search(r"stake\s*│\s*1000000000000000000000\b", done.out), done.out


def before_unstake(walk: Walk) -> None:
    """The worker's heartbeats are stored; then "stop the worker first (SIGTERM)"."""
    wait_for(lambda: walk.net.stored(walk.home).get("Heartbeat.v2"), "a stored heartbeat")
    worker = walk.background.pop("MASA_WORKER__KEYSTORE=worker.json masa worker run")
    stopped = worker.stop(signal.SIGTERM)
    assert stopped.code == 0 and "stopping: 0 job(s) in hand" in stopped.err, stopped.err
    assert_quiet(stopped)


def after_unstake(walk: Walk, done: Finished) -> None:
    assert "lock 1: 1000 MASA, withdrawable from" in done.err, done.err
    assert re.search(r"locked\s*│\s*1000000000000000000000\b", done.out), done.out


def after_migrate(walk: Walk, done: Finished) -> None:
    assert re.fullmatch(r"read models: revision none -> \w+\n", done.out), done.out


def projections_caught_up(walk: Walk) -> None:
    from masa.app.wiring import open_event_log, open_read_db
    from projections.queries import projection_status

    def caught_up() -> bool:
        log, store = open_event_log(walk.net.settings(walk.home))
        db = open_read_db(walk.net.settings(walk.home))
        try:
            rows = projection_status(db, log.head())
        finally:
            db.close()
            store.close()
        return bool(rows) and rows[0]["position"] == rows[0]["head"] > 0

    wait_for(caught_up, "masa project run to catch up with the store")


def after_project_status(walk: Walk, done: Finished) -> None:
    (row,) = json.loads(done.out)
    assert row["name"] == "ledger" and row["last_error"] is None
    assert row["position"] == row["head"] > 0 and row["lag_events"] == 0
    walk.values["head"] = str(row["head"])


def after_rebuild(walk: Walk, done: Finished) -> None:
    assert re.fullmatch(rf"ledger: rebuilt to position {walk.values['head']} in \S+ s\n", done.out)


def dba_creates(role: str) -> Callable[[Walk], None]:
    """Outside masa: "have your DBA create them"."""

    def create(walk: Walk) -> None:
        walk.net.pg.sql(f"CREATE ROLE {role} LOGIN PASSWORD '{GUIDE_PASSWORD}'")

    return create


def granted(role: str) -> Callable[[Walk, Finished], None]:
    def check(walk: Walk, done: Finished) -> None:
        assert re.fullmatch(rf"{role}: SELECT on \d+ read-model tables\n", done.out), done.out

    return check


def serve_answers(walk: Walk) -> None:
    """ "read API on 127.0.0.1:8000 (OpenAPI at /docs), as api.reader_user"."""
    base = f"http://127.0.0.1:{walk.net.api_port}"

    def get(path: str) -> Any:
        with suppress(OSError), urllib.request.urlopen(base + path, timeout=5) as reply:
            return json.loads(reply.read()) if path != "/docs" else reply.status
        return None

    wait_for(lambda: get("/docs"), "masa serve to answer")
    nodes = get("/v1/nodes")
    assert [n["address"] for n in nodes["items"]] == [walk.values["worker address"].lower()]
    assert get("/health")["status"] == "ok"


BEFORE: dict[str, Callable[[Walk], None]] = {
    "masa keys import admin.hex --out admin.json": before_import_admin,
    "masa store stats": before_store_stats,
    "masa node unstake --amount 1000 --key-file worker.json": before_unstake,
    "masa project status --json": projections_caught_up,
    "masa db grant-reader grafana": dba_creates("grafana"),
    "masa db grant-reader masa_reader": dba_creates("masa_reader"),
}
AFTER: dict[str, Callable[[Walk, Any], None]] = {
    "masa keys import admin.hex --out admin.json": after_import_admin,
    "masa contracts deploy --key-file admin.json": after_deploy,
    "masa keys new --for indexer": after_new_indexer_key,
    "masa config show": after_config_show,
    "masa keys show --for indexer": after_show_indexer_key,
    "masa store stats": after_store_stats,
    "masa keys new --out worker.json": after_new_worker_key,
    "masa contracts mint --to <worker address> --amount 1000 --key-file admin.json": after_mint,
    "masa node stake --role worker --amount 1000 --key-file worker.json": lambda w, d: active_stake(
        d
    ),
    "masa node status --key-file worker.json": lambda w, d: active_stake(d),
    "masa node unstake --amount 1000 --key-file worker.json": after_unstake,
    "masa db migrate": after_migrate,
    "masa project status --json": after_project_status,
    "masa project rebuild": after_rebuild,
    "masa db grant-reader grafana": granted("grafana"),
    "masa db grant-reader masa_reader": granted("masa_reader"),
    "masa serve": lambda w, p: serve_answers(w),
}
BACKGROUND = {
    "masa index",
    "masa ingest",
    "MASA_WORKER__KEYSTORE=worker.json masa worker run",
    "masa project run",
    "masa serve",
}


def assert_quiet(done: Finished, allowed: str | None = None) -> None:
    """No traceback, and no error line but ``allowed``."""
    assert "Traceback" not in done.output, done.output[-4000:]
    errors = [line for line in done.err.splitlines() if ": error: " in line]
    assert errors == ([allowed] if allowed else []), done.err[-4000:]


def test_the_operator_guide_as_written(tmp_path):
    written = steps()
    assert {s.text for s in written if s.background} == BACKGROUND, "started in the background"
    texts = [s.text for s in written]
    for handlers in (BEFORE, AFTER):
        assert not handlers.keys() - set(texts), "the guide no longer has these steps"
    home = tmp_path / "operator"
    home.mkdir()
    began = time.monotonic()
    with network() as net:
        print(f"{time.monotonic() - began:5.1f}s  PostgreSQL, Kafka and anvil started")
        walk = Walk(net, home, clean_env(MASA_API__PORT=str(net.api_port)))
        try:
            for step in written:
                began = time.monotonic()
                if step.text in BEFORE:
                    BEFORE[step.text](walk)
                done = walk.run(step)
                if isinstance(done, Finished):
                    assert done.code == 0, (step.text, done.code, done.output)
                    assert_quiet(done)
                elif not done.running:
                    raise AssertionError(f"{step.text} ended: {done.wait().output}")
                if step.text in AFTER:
                    AFTER[step.text](walk, done)
                print(f"{time.monotonic() - began:5.1f}s  {step.text}")  # -s: where time goes
            assert set(SITE_NAMES) <= walk.exported, "the set-up names every site value"
            began = time.monotonic()
            worker_below_minimum(walk)
            print(f"{time.monotonic() - began:5.1f}s  a worker slashed below its minimum")
        finally:
            stopped = {text: p.stop(signal.SIGTERM) for text, p in walk.background.items()}
    for text, done in stopped.items():
        assert done.code == 0, (text, done.output[-3000:])  # SIGTERM: the step in hand, exit 0
        assert_quiet(done)


def worker_below_minimum(walk: Walk) -> None:
    """The failure row of a worker whose stake falls below its minimum, on the guide's
    network: staked again, run with a stake check every second, slashed by the admin."""
    from contracts.client import MasaClient, Role
    from contracts.deploy import Deployment
    from masa.app.keys import load_keystore

    w3 = Web3(Web3.HTTPProvider(walk.net.anvil.rpc_url))
    deployment = Deployment.load(walk.home / ".masa" / "deployment.json")
    admin = MasaClient(w3, deployment, Account.from_key(walk.net.anvil.accounts[0].key))
    worker_key = load_keystore(walk.home / "worker.json", GUIDE_PASSWORD)
    worker = MasaClient(w3, deployment, worker_key)
    admin.mint(worker_key.address, 1000 * WEI)
    worker.stake(Role.WORKER, 1000 * WEI)
    env = walk.env | {"MASA_WORKER__KEYSTORE": "worker.json", "MASA_WORKER__STAKE_RECHECK_S": "1"}
    running = Process([MASA, "worker", "run"], env, walk.home)
    wait_for(lambda: "serving data" in running.stderr(), "the worker to serve")
    admin.slash(worker_key.address, 1000 * WEI, "test")  # all of it: below any minimum
    stopped = running.wait(60)
    assert_quiet(stopped, stopped.err.strip().splitlines()[-1])
    row = failure_rows()["a worker's stake falls below its minimum (slashed, unstaked)"]
    assert_matches_row(row, Seen([stopped.output], {stopped.code}))
    assert stopped.err.strip().splitlines()[-1].startswith("masa: error: ")
    # "with no stake left its events are rejected not_staked": one signed once the slash is in
    wait_for(lambda: walk.net.stored(walk.home).get("Slashed.v1"), "the slash indexed, stored")
    beat = {"type": "Heartbeat", "payload": {"seq": time.time_ns() // 10**6, "capabilities": []}}
    (walk.home / "beat.jsonl").write_text(json.dumps(beat) + "\n")
    send = "masa events send beat.jsonl --key-file worker.json --json"
    sent = walk.run(Step(-1, send, "", False))
    assert isinstance(sent, Finished) and sent.code == 0, sent.output
    (event_id,) = json.loads(sent.out)["ids"]
    wait_for(lambda: rejected(walk, event_id) == "not_staked", "the heartbeat rejected not_staked")


def rejected(walk: Walk, event_id: str) -> str | None:
    """The reason the dead-letter topic gives for ``event_id``, if any."""
    from indexer.ingest.dlq import read_dead_letters
    from masa.app.wiring import open_bus

    settings = walk.net.settings(walk.home)
    for letter in read_dead_letters(open_bus(settings), settings.bus.dlq_topic):
        if event_id.encode() in letter.value:
            return letter.reason
    return None


# --- the failure-mode table ------------------------------------------------------------------

INDEXER = Account.from_key(b"\x07" * 32)
KEY_PASSWORD = "pw"
UNREACHABLE = "Kafka, PostgreSQL or the RPC unreachable when a command starts"
UNWRITABLE = "the embedded store cannot be written (a read-only file, permissions)"
PROVIDER = 'provider errors, 429s, "too many results"'
REORG = "a reorg deeper than `chain.finality_depth`"
#: rows another test provokes (services lost under running commands, and the walk's worker)
ELSEWHERE = {
    "a worker's stake falls below its minimum (slashed, unstaked)": "the walk above",
}


def masa(home: Path, *args: str, timeout: float = 120, **env: str) -> Finished:
    done = subprocess.run(
        [MASA, *args],
        env=clean_env(MASA_HOME=str(home), MASA_KEY_PASSWORD=KEY_PASSWORD, **env),
        cwd=home,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    return Finished([MASA, *args], done.returncode, done.stdout, done.stderr)


def one_line(done: Finished) -> str:
    """The one error line a failed command ends with (and nothing like it before)."""
    assert done.code != 0, done.output
    assert_quiet(done, done.err.strip().splitlines()[-1])
    last = done.err.strip().splitlines()[-1]
    assert last.startswith("masa: error: ") or last.startswith("masa "), done.err
    return last


def closed_port() -> int:
    return free_port()


def deployed_home(anvil: AnvilNode, home: Path) -> Path:
    """A home with the contracts deployed on ``anvil`` and an indexer key."""
    from contracts.deploy import DeployParams, deploy_all

    home.mkdir(parents=True)
    w3 = Web3(Web3.HTTPProvider(anvil.rpc_url))
    deploy_all(w3, anvil.accounts[0], DeployParams()).save(home / "deployment.json")
    (home / "keys").mkdir()
    keystore = Account.encrypt(INDEXER.key, KEY_PASSWORD, iterations=2**4)
    (home / "keys" / "indexer.json").write_text(json.dumps(keystore))
    return home


def copy_home(template: Path, home: Path) -> Path:
    shutil.copytree(template, home)
    return home


def unreachable_database(tmp: Path) -> Seen:
    (tmp / "pg").mkdir()
    done = masa(
        tmp / "pg",
        "ingest",
        "--until-idle",
        "1",
        MASA_STORE__BACKEND="postgres",
        MASA_STORE__POSTGRES_PORT=str(closed_port()),
        MASA_STORE__CONNECT_TIMEOUT_S="0.5",
        MASA_RETRY_BUDGET_S="2",
    )
    assert "the PostgreSQL store at 127.0.0.1" in one_line(done)
    return Seen([done.output], {done.code})


def silent_rpc(tmp: Path, template: Path) -> Seen:
    with silent_server() as port:
        done = masa(
            copy_home(template, tmp / "rpc"),
            "index",
            "--until-head",
            MASA_CHAIN__RPC_URL=f"http://127.0.0.1:{port}",
            MASA_CHAIN__REQUEST_TIMEOUT_S="1.5",
            MASA_RETRY_BUDGET_S="0",
        )
    assert "the chain RPC at http://127.0.0.1" in one_line(done)
    return Seen([done.output], {done.code})


@contextmanager
def silent_server() -> Iterator[int]:
    """A port that accepts connections and never answers."""
    server = socket.create_server(("127.0.0.1", 0))
    held: list[socket.socket] = []
    done = threading.Event()

    def accept() -> None:
        server.settimeout(0.2)
        while not done.is_set():
            with suppress(TimeoutError):
                held.append(server.accept()[0])

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield int(server.getsockname()[1])
    finally:
        done.set()
        thread.join()
        for conn in held:
            conn.close()
        server.close()


def send_registrations(home: Path, count: int, store_path: Path | None = None) -> None:
    """``count`` signed DataSourceRegistered events onto the embedded bus of ``home``."""
    from indexer.events import make_event
    from masa.app.wiring import open_bus

    bus = open_bus(Settings(home=home))
    producer = bus.producer()
    for n in range(count):
        payload = {"source": f"https://s{n}.example/", "contributor": INDEXER.address.lower()}
        message = make_event(INDEXER, "DataSourceRegistered", payload)
        producer.send(Settings().bus.events_topic, message.key.encode(), message.value)
    producer.close()


@contextmanager
def tmpfs(path: Path, size: str) -> Iterator[Path]:
    path.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)], capture_output=True
    )
    if mounted.returncode != 0:
        raise Unprovoked(f"cannot mount a tmpfs: {mounted.stderr.decode().strip()}")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


class Unprovoked(Exception):
    """This machine cannot provoke the failure (no tmpfs mounts without root)."""


def store_tables(home: Path, store: Path) -> None:
    from masa.app.wiring import open_store

    open_store(Settings(home=home, store={"sqlite_path": store})).close()


def unwritable_store(tmp: Path) -> Seen:
    home = tmp / "ro"
    home.mkdir()
    with tmpfs(tmp / "ro-mount", "16m") as mount:
        store = mount / "store.sqlite"
        send_registrations(home, 3)
        store_tables(home, store)
        subprocess.run(["mount", "-o", "remount,ro", str(mount)], check=True)
        done = masa(
            home,
            "ingest",
            "--until-idle",
            "5",
            MASA_STORE__SQLITE_PATH=str(store),
            MASA_RETRY_BUDGET_S="2",
        )
    assert "the SQLite store at" in one_line(done), done.err
    return Seen([done.output], {done.code})


def full_disk(tmp: Path) -> Seen:
    home = tmp / "full"
    home.mkdir()
    with tmpfs(tmp / "full-mount", "4m") as mount:
        store = mount / "store.sqlite"
        send_registrations(home, 1000)
        store_tables(home, store)
        free = shutil.disk_usage(mount).free
        with open(mount / "filler", "wb") as filler:
            filler.write(b"\0" * (free - 100 * 1024))
        done = masa(
            home,
            "ingest",
            "--until-idle",
            "5",
            MASA_STORE__SQLITE_PATH=str(store),
            MASA_RETRY_BUDGET_S="2",
        )
    one_line(done)
    return Seen([done.output], {done.code})


def provider_faults(tmp: Path, anvil: AnvilNode, template: Path) -> Seen:
    from tests.support.rpc_proxy import Faults, FaultyRpc

    home = copy_home(template, tmp / "provider")
    anvil.rpc("anvil_mine", hex(6))
    settings = {
        "MASA_CHAIN__FINALITY_DEPTH": "2",  # a backfill of several blocks: ranges to shrink
        "MASA_CHAIN__USE_FINALIZED_TAG": "false",
        "MASA_CHAIN__POLL_INTERVAL_S": "0.2",
        "MASA_RETRY_BUDGET_S": "3",
    }
    with FaultyRpc(anvil.rpc_url, Faults(rate_limited=0.3, max_log_blocks=1, seed=5)) as proxy:
        via_proxy = settings | {"MASA_CHAIN__RPC_URL": proxy.url}
        caught_up = masa(home, "index", "--until-head", "--json", **via_proxy)
        assert caught_up.code == 0, caught_up.output
        assert json.loads(caught_up.out)["logs"] == 4 and proxy.counts["too_many"] > 0
        following = Process(
            [MASA, "index"],
            clean_env(MASA_HOME=str(home), MASA_KEY_PASSWORD=KEY_PASSWORD, **via_proxy),
            home,
        )
        wait_for(lambda: "resuming after block" in following.stderr(), "index to resume")
        proxy.faults = Faults(rate_limited=1.0)  # from now on, every call is refused
        lasting = following.wait(120)
    assert "index gave up after 3s of failures" in one_line(lasting)
    return Seen([caught_up.output, lasting.output], {caught_up.code, lasting.code})


def deep_reorg(tmp: Path, template: Path) -> Seen:
    """Indexed with a finality depth of 2, then the chain replaced below it."""
    home = tmp / "reorg"
    with AnvilNode() as anvil:
        deployed_home(anvil, home)
        before = anvil.rpc("evm_snapshot")
        anvil.rpc("anvil_mine", hex(6))
        settings = {
            "MASA_CHAIN__RPC_URL": anvil.rpc_url,
            "MASA_CHAIN__FINALITY_DEPTH": "2",
            "MASA_CHAIN__USE_FINALIZED_TAG": "false",
        }
        indexed = masa(home, "index", "--until-head", **settings)
        assert indexed.code == 0, indexed.output
        anvil.rpc("evm_revert", before)
        w3 = Web3(Web3.HTTPProvider(anvil.rpc_url))
        payer, payee = anvil.accounts[1].address, anvil.accounts[2].address
        w3.eth.wait_for_transaction_receipt(
            w3.eth.send_transaction({"from": payer, "to": payee, "value": 1})
        )  # the new branch differs from the old one
        anvil.rpc("anvil_mine", hex(8))
        reorged = masa(home, "index", "--until-head", **settings)
    one_line(reorged)
    return Seen([reorged.output], {reorged.code})


def bad_settings(tmp: Path) -> Seen:
    home = tmp / "settings"
    home.mkdir()
    env = masa(home, "config", "show", MASA_STORE__POSTGRES_PORT="0")
    (home / "masa.toml").write_text('[store]\nbackned = "postgres"\n')
    toml = masa(home, "config", "show")
    (home / "masa.toml").unlink()
    option = masa(home, "--log-level", "LOUD", "config", "show")
    runs = [env, toml, option]
    for done in runs:
        one_line(done)
    return Seen([r.output for r in runs], {r.code for r in runs})


def bad_keystores(tmp: Path) -> Seen:
    home = tmp / "keys"
    home.mkdir()
    (home / "damaged.json").write_text('{"address": "00", "crypto": ')
    damaged = masa(home, "keys", "show", "damaged.json")
    (home / "good.json").write_text(
        json.dumps(Account.encrypt(INDEXER.key, "right", iterations=16))
    )
    (home / "line.jsonl").write_text(
        '{"type": "Heartbeat", "payload": {"seq": 1, "capabilities": []}}\n'
    )
    wrong = masa(home, "events", "send", "line.jsonl", "--key-file", "good.json")
    assert "damaged.json" in one_line(damaged) and "good.json" in one_line(wrong)
    assert "wrong password" in one_line(wrong)
    return Seen([damaged.output, wrong.output], {damaged.code, wrong.code})


def test_every_failure_mode_is_what_the_guide_says(tmp_path, fresh_anvil):
    from tests.integration.test_cli_lost_services import ROWS as LOST_SERVICES

    rows = failure_rows()
    here = {
        UNREACHABLE,
        UNWRITABLE,
        "the disk is full",
        PROVIDER,
        REORG,
        "a bad setting or argument",
        "a damaged keystore, a wrong password",
    }
    assert rows.keys() == here | ELSEWHERE.keys() | LOST_SERVICES, "a row without a test"
    template = deployed_home(fresh_anvil, tmp_path / "template")
    provocations: list[tuple[str, Callable[[], Seen]]] = [
        (UNREACHABLE, lambda: unreachable_database(tmp_path)),
        (UNREACHABLE, lambda: silent_rpc(tmp_path, template)),
        (UNWRITABLE, lambda: unwritable_store(tmp_path)),
        ("the disk is full", lambda: full_disk(tmp_path)),
        (PROVIDER, lambda: provider_faults(tmp_path, fresh_anvil, template)),
        (REORG, lambda: deep_reorg(tmp_path, template)),
        ("a bad setting or argument", lambda: bad_settings(tmp_path)),
        ("a damaged keystore, a wrong password", lambda: bad_keystores(tmp_path)),
    ]

    def timed(name: str, provoke: Callable[[], Seen]) -> Seen:
        began = time.monotonic()
        try:
            return provoke()
        finally:
            print(f"{time.monotonic() - began:5.1f}s  {name}")  # -s: where the time goes

    with ThreadPoolExecutor(len(provocations)) as pool:
        futures = [(name, pool.submit(timed, name, p)) for name, p in provocations]
    seen: dict[str, Seen] = {}
    unprovoked: list[str] = []
    for name, future in futures:
        try:
            result = future.result()
        except Unprovoked as why:
            unprovoked.append(f"{name}: {why}")
            continue
        before = seen.setdefault(name, Seen([], set()))
        before.outputs += result.outputs
        before.codes |= result.codes
    for name in sorted(seen):
        assert_matches_row(rows[name], seen[name])
    if unprovoked:
        pytest.skip("; ".join(unprovoked))
