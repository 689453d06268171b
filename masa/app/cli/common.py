"""What every command shares: settings from the root options, logging, output."""

from __future__ import annotations

import json
import logging
import signal
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.logging import RichHandler
from rich.table import Table

from masa.app.failures import OneLineLogs
from masa.app.settings import Settings, load_settings

err_console = Console(stderr=True)
out_console = Console()

JsonOption = typer.Option(False, "--json", help="Print machine-readable JSON on stdout.")


@dataclass
class RootOptions:
    config: Path | None
    home: Path | None
    log_level: str | None


def settings(ctx: typer.Context) -> Settings:
    """The settings, built once per command from env, the TOML file and root options."""
    root = ctx.find_root()
    cached = root.meta.get("settings")
    if cached is not None:
        return cached
    options: RootOptions = root.obj or RootOptions(None, None, None)
    overrides: dict[str, Any] = {}
    if options.home is not None:
        overrides["home"] = options.home
    if options.log_level is not None:
        overrides["log_level"] = options.log_level.upper()
    result = load_settings(options.config, **overrides)
    _configure_logging(result.log_level)
    root.meta["settings"] = result
    return result


def _configure_logging(level: str) -> None:
    """Rich lines on a terminal; elsewhere (journald, files, pipes) one plain line per record;
    never a traceback below DEBUG, and the Kafka client's chatter held back (OneLineLogs)."""
    handler: logging.Handler
    if err_console.is_terminal:
        handler = RichHandler(console=err_console, show_path=False, rich_tracebacks=False)
        fmt = "%(name)s: %(message)s"
    else:
        handler = logging.StreamHandler()
        fmt = "%(asctime)s %(levelname)s %(name)s: %(message)s"
    handler.addFilter(OneLineLogs(logging.getLevelName(level)))
    logging.basicConfig(level=level, format=fmt, handlers=[handler], force=True)
    for noisy in ("kafka", "eventsourcing", "web3", "urllib3", "scrapy", "asyncio", "alembic"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, logging.getLevelName(level)))


def examples(*lines: str) -> str:
    """A command's epilog: an "Examples" section, printed as written (no re-wrapping)."""
    return "Examples:\n\n\b\n" + "\n".join(f"  {line}" for line in lines)


def print_json(data: Any) -> None:
    typer.echo(json.dumps(data, indent=2, sort_keys=True, default=str))


def table(title: str, columns: list[str], rows: list[list[Any]]) -> Table:
    result = Table(title=title, title_justify="left")
    for column in columns:
        result.add_column(column, overflow="fold")
    for row in rows:
        result.add_row(*(str(v) for v in row))
    return result


_signals: list[int] = []


def interrupted() -> bool:
    """Whether a StopFlag saw SIGINT (Ctrl-C): the command then exits 130, not 0."""
    return signal.SIGINT in _signals


def plain_table(columns: list[str], rows: list[list[Any]]) -> str:
    """Rows as aligned plain text, one line each, never wrapped or cut (ids stay copyable)."""
    cells = [list(columns)] + [[_cell(v) for v in row] for row in rows]
    widths = [max(len(line[i]) for line in cells) for i in range(len(columns) - 1)]
    return "".join(
        "  ".join(
            [*(cell.ljust(w) for cell, w in zip(line, widths, strict=False)), line[-1]]
        ).rstrip()
        + "\n"
        for line in cells
    )


def _cell(value: Any) -> str:
    return "" if value is None else " ".join(str(value).split())


class StopFlag:
    """Set by SIGTERM or SIGINT: long-running commands finish the step in hand, then stop
    (exit 0 after SIGTERM, the way a supervisor stops a service; 130 after SIGINT)."""

    def __init__(self) -> None:
        self.requested = False
        signal.signal(signal.SIGTERM, self._request)
        signal.signal(signal.SIGINT, self._request)

    def _request(self, signum: int, *_: object) -> None:
        self.requested = True
        _signals.append(signum)
