"""Indexes for the claimant's view (``/v1/users/{address}/rewards``): an address's data uses
and the requests it served, without scanning the tables (payouts and claims have theirs).

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

INDEXES = {
    "data_uses_contributor": "data_uses (contributor, credited)",
    "requests_worker": "requests (worker, status)",
}


def upgrade() -> None:
    for name, target in INDEXES.items():
        op.execute(f"CREATE INDEX {name} ON {target}")


def downgrade() -> None:
    for name in INDEXES:
        op.execute(f"DROP INDEX {name}")
