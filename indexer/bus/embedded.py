"""A small SQLite-backed log with Kafka's consumer semantics, for the embedded default.

Topics have partitions; records get dense offsets per partition; keys choose partitions with
Kafka's murmur2; consumers either read assigned partitions from given offsets or join a group
whose live members split each topic's partitions as Kafka's range assignor does. Several
processes may share one file (WAL mode). Not a broker: one machine, no replication.

A flush is one SQLite transaction, so every flush is atomic; a transactional producer adds
Kafka's fencing (an epoch per transactional id, checked in the transaction). Compacted
topics keep only the latest record per key, as Kafka's compaction eventually does.
"""

from __future__ import annotations

import random
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path

from indexer.bus.base import (
    COMPACTED,
    Bus,
    Consumer,
    Producer,
    ProducerFenced,
    RebalanceListener,
    Record,
    TopicPartition,
    TransactionalProducer,
    partition_for,
)
from indexer.sqlite_errors import mapped
from masa.errors import ConfigurationError

_SCHEMA = """
CREATE TABLE IF NOT EXISTS topics (name TEXT PRIMARY KEY, partitions INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS records (
    topic TEXT NOT NULL, partition INTEGER NOT NULL, offset INTEGER NOT NULL,
    key BLOB, value BLOB NOT NULL, ts INTEGER NOT NULL,
    PRIMARY KEY (topic, partition, offset)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS members (
    grp TEXT NOT NULL, member TEXT NOT NULL, topics TEXT NOT NULL, seen_ms INTEGER NOT NULL,
    PRIMARY KEY (grp, member));
CREATE TABLE IF NOT EXISTS committed (
    grp TEXT NOT NULL, topic TEXT NOT NULL, partition INTEGER NOT NULL, offset INTEGER NOT NULL,
    PRIMARY KEY (grp, topic, partition));
CREATE TABLE IF NOT EXISTS topic_configs (
    name TEXT NOT NULL, key TEXT NOT NULL, value TEXT NOT NULL, PRIMARY KEY (name, key));
CREATE TABLE IF NOT EXISTS producers (id TEXT PRIMARY KEY, epoch INTEGER NOT NULL);
"""
_Pending = list[tuple[str, bytes | None, bytes]]
_Check = Callable[[sqlite3.Connection], None]


def _mapped(path: Path) -> AbstractContextManager[None]:
    """SQLite's errors as the port promises them (``indexer.sqlite_errors``): a locked, busy
    or full file is ``RetryableError``; a read-only, unopenable or damaged one is
    ``PermanentError``. Every public call of this module's classes runs inside it."""
    return mapped(f"embedded bus {path}")


def _connect(path: Path) -> sqlite3.Connection:
    path.parent.mkdir(parents=True, exist_ok=True)
    with _mapped(path):
        conn = sqlite3.connect(path, timeout=30, isolation_level=None, check_same_thread=False)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
    return conn


@contextmanager
def _immediate(conn: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """A write transaction: taken at once, committed on success, rolled back on anything."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield conn
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


def _now_ms() -> int:
    return int(time.time() * 1000)


class EmbeddedBus(Bus):
    def __init__(self, path: Path, *, session_timeout_s: float = 10.0) -> None:
        self.path = path
        self.session_timeout_s = session_timeout_s
        self._conn = _connect(path)
        with _mapped(path):
            self._conn.executescript(_SCHEMA)
        self._lock = threading.Lock()

    def ensure_topics(
        self, topics: Mapping[str, int], configs: Mapping[str, Mapping[str, str]] | None = None
    ) -> None:
        settings = [
            (name, key, value)
            for name, config in (configs or {}).items()
            for key, value in config.items()
        ]
        with self._lock, _mapped(self.path), _immediate(self._conn) as conn:
            new = [(n, p) for n, p in topics.items() if not self._exists(n)]
            conn.executemany("INSERT INTO topics (name, partitions) VALUES (?, ?)", new)
            created = {n for n, _ in new}
            new_settings = [s for s in settings if s[0] in created]
            conn.executemany("INSERT INTO topic_configs VALUES (?, ?, ?)", new_settings)

    def _exists(self, topic: str) -> bool:
        row = self._conn.execute("SELECT 1 FROM topics WHERE name = ?", (topic,)).fetchone()
        return row is not None

    def compacted(self, topic: str) -> bool:
        with self._lock, _mapped(self.path):
            rows = self._conn.execute(
                "SELECT key, value FROM topic_configs WHERE name = ?", (topic,)
            ).fetchall()
        return set(COMPACTED.items()) <= set(rows)

    def partitions(self, topic: str) -> int:
        with self._lock, _mapped(self.path):
            row = self._conn.execute(
                "SELECT partitions FROM topics WHERE name = ?", (topic,)
            ).fetchone()
        if row is None:
            raise ConfigurationError(f"topic {topic!r} does not exist")
        return int(row[0])

    def end_offsets(self, topic: str) -> dict[TopicPartition, int]:
        ends = {TopicPartition(topic, p): 0 for p in range(self.partitions(topic))}
        with self._lock, _mapped(self.path):
            rows = self._conn.execute(
                "SELECT partition, MAX(offset) + 1 FROM records WHERE topic = ? GROUP BY partition",
                (topic,),
            ).fetchall()
        ends.update({TopicPartition(topic, p): end for p, end in rows})
        return ends

    def producer(self) -> Producer:
        return EmbeddedProducer(self)

    def consumer(self, group: str, *, instance_id: str | None = None) -> Consumer:
        return EmbeddedConsumer(self, group, instance_id)

    def transactional_producer(self, transactional_id: str) -> TransactionalProducer:
        return EmbeddedTransactionalProducer(self, transactional_id)


class EmbeddedProducer(Producer):
    """Buffers sends; ``flush`` appends them in one transaction."""

    def __init__(self, bus: EmbeddedBus) -> None:
        self._bus = bus
        self._conn = _connect(bus.path)
        self._pending: _Pending = []
        self._partitions: dict[str, int] = {}
        self._compacted: set[str] = set()
        self._lock = threading.Lock()

    def send(self, topic: str, key: bytes | None, value: bytes) -> None:
        with self._lock:
            if topic not in self._partitions:
                self._partitions[topic] = self._bus.partitions(topic)
                if self._bus.compacted(topic):
                    self._compacted.add(topic)
            self._pending.append((topic, key, value))

    def flush(self, timeout_s: float = 30.0) -> None:
        self.flush_checked(None)

    def flush_checked(self, check: _Check | None) -> None:
        """Append what is pending in one transaction, after ``check`` passed inside it."""
        with self._lock, _mapped(self._bus.path):
            pending, self._pending = self._pending, []
            if pending:
                self._append(pending, check)

    def discard(self) -> None:
        with self._lock:
            self._pending = []

    def _append(self, pending: _Pending, check: _Check | None) -> None:
        now = _now_ms()
        next_offset: dict[tuple[str, int], int] = {}
        rows = []
        with _immediate(self._conn):
            if check is not None:
                check(self._conn)
            for topic, key, value in pending:
                count = self._partitions[topic]
                partition = (
                    partition_for(key, count) if key is not None else random.randrange(count)
                )
                slot = (topic, partition)
                if slot not in next_offset:
                    next_offset[slot] = self._conn.execute(
                        "SELECT COALESCE(MAX(offset) + 1, 0) FROM records"
                        " WHERE topic = ? AND partition = ?",
                        slot,
                    ).fetchone()[0]
                rows.append((topic, partition, next_offset[slot], key, value, now))
                next_offset[slot] += 1
            self._conn.executemany("INSERT INTO records VALUES (?, ?, ?, ?, ?, ?)", rows)
            self._compact([r for r in rows if r[0] in self._compacted and r[3] is not None])

    def _compact(self, rows: list[tuple[str, int, int, bytes | None, bytes, int]]) -> None:
        self._conn.executemany(
            "DELETE FROM records WHERE topic = ? AND partition = ? AND key = ? AND offset < ?",
            [(topic, partition, key, offset) for topic, partition, offset, key, _, _ in rows],
        )

    def close(self) -> None:
        self.flush()
        with _mapped(self._bus.path):
            self._conn.close()


class EmbeddedTransactionalProducer(TransactionalProducer):
    def __init__(self, bus: EmbeddedBus, transactional_id: str) -> None:
        self._producer = EmbeddedProducer(bus)
        self._id = transactional_id
        with _mapped(bus.path), _immediate(_connect(bus.path)) as conn:
            conn.execute(
                "INSERT INTO producers VALUES (?, 1)"
                " ON CONFLICT (id) DO UPDATE SET epoch = epoch + 1",
                (transactional_id,),
            )
            self._epoch = self._current_epoch(conn)
        conn.close()

    def _current_epoch(self, conn: sqlite3.Connection) -> int:
        row = conn.execute("SELECT epoch FROM producers WHERE id = ?", (self._id,)).fetchone()
        return int(row[0])

    def _check_epoch(self, conn: sqlite3.Connection) -> None:
        if self._current_epoch(conn) != self._epoch:
            raise ProducerFenced(f"another producer took transactional id {self._id!r}")

    def send(self, topic: str, key: bytes | None, value: bytes) -> None:
        self._producer.send(topic, key, value)

    def commit(self) -> None:
        self._producer.flush_checked(self._check_epoch)  # on an error: rolled back, nothing written

    def abort(self) -> None:
        self._producer.discard()

    def close(self) -> None:
        self.abort()
        self._producer.close()


class EmbeddedConsumer(Consumer):
    def __init__(self, bus: EmbeddedBus, group: str, instance_id: str | None = None) -> None:
        self._bus = bus
        self._group = group
        self._member = instance_id or uuid.uuid4().hex
        self._conn = _connect(bus.path)
        self._positions: dict[TopicPartition, int] = {}
        self._topics: list[str] = []
        self._listener: RebalanceListener | None = None

    def subscribe(self, topics: list[str], listener: RebalanceListener) -> None:
        if not self._group:
            raise ConfigurationError("a consumer without a group cannot subscribe")
        self._topics, self._listener = topics, listener
        with _mapped(self._bus.path):
            self._heartbeat()

    def assign(self, offsets: Mapping[TopicPartition, int]) -> None:
        self._positions = dict(offsets)

    def seek(self, partition: TopicPartition, offset: int) -> None:
        self._positions[partition] = offset

    def assignment(self) -> set[TopicPartition]:
        return set(self._positions)

    def position(self, partition: TopicPartition) -> int:
        return self._positions[partition]

    def poll(self, max_records: int, timeout_s: float) -> list[Record]:
        deadline = time.monotonic() + timeout_s
        while True:
            with _mapped(self._bus.path):
                if self._listener is not None:
                    self._rebalance()
                records = self._fetch(max_records)
            if records or time.monotonic() >= deadline:
                return records
            time.sleep(min(0.02, max(0.0, deadline - time.monotonic())))

    def _fetch(self, max_records: int) -> list[Record]:
        records: list[Record] = []
        for tp in sorted(self._positions):
            if len(records) >= max_records:
                break
            rows = self._conn.execute(
                "SELECT offset, key, value, ts FROM records WHERE topic = ? AND partition = ?"
                " AND offset >= ? ORDER BY offset LIMIT ?",
                (tp.topic, tp.partition, self._positions[tp], max_records - len(records)),
            ).fetchall()
            records += [Record(tp.topic, tp.partition, o, k, v, ts) for o, k, v, ts in rows]
            if rows:
                self._positions[tp] = rows[-1][0] + 1
        return records

    def commit(self, offsets: Mapping[TopicPartition, int]) -> None:
        with _mapped(self._bus.path):
            self._commit(offsets)

    def _commit(self, offsets: Mapping[TopicPartition, int]) -> None:
        self._conn.executemany(
            "INSERT INTO committed VALUES (?, ?, ?, ?) ON CONFLICT (grp, topic, partition)"
            " DO UPDATE SET offset = excluded.offset",
            [(self._group, tp.topic, tp.partition, off) for tp, off in offsets.items()],
        )

    def close(self) -> None:
        if self._listener is not None:
            self._listener.on_revoked(sorted(self._positions))
        with _mapped(self._bus.path):
            if self._listener is not None:
                self._conn.execute(
                    "DELETE FROM members WHERE grp = ? AND member = ?", (self._group, self._member)
                )
            self._positions = {}
            self._conn.close()

    # --- group membership -------------------------------------------------------------------

    def _heartbeat(self) -> None:
        self._conn.execute(
            "INSERT INTO members VALUES (?, ?, ?, ?) ON CONFLICT (grp, member)"
            " DO UPDATE SET seen_ms = excluded.seen_ms",
            (self._group, self._member, ",".join(self._topics), _now_ms()),
        )

    def _rebalance(self) -> None:
        assert self._listener is not None
        self._heartbeat()
        wanted = self._range_assignment()
        owned = set(self._positions)
        lost = sorted(owned - wanted)
        gained = sorted(wanted - owned)
        if lost:
            self._listener.on_revoked(lost)
            for tp in lost:
                del self._positions[tp]
        if gained:
            starts = self._listener.on_assigned(gained)
            for tp in gained:
                start = starts.get(tp)
                self._positions[tp] = start if start is not None else self._committed(tp)

    def _range_assignment(self) -> set[TopicPartition]:
        live_since = _now_ms() - int(self._bus.session_timeout_s * 1000)
        members = [
            m
            for (m,) in self._conn.execute(
                "SELECT member FROM members WHERE grp = ? AND seen_ms >= ? ORDER BY member",
                (self._group, live_since),
            )
        ]
        index, count = members.index(self._member), len(members)
        mine: set[TopicPartition] = set()
        for topic in self._topics:
            partitions = self._bus.partitions(topic)
            share, extra = divmod(partitions, count)
            start = index * share + min(index, extra)
            size = share + (1 if index < extra else 0)
            mine |= {TopicPartition(topic, p) for p in range(start, start + size)}
        return mine

    def _committed(self, tp: TopicPartition) -> int:
        row = self._conn.execute(
            "SELECT offset FROM committed WHERE grp = ? AND topic = ? AND partition = ?",
            (self._group, tp.topic, tp.partition),
        ).fetchone()
        return int(row[0]) if row else 0
