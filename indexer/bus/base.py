"""The bus port: topics of keyed records in partitions, read from offsets the caller owns.

Two adapters implement it: Apache Kafka (``kafka.py``) and a SQLite-backed log with the same
semantics for the embedded default (``embedded.py``). Keys map to partitions with Kafka's own
murmur2 partitioner in both, so an aggregate lands in the same partition number everywhere.

A transactional producer makes records on several topics visible together or not at all
(Kafka transactions; one SQLite transaction), which is how the chain indexer stores its
checkpoint with the events it publishes. Consumers read committed records only.
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import NamedTuple, Protocol

from kafka.partitioner.default import murmur2

from masa.errors import PermanentError, RetryableError

#: A plain producer's largest record (key + value): Kafka's default ``message.max.bytes`` less
#: headroom for the batch header; a larger record would be refused by the broker after it
#: left, so the Kafka producer refuses it first (``PermanentError``; the embedded log takes
#: any size). Bigger payloads travel in chunks (results: ``workers.results``).
MAX_RECORD_BYTES = 1_000_000
#: Topic settings of a compacted topic (the latest record per key is what counts).
COMPACTED = {"cleanup.policy": "compact"}
#: A transactional producer takes records up to this size, where the topic allows them
#: (Kafka: ``max.message.bytes``, see ``LARGE_RECORDS``).
MAX_TRANSACTIONAL_RECORD_BYTES = 8 * 1024 * 1024
LARGE_RECORDS = {"max.message.bytes": str(MAX_TRANSACTIONAL_RECORD_BYTES + 64 * 1024)}


class TopicPartition(NamedTuple):
    topic: str
    partition: int


@dataclass(frozen=True, slots=True)
class Record:
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes
    timestamp_ms: int

    @property
    def position(self) -> TopicPartition:
        return TopicPartition(self.topic, self.partition)


def partition_for(key: bytes, partitions: int) -> int:
    """Kafka's default partitioner (murmur2, as the Java and kafka-python clients do)."""
    return int(murmur2(key) & 0x7FFFFFFF) % partitions


class RebalanceListener(Protocol):
    def on_assigned(self, partitions: list[TopicPartition]) -> Mapping[TopicPartition, int | None]:
        """Partitions this consumer now owns; returns where to start each (None: the group's
        committed offset, else the beginning)."""

    def on_revoked(self, partitions: list[TopicPartition]) -> None:
        """Partitions this consumer no longer owns; drop any state kept for them."""


class Producer(ABC):
    @abstractmethod
    def send(self, topic: str, key: bytes | None, value: bytes) -> None:
        """Queue a record; delivery is confirmed by ``flush``."""

    @abstractmethod
    def flush(self, timeout_s: float = 30.0) -> None:
        """Block until every queued record is acknowledged; raises ``RetryableError``."""

    @abstractmethod
    def close(self) -> None: ...


class ProducerFenced(PermanentError):
    """Another producer with the same transactional id started: this one must stop."""


class TransactionalProducer(ABC):
    """Records sent between two commits become visible together, or not at all.

    Creating one fences every earlier producer with the same transactional id: their open
    transaction is aborted and their later commits raise ``ProducerFenced``. After a commit
    raised ``RetryableError`` its outcome is unknown: close this producer, create a new one
    (which settles the old transaction) and read back what was committed.
    """

    @abstractmethod
    def send(self, topic: str, key: bytes | None, value: bytes) -> None: ...

    @abstractmethod
    def commit(self) -> None:
        """Make everything sent since the last commit visible, atomically."""

    @abstractmethod
    def abort(self) -> None:
        """Drop everything sent since the last commit."""

    @abstractmethod
    def close(self) -> None:
        """Abort what is uncommitted and release the connection."""


class Consumer(ABC):
    @abstractmethod
    def subscribe(self, topics: list[str], listener: RebalanceListener) -> None:
        """Join the consumer group for these topics; ownership changes call ``listener``."""

    @abstractmethod
    def assign(self, offsets: Mapping[TopicPartition, int]) -> None:
        """Read these partitions from these offsets, outside any group."""

    @abstractmethod
    def poll(self, max_records: int, timeout_s: float) -> list[Record]: ...

    @abstractmethod
    def seek(self, partition: TopicPartition, offset: int) -> None:
        """Re-read ``partition`` from ``offset`` (after a failed write, say)."""

    @abstractmethod
    def commit(self, offsets: Mapping[TopicPartition, int]) -> None:
        """Record the group's next offsets (for consumers without a store of their own)."""

    @abstractmethod
    def assignment(self) -> set[TopicPartition]: ...

    @abstractmethod
    def position(self, partition: TopicPartition) -> int:
        """The offset of the next record ``poll`` would return from ``partition``."""

    @abstractmethod
    def close(self) -> None: ...


class Bus(ABC):
    """Factory of producers and consumers of one cluster (or one embedded log file)."""

    @abstractmethod
    def ensure_topics(
        self, topics: Mapping[str, int], configs: Mapping[str, Mapping[str, str]] | None = None
    ) -> None:
        """Create missing topics with the given partition counts and topic settings
        (``COMPACTED``, say); existing topics are left as they are."""

    @abstractmethod
    def partitions(self, topic: str) -> int: ...

    @abstractmethod
    def end_offsets(self, topic: str) -> dict[TopicPartition, int]: ...

    @abstractmethod
    def producer(self) -> Producer: ...

    @abstractmethod
    def consumer(self, group: str, *, instance_id: str | None = None) -> Consumer:
        """A consumer of ``group`` ("" for none). With ``instance_id`` it is a static member:
        restarted under the same id it gets its partitions back at once, instead of after
        the session timeout of the instance that died."""

    @abstractmethod
    def transactional_producer(self, transactional_id: str) -> TransactionalProducer: ...

    def read_all(self, topic: str, timeout_s: float = 5.0) -> Iterator[Record]:
        """Every record of a topic up to its current end, partition by partition."""
        ends = {tp: end for tp, end in self.end_offsets(topic).items() if end > 0}
        consumer = self.consumer(group="")
        try:
            consumer.assign(dict.fromkeys(ends, 0))
            yield from _read_to(consumer, ends, timeout_s)
        finally:
            consumer.close()

    def latest(self, topic: str, key: bytes, timeout_s: float = 10.0) -> Record | None:
        """The last committed record with ``key`` (a compacted topic's value for it)."""
        tp = TopicPartition(topic, partition_for(key, self.partitions(topic)))
        high, span = self.stable_end_offset(tp, timeout_s), 64
        consumer = self.consumer(group="")
        try:
            while high > 0:
                low = max(0, high - span)
                consumer.assign({tp: low})
                found = [r for r in _read_to(consumer, {tp: high}, timeout_s) if r.key == key]
                if found:
                    return found[-1]
                high, span = low, span * 4
            return None
        finally:
            consumer.close()

    def stable_end_offset(self, partition: TopicPartition, timeout_s: float = 10.0) -> int:
        """The end of ``partition`` once every transaction open now has finished."""
        return self.end_offsets(partition.topic)[partition]


def _read_to(
    consumer: Consumer, ends: Mapping[TopicPartition, int], timeout_s: float
) -> Iterator[Record]:
    """Records of the assigned partitions below ``ends``. Positions, not record offsets, tell
    when an end is reached: transaction markers take offsets but are never returned."""
    deadline = time.monotonic() + timeout_s
    while any(consumer.position(tp) < end for tp, end in ends.items()):
        batch = consumer.poll(max_records=5000, timeout_s=0.2)
        if batch:
            deadline = time.monotonic() + timeout_s
        elif time.monotonic() > deadline:
            raise RetryableError(f"reading {sorted(ends)} made no progress in {timeout_s:g} s")
        yield from (r for r in batch if r.offset < ends.get(r.position, 0))
