"""``masa index``: follow the contracts' logs into the events topic."""

from __future__ import annotations

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from indexer.chain import IndexerStats
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
from masa.app.failures import with_retries
from masa.app.keys import load_keystore, password_from
from masa.app.wiring import open_bus, open_web3, run_indexer
from masa.errors import RetryableError

app = typer.Typer()


@app.command(
    "index",
    epilog=examples(
        "masa keys new --for indexer       # once: the key 'masa index' signs with",
        "MASA_CHAIN__RPC_URL=https://rpc.example.org masa index",
        "masa index --until-head --json",
    ),
)
def index(
    ctx: typer.Context,
    until_head: bool = typer.Option(
        False, "--until-head", help="Stop once caught up with the chain head (for scripts)."
    ),
    as_json: bool = JsonOption,
) -> None:
    """Publish one signed event per NodeStaking and RewardsDistributor log, reorg-safe.

    Backfills final blocks in adaptive eth_getLogs ranges, then follows the head block by
    block; a reorg publishes ChainLogRetracted events for the logs it removed, then the new
    ones; a reorg deeper than chain.finality_depth stops with an error. The checkpoint is
    written in the same bus transaction as the events, so a crash at any moment neither
    loses nor repeats one. Signs with chain.indexer_keystore (password from
    MASA_KEY_PASSWORD); ingest must trust its address (ingest.trusted_indexers). Runs until
    SIGINT/SIGTERM, finishing the step in hand, or with --until-head until caught up.
    """
    from contracts.deploy import Deployment

    config = settings(ctx)
    deployment = Deployment.load(config.deployment_path)
    account = load_keystore(config.indexer_keystore_path, password_from())
    w3 = open_web3(config)
    with_retries(
        f"the chain RPC at {config.chain.rpc_url}",
        lambda: deployment.verify(w3),
        budget_s=config.retry_budget_s,
    )
    bus = open_bus(config)
    stop = StopFlag()
    start = config.chain.start_block or deployment.start_block
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[rates]}"),
        TimeElapsedColumn(),
        console=err_console,
        disable=as_json or not err_console.is_terminal,
        transient=True,
    ) as bar:
        task = bar.add_task("blocks", total=None, rates="")

        def on_progress(stats: IndexerStats) -> None:
            data = stats.to_json()
            rates = f"{data['blocks_per_s']:,.0f} blocks/s {data['logs_per_s']:,.0f} logs/s"
            bar.update(
                task,
                completed=max(0, stats.tip - start + 1),
                total=max(1, stats.head - start + 1),
                rates=rates,
            )

        try:
            stats = run_indexer(
                w3,
                deployment,
                bus,
                config,
                account,
                until_head=until_head,
                should_stop=lambda: stop.requested,
                on_progress=on_progress,
            )
        except RetryableError as exc:
            raise RetryableError(
                f"index gave up after {config.retry_budget_s:g}s of failures ({exc}); the"
                " checkpoint keeps what was published: rerun once fixed"
            ) from exc
    summary = stats.to_json()
    if as_json:
        print_json(summary)
    else:
        rows = [[k, v] for k, v in summary.items() if k != "faults"]
        rows += [[f"fault: {k}", v] for k, v in summary["faults"].items()]
        out_console.print(table(f"index: chain {deployment.chain_id}", ["", ""], rows))
