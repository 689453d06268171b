"""Ingest's tables beside eventsourcing's, each defined once and rendered per dialect.

One ``Table`` value per table (columns with a portable type, the primary key, whether SQLite
may drop its rowid); ``create_statements(dialect)`` renders them for PostgreSQL or SQLite.
Both adapters take their DDL from here, so a column added to one store is added to the other.
Types map as: ``uuid`` → ``uuid`` / ``TEXT`` (hex), ``text`` → ``text`` / ``TEXT``, ``int`` →
``int`` / ``INTEGER``, ``bigint`` → ``bigint`` / ``INTEGER``, ``bytes`` → ``bytea`` / ``BLOB``.

PostgreSQL statements carry a ``{schema}`` placeholder for ``psycopg.sql.SQL.format``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, cast

Dialect = Literal["postgres", "sqlite"]
ColumnType = Literal["uuid", "text", "int", "bigint", "bytes"]

_TYPES: dict[Dialect, dict[ColumnType, str]] = {
    "postgres": {
        "uuid": "uuid",
        "text": "text",
        "int": "int",
        "bigint": "bigint",
        "bytes": "bytea",
    },
    "sqlite": {
        "uuid": "TEXT",
        "text": "TEXT",
        "int": "INTEGER",
        "bigint": "INTEGER",
        "bytes": "BLOB",
    },
}


@dataclass(frozen=True)
class Column:
    name: str
    type: ColumnType
    nullable: bool = False


@dataclass(frozen=True)
class Table:
    name: str
    columns: tuple[Column, ...]
    primary_key: tuple[str, ...]
    #: SQLite only: ``WITHOUT ROWID`` (a table read in insertion order must keep its rowid).
    without_rowid: bool = False

    def create(self, dialect: Dialect) -> str:
        columns = [_column(c, dialect) for c in self.columns]
        if len(self.primary_key) == 1:
            columns[self._index(self.primary_key[0])] += " PRIMARY KEY"
        else:
            columns.append(f"PRIMARY KEY ({', '.join(_quoted(n) for n in self.primary_key)})")
        tail = " WITHOUT ROWID" if dialect == "sqlite" and self.without_rowid else ""
        name = f"{_prefix(dialect)}{self.name}"
        return f"CREATE TABLE IF NOT EXISTS {name} ({', '.join(columns)}){tail}"

    def _index(self, name: str) -> int:
        return [c.name for c in self.columns].index(name)


@dataclass(frozen=True)
class Index:
    name: str
    table: str
    columns: tuple[str, ...]
    where: str = ""

    def create(self, dialect: Dialect) -> str:
        where = f" WHERE {self.where}" if self.where else ""
        columns = ", ".join(_quoted(c) for c in self.columns)
        return (
            f"CREATE INDEX IF NOT EXISTS {self.name} ON {_prefix(dialect)}{self.table}"
            f" ({columns}){where}"
        )


def _column(column: Column, dialect: Dialect) -> str:
    null = "" if column.nullable else " NOT NULL"
    return f"{_quoted(column.name)} {_TYPES[dialect][column.type]}{null}"


def _quoted(name: str) -> str:
    return f'"{name}"' if name == "offset" else name  # a reserved word in PostgreSQL


def _prefix(dialect: Dialect) -> str:
    return "{schema}." if dialect == "postgres" else ""


def _cols(spec: str) -> tuple[Column, ...]:
    """``"name type, name type?, ..."`` (``?``: nullable)."""
    columns = []
    for item in spec.split(","):
        name, kind = item.split()
        columns.append(Column(name, cast(ColumnType, kind.rstrip("?")), kind.endswith("?")))
    return tuple(columns)


EVENT_IDS = Table(
    "ingest_event_ids",
    _cols("event_id uuid, originator_id uuid, originator_version bigint"),
    ("event_id",),
    without_rowid=True,
)
STREAMS = Table(
    "ingest_streams", _cols("stream_id uuid, state text"), ("stream_id",), without_rowid=True
)
HOLDS = Table(
    "ingest_holds",
    _cols(
        "consumer text, topic text, partition int, offset bigint, event_id uuid, producer text,"
        " awaiting text, reason text, detail text, held_at_ms bigint, key bytes?, value bytes"
    ),
    ("consumer", "topic", "partition", "offset"),
)
#: Read in insertion order on SQLite (``ORDER BY rowid``): it keeps its rowid.
OUTBOX = Table(
    "ingest_outbox",
    _cols(
        "id uuid, consumer text, source_topic text, source_partition int, topic text,"
        " key bytes?, value bytes, published_at_ms bigint?"
    ),
    ("id",),
)
DLQ_REPLAYS = Table("dlq_replays", _cols("dlq_id uuid, replayed_at_ms bigint"), ("dlq_id",))
OUTBOX_UNPUBLISHED = Index(
    "ingest_outbox_unpublished",
    "ingest_outbox",
    ("consumer", "source_topic", "source_partition"),
    where="published_at_ms IS NULL",
)
#: Dead letters by the time they were published, read by the projection runner's copy of them
#: into the read models (``EventStore.dead_letters``).
OUTBOX_PUBLISHED = Index(
    "ingest_outbox_published", "ingest_outbox", ("topic", "published_at_ms"),
    where="published_at_ms IS NOT NULL",
)  # fmt: skip

TABLES = (EVENT_IDS, STREAMS, HOLDS, OUTBOX, DLQ_REPLAYS)
INDEXES = (OUTBOX_UNPUBLISHED, OUTBOX_PUBLISHED)


def create_statements(dialect: Dialect) -> list[str]:
    """Every ``CREATE ... IF NOT EXISTS`` of ingest's tables, in order, for ``dialect``."""
    return [t.create(dialect) for t in TABLES] + [i.create(dialect) for i in INDEXES]
