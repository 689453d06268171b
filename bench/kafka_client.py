"""How fast can ingest move events through Kafka with kafka-python on this machine?

Starts a real Apache Kafka broker (tests/support/services.py), produces N keyed messages
of about S bytes into a 6-partition topic with a few producer settings, then reads them
back with a few consumer settings (assign + seek to the beginning, as ingest does with the
offsets it keeps in PostgreSQL). Each consumer setting runs ``--repeat`` times; the table
shows the median and the best. Records stay bytes: JSON decoding is ingest's own cost.

    .venv/bin/python bench/kafka_client.py [--messages 100000] [--size 300] [--repeat 3]

Writes bench/results/kafka_client.json (or ``--output``).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from contextlib import closing
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a script: make the repo importable
    sys.path.insert(0, str(ROOT))

import kafka  # noqa: E402
from kafka import KafkaConsumer, KafkaProducer, TopicPartition  # noqa: E402
from kafka.record import util as record_util  # noqa: E402

from tests.support.services import KafkaBroker, kafka_version  # noqa: E402

PARTITIONS = 6

PRODUCERS: dict[str, dict[str, Any]] = {
    "defaults (acks=1, linger 0, 16 KiB batches)": {},
    "acks=all, linger 5 ms, 256 KiB batches": {
        "acks": "all",
        "linger_ms": 5,
        "batch_size": 256 * 1024,
    },
    "acks=all, linger 20 ms, 1 MiB batches": {
        "acks": "all",
        "linger_ms": 20,
        "batch_size": 1024 * 1024,
        "max_request_size": 4 * 1024 * 1024,
    },
}

_BIG_FETCH = {
    "max_partition_fetch_bytes": 8 * 1024 * 1024,
    "fetch_max_bytes": 64 * 1024 * 1024,
}
CONSUMERS: dict[str, dict[str, Any]] = {
    "defaults (500 records/poll, 1 MiB/partition)": {},
    "max_poll_records=5000": {"max_poll_records": 5000},
    "5000/poll, 8 MiB/partition, 64 MiB/fetch": {"max_poll_records": 5000, **_BIG_FETCH},
    "20000/poll, 8 MiB/partition, 64 MiB/fetch": {"max_poll_records": 20000, **_BIG_FETCH},
    "5000/poll, big fetch, fetch_min_bytes=1 MiB": {
        "max_poll_records": 5000,
        "fetch_min_bytes": 1024 * 1024,
        "fetch_max_wait_ms": 100,
        **_BIG_FETCH,
    },
    "5000/poll, big fetch, check_crcs=False": {
        "max_poll_records": 5000,
        "check_crcs": False,
        **_BIG_FETCH,
    },
}


def _messages(count: int, size: int) -> list[tuple[bytes, bytes]]:
    """Keys like aggregate ids (many messages per key), values of ``size`` JSON-ish bytes."""
    out = []
    for i in range(count):
        key = f"request-{i % 5000:06d}".encode()
        head = f'{{"seq":{i},"type":"request.completed","pad":"'.encode()
        out.append((key, head + b"x" * max(0, size - len(head) - 2) + b'"}'))
    return out


def produce(
    bootstrap: str, topic: str, messages: list[tuple[bytes, bytes]], **config: Any
) -> float:
    """Seconds to send every message and have all of them acknowledged."""
    producer = KafkaProducer(bootstrap_servers=bootstrap, **config)
    with closing(producer):
        producer.partitions_for(topic)  # metadata first: measure sending, not discovery
        began = time.perf_counter()
        for key, value in messages:
            producer.send(topic, key=key, value=value)
        producer.flush()
        return time.perf_counter() - began


def consume(bootstrap: str, topic: str, count: int, **config: Any) -> float:
    """Seconds from the first poll to the ``count``-th record, reading all partitions."""
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, **config)
    with closing(consumer):
        consumer.assign([TopicPartition(topic, p) for p in range(PARTITIONS)])
        consumer.seek_to_beginning()
        seen = 0
        began = time.perf_counter()
        while seen < count:
            for records in consumer.poll(timeout_ms=1000).values():
                seen += len(records)
            if time.perf_counter() - began > 300:
                raise TimeoutError(f"read {seen} of {count} in 300 s")
        return time.perf_counter() - began


def _row(name: str, count: int, size: int, seconds: list[float]) -> dict[str, Any]:
    median, best = statistics.median(seconds), min(seconds)
    return {
        "setting": name,
        "seconds": [round(s, 3) for s in seconds],
        "msgs_per_s_median": round(count / median),
        "msgs_per_s_best": round(count / best),
        "mb_per_s_median": round(count * size / median / 1e6, 2),
    }


def run(count: int, size: int, repeat: int) -> dict[str, Any]:
    messages = _messages(count, size)
    with KafkaBroker(heap="1g") as broker:
        bootstrap = broker.bootstrap_servers
        produced = []
        for i, (name, config) in enumerate(PRODUCERS.items()):
            topic = broker.create_topic(f"bench-produce-{i}", PARTITIONS)
            seconds = produce(bootstrap, topic, messages, **config)
            produced.append(_row(name, count, size, [seconds]))
        source = "bench-produce-0"
        consumed = []
        for name, config in CONSUMERS.items():
            seconds = [consume(bootstrap, source, count, **config) for _ in range(repeat)]
            consumed.append(_row(name, count, size, seconds))
        broker_start = broker.start_seconds
    return {
        "messages": count,
        "value_bytes": size,
        "partitions": PARTITIONS,
        "repeat": repeat,
        "kafka": kafka_version(),
        "kafka_python": kafka.__version__,
        "crc32c_c_extension": record_util.crc32c_c is not None,
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "broker_start_s": round(broker_start or 0.0, 2),
        "load_avg_after": os.getloadavg(),
        "produce": produced,
        "consume": consumed,
    }


def _print_table(title: str, rows: list[dict[str, Any]]) -> None:
    print(f"\n{title}")
    print(f"  {'setting':<48} {'msg/s median':>13} {'msg/s best':>11} {'MB/s':>7}")
    for row in rows:
        print(
            f"  {row['setting']:<48} {row['msgs_per_s_median']:>13,} "
            f"{row['msgs_per_s_best']:>11,} {row['mb_per_s_median']:>7}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=100_000)
    parser.add_argument("--size", type=int, default=300)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--output", type=Path, default=ROOT / "bench/results/kafka_client.json")
    args = parser.parse_args()
    result = run(args.messages, args.size, args.repeat)
    head = (
        f"kafka-python {result['kafka_python']} -> Apache Kafka {result['kafka']}, "
        f"{args.messages:,} x {args.size} B, {PARTITIONS} partitions, "
        f"crc32c C extension: {result['crc32c_c_extension']}"
    )
    print(head)
    _print_table("produce (send all, then flush)", result["produce"])
    _print_table(f"consume (assign + seek, {args.repeat} runs)", result["consume"])
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(result, indent=2) + "\n")
    print(f"\nwrote {args.output}")


if __name__ == "__main__":
    main()
