"""``masa dlq list|replay``: what ingest rejected, and sending it back once fixed."""

from __future__ import annotations

from uuid import UUID

import typer

from indexer.ingest.dlq import read_dead_letters
from indexer.ingest.dlq import replay as send_back
from masa.app.cli.common import JsonOption, err_console, out_console, print_json, settings, table
from masa.app.wiring import open_bus, open_store
from masa.errors import ConfigurationError

app = typer.Typer(help="Inspect and replay the dead-letter topic.", no_args_is_help=True)


@app.command("list")
def list_(
    ctx: typer.Context,
    reason: str | None = typer.Option(None, "--reason", help="Only this reason code."),
    as_json: bool = JsonOption,
) -> None:
    """List dead letters with their reason, detail and where they came from."""
    config = settings(ctx)
    bus = open_bus(config)
    store = open_store(config)
    try:
        replayed = store.replayed()
    finally:
        store.close()
    rows = [
        letter.summary(letter.id in replayed)
        for letter in read_dead_letters(bus, config.bus.dlq_topic)
        if reason is None or letter.reason == reason
    ]
    if as_json:
        print_json(rows)
        return
    columns = ["id", "reason", "detail", "source", "rejected_at", "replayed"]
    out_console.print(
        table(f"{len(rows)} dead letters", columns, [[r[c] for c in columns] for r in rows])
    )


@app.command("replay")
def replay(
    ctx: typer.Context,
    reason: str | None = typer.Option(None, "--reason", help="Replay letters with this reason."),
    ids: list[str] = typer.Option([], "--id", help="Replay this dead letter (repeatable)."),
    replay_all: bool = typer.Option(False, "--all", help="Replay every dead letter."),
    force: bool = typer.Option(False, "--force", help="Also replay letters replayed before."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Show what would be replayed."),
    as_json: bool = JsonOption,
) -> None:
    """Send dead letters back to the topic they came from, byte for byte.

    Use it after fixing the cause (a stake that arrived late, a trusted indexer added). Ingest
    judges them again: valid ones are stored once, still-invalid ones return to the dead-letter
    topic as new letters.
    """
    if not (reason or ids or replay_all):
        raise ConfigurationError("choose what to replay: --reason, --id or --all")
    wanted = {_uuid(i) for i in ids}
    config = settings(ctx)
    bus = open_bus(config)
    store = open_store(config)
    try:
        replayed = store.replayed()
        chosen = [
            letter
            for letter in read_dead_letters(bus, config.bus.dlq_topic)
            if (replay_all or letter.reason == reason or letter.id in wanted)
            and (force or letter.id not in replayed)
        ]
        if not dry_run:
            send_back(bus, store, chosen)
    finally:
        store.close()
    if as_json:
        print_json({"replayed": 0 if dry_run else len(chosen), "ids": [str(x.id) for x in chosen]})
    else:
        verb = "would replay" if dry_run else "replayed"
        err_console.print(f"{verb} {len(chosen)} dead letters")


def _uuid(value: str) -> UUID:
    try:
        return UUID(value)
    except ValueError as exc:
        raise ConfigurationError(f"--id {value!r} is not a dead-letter id") from exc
