"""``masa serve``: the read-only HTTP API over the read models (and, later, the dashboard)."""

from masa.app.api.app import create_app

__all__ = ["create_app"]
