"""Registers every sub-command module on the root app."""

from masa.app.cli import (
    app,
    chain,
    config,
    db,
    demo,
    dlq,
    events,
    index,
    ingest,
    keys,
    oracle,
    project,
    serve,
    settle_verify,
    store,
    worker,
)
from masa.app.cli import request as request_cli

app.registered_commands += demo.app.registered_commands + ingest.app.registered_commands
app.registered_commands += index.app.registered_commands + serve.app.registered_commands
app.add_typer(events.app, name="events")
app.add_typer(dlq.app, name="dlq")
app.add_typer(keys.app, name="keys")
app.add_typer(store.app, name="store")
app.add_typer(worker.app, name="worker")
app.add_typer(chain.contracts_app, name="contracts")
app.add_typer(chain.node_app, name="node")
app.add_typer(config.app, name="config")
app.add_typer(db.app, name="db")
app.add_typer(project.app, name="project")
app.add_typer(settle_verify.app, name="settle")
app.add_typer(request_cli.app, name="request")
app.add_typer(oracle.app, name="oracle")
import masa.app.cli.settle  # noqa: E402, F401  (registers settle, rewards and claim)
