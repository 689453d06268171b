"""Registers every sub-command module on the root app."""

from masa.cli import app
from masa.cli import ingest

app.registered_commands += ingest.app.registered_commands
