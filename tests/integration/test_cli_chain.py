"""The operator's chain commands against a real anvil, as an operator runs them: `masa`
subprocesses with keystore files. Errors are one line on stderr, never a traceback."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from eth_account import Account
from web3 import Web3

from masa.app.keys import save_keystore

MASA = str(Path(sys.executable).parent / "masa")
PASSWORD = "correct horse"


@pytest.fixture
def operator(fresh_anvil, tmp_path):
    deployer, worker = fresh_anvil.accounts[0], Account.create()
    for name, account in (("deployer", deployer), ("worker", worker)):
        save_keystore(account, tmp_path / f"{name}.json", PASSWORD)
    env = {
        **os.environ,
        "MASA_HOME": str(tmp_path),
        "MASA_KEY_PASSWORD": PASSWORD,
        "MASA_CHAIN__RPC_URL": fresh_anvil.rpc_url,
    }
    w3 = Web3(Web3.HTTPProvider(fresh_anvil.rpc_url))
    w3.eth.send_transaction(
        {"from": deployer.address, "to": worker.address, "value": 10**18}
    )  # gas

    def masa(*args: str, ok: bool = True) -> subprocess.CompletedProcess[str]:
        done = subprocess.run([MASA, *args], env=env, capture_output=True, text=True, timeout=120)
        if ok:
            assert done.returncode == 0, done.stderr
        return done

    return masa, tmp_path, worker


def test_deploy_mint_stake_unstake_and_status(operator):
    masa, home, worker = operator
    deployed = json.loads(
        masa(
            "contracts",
            "deploy",
            "--key-file",
            str(home / "deployer.json"),
            "--min-worker-stake",
            "100",
            "--cooldown-s",
            "3600",
            "--json",
        ).stdout
    )
    assert Path(deployed["deployment_file"]) == home / "deployment.json"
    assert deployed["start_block"] >= 1

    masa(
        "contracts",
        "mint",
        "--to",
        worker.address,
        "--amount",
        "500",
        "--key-file",
        str(home / "deployer.json"),
    )
    staked = json.loads(
        masa(
            "node",
            "stake",
            "--role",
            "worker",
            "--amount",
            "250.5",
            "--key-file",
            str(home / "worker.json"),
            "--json",
        ).stdout
    )
    assert staked["role"] == "worker"
    assert staked["stake"] == str(250_500_000_000_000_000_000)
    assert staked["active"] is True

    unstaked = json.loads(
        masa(
            "node",
            "unstake",
            "--amount",
            "250.5",
            "--key-file",
            str(home / "worker.json"),
            "--json",
        ).stdout
    )
    assert unstaked["stake"] == "0" and unstaked["locked"] == str(250_500_000_000_000_000_000)
    assert unstaked["withdrawable"] == []

    early = masa("node", "withdraw", "--key-file", str(home / "worker.json"), ok=False)
    assert early.returncode == 2
    assert early.stderr.strip().splitlines() == [
        "masa: error: no lock is withdrawable yet (see 'masa node status')"
    ]

    status = json.loads(masa("node", "status", worker.address, "--json").stdout)
    assert status["locks"][0]["amount"] == str(250_500_000_000_000_000_000)


def test_an_oracle_deposits_fees_on_chain(fresh_anvil, tmp_path):
    """``masa oracle deposit``, in this process (``main()``, as test_cli_breaking runs it)."""
    from tests.integration.test_cli_breaking import masa

    deployer, oracle = fresh_anvil.accounts[0], Account.create()
    save_keystore(deployer, tmp_path / "deployer.json", PASSWORD)
    save_keystore(oracle, tmp_path / "home" / "keys" / "oracle.json", PASSWORD)  # the default
    Web3(Web3.HTTPProvider(fresh_anvil.rpc_url)).eth.send_transaction(
        {"from": deployer.address, "to": oracle.address, "value": 10**18}
    )
    env = {"MASA_KEY_PASSWORD": PASSWORD, "MASA_CHAIN__RPC_URL": fresh_anvil.rpc_url}

    def run(*args: str, code: int = 0) -> str:
        done = masa(list(args), tmp_path, env)
        assert done.code == code and "Traceback" not in done.output, done
        return done.stdout if code == 0 else done.stderr

    admin = ["--key-file", str(tmp_path / "deployer.json")]
    run("contracts", "deploy", *admin, "--json")
    run("contracts", "mint", "--to", oracle.address, "--amount", "5", *admin)
    first = json.loads(run("oracle", "deposit", "--amount", "1.5", "--json"))
    assert first["oracle"] == oracle.address.lower()
    assert first["amount"] == first["deposited_on_chain"] == str(1_500_000_000_000_000_000)
    again = json.loads(run("oracle", "deposit", "--amount", "2", "--json"))
    assert again["deposited_on_chain"] == str(3_500_000_000_000_000_000)
    broke = run("oracle", "deposit", "--amount", "10", code=1)  # more than the wallet holds
    assert len(broke.strip().splitlines()) == 1 and "ERC20InsufficientBalance" in broke, broke


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["node", "stake", "--role", "boss", "--amount", "1", "--key-file", "k.json"],
            "'boss' is not one of",
        ),
        (
            ["node", "stake", "--role", "worker", "--amount", "-3", "--key-file", "worker.json"],
            "amounts are positive",
        ),
        (["node", "status", "0x1234"], "address must be 0x followed by 40 hex digits"),
        (["node", "status", "--key-file", "nothere.json"], "no key file at"),
        (["node", "status", "0x" + "11" * 20], "no deployment at"),
        (
            [
                "contracts",
                "mint",
                "--to",
                "0x" + "11" * 20,
                "--amount",
                "1",
                "--key-file",
                "missing.json",
            ],
            "no key file at",
        ),
    ],
)
def test_bad_arguments_get_one_clear_line(operator, args, message):
    masa, home, _ = operator
    args = [str(home / a) if a.endswith(".json") else a for a in args]
    done = masa(*args, ok=False)
    assert done.returncode != 0
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], done.stderr
    assert "Traceback" not in done.stderr
