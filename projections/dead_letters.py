"""``dead_letters``: what ingest rejected, copied from the store into the read models so that
readers who may see neither the bus nor ingest's tables (the API's reader role, dashboards)
can count them by reason.

A dead letter is no event: ingest writes it to its outbox in the batch's transaction and
publishes it to the dead-letter topic after the commit. The projection runner copies the
published ones, oldest first by publication time, every ``heartbeat_s``; each copy starts
``MARGIN_MS`` before the newest letter it holds (ingest processes on other hosts stamp the
publication with their own clocks: they must agree within the margin) and upserts by letter
id, so a letter is never counted twice and one stamped by a clock a little behind is still
found.
"""

from __future__ import annotations

from datetime import UTC, datetime
from uuid import UUID

from indexer.events.fields import parse_timestamp
from indexer.ingest.dlq import DeadLetter
from indexer.store.log import EventLog
from projections.db import ReadDb
from projections.tables import DEAD_LETTERS, Row

MARGIN_MS = 30_000
PAGE = 5000


def copy_new(log: EventLog, db: ReadDb, topic: str, since_ms: int | None) -> int:
    """Copy the letters published since ``since_ms`` (less the margin; None: every letter,
    from the newest already copied); returns the newest publication time copied (ms)."""
    if since_ms is None:
        since_ms = newest_copied_ms(db)
    after = (since_ms - MARGIN_MS, UUID(int=0))
    newest = since_ms
    while letters := log.dead_letters(topic, after, PAGE):
        with db.transaction() as tx:
            DEAD_LETTERS.upsert(tx, [row_of(*letter) for letter in letters])
        dlq_id, _, published_ms = letters[-1]
        after, newest = (published_ms, dlq_id), max(newest, published_ms)
        if len(letters) < PAGE:
            break
    return newest


def newest_copied_ms(db: ReadDb) -> int:
    with db.reading() as tx:
        rows = tx.fetchall(f"SELECT MAX(published_at) FROM {DEAD_LETTERS.name}")
    newest = DEAD_LETTERS.rows_from_db(["published_at"], rows, db.dialect)[0]["published_at"]
    return 0 if newest is None else int(newest.timestamp()) * 1000 + newest.microsecond // 1000


def row_of(dlq_id: UUID, raw: bytes, published_ms: int) -> Row:
    letter = DeadLetter.decode(raw)
    return {
        "dlq_id": str(dlq_id), "reason": letter.reason, "detail": letter.detail,
        "source_topic": letter.source.topic, "source_partition": letter.source.partition,
        "source_offset": letter.offset, "consumer": letter.consumer,
        "rejected_at": _time(letter.rejected_at),
        "published_at": _from_ms(published_ms),
    }  # fmt: skip


def _from_ms(ms: int) -> datetime:
    return datetime.fromtimestamp(ms // 1000, UTC).replace(microsecond=ms % 1000 * 1000)


def _time(text: str) -> datetime | None:
    try:
        return parse_timestamp(text) if text else None
    except ValueError:
        return None
