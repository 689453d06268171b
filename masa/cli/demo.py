"""``masa demo``: run the pipeline end to end on embedded defaults."""

from __future__ import annotations

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from masa.cli.common import JsonOption, err_console, out_console, print_json, settings, table
from masa.demo import DemoReport, demo_settings, run_demo

app = typer.Typer()


@app.command("demo")
def demo(
    ctx: typer.Context,
    requests: int = typer.Option(100, "--requests", min=1, max=100_000, help="Requests to simulate."),
    seed: int = typer.Option(7, "--seed", help="Seed of the synthetic network (same seed, same run)."),
    as_json: bool = JsonOption,
) -> None:
    """Run the ledger end to end with no services: SQLite store, embedded log.

    Generates keys for an indexer, workers, oracles and contributors, produces signed events
    of every type plus malformed ones, ingests them and prints what was stored and what was
    rejected, by reason. Data goes to <home>/demo, wiped at the start of each run.
    """
    base = settings(ctx)
    with Progress(
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
        console=err_console, disable=as_json, transient=False,
    ) as bar:
        tasks: dict[str, int] = {}

        def progress(step: str, done: int, total: int) -> None:
            if step not in tasks:
                tasks[step] = bar.add_task(step, total=total)
            bar.update(tasks[step], completed=done, total=total)

        report = run_demo(demo_settings(base.home), requests=requests, seed=seed, progress=progress)
    if as_json:
        print_json(report.to_json())
    else:
        _print(report)


def _print(report: DemoReport) -> None:
    data = report.to_json()
    stored = [[name, count] for name, count in data["stored_by_type"].items()]
    out_console.print(table(f"stored: {data['stored']} events", ["type", "count"], stored))
    rejected = [[reason, count] for reason, count in data["rejected_by_reason"].items()]
    out_console.print(table(f"rejected: {sum(report.dead_letters.values())} to the dead-letter topic", ["reason", "count"], rejected))
    out_console.print(f"{data['produced']} messages produced, {data['ingest'].get('duplicate', 0)} duplicates dropped, in {data['seconds']} s")
