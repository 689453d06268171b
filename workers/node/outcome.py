"""What a served request produces: its outcome, and the signed events that report it.

Result events get ids derived from ``(request id, worker, event type)``, so a request the
same worker serves again after a crash yields the same ids and ingest drops the copies.
``RequestCompleted`` goes before ``DataUsed``: both have the request's key, so they reach
ingest in that order.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from uuid import UUID

from eth_account.signers.local import LocalAccount
from pydantic import TypeAdapter, ValidationError

from indexer.events import MASA_NAMESPACE, Payload, SignedMessage, make_event, type_of
from indexer.events.types import (
    Code,
    DataUse,
    DataUsed,
    RequestCompleted,
    RequestFailed,
    max_length,
)

#: The contract's limits: what ``RequestFailed.detail`` and ``DataUsed.uses`` hold at most.
MAX_DETAIL = max_length(RequestFailed, "detail")
MAX_USES = max_length(DataUsed, "uses")
_CODE: TypeAdapter[str] = TypeAdapter(Code)


@dataclass(frozen=True)
class Completed:
    result_digest: str
    units: int
    uses: Sequence[DataUse] = ()
    result: bytes | None = field(default=None, repr=False)
    """The bytes the digest commits to, delivered to the oracle (``workers.results``)."""


@dataclass(frozen=True)
class Failed:
    reason: str
    detail: str = ""


Outcome = Completed | Failed


def result_event_id(request_id: UUID, worker: str, type_name: str) -> UUID:
    return uuid.uuid5(MASA_NAMESPACE, f"result:{request_id}:{worker.lower()}:{type_name}")


def result_messages(
    account: LocalAccount, request_id: UUID, outcome: Outcome
) -> list[SignedMessage]:
    """The events reporting ``outcome``, signed by ``account``, in the order to send them."""
    worker = account.address
    return [
        make_event(
            account, payload, event_id=result_event_id(request_id, worker, type_of(payload).name)
        )
        for payload in _payloads(request_id, outcome)
    ]


def _payloads(request_id: UUID, outcome: Outcome) -> list[Payload]:
    if isinstance(outcome, Failed):
        reason = outcome.reason if _is_code(outcome.reason) else "job_error"
        detail = (
            outcome.detail if reason == outcome.reason else f"{outcome.reason}: {outcome.detail}"
        )
        return [RequestFailed(request_id=request_id, reason=reason, detail=detail[:MAX_DETAIL])]
    payloads: list[Payload] = [
        RequestCompleted(
            request_id=request_id, result_digest=outcome.result_digest, units=outcome.units
        )
    ]
    if outcome.uses:
        payloads.append(DataUsed(request_id=request_id, uses=_largest(outcome.uses)))
    return payloads


def _is_code(reason: str) -> bool:
    try:
        _CODE.validate_python(reason)
    except ValidationError:
        return False
    return True


def _largest(uses: Sequence[DataUse]) -> list[DataUse]:
    """The ``MAX_USES`` uses with the most units (the rest earn nothing), in their order."""
    if len(uses) <= MAX_USES:
        return list(uses)
    kept = set(sorted(range(len(uses)), key=lambda i: -uses[i].units)[:MAX_USES])
    return [use for i, use in enumerate(uses) if i in kept]
