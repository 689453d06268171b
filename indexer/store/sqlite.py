"""SQLite event store for the embedded default: eventsourcing's SQLite process recorder,
with batches written by ``executemany`` in one transaction."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from typing import Any
from uuid import UUID

import orjson
from eventsourcing.persistence import StoredEvent
from eventsourcing.sqlite import SQLiteCursor, SQLiteDatastore, SQLiteProcessRecorder

from indexer.bus.base import TopicPartition
from indexer.ingest.port import HeldRecord, IngestWrite, OutboxRecord, StreamState
from indexer.store.base import EventStore, mapped_errors
from indexer.store.tables import create_statements


class SQLiteEventStore(SQLiteProcessRecorder, EventStore):
    def __init__(self, datastore: SQLiteDatastore, **kwargs: Any) -> None:
        super().__init__(datastore, **kwargs)
        self._where = f"sqlite {datastore.pool.db_name}"

    def construct_create_table_statements(self) -> list[str]:
        return [*super().construct_create_table_statements(), *create_statements("sqlite")]

    def write(self, batch: IngestWrite) -> None:
        with mapped_errors(self._where):
            self.insert_events(batch.events, batch=batch)

    def _insert_events(
        self, c: SQLiteCursor, stored_events: Sequence[StoredEvent], **kwargs: Any
    ) -> Sequence[int] | None:
        batch: IngestWrite = kwargs.get("batch") or IngestWrite(consumer="")
        tracking = kwargs.get("tracking")
        for t in [*batch.trackings(), *([tracking] if tracking else [])]:
            self._insert_tracking(c, t)
        ids = self._insert_stored(c, stored_events)
        c.executemany(
            "INSERT INTO ingest_event_ids VALUES (?, ?, ?)",
            [(eid.hex, sid.hex, version) for eid, sid, version in batch.event_ids],
        )
        c.executemany(
            "INSERT INTO ingest_streams VALUES (?, ?) ON CONFLICT (stream_id)"
            " DO UPDATE SET state = excluded.state",
            [(sid.hex, orjson.dumps(s.to_json()).decode()) for sid, s in batch.streams.items()],
        )
        c.executemany(
            "DELETE FROM ingest_holds WHERE consumer = ? AND topic = ? AND partition = ?"
            ' AND "offset" = ?',
            [(h.consumer, h.topic, h.partition, h.offset) for h in batch.released],
        )
        c.executemany(
            "INSERT INTO ingest_holds VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [_sqlite_row(h) for h in batch.holds.values()],
        )
        c.executemany(
            "INSERT INTO ingest_outbox VALUES (?, ?, ?, ?, ?, ?, ?, NULL)",
            [
                (r.id.hex, r.consumer, r.source.topic, r.source.partition, r.topic, r.key, r.value)
                for r in batch.outbox
            ],
        )
        return ids

    def _insert_stored(self, c: SQLiteCursor, events: Sequence[StoredEvent]) -> list[int]:
        """Insert with ``executemany``; the notification ids (rowids), in order, as the
        recorder's contract wants them. The write transaction is SQLite's only one, and a new
        rowid is one more than the largest, so this batch took the newest ``len(events)``."""
        c.executemany(
            self.insert_events_statement,
            [(_text_id(e.originator_id), e.originator_version, e.topic, e.state) for e in events],
        )
        if not events:
            return []
        c.execute(f"SELECT MAX(rowid) FROM {self.events_table_name}")
        last = int(c.fetchone()[0])
        return list(range(last - len(events) + 1, last + 1))

    def mark_published(self, ids: Collection[UUID], at_ms: int) -> None:
        with mapped_errors(self._where), self.datastore.transaction(commit=True) as c:
            c.executemany(
                "UPDATE ingest_outbox SET published_at_ms = ? WHERE id = ?",
                [(at_ms, i.hex) for i in ids],
            )

    def record_replays(self, dlq_ids: Collection[UUID], at_ms: int) -> None:
        with mapped_errors(self._where), self.datastore.transaction(commit=True) as c:
            c.executemany(
                "INSERT INTO dlq_replays VALUES (?, ?) ON CONFLICT (dlq_id)"
                " DO UPDATE SET replayed_at_ms = excluded.replayed_at_ms",
                [(i.hex, at_ms) for i in dlq_ids],
            )

    def replayed(self) -> dict[UUID, int]:
        return {
            UUID(r[0]): r[1] for r in self._query("SELECT dlq_id, replayed_at_ms FROM dlq_replays")
        }

    def _query(self, sql: str, params: Sequence[Any] = ()) -> list[Any]:
        with mapped_errors(self._where), self.datastore.transaction(commit=False) as c:
            c.execute(sql, params)
            return list(c.fetchall())

    def load_streams(self, stream_ids: Collection[UUID]) -> dict[UUID, StreamState]:
        found: dict[UUID, StreamState] = {}
        ids = [s.hex for s in stream_ids]
        for chunk in _chunks(ids):
            rows = self._query(
                f"SELECT stream_id, state FROM ingest_streams WHERE stream_id IN ({_marks(chunk)})",
                chunk,
            )
            found |= {UUID(r[0]): StreamState.from_json(orjson.loads(r[1])) for r in rows}
        return found

    def known_event_ids(self, event_ids: Collection[UUID]) -> set[UUID]:
        found: set[UUID] = set()
        ids = [e.hex for e in event_ids]
        for chunk in _chunks(ids):
            rows = self._query(
                f"SELECT event_id FROM ingest_event_ids WHERE event_id IN ({_marks(chunk)})", chunk
            )
            found |= {UUID(r[0]) for r in rows}
        return found

    def load_holds(self, consumer: str, partitions: Collection[TopicPartition]) -> list[HeldRecord]:
        rows = self._query(
            'SELECT * FROM ingest_holds WHERE consumer = ? ORDER BY topic, partition, "offset"',
            (consumer,),
        )
        wanted = set(partitions)
        return [
            HeldRecord(
                consumer=r[0],
                topic=r[1],
                partition=r[2],
                offset=r[3],
                event_id=UUID(r[4]),
                producer=r[5],
                awaiting=r[6],
                reason=r[7],
                detail=r[8],
                held_at_ms=r[9],
                key=r[10],
                value=r[11],
            )
            for r in rows
            if TopicPartition(r[1], r[2]) in wanted
        ]

    def unpublished(
        self, consumer: str, partitions: Collection[TopicPartition]
    ) -> list[OutboxRecord]:
        rows = self._query(
            "SELECT id, source_topic, source_partition, topic, key, value FROM ingest_outbox"
            " WHERE consumer = ? AND published_at_ms IS NULL ORDER BY rowid",
            (consumer,),
        )
        wanted = set(partitions)
        return [
            OutboxRecord(UUID(r[0]), consumer, source, r[3], r[4], r[5])
            for r in rows
            if (source := TopicPartition(r[1], r[2])) in wanted
        ]

    def dead_letters(
        self, topic: str, after: tuple[int, UUID], limit: int
    ) -> list[tuple[UUID, bytes, int]]:
        rows = self._query(
            "SELECT id, value, published_at_ms FROM ingest_outbox WHERE topic = ?"
            " AND published_at_ms >= ? AND (published_at_ms, id) > (?, ?)"
            " ORDER BY published_at_ms, id LIMIT ?",
            (topic, after[0], after[0], after[1].hex, limit),
        )
        return [(UUID(r[0]), bytes(r[1]), r[2]) for r in rows]

    def count_events(self) -> dict[str, int]:
        rows = self._query(
            f"SELECT topic, count(*) FROM {self.events_table_name} GROUP BY topic ORDER BY topic"
        )
        return {r[0]: r[1] for r in rows}

    def close(self) -> None:
        self.datastore.close()


def _chunks(items: list[str], size: int = 500) -> list[list[str]]:
    return [items[i : i + size] for i in range(0, len(items), size)]


def _marks(chunk: list[str]) -> str:
    return ",".join("?" * len(chunk))


def _text_id(originator_id: UUID | str) -> str:
    """SQLite keeps originator ids as hex text (eventsourcing's convention)."""
    return originator_id.hex if isinstance(originator_id, UUID) else originator_id


def _sqlite_row(h: HeldRecord) -> tuple[Any, ...]:
    """SQLite keeps UUIDs as hex text."""
    row = h.row()
    return (*row[:4], h.event_id.hex, *row[5:])
