"""Settlement of one large epoch: from read-model rows to the statement, its tree and dump,
next to @openzeppelin/merkle-tree building the same tree in the same run; then the gas of
postRoot and claim for that tree on anvil.

The epoch: ``--uses`` credited DataUsed uses (default 1,000,000) over ``--contributors``
addresses (default 100,000), spread over ``--requests`` paid requests (default 100,000) served
by ``--workers`` workers (default 1,000) with uptime and stake. The rows are put straight into
the projection's in-memory state (what ``masa project run`` keeps in its tables), so the
measured path is what the settler runs: ``epoch_inputs`` (rows → formula inputs),
``compute_rewards``, ``build_statement``, the Merkle tree and its ``standard-v1`` dump.

    .venv/bin/python bench/settlement.py [--uses 1000000] [--contributors 100000] [--no-gas]

Prints a table and writes bench/results/settlement.json (or ``--output``). Goal: the whole
path at most 10 s and faster than the OpenZeppelin library on the same leaves.
"""

from __future__ import annotations

import argparse
import json
import random
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a script: make the repo importable
    sys.path.insert(0, str(ROOT))
sys.path.append(str(ROOT / "bench"))  # after the repo: bench/indexer.py must not hide indexer/

from projections.rules import ChainFact, Parameters  # noqa: E402
from projections.rules.stakes import Kind  # noqa: E402
from projections.state import LedgerState  # noqa: E402
from settlement.compute import epoch_inputs  # noqa: E402
from settlement.formula import compute_rewards  # noqa: E402
from settlement.statement import build_statement  # noqa: E402

GENESIS = int(datetime(2026, 1, 1, tzinfo=UTC).timestamp())
EPOCH_S = 3600
OZ_BUILD = """
import { StandardMerkleTree } from "@openzeppelin/merkle-tree";
let input = "";
for await (const chunk of process.stdin) input += chunk;
const values = JSON.parse(input);
const started = performance.now();
const tree = StandardMerkleTree.of(values, ["address", "uint256"]);
const dump = JSON.stringify(tree.dump());
process.stdout.write(JSON.stringify({ root: tree.root, ms: performance.now() - started,
                                      dump_bytes: dump.length }));
"""


def address(rng: random.Random) -> str:
    return f"0x{rng.getrandbits(160):040x}"


def fill(state: LedgerState, args: argparse.Namespace, rng: random.Random) -> None:
    """One epoch's rows, as the ledger projection would hold them."""
    treasury = "0x" + "77" * 20
    parameters = Parameters(0, GENESIS, EPOCH_S, 30, 60, 10**24, 10**22, 10**5, 500, 2000, treasury)
    state.schedule = state.schedule.with_set(parameters)
    state.finalized[1] = 10**6
    state["epochs"].put({"epoch": 0, "closed": False})
    workers = [address(rng) for _ in range(args.workers)]
    for n, worker in enumerate(workers):
        fact = ChainFact(f"stake-{n}", 1, n, GENESIS - 10, Kind.STAKED, worker, role=1,
                         amount=10**21, stake_after=10**21 + n)  # fmt: skip
        state.facts[worker].append(fact)
        state.fact_chain[worker] = 1
        state["node_uptime"].put({"node": worker, "epoch": 0, "uptime_ppm": rng.randint(0, 10**6)})
    contributors = [address(rng) for _ in range(args.contributors)]
    per_request = max(1, args.uses // args.requests)
    for r in range(args.requests):
        rid = f"{r:032x}"
        state["requests"].put({"request_id": rid, "epoch": 0, "status": "completed",
                               "worker": workers[r % len(workers)], "fee": 10**18 + r,
                               "closed_event_id": f"done-{r}"})  # fmt: skip
        for u in range(per_request):
            contributor = contributors[(r * per_request + u) % len(contributors)]
            state["data_uses"].put({"event_id": f"use-{r}", "source": f"https://s{u}.example/",
                                    "request_id": rid, "credited": True, "units": 1 + u,
                                    "contributor": contributor})  # fmt: skip


def measure(args: argparse.Namespace) -> dict[str, Any]:
    rng = random.Random(args.seed)
    state = LedgerState.empty()
    fill(state, args, rng)
    steps: dict[str, float] = {}
    started = time.perf_counter()
    inputs = epoch_inputs(state, 0, {})
    steps["rows → inputs"] = time.perf_counter() - started
    mark = time.perf_counter()
    rewards = compute_rewards(inputs)
    steps["formula"] = time.perf_counter() - mark
    mark = time.perf_counter()
    statement = build_statement(rewards, {})
    steps["statement + hash"] = time.perf_counter() - mark
    statement_hash = statement.statement_hash
    mark = time.perf_counter()
    root = statement.root
    steps["tree"] = time.perf_counter() - mark
    mark = time.perf_counter()
    dump = json.dumps(statement.dump())
    steps["dump"] = time.perf_counter() - mark
    total = time.perf_counter() - started
    leaves = [[line.address, str(line.cumulative)] for line in statement.lines]
    oz = oz_tree(leaves)
    return {
        "uses": sum(len(r.uses) for r in inputs.requests), "requests": len(inputs.requests),
        "workers": len(inputs.workers), "leaves": len(leaves), "steps_s": steps,
        "total_s": total, "root": root, "statement_hash": statement_hash,
        "dump_bytes": len(dump), "oz_tree_s": oz["ms"] / 1000, "oz_root": oz["root"],
        "same_root": oz["root"] == root, "statement": statement,
    }  # fmt: skip


def oz_tree(leaves: list[list[str]]) -> dict[str, Any]:
    done = subprocess.run(
        ["node", "--input-type=module", "-e", OZ_BUILD],
        input=json.dumps(leaves), capture_output=True, text=True, cwd=ROOT, check=True,
    )  # fmt: skip
    return json.loads(done.stdout)


def gas(statement: Any) -> dict[str, int]:
    """postRoot and two claims for the statement's tree, on a fresh anvil."""
    from contracts_gas import claim_gas  # bench/contracts_gas.py
    from web3 import Web3

    from contracts.client import MasaClient
    from contracts.deploy import DeployParams, deploy_all
    from tests.support.anvil import AnvilNode

    with AnvilNode() as node:
        w3 = Web3(Web3.HTTPProvider(node.rpc_url))
        deployment = deploy_all(w3, node.accounts[0], DeployParams())
        admin = MasaClient(w3, deployment, node.accounts[0])
        poster = Web3.keccak(text="POSTER_ROLE")
        admin.send(admin.distributor.functions.grantRole(poster, admin.address))
        total = statement.total_cumulative
        admin.mint(admin.address, total)
        admin.fund(total)
        posted = admin.post_root(1, statement.root, total, statement.statement_hash)["gasUsed"]
        tree = statement.tree()
        lines = statement.lines[:2]
        claims = [claim_gas(admin, tree, Web3.to_checksum_address(x.address), x.cumulative)
                  for x in lines]  # fmt: skip
    return {"postRoot": posted, "claim_first": claims[0], "claim_second": claims[1]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--uses", type=int, default=1_000_000)
    parser.add_argument("--contributors", type=int, default=100_000)
    parser.add_argument("--requests", type=int, default=100_000)
    parser.add_argument("--workers", type=int, default=1_000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--no-gas", action="store_true", help="skip the anvil part")
    parser.add_argument(
        "--output", type=Path, default=ROOT / "bench" / "results" / "settlement.json"
    )
    args = parser.parse_args()
    result = measure(args)
    statement = result.pop("statement")
    result["gas"] = {} if args.no_gas else gas(statement)
    rows = [f"| {name} | {seconds:.2f} s |" for name, seconds in result["steps_s"].items()]
    print(f"one epoch: {result['uses']:,} uses, {result['requests']:,} requests, "
          f"{result['workers']:,} workers -> {result['leaves']:,} leaves")  # fmt: skip
    print("| step | time |\n|---|---:|\n" + "\n".join(rows))
    print(f"| **total (goal ≤ 10 s)** | **{result['total_s']:.2f} s** |")
    print(f"| @openzeppelin/merkle-tree, same leaves (tree + dump) | {result['oz_tree_s']:.2f} s |")
    print(f"same root as OpenZeppelin: {result['same_root']}; gas: {result['gas']}")
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
