"""The settler's records survive a round trip through the migrated schema on SQLite and
PostgreSQL: wei beyond 2**64, timestamps, the posting fields; payouts carry cumulatives."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from masa.app.settings import Settings
from masa.app.wiring import open_read_db
from projections.schema import migrate
from projections.tables import PAYOUTS, SETTLEMENTS
from settlement.posting import PostingRecord, State
from settlement.settler import Settlement, SettlementDb, status_rows
from settlement.statement import Statement, StatementLine

BIG = 10**30 + 7
A, B = "0x" + "0a" * 20, "0x" + "0b" * 20


def _statement(epoch: int, earned: int, previous: int) -> Statement:
    lines = (
        StatementLine(A, earned, 0, 0, 0, earned, previous + earned),
        StatementLine(B, 0, 3, 2, 0, 5, 5 * (epoch + 1)),
    )
    return Statement(epoch, lines, sum(line.cumulative for line in lines))


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db(request: pytest.FixtureRequest, tmp_path: Path) -> Any:
    config: dict[str, Any] = {"home": tmp_path, "store": {"backend": request.param}}
    if request.param == "postgres":
        pg = request.getfixturevalue("pg_database")
        config["store"] |= {"postgres_host": pg.host, "postgres_port": pg.port,
                            "postgres_user": pg.user, "postgres_password": pg.password,
                            "postgres_dbname": pg.dbname}  # fmt: skip
    read_db = open_read_db(Settings(**config))
    migrate(read_db.url)
    yield SettlementDb(read_db)
    read_db.close()


def test_records_and_payouts_round_trip(db: SettlementDb):
    at = datetime(2026, 12, 1, 12, 0, 0, 123456, tzinfo=UTC)
    previous = 0
    for epoch in range(2):
        statement = _statement(epoch, BIG, previous)
        previous += BIG
        posting = PostingRecord(epoch, statement.root, statement.statement_hash,
                                statement.total_cumulative)  # fmt: skip
        text = statement.canonical_bytes().decode()
        db.save_computed(Settlement(posting, 10 + epoch, 100 + epoch, text, at), statement)
    record = db.get(1)
    assert (
        record is not None and record.statement().canonical_bytes() == statement.canonical_bytes()
    )
    sent = PostingRecord(
        1, statement.root, statement.statement_hash, statement.total_cumulative,
        state=State.BROADCAST, nonce=3, raw_tx="0x02f8", tx_hash="0x" + "cd" * 32,
        replaced_tx_hashes=("0x" + "ef" * 32,), max_fee_per_gas=BIG, max_priority_fee_per_gas=2,
        broadcast_at=at,
    )  # fmt: skip
    db.save(Settlement(sent, 11, 101, record.statement_json, at))
    assert db.get(1).posting == sent  # type: ignore[union-attr]
    assert [r["state"] for r in status_rows(db)] == ["computed", "broadcast"]
    with db.db.transaction() as tx:
        payouts = PAYOUTS.load(tx)
        assert set(SETTLEMENTS.load(tx)) == {(0,), (1,)}
    assert payouts[(1, A, "emission")]["cumulative"] == 2 * BIG
    assert payouts[(1, B, "worker_fee")] == {"epoch": 1, "address": B, "kind": "worker_fee",
                                             "earned": 3, "cumulative": 6}  # fmt: skip
    assert (1, B, "treasury") not in payouts  # zero earnings have no row
