"""The dead-letter format: one JSON object per rejected message, with the original bytes."""

from __future__ import annotations

import base64
import hashlib
import time
import uuid
from dataclasses import dataclass
from typing import Any
from uuid import UUID

import orjson

from indexer.bus.base import Bus, TopicPartition
from indexer.events import MASA_NAMESPACE, MAX_MESSAGE_BYTES
from indexer.ingest.port import IngestStore

#: Largest original message a letter embeds: ingest's own limit, so only ``too_large`` ones
#: are left out (base64 makes the letter 4/3 of this, under Kafka's 1 MiB default).
MAX_EMBEDDED_VALUE = MAX_MESSAGE_BYTES


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
        """The letter as JSON. A value over ``MAX_EMBEDDED_VALUE`` (only ``too_large`` ones,
        since ingest refuses bigger messages) is referenced by its source offset and sha256
        instead of embedded, so the letter itself always fits a Kafka message."""
        letter: dict[str, Any] = {
            "dlq_id": str(self.id),
            "reason": self.reason,
            "detail": self.detail[:1000],
            "source": {
                "topic": self.source.topic,
                "partition": self.source.partition,
                "offset": self.offset,
            },
            "consumer": self.consumer,
            "rejected_at": self.rejected_at,
            "key": None if self.key is None else base64.b64encode(self.key).decode(),
            "value_bytes": len(self.value),
            "value_sha256": hashlib.sha256(self.value).hexdigest(),
        }
        if len(self.value) <= MAX_EMBEDDED_VALUE:
            letter["value"] = base64.b64encode(self.value).decode()
        return orjson.dumps(letter)

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
            value=base64.b64decode(data["value"]) if "value" in data else b"",
        )

    @property
    def replayable(self) -> bool:
        """Whether the letter carries the original bytes (all but oversized messages)."""
        return bool(self.value)

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


def replay(bus: Bus, store: IngestStore, letters: list[DeadLetter]) -> int:
    """Send letters back to their source topic byte for byte, and remember that we did.
    Letters without their bytes (oversized messages) are skipped: nothing could accept them."""
    letters = [letter for letter in letters if letter.replayable]
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
