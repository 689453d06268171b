"""The claimant's read of a posted statement: one row per epoch and address (its cumulative
and the position of its leaf in the tree) and the tree's nodes, so a claimant's proof is a
few keyed rows, not a parse of the whole statement.

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

from migrations import create, drop

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

TABLES = [
    """CREATE TABLE statement_lines (
        epoch BIGINT NOT NULL,
        address TEXT NOT NULL,
        earned {wei} NOT NULL,
        cumulative {wei} NOT NULL,
        tree_index BIGINT NOT NULL,
        PRIMARY KEY (epoch, address)
    )""",
    """CREATE TABLE merkle_nodes (
        epoch BIGINT NOT NULL,
        node BIGINT NOT NULL,
        hash TEXT NOT NULL,
        PRIMARY KEY (epoch, node)
    )""",
]

DROPPED = ["merkle_nodes", "statement_lines"]


def upgrade() -> None:
    create(TABLES)


def downgrade() -> None:
    drop(DROPPED)
