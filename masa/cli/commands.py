"""Registers every sub-command module on the root app."""

from masa.cli import app, demo, dlq, events, ingest, keys

app.registered_commands += demo.app.registered_commands + ingest.app.registered_commands
app.add_typer(events.app, name="events")
app.add_typer(dlq.app, name="dlq")
app.add_typer(keys.app, name="keys")
