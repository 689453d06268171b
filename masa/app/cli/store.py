"""``masa store stats``: what the event store holds, at a glance."""

from __future__ import annotations

from collections import Counter
from typing import Any

import typer

from indexer.ingest.dlq import read_dead_letters
from masa.app.cli.common import JsonOption, examples, out_console, print_json, settings, table
from masa.app.cli.held import load_holds
from masa.app.wiring import open_bus, open_store, store_name

app = typer.Typer(help="Look into the event store.", no_args_is_help=True)


@app.command("stats", epilog=examples("masa store stats", "masa store stats --json | jq .by_type"))
def stats(ctx: typer.Context, as_json: bool = JsonOption) -> None:
    """Stored events by type, the head position (the last notification id), the events
    ingest holds, and the dead letters by reason."""
    config = settings(ctx)
    bus = open_bus(config)
    store = open_store(config)
    try:
        by_type = store.count_events()
        head = store.max_notification_id()
        holds = load_holds(config, bus, store)
        replayed = store.replayed()
    finally:
        store.close()
    letters = read_dead_letters(bus, config.bus.dlq_topic)
    data: dict[str, Any] = {
        "store": store_name(config),
        "events": sum(by_type.values()),
        "by_type": by_type,
        "head": head or 0,
        "held": len(holds),
        "held_awaiting": dict(Counter(h.awaiting.split(":")[0] for h in holds)),
        "dead_letters": len(letters),
        "dead_letters_by_reason": dict(sorted(Counter(x.reason for x in letters).items())),
        "replayed": len(replayed),
    }
    if as_json:
        print_json(data)
        return
    rows = [[k, v] for k, v in data.items() if not isinstance(v, dict)]
    rows += [[f"events: {k}", v] for k, v in by_type.items()]
    rows += [[f"held awaiting {k}", v] for k, v in data["held_awaiting"].items()]
    rows += [[f"dead letters: {k}", v] for k, v in data["dead_letters_by_reason"].items()]
    out_console.print(table("store", ["", ""], rows))
