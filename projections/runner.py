"""Keeping the read models: follow the store's notification log through the read port, apply
each batch to the ledger projection, and write the changed rows with the new position in one
transaction. The position row is compare-and-set: a runner whose position moved under it
(another runner got there first, or a rebuild was swapped in) rolls back, reloads the tables
and goes on, so several runners at once never apply an event twice."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from indexer.store.log import EventLog, LoggedEvent
from masa.errors import MasaError, RetryableError
from projections import dead_letters, ledger
from projections.db import ReadDb, Tx
from projections.state import LedgerState, load_state

log = logging.getLogger("masa.projections")


@dataclass(frozen=True)
class RunnerConfig:
    name: str = ledger.NAME
    batch_size: int = 5000
    poll_interval_s: float = 0.5
    heartbeat_s: float = 5.0
    #: The dead-letter topic whose letters are copied into ``dead_letters`` (None: none are).
    dlq_topic: str | None = None


class PositionMoved(RetryableError):
    """Another runner (or a rebuild) moved the projection's position: reload and go on."""


@dataclass
class RunnerStats:
    applied: int = 0
    batches: int = 0
    conflicts: int = 0
    position: int = 0
    head: int = 0
    lag_s: list[float] = field(default_factory=list)


class ProjectionRunner:
    def __init__(
        self,
        log_: EventLog,
        db: ReadDb,
        config: RunnerConfig = RunnerConfig(),
        wait: Callable[[float], None] = time.sleep,
    ) -> None:
        self.log = log_
        self.db = db
        self.config = config
        self.stats = RunnerStats()
        self._wait = wait
        self._state: LedgerState | None = None
        self._last_heartbeat = 0.0
        self._letters_copied: tuple[float, int | None] = (float("-inf"), None)
        self.position = 0

    def load(self) -> None:
        """Continue from the tables: their rows and their position, read in one snapshot."""
        with self.db.transaction() as tx:
            ensure_position_row(tx, self.config.name)
        with self.db.snapshot() as tx:
            self.position = read_position(tx, self.config.name)
            self._state = load_state(tx)
        self.stats.position = self.position

    def step(self) -> int:
        """Apply and write the next batch; the number of events applied (0: caught up)."""
        if self._state is None:
            self.load()
        self._copy_dead_letters()
        events = self.log.read(self.position, self.config.batch_size)
        if not events:
            self._idle_heartbeat()
            return 0
        try:
            self._apply_and_write(events)
        except PositionMoved:
            self.stats.conflicts += 1
            self._state = None
            return 0
        except BaseException:
            self._state = None  # applied in memory but not written: reload before going on
            raise
        return len(events)

    def _copy_dead_letters(self) -> None:
        """The store's new dead letters into ``dead_letters``, every ``heartbeat_s``."""
        at, since_ms = self._letters_copied
        topic = self.config.dlq_topic
        if topic is None or time.monotonic() - at < self.config.heartbeat_s:
            return
        newest = dead_letters.copy_new(self.log, self.db, topic, since_ms)
        self._letters_copied = (time.monotonic(), newest)

    def _idle_heartbeat(self) -> None:
        """Caught up: say so now and then, so readers (``/health``) can tell a caught-up runner
        from a dead one."""
        now = time.monotonic()
        if now - self._last_heartbeat < self.config.heartbeat_s:
            return
        self._last_heartbeat = now
        with self.db.transaction() as tx:
            tx.execute(
                "UPDATE projection_positions SET head = ?, lag_events = 0, lag_seconds = 0,"
                " updated_at = ? WHERE name = ? AND position = ?",
                (self.log.head(), _now(tx), self.config.name, self.position),
            )

    def _apply_and_write(self, events: list[LoggedEvent]) -> None:
        state = self._state
        assert state is not None
        for event in events:
            ledger.apply(state, event)
        ledger.refresh(state)
        new = events[-1].position
        head = self.log.head()
        lag_s = (datetime.now(UTC) - events[-1].ingested.at).total_seconds()
        with self.db.transaction() as tx:
            moved = not advance_position(
                tx, self.config.name, self.position, new, head, len(events), lag_s
            )
            if moved:
                raise PositionMoved(f"{self.config.name}: position moved from {self.position}")
            state.write(tx)
        self.position = new
        self._last_heartbeat = time.monotonic()
        self.stats.applied += len(events)
        self.stats.batches += 1
        self.stats.position, self.stats.head = new, head
        self.stats.lag_s.append(max(0.0, lag_s))

    def run(
        self,
        should_stop: Callable[[], bool],
        on_batch: Callable[[RunnerStats], None] | None = None,
    ) -> RunnerStats:
        """Follow the log until ``should_stop()``; a failure is recorded in
        ``projection_positions.last_error`` and raised."""
        while not should_stop():
            try:
                applied = self.step()
            except MasaError as exc:
                self._record_error(exc)
                raise
            if applied and on_batch is not None:
                on_batch(self.stats)
            if not applied:
                self._wait(self.config.poll_interval_s)
        return self.stats

    def _record_error(self, exc: Exception) -> None:
        try:
            with self.db.transaction() as tx:
                tx.execute(
                    "UPDATE projection_positions SET last_error = ? WHERE name = ?",
                    (str(exc)[:2000], self.config.name),
                )
        except MasaError:
            log.warning("could not record the error of %s: %s", self.config.name, exc)


def ensure_position_row(tx: Tx, name: str) -> None:
    tx.execute(
        "INSERT INTO projection_positions (name, position, head, lag_events, lag_seconds,"
        " events_applied, updated_at, last_error) VALUES (?, 0, 0, 0, 0, 0, ?, NULL)"
        " ON CONFLICT (name) DO NOTHING",
        (name, _now(tx)),
    )


def read_position(tx: Tx, name: str) -> int:
    rows = tx.fetchall("SELECT position FROM projection_positions WHERE name = ?", (name,))
    return int(rows[0][0]) if rows else 0


def advance_position(
    tx: Tx, name: str, old: int, new: int, head: int, applied: int, lag_s: float
) -> bool:
    """Move the position from ``old`` to ``new``; False when it is no longer ``old``."""
    changed = tx.execute(
        "UPDATE projection_positions SET position = ?, head = ?, lag_events = ?,"
        " lag_seconds = ?, events_applied = events_applied + ?, updated_at = ?,"
        " last_error = NULL WHERE name = ? AND position = ?",
        (new, head, max(0, head - new), max(0.0, lag_s), applied, _now(tx), name, old),
    )
    return changed == 1


def _now(tx: Tx) -> object:
    now = datetime.now(UTC)
    return now if tx.dialect == "postgresql" else now.isoformat()
