"""The read port of the event store: the notification log in commit order, and the one decoder
from a stored event to a typed event that every reader uses (projections, settlement, the CLI,
the demo). Nobody parses stored JSON by hand.

A stored event's state is ``{"envelope": <the signed envelope as sent>, "ingest": {...}}``
(written by ``indexer.ingest.batch``); the decoder upcasts the payload to the current version
of its type and keeps the envelope as sent, so a bundle can still show the signed bytes. The
ledger's own records (``indexer.events.records``: fee reservations in an oracle's stream) are
stored as ``{"record": {...}, "ingest": {...}}`` and decode to a ``LoggedEvent`` with
``signed`` false and ``producer`` ``"ingest"``.
"""

from __future__ import annotations

from collections.abc import Collection, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol
from uuid import UUID

import orjson

from indexer.events import CURRENT_VERSION, EVENT_TYPES, Payload, lookup, upcast
from indexer.events.fields import parse_timestamp
from indexer.events.records import RECORD_PRODUCER, RECORD_TYPES
from indexer.events.types import STORED_CONTEXT
from masa.errors import PermanentError

#: Positions (notification ids) of the log start at 1; 0 means "before the first event".
START = 0


class UndecodableEvent(PermanentError):
    """A stored event this code cannot read (unknown type, damaged JSON): the store was written
    by another version of the contract, or by hand."""


@dataclass(frozen=True)
class IngestedAt:
    """Where ingest took an event from, and when."""

    consumer: str
    topic: str
    partition: int
    offset: int
    at: datetime


@dataclass(frozen=True)
class LoggedEvent:
    """One stored event, decoded: its place in the log, its envelope, its typed payload in the
    current version of its type."""

    position: int
    event_id: UUID
    type: str
    stored_version: int
    occurred_at: datetime
    producer: str
    stream_id: UUID
    stream_version: int
    payload: Payload
    ingested: IngestedAt
    envelope: dict[str, Any]
    """The signed envelope as sent; for a ledger record, the record (no producer, no
    signature)."""
    signed: bool = True
    """False for the ledger's own records, which no producer signed."""


class NotificationReader(Protocol):
    """The part of eventsourcing's recorder the log reads (both store adapters have it)."""

    def select_notifications(
        self,
        start: int | None,
        limit: int,
        stop: int | None = None,
        topics: Sequence[str] = (),
        *,
        inclusive_of_start: bool = True,
    ) -> Any: ...

    def max_notification_id(self) -> int | None: ...


def decode_stored(
    position: int, originator_id: UUID, originator_version: int, state: bytes
) -> LoggedEvent:
    """The typed event of one stored event; raises ``UndecodableEvent``."""
    try:
        data = orjson.loads(state)
    except orjson.JSONDecodeError as exc:
        raise UndecodableEvent(f"event at position {position} cannot be decoded: {exc}") from exc
    return decode_record(position, originator_id, originator_version, data)


def decode_record(
    position: int, originator_id: UUID, originator_version: int, data: Any
) -> LoggedEvent:
    """The typed event of a stored event's state already read as JSON (``{"envelope",
    "ingest"}``), as a bundle carries it; raises ``UndecodableEvent``."""
    if isinstance(data, dict) and "record" in data:
        return _decode_ledger_record(position, originator_id, originator_version, data)
    try:
        envelope, ingest = data["envelope"], data["ingest"]
        name, version = envelope["type"], envelope["version"]
        if lookup(name, version) is None:
            raise UndecodableEvent(f"event at position {position}: unknown type {name} v{version}")
        current = EVENT_TYPES[(name, CURRENT_VERSION[name])]
        payload = current.payload.model_validate(
            upcast(name, version, envelope["payload"]), context=STORED_CONTEXT
        )
        return LoggedEvent(
            position=position,
            event_id=UUID(envelope["id"]),
            type=name,
            stored_version=version,
            occurred_at=parse_timestamp(envelope["occurred_at"]),
            producer=envelope["producer"],
            stream_id=originator_id,
            stream_version=originator_version,
            payload=payload,
            ingested=_ingested(ingest),
            envelope=envelope,
        )
    except UndecodableEvent:
        raise
    except (KeyError, TypeError, ValueError) as exc:
        raise UndecodableEvent(f"event at position {position} cannot be decoded: {exc}") from exc


def _decode_ledger_record(
    position: int, originator_id: UUID, originator_version: int, data: dict[str, Any]
) -> LoggedEvent:
    try:
        record, ingest = data["record"], data["ingest"]
        kind = RECORD_TYPES.get((record["type"], record["version"]))
        if kind is None:
            raise UndecodableEvent(
                f"record at position {position}: unknown type {record['type']} v{record['version']}"
            )
        return LoggedEvent(
            position=position,
            event_id=UUID(record["id"]),
            type=kind.name,
            stored_version=kind.version,
            occurred_at=parse_timestamp(record["occurred_at"]),
            producer=RECORD_PRODUCER,
            stream_id=originator_id,
            stream_version=originator_version,
            payload=kind.payload.model_validate(record["payload"]),
            ingested=_ingested(ingest),
            envelope=record,
            signed=False,
        )
    except UndecodableEvent:
        raise
    except (KeyError, TypeError, ValueError) as exc:
        raise UndecodableEvent(f"record at position {position} cannot be decoded: {exc}") from exc


def _ingested(ingest: dict[str, Any]) -> IngestedAt:
    return IngestedAt(
        ingest["consumer"],
        ingest["topic"],
        ingest["partition"],
        ingest["offset"],
        parse_timestamp(ingest["ingested_at"]),
    )


def topics_of(types: Collection[str]) -> list[str]:
    """The stored topics (``Type.vN``) of every version of ``types`` (events or records)."""
    known = [*EVENT_TYPES, *RECORD_TYPES]
    unknown = set(types) - {name for name, _ in known}
    if unknown:
        raise ValueError(f"unknown event types: {', '.join(sorted(unknown))}")
    return sorted(f"{name}.v{version}" for name, version in known if name in types)


class EventLog:
    """The store's events in commit order, decoded. ``after`` is a position already read (0 for
    the beginning); positions only grow, with gaps where a transaction rolled back."""

    def __init__(self, recorder: NotificationReader) -> None:
        self._recorder = recorder

    def head(self) -> int:
        """The position of the newest stored event (0 when empty)."""
        with _mapped_errors():
            return self._recorder.max_notification_id() or START

    def read(
        self, after: int = START, limit: int = 1000, types: Collection[str] = ()
    ) -> list[LoggedEvent]:
        """Up to ``limit`` events after position ``after``, only of ``types`` if given."""
        topics = topics_of(types) if types else ()
        with _mapped_errors():
            notifications = self._recorder.select_notifications(
                after, limit, topics=topics, inclusive_of_start=False
            )
        return [
            decode_stored(n.id, n.originator_id, n.originator_version, n.state)
            for n in notifications
        ]

    def iterate(
        self, after: int = START, batch: int = 1000, types: Collection[str] = ()
    ) -> Iterator[LoggedEvent]:
        """Every event after ``after`` up to the head as it moves, in batches of ``batch``."""
        while events := self.read(after, batch, types):
            yield from events
            after = events[-1].position

    def dead_letters(
        self, topic: str, after: tuple[int, UUID], limit: int = 5000
    ) -> list[tuple[UUID, bytes, int]]:
        """The dead letters ingest published to ``topic``, in ``(published_at_ms, id)`` order
        after ``after`` (``(id, letter JSON, published_at_ms)``): kept in the store's outbox
        beside the events, they are no events. A recorder that keeps none returns none."""
        reader = getattr(self._recorder, "dead_letters", None)
        if reader is None:
            return []
        with _mapped_errors():
            letters: list[tuple[UUID, bytes, int]] = reader(topic, after, limit)
            return letters


def _mapped_errors() -> Any:
    """The store adapters' error mapping, imported when a log is read: the decoder above must
    stay importable without the store's libraries (``python -m settlement.verify_bundle``)."""
    from indexer.store.base import mapped_errors

    return mapped_errors("event store")
