"""The real servers behave as the rest of the suite assumes they do.

If these fail, every PostgreSQL or Kafka test after them would fail for reasons that
have nothing to do with the code under test; they are the first thing to read.
"""

from __future__ import annotations

import subprocess
import time
from contextlib import closing
from pathlib import Path

import psycopg
import pytest
from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.partitioner.default import murmur2

from tests.support.fixtures import KafkaTopics
from tests.support.services import KafkaBroker, PgDatabase, PostgresServer, find_java

KEYS = [f"request-{i}".encode() for i in range(60)] + [b"", b"a", b"\x00\xff", "ключ".encode()]


def test_postgres_round_trip(pg_database: PgDatabase) -> None:
    with psycopg.connect(pg_database.dsn) as conn:
        tables = conn.execute("SELECT count(*) FROM pg_tables WHERE schemaname = 'public'")
        assert tables.fetchone() == (0,), "each test must get an empty database"
        conn.execute("CREATE TABLE events (id bigint PRIMARY KEY, body jsonb NOT NULL)")
        conn.execute("INSERT INTO events VALUES (1, %s::jsonb)", ['{"type": "created"}'])
        conn.commit()
    with psycopg.connect(pg_database.dsn) as conn:
        row = conn.execute("SELECT id, body->>'type', current_database() FROM events").fetchone()
    assert row == (1, "created", pg_database.dbname)


def test_postgres_tcp_needs_the_password(postgres_server: PostgresServer) -> None:
    """Production connects with a password; code that forgets it must fail here too."""
    info = postgres_server.info
    with pytest.raises(psycopg.OperationalError, match="password"):
        psycopg.connect(
            f"host={info.host} port={info.port} user={info.user} password=wrong dbname=postgres"
        ).close()


def _expected_partition(key: bytes, partitions: int) -> int:
    return (murmur2(key) & 0x7FFFFFFF) % partitions


def _produce(bootstrap: str, topic: str, messages: list[tuple[bytes, bytes]]) -> list[int]:
    """Send and wait for every acknowledgement; returns the partition of each message."""
    with closing(KafkaProducer(bootstrap_servers=bootstrap, acks="all")) as producer:
        futures = [producer.send(topic, key=key, value=value) for key, value in messages]
        return [future.get(timeout=30).partition for future in futures]


def _read(bootstrap: str, topic: str, partitions: int, count: int) -> dict[int, list[bytes]]:
    """Read ``count`` messages from the start of every partition, without a group."""
    found: dict[int, list[bytes]] = {}
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    with closing(consumer):
        consumer.assign([TopicPartition(topic, p) for p in range(partitions)])
        consumer.seek_to_beginning()
        deadline = time.monotonic() + 30
        while sum(map(len, found.values())) < count and time.monotonic() < deadline:
            for tp, records in consumer.poll(timeout_ms=500).items():
                found.setdefault(tp.partition, []).extend(r.key for r in records)
    return found


def test_keys_land_where_the_default_partitioner_says(kafka_topics: KafkaTopics) -> None:
    """Aggregate-keyed routing (DESIGN 4) relies on murmur2(key) % partitions."""
    topic = kafka_topics.create("routing", partitions=6)
    sent = _produce(kafka_topics.bootstrap_servers, topic, [(k, b"v") for k in KEYS])
    assert sent == [_expected_partition(key, 6) for key in KEYS]
    received = _read(kafka_topics.bootstrap_servers, topic, 6, len(KEYS))
    expected: dict[int, list[bytes]] = {}
    for key in KEYS:
        expected.setdefault(_expected_partition(key, 6), []).append(key)
    assert received == expected


_JAVA_PARTITIONER = """
import java.nio.charset.StandardCharsets;
import java.util.HexFormat;
import org.apache.kafka.common.utils.Utils;

public class Partition {
    public static void main(String[] args) {
        int partitions = Integer.parseInt(args[0]);
        for (int i = 1; i < args.length; i++) {
            byte[] key = args[i].equals("-") ? new byte[0] : HexFormat.of().parseHex(args[i]);
            System.out.println(Utils.toPositive(Utils.murmur2(key)) % partitions);
        }
    }
}
"""


def test_default_partitioner_matches_the_java_client(
    kafka_broker: KafkaBroker, tmp_path: Path
) -> None:
    """A Java producer (the usual oracle or worker client) must route keys the same way."""
    source = tmp_path / "Partition.java"
    source.write_text(_JAVA_PARTITIONER)
    args = [key.hex() or "-" for key in KEYS]
    classpath = f"{kafka_broker.libs}/*"
    done = subprocess.run(
        [find_java(), "-cp", classpath, str(source), "6", *args],
        capture_output=True, text=True, check=True, timeout=120,
    )  # fmt: skip
    assert [int(line) for line in done.stdout.split()] == [
        _expected_partition(key, 6) for key in KEYS
    ]


def _commit(bootstrap: str, tp: TopicPartition, group: str, offset: int) -> None:
    from kafka.structs import OffsetAndMetadata

    consumer = KafkaConsumer(bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False)
    with closing(consumer):
        consumer.assign([tp])
        consumer.commit({tp: OffsetAndMetadata(offset, "", -1)})


def _committed(bootstrap: str, tp: TopicPartition, group: str) -> int | None:
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False)
    with closing(consumer):
        return consumer.committed(tp)


def test_kill_and_restart_keep_acknowledged_messages(fresh_kafka_broker: KafkaBroker) -> None:
    """Crash tests rely on a SIGKILLed broker coming back with what it acknowledged."""
    broker = fresh_kafka_broker
    topic = broker.create_topic("crash", partitions=2)
    messages = [(f"k{i}".encode(), f"v{i}".encode()) for i in range(200)]
    _produce(broker.bootstrap_servers, topic, messages)
    tp = TopicPartition(topic, 0)
    _commit(broker.bootstrap_servers, tp, "ingest", 17)

    broker.kill()
    assert not broker.running
    broker.restart()

    assert _committed(broker.bootstrap_servers, tp, "ingest") == 17
    received = _read(broker.bootstrap_servers, topic, 2, len(messages))
    assert sorted(k for keys in received.values() for k in keys) == sorted(k for k, _ in messages)
    assert _produce(broker.bootstrap_servers, topic, [(b"k0", b"after")]) == [
        _expected_partition(b"k0", 2)
    ]
