"""Which contributor registered each data source, learned from the events topic itself.

A worker names contributors in ``DataUsed``, so it needs the same answer ingest gives: the
first valid ``DataSourceRegistered`` of a source, by offset, in that source's partition
(ingest stores it and rejects later ones as ``source_taken``). The registry reads every
partition of the events topic from the beginning, outside any consumer group, and checks
each registration as ingest does: signature and envelope (``decode_message``, with the
record's own timestamp as the clock), the producer is the contributor, the record sits in
its key's partition. It needs the events topic's full history (unlimited retention).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta

from indexer.bus.base import Bus, Record, partition_for
from indexer.events import decode_message
from indexer.events.types import DataSourceRegistered
from masa.errors import EventRejected, RetryableError
from workers.scraping import parse_source_pattern

log = logging.getLogger("masa.worker.registry")

_TYPE_MARK = b'"DataSourceRegistered"'


def registration(
    record: Record, partitions: int, max_clock_skew: timedelta
) -> tuple[str, str] | None:
    """``(source, contributor)`` if ``record`` is a registration ingest would accept."""
    if _TYPE_MARK not in record.value:  # most of the topic: skip the signature check
        return None
    now = datetime.fromtimestamp(record.timestamp_ms / 1000, UTC)
    try:
        event = decode_message(record.value, record.key, now=now, max_clock_skew=max_clock_skew)
    except EventRejected:
        return None
    payload = event.payload
    if not isinstance(payload, DataSourceRegistered):
        return None
    if payload.contributor != event.envelope.producer:
        return None
    if partition_for(event.key.encode(), partitions) != record.partition:
        return None
    return payload.source, payload.contributor


def attributable(sources: Mapping[str, str]) -> dict[str, str]:
    """The registrations ``workers.scraping.attribute`` can use: ingest accepts a few source
    strings (a query, user info) that are not URL prefixes; they can match no item."""
    usable = {}
    for source, contributor in sources.items():
        try:
            parse_source_pattern(source)
        except ValueError:
            continue
        usable[source] = contributor
    return usable


class SourceRegistry:
    """Source pattern → contributor, caught up to the topic's end on every ``sources()``."""

    def __init__(
        self,
        bus: Bus,
        topic: str,
        *,
        max_clock_skew: timedelta,
        sync_timeout_s: float = 10.0,
    ) -> None:
        self._bus = bus
        self._topic = topic
        self._max_clock_skew = max_clock_skew
        self._sync_timeout_s = sync_timeout_s
        self._partitions = bus.partitions(topic)
        self._consumer = bus.consumer(group="")
        self._registered: dict[str, str] = {}
        self._lock = threading.Lock()

    def sources(self) -> dict[str, str]:
        """Every usable registration that reached the topic before this call.

        When the bus is unavailable or too slow, the registrations known so far (logged).
        """
        with self._lock:
            try:
                self._catch_up()
            except RetryableError as exc:
                log.warning("source registry not caught up (%s); using what it knows", exc)
            return attributable(self._registered)

    def close(self) -> None:
        self._consumer.close()

    def _catch_up(self) -> None:
        """Read to the ends as they are now. Positions, not record offsets, say when an end
        is reached: transaction markers take offsets but are never returned."""
        ends = self._bus.end_offsets(self._topic)
        if ends.keys() - self._consumer.assignment():
            known = {tp: self._consumer.position(tp) for tp in self._consumer.assignment()}
            self._consumer.assign({tp: known.get(tp, 0) for tp in ends})
        deadline = time.monotonic() + self._sync_timeout_s
        while any(self._consumer.position(tp) < end for tp, end in ends.items()):
            if time.monotonic() > deadline:
                log.warning("source registry still behind after %ss", self._sync_timeout_s)
                return
            for record in self._consumer.poll(max_records=5000, timeout_s=0.5):
                self._learn(record)

    def _learn(self, record: Record) -> None:
        found = registration(record, self._partitions, self._max_clock_skew)
        if found is not None:
            source, contributor = found
            self._registered.setdefault(source, contributor)
