"""``masa settle run|status``, ``masa rewards fund|grant-poster`` and ``masa claim``."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path
from typing import Any

import typer

from masa.app.cli import app as root_app
from masa.app.cli import settle_verify
from masa.app.cli.chain import KeyFile, PasswordEnv, _address, _client, tokens
from masa.app.cli.common import JsonOption, StopFlag, err_console, out_console, print_json, settings
from masa.app.cli.common import table as make_table
from masa.app.keys import load_keystore, password_from

settle_app = settle_verify.app  # one `masa settle` group: running and verifying
rewards_app = typer.Typer(help="Fund emissions; grant the poster role.", no_args_is_help=True)


def _open(ctx: typer.Context) -> tuple[Any, Any, Any]:
    from masa.app.wiring import open_event_log, open_read_db
    from projections.schema import require_current
    from settlement.settler import SettlementDb

    config = settings(ctx)
    db = open_read_db(config)
    require_current(db.url)
    log, store = open_event_log(config)
    return SettlementDb(db), log, store


@settle_app.command("run")
def run(
    ctx: typer.Context,
    once: bool = typer.Option(False, "--once", help="Do what can be done now, then exit."),
    password_env: str = PasswordEnv,
    as_json: bool = JsonOption,
) -> None:
    """Close every due epoch (EpochClosed to the bus), compute its statement from the store
    twice, check it, record it with its payouts, and post its root, one epoch at a time.

    Needs the settler key (settlement.keystore), listed in ingest.trusted_settlers and granted
    the distributor's poster role ('masa rewards grant-poster'); ingest must be running.
    Every refusal stops with exit status 3 and is shown by 'masa settle status'.

    Examples:
      masa settle run
      masa settle run --once --json
    """
    from masa.app.wiring import open_bus, settler_chain, settler_config
    from settlement.settler import Settler

    config = settings(ctx)
    account = load_keystore(config.settler_keystore_path, password_from(password_env))
    db, log, store = _open(ctx)
    bus = open_bus(config)

    def produce(message: Any) -> None:
        producer = bus.producer()
        try:
            producer.send(config.bus.events_topic, message.key.encode(), message.value)
            producer.flush()
        finally:
            producer.close()

    settler = Settler(
        log, db, settler_chain(config, account), account, produce, settler_config(config)
    )
    from settlement.settler import status_rows

    try:
        if once:
            lines = settler.run_once().lines
        else:
            stop = StopFlag()
            lines = []
            shown: list[str] = []
            for progress in settler.run(lambda: stop.requested):
                if progress.lines != shown:  # an idle pass repeats itself: say it once
                    for line in progress.lines:
                        err_console.print(line)
                    shown = progress.lines
        rows = status_rows(db)
    finally:
        store.close()
        db.db.close()
    if as_json:
        print_json({"progress": lines, "settlements": rows})
    else:
        for line in lines:
            err_console.print(line)


@settle_app.command("status")
def status(ctx: typer.Context, as_json: bool = JsonOption) -> None:
    """Per epoch: the posting state, root, transaction and any refusal.

    Examples:
      masa settle status
      masa settle status --json | jq '.[] | select(.state != "confirmed")'
    """
    from settlement.settler import status_rows

    db, _log, store = _open(ctx)
    try:
        rows = status_rows(db)
    finally:
        store.close()
        db.db.close()
    if as_json:
        print_json(rows)
        return
    columns = ["epoch", "state", "root", "tx_hash", "refusal"]
    out_console.print(
        make_table("settlements", columns, [[r[c] or "" for c in columns] for r in rows])
    )


@rewards_app.command("fund")
def fund(
    ctx: typer.Context,
    amount: str = typer.Option(..., "--amount", help="In MASA."),
    key_file: Path = KeyFile,
    password_env: str = PasswordEnv,
) -> None:
    """Add emissions to the distributor (approves it first if needed).

    Examples:
      masa rewards fund --amount 10000 --key-file treasury.json
    """
    total = _client(ctx, key_file, password_env).fund(tokens(amount))
    err_console.print(f"funded {amount} MASA; total funded {Decimal(total) / 10**18} MASA")


@rewards_app.command("grant-poster")
def grant_poster(
    ctx: typer.Context,
    address: str = typer.Argument(..., help="The settler's address."),
    key_file: Path = KeyFile,
    password_env: str = PasswordEnv,
) -> None:
    """Grant the distributor's poster role (needs its admin key).

    Examples:
      masa rewards grant-poster 0xSETTLER... --key-file admin.json
    """
    client = _client(ctx, key_file, password_env)
    fns = client.distributor.functions
    who = _address(address)
    from indexer.events.fields import checksum

    client.send(fns.grantRole(fns.POSTER_ROLE().call(), checksum(who)))
    err_console.print(f"granted the poster role to {who}")


@root_app.command("claim")
def claim(
    ctx: typer.Context,
    address: str | None = typer.Argument(None, help="Who is paid (default: the key file's)."),
    key_file: Path = KeyFile,
    password_env: str = PasswordEnv,
    as_json: bool = JsonOption,
) -> None:
    """Claim rewards for oneself or anyone: the proof comes from the settlement whose root the
    distributor holds (the current root, or the previous one); tokens go to ADDRESS.

    Examples:
      masa claim --key-file worker.json
      masa claim 0xCONTRIBUTOR... --key-file anyone.json --json
    """
    from masa.app.claims import claim as claim_rewards
    from masa.app.wiring import open_read_db
    from settlement.settler import SettlementDb

    client = _client(ctx, key_file, password_env)
    account = _address(address) if address else client.address.lower()
    db = SettlementDb(open_read_db(settings(ctx)))
    try:
        settlements = db.all()
    finally:
        db.db.close()
    done = claim_rewards(client, settlements, account)
    if as_json:
        print_json(done.to_json())
    else:
        err_console.print(
            f"paid {done.paid} wei to {account} "
            f"(cumulative {done.cumulative} of epoch {done.epoch})"
        )


root_app.add_typer(rewards_app, name="rewards")
