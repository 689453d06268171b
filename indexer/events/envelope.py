"""The signed envelope: building one (producers) and checking one (ingest).

Checks here need nothing but the message and the clock; checks that need the ledger's state
(is the producer staked, is the request known) belong to ingest.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from typing import Annotated, Any, TypeVar
from uuid import UUID

import orjson
from eth_account.signers.local import LocalAccount
from pydantic import BaseModel, ConfigDict, Field, Strict, ValidationError

from indexer.events.canonical import CanonicalizationError
from indexer.events.fields import WIRE, Address, Signature, UtcDatetime, format_timestamp
from indexer.events.reasons import Reason
from indexer.events.signing import SignatureError, recover_address, sign_digest, signing_digest
from indexer.events.types import CURRENT_VERSION, ChainLog, EventType, Payload, lookup, type_of
from masa.errors import EventRejected

MAX_MESSAGE_BYTES = 256 * 1024
M = TypeVar("M", bound=BaseModel)
#: Namespace of the UUIDs this ledger derives (stream ids, chain event ids).
MASA_NAMESPACE = UUID("6d617361-6c65-4467-a572-000000000001")


class Envelope(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    id: UUID
    type: Annotated[str, Field(min_length=1, max_length=64)]
    version: Annotated[int, Strict(), Field(ge=1, le=1000)]
    occurred_at: UtcDatetime
    producer: Address
    payload: dict[str, Any]
    signature: Signature


@dataclass(frozen=True)
class Event:
    """A message that passed every stateless check."""

    envelope: Envelope
    payload: Payload
    event_type: EventType
    key: str
    raw: dict[str, Any]

    @property
    def stream_id(self) -> UUID:
        return stream_id(self.key)


@lru_cache(maxsize=262_144)
def stream_id(key: str) -> UUID:
    """The event-store stream (eventsourcing originator id) of an aggregate key."""
    return uuid.uuid5(MASA_NAMESPACE, key)


def chain_event_id(log: ChainLog) -> UUID:
    """Stable id of a chain log. The block hash is part of it so that a transaction re-mined
    in another block after a reorg is a new event, not a duplicate of the retracted one."""
    return uuid.uuid5(
        MASA_NAMESPACE, f"{log.chain_id}:{log.block_hash}:{log.tx_hash}:{log.log_index}"
    )


def retraction_id(retracted: UUID) -> UUID:
    return uuid.uuid5(MASA_NAMESPACE, f"retracted:{retracted}")


# --- producing ------------------------------------------------------------------------------


@dataclass(frozen=True)
class SignedMessage:
    """What a producer sends: the Kafka key and value."""

    key: str
    value: bytes
    event_id: UUID


def make_event(
    account: LocalAccount,
    event: str | Payload,
    payload: Payload | dict[str, Any] | None = None,
    *,
    version: int | None = None,
    occurred_at: datetime | None = None,
    event_id: UUID | None = None,
) -> SignedMessage:
    """Validate, sign and encode one event: ``make_event(account, RequestCompleted(...))``
    (the payload's class names the type and version), or ``make_event(account,
    "RequestCompleted", {...})`` with the type's name and a payload to validate."""
    event_type = _event_type(event, payload, version)
    model = event_type.payload.model_validate(event if isinstance(event, Payload) else payload)
    producer = account.address.lower()
    event_id = event_id or _default_id(model)
    unsigned = {
        "id": str(event_id),
        "type": event_type.name,
        "version": event_type.version,
        "occurred_at": format_timestamp(occurred_at or datetime.now(UTC)),
        "producer": producer,
        "payload": model.model_dump(mode="json"),
    }
    signature = sign_digest(account, signing_digest(unsigned))
    value = orjson.dumps({**unsigned, "signature": signature})
    return SignedMessage(event_type.key(model, producer), value, event_id)


def _event_type(
    event: str | Payload, payload: Payload | dict[str, Any] | None, version: int | None
) -> EventType:
    if isinstance(event, Payload):
        if payload is not None or version is not None:
            raise TypeError("a typed payload names its type and version: pass nothing else")
        return type_of(event)
    if payload is None:
        raise TypeError(f"make_event({event!r}, ...) needs a payload")
    version = version or CURRENT_VERSION.get(event, 0)
    event_type = lookup(event, version)
    if event_type is None:
        raise ValueError(f"unknown event type {event} v{version}")
    return event_type


def _default_id(model: Payload) -> UUID:
    log = getattr(model, "log", None)
    return chain_event_id(log) if isinstance(log, ChainLog) else uuid.uuid4()


# --- checking -------------------------------------------------------------------------------


def decode_message(
    value: bytes, key: bytes | None, *, now: datetime, max_clock_skew: timedelta
) -> Event:
    """Every check a message can pass on its own, in order; raises ``EventRejected``."""
    event = parse_event(value, now=now, max_clock_skew=max_clock_skew)
    received = key.decode("utf-8", "replace") if key is not None else None
    if received != event.key:
        raise EventRejected(Reason.WRONG_KEY, f"key {received!r}, aggregate is {event.key!r}")
    return event


def parse_event(value: bytes, *, now: datetime, max_clock_skew: timedelta) -> Event:
    """The checks of ``decode_message`` except the one on the Kafka key."""
    if len(value) > MAX_MESSAGE_BYTES:
        raise EventRejected(Reason.TOO_LARGE, f"{len(value)} bytes > {MAX_MESSAGE_BYTES}")
    raw = _parse_json(value)
    envelope = _validate(Envelope, raw, Reason.BAD_ENVELOPE)
    event_type = lookup(envelope.type, envelope.version)
    if event_type is None:
        raise EventRejected(Reason.UNKNOWN_TYPE, f"{envelope.type} v{envelope.version}")
    payload = _validate(event_type.payload, envelope.payload, Reason.BAD_PAYLOAD)
    _check_signature(raw, envelope)
    if envelope.occurred_at > now + max_clock_skew:
        raise EventRejected(
            Reason.CLOCK_SKEW, f"occurred_at {envelope.occurred_at.isoformat()} is in the future"
        )
    return Event(envelope, payload, event_type, event_type.key(payload, envelope.producer), raw)


def _parse_json(value: bytes) -> dict[str, Any]:
    try:
        raw = orjson.loads(value)
    except orjson.JSONDecodeError as exc:
        raise EventRejected(Reason.BAD_JSON, str(exc)) from exc
    if not isinstance(raw, dict):
        raise EventRejected(Reason.BAD_JSON, "message is not a JSON object")
    return raw


def _validate(model: type[M], data: Any, reason: Reason) -> M:
    try:
        return model.model_validate(data, context=WIRE)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "(root)"
        raise EventRejected(reason, f"{where}: {first['msg']}") from exc


def _check_signature(raw: dict[str, Any], envelope: Envelope) -> None:
    unsigned = {k: v for k, v in raw.items() if k != "signature"}
    try:
        digest = signing_digest(unsigned)
    except CanonicalizationError as exc:
        raise EventRejected(Reason.BAD_PAYLOAD, f"no canonical JSON form: {exc}") from exc
    try:
        signer = recover_address(digest, envelope.signature)
    except SignatureError as exc:
        raise EventRejected(Reason.BAD_SIGNATURE, str(exc)) from exc
    if signer != envelope.producer:
        raise EventRejected(Reason.BAD_SIGNATURE, f"signed by {signer}, not {envelope.producer}")
