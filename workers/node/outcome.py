"""What a served request produces: its outcome, and the signed events that report it.

Result events get ids derived from ``(request id, worker, event type)``, so a request the
same worker serves again after a crash yields the same ids and ingest drops the copies.
``RequestCompleted`` goes before ``DataUsed``: both have the request's key, so they reach
ingest in that order.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from uuid import UUID

from eth_account.signers.local import LocalAccount

from indexer.events import MASA_NAMESPACE, SignedMessage, make_event
from workers.scraping import DataUse

#: ``RequestFailed.detail`` holds at most 4096 characters, ``DataUsed`` at most 1000 uses.
MAX_DETAIL = 4000
MAX_USES = 1000
_REASON = re.compile(r"^[a-z0-9_]{1,64}$")


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
    events = _events(request_id, outcome)
    worker = account.address
    return [
        make_event(account, name, payload, event_id=result_event_id(request_id, worker, name))
        for name, payload in events
    ]


def _events(request_id: UUID, outcome: Outcome) -> list[tuple[str, dict[str, object]]]:
    rid = str(request_id)
    if isinstance(outcome, Failed):
        reason = outcome.reason if _REASON.match(outcome.reason) else "job_error"
        detail = (
            outcome.detail if reason == outcome.reason else f"{outcome.reason}: {outcome.detail}"
        )
        return [
            ("RequestFailed", {"request_id": rid, "reason": reason, "detail": detail[:MAX_DETAIL]})
        ]
    completed = {"request_id": rid, "result_digest": outcome.result_digest, "units": outcome.units}
    events: list[tuple[str, dict[str, object]]] = [("RequestCompleted", completed)]
    if outcome.uses:
        uses = [use.model_dump() for use in _largest(outcome.uses)]
        events.append(("DataUsed", {"request_id": rid, "uses": uses}))
    return events


def _largest(uses: Sequence[DataUse]) -> list[DataUse]:
    """The ``MAX_USES`` uses with the most units (the rest earn nothing), in their order."""
    if len(uses) <= MAX_USES:
        return list(uses)
    kept = set(sorted(range(len(uses)), key=lambda i: -uses[i].units)[:MAX_USES])
    return [use for i, use in enumerate(uses) if i in kept]
