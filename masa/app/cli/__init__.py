"""The ``masa`` command: one root, one sub-command module per area."""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import NoReturn

import typer

from masa.app.cli.common import RootOptions, interrupted
from masa.app.failures import translate
from masa.errors import ConfigurationError, MasaError

USAGE = ConfigurationError.exit_code
INTERRUPTED = 130

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
    """Entry point: exit 0 with the result, or one line on stderr and the exit code of the
    error's kind (docs/operator-guide.md, "Exit codes"), never a traceback."""
    from masa.app.cli import commands  # noqa: F401  (registers the sub-commands)

    try:
        code = app(prog_name="masa", standalone_mode=False)
    except typer.TyperException as exc:  # typer's (vendored) click errors: usage, help
        _usage(exc)
    except typer.Abort:
        _fail("interrupted", INTERRUPTED)
    except KeyboardInterrupt:
        _fail("interrupted", INTERRUPTED)
    except MasaError as exc:
        _fail(str(exc), exc.exit_code)
    except Exception as exc:  # a library error no adapter translated: still one line
        _unexpected(exc)
    if interrupted():
        _fail("interrupted; finished the step in hand", INTERRUPTED)
    sys.exit(code if isinstance(code, int) else 0)


def _usage(exc: typer.TyperException) -> NoReturn:
    ctx = getattr(exc, "ctx", None)
    if ctx is not None and exc.format_message() == ctx.get_help():  # no arguments: the help
        typer.echo(exc.format_message())
        sys.exit(0)
    command = ctx.command_path if ctx is not None else "masa"
    if exc.exit_code == USAGE:
        _fail(f"{exc.format_message()} (see '{command} --help')", USAGE, command)
    _fail(exc.format_message(), exc.exit_code, command)


def _unexpected(exc: Exception) -> NoReturn:
    translated = translate(exc)
    if translated is not None:
        _fail(str(translated), translated.exit_code)
    if logging.getLogger("masa").isEnabledFor(logging.DEBUG):
        logging.getLogger("masa").exception("unexpected error")
    first = str(exc).splitlines()[0] if str(exc) else ""
    _fail(
        f"unexpected {type(exc).__name__}: {first} (a bug: please report it;"
        " --log-level DEBUG shows where)",
        1,
    )


def _fail(message: str, code: int, command: str = "masa") -> NoReturn:
    line = " ".join(message.split())
    typer.echo(f"{command}: error: {line}", err=True)
    sys.exit(code)
