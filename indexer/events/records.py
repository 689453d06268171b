"""The ledger's own records: facts ingest derives from a signed event and stores beside it, in
the same transaction, in another stream that must carry them (today: an oracle's fee
reservations, the guard that keeps two ingestors from spending one balance twice).

A record is not a message. Its types are not on the events topic (a message claiming one is an
``unknown_type``), it has no producer and no signature; ``cause`` names the signed event it
derives from, and its id derives from that event's id and its type, so a batch redone after a
write conflict writes the same record. The store keeps it as
``{"record": {id, type, version, occurred_at, payload}, "ingest": {...}}``; ``occurred_at`` is
its cause's.

Records are an audit trail and a concurrency guard, not money facts: the read models and the
settlement fold the signed events only (their rule gives the same reservations, see
docs/decisions.md), so an epoch's bundle holds no record.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any
from uuid import UUID

from indexer.events.envelope import MASA_NAMESPACE
from indexer.events.fields import Address, Wei
from indexer.events.types import Payload

#: What ``LoggedEvent.producer`` says for a record: ingest wrote it, nobody signed it.
RECORD_PRODUCER = "ingest"


class FeeReserved(Payload):
    """Ingest set ``fee`` aside from ``oracle``'s final deposits for request ``request_id`` as
    it accepted the request's ``RequestSubmitted`` (event ``cause``). In the oracle's stream."""

    request_id: UUID
    oracle: Address
    fee: Wei
    cause: UUID


class FeeReleased(Payload):
    """The request ``request_id`` failed (its ``RequestFailed``, event ``cause``) and gave its
    reserved ``fee`` back to ``oracle``. In the oracle's stream."""

    request_id: UUID
    oracle: Address
    fee: Wei
    cause: UUID


@dataclass(frozen=True)
class RecordType:
    name: str
    version: int
    payload: type[Payload]


RECORD_TYPES: dict[tuple[str, int], RecordType] = {
    (r.name, r.version): r
    for r in [RecordType("FeeReserved", 1, FeeReserved), RecordType("FeeReleased", 1, FeeReleased)]
}
_BY_PAYLOAD = {r.payload: r for r in RECORD_TYPES.values()}


def record_id(name: str, cause: UUID) -> UUID:
    return uuid.uuid5(MASA_NAMESPACE, f"record:{name}:{cause}")


def make_record(payload: FeeReserved | FeeReleased, occurred_at: str) -> dict[str, Any]:
    """The stored form of a record (``occurred_at``: its cause's, as that envelope says it)."""
    kind = _BY_PAYLOAD[type(payload)]
    return {
        "id": str(record_id(kind.name, payload.cause)),
        "type": kind.name,
        "version": kind.version,
        "occurred_at": occurred_at,
        "payload": payload.model_dump(mode="json"),
    }


def record_topic(record: dict[str, Any]) -> str:
    return f"{record['type']}.v{record['version']}"
