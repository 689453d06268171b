"""Which of a ``DataUsed``'s uses credit their contributor (DESIGN §7).

A use ``(source, contributor, units)`` is credited only if ``source`` -- exactly the string a
contributor registered, no prefix matching here -- is registered to that same contributor at
the time of use. The first registration of a source wins (ingest refuses later ones as
``source_taken``; ``first_registrations`` applies the same rule). Every use is either credited
or refused with its reason, so credited units + refused units = the uses' units.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import NamedTuple

from indexer.events.types import DataUsed


class Use(NamedTuple):
    source: str
    contributor: str
    units: int


class Refusal(StrEnum):
    UNREGISTERED_SOURCE = "unregistered_source"
    REGISTERED_TO_OTHER = "registered_to_other"


@dataclass(frozen=True)
class Attribution:
    credited: tuple[Use, ...]
    refused: tuple[tuple[Use, Refusal], ...]

    @property
    def credited_units(self) -> int:
        return sum(use.units for use in self.credited)

    @property
    def refused_units(self) -> int:
        return sum(use.units for use, _ in self.refused)

    def units_by_contributor(self) -> dict[str, int]:
        """Credited units per contributor, what ``fees.split_by_units`` takes."""
        totals: dict[str, int] = {}
        for use in self.credited:
            totals[use.contributor] = totals.get(use.contributor, 0) + use.units
        return totals


def uses_of(event: DataUsed) -> tuple[Use, ...]:
    return tuple(Use(u.source, u.contributor, u.units) for u in event.uses)


def first_registrations(registrations: Iterable[tuple[str, str]]) -> dict[str, str]:
    """``{source: contributor}`` from ``(source, contributor)`` in store order; first wins."""
    registry: dict[str, str] = {}
    for source, contributor in registrations:
        registry.setdefault(source, contributor)
    return registry


def attribute(uses: Iterable[tuple[str, str, int]], registry: Mapping[str, str]) -> Attribution:
    """Split ``uses`` (``Use`` or plain triples) into credited ones and refused ones with their
    reason, each in the order given."""
    credited: list[Use] = []
    refused: list[tuple[Use, Refusal]] = []
    for use in map(Use._make, uses):
        reason = _refusal(use, registry)
        if reason is None:
            credited.append(use)
        else:
            refused.append((use, reason))
    return Attribution(tuple(credited), tuple(refused))


def _refusal(use: Use, registry: Mapping[str, str]) -> Refusal | None:
    owner = registry.get(use.source)
    if owner is None:
        return Refusal.UNREGISTERED_SOURCE
    return None if owner == use.contributor else Refusal.REGISTERED_TO_OTHER
