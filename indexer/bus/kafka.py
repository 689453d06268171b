"""Apache Kafka through kafka-python. Offsets that matter live in our store; Kafka's
committed offsets are written only by consumers without a store (workers)."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Mapping
from concurrent.futures import Future
from typing import Any

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


def _retryable(exc: Exception) -> RetryableError:
    return RetryableError(f"kafka: {type(exc).__name__}: {exc}")


class KafkaBus(Bus):
    def __init__(
        self,
        bootstrap_servers: str,
        *,
        client_id: str = "masa",
        replication_factor: int = 1,
        session_timeout_s: float = 10.0,
    ) -> None:
        self.bootstrap_servers = bootstrap_servers.split(",")
        self.client_id = client_id
        self.replication_factor = replication_factor
        self.session_timeout_ms = int(session_timeout_s * 1000)
        self._partitions: dict[str, int] = {}

    def _admin(self) -> KafkaAdminClient:
        try:
            return KafkaAdminClient(
                bootstrap_servers=self.bootstrap_servers, client_id=f"{self.client_id}-admin"
            )
        except kafka.errors.KafkaError as exc:
            raise _retryable(exc) from exc

    def ensure_topics(
        self, topics: Mapping[str, int], configs: Mapping[str, Mapping[str, str]] | None = None
    ) -> None:
        admin = self._admin()
        try:
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
        except kafka.errors.KafkaError as exc:
            raise _retryable(exc) from exc
        finally:
            admin.close()

    def partitions(self, topic: str) -> int:
        if topic not in self._partitions:
            admin = self._admin()
            try:
                described = admin.describe_topics([topic])
            except kafka.errors.KafkaError as exc:
                raise _retryable(exc) from exc
            finally:
                admin.close()
            if not described or described[0].get("error_code", 0) != 0:
                raise ConfigurationError(f"topic {topic!r} does not exist")
            self._partitions[topic] = len(described[0]["partitions"])
        return self._partitions[topic]

    def end_offsets(self, topic: str) -> dict[TopicPartition, int]:
        consumer = self._raw_consumer(group=None)
        try:
            tps = [kafka.TopicPartition(topic, p) for p in range(self.partitions(topic))]
            ends = consumer.end_offsets(tps)
        except kafka.errors.KafkaError as exc:
            raise _retryable(exc) from exc
        finally:
            consumer.close()
        return {TopicPartition(tp.topic, tp.partition): off for tp, off in ends.items()}

    def producer(self) -> Producer:
        return KafkaProducer(self)

    def consumer(self, group: str, *, instance_id: str | None = None) -> Consumer:
        return KafkaConsumer(self._raw_consumer(group or None, instance_id=instance_id))

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
        consumer = self._raw_consumer(None, isolation)
        try:
            return int(consumer.end_offsets([tp])[tp])
        except kafka.errors.KafkaError as exc:
            raise _retryable(exc) from exc
        finally:
            consumer.close()

    def _raw_consumer(
        self, group: str | None, isolation: str = "read_committed", instance_id: str | None = None
    ) -> kafka.KafkaConsumer:
        try:
            return kafka.KafkaConsumer(
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
            )
        except kafka.errors.KafkaError as exc:
            raise _retryable(exc) from exc


class KafkaProducer(Producer):
    """Idempotent producer (acks=all): a retried send never duplicates a record."""

    def __init__(self, bus: KafkaBus) -> None:
        try:
            self._producer = kafka.KafkaProducer(
                bootstrap_servers=bus.bootstrap_servers,
                client_id=bus.client_id,
                acks="all",
                enable_idempotence=True,
                linger_ms=5,
                batch_size=512 * 1024,
                max_request_size=MAX_RECORD_BYTES,
            )
        except kafka.errors.KafkaError as exc:
            raise _retryable(exc) from exc
        self._inflight: list[Future[Any]] = []

    def send(self, topic: str, key: bytes | None, value: bytes) -> None:
        if len(value) + len(key or b"") > MAX_RECORD_BYTES:
            raise PermanentError(f"record of {len(value)} bytes exceeds {MAX_RECORD_BYTES} bytes")
        try:
            self._inflight.append(self._producer.send(topic, key=key, value=value))
        except kafka.errors.KafkaError as exc:
            raise _retryable(exc) from exc

    def flush(self, timeout_s: float = 30.0) -> None:
        inflight, self._inflight = self._inflight, []
        try:
            self._producer.flush(timeout=timeout_s)
            for future in inflight:
                future.get(timeout=timeout_s)
        except kafka.errors.KafkaError as exc:
            raise _retryable(exc) from exc

    def close(self) -> None:
        try:
            self.flush()
        finally:
            self._producer.close()


class _Listener(kafka.ConsumerRebalanceListener):
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
        try:
            batches = self._consumer.poll(timeout_ms=int(timeout_s * 1000), max_records=max_records)
        except kafka.errors.KafkaError as exc:
            raise _retryable(exc) from exc
        return [
            Record(r.topic, r.partition, r.offset, r.key, r.value, r.timestamp)
            for records in batches.values()
            for r in records
        ]

    def commit(self, offsets: Mapping[TopicPartition, int]) -> None:
        try:
            self._consumer.commit(
                {
                    kafka.TopicPartition(*tp): kafka.structs.OffsetAndMetadata(off, "", -1)
                    for tp, off in offsets.items()
                }
            )
        except kafka.errors.KafkaError as exc:
            raise _retryable(exc) from exc

    def assignment(self) -> set[TopicPartition]:
        return {TopicPartition(tp.topic, tp.partition) for tp in self._consumer.assignment()}

    def position(self, partition: TopicPartition) -> int:
        try:
            return int(self._consumer.position(kafka.TopicPartition(*partition)))
        except kafka.errors.KafkaError as exc:
            raise _retryable(exc) from exc

    def close(self) -> None:
        self._consumer.close(autocommit=False)


class KafkaTransactionalProducer(TransactionalProducer):
    """A Kafka transaction per commit. ``init_transactions`` fences earlier producers with
    the same id and aborts (or completes) their open transaction before this one starts."""

    def __init__(self, bus: KafkaBus, transactional_id: str) -> None:
        try:
            self._producer = kafka.KafkaProducer(
                bootstrap_servers=bus.bootstrap_servers,
                client_id=bus.client_id,
                transactional_id=transactional_id,
                enable_idempotence=True,
                acks="all",
                linger_ms=5,
                batch_size=512 * 1024,
                max_request_size=MAX_TRANSACTIONAL_RECORD_BYTES + 64 * 1024,
            )
            self._producer.init_transactions()
        except kafka.errors.ProducerFencedError as exc:
            raise ProducerFenced(f"transactional id {transactional_id!r}: {exc}") from exc
        except kafka.errors.KafkaError as exc:
            raise _retryable(exc) from exc
        self._open = False

    def send(self, topic: str, key: bytes | None, value: bytes) -> None:
        if len(value) + len(key or b"") > MAX_TRANSACTIONAL_RECORD_BYTES:
            raise PermanentError(
                f"record of {len(value)} bytes exceeds {MAX_TRANSACTIONAL_RECORD_BYTES}"
            )
        try:
            if not self._open:
                self._producer.begin_transaction()
                self._open = True
            self._producer.send(topic, key=key, value=value)
        except kafka.errors.ProducerFencedError as exc:
            raise ProducerFenced(str(exc)) from exc
        except kafka.errors.KafkaError as exc:
            raise _retryable(exc) from exc

    def commit(self) -> None:
        if not self._open:
            return
        self._open = False
        try:
            self._producer.commit_transaction()
        except kafka.errors.ProducerFencedError as exc:
            raise ProducerFenced(str(exc)) from exc
        except kafka.errors.KafkaError as exc:
            raise _retryable(exc) from exc

    def abort(self) -> None:
        if not self._open:
            return
        self._open = False
        try:
            self._producer.abort_transaction()
        except kafka.errors.KafkaError as exc:
            raise _retryable(exc) from exc

    def close(self) -> None:
        try:
            self.abort()
        finally:
            self._producer.close(timeout=5)
