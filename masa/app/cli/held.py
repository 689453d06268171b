"""``masa events held``: the events ingest holds until their request, stake or balance
arrives."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import typer

from indexer.bus.base import Bus, TopicPartition
from indexer.events.fields import format_timestamp
from indexer.ingest.port import HeldRecord, IngestStore
from masa.app.cli.common import JsonOption, err_console, examples, plain_table, print_json, settings
from masa.app.settings import Settings
from masa.app.wiring import open_bus, open_store

COLUMNS = ["event_id", "awaiting", "producer", "held_at", "expires_at", "source", "reason"]


def load_holds(config: Settings, bus: Bus, store: IngestStore) -> list[HeldRecord]:
    """Every hold of ``ingest.consumer_name``, over every partition of the events topic."""
    topic = config.bus.events_topic
    partitions = [TopicPartition(topic, p) for p in range(bus.partitions(topic))]
    return store.load_holds(config.ingest.consumer_name, partitions)


def held(
    ctx: typer.Context,
    as_json: bool = JsonOption,
) -> None:
    """Events ingest holds: each waits for its request (awaiting request:<id>), its
    producer's stake (stake:<address>) or, a request, its oracle's balance (balance:<oracle>)
    for ingest.hold_timeout_s, then becomes a dead letter with the reason shown (see 'masa dlq
    list')."""
    config = settings(ctx)
    bus = open_bus(config)
    store = open_store(config)
    try:
        holds = load_holds(config, bus, store)
    finally:
        store.close()
    timeout = timedelta(seconds=config.ingest.hold_timeout_s)
    rows = [_describe(h, timeout) for h in sorted(holds, key=lambda h: h.held_at_ms)]
    if as_json:
        print_json(rows)
        return
    err_console.print(f"{len(rows)} events held by {config.ingest.consumer_name}")
    typer.echo(plain_table(COLUMNS, [[r[c] for c in COLUMNS] for r in rows]), nl=False)


HELD_EPILOG = examples("masa events held", "masa events held --json | jq -r '.[].awaiting'")


def _describe(hold: HeldRecord, timeout: timedelta) -> dict[str, Any]:
    held_at = datetime.fromtimestamp(hold.held_at_ms / 1000, UTC)
    return {
        "event_id": str(hold.event_id),
        "awaiting": hold.awaiting,
        "producer": hold.producer,
        "held_at": format_timestamp(held_at),
        "expires_at": format_timestamp(held_at + timeout),
        "source": f"{hold.topic}[{hold.partition}]@{hold.offset}",
        "key": None if hold.key is None else hold.key.decode("utf-8", "replace"),
        "reason": hold.reason,
        "detail": hold.detail,
    }
