"""``masa request submit|status|result``: an oracle app's requests from the command line
(``masa.app.client``; docs/oracle.md)."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from uuid import UUID

import orjson
import typer

from indexer.store.log import EventLog
from masa.app.cli.common import JsonOption, err_console, print_json, settings
from masa.app.cli.oracle import balance_report
from masa.app.client import OracleClient, Outcome, OutcomeReader
from masa.app.keys import DEFAULT_PASSWORD_ENV, keystore_address, load_keystore, password_from
from masa.app.settings import Settings
from masa.app.wiring import open_bus, open_store
from masa.errors import ConfigurationError, InsufficientBalance

app = typer.Typer(help="Submit requests as an oracle app; follow them; fetch results.")

KeyFileOption = typer.Option(
    None, "--key-file", help="The oracle's keystore (default: <home>/keys/oracle.json)."
)
PasswordEnvOption = typer.Option(
    DEFAULT_PASSWORD_ENV, "--password-env", help="Variable holding the keystore password."
)
TimeoutOption = typer.Option(120.0, "--timeout", min=0, help="Seconds to wait, at most.")
OutOption = typer.Option(None, "--out", help="Write the result to this file (default: stdout).")


@app.command("submit")
def submit(
    ctx: typer.Context,
    kind: str = typer.Option(..., "--kind", help="data or llm."),
    spec: Path = typer.Option(..., "--spec", help="JSON file of the spec (docs/worker.md)."),
    fee: int = typer.Option(..., "--fee", min=0, help="The fee in wei."),
    wait: bool = typer.Option(False, "--wait", help="Wait for the outcome and the result."),
    force: bool = typer.Option(
        False, "--force", help="Send even if the fee is beyond the available balance."
    ),
    timeout_s: float = TimeoutOption,
    out: Path | None = OutOption,
    key_file: Path | None = KeyFileOption,
    password_env: str = PasswordEnvOption,
    as_json: bool = JsonOption,
) -> None:
    """Sign and send a RequestSubmitted; with --wait, also wait until the ledger stores its
    outcome and print (or --out) the verified result. A fee beyond the oracle's available
    balance (the read models, as 'masa oracle balance' shows it) is refused unless --force:
    ingest would hold the request until a deposit covers it, then dead-letter it.

    Examples:
      masa request submit --kind data --spec spec.json --fee 1000000000000000 --wait
      masa request submit --kind llm --spec prompt.json --fee 10000 --wait --out answer.txt
      masa request submit --kind llm --spec prompt.json --fee 10000 --force
    """
    if kind not in ("data", "llm"):
        raise ConfigurationError(f"--kind must be data or llm, not {kind!r}")
    body = _spec(spec)
    config = settings(ctx)
    if not force:
        _check_balance(config, keystore_address(key_file or _default_key(config)), fee)
    with _client(config, key_file, password_env) as client:
        try:
            rid = client.submit(kind, body, fee)
        except ValueError as exc:
            raise ConfigurationError(str(exc).splitlines()[0]) from exc
        if not wait:
            if as_json:
                print_json({"request_id": str(rid)})
            else:
                typer.echo(rid)
            return
        err_console.print(f"submitted {rid}; waiting for its outcome")
        outcome = client.wait(rid, timeout_s)
        _deliver(client, outcome, timeout_s, out, as_json)


@app.command("status")
def status(
    ctx: typer.Context,
    request_id: UUID = typer.Argument(..., help="The request id."),
    as_json: bool = JsonOption,
) -> None:
    """The request's outcome as the ledger stores it: unknown, pending, completed, failed.

    Examples:
      masa request status 0f8c2b9e-0d7e-4b5a-9a51-3c2f6d1e7a10 --json
    """
    config = settings(ctx)
    store = open_store(config)
    try:
        outcome = OutcomeReader(EventLog(store)).get(request_id)
    finally:
        store.close()
    _print_outcome(outcome, as_json)


@app.command("result")
def result(
    ctx: typer.Context,
    request_id: UUID = typer.Argument(..., help="The request id."),
    timeout_s: float = TimeoutOption,
    out: Path | None = OutOption,
    key_file: Path | None = KeyFileOption,
    password_env: str = PasswordEnvOption,
    as_json: bool = JsonOption,
) -> None:
    """Fetch, verify and decrypt the request's result (it must be this oracle's request).

    Examples:
      masa request result 0f8c2b9e-0d7e-4b5a-9a51-3c2f6d1e7a10 --out result.json
    """
    config = settings(ctx)
    with _client(config, key_file, password_env) as client:
        outcome = client.wait(request_id, timeout_s)
        _deliver(client, outcome, timeout_s, out, as_json)


def _deliver(
    client: OracleClient, outcome: Outcome, timeout_s: float, out: Path | None, as_json: bool
) -> None:
    data = client.result(outcome.request_id, timeout_s)
    if out is not None:
        out.write_bytes(data)
    if as_json:
        report: dict[str, Any] = {**outcome.as_json(), "result_bytes": len(data)}
        if out is None:
            report["result"] = data.decode("utf-8", "replace")
        else:
            report["out"] = str(out)
        print_json(report)
    elif out is None:
        sys.stdout.buffer.write(data)
        sys.stdout.flush()
    else:
        err_console.print(f"{outcome.request_id}: {len(data)} bytes verified, written to {out}")


def _print_outcome(outcome: Outcome, as_json: bool) -> None:
    if as_json:
        print_json(outcome.as_json())
        return
    for name, value in outcome.as_json().items():
        typer.echo(f"{name}: {value}")


def _spec(path: Path) -> dict[str, Any]:
    try:
        body = orjson.loads(path.read_bytes())
    except OSError as exc:
        raise ConfigurationError(f"cannot read {path}: {exc.strerror}") from exc
    except orjson.JSONDecodeError as exc:
        raise ConfigurationError(f"{path} is not JSON: {exc}") from exc
    if not isinstance(body, dict):
        raise ConfigurationError(f"{path}: the spec must be a JSON object")
    return body


def _check_balance(config: Settings, oracle: str, fee: int) -> None:
    """Refuse, in one line, a fee the oracle's available balance does not cover."""
    available = int(balance_report(config, oracle)["available"])
    if fee > available:
        raise InsufficientBalance(
            f"insufficient_balance: fee {fee} wei is more than the {available} wei available to"
            f" {oracle} (masa oracle balance); deposit at least {fee - available} wei more with"
            " 'masa oracle deposit --amount', or send it anyway with --force (ingest holds it"
            " until a deposit covers it)"
        )


def _default_key(config: Settings) -> Path:
    return config.home / "keys" / "oracle.json"


@contextmanager
def _client(config: Settings, key_file: Path | None, password_env: str) -> Iterator[OracleClient]:
    path = key_file or _default_key(config)
    account = load_keystore(path, password_from(password_env))
    store = open_store(config)
    try:
        yield OracleClient(
            open_bus(config),
            account,
            EventLog(store),
            events_topic=config.bus.events_topic,
            results_topic=config.bus.results_topic,
        )
    finally:
        store.close()
