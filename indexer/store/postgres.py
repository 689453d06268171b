"""PostgreSQL event store: eventsourcing's process recorder with a COPY write path.

eventsourcing inserts through ``unnest`` in pipeline mode (~7k events/s here); COPY in binary
format is several times faster and keeps everything else of the recorder: the table layout,
the EXCLUSIVE table lock that makes notification order equal commit order, NOTIFY for
subscribers, single-row tracking that refuses to move backwards.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from typing import Any
from uuid import UUID

import orjson
from eventsourcing.persistence import StoredEvent
from eventsourcing.postgres import PostgresDatastore, PostgresProcessRecorder
from psycopg import Cursor
from psycopg.rows import DictRow
from psycopg.sql import SQL, Composed, Identifier

from indexer.bus.base import TopicPartition
from indexer.ingest.port import HeldRecord, IngestWrite, OutboxRecord, StreamState
from indexer.store.base import EventStore, mapped_errors
from indexer.store.tables import create_statements


class PostgresEventStore(PostgresProcessRecorder, EventStore):
    def __init__(self, datastore: PostgresDatastore) -> None:
        super().__init__(datastore)
        self._schema = Identifier(datastore.schema)
        self._where = _server(datastore)
        self.sql_create_statements.extend(self._sql(s) for s in create_statements("postgres"))
        events = Identifier(self.events_table_name)
        self._copy_events = SQL(
            "COPY {}.{} (originator_id, originator_version, topic, state)"
            " FROM STDIN (FORMAT BINARY)"
        ).format(self._schema, events)
        self._last_ids = SQL(
            "SELECT notification_id FROM {}.{} ORDER BY notification_id DESC LIMIT %s"
        ).format(self._schema, events)

    def _sql(self, text: str) -> Composed:
        return SQL(text).format(schema=self._schema)

    # --- writing ----------------------------------------------------------------------------

    def write(self, batch: IngestWrite) -> None:
        with mapped_errors(self._where):
            self.insert_events(batch.events, batch=batch)

    def insert_events(
        self, stored_events: Sequence[StoredEvent], **kwargs: Any
    ) -> Sequence[int] | None:
        batch: IngestWrite = kwargs.get("batch") or IngestWrite(consumer="")
        tracking = kwargs.get("tracking")
        ids: list[int] | None = None
        with self.datastore.transaction(commit=True) as curs:
            if stored_events:
                self._lock_table(curs)
                self._notify_channel(curs)
            for t in [*batch.trackings(), *([tracking] if tracking else [])]:
                self._insert_tracking(curs, t)
            if stored_events:
                ids = self._copy_stored_events(curs, stored_events)
                self._copy_event_ids(curs, batch.event_ids)
            self._upsert_streams(curs, batch.streams)
            self._update_holds(curs, list(batch.holds.values()), batch.released)
            self._insert_outbox(curs, batch.outbox)
        return ids

    def _copy_stored_events(
        self, curs: Cursor[DictRow], events: Sequence[StoredEvent]
    ) -> list[int]:
        """COPY the events; their notification ids, in order (the recorder's contract). The
        table lock is held, so the newest ``len(events)`` ids are this transaction's."""
        with curs.copy(self._copy_events) as copy:
            copy.set_types(["uuid", "int8", "text", "bytea"])
            for e in events:
                copy.write_row((e.originator_id, e.originator_version, e.topic, e.state))
        curs.execute(self._last_ids, (len(events),))
        return [row["notification_id"] for row in reversed(curs.fetchall())]

    def _copy_event_ids(self, curs: Cursor[DictRow], rows: list[tuple[UUID, UUID, int]]) -> None:
        statement = self._sql(
            "COPY {schema}.ingest_event_ids (event_id, originator_id, originator_version)"
            " FROM STDIN (FORMAT BINARY)"
        )
        with curs.copy(statement) as copy:
            copy.set_types(["uuid", "uuid", "int8"])
            for row in rows:
                copy.write_row(row)

    def _upsert_streams(self, curs: Cursor[DictRow], streams: dict[UUID, StreamState]) -> None:
        if not streams:
            return
        curs.execute(
            self._sql(
                "INSERT INTO {schema}.ingest_streams (stream_id, state)"
                " SELECT * FROM unnest(%s::uuid[], %s::text[])"
                " ON CONFLICT (stream_id) DO UPDATE SET state = excluded.state"
            ),
            (list(streams), [orjson.dumps(s.to_json()).decode() for s in streams.values()]),
        )

    def _update_holds(
        self, curs: Cursor[DictRow], holds: list[HeldRecord], released: list[HeldRecord]
    ) -> None:
        if released:
            curs.executemany(
                self._sql(
                    "DELETE FROM {schema}.ingest_holds WHERE consumer = %s AND topic = %s"
                    ' AND partition = %s AND "offset" = %s'
                ),
                [(h.consumer, h.topic, h.partition, h.offset) for h in released],
            )
        if holds:
            curs.executemany(
                self._sql(
                    "INSERT INTO {schema}.ingest_holds VALUES"
                    " (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)"
                ),
                [h.row() for h in holds],
            )

    def _insert_outbox(self, curs: Cursor[DictRow], rows: list[OutboxRecord]) -> None:
        if not rows:
            return
        statement = self._sql(
            "COPY {schema}.ingest_outbox (id, consumer, source_topic, source_partition,"
            " topic, key, value) FROM STDIN (FORMAT BINARY)"
        )
        with curs.copy(statement) as copy:
            copy.set_types(["uuid", "text", "text", "int4", "text", "bytea", "bytea"])
            for r in rows:
                copy.write_row(
                    (r.id, r.consumer, r.source.topic, r.source.partition, r.topic, r.key, r.value)
                )

    def mark_published(self, ids: Collection[UUID], at_ms: int) -> None:
        if ids:
            with mapped_errors(self._where), self.datastore.transaction(commit=True) as curs:
                curs.execute(
                    self._sql(
                        "UPDATE {schema}.ingest_outbox SET published_at_ms = %s WHERE id = ANY(%s)"
                    ),
                    (at_ms, list(ids)),
                )

    def record_replays(self, dlq_ids: Collection[UUID], at_ms: int) -> None:
        with mapped_errors(self._where), self.datastore.transaction(commit=True) as curs:
            curs.executemany(
                self._sql(
                    "INSERT INTO {schema}.dlq_replays VALUES (%s, %s)"
                    " ON CONFLICT (dlq_id) DO UPDATE SET replayed_at_ms = excluded.replayed_at_ms"
                ),
                [(i, at_ms) for i in dlq_ids],
            )

    def replayed(self) -> dict[UUID, int]:
        rows = self._query("SELECT dlq_id, replayed_at_ms FROM {schema}.dlq_replays")
        return {r["dlq_id"]: r["replayed_at_ms"] for r in rows}

    # --- reading ----------------------------------------------------------------------------

    def _query(self, text: str, params: Any = None) -> list[DictRow]:
        with (
            mapped_errors(self._where),
            self.datastore.get_connection() as conn,
            conn.cursor() as curs,
        ):
            curs.execute(self._sql(text), params)
            return curs.fetchall()

    def load_streams(self, stream_ids: Collection[UUID]) -> dict[UUID, StreamState]:
        if not stream_ids:
            return {}
        rows = self._query(
            "SELECT stream_id, state FROM {schema}.ingest_streams WHERE stream_id = ANY(%s)",
            (list(stream_ids),),
        )
        return {r["stream_id"]: StreamState.from_json(orjson.loads(r["state"])) for r in rows}

    def known_event_ids(self, event_ids: Collection[UUID]) -> set[UUID]:
        if not event_ids:
            return set()
        rows = self._query(
            "SELECT event_id FROM {schema}.ingest_event_ids WHERE event_id = ANY(%s)",
            (list(event_ids),),
        )
        return {r["event_id"] for r in rows}

    def load_holds(self, consumer: str, partitions: Collection[TopicPartition]) -> list[HeldRecord]:
        rows = self._query(
            "SELECT * FROM {schema}.ingest_holds WHERE consumer = %s ORDER BY topic, partition,"
            ' "offset"',
            (consumer,),
        )
        wanted = set(partitions)
        return [
            HeldRecord(**{**r, "key": _bytes(r["key"]), "value": bytes(r["value"])})
            for r in rows
            if TopicPartition(r["topic"], r["partition"]) in wanted
        ]

    def unpublished(
        self, consumer: str, partitions: Collection[TopicPartition]
    ) -> list[OutboxRecord]:
        rows = self._query(
            "SELECT id, source_topic, source_partition, topic, key, value FROM"
            " {schema}.ingest_outbox WHERE consumer = %s AND published_at_ms IS NULL",
            (consumer,),
        )
        wanted = set(partitions)
        return [
            OutboxRecord(r["id"], consumer, source, r["topic"], _bytes(r["key"]), bytes(r["value"]))
            for r in rows
            if (source := TopicPartition(r["source_topic"], r["source_partition"])) in wanted
        ]

    def dead_letters(
        self, topic: str, after: tuple[int, UUID], limit: int
    ) -> list[tuple[UUID, bytes, int]]:
        rows = self._query(
            "SELECT id, value, published_at_ms FROM {schema}.ingest_outbox WHERE topic = %s"
            " AND published_at_ms >= %s AND (published_at_ms, id) > (%s, %s)"
            " ORDER BY published_at_ms, id LIMIT %s",
            (topic, after[0], after[0], after[1], limit),
        )
        return [(r["id"], bytes(r["value"]), r["published_at_ms"]) for r in rows]

    def count_events(self) -> dict[str, int]:
        rows = self._query(
            "SELECT topic, count(*) AS n FROM {schema}."
            + self.events_table_name
            + " GROUP BY topic ORDER BY topic"
        )
        return {r["topic"]: r["n"] for r in rows}

    def close(self) -> None:
        self.datastore.close()


def _server(datastore: PostgresDatastore) -> str:
    """``postgres host:port/dbname``, for error messages."""
    kwargs = datastore.pool.kwargs
    kwargs = (kwargs() if callable(kwargs) else kwargs) or {}
    return f"postgres {kwargs.get('host')}:{kwargs.get('port')}/{kwargs.get('dbname')}"


def _bytes(value: Any) -> bytes | None:
    return None if value is None else bytes(value)
