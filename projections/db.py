"""The read-model database: a thin adapter over sqlite3 and psycopg, built by the shell's
wiring. SQL is written once with ``?`` placeholders; PostgreSQL gets ``%s``. Database errors
are mapped once, here, into the error tree."""

from __future__ import annotations

import re
import sqlite3
import threading
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Any, Literal, Protocol

from masa.errors import PermanentError, RetryableError

Dialect = Literal["sqlite", "postgresql"]
_PLACEHOLDER = re.compile(r"\?")


class Cursor(Protocol):
    @property
    def rowcount(self) -> int: ...

    def execute(self, sql: str, params: Sequence[Any] = ()) -> Any: ...
    def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> Any: ...
    def fetchall(self) -> list[Any]: ...
    def fetchone(self) -> Any: ...


class ReadDb:
    """One connection to the read models; ``transaction()`` is the unit of every write. Threads
    share it one transaction at a time (the API's handlers run in a thread pool)."""

    dialect: Dialect
    url: str

    def transaction(self) -> AbstractContextManager[Tx]:
        raise NotImplementedError

    def reading(self) -> AbstractContextManager[Tx]:
        """Statements that only read, each its own snapshot (no BEGIN/COMMIT around them: on
        PostgreSQL two round trips fewer per question; READ COMMITTED gives a transaction's
        statements a snapshot each anyway). Writes go through ``transaction()``."""
        return self.transaction()

    def snapshot(self) -> AbstractContextManager[Tx]:
        """A transaction whose statements all see one snapshot of the database (what loading
        several tables that another runner writes at the same time needs)."""
        return self.transaction()

    def close(self) -> None:
        raise NotImplementedError

    def query(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        with self.reading() as tx:
            return tx.fetchall(sql, params)


class Tx:
    """Statements inside one transaction."""

    def __init__(self, cursor: Cursor, dialect: Dialect) -> None:
        self._cursor = cursor
        self.dialect = dialect

    def _sql(self, sql: str) -> str:
        return _PLACEHOLDER.sub("%s", sql) if self.dialect == "postgresql" else sql

    def execute(self, sql: str, params: Sequence[Any] = ()) -> int:
        self._cursor.execute(self._sql(sql), params)
        return self._cursor.rowcount

    def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        if rows:
            self._cursor.executemany(self._sql(sql), rows)

    def fetchall(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        self._cursor.execute(self._sql(sql), params)
        return [tuple(row) for row in self._cursor.fetchall()]


class SqliteReadDb(ReadDb):
    dialect: Dialect = "sqlite"

    def __init__(self, path: Path, *, read_only: bool = False) -> None:
        """``read_only``: the file opened read-only (a reader such as the API cannot write)."""
        self.path = path
        self._lock = threading.Lock()
        self.url = f"sqlite:///{path}"
        self._begin = "BEGIN" if read_only else "BEGIN IMMEDIATE"
        with _mapped(f"the read models at {path}"):
            if read_only:
                uri = f"file:{path}?mode=ro"
                self._conn = sqlite3.connect(
                    uri, uri=True, isolation_level=None, timeout=30, check_same_thread=False
                )
                return
            path.parent.mkdir(parents=True, exist_ok=True)
            self._conn = sqlite3.connect(
                path, isolation_level=None, timeout=30, check_same_thread=False
            )
            self._conn.execute("PRAGMA journal_mode=WAL")
            self._conn.execute("PRAGMA synchronous=NORMAL")

    @contextmanager
    def transaction(self) -> Iterator[Tx]:
        with self._lock, _mapped(f"the read models at {self.path}"):
            cursor = self._conn.cursor()
            cursor.execute(self._begin)
            try:
                yield Tx(cursor, self.dialect)
            except BaseException:
                cursor.execute("ROLLBACK")
                raise
            cursor.execute("COMMIT")

    @contextmanager
    def reading(self) -> Iterator[Tx]:
        # autocommit (isolation_level=None): each statement is its own read transaction
        with self._lock, _mapped(f"the read models at {self.path}"):
            yield Tx(self._conn.cursor(), self.dialect)

    def close(self) -> None:
        self._conn.close()


class PostgresReadDb(ReadDb):
    dialect: Dialect = "postgresql"

    def __init__(self, conninfo: str, url: str, where: str) -> None:
        import psycopg

        self.url = url
        self._where = where
        self._lock = threading.Lock()
        with _mapped(where):
            self._conn = psycopg.connect(conninfo, autocommit=True, connect_timeout=10)
            # times come back in UTC, whatever the server's zone (the API writes them as is)
            self._conn.execute("SET TIME ZONE 'UTC'")

    @contextmanager
    def transaction(self) -> Iterator[Tx]:
        with (
            self._lock,
            _mapped(self._where),
            self._conn.transaction(),
            self._conn.cursor() as cursor,
        ):
            yield Tx(cursor, self.dialect)

    @contextmanager
    def reading(self) -> Iterator[Tx]:
        # the connection is in autocommit: each statement alone is a read-only transaction
        with self._lock, _mapped(self._where), self._conn.cursor() as cursor:
            yield Tx(cursor, self.dialect)

    @contextmanager
    def snapshot(self) -> Iterator[Tx]:
        # READ COMMITTED (the default) takes a new snapshot per statement: tables loaded one
        # after the other could each show another runner's commits, or not
        with _mapped(self._where), self._conn.transaction(), self._conn.cursor() as cursor:
            cursor.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
            yield Tx(cursor, self.dialect)

    def close(self) -> None:
        self._conn.close()


@contextmanager
def _mapped(where: str) -> Iterator[None]:
    """Database errors as the error tree's: lost connections, locks and passing PostgreSQL
    states (read-only, disk full) are retryable, the rest (permissions, a missing table, a
    read-only file) permanent."""
    try:
        yield
    except sqlite3.OperationalError as exc:
        text = str(exc)
        if "locked" in text or "busy" in text:
            raise RetryableError(f"{where}: {text}") from exc
        raise PermanentError(f"{where}: {text}") from exc
    except sqlite3.DatabaseError as exc:
        raise PermanentError(f"{where}: {exc}") from exc
    except Exception as exc:
        _map_psycopg(exc, where)
        raise


def _map_psycopg(exc: Exception, where: str) -> None:
    import psycopg

    from indexer.store.base import passing_sqlstate

    if isinstance(exc, psycopg.OperationalError):
        raise RetryableError(f"cannot reach {where}: {exc}".strip()) from exc
    if passing_sqlstate(exc):  # read-only, disk full, shutting down: fixed while we wait
        raise RetryableError(f"{where}: {exc}") from exc
    if isinstance(exc, psycopg.errors.InsufficientPrivilege):
        raise PermanentError(f"{where}: permission denied: {exc}") from exc
    if isinstance(exc, psycopg.errors.UndefinedTable):
        raise PermanentError(f"{where}: {exc}; run: masa db migrate") from exc
    if isinstance(exc, psycopg.Error):
        raise PermanentError(f"{where}: {exc}") from exc
