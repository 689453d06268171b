"""``masa worker run``: a worker node serving requests from the bus."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

import typer

from masa.app.cli.common import (
    JsonOption,
    StopFlag,
    examples,
    out_console,
    print_json,
    settings,
    table,
)
from masa.app.keys import DEFAULT_PASSWORD_ENV, load_keystore, password_from
from masa.app.settings import Settings
from masa.app.wiring import open_bus, open_web3, worker_config
from masa.errors import RetryableError

if TYPE_CHECKING:
    from workers.node import LlmEngine, StakeCheck

app = typer.Typer(help="Run a worker node.", no_args_is_help=True)


@app.command(
    "run",
    epilog=examples(
        "masa keys new                     # once: <home>/keys/worker.json",
        "MASA_BUS__BACKEND=kafka masa worker run",
        "MASA_WORKER__LLM_MODEL_PATH=/models/tiny masa worker run --json",
    ),
)
def run(
    ctx: typer.Context,
    password_env: str = typer.Option(
        DEFAULT_PASSWORD_ENV, "--password-env", help="Variable holding the keystore password."
    ),
    as_json: bool = JsonOption,
) -> None:
    """Serve data and LLM requests as a staked worker until SIGTERM or SIGINT.

    Signs with the worker key (worker.keystore; 'masa keys new' makes one) and refuses to
    start unless that address is staked as a worker on chain. Joins the consumer group
    worker.group on the requests topic, runs up to worker.concurrency jobs at once and
    publishes RequestCompleted + DataUsed or RequestFailed, and a Heartbeat every
    worker.heartbeat_interval_s. Loads the vLLM engine first when worker.llm_model_path is
    set. On SIGTERM: takes no new request, lets the jobs in hand finish for
    worker.shutdown_grace_s, fails the rest with reason 'shutdown', commits and exits.
    """
    from workers.node import Worker

    config = settings(ctx)
    account = load_keystore(config.worker_keystore_path, password_from(password_env))
    stake_check = _chain_stake_check(config)
    stake_check(account.address)  # before the engine's minute of loading
    bus = open_bus(config)
    stop = StopFlag()
    with _engine(config) as engine:
        worker = Worker(bus, worker_config(config), account, stake_check, engine)
        worker.run(lambda: stop.requested)
    stats = {"address": account.address, **dict(sorted(worker.stats.items()))}
    if as_json:
        print_json(stats)
    else:
        out_console.print(table("worker", ["", ""], [[k, v] for k, v in stats.items()]))


def _chain_stake_check(config: Settings) -> StakeCheck:
    from web3.exceptions import Web3Exception

    from contracts.client import MasaClient
    from contracts.deploy import Deployment
    from workers.node import chain_stake_check

    deployment = Deployment.load(config.deployment_path)
    try:
        client = MasaClient(open_web3(config), deployment)
    except (OSError, Web3Exception) as exc:
        raise RetryableError(f"cannot reach the chain at {config.chain.rpc_url}: {exc}") from exc
    return chain_stake_check(client)


@contextmanager
def _engine(config: Settings) -> Iterator[LlmEngine | None]:
    """The vLLM engine, loaded now, when a model is configured."""
    model = config.worker.llm_model_path
    if model is None:
        yield None
        return
    from workers.llm import VllmEngine, default_vllm_python

    with VllmEngine(
        config.worker.vllm_python or default_vllm_python(),
        model,
        served_model=config.worker.llm_served_model,
        max_model_len=config.worker.llm_max_model_len,
        request_timeout_s=config.worker.job_timeout_s,
        dtype=config.worker.llm_dtype,
        memory_share=config.worker.llm_memory_share,
    ) as engine:
        yield engine
