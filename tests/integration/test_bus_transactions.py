"""The bus port's transactional producer and compacted-topic reads, on Kafka and embedded."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from indexer.bus.base import COMPACTED, LARGE_RECORDS, Bus, ProducerFenced
from indexer.bus.embedded import EmbeddedBus
from indexer.bus.kafka import KafkaBus
from masa.errors import MasaError, RetryableError


@pytest.fixture(params=["embedded", "kafka"])
def bus(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[Bus, str, str]]:
    if request.param == "embedded":
        yield EmbeddedBus(tmp_path / "bus.sqlite"), "events", "checkpoints"
        return
    topics = request.getfixturevalue("kafka_topics")
    yield KafkaBus(topics.bootstrap_servers), topics.name("events"), topics.name("checkpoints")


def create(bus: Bus, events: str, checkpoints: str) -> None:
    bus.ensure_topics({events: 3})
    bus.ensure_topics({checkpoints: 1}, {checkpoints: COMPACTED | LARGE_RECORDS})


def values(bus: Bus, topic: str) -> list[bytes]:
    return sorted(r.value for r in bus.read_all(topic))


def test_a_commit_shows_every_record_of_every_topic_and_an_abort_none(bus):
    bus, events, checkpoints = bus
    create(bus, events, checkpoints)
    producer = bus.transactional_producer("t1")
    for i in range(10):
        producer.send(events, f"k{i}".encode(), f"e{i}".encode())
    producer.send(checkpoints, b"me", b"cp1")
    producer.commit()
    producer.send(events, b"k0", b"aborted")
    producer.send(checkpoints, b"me", b"cp-aborted")
    producer.abort()
    producer.send(events, b"k0", b"never committed")
    producer.close()
    assert values(bus, events) == sorted(f"e{i}".encode() for i in range(10))
    assert bus.latest(checkpoints, b"me").value == b"cp1"


def test_a_new_producer_fences_the_old_one_and_drops_its_open_transaction(bus):
    bus, events, checkpoints = bus
    create(bus, events, checkpoints)
    old = bus.transactional_producer("t2")
    old.send(events, b"k", b"committed")
    old.commit()
    old.send(events, b"k", b"zombie")
    new = bus.transactional_producer("t2")
    # Kafka 4 reports the fencing as an invalid epoch, which kafka-python retries: either way
    # the zombie's commit fails and nothing of its transaction shows
    with pytest.raises((ProducerFenced, RetryableError)):
        old.send(events, b"k", b"zombie again")
        old.commit()
    with contextlib.suppress(MasaError):
        old.close()
    new.send(events, b"k", b"new")
    new.commit()
    new.close()
    assert values(bus, events) == [b"committed", b"new"]


def test_latest_reads_the_last_committed_value_per_key(bus):
    bus, events, checkpoints = bus
    create(bus, events, checkpoints)
    producer = bus.transactional_producer("t3")
    producer.send(checkpoints, b"old", b"written first")
    producer.commit()
    for i in range(40):  # with the transaction markers, 80 offsets: past the first look back
        producer.send(checkpoints, b"a", str(i).encode())
        producer.commit()
    producer.send(checkpoints, b"a", b"aborted")
    producer.abort()
    producer.close()
    assert bus.latest(checkpoints, b"a").value == b"39"
    assert bus.latest(checkpoints, b"old").value == b"written first"
    assert bus.latest(checkpoints, b"new") is None


def test_latest_waits_for_transactions_open_when_it_starts(bus):
    """Another indexer's open transaction must not hide our last checkpoint behind it."""
    bus, events, checkpoints = bus
    create(bus, events, checkpoints)
    ours, theirs = bus.transactional_producer("ours"), bus.transactional_producer("theirs")
    theirs.send(checkpoints, b"theirs", b"t1")
    ours.send(checkpoints, b"ours", b"o1")
    ours.commit()
    ours.close()
    timer = threading.Timer(1.0, theirs.commit)
    timer.start()
    try:
        assert bus.latest(checkpoints, b"ours").value == b"o1"
    finally:
        timer.join()
        theirs.close()


def test_reading_to_the_end_does_not_wait_on_transaction_markers(bus):
    bus, events, checkpoints = bus
    create(bus, events, checkpoints)
    producer = bus.transactional_producer("t4")
    for i in range(3):
        producer.send(events, b"k", str(i).encode())
        producer.commit()
    producer.close()
    started = time.monotonic()
    assert values(bus, events) == [b"0", b"1", b"2"]
    assert time.monotonic() - started < 3


def test_a_large_checkpoint_fits(bus):
    bus, events, checkpoints = bus
    create(bus, events, checkpoints)
    producer = bus.transactional_producer("t5")
    big = bytes(range(256)) * (3 * 4096)  # 3 MiB
    producer.send(checkpoints, b"me", big)
    producer.commit()
    producer.close()
    assert bus.latest(checkpoints, b"me").value == big
