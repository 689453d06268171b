"""The pure core of ingest: what the ledger knows about one stream, and what to do with the
next event for it (accept, reject, or hold until what it refers to arrives).

No I/O here. The ingest loop loads stream states, calls ``decide`` then ``evolve`` per event,
and writes the results in one transaction with the consumed offsets.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass, field, replace

from indexer.events import Event, Reason, Role
from indexer.events import types as t
from indexer.ingest import fees
from indexer.ingest.fees import NO_FUNDS, Finality
from indexer.ingest.port import CHAIN_HISTORY, ChainEntry, Deposit, StreamState

# --- decisions ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Accept:
    pass


@dataclass(frozen=True)
class Reject:
    reason: Reason
    detail: str = ""


@dataclass(frozen=True)
class Hold:
    """Wait for ``awaiting`` (``request:<id>``, ``stake:<address>`` or ``balance:<oracle>``);
    if it never comes, reject with ``reason``."""

    awaiting: str
    reason: Reason
    detail: str = ""


Decision = Accept | Reject | Hold


@dataclass(frozen=True)
class Policy:
    """Who is trusted by setting rather than by stake: the chain indexers, the governors
    (``ParametersSet``) and the settlers (``EpochClosed``)."""

    trusted_indexers: Collection[str] = field(default_factory=frozenset)
    trusted_governors: Collection[str] = field(default_factory=frozenset)
    trusted_settlers: Collection[str] = field(default_factory=frozenset)

    def trusts(self, role: Role, producer: str) -> bool:
        trusted = {
            Role.INDEXER: self.trusted_indexers,
            Role.GOVERNOR: self.trusted_governors,
            Role.SETTLER: self.trusted_settlers,
        }[role]
        return producer in trusted


_TRUSTED_ROLES = {
    Role.INDEXER: Reason.UNTRUSTED_INDEXER,
    Role.GOVERNOR: Reason.UNTRUSTED_GOVERNOR,
    Role.SETTLER: Reason.UNTRUSTED_SETTLER,
}


def decide(
    event: Event,
    stream: StreamState,
    producer: StreamState | None,
    policy: Policy,
    finality: Finality | None = None,
) -> Decision:
    """Whether ``event`` may be appended to ``stream``, given its producer's node stream and,
    for a request's fee, the chains' finality as stored (``fees.Finality``)."""
    verdict = _check_producer(event, producer, policy)
    if verdict is not None:
        return verdict
    check = _STREAM_CHECKS.get(type(event.payload))
    decision = check(event, stream) if check else Accept()
    if isinstance(decision, Accept) and isinstance(event.payload, t.RequestSubmitted):
        assert producer is not None  # _check_producer holds an oracle without a stream
        return _funded(event.payload.fee, producer, finality or {})
    return decision


def _funded(fee: int, oracle: StreamState, finality: Finality) -> Decision:
    """A request is accepted only if its fee fits in the oracle's final deposits."""
    funds = oracle.funds or NO_FUNDS
    if fees.reserve(funds, fee, finality) is not None:
        return Accept()
    detail = fees.shortfall(funds, fee, finality, oracle.key)
    return Hold(f"balance:{oracle.key}", Reason.INSUFFICIENT_BALANCE, detail)


def check_signer(event: Event) -> Reject | None:
    """The producer check that needs nothing but the event (producers run it before sending):
    a contributor registers sources for itself only."""
    if event.event_type.role is not Role.CONTRIBUTOR:
        return None
    contributor = event.payload.contributor  # type: ignore[attr-defined]
    if contributor == event.envelope.producer:
        return None
    return Reject(
        Reason.NOT_CONTRIBUTOR,
        f"contributor {contributor} is not the signer {event.envelope.producer}",
    )


def _check_producer(event: Event, node: StreamState | None, policy: Policy) -> Decision | None:
    role = event.event_type.role
    producer = event.envelope.producer
    if role in _TRUSTED_ROLES:
        return None if policy.trusts(role, producer) else Reject(_TRUSTED_ROLES[role])
    if role is Role.CONTRIBUTOR:
        return check_signer(event)
    if node is None or node.stake is None:
        return Hold(f"stake:{producer}", Reason.NOT_STAKED, f"{producer} has never staked")
    if node.stake == 0:
        return Reject(Reason.NOT_STAKED, f"{producer} has no active stake")
    if node.role != role.node_role:
        return Reject(Reason.WRONG_ROLE, f"{event.envelope.type} needs the {role} role")
    return None


def _submitted(event: Event, stream: StreamState) -> Decision:
    if stream.submitted_by is not None:
        return Reject(Reason.DUPLICATE_REQUEST, f"request {stream.key} was already submitted")
    return Accept()


def _closing(event: Event, stream: StreamState) -> Decision:
    if stream.submitted_by is None:
        return Hold(f"request:{stream.key}", Reason.UNKNOWN_REQUEST, f"request {stream.key}")
    if stream.closed is not None:
        return Reject(Reason.REQUEST_CLOSED, f"request {stream.key} is already {stream.closed}")
    return Accept()


def _data_used(event: Event, stream: StreamState) -> Decision:
    if stream.submitted_by is None:
        return Hold(f"request:{stream.key}", Reason.UNKNOWN_REQUEST, f"request {stream.key}")
    producer = event.envelope.producer
    if producer in stream.data_used_by:
        return Reject(Reason.DUPLICATE_DATA_USE, f"{producer} already reported")
    if stream.closed_by is not None and stream.closed_by != producer:
        return Reject(
            Reason.REQUEST_CLOSED, f"request {stream.key} was served by {stream.closed_by}"
        )
    return Accept()


def _heartbeat(event: Event, stream: StreamState) -> Decision:
    assert isinstance(event.payload, t.Heartbeat | t.HeartbeatV1)  # _STREAM_CHECKS' key
    seq = event.payload.seq
    if stream.last_seq is not None and seq <= stream.last_seq:
        return Reject(Reason.STALE_HEARTBEAT, f"seq {seq} <= last {stream.last_seq}")
    return Accept()


def _epoch_closed(event: Event, stream: StreamState) -> Decision:
    """A settler closes epochs in order, each once (its stream keeps the last in ``last_seq``)."""
    epoch = event.payload.epoch  # type: ignore[attr-defined]
    if stream.last_seq is not None and epoch <= stream.last_seq:
        return Reject(Reason.EPOCH_OUT_OF_ORDER, f"epoch {epoch} <= last closed {stream.last_seq}")
    return Accept()


def _source(event: Event, stream: StreamState) -> Decision:
    if stream.contributor is not None:
        return Reject(Reason.SOURCE_TAKEN, f"registered to {stream.contributor}")
    return Accept()


def _retraction(event: Event, stream: StreamState) -> Decision:
    assert isinstance(event.payload, t.ChainLogRetracted)  # _STREAM_CHECKS' key
    retracted = str(event.payload.retracted_id)
    if all(e.event_id != retracted for e in stream.chain):
        return Reject(Reason.UNKNOWN_LOG, f"no chain event {retracted} in this stream")
    return Accept()


_STREAM_CHECKS = {
    t.RequestSubmitted: _submitted,
    t.RequestCompleted: _closing,
    t.RequestFailed: _closing,
    t.DataUsed: _data_used,
    t.Heartbeat: _heartbeat,
    t.HeartbeatV1: _heartbeat,
    t.DataSourceRegistered: _source,
    t.ChainLogRetracted: _retraction,
    t.EpochClosed: _epoch_closed,
}


# --- evolution ------------------------------------------------------------------------------


def evolve(stream: StreamState, event: Event, finality: Finality | None = None) -> StreamState:
    """The stream's state after appending ``event`` (which ``decide`` accepted); ``finality``
    as for ``decide``, where an oracle's deposit is retracted (a final one stays)."""
    payload = event.payload
    producer = event.envelope.producer
    state = replace(stream, version=stream.version + 1)
    match payload:
        case t.RequestSubmitted():
            return replace(state, submitted_by=producer, fee=payload.fee)
        case t.RequestCompleted():
            return replace(state, closed="completed", closed_by=producer)
        case t.RequestFailed():
            return replace(state, closed="failed", closed_by=producer)
        case t.DataUsed():
            return replace(state, data_used_by=(*state.data_used_by, producer))
        case t.Heartbeat() | t.HeartbeatV1():
            return replace(state, last_seq=payload.seq)
        case t.DataSourceRegistered():
            return replace(state, contributor=payload.contributor)
        case t.EpochClosed():
            return replace(state, last_seq=payload.epoch)
        case t.ChainFinalized():
            final = max(payload.block_number, state.final_block or 0)
            return replace(state, final_block=final)
        case t.ChainLogRetracted():
            retracted = str(payload.retracted_id)
            kept = tuple(e for e in state.chain if e.event_id != retracted)
            funds = state.funds and fees.retract(state.funds, retracted, finality or {})
            return replace(state, chain=kept, funds=funds)
        case t.FeesDeposited():
            made = Deposit(
                str(event.envelope.id),
                payload.log.chain_id,
                payload.log.block_number,
                payload.amount,
            )
            state = replace(state, funds=fees.deposit(state.funds or NO_FUNDS, made))
            return _chain_entry(state, event)
        case t.ChainPayload():
            return _chain_entry(state, event)
    return state


def _chain_entry(state: StreamState, event: Event) -> StreamState:
    payload = event.payload
    entry = ChainEntry(
        str(event.envelope.id),
        getattr(payload, "new_stake", None),
        payload.role if isinstance(payload, t.Staked) else None,
    )
    return replace(state, chain=(*state.chain, entry)[-CHAIN_HISTORY:])


def reserved(oracle: StreamState, fee: int, finality: Finality) -> StreamState:
    """The oracle's stream after ingest reserved ``fee`` for a request ``decide`` accepted
    (one version more: the ``FeeReserved`` record)."""
    funds = fees.reserve(oracle.funds or NO_FUNDS, fee, finality)
    if funds is None:
        raise ValueError(f"fee {fee} does not fit in {oracle.key}'s funds; decide() held it")
    return replace(oracle, version=oracle.version + 1, funds=funds)


def released(oracle: StreamState, fee: int) -> StreamState:
    """The oracle's stream after a failed request gave its ``fee`` back (``FeeReleased``)."""
    funds = fees.release(oracle.funds or NO_FUNDS, fee)
    return replace(oracle, version=oracle.version + 1, funds=funds)
