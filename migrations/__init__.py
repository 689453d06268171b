"""The read models' schema: alembic revisions of plain SQL, applied by ``masa db migrate``.

Each revision writes its SQL once with three dialect words, rendered by ``sql``: ``{wei}``
(exact integers of any size: NUMERIC(78,0) on PostgreSQL, TEXT of decimal digits on SQLite,
whose numbers would lose precision), ``{ts}`` (TIMESTAMPTZ; ISO-8601 text on SQLite) and
``{bool}``.
"""

from __future__ import annotations

from pathlib import Path

SCRIPT_LOCATION = Path(__file__).parent

_WORDS = {
    "postgresql": {"wei": "NUMERIC(78,0)", "ts": "TIMESTAMPTZ", "bool": "BOOLEAN"},
    "sqlite": {"wei": "TEXT", "ts": "TEXT", "bool": "BOOLEAN"},
}


def sql(dialect: str, text: str) -> str:
    """``text`` with the dialect words filled in."""
    return text.format(**_WORDS[dialect])


def create(statements: list[str]) -> None:
    """Run a revision's ``statements`` on alembic's connection, in its dialect."""
    from alembic import op

    dialect = op.get_bind().dialect.name
    for statement in statements:
        op.execute(sql(dialect, statement))


def drop(tables: list[str]) -> None:
    """Drop a revision's ``tables`` (in the order given: dependants first)."""
    from alembic import op

    for table in tables:
        op.execute(f"DROP TABLE {table}")
