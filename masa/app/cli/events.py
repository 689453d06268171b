"""``masa events send|tail``: produce signed events, watch a topic."""

from __future__ import annotations

import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import typer

from indexer.bus.base import Record
from indexer.events import EVENT_TYPES, SignedMessage, make_event, parse_event
from indexer.events.reference import render_markdown
from masa.app.cli.common import JsonOption, err_console, out_console, print_json, settings, table
from masa.app.keys import DEFAULT_PASSWORD_ENV, load_keystore, password_from
from masa.app.wiring import open_bus
from masa.errors import ConfigurationError, EventRejected

app = typer.Typer(help="Produce signed events and watch topics.", no_args_is_help=True)


@app.command("send")
def send(
    ctx: typer.Context,
    source: Path = typer.Argument(..., help="JSONL file of events, or - for stdin."),
    key_file: Path | None = typer.Option(
        None, "--key-file", help="Keystore that signs unsigned lines (see 'masa keys new')."
    ),
    password_env: str = typer.Option(
        DEFAULT_PASSWORD_ENV, "--password-env", help="Variable holding the keystore password."
    ),
    as_json: bool = JsonOption,
) -> None:
    """Sign and send events, one JSON object per line.

    An unsigned line is {"type": ..., "payload": {...}} with optional "version", "id" and
    "occurred_at"; it is signed with --key-file. A line that already carries a "signature" is
    sent as it is. Every line is checked before anything is sent: one bad line sends nothing.
    """
    config = settings(ctx)
    lines = _read_lines(source)
    account = load_keystore(key_file, password_from(password_env)) if key_file else None
    messages = [_message(number, line, account) for number, line in lines]
    bus = open_bus(config)
    producer = bus.producer()
    try:
        for message in messages:
            producer.send(config.bus.events_topic, message.key.encode(), message.value)
        producer.flush()
    finally:
        producer.close()
    ids = [str(m.event_id) for m in messages]
    if as_json:
        print_json({"sent": len(ids), "ids": ids, "topic": config.bus.events_topic})
    else:
        err_console.print(f"sent {len(ids)} events to {config.bus.events_topic}")


def _read_lines(source: Path) -> list[tuple[int, str]]:
    try:
        text = sys.stdin.read() if str(source) == "-" else source.read_text()
    except OSError as exc:
        raise ConfigurationError(f"cannot read {source}: {exc.strerror}") from exc
    return [(n, line) for n, line in enumerate(text.splitlines(), 1) if line.strip()]


def _message(number: int, line: str, account: Any) -> SignedMessage:
    try:
        data = orjson.loads(line)
    except orjson.JSONDecodeError as exc:
        raise ConfigurationError(f"line {number}: not JSON ({exc})") from exc
    if not isinstance(data, dict) or "type" not in data:
        raise ConfigurationError(f'line {number}: expected an object with a "type"')
    if "signature" in data:
        return _presigned(number, data)
    if account is None:
        raise ConfigurationError(f"line {number}: unsigned event and no --key-file")
    try:
        return make_event(
            account,
            data["type"],
            data.get("payload", {}),
            version=data.get("version"),
            occurred_at=_timestamp(data.get("occurred_at")),
            event_id=data.get("id"),
        )
    except (ValueError, TypeError) as exc:
        raise ConfigurationError(f"line {number}: {exc}".splitlines()[0]) from exc


def _presigned(number: int, data: dict[str, Any]) -> SignedMessage:
    value = orjson.dumps(data)
    try:
        event = parse_event(value, now=datetime.now(UTC), max_clock_skew=timedelta(days=3650))
    except EventRejected as exc:
        raise ConfigurationError(f"line {number}: {exc}") from exc
    return SignedMessage(event.key, value, event.envelope.id)


def _timestamp(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value else None


@app.command("tail")
def tail(
    ctx: typer.Context,
    topic: str = typer.Option("events", "--topic", help="events, requests, dlq, or a topic name."),
    last: int = typer.Option(20, "-n", "--last", min=1, help="How many records per partition."),
    follow: bool = typer.Option(False, "--follow", "-f", help="Keep printing new records."),
    as_json: bool = JsonOption,
) -> None:
    """Print the latest records of a topic, decoded where they are events."""
    config = settings(ctx)
    name = {
        "events": config.bus.events_topic,
        "requests": config.bus.requests_topic,
        "dlq": config.bus.dlq_topic,
    }.get(topic, topic)
    bus = open_bus(config)
    ends = bus.end_offsets(name)
    consumer = bus.consumer(group="")
    consumer.assign({tp: max(0, end - last) for tp, end in ends.items()})
    remaining = sum(min(end, last) for end in ends.values())
    try:
        while follow or remaining > 0:
            records = consumer.poll(max_records=1000, timeout_s=1.0)
            if not records and not follow:
                break
            remaining -= len(records)
            _print_records(records, as_json)
    except KeyboardInterrupt:
        pass
    finally:
        consumer.close()


def _print_records(records: list[Record], as_json: bool) -> None:
    rows = [_describe(r) for r in records]
    if as_json:
        for row in rows:
            typer.echo(orjson.dumps(row).decode())
    elif rows:
        columns = ["partition", "offset", "key", "type", "producer", "id"]
        out_console.print(table("", columns, [[row.get(c, "") for c in columns] for row in rows]))


def _describe(record: Record) -> dict[str, Any]:
    row: dict[str, Any] = {
        "partition": record.partition,
        "offset": record.offset,
        "key": (record.key or b"").decode("utf-8", "replace"),
    }
    try:
        data = orjson.loads(record.value)
    except orjson.JSONDecodeError:
        return {**row, "type": "(not JSON)"}
    if isinstance(data, dict):
        row |= {k: data.get(k) for k in ("type", "producer", "id", "reason", "detail") if k in data}
    return row


@app.command("schema")
def schema(as_json: bool = JsonOption) -> None:
    """Print the event schema reference (Markdown, as in docs/events.md) or JSON Schemas."""
    if as_json:
        print_json(
            {
                f"{name}.v{version}": t.payload.model_json_schema(mode="serialization")
                for (name, version), t in sorted(EVENT_TYPES.items())
            }
        )
    else:
        typer.echo(render_markdown(), nl=False)
