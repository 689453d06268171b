"""``masa dlq list|replay``: what ingest rejected, and sending it back once fixed."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

import orjson
import typer

from indexer.bus.base import Bus, Record
from indexer.events.fields import parse_timestamp
from indexer.ingest.dlq import DeadLetter, read_dead_letters
from indexer.ingest.dlq import replay as send_back
from masa.app.cli.common import JsonOption, err_console, examples, plain_table, print_json, settings
from masa.app.wiring import open_bus, open_store
from masa.errors import ConfigurationError

app = typer.Typer(help="Inspect and replay the dead-letter topic.", no_args_is_help=True)

COLUMNS = ["id", "reason", "event_id", "key", "source", "rejected_at", "replayed", "detail"]
_DURATION = re.compile(r"^(\d+)([smhd])$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}


@app.command(
    "list",
    epilog=examples(
        "masa dlq list                               # the newest 100",
        "masa dlq list --reason not_staked --since 2h",
        "masa dlq list --limit 0 --json | jq -r '.[].event_id'",
    ),
)
def list_(
    ctx: typer.Context,
    reason: str | None = typer.Option(None, "--reason", help="Only this reason code."),
    since: str | None = typer.Option(
        None, "--since", help="Only letters rejected since: 30m, 2h, 7d or an RFC 3339 time."
    ),
    limit: int = typer.Option(100, "--limit", min=0, help="The newest this many (0: all of them)."),
    as_json: bool = JsonOption,
) -> None:
    """List dead letters, newest last: letter id, reason, the rejected event's id and Kafka
    key, where it came from, when, whether it was replayed, and the detail. Ids are printed
    whole (never wrapped or cut) so they can be copied into 'masa dlq replay --id'."""
    cutoff = _since(since)
    config = settings(ctx)
    bus = open_bus(config)
    store = open_store(config)
    try:
        replayed = store.replayed()
    finally:
        store.close()
    filtered = reason is not None or cutoff is not None
    letters = _letters(bus, config.bus.dlq_topic, None if filtered or not limit else limit)
    chosen = [
        letter
        for letter in letters
        if (reason is None or letter.reason == reason)
        and (cutoff is None or _rejected_at(letter) >= cutoff)
    ]
    chosen.sort(key=lambda letter: (letter.rejected_at, str(letter.id)))
    rows = [describe(letter, letter.id in replayed) for letter in chosen[-limit if limit else 0 :]]
    if as_json:
        print_json(rows)
        return
    capped = f" (the newest {limit}; --limit 0 for all)" if limit and len(rows) == limit else ""
    err_console.print(f"{len(rows)} dead letters{capped}")
    typer.echo(plain_table(COLUMNS, [[r[c] for c in COLUMNS] for r in rows]), nl=False)


def describe(letter: DeadLetter, replayed: bool) -> dict[str, Any]:
    """A letter's summary with the rejected event's id (when its bytes hold one) and key."""
    return {
        **letter.summary(replayed),
        "event_id": _event_id(letter.value),
        "key": None if letter.key is None else letter.key.decode("utf-8", "replace"),
    }


def _event_id(value: bytes) -> str | None:
    try:
        data = orjson.loads(value) if value else None
    except orjson.JSONDecodeError:
        return None
    found = data.get("id") if isinstance(data, dict) else None
    return found if isinstance(found, str) else None


def _letters(bus: Bus, topic: str, newest: int | None) -> list[DeadLetter]:
    """Every letter once, or (``newest``) only those among the last records of each partition."""
    if newest is None:
        return read_dead_letters(bus, topic)
    letters: dict[UUID, DeadLetter] = {}
    for record in _last_records(bus, topic, newest):
        letter = DeadLetter.decode(record.value)
        letters.setdefault(letter.id, letter)
    return list(letters.values())


def _last_records(bus: Bus, topic: str, last: int) -> Iterator[Record]:
    ends = bus.end_offsets(topic)
    consumer = bus.consumer(group="")
    consumer.assign({tp: max(0, end - last) for tp, end in ends.items()})
    remaining = sum(min(end, last) for end in ends.values())
    try:
        while remaining > 0:
            records = consumer.poll(max_records=1000, timeout_s=1.0)
            if not records:
                return
            remaining -= len(records)
            yield from records
    finally:
        consumer.close()


def _since(text: str | None) -> datetime | None:
    if text is None:
        return None
    found = _DURATION.match(text.strip())
    if found:
        return datetime.now(UTC) - timedelta(**{_UNITS[found[2]]: int(found[1])})
    try:
        return parse_timestamp(text.strip())
    except ValueError as exc:
        raise ConfigurationError(
            f"--since {text!r}: expected 30m, 2h, 7d or an RFC 3339 time such as"
            " 2026-12-01T00:00:00Z"
        ) from exc


def _rejected_at(letter: DeadLetter) -> datetime:
    try:
        return parse_timestamp(letter.rejected_at)
    except ValueError:
        return datetime.min.replace(tzinfo=UTC)


@app.command(
    "replay",
    epilog=examples(
        "masa dlq replay --reason not_staked --dry-run",
        "masa dlq replay --id 0b6f3c1e-5d2a-5c9e-9f0e-2a4b6c8d0e1f",
        "masa dlq replay --all --force",
    ),
)
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
