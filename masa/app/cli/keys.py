"""``masa keys new|show``: producer keys in encrypted keystore files."""

from __future__ import annotations

from pathlib import Path

import typer

from indexer.events.fields import checksum
from masa.app.cli.common import JsonOption, print_json, settings
from masa.app.keys import DEFAULT_PASSWORD_ENV, keystore_address, new_keystore, password_from

app = typer.Typer(help="Create and inspect producer keys.", no_args_is_help=True)


@app.command("new")
def new(
    ctx: typer.Context,
    out: Path | None = typer.Option(
        None, "--out", help="Where to write (default: the worker key)."
    ),
    password_env: str = typer.Option(
        DEFAULT_PASSWORD_ENV, "--password-env", help="Variable holding the new password."
    ),
    as_json: bool = JsonOption,
) -> None:
    """Create a new key and save it encrypted (scrypt). Never overwrites a file."""
    path = out or settings(ctx).worker_keystore_path
    account = new_keystore(path, password_from(password_env, confirm=True))
    _show(path, account.address.lower(), as_json)


@app.command("show")
def show(
    ctx: typer.Context,
    path: Path | None = typer.Argument(None, help="Keystore file (default: the worker key)."),
    as_json: bool = JsonOption,
) -> None:
    """Print the address of a keystore file (no password needed)."""
    path = path or settings(ctx).worker_keystore_path
    _show(path, keystore_address(path), as_json)


def _show(path: Path, address: str, as_json: bool) -> None:
    if as_json:
        print_json({"address": checksum(address), "path": str(path)})
    else:
        typer.echo(f"{checksum(address)}  {path}")
