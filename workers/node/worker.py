"""The worker node: take accepted requests from the requests topic as a member of the
workers' consumer group, serve each on a job thread, publish signed results, commit.

At-least-once: a partition's offset is committed only past requests whose result events
are flushed to the bus (after the result itself, sealed for the oracle, is flushed to the
results topic), so a crash re-serves what was in hand (the results' derived ids
make the same worker's second answer a duplicate ingest drops). On stop: no new requests;
jobs in hand get ``shutdown_grace_s`` to finish, the rest fail with reason ``shutdown``;
then flush, commit, leave the group. A partition taken away by a rebalance gets
``rebalance_wait_s`` for its jobs; what is still running then is left to its new owner.

The loop polls even when every job slot is busy, to stay in the group, and rewinds what
it cannot take yet.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from uuid import UUID

from eth_account.signers.local import LocalAccount

from indexer.bus.base import Bus, Record, TopicPartition
from indexer.events import SignedMessage, decode_message
from indexer.events.types import RequestSubmitted
from masa.errors import ChainError, EventRejected, RetryableError
from workers.node.config import WorkerConfig
from workers.node.heartbeat import Heartbeats
from workers.node.jobs import JobRunner, LlmEngine
from workers.node.offsets import OffsetTracker
from workers.node.outcome import Completed, Failed, Outcome, result_messages
from workers.node.stake import StakeCheck
from workers.registry import SourceRegistry
from workers.results import ResultChunk, requester_key, result_digest, seal

log = logging.getLogger("masa.worker")

_WAIT_S = 0.2
_FINAL_FLUSH_TRIES = 5


@dataclass(frozen=True)
class _Job:
    tp: TopicPartition
    offset: int
    request_id: UUID
    recipient: bytes
    """The public key that signed the request: its result is encrypted to it."""

    @property
    def key(self) -> tuple[TopicPartition, int]:
        return self.tp, self.offset


class Worker:
    """One worker node; ``run`` blocks until ``should_stop()`` and the drain are done."""

    def __init__(
        self,
        bus: Bus,
        config: WorkerConfig,
        account: LocalAccount,
        stake_check: StakeCheck,
        engine: LlmEngine | None = None,
    ) -> None:
        self.config = config
        self.account = account
        self.address = account.address.lower()
        self.capabilities = ["data", "llm"] if engine is not None else ["data"]
        self.stats: Counter[str] = Counter()
        self.error: ChainError | None = None
        self._events_topic = config.events_topic
        self._results_topic = config.results_topic
        self._requests_topic = config.requests_topic
        self._max_clock_skew = config.max_clock_skew
        self._stake_check = stake_check
        self._registry = SourceRegistry(
            bus, self._events_topic, max_clock_skew=self._max_clock_skew
        )
        self._runner = JobRunner(self.config.jobs, self._registry.sources, engine)
        self._heartbeats = Heartbeats(
            bus, self._events_topic, account, self.capabilities, self.config.heartbeat_interval_s
        )
        self._consumer = bus.consumer(group=self.config.group)
        self._producer = bus.producer()
        self._tracker = OffsetTracker()
        self._jobs: dict[tuple[TopicPartition, int], _Job] = {}
        self._orphans: set[tuple[TopicPartition, int]] = set()
        self._results: queue.Queue[tuple[_Job, Outcome, list[ResultChunk]]] = queue.Queue()
        self._unsent: list[tuple[_Job, list[SignedMessage], list[ResultChunk]]] = []
        self._accepting = True
        self._next_stake_check = 0.0

    # --- lifecycle --------------------------------------------------------------------------

    def run(self, should_stop: Callable[[], bool]) -> None:
        """Serve until ``should_stop()``; raises ``ChainError`` when not (or no longer)
        staked as a worker."""
        try:
            self._stake_check(self.address)
            self._next_stake_check = time.monotonic() + self.config.stake_recheck_s
            self._registry.sources()  # read the registrations before the first job needs them
            self._heartbeats.start()
            self._consumer.subscribe([self._requests_topic], self)
            log.info(
                "worker %s serving %s in group %s",
                self.address,
                "+".join(self.capabilities),
                self.config.group,
            )
            self._serve(should_stop)
            self._drain()
        finally:
            self._close()
        if self.error is not None:
            raise self.error

    def _serve(self, should_stop: Callable[[], bool]) -> None:
        backoff = 0.1
        while not should_stop() and self.error is None:
            try:
                self._step()
                backoff = 0.1
            except RetryableError as exc:
                log.warning("%s; retrying in %.1fs", exc, backoff)
                time.sleep(backoff)
                backoff = min(backoff * 2, 10.0)

    def _drain(self) -> None:
        self._accepting = False
        log.info(
            "stopping: %d job(s) in hand, %ss to finish",
            len(self._owned_jobs()),
            self.config.shutdown_grace_s,
        )
        deadline = time.monotonic() + self.config.shutdown_grace_s
        while self._owned_jobs() and time.monotonic() < deadline:
            try:
                self._step()
            except RetryableError as exc:
                log.warning("%s", exc)
                time.sleep(_WAIT_S)
        self._abandon()
        self._final_flush()

    def _close(self) -> None:
        for close in (
            self._heartbeats.stop,
            self._consumer.close,
            self._producer.close,
            self._registry.close,
        ):
            try:
                close()
            except RetryableError as exc:
                log.warning("while closing: %s", exc)

    # --- one step ---------------------------------------------------------------------------

    def _step(self) -> None:
        busy = not self._accepting or len(self._jobs) >= self.config.concurrency
        self._collect(_WAIT_S if busy else 0.0)
        self._publish()
        self._commit()
        self._poll(0.0 if busy else _WAIT_S)
        self._recheck_stake()

    def _poll(self, timeout_s: float) -> None:
        free = max(0, self.config.concurrency - len(self._jobs)) if self._accepting else 0
        records = self._consumer.poll(max(1, free), timeout_s)
        for record in records[:free]:
            self._take(record)
        self._rewind(records[free:])

    def _rewind(self, records: Iterable[Record]) -> None:
        """Put back what was polled only to stay in the group."""
        first: dict[TopicPartition, int] = {}
        for record in records:
            first.setdefault(record.position, record.offset)
        for tp, offset in first.items():
            self._consumer.seek(tp, offset)

    def _take(self, record: Record) -> None:
        self._tracker.taken(record.position, record.offset)
        taken = self._request(record)
        if taken is None or any(j.request_id == taken[0].request_id for j in self._jobs.values()):
            self._tracker.done(record.position, record.offset)
            return
        request, recipient = taken
        job = _Job(record.position, record.offset, request.request_id, recipient)
        self._jobs[job.key] = job
        self.stats["taken"] += 1
        log.info("serving %s request %s", request.kind, request.request_id)
        threading.Thread(
            target=self._run_job, args=(job, request), name="masa-job", daemon=True
        ).start()

    def _request(self, record: Record) -> tuple[RequestSubmitted, bytes] | None:
        """The request in ``record`` and its oracle's public key; ``None`` (logged) for
        anything else."""
        try:
            event = decode_message(
                record.value, record.key, now=datetime.now(UTC), max_clock_skew=self._max_clock_skew
            )
        except EventRejected as exc:
            log.warning(
                "skipping %s[%d]@%d: %s", record.topic, record.partition, record.offset, exc
            )
            return None
        if not isinstance(event.payload, RequestSubmitted):
            log.warning("skipping a %s on the requests topic", event.envelope.type)
            return None
        return event.payload, requester_key(event.raw)

    def _run_job(self, job: _Job, request: RequestSubmitted) -> None:
        chunks: list[ResultChunk] = []
        try:
            outcome = self._runner.serve(request)
            chunks = self._seal(job, outcome)
        except Exception as exc:  # a bug must fail the request, not hang it
            log.exception("request %s crashed its job", job.request_id)
            outcome, chunks = Failed("worker_error", f"{type(exc).__name__}: {exc}"), []
        self._results.put((job, outcome, chunks))

    def _seal(self, job: _Job, outcome: Outcome) -> list[ResultChunk]:
        """The result encrypted to the oracle, chunked and signed (on the job's thread)."""
        if not isinstance(outcome, Completed) or outcome.result is None:
            return []
        if result_digest(outcome.result) != outcome.result_digest:
            raise AssertionError("the result does not hash to its digest")
        return seal(self.account, job.request_id, job.recipient, outcome.result)

    # --- results ----------------------------------------------------------------------------

    def _collect(self, timeout_s: float) -> None:
        try:
            finished = [
                self._results.get(timeout=timeout_s) if timeout_s else self._results.get_nowait()
            ]
        except queue.Empty:
            return
        while True:
            try:
                finished.append(self._results.get_nowait())
            except queue.Empty:
                break
        for job, outcome, chunks in finished:
            self._finish(job, outcome, chunks)

    def _finish(self, job: _Job, outcome: Outcome, chunks: list[ResultChunk]) -> None:
        if self._jobs.get(job.key) is not job:
            return  # failed as shutdown already
        del self._jobs[job.key]
        if job.key in self._orphans:
            self._orphans.discard(job.key)
            return  # its partition's new owner serves the request again
        self._report(job, outcome, chunks)

    def _report(self, job: _Job, outcome: Outcome, chunks: list[ResultChunk] | None = None) -> None:
        self.stats[
            "completed" if isinstance(outcome, Completed) else f"failed:{outcome.reason}"
        ] += 1
        if isinstance(outcome, Failed):
            log.info(
                "request %s failed: %s %s", job.request_id, outcome.reason, outcome.detail[:200]
            )
        events = result_messages(self.account, job.request_id, outcome)
        self._unsent.append((job, events, chunks or []))

    def _publish(self) -> None:
        """Send and flush the sealed results, then the signed result events; only then are
        their offsets done. A crash in between serves the requests again: the same records."""
        if not self._unsent:
            return
        if any(chunks for _, _, chunks in self._unsent):
            for _, _, chunks in self._unsent:
                for chunk in chunks:
                    self._producer.send(self._results_topic, chunk.key, chunk.value)
            self._producer.flush()
            self._unsent = [(job, events, []) for job, events, _ in self._unsent]
        for _, events, _ in self._unsent:
            for message in events:
                self._producer.send(self._events_topic, message.key.encode(), message.value)
        self._producer.flush()
        for job, _, _ in self._unsent:
            self._tracker.done(job.tp, job.offset)
        self._unsent = []

    def _commit(self) -> None:
        """Commit what is done; a failure waits for the next step (after a rebalance, the
        next poll revokes what could not be committed)."""
        offsets = self._tracker.committable()
        if not offsets:
            return
        try:
            self._consumer.commit(offsets)
        except RetryableError as exc:
            log.warning("commit failed: %s", exc)
            return
        self._tracker.committed(offsets)

    def _owned_jobs(self) -> list[_Job]:
        return [job for key, job in self._jobs.items() if key not in self._orphans]

    def _abandon(self) -> None:
        """Jobs still running after the grace period fail as ``shutdown``."""
        for job in self._owned_jobs():
            del self._jobs[job.key]
            self._report(job, Failed("shutdown", "the worker stopped before the job finished"))
        self._jobs.clear()

    def _final_flush(self) -> None:
        for attempt in range(1, _FINAL_FLUSH_TRIES + 1):
            try:
                self._publish()
            except RetryableError as exc:
                log.warning("final flush failed (%s); attempt %d", exc, attempt)
            else:
                self._commit()
                if not self._tracker.committable():
                    return
            time.sleep(0.5 * attempt)
        log.error("results not flushed or not committed; those requests will be served again")

    # --- group membership -------------------------------------------------------------------

    def on_assigned(self, partitions: list[TopicPartition]) -> Mapping[TopicPartition, int | None]:
        log.info("assigned %s", _names(partitions))
        return {tp: None for tp in partitions}

    def on_revoked(self, partitions: list[TopicPartition]) -> None:
        """Give the lost partitions' jobs a while to finish and commit them; leave the rest."""
        if not partitions:
            return
        lost = set(partitions)
        deadline = time.monotonic() + self.config.rebalance_wait_s
        while any(j.tp in lost for j in self._owned_jobs()) and time.monotonic() < deadline:
            self._collect(_WAIT_S)
        try:
            self._publish()
            self._commit()
        except RetryableError as exc:
            log.warning("results of revoked partitions not committed: %s", exc)
        self._orphans |= {key for key, job in self._jobs.items() if job.tp in lost}
        self._tracker.forget(lost)
        log.info("revoked %s", _names(partitions))

    # --- stake ------------------------------------------------------------------------------

    def _recheck_stake(self) -> None:
        if time.monotonic() < self._next_stake_check:
            return
        self._next_stake_check = time.monotonic() + self.config.stake_recheck_s
        try:
            self._stake_check(self.address)
        except RetryableError as exc:
            log.warning("stake not rechecked: %s", exc)
        except ChainError as exc:
            log.error("%s; stopping", exc)
            self.error = exc


def _names(partitions: Iterable[TopicPartition]) -> str:
    return ", ".join(f"{tp.topic}[{tp.partition}]" for tp in partitions) or "nothing"
