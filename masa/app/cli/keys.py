"""``masa keys new|import|show``: producer keys in encrypted keystore files."""

from __future__ import annotations

import sys
from enum import StrEnum
from pathlib import Path

import typer

from indexer.events.fields import checksum
from masa.app.cli.common import JsonOption, examples, print_json, settings
from masa.app.keys import (
    DEFAULT_PASSWORD_ENV,
    import_key,
    keystore_address,
    new_keystore,
    password_from,
)
from masa.errors import ConfigurationError

app = typer.Typer(help="Create, import and inspect producer keys.", no_args_is_help=True)


class KeyRole(StrEnum):
    WORKER = "worker"
    INDEXER = "indexer"


Out = typer.Option(None, "--out", help="Where to write (default: the key --for names).")
For = typer.Option(
    KeyRole.WORKER,
    "--for",
    case_sensitive=False,
    help="Whose key: worker (worker.keystore, <home>/keys/worker.json) or indexer"
    " (chain.indexer_keystore, <home>/keys/indexer.json), where 'masa worker run' and"
    " 'masa index' look.",
)
PasswordEnv = typer.Option(
    DEFAULT_PASSWORD_ENV, "--password-env", help="Variable holding the new password."
)


def _default_path(ctx: typer.Context, role: KeyRole) -> Path:
    config = settings(ctx)
    return config.indexer_keystore_path if role is KeyRole.INDEXER else config.worker_keystore_path


@app.command(
    "new",
    epilog=examples(
        "masa keys new                          # the worker key, <home>/keys/worker.json",
        "masa keys new --for indexer            # where 'masa index' looks",
        "MASA_KEY_PASSWORD=... masa keys new --out oracle.json --json",
    ),
)
def new(
    ctx: typer.Context,
    out: Path | None = Out,
    role: KeyRole = For,
    password_env: str = PasswordEnv,
    as_json: bool = JsonOption,
) -> None:
    """Create a new key and save it encrypted (scrypt). Never overwrites a file; refuses an
    empty password."""
    path = out or _default_path(ctx, role)
    account = new_keystore(path, password_from(password_env, confirm=True))
    _show(path, account.address.lower(), as_json)


@app.command(
    "import",
    epilog=examples(
        "masa keys import key.hex --for indexer",
        "echo 0x4c0883a6... | masa keys import - --out oracle.json",
    ),
)
def import_(
    ctx: typer.Context,
    source: Path = typer.Argument(..., help="File holding the private key (hex), or - for stdin."),
    out: Path | None = Out,
    role: KeyRole = For,
    password_env: str = PasswordEnv,
    as_json: bool = JsonOption,
) -> None:
    """Encrypt an existing private key (64 hex digits) into a keystore file. Never
    overwrites a file; refuses an empty password."""
    try:
        text = sys.stdin.read() if str(source) == "-" else source.read_text("utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigurationError(f"cannot read a private key from {source}: {exc}") from exc
    path = out or _default_path(ctx, role)
    account = import_key(path, text, password_from(password_env, confirm=True))
    _show(path, account.address.lower(), as_json)


@app.command(
    "show",
    epilog=examples("masa keys show", "masa keys show oracle.json --json"),
)
def show(
    ctx: typer.Context,
    path: Path | None = typer.Argument(None, help="Keystore file (default: the key --for names)."),
    role: KeyRole = For,
    as_json: bool = JsonOption,
) -> None:
    """Print the address of a keystore file (no password needed)."""
    path = path or _default_path(ctx, role)
    _show(path, keystore_address(path), as_json)


def _show(path: Path, address: str, as_json: bool) -> None:
    if as_json:
        print_json({"address": checksum(address), "path": str(path)})
    else:
        typer.echo(f"{checksum(address)}  {path}")
