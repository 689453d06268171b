"""``masa demo``: the whole pipeline on embedded defaults, in one process, with no services.

Each step is a function of the previous steps' results, so the demo reads as the data flow
of DESIGN §1: producers → bus → ingest → store.
"""

from __future__ import annotations

import shutil
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from indexer.bus.base import Bus
from indexer.ingest.dlq import read_dead_letters
from indexer.ingest.runner import Ingestor
from indexer.store.base import EventStore
from masa.settings import Settings
from masa.synthetic import Participants, Probe, Scenario
from masa.wiring import ensure_topics, ingest_config, open_bus, open_store

Progress = Callable[[str, int, int], None]


@dataclass
class DemoReport:
    produced: int = 0
    probes: list[Probe] = field(default_factory=list)
    ingest: Counter[str] = field(default_factory=Counter)
    stored_by_type: dict[str, int] = field(default_factory=dict)
    dead_letters: Counter[str] = field(default_factory=Counter)
    seconds: float = 0.0

    def to_json(self) -> dict[str, Any]:
        return {
            "produced": self.produced,
            "stored_by_type": self.stored_by_type,
            "stored": sum(self.stored_by_type.values()),
            "rejected_by_reason": dict(sorted(self.dead_letters.items())),
            "ingest": dict(sorted(self.ingest.items())),
            "seconds": round(self.seconds, 2),
        }


def demo_settings(home: Path) -> Settings:
    """Embedded defaults under ``home/demo``, wiped first so every run starts the same."""
    root = home / "demo"
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir(parents=True)
    return Settings(home=root, ingest={"hold_timeout_s": 5})


def run_demo(settings: Settings, *, requests: int, seed: int, progress: Progress) -> DemoReport:
    started = time.monotonic()
    report = DemoReport()
    people = Participants.from_seed(seed)
    settings = settings.model_copy(
        update={"ingest": settings.ingest.model_copy(update={"trusted_indexers": [people.indexer.address.lower()]})}
    )
    bus = open_bus(settings)
    ensure_topics(bus, settings)
    store = open_store(settings)
    try:
        scenario = Scenario(people, seed=seed, start=datetime.now(UTC) - timedelta(minutes=5))
        report.produced, report.probes = _produce(bus, settings, scenario, requests, progress)
        report.ingest = _ingest(bus, store, settings, report.produced, progress)
        report.stored_by_type = store.count_events()
        report.dead_letters = _dead_letters(bus, settings)
    finally:
        store.close()
    report.seconds = time.monotonic() - started
    return report


def _produce(
    bus: Bus, settings: Settings, scenario: Scenario, requests: int, progress: Progress
) -> tuple[int, list[Probe]]:
    messages = [*scenario.stakes(), *scenario.sources()]
    messages += list(scenario.traffic(requests, heartbeats_per_worker=max(1, requests // 10)))
    probes = scenario.probes()
    producer = bus.producer()
    total = len(messages) + len(probes)
    try:
        for done, message in enumerate(messages, 1):
            producer.send(settings.bus.events_topic, message.key.encode(), message.value)
            if done % 100 == 0:
                progress("produce signed events", done, total)
        for probe in probes:
            producer.send(settings.bus.events_topic, probe.key, probe.value)
        producer.flush()
    finally:
        producer.close()
    progress("produce signed events", total, total)
    return total, probes


def _ingest(bus: Bus, store: EventStore, settings: Settings, total: int, progress: Progress) -> Counter[str]:
    ingestor = Ingestor(bus, store, ingest_config(settings))
    idle_since = time.monotonic()

    def on_batch(stats: Counter[str]) -> None:
        nonlocal idle_since
        idle_since = time.monotonic()
        handled = sum(v for k, v in ingestor.stats.items() if k in ("stored", "duplicate") or k.startswith("rejected:"))
        progress("ingest", min(handled, total), total)

    ingestor.run(lambda: time.monotonic() - idle_since > 1.5, on_batch)
    progress("ingest", total, total)
    return ingestor.stats


def _dead_letters(bus: Bus, settings: Settings) -> Counter[str]:
    return Counter(letter.reason for letter in read_dead_letters(bus, settings.bus.dlq_topic))
