"""One ingest harness, parametrized over every bus x store combination (real Kafka and
PostgreSQL from tests/support/fixtures.py, the embedded log and SQLite in a temp dir)."""

from __future__ import annotations

import json
import time
import zlib
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest

from indexer.bus.base import Bus
from indexer.events import SignedMessage
from indexer.events.records import RECORD_TYPES
from indexer.ingest.dlq import DeadLetter, read_dead_letters
from indexer.ingest.runner import Ingestor
from indexer.store.base import EventStore
from indexer.store.log import EventLog, LoggedEvent
from masa.app.settings import Settings
from masa.app.synthetic import Participants, Probe
from masa.app.wiring import ingest_config, open_bus, open_store

#: How long ``Harness.ingest`` waits for its first partitions before quiet time counts.
JOIN_WAIT_S = 20.0

BACKENDS = [
    ("embedded", "sqlite"),
    ("embedded", "postgres"),
    ("kafka", "sqlite"),
    ("kafka", "postgres"),
]


@dataclass
class Harness:
    settings: Settings
    people: Participants
    _bus: Bus | None = field(default=None, init=False)

    @property
    def bus(self) -> Bus:
        if self._bus is None:
            self._bus = open_bus(self.settings)
        return self._bus

    def env(self) -> dict[str, str]:
        """These settings as MASA_ environment variables, for ``masa`` subprocesses."""
        env = {"MASA_HOME": str(self.settings.home)}
        for section in ("store", "bus", "ingest", "chain", "worker"):
            for name, value in getattr(self.settings, section).model_dump(mode="json").items():
                if value is not None:
                    text = value if isinstance(value, str) else json.dumps(value)
                    env[f"MASA_{section.upper()}__{name.upper()}"] = text
        return env

    def with_ingest(self, **changes: Any) -> Harness:
        ingest = self.settings.ingest.model_copy(update=changes)
        return Harness(self.settings.model_copy(update={"ingest": ingest}), self.people)

    def with_bus(self, **changes: Any) -> Harness:
        bus = self.settings.bus.model_copy(update=changes)
        return Harness(self.settings.model_copy(update={"bus": bus}), self.people)

    def with_people(self, people: Participants) -> Harness:
        """The same backends, with ``people.indexer`` as the trusted indexer."""
        harness = self.with_ingest(trusted_indexers=[people.indexer.address.lower()])
        return Harness(harness.settings, people)

    def stored_count(self) -> int:
        """Stored signed events (the ledger's own records, fee reservations, not counted)."""
        store = self.store()
        try:
            counts = store.count_events()
        finally:
            store.close()
        records = {f"{name}.v{version}" for name, version in RECORD_TYPES}
        return sum(n for topic, n in counts.items() if topic not in records)

    def send(self, messages: Iterable[SignedMessage | Probe | tuple[bytes | None, bytes]]) -> int:
        producer = self.bus.producer()
        count = 0
        for m in messages:
            if isinstance(m, SignedMessage):
                key, value = m.key.encode(), m.value
            elif isinstance(m, Probe):
                key, value = m.key, m.value
            else:
                key, value = m
            producer.send(self.settings.bus.events_topic, key, value)
            count += 1
        producer.close()
        return count

    def ingest(
        self,
        idle_s: float = 1.5,
        timeout_s: float = 120,
        until: Callable[[], bool] | None = None,
    ) -> Counter[str]:
        """Run one ingestor until nothing arrives for ``idle_s`` (and ``until()`` holds).

        ``until`` keeps an ingestor from giving up while it waits for partitions: a Kafka
        group with several members can take longer than ``idle_s`` to settle. Quiet time
        counts only once the ingestor owns a partition (up to ``JOIN_WAIT_S``): a Kafka group
        leader that joined before it had the topic's metadata first assigns nothing, then
        rejoins when the metadata arrives."""
        store = open_store(self.settings)
        ingestor = Ingestor(self.bus, store, ingest_config(self.settings))
        started = last = time.monotonic()

        def on_batch(_: Counter[str]) -> None:
            nonlocal last
            last = time.monotonic()

        def should_stop() -> bool:
            nonlocal last
            now = time.monotonic()
            if not ingestor._owned and now - started < JOIN_WAIT_S:
                last = now  # still joining: not idle yet
            return (now - last > idle_s and (until is None or until())) or (
                now - started > timeout_s
            )

        try:
            ingestor.run(should_stop, on_batch)
        finally:
            store.close()
        return ingestor.stats

    def store(self) -> EventStore:
        return open_store(self.settings)

    def stored(self) -> list[LoggedEvent]:
        """Every stored signed event, decoded, in notification order."""
        return [e for e in self.stored_all() if e.signed]

    def records(self) -> list[LoggedEvent]:
        """The ledger's own records (fee reservations and releases), in notification order."""
        return [e for e in self.stored_all() if not e.signed]

    def stored_all(self) -> list[LoggedEvent]:
        """Every stored event and record, decoded, in notification order."""
        store = self.store()
        try:
            return list(EventLog(store).iterate())
        finally:
            store.close()

    def stored_ids(self) -> list[UUID]:
        return [r.event_id for r in self.stored()]

    def streams(self) -> dict[Any, list[int]]:
        """Each stream's stored versions, records included, in notification order."""
        versions: dict[Any, list[int]] = defaultdict(list)
        for r in self.stored_all():
            versions[r.stream_id].append(r.stream_version)
        return versions

    def dead_letters(self) -> list[DeadLetter]:
        return read_dead_letters(self.bus, self.settings.bus.dlq_topic)


@pytest.fixture(params=BACKENDS, ids=lambda b: f"{b[0]}-{b[1]}")
def harness(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Harness]:
    bus_backend, store_backend = request.param
    people = Participants.from_seed(zlib.crc32(request.node.nodeid.encode()))
    config: dict[str, Any] = {
        "home": tmp_path,
        "ingest": {"trusted_indexers": [people.indexer.address.lower()], "poll_timeout_s": 0.2},
        "bus": {"backend": bus_backend, "partitions": 3},
        "store": {"backend": store_backend},
    }
    if bus_backend == "kafka":
        topics = request.getfixturevalue("kafka_topics")
        config["bus"] |= {
            "bootstrap_servers": topics.bootstrap_servers,
            "events_topic": topics.name("events"),
            "requests_topic": topics.name("requests"),
            "dlq_topic": topics.name("dlq"),
            "results_topic": topics.name("results"),
        }
        config["ingest"]["consumer_name"] = f"ingest-{topics.prefix}"
    if store_backend == "postgres":
        db = request.getfixturevalue("pg_database")
        config["store"] |= {
            "postgres_host": db.host,
            "postgres_port": db.port,
            "postgres_user": db.user,
            "postgres_password": db.password,
            "postgres_dbname": db.dbname,
        }
    yield Harness(Settings(**config), people)
