"""``masa index`` SIGKILLed at random moments of a backfill of thousands of logs, ten times
and more, then run to the end: the bus holds one event per log, none missing, none twice.
The ingest dedupe is not involved; the checkpoint is in the same bus transaction as the
events, so each restart resumes exactly where the last commit left off."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import orjson
import pytest
from eth_account import Account
from web3 import Web3

from contracts.deploy import DeployedContract, Deployment
from masa.app.settings import Settings
from masa.app.wiring import open_bus
from tests.support import logspam
from tests.support.anvil import AnvilNode
from tests.support.fixtures import start_anvil
from tests.support.services import REPO_ROOT

PASSWORD = "crash-test"
TXS, LOGS_PER_TX = 80, 100  # 8000 logs over ~160 blocks
KILLS = 10


def spam_chain(node: AnvilNode, txs: int = TXS) -> tuple[Deployment, set[tuple[str, int]]]:
    """Two spammers standing in for NodeStaking and RewardsDistributor, and their logs."""
    w3 = Web3(Web3.HTTPProvider(node.rpc_url))
    sender = node.accounts[0]
    staking, distributor = logspam.deploy(w3, sender), logspam.deploy(w3, sender)
    nonce = w3.eth.get_transaction_count(sender.address)
    for i in range(txs):
        logspam.send_spam(w3, sender, staking if i % 2 else distributor, LOGS_PER_TX, nonce + i)
        node.rpc("anvil_mine", "0x1")
    logs = w3.eth.get_logs({"fromBlock": 0, "toBlock": "latest", "address": [staking, distributor]})
    first = w3.eth.get_transaction_receipt(logs[0]["transactionHash"])["blockNumber"] - 3
    contract = DeployedContract(Web3.to_checksum_address(staking), first, "0x")
    other = DeployedContract(Web3.to_checksum_address(distributor), first, "0x")
    deployment = Deployment(node.chain_id, token=contract, staking=contract, distributor=other)
    return deployment, {(log["transactionHash"].to_0x_hex(), log["logIndex"]) for log in logs}


def environment(
    home: Path, node: AnvilNode, backend: str, request: pytest.FixtureRequest
) -> dict[str, str]:
    env = {
        **os.environ,
        "MASA_HOME": str(home),
        "MASA_KEY_PASSWORD": PASSWORD,
        "MASA_CHAIN__RPC_URL": node.rpc_url,
        "MASA_CHAIN__FINALITY_DEPTH": "3",
        "MASA_CHAIN__USE_FINALIZED_TAG": "false",
        "MASA_CHAIN__MAX_BLOCK_RANGE": "4",
        "MASA_CHAIN__REQUESTS_PER_SECOND": "4",  # slow enough that ten kills land mid-backfill
        "MASA_BUS__BACKEND": backend,
        "MASA_BUS__PARTITIONS": "3",
        "MASA_LOG_LEVEL": "WARNING",
    }
    if backend == "kafka":
        topics = request.getfixturevalue("kafka_topics")
        env |= {
            "MASA_BUS__BOOTSTRAP_SERVERS": topics.bootstrap_servers,
            "MASA_BUS__EVENTS_TOPIC": topics.name("events"),
            "MASA_BUS__REQUESTS_TOPIC": topics.name("requests"),
            "MASA_BUS__DLQ_TOPIC": topics.name("dlq"),
            "MASA_BUS__CHECKPOINTS_TOPIC": topics.name("checkpoints"),
        }
    return env


def write_key(path: Path) -> None:
    """An indexer keystore that is quick to open (pbkdf2 with few rounds: tests only)."""
    path.parent.mkdir(parents=True)
    keystore = Account.encrypt(Account.create().key, PASSWORD, kdf="pbkdf2", iterations=1000)
    path.write_text(json.dumps(keystore))


def published(settings: Settings) -> int:
    bus = open_bus(settings, create_topics=False)
    return sum(bus.end_offsets(settings.bus.events_topic).values())


def index_command(*options: str) -> list[str]:
    return [sys.executable, "-c", "from masa.app.cli import main; main()", "index", *options]


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["embedded", pytest.param("kafka", marks=pytest.mark.kafka)])
def test_kill_9_during_backfill_neither_loses_nor_repeats(tmp_path, backend, request):
    node = start_anvil()
    try:
        deployment, logs = spam_chain(node)
        deployment.save(tmp_path / "deployment.json")
        write_key(tmp_path / "keys" / "indexer.json")
        env = environment(tmp_path, node, backend, request)
        settings = _settings(env)
        open_bus(settings)  # creates the topics before the subprocesses start
        kills = _kill_loop(env, settings, random.Random(backend))
        done = subprocess.run(
            index_command("--until-head", "--json"),
            env=env,
            cwd=REPO_ROOT,
            capture_output=True,
            timeout=300,
        )
        assert done.returncode == 0, done.stderr.decode()[-3000:]
        events = _events(settings)
    finally:
        node.stop()
    assert kills == KILLS
    ids = Counter(e["id"] for e in events)
    assert [i for i, n in ids.items() if n > 1] == []
    chain = _staked(settings, events)
    assert len(chain) == len(set(chain)) == len(logs) == TXS * LOGS_PER_TX
    assert set(chain) == logs


def _events(settings: Settings) -> list[dict]:
    return [
        orjson.loads(r.value)
        for r in open_bus(settings, create_topics=False).read_all(settings.bus.events_topic)
    ]


def _staked(settings: Settings, events: list[dict] | None = None) -> list[tuple[str, int]]:
    return [
        (e["payload"]["log"]["tx_hash"], e["payload"]["log"]["log_index"])
        for e in (events if events is not None else _events(settings))
        if e["type"] == "Staked"
    ]


def _settings(env: dict[str, str]) -> Settings:
    saved = os.environ.copy()
    os.environ.update(env)
    try:
        return Settings()
    finally:
        os.environ.clear()
        os.environ.update(saved)


def _kill_loop(env: dict[str, str], settings: Settings, rng: random.Random) -> int:
    """Start the indexer, wait until it has published something, SIGKILL it a random moment
    later; again, KILLS times. Fails if a run finishes before it could be killed."""
    kills = 0
    while kills < KILLS:
        before = published(settings) if kills else 0
        proc = subprocess.Popen(
            index_command("--until-head", "--json"),
            env=env,
            cwd=REPO_ROOT,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            start_new_session=True,
        )
        try:
            _wait_for_progress(proc, settings, before)
            time.sleep(rng.uniform(0.0, 0.25))
            assert proc.poll() is None, "the backfill finished before the kill"
        finally:
            proc.kill()
            proc.wait()
            proc.stderr.close()  # type: ignore[union-attr]
        kills += 1
    return kills


def _wait_for_progress(proc: subprocess.Popen[bytes], settings: Settings, before: int) -> None:
    deadline = time.monotonic() + 60
    while published(settings) <= before:
        if proc.poll() is not None:
            raise AssertionError(
                f"indexer exited {proc.returncode}: {proc.stderr.read().decode()[-2000:]}"
            )  # type: ignore[union-attr]
        assert time.monotonic() < deadline, "the indexer made no progress"
        time.sleep(0.02)


def test_sigterm_finishes_the_step_in_hand_and_exits_cleanly(tmp_path, request):
    node = start_anvil()
    try:
        deployment, logs = spam_chain(node, txs=4)
        deployment.save(tmp_path / "deployment.json")
        write_key(tmp_path / "keys" / "indexer.json")
        env = environment(tmp_path, node, "embedded", request)
        settings = _settings(env)
        open_bus(settings)  # creates the topics before the subprocesses start
        proc = subprocess.Popen(
            index_command("--json"),
            env=env,
            cwd=REPO_ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=True,
        )
        try:
            _wait_for_progress(proc, settings, 0)
            deadline = time.monotonic() + 30
            while len(_staked(settings)) < len(logs):
                assert time.monotonic() < deadline, "the indexer did not catch up"
                time.sleep(0.05)
            proc.send_signal(signal.SIGTERM)
            out, err = proc.communicate(timeout=30)
        finally:
            proc.kill()
    finally:
        node.stop()
    assert proc.returncode == 0, err.decode()[-2000:]
    assert json.loads(out)["logs"] == len(logs)


def test_errors_reach_the_operator_as_one_line(tmp_path):
    env = {**os.environ, "MASA_HOME": str(tmp_path), "MASA_KEY_PASSWORD": PASSWORD}
    done = subprocess.run(
        index_command("--until-head"), env=env, cwd=REPO_ROOT, capture_output=True
    )
    assert done.returncode != 0
    assert done.stderr.decode().strip().splitlines() == [
        f"masa: error: no deployment at {tmp_path / 'deployment.json'}; run `masa contracts deploy`"
    ]
