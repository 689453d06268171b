"""The event types of the Masa ledger: payload schemas, who may produce them, which stream
(aggregate) they belong to, and how old versions are upcast.

The aggregate key is both the Kafka message key and the name of the event-store stream, so
every event about one request, node, source or contract reaches the same partition and the
same writer, whoever produced it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from enum import IntEnum, StrEnum
from typing import Annotated, Any, Literal
from uuid import UUID

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    Strict,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from indexer.events.fields import Address, Count, Hash32, UtcDatetime, Wei
from indexer.events.specs import parse_spec


class NodeRole(IntEnum):
    """A node's role as NodeStaking numbers it on chain (``Staked.role``, ``roleOf``); an
    address holds at most one at a time. The one place these numbers are written."""

    WORKER = 1
    ORACLE = 2


class Role(StrEnum):
    """Who may produce an event type."""

    ORACLE = "oracle"
    WORKER = "worker"
    CONTRIBUTOR = "contributor"
    INDEXER = "indexer"
    GOVERNOR = "governor"
    SETTLER = "settler"

    @property
    def node_role(self) -> NodeRole | None:
        """The staked role a producer of this kind must hold; None: not a staked node."""
        return NodeRole.__members__.get(self.name)


#: Validation context of an event read back from the store: ingest checked its job spec when it
#: accepted it, and the read side does not compile selectors again for every read.
STORED_CONTEXT = {"stored": True}


def _stored(info: ValidationInfo) -> bool:
    return bool(info.context and info.context.get("stored"))


class Payload(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


# --- requests -------------------------------------------------------------------------------

Text = Annotated[str, Field(max_length=4096)]
Code = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[a-z0-9_]+$")]


class RequestSubmitted(Payload):
    """An oracle asks the network for work, paying ``fee`` from its prepaid balance.

    ``spec`` must validate against the model of ``kind`` (``DataJobSpec`` or ``LlmJobSpec``
    in ``indexer.events.specs``; see docs/worker.md), else the request is a ``bad_payload``.
    It is kept as sent: the signature covers the JSON the oracle wrote.
    """

    request_id: UUID
    kind: Literal["data", "llm"]
    spec: dict[str, Any]
    fee: Wei

    @field_validator("spec")
    @classmethod
    def _spec_fits_kind(cls, spec: dict[str, Any], info: ValidationInfo) -> dict[str, Any]:
        kind = info.data.get("kind")
        if kind is not None and not _stored(info):
            try:
                parse_spec(kind, spec)
            except ValidationError as exc:
                first = exc.errors()[0]
                where = ".".join(str(p) for p in first["loc"]) or "(root)"
                message = first["msg"].removeprefix("Value error, ")
                raise ValueError(f"not a {kind} spec: {where}: {message}") from exc
        return spec


class RequestCompleted(Payload):
    """A worker finished a request. ``units`` are items (data) or tokens (llm)."""

    request_id: UUID
    result_digest: Hash32
    units: Count


class RequestFailed(Payload):
    request_id: UUID
    reason: Code
    detail: Text = ""


class DataUse(Payload):
    """``units`` items of a job came from ``source``, registered to ``contributor``."""

    source: Annotated[str, Field(min_length=1, max_length=512)]
    contributor: Address
    units: Annotated[int, Strict(), Field(gt=0, le=2**53 - 1)]


class DataUsed(Payload):
    """The contributors' sources a worker's result used, with units per source."""

    request_id: UUID
    uses: Annotated[list[DataUse], Field(min_length=1, max_length=1000)]


class DataSourceRegistered(Payload):
    """A contributor claims a source: a URL prefix ``scheme://host[:port]/path``."""

    source: Annotated[str, Field(min_length=8, max_length=512, pattern=r"^https?://[^\s]+$")]
    contributor: Address


class HeartbeatV1(Payload):
    seq: Count


class Heartbeat(Payload):
    """A worker is alive. ``seq`` increases strictly per node."""

    seq: Count
    capabilities: list[Literal["data", "llm"]] = Field(default_factory=list, max_length=2)


# --- chain ----------------------------------------------------------------------------------
# One type per contract event, fields in the ABI's order, named in snake_case: a test holds
# them equal to the compiled ABIs.


class ChainLog(Payload):
    """Where a chain event came from; its event id derives from these fields."""

    chain_id: Annotated[int, Strict(), Field(gt=0, le=2**53 - 1)]
    contract: Address
    block_number: Count
    block_hash: Hash32
    tx_hash: Hash32
    log_index: Count


class ChainPayload(Payload):
    log: ChainLog


Amount = Wei
Bytes32 = Hash32
Uint8 = Annotated[int, Strict(), Field(ge=0, le=255)]


# NodeStaking


class Staked(ChainPayload):
    node: Address
    role: Annotated[int, Strict(), Field(ge=min(NodeRole), le=max(NodeRole))]
    amount: Amount
    new_stake: Amount


class UnstakeRequested(ChainPayload):
    node: Address
    lock_id: Amount
    amount: Amount
    unlock_at: Count
    new_stake: Amount
    new_locked: Amount


class Withdrawn(ChainPayload):
    node: Address
    lock_id: Amount
    amount: Amount
    new_locked: Amount


class LockSlashed(ChainPayload):
    node: Address
    lock_id: Amount
    amount: Amount
    remaining: Amount


class Slashed(ChainPayload):
    node: Address
    reason: Bytes32
    amount: Amount
    new_stake: Amount
    new_locked: Amount


class MinimumStakeUpdated(ChainPayload):
    role: Uint8
    minimum: Amount


class CooldownUpdated(ChainPayload):
    cooldown: Count


class TreasuryUpdated(ChainPayload):
    treasury: Address


# RewardsDistributor


class Funded(ChainPayload):
    funder: Address
    amount: Amount
    new_total_funded: Amount


class FeesDeposited(ChainPayload):
    oracle: Address
    amount: Amount
    deposited: Amount
    new_total_fees_deposited: Amount


class RootPosted(ChainPayload):
    epoch: Amount
    root: Bytes32
    total_cumulative: Amount
    statement_hash: Bytes32


class Claimed(ChainPayload):
    account: Address
    amount: Amount
    cumulative: Amount


class ChainLogRetracted(ChainPayload):
    """A log a reorg removed. ``stream_key`` is the aggregate of the retracted event."""

    retracted_id: UUID
    retracted_type: Annotated[str, Field(max_length=64)]
    stream_key: Annotated[str, Field(max_length=512)]

    @model_validator(mode="after")
    def _names_a_chain_type(self) -> ChainLogRetracted:
        if self.retracted_type not in CHAIN_TYPES:
            raise ValueError(f"{self.retracted_type} is not a chain event type")
        return self


class ChainFinalized(Payload):
    """The indexer's word that chain ``chain_id`` is final up to ``block_number``: the chain
    events it published for ``contracts`` in blocks up to there will never be retracted, and
    ``log_count`` of them (from its start block, retracted ones not counted) are canonical.
    Money moves only on chain events of finalized blocks."""

    chain_id: Annotated[int, Strict(), Field(gt=0, le=2**53 - 1)]
    block_number: Count
    block_hash: Hash32
    log_count: Count
    contracts: Annotated[list[Address], Field(min_length=1, max_length=16)]


# --- the money: parameters and epochs ---------------------------------------------------------

Seconds = Annotated[int, Strict(), Field(gt=0, le=10 * 365 * 86400)]
BasisPoints = Annotated[int, Strict(), Field(ge=0, le=10_000)]


class ParametersSet(Payload):
    """The governor publishes the reward parameters in force from ``effective_epoch`` on.

    Epoch ``e`` covers ``[start_e, start_e + epoch_length_s)`` of ``occurred_at``; the first
    set's ``genesis`` is epoch 0's start, and a later set's ``genesis`` must repeat it (a set
    that moves it is ignored by the read models). Emissions, stake cap and fees are wei;
    ``min_uptime_ppm`` is parts per million; the shares are basis points of each fee (the
    worker keeps the rest). A set for an epoch that is already closed never changes it.
    """

    effective_epoch: Count
    genesis: UtcDatetime
    epoch_length_s: Seconds
    heartbeat_interval_s: Seconds
    grace_s: Annotated[int, Strict(), Field(ge=0, le=30 * 86400)]
    emission_per_epoch: Wei
    stake_cap: Wei
    min_uptime_ppm: Annotated[int, Strict(), Field(ge=0, le=1_000_000)]
    protocol_share_bps: BasisPoints
    data_share_bps: BasisPoints
    treasury: Address

    @model_validator(mode="after")
    def _shares_fit_in_a_fee(self) -> ParametersSet:
        if self.protocol_share_bps + self.data_share_bps > 10_000:
            raise ValueError("protocol_share_bps + data_share_bps must be at most 10000")
        return self


class EpochClosed(Payload):
    """The settler closes ``epoch``: the store up to ``cutoff_position`` (a notification id)
    and the chain up to ``finalized_block`` are what the epoch's statement is computed from.
    After it, money-bearing events that occurred in the epoch count in the epoch open at their
    ingestion, and its late heartbeats are counted as late and earn nothing."""

    epoch: Count
    cutoff_position: Count
    finalized_block: Count


# --- the registry ---------------------------------------------------------------------------


@dataclass(frozen=True)
class EventType:
    name: str
    version: int
    payload: type[Payload]
    role: Role
    key_field: str
    """Where the aggregate key comes from: ``producer`` or a (dotted) payload field."""

    def key(self, payload: Payload, producer: str) -> str:
        if self.key_field == "producer":
            return producer
        value: Any = payload
        for part in self.key_field.split("."):
            value = getattr(value, part)
        return str(value)


_TYPES = [
    EventType("RequestSubmitted", 1, RequestSubmitted, Role.ORACLE, "request_id"),
    EventType("RequestCompleted", 1, RequestCompleted, Role.WORKER, "request_id"),
    EventType("RequestFailed", 1, RequestFailed, Role.WORKER, "request_id"),
    EventType("DataUsed", 1, DataUsed, Role.WORKER, "request_id"),
    EventType("DataSourceRegistered", 1, DataSourceRegistered, Role.CONTRIBUTOR, "source"),
    EventType("Heartbeat", 1, HeartbeatV1, Role.WORKER, "producer"),
    EventType("Heartbeat", 2, Heartbeat, Role.WORKER, "producer"),
    EventType("Staked", 1, Staked, Role.INDEXER, "node"),
    EventType("UnstakeRequested", 1, UnstakeRequested, Role.INDEXER, "node"),
    EventType("Withdrawn", 1, Withdrawn, Role.INDEXER, "node"),
    EventType("LockSlashed", 1, LockSlashed, Role.INDEXER, "node"),
    EventType("Slashed", 1, Slashed, Role.INDEXER, "node"),
    EventType("MinimumStakeUpdated", 1, MinimumStakeUpdated, Role.INDEXER, "log.contract"),
    EventType("CooldownUpdated", 1, CooldownUpdated, Role.INDEXER, "log.contract"),
    EventType("TreasuryUpdated", 1, TreasuryUpdated, Role.INDEXER, "log.contract"),
    EventType("FeesDeposited", 1, FeesDeposited, Role.INDEXER, "oracle"),
    EventType("Claimed", 1, Claimed, Role.INDEXER, "account"),
    EventType("Funded", 1, Funded, Role.INDEXER, "log.contract"),
    EventType("RootPosted", 1, RootPosted, Role.INDEXER, "log.contract"),
    EventType("ChainLogRetracted", 1, ChainLogRetracted, Role.INDEXER, "stream_key"),
    EventType("ChainFinalized", 1, ChainFinalized, Role.INDEXER, "chain_id"),
    EventType("ParametersSet", 1, ParametersSet, Role.GOVERNOR, "producer"),
    EventType("EpochClosed", 1, EpochClosed, Role.SETTLER, "producer"),
]

EVENT_TYPES: dict[tuple[str, int], EventType] = {(t.name, t.version): t for t in _TYPES}
CURRENT_VERSION: dict[str, int] = {}
for _t in _TYPES:
    CURRENT_VERSION[_t.name] = max(CURRENT_VERSION.get(_t.name, 0), _t.version)

#: The contracts' events (the types a retraction may name).
CHAIN_TYPES = frozenset(
    t.name
    for t in _TYPES
    if issubclass(t.payload, ChainPayload) and t.payload is not ChainLogRetracted
)


def _heartbeat_v1_to_v2(payload: dict[str, Any]) -> dict[str, Any]:
    """adds `capabilities: []`: a v1 worker did not say what it serves"""
    return {**payload, "capabilities": []}


#: (type, version) -> function turning that version's payload dict into the next version's.
UPCASTERS: dict[tuple[str, int], Callable[[dict[str, Any]], dict[str, Any]]] = {
    ("Heartbeat", 1): _heartbeat_v1_to_v2,
}


def max_length(model: type[BaseModel], field: str) -> int:
    """The ``max_length`` ``model`` sets on ``field``: callers read limits, never copy them."""
    for constraint in model.model_fields[field].metadata:  # annotated_types.MaxLen
        if isinstance(limit := getattr(constraint, "max_length", None), int):
            return limit
    raise LookupError(f"{model.__name__}.{field} sets no max_length")


_BY_PAYLOAD: dict[type[Payload], EventType] = {t.payload: t for t in _TYPES}


def lookup(name: str, version: int) -> EventType | None:
    return EVENT_TYPES.get((name, version))


def type_of(payload: Payload) -> EventType:
    """The event type whose payload model ``payload`` is (``HeartbeatV1``: Heartbeat v1)."""
    try:
        return _BY_PAYLOAD[type(payload)]
    except KeyError:
        raise TypeError(f"{type(payload).__name__} is not an event's payload") from None


def upcast(name: str, version: int, payload: dict[str, Any]) -> dict[str, Any]:
    """The payload of a stored event in the current version of its type."""
    while version < CURRENT_VERSION[name]:
        payload = UPCASTERS[(name, version)](payload)
        version += 1
    return payload
