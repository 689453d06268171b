"""``masa demo``'s services, each on a thread of this process as ``masa ingest`` and
``masa worker run`` would run them side by side: ingest follows the events topic the whole time;
the live worker serves the oracle app's requests and heartbeats while the epochs run."""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable
from types import TracebackType

from indexer.bus.base import Bus
from indexer.ingest.runner import Ingestor
from masa.app.settings import Settings
from masa.app.wiring import ingest_config, open_store
from masa.errors import RetryableError
from workers.node import Worker


class _Service:
    """A loop on a daemon thread until ``stop``; its exception, if any, raised on ``join``."""

    def __init__(self, name: str, run: Callable[[Callable[[], bool]], None]) -> None:
        self._stop = threading.Event()
        self.error: BaseException | None = None

        def target() -> None:
            try:
                run(self._stop.is_set)
            except BaseException as exc:  # handed to the main thread by join()
                self.error = exc

        self._thread = threading.Thread(target=target, name=name, daemon=True)
        self._thread.start()

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    def join(self, timeout_s: float = 60) -> None:
        self._stop.set()
        self._thread.join(timeout_s)
        if self.error is not None:
            raise self.error


class Network:
    """Ingest on its own store and thread; the live worker once started."""

    def __init__(self, bus: Bus, settings: Settings) -> None:
        self.bus = bus
        self.settings = settings
        self.store = open_store(settings)
        self.ingestor = Ingestor(bus, self.store, ingest_config(settings))
        self._ingest = _Service("masa-demo-ingest", self.ingestor.run)
        self._worker: _Service | None = None
        self.worker: Worker | None = None

    def __enter__(self) -> Network:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        try:
            self.stop_worker()
            self._ingest.join()
        finally:
            self.store.close()

    @property
    def ingest_stats(self) -> Counter[str]:
        return self.ingestor.stats

    # --- ingest -----------------------------------------------------------------------------

    def caught_up(self) -> bool:
        """Whether ingest has stored (or dead-lettered) every record on the events topic and
        published what it owes the requests and dead-letter topics."""
        consumer = self.settings.ingest.consumer_name
        ends = self.bus.end_offsets(self.settings.bus.events_topic)
        stored = self.store.next_offsets(consumer, ends)
        if any(stored[tp] < end for tp, end in ends.items()):
            return False
        return not self.store.unpublished(consumer, list(ends))

    def wait_ingested(self, timeout_s: float = 120) -> None:
        deadline = time.monotonic() + timeout_s
        while not self.caught_up():
            self._check(self._ingest, "ingest")
            if time.monotonic() > deadline:
                raise RetryableError(f"ingest did not catch up with the bus in {timeout_s:g} s")
            time.sleep(0.05)

    # --- the live worker --------------------------------------------------------------------

    def start_worker(self, worker: Worker) -> None:
        self.worker = worker
        self._worker = _Service("masa-demo-worker", worker.run)

    def stop_worker(self) -> None:
        if self._worker is not None:
            service, self._worker = self._worker, None
            service.join(timeout_s=self.settings.worker.shutdown_grace_s + 30)

    def check(self) -> None:
        """Raise what a service died of (a worker no longer staked, a store gone)."""
        self._check(self._ingest, "ingest")
        if self._worker is not None:
            self._check(self._worker, "the worker")

    @staticmethod
    def _check(service: _Service, name: str) -> None:
        if not service.alive:
            if service.error is not None:
                raise service.error
            raise RetryableError(f"{name} stopped")
