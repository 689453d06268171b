"""Splitting wei: a fee into its parts, an amount among shares by units (DESIGN §7).

Integer wei and floor division only. ``split_fee`` gives the worker what the protocol and data
parts leave, so the three always sum to the fee. ``split_by_units`` floors every share and
returns what is left (the dust, less than the number of keys) apart, for the treasury; each
share depends only on its own units and the total, so the input's order cannot matter.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

BPS = 10_000


@dataclass(frozen=True)
class FeeSplit:
    protocol: int
    data: int
    worker: int


def split_fee(fee: int, protocol_bps: int, data_bps: int) -> FeeSplit:
    """``protocol = fee·p // 10_000``, ``data = fee·d // 10_000``, the worker the rest."""
    if fee < 0 or protocol_bps < 0 or data_bps < 0 or protocol_bps + data_bps > BPS:
        raise ValueError("fee must be ≥ 0 and the shares within 0..10_000 bps together")
    protocol = fee * protocol_bps // BPS
    data = fee * data_bps // BPS
    return FeeSplit(protocol, data, fee - protocol - data)


def split_by_units(amount: int, units: Mapping[str, int]) -> tuple[dict[str, int], int]:
    """``({key: amount·units_k // Σ units}, dust)``, keys sorted; all of it is dust when
    there are no units."""
    if amount < 0 or any(u < 0 for u in units.values()):
        raise ValueError("amount and units must be non-negative")
    total = sum(units.values())
    if total == 0:
        return {key: 0 for key in sorted(units)}, amount
    shares = {key: amount * units[key] // total for key in sorted(units)}
    return shares, amount - sum(shares.values())
