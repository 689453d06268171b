"""Gas of the Masa contracts on anvil: root posts and claims at 1k and 100k leaves, staking.

Deploys the three contracts on a fresh anvil, then for each tree size posts epoch 1 (random
accounts, random cumulative amounts), claims a sample of leaves for accounts that hold no
tokens yet ("first claim"), posts epoch 2 with every amount raised, claims the same accounts
again ("later claim") and other accounts against the previous root, then posts epoch 3 (the
steady-state cost of a post). postRoot stores
only the root, so its gas does not depend on the tree size; a claim's grows with the proof
(log2 of the leaves, ~750 gas per sibling). Staking calls are measured once.

    .venv/bin/python bench/contracts_gas.py [--sizes 1000 100000] [--samples 5]

Prints a Markdown table and writes bench/results/contracts_gas.json (or ``--output``).
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a script: make the repo importable
    sys.path.insert(0, str(ROOT))

from web3 import Web3  # noqa: E402
from web3.types import TxReceipt  # noqa: E402

from contracts.client import MasaClient, Role  # noqa: E402
from contracts.deploy import DeployParams, deploy_all  # noqa: E402
from settlement.merkle import StandardMerkleTree, rewards_tree  # noqa: E402
from tests.support.anvil import AnvilNode  # noqa: E402

STATEMENT = "0x" + "00" * 32
Row = dict[str, Any]


def random_entitlements(rng: random.Random, size: int) -> dict[str, int]:
    accounts = {Web3.to_checksum_address(f"0x{rng.getrandbits(160):040x}") for _ in range(size)}
    return {account: rng.randint(10**15, 10**21) for account in sorted(accounts)}


def post(
    admin: MasaClient, epoch: int, cumulative: dict[str, int]
) -> tuple[StandardMerkleTree, int]:
    tree = rewards_tree(cumulative)
    total = sum(cumulative.values())
    funded = admin.distributor_state().total_funded
    if total > funded:
        admin.mint(admin.address, total - funded)
        admin.fund(total - funded)
    receipt = admin.post_root(epoch, tree.root, total, STATEMENT)
    return tree, receipt["gasUsed"]


def claim_gas(admin: MasaClient, tree: StandardMerkleTree, account: str, amount: int) -> int:
    proof = tree.get_proof((account, amount))
    call = admin.distributor.functions.claim(account, amount, proof)
    return admin.send(call)["gasUsed"]


def summary(what: str, size: int | None, gas: list[int], proof: int | None = None) -> Row:
    return {
        "operation": what,
        "leaves": size,
        "proof_length": proof,
        "gas_median": int(statistics.median(gas)),
        "gas_min": min(gas),
        "gas_max": max(gas),
        "samples": len(gas),
    }


def measure_tree(admin: MasaClient, size: int, samples: int, rng: random.Random) -> list[Row]:
    """Two epochs on a fresh distributor state (the caller reverts to a snapshot after)."""
    first = random_entitlements(rng, size)
    picked = rng.sample(sorted(first), 2 * samples)
    again, previous = picked[:samples], picked[samples:]
    tree1, post1 = post(admin, 1, first)
    firsts = [claim_gas(admin, tree1, a, first[a]) for a in again]
    second = {account: amount + rng.randint(1, 10**18) for account, amount in first.items()}
    tree2, post2 = post(admin, 2, second)
    laters = [claim_gas(admin, tree2, a, second[a]) for a in again]
    olds = [claim_gas(admin, tree1, a, first[a]) for a in previous]
    third = {account: amount + 1 for account, amount in second.items()}
    _, post3 = post(admin, 3, third)
    proof = len(tree2.get_proof((again[0], second[again[0]])))
    return [
        summary("postRoot, epoch 1", size, [post1]),
        summary("postRoot, epoch 2 (first previous root)", size, [post2]),
        summary("postRoot, epoch 3 on (steady state)", size, [post3]),
        summary("claim, first (receiver holds no tokens)", size, firsts, proof),
        summary("claim, later epoch (same receiver)", size, laters, proof),
        summary("claim, first, against the previous root", size, olds, proof),
    ]


def measure_staking(
    node: AnvilNode, admin: MasaClient, make: Callable[[int], MasaClient]
) -> list[Row]:
    worker = make(5)
    admin.mint(worker.address, 10**24)
    gas: dict[str, int] = {}

    def record(what: str, receipt: TxReceipt) -> None:
        gas[what] = receipt["gasUsed"]

    staking = worker.staking.functions
    worker.send(worker.token.functions.approve(worker.staking.address, 2**256 - 1))
    record("stake, first", worker.send(staking.stake(int(Role.WORKER), 10**21)))
    record("stake, top-up", worker.send(staking.stake(int(Role.WORKER), 10**21)))
    record("requestUnstake, first lock", worker.send(staking.requestUnstake(10**20)))
    record("requestUnstake, second lock", worker.send(staking.requestUnstake(10**20)))
    slasher = make(1)
    record(
        "slash, stake only",
        slasher.send(slasher.staking.functions.slash(worker.address, 10**18, b"\0" * 32)),
    )
    everything = 10**22
    record(
        "slash, stake + 2 locks",
        slasher.send(slasher.staking.functions.slash(worker.address, everything, b"\0" * 32)),
    )
    worker.send(staking.stake(int(Role.WORKER), 10**21))
    lock = worker.request_unstake(10**21)
    node.rpc("evm_increaseTime", 7 * 24 * 3600)
    node.rpc("evm_mine")
    record("withdraw (last lock, releases the role)", worker.send(staking.withdraw(lock.lock_id)))
    return [summary(what, None, [value]) for what, value in gas.items()]


def render(rows: list[Row]) -> str:
    lines = ["| operation | leaves | proof | gas (median) | min-max |", "|---|---:|---:|---:|---|"]
    for r in rows:
        leaves = f"{r['leaves']:,}" if r["leaves"] else ""
        proof = str(r["proof_length"]) if r["proof_length"] is not None else ""
        spread = f"{r['gas_min']:,}-{r['gas_max']:,}" if r["samples"] > 1 else ""
        lines.append(f"| {r['operation']} | {leaves} | {proof} | {r['gas_median']:,} | {spread} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1_000, 100_000])
    parser.add_argument("--samples", type=int, default=5)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--output", type=Path, default=ROOT / "bench" / "results" / "contracts_gas.json"
    )
    args = parser.parse_args()
    rng = random.Random(args.seed)
    with AnvilNode() as node:
        w3 = Web3(Web3.HTTPProvider(node.rpc_url))
        deployer = node.accounts[0]
        deployment = deploy_all(w3, deployer, DeployParams(slasher=node.accounts[1].address))

        def make(index: int) -> MasaClient:
            return MasaClient(w3, deployment, node.accounts[index])

        admin = make(0)
        admin.send(
            admin.distributor.functions.grantRole(Web3.keccak(text="POSTER_ROLE"), deployer.address)
        )
        rows: list[Row] = []
        for size in args.sizes:
            snapshot = node.rpc("evm_snapshot")
            rows += measure_tree(admin, size, args.samples, rng)
            node.rpc("evm_revert", snapshot)
        rows += measure_staking(node, admin, make)
    print(render(rows))
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps({"anvil": "1.7.1", "rows": rows}, indent=2) + "\n")


if __name__ == "__main__":
    main()
