"""The oracle app's client: submit a request, wait for its stored outcome, fetch its result.

```python
client = OracleClient(bus, oracle_account, EventLog(store))
rid = client.submit("data", {"start_urls": ["https://example.org/"], ...}, fee=10**15)
outcome = client.wait(rid, timeout_s=120)      # completed, or failed with a reason
result = client.result(rid, timeout_s=60)      # bytes, verified against the ledger
```

The ledger's truth is the event store: ``wait`` reads the request's ``RequestCompleted`` /
``RequestFailed`` there (through ``indexer.store.log.EventLog``, the one read port), and
``result`` accepts only chunks signed by the worker whose completion the store holds, that
decrypt with this oracle's key and hash to the stored ``result_digest``. Every refusal is a
``ResultRejected`` with a reason code (docs/oracle.md lists them); a request with no outcome
yet is a ``ResultNotReady``.

For now the outcome is found by reading the notification log (from where the last call
stopped, the whole log on the first); a lookup in the ``requests`` read model will replace it.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal
from uuid import UUID

from eth_account.signers.local import LocalAccount

from indexer.bus.base import Bus, Consumer, TopicPartition, partition_for
from indexer.events import make_event
from indexer.events.types import RequestCompleted, RequestFailed, RequestSubmitted
from indexer.store.log import EventLog, LoggedEvent
from masa.errors import ResultNotReady, ResultRejected
from workers.results import Expected, ResultChunk, parse_chunk, select, unseal

_TYPES = ("RequestSubmitted", "RequestCompleted", "RequestFailed")
_POLL_S = 0.2


@dataclass(frozen=True)
class Outcome:
    """What the store holds about a request."""

    request_id: UUID
    status: Literal["unknown", "pending", "completed", "failed"]
    oracle: str | None = None
    worker: str | None = None
    result_digest: str | None = None
    units: int | None = None
    reason: str | None = None
    detail: str | None = None
    event_id: UUID | None = None

    def as_json(self) -> dict[str, Any]:
        return {
            k: (str(v) if isinstance(v, UUID) else v)
            for k, v in self.__dict__.items()
            if v is not None
        }


class OracleClient:
    """One oracle's view of its requests: ``bus`` to send requests and read results,
    ``log`` (the store's read port) for outcomes, ``account`` to sign and to decrypt."""

    def __init__(
        self,
        bus: Bus,
        account: LocalAccount,
        log: EventLog,
        *,
        events_topic: str = "masa.events",
        results_topic: str = "masa.results",
        poll_s: float = _POLL_S,
    ) -> None:
        self.bus = bus
        self.account = account
        self.address = account.address.lower()
        self.events_topic = events_topic
        self.results_topic = results_topic
        self.outcomes = OutcomeReader(log)
        self._poll_s = poll_s

    # --- requests -----------------------------------------------------------------------------

    def submit(
        self, kind: str, spec: Mapping[str, Any], fee: int, *, request_id: UUID | None = None
    ) -> UUID:
        """Sign and send a ``RequestSubmitted``; returns its request id. Raises ``ValueError``
        for a spec that does not fit ``kind`` (ingest would dead-letter it)."""
        rid = request_id or uuid.uuid4()
        payload = {"request_id": str(rid), "kind": kind, "spec": dict(spec), "fee": str(fee)}
        message = make_event(self.account, "RequestSubmitted", payload)
        producer = self.bus.producer()
        try:
            producer.send(self.events_topic, message.key.encode(), message.value)
            producer.flush()
        finally:
            producer.close()
        return rid

    def status(self, request_id: UUID) -> Outcome:
        """The request's outcome as stored now (``unknown``: not stored, or not yet)."""
        return self.outcomes.get(request_id)

    def wait(self, request_id: UUID, timeout_s: float = 120.0) -> Outcome:
        """The request's outcome once the store holds it (completed, or failed with its
        reason); ``ResultNotReady`` after ``timeout_s``."""
        deadline = time.monotonic() + timeout_s
        while True:
            outcome = self.status(request_id)
            if outcome.status in ("completed", "failed"):
                return outcome
            if time.monotonic() >= deadline:
                raise ResultNotReady(
                    f"request {request_id} is {outcome.status} after {timeout_s:g} s"
                )
            time.sleep(self._poll_s)

    # --- results ------------------------------------------------------------------------------

    def result(self, request_id: UUID, timeout_s: float = 120.0) -> bytes:
        """The request's result, verified: waits for the stored completion, then for the
        result's chunks on the results topic. Raises ``ResultRejected`` (with a reason) for
        a failed request, one that is not this oracle's, or a result that does not verify,
        and ``ResultNotReady`` when the request has no outcome in time."""
        deadline = time.monotonic() + timeout_s
        outcome = self.wait(request_id, timeout_s)
        if outcome.oracle is not None and outcome.oracle != self.address:
            raise ResultRejected(
                "not_requester", f"request {request_id} was submitted by {outcome.oracle}"
            )
        if outcome.status == "failed":
            raise ResultRejected(
                "request_failed", f"{outcome.reason}: {outcome.detail or ''}".rstrip(": ")
            )
        assert outcome.worker is not None and outcome.result_digest is not None
        expected = Expected(request_id, outcome.worker, outcome.result_digest)
        return self.read_result(expected, max(0.0, deadline - time.monotonic()))

    def read_result(self, expected: Expected, timeout_s: float = 30.0) -> bytes:
        """Read the request's partition of the results topic from its start until the
        expected result is complete and opens; the last refusal after ``timeout_s``."""
        key = str(expected.request_id).encode()
        tp = TopicPartition(
            self.results_topic, partition_for(key, self.bus.partitions(self.results_topic))
        )
        consumer = self.bus.consumer(group="")
        read: list[ResultChunk | ResultRejected] = []
        deadline = time.monotonic() + timeout_s
        try:
            consumer.assign({tp: 0})
            end = self.bus.end_offsets(self.results_topic)[tp]
            while True:
                caught_up = self._read(consumer, tp, key, end, read)
                try:
                    parts = select(read, expected)
                except ResultRejected as exc:
                    if exc.reason == "conflicting_chunks" or (
                        caught_up and time.monotonic() >= deadline
                    ):
                        raise
                else:  # all there, signed by the closing worker: open it or refuse it
                    return unseal(parts, bytes(self.account.key), expected)
                if caught_up:
                    end = self.bus.end_offsets(self.results_topic)[tp]
        finally:
            consumer.close()

    def _read(
        self,
        consumer: Consumer,
        tp: TopicPartition,
        key: bytes,
        end: int,
        into: list[ResultChunk | ResultRejected],
    ) -> bool:
        """Append the records of ``key`` polled now, parsed (or why not); True once the
        partition is read to ``end``."""
        records = consumer.poll(max_records=500, timeout_s=self._poll_s)
        for record in records:
            if record.key != key:
                continue
            try:
                into.append(parse_chunk(record.value))
            except ResultRejected as exc:
                into.append(exc)
        return not records and consumer.position(tp) >= end


class OutcomeReader:
    """Requests' outcomes as the store holds them, read through the notification log (from
    where the last call stopped; the first call reads it all)."""

    def __init__(self, log: EventLog) -> None:
        self._log = log
        self._position = 0
        self._submitted: dict[UUID, LoggedEvent] = {}
        self._closed: dict[UUID, LoggedEvent] = {}

    def get(self, request_id: UUID) -> Outcome:
        """The request's outcome as stored now."""
        self._refresh()
        return self._outcome(request_id)

    def _refresh(self) -> None:
        for event in self._log.iterate(self._position, types=_TYPES):
            self._position = event.position
            payload = event.payload
            if isinstance(payload, RequestSubmitted):
                self._submitted.setdefault(payload.request_id, event)
            elif isinstance(payload, RequestCompleted | RequestFailed):
                self._closed.setdefault(payload.request_id, event)

    def _outcome(self, request_id: UUID) -> Outcome:
        submitted = self._submitted.get(request_id)
        closed = self._closed.get(request_id)
        oracle = submitted.producer if submitted else None
        if closed is None:
            return Outcome(request_id, "pending" if submitted else "unknown", oracle=oracle)
        payload = closed.payload
        if isinstance(payload, RequestCompleted):
            return Outcome(
                request_id,
                "completed",
                oracle=oracle,
                worker=closed.producer,
                result_digest=payload.result_digest,
                units=payload.units,
                event_id=closed.event_id,
            )
        assert isinstance(payload, RequestFailed)
        return Outcome(
            request_id,
            "failed",
            oracle=oracle,
            worker=closed.producer,
            reason=payload.reason,
            detail=payload.detail,
            event_id=closed.event_id,
        )
