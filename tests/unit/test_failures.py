"""The shell's one retry policy and its net for library errors."""

from __future__ import annotations

import errno
import logging
import sqlite3

import pytest

from masa.app.failures import MAX_DELAY_S, translate, with_retries
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
