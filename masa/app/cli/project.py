"""``masa project``: keep the read models (run), rebuild them from the store, show their lag."""

from __future__ import annotations

import contextlib
import time
from typing import TYPE_CHECKING

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from masa.app.cli.common import JsonOption, StopFlag, err_console, out_console, print_json, settings
from masa.app.failures import Streak
from masa.app.wiring import open_event_log, open_read_db, runner_config
from masa.errors import MasaError, RetryableError

if TYPE_CHECKING:
    from projections.runner import RunnerStats

app = typer.Typer(help="Read models: run, rebuild, status.", no_args_is_help=True)


@app.command("run")
def run(
    ctx: typer.Context,
    until_idle: float | None = typer.Option(
        None, "--until-idle", min=0.1, help="Stop after this many seconds with nothing new."
    ),
    as_json: bool = JsonOption,
) -> None:
    """Follow the event store and keep the read models up to date, exactly once.

    Rows and position change in one transaction; several runners at once never apply an
    event twice. Runs until SIGINT/SIGTERM, or until --until-idle seconds pass idle.

    Examples:
      masa project run
      masa project run --until-idle 2 --json
    """
    from projections.runner import ProjectionRunner, RunnerStats
    from projections.schema import require_current

    config = settings(ctx)
    log, store = open_event_log(config)
    stop = StopFlag()
    streak = Streak("projections", config.retry_budget_s, lambda: stop.requested)
    stats = RunnerStats()  # of the runners before the current one
    runner: ProjectionRunner | None = None
    polls = 0
    last = time.monotonic()

    def should_stop() -> bool:
        nonlocal polls
        polls += 1
        if polls > 1:  # the runner raises a failure; asked again, its step went through
            streak.succeeded()
        return stop.requested or (until_idle is not None and time.monotonic() - last > until_idle)

    def on_batch(_: object) -> None:
        nonlocal last
        last = time.monotonic()

    try:
        while True:
            # a failed runner's connection may be gone with the server: a new runner on a new
            # connection continues from the position stored with the rows
            db = None
            try:
                db = open_read_db(config)
                require_current(db.url)
                if runner is not None:
                    _add(stats, runner.stats)
                runner, polls = ProjectionRunner(log, db, runner_config(config)), 0
                runner.run(should_stop, on_batch)
                _add(stats, runner.stats)
                break
            except RetryableError as exc:
                try:
                    streak.failed(exc)
                except RetryableError:
                    how = f"gave up after {config.retry_budget_s:g}s of failures"
                    raise _gave_up(exc, how) from exc
                if stop.requested:
                    raise _gave_up(exc, "stopped while writes were failing") from exc
            finally:
                if db is not None:
                    with contextlib.suppress(MasaError):
                        db.close()
    finally:
        store.close()
    position = runner.position if runner is not None else 0
    report = {"applied": stats.applied, "batches": stats.batches, "position": position,
              "conflicts": stats.conflicts}  # fmt: skip
    if as_json:
        print_json(report)
    else:
        out_console.print(f"projections: {stats.applied} events applied, position {position}")


@app.command("rebuild")
def rebuild(
    ctx: typer.Context,
    name: str = typer.Argument("ledger", help="The projection (only 'ledger' today)."),
    as_json: bool = JsonOption,
) -> None:
    """Replay the whole store into shadow tables and swap them in once caught up.

    Needs no RPC and no Kafka; the current tables keep serving until the swap.

    Examples:
      masa project rebuild
      masa project rebuild ledger --json
    """
    from projections.rebuild import rebuild as run_rebuild
    from projections.schema import require_current

    if name != "ledger":
        raise typer.BadParameter(f"unknown projection {name!r}; there is one: ledger")
    config = settings(ctx)
    log, store = open_event_log(config)
    db = open_read_db(config)
    started = time.monotonic()
    columns = (TextColumn("rebuild"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    try:
        require_current(db.url)
        with Progress(*columns, console=err_console, disable=as_json, transient=True) as bar:
            task = bar.add_task("rebuild", total=log.head())

            def progress(position: int, head: int) -> None:
                bar.update(task, completed=position, total=head)

            position = run_rebuild(
                log, db, batch_size=config.projections.batch_size, on_progress=progress,
                schema=config.projections.postgres_schema,
            )  # fmt: skip
    finally:
        db.close()
        store.close()
    elapsed = time.monotonic() - started
    if as_json:
        print_json({"projection": name, "position": position, "seconds": round(elapsed, 3)})
    else:
        out_console.print(f"{name}: rebuilt to position {position} in {elapsed:.1f} s")


@app.command("status")
def status(ctx: typer.Context, as_json: bool = JsonOption) -> None:
    """Each projection's position, the store's head, the lag and the last error.

    Examples:
      masa project status --json
    """
    from projections.queries import projection_status

    config = settings(ctx)
    log, store = open_event_log(config)
    db = open_read_db(config)
    try:
        rows = projection_status(db, log.head())
    finally:
        db.close()
        store.close()
    if as_json:
        print_json(rows)
        return
    for row in rows:
        error = f", last error: {row['last_error']}" if row["last_error"] else ""
        out_console.print(
            f"{row['name']}: position {row['position']} of {row['head']}"
            f" (lag {row['lag_events']} events, {row['lag_seconds']:.1f} s){error}"
        )


def _gave_up(exc: RetryableError, how: str) -> RetryableError:
    return RetryableError(
        f"projections {how} ({exc}); the read models keep their stored position: rerun once fixed"
    )


def _add(total: RunnerStats, part: RunnerStats) -> None:
    """Add one runner's counts to the command's."""
    total.applied += part.applied
    total.batches += part.batches
    total.conflicts += part.conflicts
