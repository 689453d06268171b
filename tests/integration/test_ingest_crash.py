"""Invariant 1 under fire: `masa ingest` is SIGKILLed at random moments while it consumes a
counted stream; after each kill it is restarted. The store must end up holding every event
exactly once, with gapless stream versions and nothing in the dead-letter topic."""

from __future__ import annotations

import operator
import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path

import pytest

from masa.app.synthetic import Participants, Scenario

pytestmark = pytest.mark.slow

EVENTS = 25_000
KILLS = 10
MASA = str(Path(sys.executable).parent / "masa")


def wait_for(condition, value, timeout_s: float) -> None:
    """Until ``condition(value())`` holds."""
    deadline = time.monotonic() + timeout_s
    while not condition(value()):
        assert time.monotonic() < deadline, "ingest made no progress"
        time.sleep(0.05)


@pytest.fixture(scope="module")
def counted_stream():
    """~25k valid signed events (stakes first), generated once for every backend."""
    people = Participants.from_seed(2024, workers=20, oracles=5, contributors=5)
    s = Scenario(people, seed=2024, start=datetime.now(UTC) - timedelta(minutes=30))
    messages = [*s.stakes(), *s.sources()]
    messages += list(s.traffic(requests=EVENTS // 3, heartbeats_per_worker=150))
    assert len(messages) >= EVENTS
    return people, messages


@pytest.mark.parametrize(
    "harness",
    [("kafka", "postgres"), ("embedded", "sqlite")],
    indirect=True,
    ids=["kafka-postgres", "embedded-sqlite"],
)
def test_sigkilled_ingest_stores_every_event_exactly_once(harness, counted_stream):
    people, messages = counted_stream
    harness = harness.with_people(people).with_ingest(
        batch_max_events=200, max_clock_skew_s=7200, instance_id="ingest-1"
    )
    harness.send(messages)
    env = {**os.environ, **harness.env()}
    rng = random.Random(7)
    kills_mid_stream = 0
    for _ in range(KILLS):
        child = subprocess.Popen(
            [MASA, "ingest"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        wait_for(
            partial(operator.lt, harness.stored_count()), harness.stored_count, timeout_s=60
        )  # it is consuming now
        time.sleep(rng.uniform(0.0, 1.0))  # then kill at a random moment of its work
        child.send_signal(signal.SIGKILL)
        child.wait()
        kills_mid_stream += harness.stored_count() < len(messages)
    assert kills_mid_stream == KILLS, "the stream ran out before the last kill; make it longer"
    final = subprocess.run(
        [MASA, "ingest", "--until-idle", "3"], env=env, capture_output=True, timeout=600
    )
    assert final.returncode == 0, final.stderr.decode()[-2000:]

    stored = harness.stored_ids()
    assert Counter(stored) == Counter(m.event_id for m in messages)
    for versions in harness.streams().values():
        assert versions == list(range(1, len(versions) + 1))
    assert harness.dead_letters() == []
