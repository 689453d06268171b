"""alembic's environment: runs the revisions on the connection ``masa db migrate`` passes in
``config.attributes["connection"]`` (or on ``sqlalchemy.url``), one transaction per revision."""

from __future__ import annotations

from alembic import context
from sqlalchemy import create_engine

config = context.config


def run() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        _migrate(connection)
        return
    engine = create_engine(config.get_main_option("sqlalchemy.url") or "")
    with engine.connect() as connection:
        _migrate(connection)
    engine.dispose()


def _migrate(connection) -> None:  # type: ignore[no-untyped-def]
    context.configure(
        connection=connection,
        render_as_batch=True,
        transaction_per_migration=True,
        version_table="read_model_revision",
    )
    with context.begin_transaction():
        context.run_migrations()


run()
