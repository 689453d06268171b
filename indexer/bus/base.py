"""The bus port: topics of keyed records in partitions, read from offsets the caller owns.

Two adapters implement it: Apache Kafka (``kafka.py``) and a SQLite-backed log with the same
semantics for the embedded default (``embedded.py``). Keys map to partitions with Kafka's own
murmur2 partitioner in both, so an aggregate lands in the same partition number everywhere.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import NamedTuple, Protocol

from kafka.partitioner.default import murmur2


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
    return (murmur2(key) & 0x7FFFFFFF) % partitions


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
    def close(self) -> None: ...


class Bus(ABC):
    """Factory of producers and consumers of one cluster (or one embedded log file)."""

    @abstractmethod
    def ensure_topics(self, topics: Mapping[str, int]) -> None:
        """Create missing topics with the given partition counts."""

    @abstractmethod
    def partitions(self, topic: str) -> int: ...

    @abstractmethod
    def end_offsets(self, topic: str) -> dict[TopicPartition, int]: ...

    @abstractmethod
    def producer(self) -> Producer: ...

    @abstractmethod
    def consumer(self, group: str) -> Consumer: ...

    def read_all(self, topic: str, timeout_s: float = 5.0) -> Iterator[Record]:
        """Every record of a topic up to its current end, partition by partition."""
        ends = self.end_offsets(topic)
        consumer = self.consumer(group="")
        try:
            consumer.assign({tp: 0 for tp in ends})
            remaining = {tp: end for tp, end in ends.items() if end > 0}
            while remaining:
                batch = consumer.poll(max_records=5000, timeout_s=timeout_s)
                if not batch:
                    break
                for record in batch:
                    end = remaining.get(record.position)
                    if end is not None and record.offset < end:
                        yield record
                        if record.offset + 1 >= end:
                            del remaining[record.position]
        finally:
            consumer.close()
