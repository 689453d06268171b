"""The read models' pure rules: values in, values out; no I/O, no settings, no database.

``epochs`` (parameters and boundaries), ``uptime`` (coverage of heartbeats), ``stakes`` (a
node's stake from chain logs, final and pending), ``balances`` (an oracle's prepaid fees),
``fees`` (splitting wei) and ``attribution`` (which data uses credit their contributor).
"""

from projections.rules.epochs import Parameters, ParameterSchedule
from projections.rules.stakes import ChainFact, Kind, NodeStake, NodeStakeView, Status
from projections.rules.uptime import Coverage, EpochUptime, epoch_uptime

__all__ = [
    "ChainFact",
    "Coverage",
    "EpochUptime",
    "Kind",
    "NodeStake",
    "NodeStakeView",
    "ParameterSchedule",
    "Parameters",
    "Status",
    "epoch_uptime",
]
