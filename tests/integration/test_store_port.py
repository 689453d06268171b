"""One suite for the store's ports (ingest's ``IngestStore`` and the ``EventLog`` read port),
run on PostgreSQL and on SQLite: what one adapter does, the other does the same."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from uuid import UUID

import orjson
import pytest
from eth_account import Account
from eth_account.signers.local import LocalAccount
from eventsourcing.persistence import StoredEvent
from eventsourcing.postgres import PostgresDatastore
from eventsourcing.sqlite import SQLiteDatastore

from indexer.bus.base import TopicPartition
from indexer.events import SignedMessage, make_event, stream_id
from indexer.events.fields import format_timestamp
from indexer.events.types import Heartbeat, RequestFailed
from indexer.ingest.port import (
    HeldRecord,
    IngestWrite,
    OutboxRecord,
    StreamState,
    WriteConflict,
    tracking_name,
)
from indexer.store.base import EventStore
from indexer.store.log import EventLog, UndecodableEvent
from indexer.store.postgres import PostgresEventStore
from indexer.store.sqlite import SQLiteEventStore

TP0 = TopicPartition("events", 0)
TP1 = TopicPartition("events", 1)
NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
WORKER: LocalAccount = Account.from_key(b"\x01" * 32)


@pytest.fixture(params=["postgres", "sqlite"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[EventStore]:
    opened: EventStore
    if request.param == "postgres":
        d = request.getfixturevalue("pg_database")
        opened = PostgresEventStore(PostgresDatastore(d.dbname, d.host, d.port, d.user, d.password))
    else:
        opened = SQLiteEventStore(SQLiteDatastore(str(tmp_path / "store.sqlite"), pool_size=2))
    opened.create_table()
    try:
        yield opened
    finally:
        opened.close()


def stored(message: SignedMessage, version: int, *, offset: int = 0) -> StoredEvent:
    """The stored event ingest writes for a signed message (see ``indexer.ingest.batch``)."""
    envelope = orjson.loads(message.value)
    state = {
        "envelope": envelope,
        "ingest": {
            "consumer": "ingest",
            "topic": TP0.topic,
            "partition": TP0.partition,
            "offset": offset,
            "ingested_at": format_timestamp(NOW),
        },
    }
    topic = f"{envelope['type']}.v{envelope['version']}"
    return StoredEvent(stream_id(message.key), version, topic, orjson.dumps(state))


def heartbeat(seq: int, *, version: int = 2) -> tuple[StoredEvent, UUID]:
    payload: dict[str, Any] = (
        {"seq": seq} if version == 1 else {"seq": seq, "capabilities": ["data"]}
    )
    message = make_event(WORKER, "Heartbeat", payload, version=version, occurred_at=NOW)
    return stored(message, seq, offset=seq), message.event_id


def batch(*events: tuple[StoredEvent, UUID], offsets: dict[TopicPartition, int]) -> IngestWrite:
    write = IngestWrite(consumer="ingest", last_offsets=offsets)
    for event, event_id in events:
        write.events.append(event)
        write.event_ids.append((event_id, event.originator_id, event.originator_version))
    return write


def held(offset: int, partition: int = 0) -> HeldRecord:
    return HeldRecord(
        consumer="ingest", topic="events", partition=partition, offset=offset,
        event_id=uuid.uuid4(), producer="0xabc", awaiting="request:1", reason="unknown_request",
        detail="", held_at_ms=1000 + offset, key=b"k", value=b"v%d" % offset,
    )  # fmt: skip


def outbox(source: TopicPartition, key: bytes | None = b"k") -> OutboxRecord:
    return OutboxRecord(uuid.uuid4(), "ingest", source, "dlq", key, b"letter")


# --- writing and conflicts ------------------------------------------------------------------


def test_a_batch_moves_offsets_and_stores_events(store: EventStore) -> None:
    store.write(batch(heartbeat(1), heartbeat(2), offsets={TP0: 7, TP1: 3}))
    assert store.next_offsets("ingest", [TP0, TP1, TopicPartition("events", 2)]) == {
        TP0: 8,
        TP1: 4,
        TopicPartition("events", 2): 0,
    }
    assert store.max_tracking_id(tracking_name("ingest", TP0)) == 7
    assert store.count_events() == {"Heartbeat.v2": 2}


def test_offsets_that_moved_are_a_write_conflict(store: EventStore) -> None:
    store.write(batch(heartbeat(1), offsets={TP0: 5}))
    with pytest.raises(WriteConflict):
        store.write(batch(heartbeat(2), offsets={TP0: 5}))
    with pytest.raises(WriteConflict):
        store.write(batch(heartbeat(2), offsets={TP0: 4}))
    assert store.count_events() == {"Heartbeat.v2": 1}  # nothing of a conflicting batch stays


def test_a_duplicate_event_id_is_a_write_conflict(store: EventStore) -> None:
    first, event_id = heartbeat(1)
    store.write(batch((first, event_id), offsets={TP0: 1}))
    second, _ = heartbeat(2)
    with pytest.raises(WriteConflict):
        store.write(batch((second, event_id), offsets={TP0: 2}))
    assert store.next_offsets("ingest", [TP0]) == {TP0: 2}


def test_a_duplicate_stream_version_is_a_write_conflict(store: EventStore) -> None:
    store.write(batch(heartbeat(1), offsets={TP0: 1}))
    again, _ = heartbeat(1)
    with pytest.raises(WriteConflict):
        store.write(batch((again, uuid.uuid4()), offsets={TP0: 2}))


def test_known_event_ids(store: EventStore) -> None:
    events = [heartbeat(seq) for seq in range(1, 4)]
    store.write(batch(*events, offsets={TP0: 3}))
    ids = [event_id for _, event_id in events]
    unknown = uuid.uuid4()
    assert store.known_event_ids([*ids[:2], unknown]) == set(ids[:2])
    assert store.known_event_ids([]) == set()


def test_stream_states_are_upserted(store: EventStore) -> None:
    sid = uuid.uuid4()
    store.write(IngestWrite("ingest", {TP0: 0}, streams={sid: StreamState("a", version=1)}))
    store.write(IngestWrite("ingest", {TP0: 1}, streams={sid: StreamState("a", version=2)}))
    assert store.load_streams([sid, uuid.uuid4()]) == {sid: StreamState("a", version=2)}
    assert store.load_streams([]) == {}


# --- holds, outbox, replays -----------------------------------------------------------------


def test_holds_are_saved_and_released(store: EventStore) -> None:
    a, b, c = held(1), held(2), held(3, partition=1)
    holds = {h.slot: h for h in (a, b, c)}
    store.write(IngestWrite("ingest", {TP0: 3, TP1: 3}, holds=holds))
    assert store.load_holds("ingest", [TP0]) == [a, b]
    assert store.load_holds("ingest", [TP0, TP1]) == [a, b, c]
    assert store.load_holds("other", [TP0]) == []
    store.write(IngestWrite("ingest", {TP0: 4}, released=[a]))
    assert store.load_holds("ingest", [TP0, TP1]) == [b, c]


def test_outbox_unpublished_and_mark_published(store: EventStore) -> None:
    first, second, other = outbox(TP0), outbox(TP0, key=None), outbox(TP1)
    store.write(IngestWrite("ingest", {TP0: 1}, outbox=[first, second, other]))
    assert store.unpublished("ingest", [TP0]) == [first, second]
    assert store.unpublished("another", [TP0]) == []
    store.mark_published([first.id], at_ms=5)
    assert store.unpublished("ingest", [TP0, TP1]) == [second, other]
    store.mark_published([], at_ms=6)
    assert store.unpublished("ingest", [TP0, TP1]) == [second, other]


def test_replays_are_recorded_with_the_latest_time(store: EventStore) -> None:
    a, b = uuid.uuid4(), uuid.uuid4()
    assert store.replayed() == {}
    store.record_replays([a, b], at_ms=10)
    store.record_replays([a], at_ms=20)
    assert store.replayed() == {a: 20, b: 10}


def test_an_empty_batch_with_offsets_only_moves_offsets(store: EventStore) -> None:
    store.write(IngestWrite("ingest", {TP0: 9}))
    assert store.next_offsets("ingest", [TP0]) == {TP0: 10}
    assert store.count_events() == {}


# --- the read port --------------------------------------------------------------------------


def test_the_log_reads_in_commit_order_with_types(store: EventStore) -> None:
    log = EventLog(store)
    assert log.head() == 0
    assert log.read() == []
    failed = make_event(
        WORKER,
        RequestFailed(request_id=uuid.uuid4(), reason="timeout"),
        occurred_at=NOW,
    )
    events = [heartbeat(1), (stored(failed, 1, offset=9), failed.event_id), heartbeat(2)]
    store.write(batch(*events, offsets={TP0: 9}))

    read = log.read()
    assert [e.type for e in read] == ["Heartbeat", "RequestFailed", "Heartbeat"]
    assert [e.position for e in read] == sorted(e.position for e in read)
    assert log.head() == read[-1].position
    assert [e.event_id for e in log.read(types=["RequestFailed"])] == [failed.event_id]
    assert [e.event_id for e in log.read(after=read[0].position, limit=1)] == [read[1].event_id]
    assert [e.event_id for e in log.iterate(batch=1)] == [e.event_id for e in read]
    assert [e.type for e in log.iterate(after=read[1].position)] == ["Heartbeat"]
    with pytest.raises(ValueError, match="unknown event types"):
        log.read(types=["NoSuchType"])


def test_the_log_decodes_what_ingest_stored(store: EventStore) -> None:
    event, event_id = heartbeat(1)
    store.write(batch((event, event_id), offsets={TP0: 1}))
    (logged,) = EventLog(store).read()
    assert logged.event_id == event_id
    assert logged.producer == WORKER.address.lower()
    assert logged.stream_id == stream_id(WORKER.address.lower())
    assert logged.stream_version == 1
    assert logged.occurred_at == NOW
    assert logged.payload == Heartbeat(seq=1, capabilities=["data"])
    assert logged.ingested.offset == 1 and logged.ingested.at == NOW
    assert logged.envelope == orjson.loads(event.state)["envelope"]


def test_a_heartbeat_v1_is_read_as_v2(store: EventStore) -> None:
    store.write(batch(heartbeat(1, version=1), offsets={TP0: 1}))
    (logged,) = EventLog(store).read(types=["Heartbeat"])
    assert logged.stored_version == 1
    assert logged.payload == Heartbeat(seq=1, capabilities=[])
    assert logged.envelope["version"] == 1 and "capabilities" not in logged.envelope["payload"]


def test_a_damaged_row_is_undecodable(store: EventStore) -> None:
    damaged = StoredEvent(uuid.uuid4(), 1, "Heartbeat.v2", b'{"envelope": {"type": "Heart')
    store.write(IngestWrite("ingest", {TP0: 1}, events=[damaged]))
    with pytest.raises(UndecodableEvent, match="cannot be decoded"):
        EventLog(store).read()


def test_an_unknown_type_is_undecodable(store: EventStore) -> None:
    event, event_id = heartbeat(1)
    state = orjson.loads(event.state)
    state["envelope"]["type"] = "Teleported"
    unknown = StoredEvent(event.originator_id, 1, "Teleported.v2", orjson.dumps(state))
    store.write(batch((unknown, event_id), offsets={TP0: 1}))
    with pytest.raises(UndecodableEvent, match="unknown type Teleported v2"):
        EventLog(store).read()
