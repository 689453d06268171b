"""Failures at the shell's edge: library errors an adapter let escape, turned into the error
tree once, and the one retry policy for a service that does not answer (``with_retries`` for
one call, ``Streak`` for a long-running command that restarts its work after a failure).

Adapters are meant to translate their library's errors themselves (``raise ... from exc``);
``translate`` is the net under them, so that the CLI still prints one line and the exit code
of the error's kind.
"""

from __future__ import annotations

import errno
import logging
import re
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TypeVar

from indexer.retry import Backoff
from masa.errors import MasaError, PermanentError, RetryableError

log = logging.getLogger("masa")
T = TypeVar("T")

FIRST_DELAY_S = 0.5
MAX_DELAY_S = 8.0
STILL_WAITING_S = 5.0

_NO_SPACE = ("disk is full", "database or disk is full", "no space left")
_READ_ONLY = ("readonly database", "read-only file system", "permission denied")


def translate(exc: BaseException) -> MasaError | None:
    """The project's error for ``exc``, or None where it is no known kind of failure."""
    if isinstance(exc, MasaError):
        return exc
    text = f"{type(exc).__name__}: {exc}".splitlines()[0] if str(exc) else type(exc).__name__
    lowered = text.lower()
    if any(word in lowered for word in _NO_SPACE):
        return RetryableError(f"no space left on the device ({text}); free some and rerun")
    if "disk i/o error" in lowered:
        return RetryableError(f"{text} (is the disk full or failing?); fix it and rerun")
    if any(word in lowered for word in _READ_ONLY):
        return PermanentError(f"cannot write: {text}; check the path's permissions and mount")
    if isinstance(exc, OSError):
        return _os_error(exc, text)
    if _passing_sqlstate(exc) or _passing_sqlstate(exc.__cause__):
        return RetryableError(f"database unavailable: {text}; it is retried")
    for kind in _retryable_kinds():
        if isinstance(exc, kind):
            return RetryableError(f"service unavailable: {_innermost(text)}")
    for kind in _permanent_kinds():
        if isinstance(exc, kind):
            return PermanentError(text)
    return None


def _passing_sqlstate(exc: BaseException | None) -> bool:
    """A PostgreSQL error that passes: read-only (25006), resources (53), shutting down (57P0)."""
    state = getattr(exc, "sqlstate", None)
    return isinstance(state, str) and state.startswith(("25006", "53", "57P0"))


_ERRNO = re.compile(r"\[Errno -?\d+\] [^\"')(]+")


def _innermost(text: str) -> str:
    """``[Errno 111] Connection refused`` out of urllib3's nested reprs, else ``text``."""
    found = _ERRNO.findall(text)
    return found[-1].strip() if found else text


def _os_error(exc: OSError, text: str) -> MasaError:
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return RetryableError(f"no space left on the device ({text}); free some and rerun")
    if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return PermanentError(f"cannot write: {text}; check the path's permissions and mount")
    return RetryableError(f"service unavailable: {_innermost(text)}")


def _retryable_kinds() -> tuple[type[BaseException], ...]:
    kinds: list[type[BaseException]] = [TimeoutError, ConnectionError, sqlite3.OperationalError]
    try:
        from eventsourcing.persistence import InterfaceError, OperationalError

        kinds += [OperationalError, InterfaceError]
    except ImportError:  # pragma: no cover
        pass
    try:
        from requests.exceptions import ConnectionError as RequestsConnectionError
        from requests.exceptions import Timeout

        kinds += [RequestsConnectionError, Timeout]
    except ImportError:  # pragma: no cover
        pass
    return tuple(kinds)


def _permanent_kinds() -> tuple[type[BaseException], ...]:
    kinds: list[type[BaseException]] = [sqlite3.DatabaseError]
    try:
        from eventsourcing.persistence import PersistenceError

        kinds.append(PersistenceError)
    except ImportError:  # pragma: no cover
        pass
    return tuple(kinds)


def with_retries(
    what: str,
    attempt: Callable[[], T],
    *,
    budget_s: float,
    sleep: Callable[[float], None] = time.sleep,
) -> T:
    """``attempt()``; a retryable failure is retried with a doubling delay (a ``retrying in``
    warning each time) until ``budget_s`` is spent, then raised as one ``RetryableError``.
    An attempt still running after a few seconds says so: no silent waits."""
    delay = FIRST_DELAY_S
    deadline = time.monotonic() + budget_s
    while True:
        try:
            with still_waiting(what):
                return _translated(attempt)
        except RetryableError as exc:
            left = deadline - time.monotonic()
            if left <= 0:
                spent = f" (retried for {budget_s:g}s)" if budget_s else ""
                raise RetryableError(f"{what}: {exc}{spent}; rerun once it is back") from exc
            wait = min(delay, left)
            log.warning("%s: %s; retrying in %.1fs", what, exc, wait)
            sleep(wait)
            delay = min(delay * 2, MAX_DELAY_S)


def _translated(attempt: Callable[[], T]) -> T:
    try:
        return attempt()
    except MasaError:
        raise
    except Exception as exc:
        translated = translate(exc)
        if translated is None:
            raise
        raise translated from exc


@contextmanager
def still_waiting(what: str, every_s: float = STILL_WAITING_S) -> Iterator[None]:
    """Log ``still waiting for <what>`` every ``every_s`` seconds while the block runs."""
    started = time.monotonic()
    done = threading.Event()

    def watch() -> None:
        while not done.wait(every_s):
            log.warning("still waiting for %s (%.0fs)", what, time.monotonic() - started)

    watcher = threading.Thread(target=watch, name="still-waiting", daemon=True)
    watcher.start()
    try:
        yield
    finally:
        done.set()


class Streak:
    """How long the work of a long-running command (``masa ingest``, ``masa project run``)
    has been failing, across the restarts of that work.

    ``failed(exc)`` logs ``<what>: <exc>; retrying in <s>s`` and waits (the one back-off,
    ``indexer.retry.Backoff``, from ``FIRST_DELAY_S`` doubling to ``MAX_DELAY_S``; a stop
    request ends the wait), or raises ``exc`` once the failures have lasted ``budget_s``.
    ``failing()`` notes that failing began (a loop below retried on its own first),
    ``succeeded()`` ends the streak."""

    def __init__(
        self,
        what: str,
        budget_s: float,
        should_stop: Callable[[], bool] = lambda: False,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.what = what
        self.budget_s = budget_s
        self.since: float | None = None
        self._should_stop = should_stop
        self._clock = clock
        self._backoff = Backoff(first_s=FIRST_DELAY_S, max_s=MAX_DELAY_S, sleep=sleep)

    def failing(self, since: float | None = None) -> None:
        if self.since is None:
            self.since = self._clock() if since is None else since

    def succeeded(self) -> None:
        self.since = None
        self._backoff.reset()

    def left_s(self) -> float:
        """What is left of the budget (all of it while nothing fails)."""
        if self.since is None:
            return self.budget_s
        return max(0.0, self.budget_s - (self._clock() - self.since))

    def failed(self, exc: RetryableError) -> None:
        self.failing()
        left = self.left_s()
        if left <= 0:
            raise exc
        wait = min(self._backoff.next_delay(), left)
        log.warning("%s: %s; retrying in %.1fs", self.what, exc, wait)
        self._backoff.pause(wait, self._should_stop)


class OneLineLogs(logging.Filter):
    """A log handler's filter: every record is one line, and a library's chatter is held back.

    Below DEBUG nothing prints a traceback: a record's exception (a library logging the
    connection it lost with ``log.exception``, a job that crashed) is summarised at the end of
    its line. The Kafka client logs a dozen lines a second while a broker is down; its records
    pass once every ``every_s`` seconds, saying how many were held back. At DEBUG all passes."""

    def __init__(
        self,
        level: int,
        every_s: float = STILL_WAITING_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__()
        self.debug = level <= logging.DEBUG
        self.every_s = every_s
        self._clock = clock
        self._passed = -float("inf")
        self._held = 0

    def filter(self, record: logging.LogRecord) -> bool:
        if self.debug:
            return True
        if record.exc_info or record.exc_text or record.stack_info:
            exc = record.exc_info[1] if record.exc_info else None
            summary = f" ({type(exc).__name__}: {exc})" if exc is not None else ""
            record.msg, record.args = record.getMessage() + summary, None
            record.exc_info = record.exc_text = record.stack_info = None
        if record.name == "kafka" or record.name.startswith("kafka."):
            now = self._clock()
            if now - self._passed < self.every_s:
                self._held += 1
                return False
            if self._held:
                held = f" ({self._held} more kafka client lines in the last {self.every_s:g}s)"
                record.msg, record.args = record.getMessage() + held, None
            self._passed, self._held = now, 0
        return True
