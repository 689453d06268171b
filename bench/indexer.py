"""Chain indexer throughput: logs/s from anvil holding ≥ 100k logs into the bus, next to raw
``eth_getLogs`` loops over the same blocks in the same run.

Fills a fresh anvil with ``--logs`` NodeStaking ``Staked`` logs from two log-spamming
contracts (tests/support/logspam.py) standing in for NodeStaking and RewardsDistributor,
``--per-tx`` logs per transaction, one transaction every ``--spread`` blocks, then mines
past anvil's finalized tag so every log is final. Then, each over every block:

* raw JSON-RPC: ``eth_getLogs`` with requests + orjson, ``--range`` blocks per call;
* web3.py: ``w3.eth.get_logs`` with the same ranges;
* fetch + decode: the indexer's RPC adapter and decoder, nothing published;
* ``masa index`` into the embedded bus, and into Apache Kafka when its jars are cached:
  fetch, decode, sign each event, one bus transaction with the checkpoint per step.

    .venv/bin/python bench/indexer.py [--logs 100000] [--per-tx 10000] [--no-kafka]

Prints a Markdown table and writes bench/results/indexer.json (or ``--output``).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a script: make the repo importable
    sys.path.insert(0, str(ROOT))

import orjson  # noqa: E402
import requests  # noqa: E402
from eth_account import Account  # noqa: E402
from web3 import Web3  # noqa: E402

from contracts import load_artifact  # noqa: E402
from contracts.deploy import DeployedContract, Deployment  # noqa: E402
from indexer.chain import HttpRpc, LogDecoder  # noqa: E402
from indexer.events import CHAIN_TYPES  # noqa: E402
from masa.app.settings import Settings  # noqa: E402
from masa.app.wiring import FOLLOWED_CONTRACTS, open_bus, run_indexer  # noqa: E402
from tests.support import logspam  # noqa: E402
from tests.support.anvil import AnvilNode  # noqa: E402
from tests.support.services import KafkaBroker, ServiceUnavailable  # noqa: E402

Row = dict[str, Any]


def fill(node: AnvilNode, logs: int, per_tx: int, spread: int) -> Deployment:
    w3 = Web3(Web3.HTTPProvider(node.rpc_url))
    sender = node.accounts[0]
    staking, distributor = logspam.deploy(w3, sender), logspam.deploy(w3, sender)
    first = w3.eth.block_number - 1
    nonce = w3.eth.get_transaction_count(sender.address)
    for i in range(logs // per_tx):
        logspam.send_spam(w3, sender, (staking, distributor)[i % 2], per_tx, nonce + i)
        node.rpc("anvil_mine", hex(spread))
    node.rpc("anvil_mine", hex(100))  # past anvil's finalized tag (64 blocks)
    contract = DeployedContract(Web3.to_checksum_address(staking), first, "0x")
    other = DeployedContract(Web3.to_checksum_address(distributor), first, "0x")
    return Deployment(node.chain_id, token=contract, staking=contract, distributor=other)


def timed(name: str, run: Callable[[], int]) -> Row:
    started = time.perf_counter()
    logs = run()
    seconds = time.perf_counter() - started
    print(f"  {name}: {logs} logs in {seconds:.2f} s", file=sys.stderr)
    return {
        "reader": name,
        "logs": logs,
        "seconds": round(seconds, 3),
        "logs_per_s": round(logs / seconds),
    }


def raw_loop(url: str, addresses: list[str], first: int, head: int, size: int) -> int:
    session, count = requests.Session(), 0
    for start in range(first, head + 1, size):
        query = {
            "fromBlock": hex(start),
            "toBlock": hex(min(head, start + size - 1)),
            "address": addresses,
        }
        body = orjson.dumps({"jsonrpc": "2.0", "id": 1, "method": "eth_getLogs", "params": [query]})
        reply = session.post(url, data=body, headers={"Content-Type": "application/json"})
        count += len(orjson.loads(reply.content)["result"])
    return count


def web3_loop(w3: Web3, addresses: list[str], first: int, head: int, size: int) -> int:
    count = 0
    for start in range(first, head + 1, size):
        query = {"fromBlock": start, "toBlock": min(head, start + size - 1), "address": addresses}
        count += len(w3.eth.get_logs(query))  # type: ignore[arg-type]
    return count


def fetch_decode(url: str, addresses: list[str], first: int, head: int, size: int) -> int:
    rpc = HttpRpc(url, requests_per_second=1e6)
    decoder = LogDecoder([load_artifact(c).abi for c in FOLLOWED_CONTRACTS], CHAIN_TYPES)
    count = 0
    for start in range(first, head + 1, size):
        for log in rpc.logs(
            [a.lower() for a in addresses], decoder.topics, start, min(head, start + size - 1)
        ):
            count += decoder.decode(log, 31337) is not None
    return count


def index_into(w3: Web3, deployment: Deployment, settings: Settings) -> int:
    bus = open_bus(settings)
    account = Account.create()
    return run_indexer(w3, deployment, bus, settings, account, until_head=True).logs


def indexer_settings(home: Path, size: int, bus: dict[str, Any]) -> Settings:
    chain = {"finality_depth": 12, "max_block_range": size, "requests_per_second": 1e6}
    return Settings(home=home, bus={"partitions": 6, **bus}, chain=chain)


def kafka_row(w3: Web3, deployment: Deployment, home: Path, size: int) -> Row | None:
    try:
        broker = KafkaBroker(partitions=6)
        broker.start()
    except ServiceUnavailable as error:
        print(f"  kafka skipped: {error}", file=sys.stderr)
        return None
    try:
        settings = indexer_settings(
            home, size, {"backend": "kafka", "bootstrap_servers": broker.bootstrap_servers}
        )
        return timed("masa index → Kafka", lambda: index_into(w3, deployment, settings))
    finally:
        broker.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--logs", type=int, default=100_000)
    parser.add_argument("--per-tx", type=int, default=10_000)
    parser.add_argument("--spread", type=int, default=50, help="blocks between two transactions")
    parser.add_argument("--range", type=int, default=2000, help="blocks per eth_getLogs call")
    parser.add_argument("--no-kafka", action="store_true")
    parser.add_argument("--output", type=Path, default=ROOT / "bench" / "results" / "indexer.json")
    args = parser.parse_args()

    with AnvilNode() as node, tempfile.TemporaryDirectory() as tmp:
        print(f"filling anvil with {args.logs} logs", file=sys.stderr)
        began = time.perf_counter()
        deployment = fill(node, args.logs, args.per_tx, args.spread)
        fill_s = time.perf_counter() - began
        w3 = Web3(Web3.HTTPProvider(node.rpc_url))
        head, first = w3.eth.block_number, deployment.start_block
        addresses = [deployment.staking.address, deployment.distributor.address]
        span = (first, head, args.range)
        rows = [
            timed(
                "raw eth_getLogs (requests + orjson)",
                lambda: raw_loop(node.rpc_url, addresses, *span),
            ),
            timed("web3.py eth.get_logs", lambda: web3_loop(w3, addresses, *span)),
            timed(
                "indexer fetch + decode, no publish",
                lambda: fetch_decode(node.rpc_url, addresses, *span),
            ),
            timed(
                "masa index → embedded bus",
                lambda: index_into(
                    w3,
                    deployment,
                    indexer_settings(Path(tmp) / "e", args.range, {"backend": "embedded"}),
                ),
            ),
        ]
        if not args.no_kafka and (row := kafka_row(w3, deployment, Path(tmp) / "k", args.range)):
            rows.append(row)
    raw, web3_rate = rows[0]["logs_per_s"], rows[1]["logs_per_s"]
    for row in rows:
        row["vs_raw"] = round(row["logs_per_s"] / raw, 3)
        row["vs_web3"] = round(row["logs_per_s"] / web3_rate, 3)
    result = {
        "logs": args.logs,
        "per_tx": args.per_tx,
        "blocks": head - first + 1,
        "range": args.range,
        "fill_s": round(fill_s, 1),
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "load_avg_after": os.getloadavg(),
        "rows": rows,
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(result, indent=2) + "\n")
    print(f"\n{args.logs} logs in {result['blocks']} blocks, {args.range}-block ranges\n")
    print("| reader | logs/s | vs raw | vs web3.py |\n|---|---|---|---|")
    for row in rows:
        rate, raw_share, web3_share = row["logs_per_s"], row["vs_raw"], row["vs_web3"]
        print(f"| {row['reader']} | {rate:,} | {raw_share:.0%} | {web3_share:.0%} |")


if __name__ == "__main__":
    main()
