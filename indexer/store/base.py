"""The event store: eventsourcing's process recorder (stored events, single-row tracking, the
notification log) plus the tables ingest keeps in the same transaction:

- ``ingest_event_ids``: every stored event id, the dedupe of last resort;
- ``ingest_streams``: per aggregate, the version and the state validation needs;
- ``ingest_holds``: events waiting for their request or their producer's stake;
- ``ingest_outbox``: dead letters and accepted requests, published to the bus after commit;
- ``dlq_replays``: dead letters an operator sent back to the events topic.

Two adapters implement it, PostgreSQL (COPY) and SQLite, behind eventsourcing's
``insert_events(stored_events, **kwargs)`` interface. Ingest writes through its own port
(``indexer.ingest.port.IngestStore``); every reader reads through ``indexer.store.log``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod

from eventsourcing.persistence import ProcessRecorder

from indexer.ingest.port import IngestStore


class EventStore(ProcessRecorder, IngestStore, ABC):
    """A store backend: the recorder, ingest's port, and the counts operators look at."""

    @abstractmethod
    def count_events(self) -> dict[str, int]:
        """Stored events per topic (``Type.vN``)."""

    @abstractmethod
    def close(self) -> None: ...
