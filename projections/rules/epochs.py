"""Epochs and the parameters in force in each (DESIGN §7).

Parameters are events (``ParametersSet``), each with an ``effective_epoch``: a set applies
from that epoch on, until a set with a later effective epoch. Two sets for the same effective
epoch: the one added later wins.

Boundaries. ``genesis`` is fixed by the first set added to a schedule; the ``genesis`` of any
later set is ignored, so a new set can never move past epochs. Epoch 0 starts at genesis and
epoch ``k`` starts where epoch ``k - 1`` ended; epoch ``e`` covers ``[start_e, start_e + L_e)``
(half-open, unix seconds) where ``L_e`` is the epoch length in force in ``e``. Epochs before
the earliest effective epoch have no parameters (``in_force`` is ``None``); to keep the time
line defined they take the earliest set's length.

A set whose effective epoch is already past changes the boundaries of the epochs from there on:
these rules compute whatever the schedule says; refusing such a set is the caller's decision.
"""

from __future__ import annotations

import re
from bisect import bisect_right
from dataclasses import dataclass, field
from itertools import pairwise

PPM = 1_000_000
BPS = 10_000
_ADDRESS = re.compile(r"^0x[0-9a-f]{40}$")


@dataclass(frozen=True)
class Parameters:
    """One ``ParametersSet``: wei for money, seconds for time, ppm and bps for shares."""

    effective_epoch: int
    genesis: int
    epoch_length_s: int
    heartbeat_interval_s: int
    grace_s: int
    emission_per_epoch: int
    stake_cap: int
    min_uptime_ppm: int
    protocol_share_bps: int
    data_share_bps: int
    treasury: str

    def __post_init__(self) -> None:
        for name in _INTEGERS:
            _require_natural(name, getattr(self, name))
        if self.epoch_length_s == 0 or self.heartbeat_interval_s == 0:
            raise ValueError("epoch_length_s and heartbeat_interval_s must be positive")
        if self.min_uptime_ppm > PPM:
            raise ValueError(f"min_uptime_ppm must be at most {PPM}")
        if self.protocol_share_bps + self.data_share_bps > BPS:
            raise ValueError(f"protocol_share_bps + data_share_bps must be at most {BPS}")
        if not isinstance(self.treasury, str) or not _ADDRESS.match(self.treasury):
            raise ValueError("treasury must be a lower-case 0x address")


_INTEGERS = [
    "effective_epoch",
    "genesis",
    "epoch_length_s",
    "heartbeat_interval_s",
    "grace_s",
    "emission_per_epoch",
    "stake_cap",
    "min_uptime_ppm",
    "protocol_share_bps",
    "data_share_bps",
]


def _require_natural(name: str, value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"{name} must be a non-negative integer, got {value!r}")


@dataclass(frozen=True)
class ParameterSchedule:
    """Every parameter set known, by effective epoch; immutable (``with_set`` returns a new one).

    ``sets`` is sorted by effective epoch, one per epoch; ``starts[i]`` is the unix time at
    which ``sets[i]``'s effective epoch begins.
    """

    genesis: int | None = None
    sets: tuple[Parameters, ...] = ()
    starts: tuple[int, ...] = field(default=(), repr=False)

    @classmethod
    def of(cls, *sets: Parameters) -> ParameterSchedule:
        """The schedule after adding ``sets`` in this order."""
        schedule = cls()
        for params in sets:
            schedule = schedule.with_set(params)
        return schedule

    def with_set(self, params: Parameters) -> ParameterSchedule:
        """This schedule with ``params`` added; it replaces a set of the same effective epoch."""
        genesis = params.genesis if self.genesis is None else self.genesis
        kept = [p for p in self.sets if p.effective_epoch != params.effective_epoch]
        sets = tuple(sorted([*kept, params], key=lambda p: p.effective_epoch))
        return ParameterSchedule(genesis, sets, _starts(genesis, sets))

    def in_force(self, epoch: int) -> Parameters | None:
        """The set with the latest effective epoch at or before ``epoch``, if any."""
        index = self._segment_at_epoch(epoch)
        if index is None or self.sets[index].effective_epoch > epoch:
            return None
        return self.sets[index]

    def bounds(self, epoch: int) -> tuple[int, int]:
        """``(start, end)`` of ``epoch`` in unix seconds, half-open."""
        if epoch < 0:
            raise ValueError("epochs start at 0")
        index = self._segment_at_epoch(epoch)
        if index is None:
            raise ValueError("no parameters: epochs are not defined yet")
        params = self.sets[index]
        start = self.starts[index] + (epoch - params.effective_epoch) * params.epoch_length_s
        return start, start + params.epoch_length_s

    def epoch_of(self, unix_ts: int) -> int | None:
        """The epoch covering ``unix_ts``; ``None`` before genesis or with no parameters."""
        if self.genesis is None or unix_ts < self.genesis:
            return None
        index = max(bisect_right(self.starts, unix_ts) - 1, 0)
        params = self.sets[index]
        return params.effective_epoch + (unix_ts - self.starts[index]) // params.epoch_length_s

    def _segment_at_epoch(self, epoch: int) -> int | None:
        """Index of the set whose length governs ``epoch`` (the earliest one before it)."""
        if not self.sets:
            return None
        effective = [p.effective_epoch for p in self.sets]
        return max(bisect_right(effective, epoch) - 1, 0)


def _starts(genesis: int, sets: tuple[Parameters, ...]) -> tuple[int, ...]:
    """Start time of each set's effective epoch: the earliest set's length runs from genesis,
    and each set's epochs follow the previous set's last epoch."""
    first = sets[0]
    starts = [genesis + first.effective_epoch * first.epoch_length_s]
    for previous, params in pairwise(sets):
        epochs = params.effective_epoch - previous.effective_epoch
        starts.append(starts[-1] + epochs * previous.epoch_length_s)
    return tuple(starts)
