"""SQLite's errors become ours once, with SQLite's own reason deciding retry or not."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from indexer.bus.embedded import EmbeddedBus
from indexer.sqlite_errors import mapped
from masa.errors import PermanentError, RetryableError


def _db(tmp_path: Path) -> Path:
    path = tmp_path / "t.sqlite"
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE t (x INTEGER)")
    return path


def test_a_locked_file_is_retryable(tmp_path: Path) -> None:
    path = _db(tmp_path)
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    other = sqlite3.connect(path, timeout=0, isolation_level=None)
    with pytest.raises(RetryableError, match="SQLITE_BUSY") as caught, mapped(str(path)):
        other.execute("BEGIN IMMEDIATE")
    assert isinstance(caught.value.__cause__, sqlite3.OperationalError)
    holder.close()
    other.close()


def test_a_read_only_file_is_retryable(tmp_path: Path) -> None:
    """An operator fixes the permissions while a long-running command waits (its budget)."""
    path = _db(tmp_path)
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    with pytest.raises(RetryableError, match="SQLITE_READONLY"), mapped(str(path)):
        conn.execute("INSERT INTO t VALUES (1)")
    conn.close()


def test_a_file_that_is_no_database_is_permanent(tmp_path: Path) -> None:
    path = tmp_path / "bus.sqlite"
    path.write_bytes(b"not a database, just bytes " * 100)
    with pytest.raises(PermanentError, match=f"embedded bus {path}: SQLITE_NOTADB"):
        EmbeddedBus(path)
