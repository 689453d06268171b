"""One back-off for every loop that retries a ``RetryableError``, and a pause that ends as
soon as the loop is asked to stop.

The policy: the first delay ``first_s``, doubling per consecutive failure up to ``max_s``,
each drawn from [half, all] of that (jitter: processes that failed together do not retry
together). A success resets it. Waiting sleeps in slices of at most ``SLICE_S``, checking
``should_stop`` between them, so a stop request (SIGTERM, Ctrl-C) is honoured within a slice
however long the back-off has grown.

Why not tenacity (used for single RPC calls in ``indexer.chain.rpc``): these are long-lived
loops whose step fails and succeeds many times; they need the failure count across steps
and a sleep that a stop flag interrupts, not a decorator around one call. Any module may
import this one: it imports nothing of ours.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field

#: The longest a waiting loop sleeps without looking at its stop flag.
SLICE_S = 0.1


def never() -> bool:
    return False


@dataclass
class Backoff:
    first_s: float = 0.2
    max_s: float = 30.0
    sleep: Callable[[float], None] = field(default=time.sleep, repr=False)
    failures: int = 0

    def next_delay(self) -> float:
        """Count one more failure; the delay to wait before the next attempt."""
        self.failures += 1
        delay = min(self.max_s, self.first_s * 2.0 ** min(self.failures - 1, 32))
        return delay * random.uniform(0.5, 1.0)

    def reset(self) -> None:
        """The last attempt succeeded: the next failure starts from ``first_s`` again."""
        self.failures = 0

    def wait(self, should_stop: Callable[[], bool] = never) -> float:
        """Count a failure and wait its delay (less if asked to stop); returns the delay."""
        delay = self.next_delay()
        self.pause(delay, should_stop)
        return delay

    def pause(self, seconds: float, should_stop: Callable[[], bool] = never) -> None:
        """Sleep ``seconds`` in slices, returning early once ``should_stop()`` is true."""
        left = seconds
        while left > 0 and not should_stop():
            step = min(SLICE_S, left)
            self.sleep(step)
            left -= step
