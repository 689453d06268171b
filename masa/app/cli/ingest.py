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
from masa.app.failures import Streak
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
    stop = StopFlag()
    streak = Streak("ingest", config.retry_budget_s, lambda: stop.requested)
    totals: Counter[str] = Counter()  # of the ingestors before the current one
    ingestor: Ingestor | None = None
    polls = 0
    last_activity = time.monotonic()
    started = time.monotonic()

    def should_stop() -> bool:
        nonlocal polls
        polls += 1
        if ingestor is not None and ingestor.failing is not None:
            streak.failing()
        elif polls > 1:  # a step went through since this ingestor started
            streak.succeeded()
        return stop.requested or (
            until_idle is not None and time.monotonic() - last_activity > until_idle
        )

    def on_batch(stats: Counter[str]) -> None:
        nonlocal last_activity
        last_activity = time.monotonic()
        if live is not None:
            live.update(_status(_total(), time.monotonic() - started))

    def _total() -> Counter[str]:
        return totals + (ingestor.stats if ingestor is not None else Counter())

    def gave_up(exc: RetryableError, how: str) -> RetryableError:
        return RetryableError(
            f"ingest {how} ({exc}); {_total()['stored']} stored before;"
            " nothing is lost, rerun once fixed"
        )

    live = (
        Live(console=err_console, transient=True)
        if err_console.is_terminal and not as_json
        else None
    )
    try:
        if live is not None:
            live.start()
        while True:
            # A failure the ingestor's own loop did not absorb ends it; a new one (a new group
            # member, re-reading every partition from the offsets stored with the events)
            # takes over until the failures have lasted the retry budget.
            store = None
            try:
                opening = time.monotonic()
                try:  # retried on its own, for what is left of the budget
                    store = open_store(
                        config.model_copy(update={"retry_budget_s": streak.left_s()})
                    )
                except RetryableError:
                    streak.failing(since=opening)
                    raise
                if ingestor is not None:
                    totals += ingestor.stats
                ingestor, polls = Ingestor(bus, store, ingest_config(config)), 0
                ingestor.run(should_stop, on_batch)
                break
            except RetryableError as exc:
                try:
                    streak.failed(exc)
                except RetryableError:
                    how = f"gave up after {config.retry_budget_s:g}s of failures"
                    raise gave_up(exc, how) from exc
                if stop.requested:
                    raise gave_up(exc, "stopped while writes were failing") from exc
            finally:
                if store is not None:
                    store.close()
    finally:
        if live is not None:
            live.stop()
    assert ingestor is not None
    if ingestor.failing is not None:
        raise gave_up(ingestor.failing, "stopped while writes were failing")
    summary = dict(sorted(_total().items()))
    if as_json:
        print_json(summary)
    else:
        out_console.print(_status(_total(), time.monotonic() - started))


def _status(stats: Counter[str], elapsed: float):  # type: ignore[no-untyped-def]
    rate = stats["stored"] / elapsed if elapsed > 0 else 0.0
    rows = [[name, count] for name, count in sorted(stats.items())]
    return table(f"ingest: {stats['stored']} stored ({rate:,.0f}/s)", ["outcome", "count"], rows)
