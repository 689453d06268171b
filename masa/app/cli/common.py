"""What every command shares: settings from the root options, logging, output."""

from __future__ import annotations

import json
import logging
import os
import signal
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.logging import RichHandler
from rich.table import Table

from masa.app.settings import CONFIG_FILE_ENV, Settings
from masa.errors import ConfigurationError

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
    if options.config is not None:
        if not options.config.is_file():
            raise ConfigurationError(f"config file {options.config} does not exist")
        os.environ[CONFIG_FILE_ENV] = str(options.config)
    overrides: dict[str, Any] = {}
    if options.home is not None:
        overrides["home"] = options.home
    if options.log_level is not None:
        overrides["log_level"] = options.log_level.upper()
    result = Settings(**overrides)
    _configure_logging(result.log_level)
    root.meta["settings"] = result
    return result


def _configure_logging(level: str) -> None:
    handler = RichHandler(console=err_console, show_path=False, rich_tracebacks=False)
    logging.basicConfig(level=level, format="%(name)s: %(message)s", handlers=[handler], force=True)
    for noisy in ("kafka", "eventsourcing", "web3", "urllib3", "scrapy", "asyncio", "alembic"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, logging.getLevelName(level)))


def print_json(data: Any) -> None:
    typer.echo(json.dumps(data, indent=2, sort_keys=True, default=str))


def table(title: str, columns: list[str], rows: list[list[Any]]) -> Table:
    result = Table(title=title, title_justify="left")
    for column in columns:
        result.add_column(column, overflow="fold")
    for row in rows:
        result.add_row(*(str(v) for v in row))
    return result


class StopFlag:
    """Set by SIGTERM or SIGINT: long-running commands finish the step in hand, then stop."""

    def __init__(self) -> None:
        self.requested = False
        signal.signal(signal.SIGTERM, self._request)
        signal.signal(signal.SIGINT, self._request)

    def _request(self, *_: object) -> None:
        self.requested = True
