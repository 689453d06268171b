"""The event contract: envelope, types, canonical JSON and signatures.

Workers, apps and the chain indexer produce with ``make_event``; ingest checks with
``decode_message``. See docs/events.md for the reference.
"""

from indexer.events.canonical import CanonicalizationError, canonical_json
from indexer.events.envelope import (
    MASA_NAMESPACE,
    MAX_MESSAGE_BYTES,
    Envelope,
    Event,
    SignedMessage,
    chain_event_id,
    decode_message,
    make_event,
    parse_event,
    retraction_id,
    stream_id,
)
from indexer.events.reasons import Reason
from indexer.events.signing import recover_address, recover_public_key, signing_digest
from indexer.events.types import (
    CHAIN_TYPES,
    CURRENT_VERSION,
    EVENT_TYPES,
    EventType,
    NodeRole,
    Payload,
    Role,
    lookup,
    type_of,
    upcast,
)

__all__ = [
    "CHAIN_TYPES",
    "CURRENT_VERSION",
    "EVENT_TYPES",
    "MASA_NAMESPACE",
    "MAX_MESSAGE_BYTES",
    "CanonicalizationError",
    "Envelope",
    "Event",
    "EventType",
    "NodeRole",
    "Payload",
    "Reason",
    "Role",
    "SignedMessage",
    "canonical_json",
    "chain_event_id",
    "decode_message",
    "lookup",
    "make_event",
    "parse_event",
    "recover_address",
    "recover_public_key",
    "retraction_id",
    "signing_digest",
    "stream_id",
    "type_of",
    "upcast",
]
