"""Trace every wei an address earned in an epoch to its rule, its terms and its events.

One line per award of the address, so the lines' amounts add up to what the statement says it
earned (``explain`` refuses a statement that disagrees with the rewards).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

from settlement.formula import Award, Kind, Rewards, Term
from settlement.statement import InvalidStatement, Statement

_TIMES = "\N{MULTIPLICATION SIGN}"
_MINUS = "\N{MINUS SIGN}"


@dataclass(frozen=True)
class ExplanationLine:
    """One award: its amount and kind, the rule in words and numbers, and its events."""

    kind: Kind
    amount: int
    rule: str
    formula: str
    event_ids: tuple[str, ...]

    def render(self) -> str:
        return f"{self.formula} from events [{', '.join(self.event_ids)}]"


@dataclass(frozen=True)
class Explanation:
    address: str
    epoch: int
    lines: tuple[ExplanationLine, ...]
    earned: int
    previous_cumulative: int
    cumulative: int

    def render(self) -> str:
        head = (
            f"{self.address} in epoch {self.epoch}: earned {self.earned} wei, cumulative "
            f"{self.previous_cumulative} + {self.earned} = {self.cumulative} wei"
        )
        return "\n".join([head, *(f"  {line.render()}" for line in self.lines)]) + "\n"


def explain(rewards: Rewards, statement: Statement, address: str) -> Explanation:
    """The lines behind ``address``'s statement line (none when it earned nothing)."""
    if statement.epoch != rewards.epoch:
        raise InvalidStatement(
            f"statement of epoch {statement.epoch} explained with rewards of {rewards.epoch}"
        )
    lines = tuple(explain_award(award) for award in rewards.awards_of(address))
    earned = sum(line.amount for line in lines)
    statement_line = statement.line(address)
    cumulative = 0 if statement_line is None else statement_line.cumulative
    if statement_line is not None and statement_line.earned != earned:
        raise InvalidStatement(
            f"statement says {address} earned {statement_line.earned} wei, rewards say {earned}"
        )
    return Explanation(address, rewards.epoch, lines, earned, cumulative - earned, cumulative)


def explain_award(award: Award) -> ExplanationLine:
    formula = f"{award.kind} {award.amount} wei = {_RULES[award.rule](award.terms)}"
    return ExplanationLine(award.kind, award.amount, award.rule, formula, award.event_ids)


def _emission(t: Mapping[str, Term]) -> str:
    stake = f"min({t['lowest_stake']}, {t['stake_cap']})"
    return (
        f"{t['emission']} {_TIMES} {t['uptime_ppm']}·{stake} / {t['total_weight']} rounded down "
        f"(uptime {t['uptime_ppm']} ppm, stake {t['lowest_stake']}, cap {t['stake_cap']})"
    )


def _no_emission(t: Mapping[str, Term]) -> str:
    if t["reason"] == "slashed":
        return "nothing: slashed during the epoch"
    if t["reason"] == "below_min_uptime":
        return f"nothing: uptime {t['uptime_ppm']} ppm is below the minimum {t['min_uptime_ppm']}"
    return f"nothing: no weight (uptime {t['uptime_ppm']} ppm, lowest stake {t['lowest_stake']})"


def _emission_dust(t: Mapping[str, Term]) -> str:
    return f"emission dust: {t['emission']} {_MINUS} {t['distributed']} handed out to workers"


def _emission_unweighted(t: Mapping[str, Term]) -> str:
    return f"the whole emission {t['emission']}: no worker had weight"


def _protocol_fee(t: Mapping[str, Term]) -> str:
    return (
        f"{t['fee']} {_TIMES} {t['protocol_share_bps']} / 10000 rounded down, protocol share of "
        f"request {t['request_id']}"
    )


def _worker_fee(t: Mapping[str, Term]) -> str:
    return (
        f"{t['fee']} {_MINUS} {t['protocol']} protocol {_MINUS} {t['data']} data, worker share of "
        f"request {t['request_id']}"
    )


def _data_fee(t: Mapping[str, Term]) -> str:
    sources = t["sources"]
    named = ", ".join(sources) if isinstance(sources, tuple) else str(sources)
    return (
        f"{t['data']} {_TIMES} {t['units']} / {t['total_units']} units rounded down, data share of "
        f"request {t['request_id']} (sources {named})"
    )


def _data_dust(t: Mapping[str, Term]) -> str:
    return (
        f"data dust of request {t['request_id']}: {t['data']} {_MINUS} {t['distributed']} "
        "handed out to contributors"
    )


def _data_unattributed(t: Mapping[str, Term]) -> str:
    return f"data part of request {t['request_id']}: no credited use"


_RULES: dict[str, Callable[[Mapping[str, Term]], str]] = {
    "emission": _emission,
    "no_emission": _no_emission,
    "emission_dust": _emission_dust,
    "emission_unweighted": _emission_unweighted,
    "protocol_fee": _protocol_fee,
    "worker_fee": _worker_fee,
    "data_fee": _data_fee,
    "data_dust": _data_dust,
    "data_unattributed": _data_unattributed,
}
