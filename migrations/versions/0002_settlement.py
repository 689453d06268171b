"""Settlement: one record per epoch (statement, root, the posting transaction's state), the
payouts of every statement by address and kind, and the claims paid on chain.

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

from migrations import create, drop

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

TABLES = [
    """CREATE TABLE settlements (
        epoch BIGINT PRIMARY KEY,
        chain_epoch BIGINT NOT NULL,
        root TEXT NOT NULL,
        statement_hash TEXT NOT NULL,
        total_cumulative {wei} NOT NULL,
        state TEXT NOT NULL,
        nonce BIGINT,
        raw_tx TEXT,
        tx_hash TEXT,
        replaced_tx_hashes TEXT NOT NULL,
        max_fee_per_gas {wei},
        max_priority_fee_per_gas {wei},
        broadcast_at {ts},
        block_number BIGINT,
        close_position BIGINT NOT NULL,
        finalized_block BIGINT NOT NULL,
        statement TEXT NOT NULL,
        refusal TEXT,
        updated_at {ts} NOT NULL
    )""",
    "CREATE UNIQUE INDEX settlements_chain_epoch ON settlements (chain_epoch)",
    """CREATE TABLE payouts (
        epoch BIGINT NOT NULL,
        address TEXT NOT NULL,
        kind TEXT NOT NULL,
        earned {wei} NOT NULL,
        cumulative {wei} NOT NULL,
        PRIMARY KEY (epoch, address, kind)
    )""",
    "CREATE INDEX payouts_address ON payouts (address, epoch)",
    """CREATE TABLE claims (
        event_id TEXT PRIMARY KEY,
        account TEXT NOT NULL,
        amount {wei} NOT NULL,
        cumulative {wei} NOT NULL,
        chain_id BIGINT NOT NULL,
        block_number BIGINT NOT NULL,
        tx_hash TEXT NOT NULL,
        final {bool} NOT NULL,
        retracted {bool} NOT NULL,
        position BIGINT NOT NULL
    )""",
    "CREATE INDEX claims_account ON claims (account, block_number)",
]

DROPPED = ["claims", "payouts", "settlements"]


def upgrade() -> None:
    create(TABLES)


def downgrade() -> None:
    drop(DROPPED)
