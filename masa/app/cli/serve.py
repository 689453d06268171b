"""``masa serve``: the read API (and dashboard) over the read models."""

from __future__ import annotations

import typer

from masa.app.cli.common import StopFlag, err_console, settings
from masa.app.wiring import open_read_db

app = typer.Typer()


@app.command("serve")
def serve(
    ctx: typer.Context,
    host: str | None = typer.Option(None, "--host", help="Listen address (api.host)."),
    port: int | None = typer.Option(None, "--port", min=1, max=65535, help="Port (api.port)."),
) -> None:
    """Serve the read-only HTTP API over the read models (OpenAPI at /docs).

    Connects as the SELECT-only reader role on PostgreSQL (api.reader_user: create it, then
    'masa db grant-reader ROLE'), or opens the SQLite read models read-only.

    Examples:
      masa serve
      masa serve --port 8080
      curl -s 127.0.0.1:8000/v1/nodes | jq .
    """
    import uvicorn

    from masa.app.api import create_app

    config = settings(ctx)
    bind, listen = host or config.api.host, port or config.api.port
    api = create_app(
        lambda: open_read_db(config, reader=True), max_lag_s=config.projections.max_lag_s
    )
    err_console.print(f"masa serve: http://{bind}:{listen}/ (OpenAPI: /docs)")
    # uvicorn shuts down on SIGTERM/SIGINT, then sends the signal again to the handler it
    # found: this one, so SIGTERM ends in exit 0 and Ctrl-C in 130, as every command
    StopFlag()
    uvicorn.run(api, host=bind, port=listen, log_level=config.log_level.lower())
