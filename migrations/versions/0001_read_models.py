"""Read models: nodes, stake changes, uptime, requests, balances, attribution, epoch fees,
parameters, epochs, data sources, projection positions.

Revision ID: 0001
Revises:
"""

from __future__ import annotations

from migrations import create, drop

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

TABLES = [
    """CREATE TABLE nodes (
        address TEXT PRIMARY KEY,
        role TEXT,
        status TEXT NOT NULL,
        active_stake {wei} NOT NULL,
        locked_stake {wei} NOT NULL,
        pending_status TEXT NOT NULL,
        pending_active_stake {wei} NOT NULL,
        pending_locked_stake {wei} NOT NULL,
        slashed {wei} NOT NULL,
        first_seen {ts},
        last_seen {ts},
        last_heartbeat {ts},
        heartbeats BIGINT NOT NULL,
        capabilities TEXT NOT NULL
    )""",
    """CREATE TABLE stake_changes (
        event_id TEXT PRIMARY KEY,
        position BIGINT NOT NULL,
        node TEXT NOT NULL,
        kind TEXT NOT NULL,
        role INTEGER,
        amount {wei} NOT NULL,
        stake_after {wei},
        locked_after {wei},
        chain_id BIGINT NOT NULL,
        block_number BIGINT NOT NULL,
        log_index BIGINT NOT NULL,
        block_hash TEXT NOT NULL,
        tx_hash TEXT NOT NULL,
        block_time {ts} NOT NULL,
        final {bool} NOT NULL,
        retracted {bool} NOT NULL
    )""",
    "CREATE INDEX stake_changes_node ON stake_changes (node, block_number, log_index)",
    """CREATE TABLE node_uptime (
        node TEXT NOT NULL,
        epoch BIGINT NOT NULL,
        covered_s BIGINT NOT NULL,
        staked_s BIGINT NOT NULL,
        expected_s BIGINT NOT NULL,
        uptime_ppm BIGINT NOT NULL,
        heartbeats BIGINT NOT NULL,
        late_heartbeats BIGINT NOT NULL,
        coverage TEXT NOT NULL,
        PRIMARY KEY (node, epoch)
    )""",
    """CREATE TABLE requests (
        request_id TEXT PRIMARY KEY,
        kind TEXT NOT NULL,
        oracle TEXT NOT NULL,
        fee {wei} NOT NULL,
        reserved {bool} NOT NULL,
        status TEXT NOT NULL,
        worker TEXT,
        units BIGINT,
        result_digest TEXT,
        failure_reason TEXT,
        submitted_at {ts} NOT NULL,
        closed_at {ts},
        latency_ms BIGINT,
        epoch BIGINT,
        submitted_position BIGINT NOT NULL,
        closed_position BIGINT,
        closed_event_id TEXT
    )""",
    "CREATE INDEX requests_oracle ON requests (oracle, submitted_position)",
    "CREATE INDEX requests_epoch ON requests (epoch, status)",
    """CREATE TABLE oracle_balances (
        oracle TEXT PRIMARY KEY,
        deposited {wei} NOT NULL,
        pending_deposits {wei} NOT NULL,
        reserved {wei} NOT NULL,
        spent {wei} NOT NULL,
        available {wei} NOT NULL,
        unpaid_requests BIGINT NOT NULL
    )""",
    """CREATE TABLE fee_deposits (
        event_id TEXT PRIMARY KEY,
        oracle TEXT NOT NULL,
        amount {wei} NOT NULL,
        chain_id BIGINT NOT NULL,
        block_number BIGINT NOT NULL,
        final {bool} NOT NULL,
        retracted {bool} NOT NULL,
        position BIGINT NOT NULL
    )""",
    """CREATE TABLE data_sources (
        source TEXT PRIMARY KEY,
        contributor TEXT NOT NULL,
        registered_at {ts} NOT NULL,
        position BIGINT NOT NULL
    )""",
    """CREATE TABLE contributor_attribution (
        contributor TEXT NOT NULL,
        epoch BIGINT NOT NULL,
        source TEXT NOT NULL,
        units BIGINT NOT NULL,
        requests BIGINT NOT NULL,
        PRIMARY KEY (contributor, epoch, source)
    )""",
    """CREATE TABLE data_uses (
        event_id TEXT NOT NULL,
        request_id TEXT NOT NULL,
        contributor TEXT NOT NULL,
        source TEXT NOT NULL,
        units BIGINT NOT NULL,
        credited {bool} NOT NULL,
        refusal TEXT,
        epoch BIGINT,
        position BIGINT NOT NULL,
        PRIMARY KEY (event_id, source)
    )""",
    "CREATE INDEX data_uses_request ON data_uses (request_id)",
    """CREATE TABLE epoch_fees (
        epoch BIGINT PRIMARY KEY,
        paid_requests BIGINT NOT NULL,
        unpaid_requests BIGINT NOT NULL,
        failed_requests BIGINT NOT NULL,
        fees_paid {wei} NOT NULL,
        protocol_part {wei},
        data_part {wei},
        worker_part {wei}
    )""",
    """CREATE TABLE parameters (
        effective_epoch BIGINT PRIMARY KEY,
        genesis {ts} NOT NULL,
        epoch_length_s BIGINT NOT NULL,
        heartbeat_interval_s BIGINT NOT NULL,
        grace_s BIGINT NOT NULL,
        emission_per_epoch {wei} NOT NULL,
        stake_cap {wei} NOT NULL,
        min_uptime_ppm BIGINT NOT NULL,
        protocol_share_bps BIGINT NOT NULL,
        data_share_bps BIGINT NOT NULL,
        treasury TEXT NOT NULL,
        event_id TEXT NOT NULL,
        position BIGINT NOT NULL
    )""",
    """CREATE TABLE epochs (
        epoch BIGINT PRIMARY KEY,
        start_at {ts} NOT NULL,
        end_at {ts} NOT NULL,
        closed {bool} NOT NULL,
        cutoff_position BIGINT,
        finalized_block BIGINT,
        closed_at {ts}
    )""",
    """CREATE TABLE chain_finality (
        chain_id BIGINT PRIMARY KEY,
        finalized_block BIGINT NOT NULL,
        block_hash TEXT NOT NULL,
        position BIGINT NOT NULL
    )""",
    """CREATE TABLE projection_positions (
        name TEXT PRIMARY KEY,
        position BIGINT NOT NULL,
        head BIGINT NOT NULL,
        lag_events BIGINT NOT NULL,
        lag_seconds DOUBLE PRECISION NOT NULL,
        events_applied BIGINT NOT NULL,
        updated_at {ts} NOT NULL,
        last_error TEXT
    )""",
    """CREATE TABLE read_model_readers (
        role TEXT PRIMARY KEY
    )""",
]

DROPPED = [
    "read_model_readers", "projection_positions", "chain_finality", "epochs", "parameters",
    "epoch_fees", "data_uses", "contributor_attribution", "data_sources", "fee_deposits",
    "oracle_balances", "requests", "node_uptime", "stake_changes", "nodes",
]  # fmt: skip


def upgrade() -> None:
    create(TABLES)


def downgrade() -> None:
    drop(DROPPED)
