"""``masa demo``: run the pipeline end to end on embedded defaults."""

from __future__ import annotations

import logging
from typing import Any

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from masa.app.cli.common import (
    JsonOption,
    err_console,
    examples,
    out_console,
    print_json,
    settings,
    table,
)
from masa.app.demo import DemoReport, demo_settings, run_demo, tiny_llm
from masa.app.demo_print import print_money, print_news

app = typer.Typer()


@app.command(
    "demo",
    epilog=examples(
        "masa demo",
        "masa demo --requests 1000 --seed 3 --no-llm",
        "masa --home /tmp/masa-demo demo --json",
        "masa demo --no-llm --serve --port 8080",
    ),
)
def demo(
    ctx: typer.Context,
    requests: int = typer.Option(
        100, "--requests", min=1, max=100_000, help="Synthetic requests over the epochs."
    ),
    seed: int = typer.Option(
        7, "--seed", help="Seed of the synthetic network (same seed, same run)."
    ),
    llm: bool = typer.Option(
        True, "--llm/--no-llm", help="Serve LLM jobs too, when vLLM is installed."
    ),
    serve: bool = typer.Option(
        False, "--serve", help="Then keep the read API and dashboard running on the demo."
    ),
    port: int = typer.Option(8000, "--port", min=1, max=65535, help="Port for --serve."),
    as_json: bool = JsonOption,
) -> None:
    """Run the ledger end to end with no services: SQLite store, embedded log, in-process EVM.

    Deploys the contracts on an in-process EVM, stakes workers and oracles, indexes the chain
    into signed events, runs two short epochs (or a few more) in which an oracle app asks for a
    news summary of a local website (a scrapy data request, then an LLM request over its items
    on a tiny model when vLLM is installed: scripts/provision-vllm) and a synthetic network
    works, settles the epochs (roots posted), claims for a worker and a contributor, explains
    and verifies their statements, then sends malformed messages among valid ones. Prints all
    of it, what was stored, what was rejected by reason, and the read models. Data goes to
    <home>/demo, wiped at the start of each run.
    """
    base = settings(ctx)
    if ctx.find_root().obj is None or ctx.find_root().obj.log_level is None:
        logging.getLogger("masa").setLevel(logging.WARNING)  # the progress bars tell the story
    config = demo_settings(base.home)
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=err_console,
        disable=as_json,
    ) as bar:
        tasks: dict[str, int] = {}

        def progress(step: str, done: int, total: int) -> None:
            if step not in tasks:
                tasks[step] = bar.add_task(step, total=max(total, 1))
            bar.update(tasks[step], completed=done, total=max(total, 1))

        engine = tiny_llm(config.home) if llm else None
        with engine if engine is not None else _no_llm() as loaded:
            report = run_demo(
                config, requests=requests, seed=seed, progress=progress, llm=loaded,
                **({} if llm else {"skip_llm": "skipped: --no-llm"}),
            )  # fmt: skip
    if as_json:
        print_json(report.to_json())
    else:
        _print(report)
    if serve:
        _serve(config, port)


def _serve(config: Any, port: int) -> None:
    """The read API and dashboard over the demo's read models, until Ctrl-C."""
    import uvicorn

    from masa.app.api import create_app
    from masa.app.wiring import open_read_db

    # no runner follows the demo store after it ends: the models are complete, not lagging
    api = create_app(lambda: open_read_db(config, reader=True), max_lag_s=10**6)
    err_console.print(
        f"masa demo: dashboard at http://127.0.0.1:{port}/ , API at http://127.0.0.1:{port}/docs"
        " (Ctrl-C to stop)"
    )
    uvicorn.run(api, host="127.0.0.1", port=port, log_level="warning")


def _no_llm():  # type: ignore[no-untyped-def]
    from contextlib import nullcontext

    return nullcontext(None)


def _print(report: DemoReport) -> None:
    data = report.to_json()
    out_console.print(
        table("chain (in-process EVM)", ["", ""], [[k, v] for k, v in data["chain"].items()])
    )
    out_console.print(
        table(
            "chain events indexed",
            ["type", "count"],
            list(map(list, data["chain_events_indexed"].items())),
        )
    )
    live = [[k, v] for k, v in data["live_requests"].items()] + [["llm jobs", data["llm"]]]
    out_console.print(table("live requests served by the worker", ["outcome", "count"], live))
    print_news(out_console, data["news_summary"])
    print_money(out_console, data["settlement"])
    stored = [[name, count] for name, count in data["stored_by_type"].items()]
    out_console.print(table(f"stored: {data['stored']} events", ["type", "count"], stored))
    rejected = [[reason, count] for reason, count in data["rejected_by_reason"].items()]
    out_console.print(
        table(
            f"rejected to the dead-letter topic: {sum(report.dead_letters.values())}",
            ["reason", "count"],
            rejected,
        )
    )
    _print_read_models(data["read_models"])
    out_console.print(
        f"{data['produced']} synthetic messages,"
        f" {data['ingest'].get('duplicate', 0)} duplicates dropped; {data['seconds']} s in all"
    )


def _print_read_models(models: dict[str, Any]) -> None:
    """The read models, as a dashboard would query them (docs/read-models.md)."""
    for title, key in [
        ("read model: nodes", "nodes"),
        (
            "read model: node_uptime (the evidence: covered and staked seconds of the epoch)",
            "uptime",
        ),
        ("read model: oracle_balances", "oracle_balances"),
        ("read model: contributor_attribution", "attribution"),
    ]:
        rows = models[key]
        columns = list(rows[0]) if rows else ["(none)"]
        out_console.print(table(title, columns, [[_short(v) for v in r.values()] for r in rows]))
    requests = [[status, v["count"], v["fees"]] for status, v in models["requests"].items()]
    out_console.print(table("read model: requests", ["status", "count", "fees (wei)"], requests))


def _short(value: Any) -> Any:
    """Addresses shortened, wei as MASA, times of day: the JSON output has them whole."""
    text = str(value)
    if text.startswith("0x") and len(text) > 12:
        return text[:10] + "…"
    if text.isdigit() and len(text) > 12:
        return f"{int(text) / 10**18:,.4f} MASA"
    if len(text) > 19 and text[4] == "-" and text[10] in "T ":
        return text[11:19]
    return value
