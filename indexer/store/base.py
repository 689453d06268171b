"""The event store: eventsourcing's process recorder (stored events, single-row tracking, the
notification log) plus the tables ingest keeps in the same transaction:

- ``ingest_event_ids``: every stored event id, the dedupe of last resort;
- ``ingest_streams``: per aggregate, the version and the state validation needs;
- ``ingest_holds``: events waiting for their request, their producer's stake or (a request)
  its oracle's balance;
- ``ingest_outbox``: dead letters and accepted requests, published to the bus after commit;
- ``dlq_replays``: dead letters an operator sent back to the events topic.

Two adapters implement it, PostgreSQL (COPY) and SQLite, behind eventsourcing's
``insert_events(stored_events, **kwargs)`` interface. Ingest writes through its own port
(``indexer.ingest.port.IngestStore``); every reader reads through ``indexer.store.log``.
"""

from __future__ import annotations

import sqlite3
from abc import ABC, abstractmethod
from collections.abc import Iterator
from contextlib import contextmanager
from uuid import UUID

from eventsourcing.persistence import (
    IntegrityError,
    InterfaceError,
    OperationalError,
    PersistenceError,
    ProcessRecorder,
)

from indexer.ingest.port import IngestStore, WriteConflict
from indexer.sqlite_errors import translate
from masa.errors import PermanentError, RetryableError


class EventStore(ProcessRecorder, IngestStore, ABC):
    """A store backend: the recorder, ingest's port, and the counts operators look at."""

    @abstractmethod
    def create_table(self) -> None:
        """Create the recorder's tables and ingest's, where missing (the recorders have it)."""

    @abstractmethod
    def count_events(self) -> dict[str, int]:
        """Stored events per topic (``Type.vN``)."""

    @abstractmethod
    def dead_letters(
        self, topic: str, after: tuple[int, UUID], limit: int
    ) -> list[tuple[UUID, bytes, int]]:
        """Up to ``limit`` outbox records for ``topic`` (the dead-letter topic), published, in
        ``(published_at_ms, id)`` order after ``after``: ``(id, letter, published_at_ms)``."""

    @abstractmethod
    def close(self) -> None: ...


@contextmanager
def mapped_errors(where: str) -> Iterator[None]:
    """eventsourcing's persistence errors in our tree, once per store call; ``where`` names
    the database (``postgres host:port/db``, ``sqlite <path>``) in the message.

    - ``IntegrityError`` (a unique key exists: offsets moved, an event id or a stream version
      is taken): ``WriteConflict``, retryable after reloading;
    - ``OperationalError``, ``InterfaceError`` (server down or restarting, connection lost,
      pool exhausted, file locked): ``RetryableError``. A SQLite error keeps SQLite's own
      verdict (``indexer.sqlite_errors``: a read-only or damaged file is permanent);
    - a PostgreSQL error an operator fixes while the caller waits (the database made
      read-only, the disk or memory full, the server shutting down): ``RetryableError``;
    - any other (bad SQL, bad data, a damaged database): ``PermanentError``.
    """
    try:
        yield
    except IntegrityError as exc:
        raise WriteConflict(f"batch conflicts with stored data: {exc}") from exc
    except (InterfaceError, OperationalError) as exc:
        if isinstance(exc.__cause__, sqlite3.Error):
            raise translate(exc.__cause__, where) from exc
        raise RetryableError(f"{where}: {exc}") from exc
    except PersistenceError as exc:
        if isinstance(exc.__cause__, sqlite3.Error):
            raise translate(exc.__cause__, where) from exc
        if passing_sqlstate(exc.__cause__):
            raise RetryableError(f"{where}: {exc}") from exc
        raise PermanentError(f"{where}: {exc}") from exc


#: SQLSTATE prefixes of PostgreSQL failures that pass: 25006 read_only_sql_transaction (the
#: database or server set read-only, a standby not yet promoted), class 53 insufficient
#: resources (disk full, out of memory, too many connections), 57P0x the server shutting
#: down or restarting.
PASSING_SQLSTATES = ("25006", "53", "57P0")


def passing_sqlstate(exc: BaseException | None) -> bool:
    """Whether ``exc`` is a database driver error whose SQLSTATE names a passing state."""
    state = getattr(exc, "sqlstate", None)
    return isinstance(state, str) and state.startswith(PASSING_SQLSTATES)
