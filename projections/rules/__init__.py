"""The read models' pure rules: values in, values out; no I/O, no settings, no database.

``epochs`` (parameters and boundaries), ``uptime`` (coverage of heartbeats), ``stakes`` (a
node's stake from chain logs, final and pending), ``balances`` (an oracle's prepaid fees),
``fees`` (splitting wei) and ``attribution`` (which data uses credit their contributor).
"""

from projections.rules.attribution import Attribution, Refusal, Use, attribute
from projections.rules.balances import OracleBalance
from projections.rules.epochs import Parameters, ParameterSchedule
from projections.rules.fees import FeeSplit, split_by_units, split_fee
from projections.rules.stakes import ChainFact, Kind, NodeStake, NodeStakeView, Status
from projections.rules.uptime import Coverage, EpochUptime, epoch_uptime

__all__ = [
    "Attribution",
    "ChainFact",
    "Coverage",
    "EpochUptime",
    "FeeSplit",
    "Kind",
    "NodeStake",
    "NodeStakeView",
    "OracleBalance",
    "ParameterSchedule",
    "Parameters",
    "Refusal",
    "Status",
    "Use",
    "attribute",
    "epoch_uptime",
    "split_by_units",
    "split_fee",
]
