"""The dashboard: one static page at ``/`` on the API's own server, its script and styles under
``/static/`` (package data, no CDN, no chart library: the charts are SVG drawn by the script).
It reads the same JSON endpoints as any client and refreshes on the ``/v1/stream`` events."""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles

STATIC = Path(__file__).with_name("static")


def mount_dashboard(app: FastAPI) -> None:
    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    @app.get("/", include_in_schema=False)
    def dashboard() -> FileResponse:
        return FileResponse(STATIC / "index.html", media_type="text/html; charset=utf-8")
