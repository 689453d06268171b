"""The read models' schema in a database: ``migrate`` (alembic, the revisions in
``migrations/``), the revision applied, and ``grant_reader`` (SELECT on the read models for a
dashboard role, nothing else)."""

from __future__ import annotations

import re

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import create_engine
from sqlalchemy.exc import SQLAlchemyError

import migrations
from masa.errors import ConfigurationError, PermanentError, RetryableError
from projections.db import ReadDb
from projections.tables import READ_MODEL_TABLES

_ROLE = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")


def _config(url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(migrations.SCRIPT_LOCATION))
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


def migrate(url: str, revision: str = "head") -> str | None:
    """Upgrade the read models to ``revision``; returns the revision now applied."""
    try:
        command.upgrade(_config(url), revision)
    except SQLAlchemyError as exc:
        raise RetryableError(
            f"cannot migrate the read models: {exc.__class__.__name__}: {exc}"
        ) from exc
    return current_revision(url)


def current_revision(url: str) -> str | None:
    engine = create_engine(url)
    try:
        with engine.connect() as connection:
            context = MigrationContext.configure(
                connection, opts={"version_table": "read_model_revision"}
            )
            return context.get_current_revision()
    except SQLAlchemyError as exc:
        raise RetryableError(f"cannot read the read models' revision: {exc}") from exc
    finally:
        engine.dispose()


def head_revision() -> str | None:
    return ScriptDirectory.from_config(_config("sqlite://")).get_current_head()


def require_current(url: str) -> None:
    """Refuse to run on a schema older than the code (one line saying what to do)."""
    current, head = current_revision(url), head_revision()
    if current != head:
        raise ConfigurationError(
            f"the read models are at revision {current or 'none'}, the code needs {head};"
            " run: masa db migrate"
        )


def grant_reader(db: ReadDb, role: str, schema: str = "public") -> list[str]:
    """SELECT on every read-model table for ``role`` (which must exist), and nothing else;
    remembered so a rebuild's swapped-in tables get it too. PostgreSQL only."""
    if db.dialect != "postgresql":
        raise PermanentError("grant-reader needs PostgreSQL: SQLite has no roles")
    if not _ROLE.match(role):
        raise ConfigurationError(f"not a plain role name: {role!r} (lower case, digits, _)")
    tables = [t.name for t in READ_MODEL_TABLES]
    with db.transaction() as tx:
        tx.execute(f'GRANT USAGE ON SCHEMA {schema} TO "{role}"')
        for table in tables:
            tx.execute(f'GRANT SELECT ON {schema}.{table} TO "{role}"')
        tx.execute(
            "INSERT INTO read_model_readers (role) VALUES (?) ON CONFLICT (role) DO NOTHING",
            (role,),
        )
    return tables
