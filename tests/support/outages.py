"""Services a test takes away from running ``masa`` processes: a PostgreSQL of the test's own
that it stops (fast shutdown, as ``pg_ctl stop -m fast``), starts again on the same data and
port, or makes read-only; processes started and stopped by PID; waiting for conditions."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.support.services import PostgresServer, _as_user, _pg_os_user, find_postgres_bin

MASA = str(Path(sys.executable).parent / "masa")


class StoppablePostgres(PostgresServer):
    """A cluster of one test's own: ``halt`` stops it through its PID, ``resume`` starts it
    again on the same data directory and port, ``read_only`` turns every session read-only
    (``ALTER SYSTEM SET default_transaction_read_only`` and a reload: sessions already open
    are read-only from their next transaction, as after a failover to a standby)."""

    def halt(self) -> None:
        self._terminate(signal.SIGINT)  # the postmaster's fast shutdown

    def resume(self) -> None:
        argv = self._server_argv(find_postgres_bin())
        self._spawn(argv, **_as_user(_pg_os_user(), self._dir))
        self._wait_until(self._accepts_connections, timeout=60)

    def read_only(self, on: bool) -> None:
        self.sql(
            f"ALTER SYSTEM SET default_transaction_read_only = {'on' if on else 'off'}",
            "SELECT pg_reload_conf()",
        )

    def sql(self, *statements: str, dbname: str = "postgres") -> None:
        import psycopg

        with psycopg.connect(self.database(dbname).dsn, autocommit=True) as conn:
            for statement in statements:
                conn.execute(statement)


def wait_for(
    condition: Callable[[], Any], what: str, timeout: float = 90, every: float = 0.25
) -> Any:
    """``condition()`` once it is truthy; fails the test after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g}s waiting for {what}")
        time.sleep(every)


@dataclass
class Finished:
    args: list[str]
    code: int
    out: str
    err: str

    @property
    def output(self) -> str:
        return self.out + self.err


class Process:
    """A long-running ``masa`` command, started in the background and stopped by its PID."""

    def __init__(self, args: list[str], env: dict[str, str], cwd: Path) -> None:
        self.args = args
        self._out = open(cwd / f".{os.getpid()}-{id(self)}.out", "w+")  # noqa: SIM115
        self._err = open(cwd / f".{os.getpid()}-{id(self)}.err", "w+")  # noqa: SIM115
        self.proc = subprocess.Popen(
            args, env=env, cwd=cwd, stdout=self._out, stderr=self._err, text=True
        )
        self.finished: Finished | None = None

    @property
    def running(self) -> bool:
        return self.proc.poll() is None

    def stderr(self) -> str:
        self._err.flush()
        return Path(self._err.name).read_text(errors="replace")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 90) -> Finished:
        """Signal the process (if it still runs) and wait for it to end."""
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        return self.wait(timeout)

    def wait(self, timeout: float = 90) -> Finished:
        if self.finished is not None:
            return self.finished
        try:
            code = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise
        out = Path(self._out.name).read_text(errors="replace")
        err = self.stderr()
        for stream in (self._out, self._err):
            stream.close()
            Path(stream.name).unlink(missing_ok=True)
        self.finished = Finished(self.args, code, out, err)
        return self.finished


class Processes:
    """The background processes of one test: stopped by PID at its end, whatever happens, and
    their stderr shown when the test failed."""

    def __init__(self) -> None:
        self.started: list[Process] = []

    def start(self, args: list[str], env: dict[str, str], cwd: Path) -> Process:
        process = Process(args, env, cwd)
        self.started.append(process)
        return process

    def stop_all(self) -> None:
        for process in self.started:
            if process.finished is None:
                with contextlib.suppress(Exception):
                    done = process.stop(signal.SIGTERM, timeout=30)
                    print(f"--- {' '.join(process.args)} (exit {done.code}):\n{done.err[-3000:]}")


@pytest.fixture
def processes() -> Iterator[Processes]:
    """Background ``masa`` processes, stopped when the test ends (import it into a module)."""
    started = Processes()
    try:
        yield started
    finally:
        started.stop_all()
