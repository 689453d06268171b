"""The ingest suite, run against every bus x store combination (see conftest.BACKENDS)."""

from __future__ import annotations

import itertools
import random
from collections import Counter, defaultdict
from datetime import UTC, datetime, timedelta

import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from indexer.ingest.dlq import replay
from masa.app.synthetic import Scenario
from tests.integration.fuzz import CORRUPTIONS, corrupt


def scenario(harness, seed=1) -> Scenario:
    return Scenario(harness.people, seed=seed, start=datetime.now(UTC) - timedelta(minutes=2))


def interleave(messages, rng):
    """A random merge of each producer's messages, keeping every producer's own order
    (Kafka keeps a producer's order per key; across producers anything goes)."""
    queues = defaultdict(list)
    for m in messages:
        queues[orjson.loads(m.value)["producer"]].append(m)
    merged = []
    while queues:
        producer = rng.choice(sorted(queues))
        merged.append(queues[producer].pop(0))
        if not queues[producer]:
            del queues[producer]
    return merged


def test_every_probe_meets_its_expected_fate(harness):
    s = scenario(harness)
    setup = [*s.stakes(), *s.sources()]
    probes = s.probes()
    harness.send(setup)
    harness.send(probes)
    stats = harness.ingest()

    expected_reasons = Counter(p.expect for p in probes if p.expect not in ("stored", "duplicate"))
    assert Counter(letter.reason for letter in harness.dead_letters()) == expected_reasons
    stored = harness.stored_ids()
    assert len(stored) == len(set(stored)) == len(setup) + sum(p.expect == "stored" for p in probes)
    assert stats["duplicate"] == 1


def test_producer_retries_are_stored_once(harness):
    s = scenario(harness)
    messages = [*s.stakes(), *s.sources(), *s.traffic(requests=40, heartbeats_per_worker=5)]
    rng = random.Random(5)
    retried = [m for m in messages for _ in range(rng.choice([1, 2, 3]))]
    harness.send(retried)
    stats = harness.ingest()
    stored = harness.stored_ids()
    assert sorted(stored) == sorted(m.event_id for m in messages)
    assert stats["duplicate"] == len(retried) - len(messages)
    assert harness.dead_letters() == []


def test_out_of_order_arrival_is_held_then_resolved(harness):
    """Completions before requests and heartbeats before stakes: nothing valid is dropped."""
    s = scenario(harness)
    stakes = s.stakes()
    traffic = [*s.sources(), *s.traffic(requests=30, heartbeats_per_worker=3)]
    harness.send(interleave(traffic, random.Random(9)))
    harness.send(stakes)
    stats = harness.ingest()
    assert stats["held"] > 0
    assert sorted(harness.stored_ids()) == sorted(m.event_id for m in [*stakes, *traffic])
    assert harness.dead_letters() == []
    for versions in harness.streams().values():
        assert versions == list(range(1, len(versions) + 1))


def test_restart_resumes_exactly_where_the_store_says(harness):
    s = scenario(harness)
    first = [*s.stakes(), *s.traffic(requests=20, heartbeats_per_worker=2)]
    harness.send(first)
    harness.ingest()
    second = [m for _ in range(20) for m in s.request()]
    harness.send(second)
    stats = harness.ingest()
    assert stats["stored"] == len(second)
    assert sorted(harness.stored_ids()) == sorted(m.event_id for m in first + second)


def test_events_from_a_never_staked_producer_wait_then_reach_the_dlq_and_replay(harness):
    s = scenario(harness)
    late = harness.people.workers[0]
    stakes = [m for m in s.stakes() if m.key != late.address.lower()]
    beats = s.heartbeats(late, 3)
    harness.send([*stakes, *beats])
    impatient = harness.with_ingest(hold_timeout_s=0.5)
    impatient.ingest(idle_s=2.5)
    letters = harness.dead_letters()
    assert Counter(letter.reason for letter in letters) == {"not_staked": 3}
    assert sorted(harness.stored_ids()) == sorted(m.event_id for m in stakes)

    harness.send([s.stake(late, 1)])
    harness.ingest()
    store = harness.store()
    try:
        replayed = replay(harness.bus, store, letters)
    finally:
        store.close()
    assert replayed == 3
    harness.ingest()
    assert {m.event_id for m in beats} <= set(harness.stored_ids())
    assert len(harness.dead_letters()) == 3


def test_two_ingestors_split_the_partitions_and_store_everything_once(harness):
    import threading

    s = scenario(harness)
    messages = [*s.stakes(), *s.sources(), *s.traffic(requests=60, heartbeats_per_worker=5)]
    harness.send(messages)
    results = []

    def everything_stored() -> bool:
        return harness.stored_count() >= len(messages)

    threads = [
        threading.Thread(target=lambda: results.append(harness.ingest(until=everything_stored)))
        for _ in range(2)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    stored = harness.stored_ids()
    assert sorted(stored) == sorted(m.event_id for m in messages)
    assert sum(r["stored"] for r in results) == len(messages)


FRESH_SEEDS = itertools.count(1000)


@settings(
    max_examples=8,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    st.lists(
        st.tuples(st.sampled_from(CORRUPTIONS), st.integers(0, 10**6)), min_size=1, max_size=12
    ),
    st.randoms(use_true_random=False),
)
def test_fuzzed_messages_go_to_the_dlq_and_valid_ones_around_them_are_stored(
    harness, corruptions, rng
):
    s = scenario(harness, seed=next(FRESH_SEEDS))  # hypothesis may repeat an rng; ids must not
    valid = [*s.stakes(), *s.traffic(requests=5, heartbeats_per_worker=0)]
    bad = [corrupt(kind, rng.choice(valid), n, harness.people) for kind, n in corruptions]
    mixed = valid + bad
    rng.shuffle(mixed)
    before_ids = set(harness.stored_ids())
    before_letters = {letter.id for letter in harness.dead_letters()}
    harness.send(mixed)
    harness.ingest(idle_s=1.0)
    new_ids = set(harness.stored_ids()) - before_ids
    assert new_ids == {m.event_id for m in valid}
    letters = [letter for letter in harness.dead_letters() if letter.id not in before_letters]
    assert Counter(letter.reason for letter in letters) == Counter(b.expect for b in bad)
