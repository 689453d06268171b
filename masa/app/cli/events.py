"""``masa events send|tail``: produce signed events, watch a topic."""

from __future__ import annotations

import contextlib
import sys
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from uuid import UUID

import orjson
import typer
from eth_account.signers.local import LocalAccount
from pydantic import ValidationError

from indexer.bus.base import Record
from indexer.events import CURRENT_VERSION, EVENT_TYPES, SignedMessage, make_event, parse_event
from indexer.events.fields import WIRE, parse_timestamp
from indexer.events.reference import render_markdown
from indexer.ingest.decide import check_signer
from masa.app.cli.common import (
    JsonOption,
    err_console,
    examples,
    out_console,
    print_json,
    settings,
    table,
)
from masa.app.cli.held import HELD_EPILOG, held
from masa.app.keys import DEFAULT_PASSWORD_ENV, load_keystore, password_from
from masa.app.wiring import bus_name, open_bus
from masa.errors import ConfigurationError, EventRejected, MasaError, RetryableError

app = typer.Typer(help="Produce signed events and watch topics.", no_args_is_help=True)


MAX_REPORTED = 20


@app.command(
    "send",
    epilog=examples(
        "masa events send requests.jsonl --key-file oracle.json",
        "masa events send signed.jsonl --json          # lines that already carry a signature",
        "cat events.jsonl | masa events send - --key-file worker.json",
    ),
)
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
    """Sign and send events, one JSON object per line (lines end at \\n only).

    An unsigned line is {"type": ..., "payload": {...}} with optional "version", "id" and
    "occurred_at"; it is signed with --key-file. A line that already carries a "signature" is
    sent as it is. Every line first passes every check ingest makes without the ledger's
    state (size, JSON, envelope, type, payload, signature, clock skew, contributor = signer):
    one bad line sends nothing, and each bad line is named with its number, field and reason.
    """
    config = settings(ctx)
    lines = _read_lines(source)
    needs_key = any(b'"signature"' not in line for _, line in lines)
    account = (
        load_keystore(key_file, password_from(password_env)) if key_file and needs_key else None
    )
    checker = _Checker(account, timedelta(seconds=config.ingest.max_clock_skew_s))
    messages = _check_all(lines, checker)
    bus = open_bus(config)
    producer = bus.producer()
    delivered = False
    try:
        for message in messages:
            producer.send(config.bus.events_topic, message.key.encode(), message.value)
        producer.flush(timeout_s=max(1.0, config.retry_budget_s))
        delivered = True
    except RetryableError as exc:
        raise RetryableError(
            f"{bus_name(config)}: {exc}; some of the {len(messages)} events may be sent:"
            f" {_rerun_advice(lines)}"
        ) from exc
    finally:
        if delivered:
            producer.close()
        else:
            with contextlib.suppress(MasaError):  # the error above says it all
                producer.close()
    ids = [str(m.event_id) for m in messages]
    if as_json:
        print_json({"sent": len(ids), "ids": ids, "topic": config.bus.events_topic})
    else:
        err_console.print(f"sent {len(ids)} events to {config.bus.events_topic}")


def _rerun_advice(lines: list[tuple[int, bytes]]) -> str:
    """What a rerun of the same input does: signed lines and lines with an id keep their ids
    (ingest stores each event once); a line signed here without an id gets a new one."""
    fresh = sum(1 for _, line in lines if not {"signature", "id"} & orjson.loads(line).keys())
    if not fresh:
        return "rerun the same input, its events keep their ids and ingest stores each once"
    return (
        f'{fresh} lines signed here have no "id" and would get new ones: give them ids'
        " before a rerun, or ingest may store them twice"
    )


def _read_lines(source: Path) -> list[tuple[int, bytes]]:
    """Non-blank lines with their numbers, split on \\n only (JSON strings may hold U+2028)."""
    try:
        data = sys.stdin.buffer.read() if str(source) == "-" else source.read_bytes()
    except OSError as exc:
        raise ConfigurationError(f"cannot read {source}: {exc.strerror}") from exc
    return [(n, line) for n, line in enumerate(data.split(b"\n"), 1) if line.strip()]


def _check_all(lines: list[tuple[int, bytes]], checker: _Checker) -> list[SignedMessage]:
    messages: list[SignedMessage] = []
    problems: list[str] = []
    for number, line in lines:
        try:
            messages.append(checker.message(line))
        except _BadLine as exc:
            problems.append(f"line {number}: {exc}")
    if problems:
        for problem in problems[:MAX_REPORTED]:
            typer.echo(problem, err=True)
        more = f" (and {len(problems) - MAX_REPORTED} more)" if len(problems) > MAX_REPORTED else ""
        raise ConfigurationError(
            f"{len(problems)} of {len(lines)} lines are invalid{more}; nothing was sent"
        )
    if not messages:
        raise ConfigurationError("no events: the input has no non-blank line")
    return messages


class _BadLine(Exception):
    """One line's problem, as ``field: reason``."""


@dataclass
class _Checker:
    account: LocalAccount | None
    max_clock_skew: timedelta

    def message(self, line: bytes) -> SignedMessage:
        data = _json_object(line)
        message = _presigned(line) if "signature" in data else self._sign(data)
        self._check(message.value)
        return message

    def _sign(self, data: dict[str, Any]) -> SignedMessage:
        kind = _event_type(data)
        if self.account is None:
            raise _BadLine("unsigned event and no --key-file")
        unknown = sorted(set(data) - {"type", "payload", "version", "id", "occurred_at"})
        if unknown:
            raise _BadLine(
                f"{unknown[0]}: unknown field (expected type, payload, version, id,"
                " occurred_at, or a signed envelope)"
            )
        version = data.get("version") or CURRENT_VERSION[kind]
        try:
            EVENT_TYPES[kind, version].payload.model_validate(data.get("payload", {}), context=WIRE)
            return make_event(
                self.account,
                kind,
                data.get("payload", {}),
                version=data.get("version"),
                occurred_at=_timestamp(data.get("occurred_at")),
                event_id=_uuid(data.get("id")),
            )
        except ValidationError as exc:
            raise _BadLine(_validation("payload", exc)) from exc
        except (ValueError, TypeError) as exc:
            raise _BadLine(str(exc).splitlines()[0]) from exc

    def _check(self, value: bytes) -> None:
        try:
            event = parse_event(value, now=datetime.now(UTC), max_clock_skew=self.max_clock_skew)
        except EventRejected as exc:
            raise _rejected(exc) from exc
        rejected = check_signer(event)
        if rejected is not None:
            raise _BadLine(
                f"payload.contributor: {rejected.detail} (ingest rejects it: {rejected.reason})"
            )


def _event_type(data: dict[str, Any]) -> str:
    kind, version = data["type"], data.get("version")
    if not isinstance(kind, str) or kind not in CURRENT_VERSION:
        raise _BadLine(f"type: unknown event type {kind!r} (see 'masa events schema')")
    if version is not None and (type(version) is not int or (kind, version) not in EVENT_TYPES):
        raise _BadLine(f"version: {kind} has no version {version!r}")
    return kind


def _json_object(line: bytes) -> dict[str, Any]:
    try:
        line.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise _BadLine(f"not UTF-8 text (byte {exc.start + 1})") from exc
    try:
        data = orjson.loads(line)
    except orjson.JSONDecodeError as exc:
        raise _BadLine(f"not JSON ({exc})") from exc
    if not isinstance(data, dict) or "type" not in data:
        raise _BadLine('expected an object with a "type"')
    return data


def _presigned(line: bytes) -> SignedMessage:
    try:
        event = parse_event(line, now=datetime.now(UTC), max_clock_skew=timedelta(days=36500))
    except EventRejected as exc:
        raise _rejected(exc) from exc
    return SignedMessage(event.key, bytes(line), event.envelope.id)


def _rejected(exc: EventRejected) -> _BadLine:
    detail = (exc.detail or exc.reason).replace("Value error, ", "")
    if exc.reason == "bad_payload" and not detail.startswith("no canonical"):
        detail = f"payload.{detail}"
    return _BadLine(f"{detail} (ingest rejects it: {exc.reason})")


def _validation(prefix: str, exc: ValidationError) -> str:
    """Each error as ``field: reason``, the first three, joined on one line."""
    parts = [
        ".".join([prefix, *(str(p) for p in error["loc"])])
        + ": "
        + error["msg"].removeprefix("Value error, ")
        for error in exc.errors()[:3]
    ]
    more = f" (and {exc.error_count() - 3} more)" if exc.error_count() > 3 else ""
    return "; ".join(parts) + more


def _timestamp(value: Any) -> datetime | None:
    if value is None:
        return None
    try:
        return parse_timestamp(value)
    except ValueError as exc:
        raise _BadLine(f"occurred_at: {exc}") from exc


def _uuid(value: Any) -> UUID | None:
    if value is None:
        return None
    try:
        if isinstance(value, str):
            return UUID(value)
    except ValueError:
        pass
    raise _BadLine(f"id: {value!r} is not a UUID")


app.command("held", epilog=HELD_EPILOG)(held)


@app.command(
    "tail",
    epilog=examples(
        "masa events tail",
        "masa events tail --topic dlq -n 5",
        "masa events tail --follow --json",
    ),
)
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
    try:  # Ctrl-C ends --follow with exit code 130, like every command
        while follow or remaining > 0:
            records = consumer.poll(max_records=1000, timeout_s=1.0)
            if not records and not follow:
                break
            remaining -= len(records)
            _print_records(records, as_json)
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


@app.command(
    "schema",
    epilog=examples(
        "masa events schema > docs/events.md",
        "masa events schema --json | jq 'keys'",
    ),
)
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
