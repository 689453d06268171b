"""The shell's one retry policy and its net for library errors."""

from __future__ import annotations

import errno
import logging
import sqlite3

import pytest

from masa.app.failures import MAX_DELAY_S, OneLineLogs, Streak, translate, with_retries
from masa.errors import ConfigurationError, PermanentError, RetryableError


def test_a_retryable_failure_is_retried_with_a_doubling_visible_delay_then_one_error(caplog):
    slept: list[float] = []
    calls = 0

    def attempt() -> None:
        nonlocal calls
        calls += 1
        raise ConnectionRefusedError(errno.ECONNREFUSED, "Connection refused")

    with caplog.at_level(logging.WARNING), pytest.raises(RetryableError) as raised:
        with_retries("the thing", attempt, budget_s=0.05, sleep=slept.append)
    assert calls >= 2 and slept[0] == pytest.approx(0.05, abs=0.05)
    assert all(d <= MAX_DELAY_S for d in slept)
    assert "retrying in" in caplog.text and "the thing" in str(raised.value)


def test_success_after_failures_returns_the_value():
    outcomes = iter([RetryableError("down"), RetryableError("down"), None])

    def attempt() -> str:
        failure = next(outcomes)
        if failure is not None:
            raise failure
        return "up"

    assert with_retries("x", attempt, budget_s=60, sleep=lambda _: None) == "up"


def test_permanent_and_configuration_errors_are_not_retried():
    calls: list[Exception] = []

    def attempt(error: Exception) -> None:
        calls.append(error)
        raise error

    for error in (PermanentError("no"), ConfigurationError("fix it")):
        with pytest.raises(type(error)):
            with_retries("x", lambda e=error: attempt(e), budget_s=60, sleep=lambda _: None)
    assert len(calls) == 2


@pytest.mark.parametrize(
    ("error", "kind", "words"),
    [
        (sqlite3.OperationalError("attempt to write a readonly database"), PermanentError, "write"),
        (sqlite3.OperationalError("database or disk is full"), RetryableError, "no space"),
        (OSError(errno.ENOSPC, "No space left on device"), RetryableError, "no space"),
        (PermissionError(errno.EACCES, "Permission denied"), PermanentError, "permissions"),
        (ConnectionRefusedError(errno.ECONNREFUSED, "refused"), RetryableError, "[Errno 111]"),
        (TimeoutError("timed out"), RetryableError, "unavailable"),
        (sqlite3.DatabaseError("file is not a database"), PermanentError, "not a database"),
    ],
)  # fmt: skip
def test_library_errors_become_the_error_of_their_kind(error, kind, words):
    translated = translate(error)
    assert type(translated) is kind and words in str(translated)


def test_an_unknown_error_is_left_to_the_caller():
    assert translate(ZeroDivisionError("x")) is None


class _PgError(Exception):
    """A driver error with a SQLSTATE, as psycopg's."""

    def __init__(self, sqlstate: str) -> None:
        super().__init__(f"sqlstate {sqlstate}")
        self.sqlstate = sqlstate


@pytest.mark.parametrize(
    ("sqlstate", "passing"),
    [("25006", True), ("53100", True), ("53300", True), ("57P01", True), ("42P01", False),
     ("23505", False), ("25001", False)],
)  # fmt: skip
def test_a_database_that_is_read_only_full_or_restarting_is_retryable(sqlstate, passing):
    from indexer.store.base import passing_sqlstate

    assert passing_sqlstate(_PgError(sqlstate)) is passing
    assert isinstance(translate(_PgError(sqlstate)), RetryableError) is passing


class _Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


def test_a_streak_waits_doubling_to_the_cap_and_gives_up_after_its_budget(caplog):
    clock = _Clock()
    streak = Streak("ingest", 30, clock=clock, sleep=clock.sleep)
    failure = RetryableError("down")
    waits = []
    with caplog.at_level(logging.WARNING), pytest.raises(RetryableError) as raised:
        while True:
            before = clock.now
            streak.failed(failure)
            waits.append(round(clock.now - before, 6))
    assert raised.value is failure
    for wait, full in zip(waits, [0.5, 1.0, 2.0, 4.0, 8.0, 8.0], strict=False):
        assert full / 2 <= wait <= full  # the one back-off: doubling, with jitter
    assert max(waits) <= MAX_DELAY_S
    assert sum(waits) == pytest.approx(30, abs=0.11)  # the last is cut to what is left
    assert "ingest: down; retrying in 0." in caplog.text


def test_a_success_ends_the_streak_and_a_failing_loop_below_counts():
    clock = _Clock()
    streak = Streak("x", 10, clock=clock, sleep=clock.sleep)
    streak.failing(since=clock.now - 9.9)  # the loop below had been failing for 9.9 s
    with pytest.raises(RetryableError):
        clock.now += 0.2
        streak.failed(RetryableError("still down"))
    streak.succeeded()
    assert streak.left_s() == 10
    streak.failed(RetryableError("down again"))  # a new streak: waits, does not raise
    assert 0 < streak.left_s() < 10


def test_a_stop_request_ends_the_wait():
    clock = _Clock()
    streak = Streak("x", 60, lambda: clock.now > 100.15, clock=clock, sleep=clock.sleep)
    streak.failed(RetryableError("down"))  # 0.25 to 0.5 s, cut short by the stop request
    streak.failed(RetryableError("down"))  # stopping: no wait at all
    assert clock.now == pytest.approx(100.2)  # two 0.1 s slices of a wait of at least 0.25 s


def _record(name: str, message: str, exc: BaseException | None = None) -> logging.LogRecord:
    info = (type(exc), exc, exc.__traceback__) if exc is not None else None
    return logging.LogRecord(name, logging.ERROR, __file__, 1, message, (), info)


def test_log_records_never_carry_a_traceback_below_debug():
    try:
        raise ConnectionResetError(104, "Connection reset by peer")
    except ConnectionResetError as exc:
        record = _record("kafka.net.transport", "receiving failed", exc)
    assert OneLineLogs(logging.INFO).filter(record)
    formatted = logging.Formatter("%(name)s: %(message)s").format(record)
    assert formatted == (
        "kafka.net.transport: receiving failed (ConnectionResetError: [Errno 104] Connection"
        " reset by peer)"
    )
    try:
        raise ValueError("x")
    except ValueError as exc:
        with_traceback = _record("masa", "crashed", exc)
    assert OneLineLogs(logging.DEBUG).filter(with_traceback)
    assert "Traceback" in logging.Formatter().format(with_traceback)


def test_the_kafka_clients_chatter_passes_once_per_interval_with_a_count():
    clock = _Clock()
    limit = OneLineLogs(logging.INFO, every_s=5, clock=clock)
    passed = []
    for n in range(40):  # 20 s of a line every half second
        record = _record("kafka.cluster" if n % 2 else "kafka.net.manager", f"line {n}")
        if limit.filter(record):
            passed.append(record.getMessage())
        clock.now += 0.5
    assert passed == [
        "line 0",
        "line 10 (9 more kafka client lines in the last 5s)",
        "line 20 (9 more kafka client lines in the last 5s)",
        "line 30 (9 more kafka client lines in the last 5s)",
    ]
    assert limit.filter(_record("masa.ingest", "ours pass"))
