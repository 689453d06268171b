"""``masa ingest``: consume the events topic into the event store."""

from __future__ import annotations

import time
from collections import Counter

import typer
from rich.live import Live

from masa.app.cli.common import (
    JsonOption,
    StopFlag,
    err_console,
    examples,
    out_console,
    print_json,
    settings,
    table,
)
from masa.app.wiring import ingest_config, open_bus, open_store
from masa.errors import RetryableError

app = typer.Typer()


@app.command(
    "ingest",
    epilog=examples(
        "masa ingest                      # until Ctrl-C or SIGTERM",
        "masa ingest --until-idle 5 --json",
        "MASA_STORE__BACKEND=postgres MASA_BUS__BACKEND=kafka masa ingest",
    ),
)
def ingest(
    ctx: typer.Context,
    until_idle: float | None = typer.Option(
        None, "--until-idle", min=0.1, help="Stop after this many seconds without new records."
    ),
    as_json: bool = JsonOption,
) -> None:
    """Validate, verify, dedupe and store events from the bus, exactly once.

    Offsets are stored in the event store in the same transaction as the events, so a crash
    at any point neither loses nor duplicates anything. Rejected messages go to the
    dead-letter topic with their reason (see 'masa dlq list'). Runs until SIGINT/SIGTERM,
    finishing the batch in hand, or until --until-idle seconds pass without records.
    """
    from indexer.ingest.runner import Ingestor

    config = settings(ctx)
    bus = open_bus(config)
    store = open_store(config)
    ingestor = Ingestor(bus, store, ingest_config(config))
    stop = StopFlag()
    last_activity = time.monotonic()
    started = time.monotonic()

    def should_stop() -> bool:
        return stop.requested or (
            until_idle is not None and time.monotonic() - last_activity > until_idle
        )

    def on_batch(stats: Counter[str]) -> None:
        nonlocal last_activity
        last_activity = time.monotonic()
        if live is not None:
            live.update(_status(ingestor.stats, time.monotonic() - started))

    live = (
        Live(console=err_console, transient=True)
        if err_console.is_terminal and not as_json
        else None
    )
    try:
        if live is not None:
            live.start()
        ingestor.run(should_stop, on_batch)
    except RetryableError as exc:
        raise RetryableError(
            f"ingest gave up after {config.retry_budget_s:g}s of failures ({exc});"
            f" {ingestor.stats['stored']} stored before; nothing is lost, rerun once fixed"
        ) from exc
    finally:
        if live is not None:
            live.stop()
        store.close()
    if ingestor.failing is not None:
        raise RetryableError(
            f"ingest stopped while writes were failing ({ingestor.failing});"
            f" {ingestor.stats['stored']} stored before; nothing is lost, rerun once fixed"
        )
    summary = dict(sorted(ingestor.stats.items()))
    if as_json:
        print_json(summary)
    else:
        out_console.print(_status(ingestor.stats, time.monotonic() - started))


def _status(stats: Counter[str], elapsed: float):  # type: ignore[no-untyped-def]
    rate = stats["stored"] / elapsed if elapsed > 0 else 0.0
    rows = [[name, count] for name, count in sorted(stats.items())]
    return table(f"ingest: {stats['stored']} stored ({rate:,.0f}/s)", ["outcome", "count"], rows)
