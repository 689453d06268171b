"""Periodic ``Heartbeat`` events from a thread of their own, with their own producer."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence

from eth_account.signers.local import LocalAccount

from indexer.bus.base import Bus
from indexer.events import make_event
from masa.errors import RetryableError

log = logging.getLogger("masa.worker.heartbeat")


def next_seq(last: int | None, now_ms: int) -> int:
    """Strictly increasing, and across restarts too: the clock in ms unless that went back."""
    return now_ms if last is None else max(last + 1, now_ms)


class Heartbeats:
    """Beats once at ``start`` and every ``interval_s`` until ``stop``."""

    def __init__(
        self,
        bus: Bus,
        topic: str,
        account: LocalAccount,
        capabilities: Sequence[str],
        interval_s: float,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._producer = bus.producer()
        self._topic = topic
        self._account = account
        self._capabilities = sorted(capabilities)
        self._interval_s = interval_s
        self._clock = clock
        self._last: int | None = None
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._run, name="masa-heartbeat", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stopped.set()
        if self._thread.is_alive():
            self._thread.join()
        self._producer.close()

    def beat(self) -> None:
        seq = next_seq(self._last, int(self._clock() * 1000))
        payload = {"seq": seq, "capabilities": self._capabilities}
        message = make_event(self._account, "Heartbeat", payload)
        self._producer.send(self._topic, message.key.encode(), message.value)
        self._producer.flush()
        self._last = seq

    def _run(self) -> None:
        while True:
            try:
                self.beat()
            except RetryableError as exc:
                log.warning("heartbeat not sent: %s", exc)
            if self._stopped.wait(self._interval_s):
                return
