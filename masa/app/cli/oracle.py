"""``masa oracle deposit|balance``: an oracle's prepaid fees, paid on chain
(``RewardsDistributor.depositFees``) and read back from the read models (``oracle_balances``,
the query the API's ``/v1/oracles/{address}/balance`` answers with). docs/oracle.md."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path
from typing import Any

import typer

from contracts.client import MasaClient
from contracts.deploy import WEI_PER_TOKEN, Deployment
from masa.app.cli.chain import _address, _chain, tokens
from masa.app.cli.common import JsonOption, err_console, examples, out_console, print_json, settings
from masa.app.cli.common import table as rich_table
from masa.app.keys import DEFAULT_PASSWORD_ENV, keystore_address, load_keystore, password_from
from masa.app.settings import Settings
from masa.app.wiring import open_read_db
from masa.errors import MasaError, PermanentError, RetryableError
from projections import queries

app = typer.Typer(help="An oracle's prepaid fees: deposit on chain, see the balance.")

KeyFileOption = typer.Option(
    None, "--key-file", help="The oracle's keystore (default: <home>/keys/oracle.json)."
)
PasswordEnvOption = typer.Option(
    DEFAULT_PASSWORD_ENV, "--password-env", help="Variable holding the keystore password."
)
BALANCE_FIELDS = ("deposited", "pending_deposits", "reserved", "spent", "available")


def key_path(config: Settings, key_file: Path | None) -> Path:
    return key_file or config.home / "keys" / "oracle.json"


@app.command(
    "deposit",
    epilog=examples(
        "masa oracle deposit --amount 50",
        "masa oracle deposit --amount 0.25 --key-file oracle.json --json",
    ),
)
def deposit(
    ctx: typer.Context,
    amount: str = typer.Option(..., "--amount", help="In MASA (up to 18 decimals)."),
    key_file: Path | None = KeyFileOption,
    password_env: str = PasswordEnvOption,
    as_json: bool = JsonOption,
) -> None:
    """Prepay request fees: RewardsDistributor.depositFees from the oracle's wallet (approves
    the distributor first if needed). Ingest counts a deposit once its block is final and the
    indexer has published it; 'masa oracle balance' shows it then."""
    wei = tokens(amount)
    config = settings(ctx)
    w3 = _chain(config)
    account = load_keystore(key_path(config, key_file), password_from(password_env))
    client = MasaClient(w3, Deployment.load(config.deployment_path), account)
    total = client.deposit_fees(wei)
    report = {
        "oracle": account.address.lower(),
        "amount": str(wei),
        "deposited_on_chain": str(total),
        "block": w3.eth.block_number,
    }
    if as_json:
        print_json(report)
        return
    err_console.print(
        f"deposited {Decimal(wei) / WEI_PER_TOKEN} MASA; {total} wei in all on chain."
        " It counts once final and indexed (masa oracle balance)."
    )


@app.command(
    "balance",
    epilog=examples(
        "masa oracle balance",
        "masa oracle balance 0xd8dA6BF26964aF9D7eEd9e03E53415D37aA96045 --json",
    ),
)
def balance(
    ctx: typer.Context,
    address: str | None = typer.Argument(None, help="Oracle address (default: the key file's)."),
    key_file: Path | None = KeyFileOption,
    as_json: bool = JsonOption,
) -> None:
    """Deposited (final), pending (not final yet), reserved, spent, debited (reserved + spent)
    and available, in wei, from the read models: what ingest will let requests take."""
    config = settings(ctx)
    oracle = _address(address) if address else keystore_address(key_path(config, key_file))
    data = balance_report(config, oracle)
    if as_json:
        print_json(data)
        return
    out_console.print(
        rich_table(f"oracle {oracle}", ["", "wei"], [[k, v] for k, v in data.items()])
    )


def balance_report(config: Settings, oracle: str) -> dict[str, Any]:
    """The oracle's row of ``oracle_balances`` (zeros when the read models know no deposit of
    it), wei as decimal strings; raises ``PermanentError`` when the read models cannot answer."""
    row = read_balance(config, oracle)
    amounts = {name: int(row[name]) if row else 0 for name in BALANCE_FIELDS}
    return {
        "oracle": oracle,
        **{name: str(value) for name, value in amounts.items()},
        "debited": str(amounts["reserved"] + amounts["spent"]),
        "unpaid_requests": int(row["unpaid_requests"]) if row else 0,
    }


def read_balance(config: Settings, oracle: str) -> dict[str, Any] | None:
    """``queries.oracle_balance``. The embedded read models are opened read-only, so that a
    command run before any projection does not create an empty file."""
    try:
        db = open_read_db(config, reader=config.store.backend == "sqlite")
        try:
            return queries.oracle_balance(db, oracle.lower())
        finally:
            db.close()
    except MasaError as exc:
        kind = RetryableError if isinstance(exc, RetryableError) else PermanentError
        raise kind(
            f"cannot read the balance from the read models ({exc}); run 'masa db migrate'"
            " and 'masa project run'"
        ) from exc
