"""The reward formula of one epoch (DESIGN §7), in integer wei: values in, values out.

Every amount the formula hands out is an :class:`Award`: who gets it, of which kind, by which
rule, from which terms, and the events that earned it, so that each wei can be explained.

- **Emission**: ``weight_w = uptime_ppm · min(lowest_stake, stake_cap)`` when the worker's
  uptime reaches ``min_uptime_ppm`` and it was not slashed, else 0;
  ``emission_w = E · weight_w // Σ weight``. What the floors leave (the dust) goes to the
  treasury, and so does all of ``E`` when no worker has weight.
- **Fees** of paid requests: ``protocol = fee · p // 10000`` and ``data = fee · d // 10000``;
  the worker gets the remainder ``fee - protocol - data``; the protocol part goes to the
  treasury.
- **Data part**: split among the request's contributors by units (a contributor's units summed
  over its uses), ``data · units_c // Σ units``; the dust goes to the treasury, and so does the
  whole data part when the request has no credited units.
- An unpaid request earns nothing.

The result does not depend on the order of the inputs, and conserves every wei:
``Σ awards == E + Σ fees of paid requests``.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Literal

from projections.rules.fees import FeeSplit
from projections.rules.fees import split_fee as split_by_bps
from settlement.inputs import (
    CreditedUse,
    EpochInputs,
    PaidRequest,
    RewardParameters,
    WorkerEpoch,
)

Kind = Literal["emission", "worker_fee", "data_fee", "treasury"]
KINDS: tuple[Kind, ...] = ("emission", "worker_fee", "data_fee", "treasury")

Term = int | str | tuple[str, ...]


@dataclass(frozen=True)
class Award:
    """``amount`` wei of ``kind`` to ``address``, by ``rule`` applied to ``terms``.

    ``event_ids`` are the stored events that earned it (sorted, unique). Rules:
    ``emission``, ``no_emission`` (a worker without weight; 0 wei), ``emission_dust``,
    ``emission_unweighted`` (no worker had weight), ``worker_fee``, ``protocol_fee``,
    ``data_fee``, ``data_dust``, ``data_unattributed`` (no credited units).
    """

    address: str
    kind: Kind
    amount: int
    rule: str
    terms: Mapping[str, Term]
    event_ids: tuple[str, ...]


@dataclass(frozen=True)
class Rewards:
    """All awards of one epoch, in a canonical order (address, kind, rule, request)."""

    parameters: RewardParameters
    awards: tuple[Award, ...]
    fees: int
    """Σ fees of the epoch's paid requests."""

    @property
    def epoch(self) -> int:
        return self.parameters.epoch

    @property
    def total(self) -> int:
        """Σ of all awards: the epoch's emission plus its paid fees."""
        return sum(award.amount for award in self.awards)

    def addresses(self) -> tuple[str, ...]:
        """Every address with an award (also of 0 wei), sorted."""
        return tuple(sorted({award.address for award in self.awards}))

    def awards_of(self, address: str) -> tuple[Award, ...]:
        return self._by_address.get(address, ())

    @cached_property
    def _by_address(self) -> dict[str, tuple[Award, ...]]:
        """The awards per address, in their canonical order (one pass over all of them)."""
        grouped: dict[str, list[Award]] = {}
        for award in self.awards:
            grouped.setdefault(award.address, []).append(award)
        return {address: tuple(awards) for address, awards in grouped.items()}

    def earned_by_kind(self, address: str) -> dict[Kind, int]:
        """What ``address`` earned this epoch, per kind (every kind present, 0 when none)."""
        earned = dict.fromkeys(KINDS, 0)
        for award in self.awards_of(address):
            earned[award.kind] += award.amount
        return earned

    def earned(self, address: str) -> int:
        return sum(award.amount for award in self.awards_of(address))


def compute_rewards(inputs: EpochInputs) -> Rewards:
    """Apply the formula to one epoch's inputs.

    Awards of 0 wei are dropped, except workers' emission awards, which say why a worker
    earned no emission (or rounded down to none).
    """
    parameters = inputs.parameters
    awards = [
        award
        for award in (
            *emission_awards(parameters, inputs.workers),
            *fee_awards(parameters, inputs.requests),
        )
        if award.amount > 0 or award.kind == "emission"
    ]
    fees = sum(request.fee for request in inputs.requests if request.paid)
    rewards = Rewards(parameters, tuple(sorted(awards, key=_award_order)), fees)
    _check_conservation(rewards)
    return rewards


# --- emission -----------------------------------------------------------------------------------


def weight(parameters: RewardParameters, worker: WorkerEpoch) -> int:
    """``uptime_ppm · min(lowest_stake, stake_cap)``, or 0 when the worker earns no emission."""
    if no_emission_reason(parameters, worker) is not None:
        return 0
    return worker.uptime_ppm * min(worker.lowest_stake, parameters.stake_cap)


def no_emission_reason(parameters: RewardParameters, worker: WorkerEpoch) -> str | None:
    """Why the worker's weight is 0 (``slashed``, ``below_min_uptime``, ``no_weight``), if it is."""
    if worker.slashed:
        return "slashed"
    if worker.uptime_ppm < parameters.min_uptime_ppm:
        return "below_min_uptime"
    if worker.uptime_ppm * min(worker.lowest_stake, parameters.stake_cap) == 0:
        return "no_weight"
    return None


def emission_awards(parameters: RewardParameters, workers: Sequence[WorkerEpoch]) -> list[Award]:
    """Each worker's share of ``E`` by weight, and what is left to the treasury."""
    ordered = sorted(workers, key=lambda worker: worker.address)
    weights = {worker.address: weight(parameters, worker) for worker in ordered}
    total_weight = sum(weights.values())
    if total_weight == 0:
        awards = [_no_emission(parameters, worker) for worker in ordered]
        return [*awards, _emission_unweighted(parameters)]
    awards = [
        _emission(parameters, worker, weights[worker.address], total_weight) for worker in ordered
    ]
    distributed = sum(award.amount for award in awards)
    weighted = [worker for worker in ordered if weights[worker.address]]
    return [*awards, _emission_dust(parameters, distributed, weighted)]


def _emission(
    parameters: RewardParameters, worker: WorkerEpoch, worker_weight: int, total_weight: int
) -> Award:
    if worker_weight == 0:
        return _no_emission(parameters, worker)
    terms = {
        "emission": parameters.emission,
        "uptime_ppm": worker.uptime_ppm,
        "lowest_stake": worker.lowest_stake,
        "stake_cap": parameters.stake_cap,
        "weight": worker_weight,
        "total_weight": total_weight,
    }
    amount = parameters.emission * worker_weight // total_weight
    return _award(worker.address, "emission", amount, "emission", terms, worker.evidence_event_ids)


def _no_emission(parameters: RewardParameters, worker: WorkerEpoch) -> Award:
    terms: dict[str, Term] = {
        "reason": no_emission_reason(parameters, worker) or "no_weight",
        "uptime_ppm": worker.uptime_ppm,
        "min_uptime_ppm": parameters.min_uptime_ppm,
        "lowest_stake": worker.lowest_stake,
        "stake_cap": parameters.stake_cap,
    }
    return _award(worker.address, "emission", 0, "no_emission", terms, worker.evidence_event_ids)


def _emission_dust(
    parameters: RewardParameters, distributed: int, weighted: Sequence[WorkerEpoch]
) -> Award:
    terms = {"emission": parameters.emission, "distributed": distributed}
    evidence = [event_id for worker in weighted for event_id in worker.evidence_event_ids]
    amount = parameters.emission - distributed
    return _award(parameters.treasury, "treasury", amount, "emission_dust", terms, evidence)


def _emission_unweighted(parameters: RewardParameters) -> Award:
    terms = {"emission": parameters.emission}
    treasury = parameters.treasury
    return _award(treasury, "treasury", parameters.emission, "emission_unweighted", terms, ())


# --- fees ---------------------------------------------------------------------------------------


def split_fee(parameters: RewardParameters, fee: int) -> FeeSplit:
    """Protocol and data parts by floor; the worker gets the remainder (the read models'
    ``epoch_fees`` use the same rule: ``projections.rules.fees``)."""
    return split_by_bps(fee, parameters.protocol_share_bps, parameters.data_share_bps)


def fee_awards(parameters: RewardParameters, requests: Sequence[PaidRequest]) -> list[Award]:
    """The awards of every paid request; an unpaid request earns nothing."""
    ordered = sorted(requests, key=lambda request: request.request_id)
    return [award for r in ordered if r.paid for award in request_awards(parameters, r)]


def request_awards(parameters: RewardParameters, request: PaidRequest) -> list[Award]:
    """One paid request's fee, split between the treasury, the worker and the contributors."""
    split = split_fee(parameters, request.fee)
    base: dict[str, Term] = {"request_id": request.request_id, "fee": request.fee}
    events = (request.completed_event_id,)
    protocol_terms: dict[str, Term] = {**base, "protocol_share_bps": parameters.protocol_share_bps}
    worker_terms: dict[str, Term] = {**base, "protocol": split.protocol, "data": split.data}
    return [
        _award(
            parameters.treasury, "treasury", split.protocol, "protocol_fee", protocol_terms, events
        ),
        _award(request.worker, "worker_fee", split.worker, "worker_fee", worker_terms, events),
        *data_awards(parameters, request, split.data),
    ]


def data_awards(parameters: RewardParameters, request: PaidRequest, data: int) -> list[Award]:
    """The data part by units among the request's contributors; dust to the treasury."""
    by_contributor = _uses_by_contributor(request.uses)
    total_units = sum(use.units for use in request.uses)
    base: dict[str, Term] = {"request_id": request.request_id, "data": data}
    if total_units == 0:
        events: tuple[str, ...] = (request.completed_event_id,)
        return [_award(parameters.treasury, "treasury", data, "data_unattributed", base, events)]
    awards = [
        _data_fee(request, data, contributor, uses, total_units)
        for contributor, uses in by_contributor.items()
    ]
    distributed = sum(award.amount for award in awards)
    events = (request.completed_event_id, *(use.event_id for use in request.uses))
    dust_terms: dict[str, Term] = {**base, "distributed": distributed}
    dust = _award(
        parameters.treasury, "treasury", data - distributed, "data_dust", dust_terms, events
    )
    return [*awards, dust]


def _data_fee(
    request: PaidRequest,
    data: int,
    contributor: str,
    uses: Sequence[CreditedUse],
    total_units: int,
) -> Award:
    units = sum(use.units for use in uses)
    terms: dict[str, Term] = {
        "request_id": request.request_id,
        "data": data,
        "units": units,
        "total_units": total_units,
        "sources": tuple(sorted({use.source for use in uses})),
    }
    events = [request.completed_event_id, *(use.event_id for use in uses)]
    return _award(contributor, "data_fee", data * units // total_units, "data_fee", terms, events)


def _uses_by_contributor(uses: Iterable[CreditedUse]) -> dict[str, list[CreditedUse]]:
    grouped: defaultdict[str, list[CreditedUse]] = defaultdict(list)
    for use in uses:
        grouped[use.contributor].append(use)
    return dict(sorted(grouped.items()))


# --- helpers ------------------------------------------------------------------------------------


def _award(
    address: str,
    kind: Kind,
    amount: int,
    rule: str,
    terms: Mapping[str, Term],
    event_ids: Iterable[str],
) -> Award:
    return Award(address, kind, amount, rule, dict(terms), tuple(sorted(set(event_ids))))


def _award_order(award: Award) -> tuple[str, int, str, str]:
    request_id = award.terms.get("request_id", "")
    return (award.address, KINDS.index(award.kind), award.rule, str(request_id))


def _check_conservation(rewards: Rewards) -> None:
    expected = rewards.parameters.emission + rewards.fees
    if rewards.total != expected or any(award.amount < 0 for award in rewards.awards):
        raise AssertionError(f"rewards hand out {rewards.total} wei, expected {expected}")
