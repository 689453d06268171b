"""SQLite's errors in our tree, decided once for the embedded bus and the SQLite store.

SQLite names why a call failed (``sqlite_errorname``, Python 3.11+); the name decides:

- ``RetryableError``: the file is busy or locked by another process (``SQLITE_BUSY``,
  ``SQLITE_LOCKED``), the disk is full (``SQLITE_FULL``: free space, then the same call
  succeeds), an I/O error (``SQLITE_IOERR``, ``SQLITE_PROTOCOL``), or the file is not
  writable (``SQLITE_READONLY``, ``SQLITE_PERM``): an operator fixes the mount or the
  permissions while a long-running command waits within its retry budget (docs/operator-guide);
- ``PermanentError``: the file cannot be opened (``SQLITE_CANTOPEN``, ``SQLITE_AUTH``), or it
  is damaged or not a database (``SQLITE_CORRUPT``, ``SQLITE_NOTADB``): retrying cannot help;
- anything else: an ``OperationalError`` is retryable, any other ``DatabaseError`` permanent.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager

from masa.errors import MasaError, PermanentError, RetryableError

_RETRYABLE = (
    "SQLITE_BUSY", "SQLITE_LOCKED", "SQLITE_FULL", "SQLITE_IOERR", "SQLITE_PROTOCOL",
    "SQLITE_READONLY", "SQLITE_PERM",
)  # fmt: skip
_PERMANENT = ("SQLITE_CANTOPEN", "SQLITE_AUTH", "SQLITE_CORRUPT", "SQLITE_NOTADB")


def translate(exc: sqlite3.Error, what: str) -> MasaError:
    """Our error for a ``sqlite3`` error raised while ``what`` (a file, say) was used."""
    name = getattr(exc, "sqlite_errorname", "") or ""
    message = f"{what}: {name + ': ' if name else ''}{exc}"
    if name.startswith(_PERMANENT):
        return PermanentError(message)
    if name.startswith(_RETRYABLE) or isinstance(exc, sqlite3.OperationalError):
        return RetryableError(message)
    return PermanentError(message)


@contextmanager
def mapped(what: str) -> Iterator[None]:
    """Raise ``translate(exc, what)`` from any ``sqlite3.DatabaseError`` of the block."""
    try:
        yield
    except sqlite3.DatabaseError as exc:
        raise translate(exc, what) from exc
