"""What ingest did, for ``/metrics`` and dashboards (the reader role sees neither the bus nor
ingest's own tables): the dead letters ingest wrote, copied by the projection runner from the
store, and per source partition the newest event stored and how long it took to get there.

Revision ID: 0005
Revises: 0004
"""

from __future__ import annotations

from migrations import create, drop

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

TABLES = [
    """CREATE TABLE dead_letters (
        dlq_id TEXT PRIMARY KEY,
        reason TEXT NOT NULL,
        detail TEXT NOT NULL,
        source_topic TEXT NOT NULL,
        source_partition BIGINT NOT NULL,
        source_offset BIGINT NOT NULL,
        consumer TEXT NOT NULL,
        rejected_at {ts},
        published_at {ts} NOT NULL
    )""",
    "CREATE INDEX dead_letters_reason ON dead_letters (reason)",
    "CREATE INDEX dead_letters_published ON dead_letters (published_at)",
    """CREATE TABLE ingest_partitions (
        source_topic TEXT NOT NULL,
        source_partition BIGINT NOT NULL,
        consumer TEXT NOT NULL,
        last_offset BIGINT NOT NULL,
        events BIGINT NOT NULL,
        last_ingested_at {ts} NOT NULL,
        last_occurred_at {ts},
        ingest_delay_s DOUBLE PRECISION,
        position BIGINT NOT NULL,
        PRIMARY KEY (source_topic, source_partition)
    )""",
]

DROPPED = ["ingest_partitions", "dead_letters"]


def upgrade() -> None:
    create(TABLES)


def downgrade() -> None:
    drop(DROPPED)
