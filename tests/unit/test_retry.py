"""The one back-off: doubling with jitter up to a cap, reset on success, and a wait that a
stop flag cuts short."""

from __future__ import annotations

import pytest

from indexer.retry import SLICE_S, Backoff


def test_delays_double_up_to_the_cap_with_jitter() -> None:
    backoff = Backoff(first_s=0.2, max_s=1.0)
    delays = [backoff.next_delay() for _ in range(6)]
    for delay, full in zip(delays, [0.2, 0.4, 0.8, 1.0, 1.0, 1.0], strict=True):
        assert full / 2 <= delay <= full
    backoff.reset()
    assert backoff.next_delay() <= 0.2


def test_a_wait_sleeps_in_slices() -> None:
    slept: list[float] = []
    Backoff(sleep=slept.append).pause(0.35)
    assert slept == pytest.approx([SLICE_S, SLICE_S, SLICE_S, 0.05])


def test_a_stop_request_ends_the_wait_within_a_slice() -> None:
    slept: list[float] = []
    backoff = Backoff(first_s=30.0, sleep=slept.append)
    backoff.wait(should_stop=lambda: len(slept) >= 2)
    assert sum(slept) == pytest.approx(2 * SLICE_S)
    assert backoff.failures == 1
