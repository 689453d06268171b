"""Apache Kafka through kafka-python. Offsets that matter live in our store; Kafka's
committed offsets are written only by consumers without a store (workers)."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator, Mapping
from typing import Any, Generic, Protocol, TypeVar

import kafka
import kafka.errors
from kafka.admin import KafkaAdminClient, NewTopic

from indexer.bus.base import (
    MAX_RECORD_BYTES,
    MAX_TRANSACTIONAL_RECORD_BYTES,
    Bus,
    Consumer,
    Producer,
    ProducerFenced,
    RebalanceListener,
    Record,
    TopicPartition,
    TransactionalProducer,
)
from masa.errors import ConfigurationError, PermanentError, RetryableError

# bench/kafka_client.py: with crc32c installed, 5000 records a poll and the default fetch
# sizes read fastest here (~120k records/s); larger fetches were slower.
_CONSUMER_TUNING: dict[str, Any] = {"max_poll_records": 5000, "fetch_max_wait_ms": 100}


class _Closable(Protocol):
    def close(self) -> None: ...


C = TypeVar("C", bound=_Closable)


@contextlib.contextmanager
def _mapped(fenced: str | None = None) -> Iterator[None]:
    """Translate kafka-python's errors at the adapter boundary, once for every call: a fenced
    transactional producer is ``ProducerFenced`` (``fenced`` names it), every other
    ``KafkaError`` is ``RetryableError`` (broker unavailable, timeouts, rebalances)."""
    try:
        yield
    except kafka.errors.ProducerFencedError as exc:
        raise ProducerFenced(f"{fenced}: {exc}" if fenced else str(exc)) from exc
    except kafka.errors.KafkaError as exc:
        text, kind = str(exc), type(exc).__name__
        text = text if text.startswith(kind) else f"{kind}: {text}"
        raise RetryableError(f"kafka: {text}") from exc


class KafkaBus(Bus):
    def __init__(
        self,
        bootstrap_servers: str,
        *,
        client_id: str = "masa",
        replication_factor: int = 1,
        session_timeout_s: float = 10.0,
        connect_timeout_s: float = 10.0,
    ) -> None:
        self.bootstrap_servers = bootstrap_servers.split(",")
        self.client_id = client_id
        self.replication_factor = replication_factor
        self.session_timeout_ms = int(session_timeout_s * 1000)
        # One attempt to reach the brokers takes at most connect_timeout_s (the caller retries
        # within its budget; kafka-python waits 30 s); a lost broker is tried again at least
        # every 8 s, as every other service (kafka-python backs off up to 30 s).
        self.timing: dict[str, Any] = {
            "bootstrap_timeout_ms": int(connect_timeout_s * 1000),
            "reconnect_backoff_max_ms": 8000,
        }
        self._partitions: dict[str, int] = {}

    def ensure_topics(
        self, topics: Mapping[str, int], configs: Mapping[str, Mapping[str, str]] | None = None
    ) -> None:
        with self._admin() as admin, _mapped():
            existing = set(admin.list_topics())
            missing = [
                NewTopic(
                    name,
                    partitions,
                    self.replication_factor,
                    topic_configs=dict((configs or {}).get(name, {})),
                )
                for name, partitions in topics.items()
                if name not in existing
            ]
            if missing:
                with contextlib.suppress(kafka.errors.TopicAlreadyExistsError):
                    admin.create_topics(missing)

    def partitions(self, topic: str) -> int:
        if topic not in self._partitions:
            with self._admin() as admin, _mapped():
                described = admin.describe_topics([topic])
            if not described or described[0].get("error_code", 0) != 0:
                raise ConfigurationError(f"topic {topic!r} does not exist")
            self._partitions[topic] = len(described[0]["partitions"])
        return self._partitions[topic]

    def end_offsets(self, topic: str) -> dict[TopicPartition, int]:
        with self._raw_consumer(group=None) as consumer, _mapped():
            tps = [kafka.TopicPartition(topic, p) for p in range(self.partitions(topic))]
            ends = consumer.end_offsets(tps)
        return {TopicPartition(tp.topic, tp.partition): off for tp, off in ends.items()}

    def producer(self) -> Producer:
        return KafkaProducer(self)

    def consumer(self, group: str, *, instance_id: str | None = None) -> Consumer:
        return KafkaConsumer(self._raw_consumer(group or None, instance_id=instance_id).client)

    def transactional_producer(self, transactional_id: str) -> TransactionalProducer:
        return KafkaTransactionalProducer(self, transactional_id)

    def stable_end_offset(self, partition: TopicPartition, timeout_s: float = 10.0) -> int:
        """Wait until the last stable offset passes the high watermark seen now: a
        transaction of another producer open now would otherwise hide our later records."""
        tp = kafka.TopicPartition(*partition)
        high = self._end_offset(tp, "read_uncommitted")
        deadline = time.monotonic() + timeout_s
        while (stable := self._end_offset(tp, "read_committed")) < high:
            if time.monotonic() > deadline:
                raise RetryableError(f"{partition}: a transaction stayed open for {timeout_s:g} s")
            time.sleep(0.1)
        return stable

    def _end_offset(self, tp: kafka.TopicPartition, isolation: str) -> int:
        with self._raw_consumer(None, isolation) as consumer, _mapped():
            return int(consumer.end_offsets([tp])[tp])

    def _admin(self) -> _Closing[KafkaAdminClient]:
        with _mapped():
            return _Closing(
                KafkaAdminClient(
                    bootstrap_servers=self.bootstrap_servers,
                    client_id=f"{self.client_id}-admin",
                    **self.timing,
                )
            )

    def _raw_consumer(
        self, group: str | None, isolation: str = "read_committed", instance_id: str | None = None
    ) -> _Closing[kafka.KafkaConsumer]:
        with _mapped():
            return _Closing(
                kafka.KafkaConsumer(
                    bootstrap_servers=self.bootstrap_servers,
                    client_id=self.client_id,
                    group_id=group,
                    group_instance_id=instance_id,
                    enable_auto_commit=False,
                    auto_offset_reset="earliest",
                    isolation_level=isolation,
                    session_timeout_ms=self.session_timeout_ms,
                    heartbeat_interval_ms=max(1000, self.session_timeout_ms // 3),
                    **_CONSUMER_TUNING,
                    **self.timing,
                )
            )


class _Closing(Generic[C]):
    """A kafka-python client closed when the ``with`` block ends, however it ends."""

    def __init__(self, client: C) -> None:
        self.client = client

    def __enter__(self) -> C:
        return self.client

    def __exit__(self, *exc_info: object) -> None:
        self.client.close()


class KafkaProducer(Producer):
    """Idempotent producer (acks=all): a retried send never duplicates a record."""

    def __init__(self, bus: KafkaBus) -> None:
        with _mapped():
            self._producer = kafka.KafkaProducer(
                bootstrap_servers=bus.bootstrap_servers,
                client_id=bus.client_id,
                acks="all",
                enable_idempotence=True,
                linger_ms=5,
                batch_size=512 * 1024,
                max_request_size=MAX_RECORD_BYTES,
                **bus.timing,
            )
        self._inflight: list[Any] = []  # kafka-python's FutureRecordMetadata

    def send(self, topic: str, key: bytes | None, value: bytes) -> None:
        if len(value) + len(key or b"") > MAX_RECORD_BYTES:
            raise PermanentError(f"record of {len(value)} bytes exceeds {MAX_RECORD_BYTES} bytes")
        with _mapped():
            self._inflight.append(self._producer.send(topic, key=key, value=value))

    def flush(self, timeout_s: float = 30.0) -> None:
        inflight, self._inflight = self._inflight, []
        with _mapped():
            self._producer.flush(timeout=timeout_s)
            for future in inflight:
                future.get(timeout=timeout_s)

    def close(self) -> None:
        try:
            self.flush()
        finally:
            self._producer.close()


class _Listener(kafka.ConsumerRebalanceListener):  # type: ignore[misc]  # untyped base (no stubs)
    def __init__(self, consumer: kafka.KafkaConsumer, listener: RebalanceListener) -> None:
        self._consumer = consumer
        self._listener = listener

    def on_partitions_revoked(self, revoked: Any) -> None:
        self._listener.on_revoked(sorted(TopicPartition(tp.topic, tp.partition) for tp in revoked))

    def on_partitions_assigned(self, assigned: Any) -> None:
        ours = sorted(TopicPartition(tp.topic, tp.partition) for tp in assigned)
        starts = self._listener.on_assigned(ours)
        for tp in ours:
            start = starts.get(tp)
            if start is not None:
                self._consumer.seek(kafka.TopicPartition(*tp), start)


class KafkaConsumer(Consumer):
    def __init__(self, consumer: kafka.KafkaConsumer) -> None:
        self._consumer = consumer

    def subscribe(self, topics: list[str], listener: RebalanceListener) -> None:
        self._consumer.subscribe(topics, listener=_Listener(self._consumer, listener))

    def assign(self, offsets: Mapping[TopicPartition, int]) -> None:
        self._consumer.assign([kafka.TopicPartition(*tp) for tp in offsets])
        for tp, offset in offsets.items():
            self._consumer.seek(kafka.TopicPartition(*tp), offset)

    def seek(self, partition: TopicPartition, offset: int) -> None:
        self._consumer.seek(kafka.TopicPartition(*partition), offset)

    def poll(self, max_records: int, timeout_s: float) -> list[Record]:
        with _mapped():
            batches = self._consumer.poll(timeout_ms=int(timeout_s * 1000), max_records=max_records)
        return [
            Record(r.topic, r.partition, r.offset, r.key, r.value, r.timestamp)
            for records in batches.values()
            for r in records
        ]

    def commit(self, offsets: Mapping[TopicPartition, int]) -> None:
        with _mapped():
            self._consumer.commit(
                {
                    kafka.TopicPartition(*tp): kafka.structs.OffsetAndMetadata(off, "", -1)
                    for tp, off in offsets.items()
                }
            )

    def assignment(self) -> set[TopicPartition]:
        return {TopicPartition(tp.topic, tp.partition) for tp in self._consumer.assignment()}

    def position(self, partition: TopicPartition) -> int:
        with _mapped():
            return int(self._consumer.position(kafka.TopicPartition(*partition)))

    def close(self) -> None:
        self._consumer.close(autocommit=False)


class KafkaTransactionalProducer(TransactionalProducer):
    """A Kafka transaction per commit. ``init_transactions`` fences earlier producers with
    the same id and aborts (or completes) their open transaction before this one starts."""

    def __init__(self, bus: KafkaBus, transactional_id: str) -> None:
        with _mapped(fenced=f"transactional id {transactional_id!r}"):
            self._producer = kafka.KafkaProducer(
                bootstrap_servers=bus.bootstrap_servers,
                client_id=bus.client_id,
                transactional_id=transactional_id,
                enable_idempotence=True,
                acks="all",
                linger_ms=5,
                batch_size=512 * 1024,
                max_request_size=MAX_TRANSACTIONAL_RECORD_BYTES + 64 * 1024,
                **bus.timing,
            )
            self._producer.init_transactions()
        self._open = False

    def send(self, topic: str, key: bytes | None, value: bytes) -> None:
        if len(value) + len(key or b"") > MAX_TRANSACTIONAL_RECORD_BYTES:
            raise PermanentError(
                f"record of {len(value)} bytes exceeds {MAX_TRANSACTIONAL_RECORD_BYTES}"
            )
        with _mapped():
            if not self._open:
                self._producer.begin_transaction()
                self._open = True
            self._producer.send(topic, key=key, value=value)

    def commit(self) -> None:
        if not self._open:
            return
        self._open = False
        with _mapped():
            self._producer.commit_transaction()

    def abort(self) -> None:
        if not self._open:
            return
        self._open = False
        with _mapped():
            self._producer.abort_transaction()

    def close(self) -> None:
        try:
            self.abort()
        finally:
            self._producer.close(timeout=5)
