"""One epoch's reward inputs, as the read models will provide them (DESIGN §7).

Plain frozen values, checked on construction: amounts are non-negative integers in wei,
fractions are integers in parts per million (``ppm``) or basis points (``bps``), addresses are
lower-case ``0x`` hex. Nothing here reads a store or a setting.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from types import MappingProxyType

from masa.errors import PermanentError

PPM = 1_000_000
"""Uptime is a fraction of the epoch in parts per million."""
BPS = 10_000
"""Fee shares are fractions of a fee in basis points."""

_ADDRESS = re.compile(r"0x[0-9a-f]{40}")


class InvalidRewardInputs(PermanentError):
    """An epoch's inputs break a rule of the formula; recomputing cannot help."""


@dataclass(frozen=True)
class RewardParameters:
    """The published parameters in force for ``epoch`` (from its ``ParametersSet``)."""

    epoch: int
    emission: int
    """``E_e``: wei emitted to the epoch's workers."""
    stake_cap: int
    """Stake above this many wei earns no more weight."""
    min_uptime_ppm: int
    """``u_min``: a worker below this uptime earns no emission."""
    protocol_share_bps: int
    """``p``: the treasury's share of every fee."""
    data_share_bps: int
    """``d``: the contributors' share of every fee."""
    treasury: str

    def __post_init__(self) -> None:
        _require_natural("epoch", self.epoch)
        _require_natural("emission", self.emission)
        _require_natural("stake_cap", self.stake_cap)
        _require_fraction("min_uptime_ppm", self.min_uptime_ppm, PPM)
        _require_fraction("protocol_share_bps", self.protocol_share_bps, BPS)
        _require_fraction("data_share_bps", self.data_share_bps, BPS)
        if self.protocol_share_bps + self.data_share_bps > BPS:
            raise InvalidRewardInputs(
                f"protocol_share_bps + data_share_bps = "
                f"{self.protocol_share_bps + self.data_share_bps} exceeds {BPS}"
            )
        _require_address("treasury", self.treasury)


@dataclass(frozen=True)
class WorkerEpoch:
    """What a worker did for emissions during the epoch."""

    address: str
    uptime_ppm: int
    lowest_stake: int
    """The lowest finalized active stake the worker held during the epoch, in wei."""
    slashed: bool
    """Slashed during the epoch: no emission, whatever the uptime."""
    evidence_event_ids: tuple[str, ...] = ()
    """The events behind uptime and stake (heartbeats, stake changes)."""

    def __post_init__(self) -> None:
        _require_address("worker address", self.address)
        _require_fraction("uptime_ppm", self.uptime_ppm, PPM)
        _require_natural("lowest_stake", self.lowest_stake)
        object.__setattr__(self, "evidence_event_ids", tuple(self.evidence_event_ids))


@dataclass(frozen=True)
class CreditedUse:
    """One ``DataUsed`` entry of a source registered to ``contributor``."""

    contributor: str
    source: str
    units: int
    event_id: str
    """The ``DataUsed`` event that named the use."""

    def __post_init__(self) -> None:
        _require_address("contributor", self.contributor)
        _require_natural("units", self.units)


@dataclass(frozen=True)
class PaidRequest:
    """A completed request and its fee; ``paid`` is false when its fee was never settled."""

    request_id: str
    worker: str
    fee: int
    paid: bool
    completed_event_id: str
    uses: tuple[CreditedUse, ...] = ()
    """Uses already filtered to sources registered to their contributor."""

    def __post_init__(self) -> None:
        _require_address("request worker", self.worker)
        _require_natural("fee", self.fee)
        object.__setattr__(self, "uses", tuple(self.uses))


@dataclass(frozen=True)
class EpochInputs:
    """Everything the formula needs for one epoch, and nothing else."""

    parameters: RewardParameters
    workers: tuple[WorkerEpoch, ...] = ()
    requests: tuple[PaidRequest, ...] = ()
    previous_cumulative: Mapping[str, int] = field(default_factory=dict)
    """Each address's cumulative entitlement after the previous epoch, in wei."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "workers", tuple(self.workers))
        object.__setattr__(self, "requests", tuple(self.requests))
        _require_unique("worker", [w.address for w in self.workers])
        _require_unique("request", [r.request_id for r in self.requests])
        for address, amount in self.previous_cumulative.items():
            _require_address("previous cumulative address", address)
            _require_natural(f"previous cumulative of {address}", amount)
        frozen = MappingProxyType(dict(sorted(self.previous_cumulative.items())))
        object.__setattr__(self, "previous_cumulative", frozen)


def parameters_for_epoch(published: Sequence[RewardParameters], epoch: int) -> RewardParameters:
    """The parameters in force in ``epoch``: those published with the highest effective epoch
    not after it (``RewardParameters.epoch`` is a publication's effective epoch), the last
    published among equals. A later publication never changes an earlier epoch.
    """
    in_force = [p for p in published if p.epoch <= epoch]
    if not in_force:
        raise InvalidRewardInputs(f"no parameters are in force in epoch {epoch}")
    latest = max(range(len(in_force)), key=lambda i: (in_force[i].epoch, i))
    return replace(in_force[latest], epoch=epoch)


def _require_natural(name: str, value: int) -> None:
    if type(value) is not int or value < 0:
        raise InvalidRewardInputs(f"{name} must be a non-negative integer, got {value!r}")


def _require_fraction(name: str, value: int, whole: int) -> None:
    _require_natural(name, value)
    if value > whole:
        raise InvalidRewardInputs(f"{name} must be at most {whole}, got {value}")


def _require_address(name: str, value: str) -> None:
    if not isinstance(value, str) or not _ADDRESS.fullmatch(value):
        raise InvalidRewardInputs(f"{name} must be a lower-case 0x address, got {value!r}")


def _require_unique(what: str, keys: list[str]) -> None:
    seen: set[str] = set()
    for key in keys:
        if key in seen:
            raise InvalidRewardInputs(f"{what} {key} appears more than once in the epoch")
        seen.add(key)
