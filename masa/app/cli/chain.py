"""``masa contracts deploy|mint`` and ``masa node stake|unstake|withdraw|status``."""

from __future__ import annotations

from decimal import Decimal, InvalidOperation, localcontext
from enum import StrEnum
from pathlib import Path
from typing import Any

import typer

from contracts.client import MasaClient, Role, StakeStatus
from contracts.deploy import WEI_PER_TOKEN, Deployment, DeployParams, deploy_all
from indexer.events.fields import MAX_UINT256, checksum, parse_address
from masa.app.cli.common import (
    JsonOption,
    err_console,
    examples,
    out_console,
    print_json,
    settings,
    table,
)
from masa.app.keys import DEFAULT_PASSWORD_ENV, load_keystore, password_from
from masa.app.settings import Settings
from masa.app.wiring import open_web3
from masa.errors import ConfigurationError

contracts_app = typer.Typer(
    help="Deploy the Masa contracts and mint test tokens.", no_args_is_help=True
)
node_app = typer.Typer(help="Stake, unstake and inspect a node.", no_args_is_help=True)


class RoleName(StrEnum):
    WORKER = "worker"
    ORACLE = "oracle"


KeyFile = typer.Option(..., "--key-file", help="Keystore of the account that signs.")
PasswordEnv = typer.Option(
    DEFAULT_PASSWORD_ENV, "--password-env", help="Variable holding its password."
)


def tokens(text: str) -> int:
    """MASA amount ("1000", "0.5") to wei; at most 18 decimals."""
    try:
        amount = Decimal(text.strip())
    except InvalidOperation as exc:
        raise ConfigurationError(f"{text!r} is not an amount of MASA") from exc
    if not amount.is_finite() or amount <= 0:
        raise ConfigurationError(f"{text!r}: amounts are positive with at most 18 decimals")
    if amount > Decimal(MAX_UINT256) / WEI_PER_TOKEN:
        raise ConfigurationError(f"{text!r}: larger than any token supply (2^256 wei)")
    with localcontext() as exact:
        exact.prec = 200  # 2^256 wei has 78 digits: no rounding below that
        wei = amount * WEI_PER_TOKEN
    if wei != wei.to_integral_value():
        raise ConfigurationError(f"{text!r}: amounts are positive with at most 18 decimals")
    return int(wei)


def _chain(config: Settings) -> Any:
    if config.chain.rpc_url == "inprocess":
        raise ConfigurationError(
            "chain.rpc_url is 'inprocess', an EVM that lives inside one command (masa demo);"
            " set MASA_CHAIN__RPC_URL to a JSON-RPC endpoint"
        )
    return open_web3(config)


def _client(ctx: typer.Context, key_file: Path | None, password_env: str) -> MasaClient:
    config = settings(ctx)
    w3 = _chain(config)
    account = load_keystore(key_file, password_from(password_env)) if key_file else None
    return MasaClient(w3, Deployment.load(config.deployment_path), account)


@contracts_app.command(
    "deploy",
    epilog=examples(
        "masa contracts deploy --key-file admin.json",
        "masa contracts deploy --key-file admin.json --cooldown-s 60 --force --json",
    ),
)
def deploy(
    ctx: typer.Context,
    key_file: Path = KeyFile,
    password_env: str = PasswordEnv,
    cooldown_s: int = typer.Option(7 * 24 * 3600, "--cooldown-s", min=0, help="Unstake cooldown."),
    min_worker_stake: str = typer.Option("1000", "--min-worker-stake", help="In MASA."),
    min_oracle_stake: str = typer.Option("1000", "--min-oracle-stake", help="In MASA."),
    treasury: str | None = typer.Option(None, "--treasury", help="Receiver of slashed tokens."),
    force: bool = typer.Option(False, "--force", help="Replace an existing deployment file."),
    as_json: bool = JsonOption,
) -> None:
    """Deploy MasaToken, NodeStaking and RewardsDistributor, grant roles to the deployer,
    and write the addresses to the deployment file the other commands read."""
    config = settings(ctx)
    path = config.deployment_path
    if path.exists() and not force:
        raise ConfigurationError(f"{path} exists; use --force to replace it")
    w3 = _chain(config)
    account = load_keystore(key_file, password_from(password_env))
    params = DeployParams(
        cooldown_s=cooldown_s,
        min_worker_stake=tokens(min_worker_stake),
        min_oracle_stake=tokens(min_oracle_stake),
        treasury=treasury,
    )
    deployment = deploy_all(w3, account, params)
    deployment.save(path)
    summary = {
        "chain_id": deployment.chain_id,
        "deployment_file": str(path),
        **{name: c.address for name, c in deployment.contracts().items()},
        "start_block": deployment.start_block,
    }
    if as_json:
        print_json(summary)
    else:
        out_console.print(table("deployed", ["", ""], [[k, v] for k, v in summary.items()]))


@contracts_app.command(
    "mint",
    epilog=examples(
        "masa contracts mint --to 0xd8dA6BF26964aF9D7eEd9e03E53415D37aA96045 --amount 5000"
        " --key-file admin.json",
    ),
)
def mint(
    ctx: typer.Context,
    to: str = typer.Option(..., "--to", help="Receiving address."),
    amount: str = typer.Option(..., "--amount", help="In MASA."),
    key_file: Path = KeyFile,
    password_env: str = PasswordEnv,
) -> None:
    """Mint MASA (needs the minter role; for test networks)."""
    receiver, wei = checksum(_address(to)), tokens(amount)
    _client(ctx, key_file, password_env).mint(receiver, wei)
    err_console.print(f"minted {amount} MASA to {receiver}")


@node_app.command(
    "stake",
    epilog=examples(
        "masa node stake --role worker --amount 1000 --key-file worker.json",
    ),
)
def stake(
    ctx: typer.Context,
    role: RoleName = typer.Option(..., "--role", help="The node's role.", case_sensitive=False),
    amount: str = typer.Option(..., "--amount", help="In MASA; at least the role's minimum."),
    key_file: Path = KeyFile,
    password_env: str = PasswordEnv,
    as_json: bool = JsonOption,
) -> None:
    """Stake MASA as a worker or an oracle (approves the staking contract first if needed)."""
    wei = tokens(amount)
    client = _client(ctx, key_file, password_env)
    client.stake(Role[role.name], wei)
    _print_status(client.stake_status(), as_json)


@node_app.command(
    "unstake",
    epilog=examples(
        "masa node unstake --amount 250.5 --key-file worker.json",
    ),
)
def unstake(
    ctx: typer.Context,
    amount: str = typer.Option(..., "--amount", help="In MASA."),
    key_file: Path = KeyFile,
    password_env: str = PasswordEnv,
    as_json: bool = JsonOption,
) -> None:
    """Move stake into a lock that can be withdrawn after the cooldown (still slashable)."""
    wei = tokens(amount)
    client = _client(ctx, key_file, password_env)
    lock = client.request_unstake(wei)
    err_console.print(
        f"lock {lock.lock_id}: {Decimal(lock.amount) / WEI_PER_TOKEN} MASA,"
        f" withdrawable from {lock.unlock_at}"
    )
    _print_status(client.stake_status(), as_json)


@node_app.command(
    "withdraw",
    epilog=examples(
        "masa node withdraw --key-file worker.json",
        "masa node withdraw --lock-id 3 --key-file worker.json --json",
    ),
)
def withdraw(
    ctx: typer.Context,
    lock_id: int | None = typer.Option(
        None, "--lock-id", help="One lock; default: every withdrawable one."
    ),
    key_file: Path = KeyFile,
    password_env: str = PasswordEnv,
    as_json: bool = JsonOption,
) -> None:
    """Withdraw unlocked stake back to the node's wallet."""
    client = _client(ctx, key_file, password_env)
    ids = (
        [lock_id]
        if lock_id is not None
        else [lock.lock_id for lock in client.stake_status().withdrawable]
    )
    if not ids:
        raise ConfigurationError("no lock is withdrawable yet (see 'masa node status')")
    paid = sum(client.withdraw(i) for i in ids)
    err_console.print(f"withdrew {Decimal(paid) / WEI_PER_TOKEN} MASA from {len(ids)} lock(s)")
    _print_status(client.stake_status(), as_json)


@node_app.command(
    "status",
    epilog=examples(
        "masa node status --key-file worker.json",
        "masa node status 0xd8dA6BF26964aF9D7eEd9e03E53415D37aA96045 --json",
    ),
)
def status(
    ctx: typer.Context,
    address: str | None = typer.Argument(None, help="Node address (default: the key file's)."),
    key_file: Path | None = typer.Option(None, "--key-file", help="Keystore whose node to show."),
    password_env: str = PasswordEnv,
    as_json: bool = JsonOption,
) -> None:
    """Role, active stake, locks and what is withdrawable."""
    if address is None and key_file is None:
        raise ConfigurationError("give an ADDRESS or --key-file")
    node = _address(address) if address else None
    _print_status(_client(ctx, key_file, password_env).stake_status(node), as_json)


def _print_status(status: StakeStatus, as_json: bool) -> None:
    data = {
        "node": status.node,
        "role": status.role.name.lower() if status.role else None,
        "stake": str(status.stake),
        "locked": str(status.locked),
        "active": status.active,
        "locks": [
            {"lock_id": lock.lock_id, "amount": str(lock.amount), "unlock_at": lock.unlock_at}
            for lock in status.locks
        ],
        "withdrawable": [lock.lock_id for lock in status.withdrawable],
        "min_stake": None if status.min_stake is None else str(status.min_stake),
        "block": status.block_number,
    }
    if as_json:
        print_json(data)
        return
    rows = [[k, v] for k, v in data.items() if k != "locks"]
    rows += [
        [f"lock {lock['lock_id']}", f"{lock['amount']} wei until {lock['unlock_at']}"]
        for lock in data["locks"]
    ]
    out_console.print(table("node", ["", ""], rows))


def _address(text: str) -> str:
    try:
        return parse_address(text)
    except ValueError as exc:
        raise ConfigurationError(f"{text!r}: {exc}") from exc
