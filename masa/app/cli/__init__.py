"""The ``masa`` command: one root, one sub-command module per area."""

from __future__ import annotations

import sys
from pathlib import Path

import typer
from pydantic import ValidationError
from typer._click.exceptions import ClickException, NoArgsIsHelpError, UsageError

from masa.app.cli.common import RootOptions
from masa.errors import MasaError

app = typer.Typer(
    name="masa",
    help="Operate the Masa ledger: ingest signed events, index the chain, run workers, settle.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    rich_markup_mode=None,
)


@app.callback()
def root(
    ctx: typer.Context,
    config: Path | None = typer.Option(
        None,
        "--config",
        help="TOML settings file (default: ./masa.toml if present; env MASA_CONFIG).",
    ),
    home: Path | None = typer.Option(
        None, "--home", help="Data folder of the embedded defaults and keys (env MASA_HOME)."
    ),
    log_level: str | None = typer.Option(
        None, "--log-level", help="DEBUG, INFO, WARNING or ERROR (env MASA_LOG_LEVEL)."
    ),
) -> None:
    ctx.obj = RootOptions(config, home, log_level)


def main() -> None:
    """Entry point: errors become one line on stderr and an exit code, never a traceback."""
    from masa.app.cli import commands  # noqa: F401  (registers the sub-commands)

    try:
        code = app(standalone_mode=False)
    except NoArgsIsHelpError as exc:
        typer.echo(exc.ctx.get_help() if exc.ctx else "see 'masa --help'")
        sys.exit(0)
    except UsageError as exc:
        command = exc.ctx.command_path if exc.ctx else "masa"
        typer.echo(f"{command}: error: {exc.format_message()} (see '{command} --help')", err=True)
        sys.exit(2)
    except ClickException as exc:
        typer.echo(f"masa: error: {exc.format_message()}", err=True)
        sys.exit(exc.exit_code)
    except typer.Abort:
        sys.exit(130)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        typer.echo(f"masa: error: invalid setting {where}: {first['msg']}", err=True)
        sys.exit(2)
    except MasaError as exc:
        typer.echo(f"masa: error: {exc}", err=True)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        sys.exit(130)
    sys.exit(code if isinstance(code, int) else 0)
