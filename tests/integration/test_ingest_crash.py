"""Invariant 1 under fire: `masa ingest` is SIGKILLed at random moments while it consumes a
counted stream; after each kill it is restarted. The store must end up holding every event
exactly once, with gapless stream versions and nothing in the dead-letter topic."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from masa.synthetic import Participants, Scenario

pytestmark = pytest.mark.slow

EVENTS = 20_000
KILLS = 10
MASA = str(Path(sys.executable).parent / "masa")


@pytest.fixture(scope="module")
def counted_stream():
    """~20k valid signed events (stakes first), generated once for every backend."""
    people = Participants.from_seed(2024, workers=20, oracles=5, contributors=5)
    s = Scenario(people, seed=2024, start=datetime.now(UTC) - timedelta(minutes=30))
    messages = [*s.stakes(), *s.sources()]
    messages += list(s.traffic(requests=(EVENTS - 3000) // 3 + 1, heartbeats_per_worker=150))
    assert len(messages) >= EVENTS
    return people, messages


@pytest.mark.parametrize("harness", [("kafka", "postgres"), ("embedded", "sqlite")], indirect=True, ids=["kafka-postgres", "embedded-sqlite"])
def test_sigkilled_ingest_stores_every_event_exactly_once(harness, counted_stream):
    people, messages = counted_stream
    harness = harness.with_people(people).with_ingest(batch_max_events=500, max_clock_skew_s=7200)
    harness.send(messages)
    env = {**os.environ, **harness.env()}
    rng = random.Random(7)
    progress = []
    for _ in range(KILLS):
        child = subprocess.Popen([MASA, "ingest"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        time.sleep(rng.uniform(2.0, 4.5))
        child.send_signal(signal.SIGKILL)
        child.wait()
        progress.append(harness.stored_count())
    final = subprocess.run([MASA, "ingest", "--until-idle", "3"], env=env, capture_output=True, timeout=600)
    assert final.returncode == 0, final.stderr.decode()[-2000:]

    killed_mid_stream = sum(1 for before, after in zip([0, *progress], progress) if 0 < after < len(messages) and after > before)
    assert killed_mid_stream >= KILLS // 2, f"kills did not land mid-stream: {progress}"
    stored = harness.stored_ids()
    assert Counter(stored) == Counter(m.event_id for m in messages)
    for versions in harness.streams().values():
        assert versions == list(range(1, len(versions) + 1))
    assert harness.dead_letters() == []
