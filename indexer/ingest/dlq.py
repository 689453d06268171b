"""The dead-letter format: one JSON object per rejected message, with the original bytes."""

from __future__ import annotations

import base64
import time
import uuid
from dataclasses import dataclass
from typing import Any
from uuid import UUID

import orjson

from indexer.bus.base import Bus, TopicPartition
from indexer.events import MASA_NAMESPACE
from indexer.store.base import EventStore


def dlq_id(consumer: str, source: TopicPartition, offset: int) -> UUID:
    """Stable id of the letter for one consumed offset, so a re-published letter is the same."""
    return uuid.uuid5(MASA_NAMESPACE, f"dlq:{consumer}/{source.topic}/{source.partition}/{offset}")


@dataclass(frozen=True)
class DeadLetter:
    id: UUID
    reason: str
    detail: str
    source: TopicPartition
    offset: int
    consumer: str
    rejected_at: str
    key: bytes | None
    value: bytes

    def encode(self) -> bytes:
        return orjson.dumps(
            {
                "dlq_id": str(self.id),
                "reason": self.reason,
                "detail": self.detail[:1000],
                "source": {"topic": self.source.topic, "partition": self.source.partition, "offset": self.offset},
                "consumer": self.consumer,
                "rejected_at": self.rejected_at,
                "key": None if self.key is None else base64.b64encode(self.key).decode(),
                "value": base64.b64encode(self.value).decode(),
            }
        )

    @classmethod
    def decode(cls, raw: bytes) -> DeadLetter:
        data: dict[str, Any] = orjson.loads(raw)
        source = data["source"]
        return cls(
            id=UUID(data["dlq_id"]),
            reason=data["reason"],
            detail=data.get("detail", ""),
            source=TopicPartition(source["topic"], source["partition"]),
            offset=source["offset"],
            consumer=data.get("consumer", ""),
            rejected_at=data.get("rejected_at", ""),
            key=None if data.get("key") is None else base64.b64decode(data["key"]),
            value=base64.b64decode(data["value"]),
        )

    def summary(self, replayed: bool) -> dict[str, Any]:
        return {
            "id": str(self.id),
            "reason": self.reason,
            "detail": self.detail,
            "source": f"{self.source.topic}[{self.source.partition}]@{self.offset}",
            "rejected_at": self.rejected_at,
            "replayed": replayed,
        }


def read_dead_letters(bus: Bus, topic: str) -> list[DeadLetter]:
    """Every dead letter once (the outbox may publish one twice after a crash)."""
    letters: dict[UUID, DeadLetter] = {}
    for record in bus.read_all(topic):
        letter = DeadLetter.decode(record.value)
        letters.setdefault(letter.id, letter)
    return list(letters.values())


def replay(bus: Bus, store: EventStore, letters: list[DeadLetter]) -> int:
    """Send letters back to their source topic byte for byte, and remember that we did."""
    if not letters:
        return 0
    producer = bus.producer()
    try:
        for letter in letters:
            producer.send(letter.source.topic, letter.key, letter.value)
        producer.flush()
    finally:
        producer.close()
    store.record_replays([letter.id for letter in letters], int(time.time() * 1000))
    return len(letters)
