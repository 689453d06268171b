"""An epoch's statement: what each address earned, its cumulative entitlement, and the tree.

``cumulative_e = cumulative_{e-1} + earned_e`` per address; an address that earned nothing this
epoch keeps its cumulative and stays in the tree. The tree is OpenZeppelin's
``StandardMerkleTree`` over ``(address, cumulative)`` leaves (``REWARD_LEAF_ENCODING``), which
``RewardsDistributor.claim`` verifies. The statement's canonical bytes are RFC 8785 JSON with
amounts as decimal strings; ``statement_hash`` is their keccak256, posted with the root.

:func:`check_statement` and :func:`same_bytes` return the reasons to refuse posting; an empty
list means the statement may be posted.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import rfc8785
from sha3 import keccak_256

from masa.errors import PermanentError
from settlement.formula import Rewards
from settlement.merkle import REWARD_LEAF_ENCODING, StandardMerkleTree, rewards_tree

STATEMENT_FORMAT = "masa-statement-v1"
ZERO_ROOT = "0x" + "00" * 32
"""The root posted for an epoch without any leaf (``RewardsDistributor.postRoot``)."""
_AMOUNTS = ("emission", "worker_fee", "data_fee", "treasury", "earned", "cumulative")


class InvalidStatement(PermanentError):
    """A statement is inconsistent (totals, order) or has no line for an address."""


@dataclass(frozen=True)
class StatementLine:
    """One address: this epoch's earnings by kind, their sum, and the new cumulative."""

    address: str
    emission: int
    worker_fee: int
    data_fee: int
    treasury: int
    earned: int
    cumulative: int

    def __post_init__(self) -> None:
        if self.earned != self.emission + self.worker_fee + self.data_fee + self.treasury:
            raise InvalidStatement(f"earned of {self.address} is not the sum of its kinds")
        if min(getattr(self, name) for name in _AMOUNTS) < 0:
            raise InvalidStatement(f"negative amount for {self.address}")

    def to_json(self) -> dict[str, str]:
        return {"address": self.address} | {name: str(getattr(self, name)) for name in _AMOUNTS}


@dataclass(frozen=True)
class Statement:
    """Lines sorted by address, one per address in the tree."""

    epoch: int
    lines: tuple[StatementLine, ...]
    total_cumulative: int

    def __post_init__(self) -> None:
        addresses = [line.address for line in self.lines]
        if addresses != sorted(set(addresses)):
            raise InvalidStatement("statement lines must be sorted by address, one per address")
        if self.total_cumulative != sum(line.cumulative for line in self.lines):
            raise InvalidStatement("total_cumulative is not the sum of the lines' cumulatives")

    def line(self, address: str) -> StatementLine | None:
        return self._by_address.get(address)

    def cumulative(self) -> dict[str, int]:
        """Each address's cumulative entitlement: the next epoch's previous cumulative."""
        return {line.address: line.cumulative for line in self.lines}

    @property
    def total_earned(self) -> int:
        return sum(line.earned for line in self.lines)

    def to_json(self) -> dict[str, Any]:
        return {
            "format": STATEMENT_FORMAT,
            "epoch": self.epoch,
            "lines": [line.to_json() for line in self.lines],
            "total_cumulative": str(self.total_cumulative),
        }

    def canonical_bytes(self) -> bytes:
        """RFC 8785 JSON of :meth:`to_json`: the bytes the statement hash covers."""
        return rfc8785.dumps(self.to_json())

    @property
    def statement_hash(self) -> str:
        digest: str = keccak_256(self.canonical_bytes()).hexdigest()
        return "0x" + digest

    def tree(self) -> StandardMerkleTree:
        """The tree of ``(address, cumulative)`` leaves; a statement without lines has none."""
        if not self.lines:
            raise InvalidStatement(f"statement of epoch {self.epoch} has no leaves")
        return self._tree

    @property
    def root(self) -> str:
        return self._tree.root if self.lines else ZERO_ROOT

    def proof(self, address: str) -> list[str]:
        """Sibling hashes proving ``(address, cumulative)`` against :attr:`root`."""
        line = self.line(address)
        if line is None:
            raise InvalidStatement(f"{address} has no line in the statement of epoch {self.epoch}")
        return self._tree.get_proof((line.address, line.cumulative))

    def dump(self) -> dict[str, Any]:
        """The tree's ``standard-v1`` dump, as ``@openzeppelin/merkle-tree`` writes it."""
        return self.tree().dump()

    @cached_property
    def _by_address(self) -> dict[str, StatementLine]:
        return {line.address: line for line in self.lines}

    @cached_property
    def _tree(self) -> StandardMerkleTree:
        return rewards_tree(self.cumulative())


def build_statement(rewards: Rewards, previous_cumulative: Mapping[str, int]) -> Statement:
    """The statement of ``rewards``' epoch on top of the previous epoch's cumulatives.

    An address gets a line when it earned something this epoch or had a cumulative before.
    """
    addresses = {a for a in rewards.addresses() if rewards.earned(a) > 0} | set(previous_cumulative)
    lines = tuple(
        _line(rewards, address, previous_cumulative.get(address, 0))
        for address in sorted(addresses)
    )
    return Statement(rewards.epoch, lines, sum(line.cumulative for line in lines))


def load_statement(data: bytes | str) -> Statement:
    """Read a statement back from its JSON (:meth:`Statement.to_json`)."""
    document = json.loads(data)
    if document.get("format") != STATEMENT_FORMAT:
        raise InvalidStatement(f"unknown statement format {document.get('format')!r}")
    lines = tuple(
        StatementLine(entry["address"], *(int(entry[name]) for name in _AMOUNTS))
        for entry in document["lines"]
    )
    return Statement(document["epoch"], lines, int(document["total_cumulative"]))


def _line(rewards: Rewards, address: str, previous: int) -> StatementLine:
    by_kind = rewards.earned_by_kind(address)
    earned = sum(by_kind.values())
    return StatementLine(
        address,
        emission=by_kind["emission"],
        worker_fee=by_kind["worker_fee"],
        data_fee=by_kind["data_fee"],
        treasury=by_kind["treasury"],
        earned=earned,
        cumulative=previous + earned,
    )


# --- checks before posting ----------------------------------------------------------------------


@dataclass(frozen=True)
class Refusal:
    """Why a statement must not be posted: a code, one line of what, and what to do."""

    code: str
    message: str
    remedy: str

    def __str__(self) -> str:
        return f"{self.code}: {self.message} ({self.remedy})"


def check_statement(
    previous: Statement | None,
    new: Statement,
    funded_emissions: int,
    finalized_fees_deposited: int,
    last_posted_epoch: int,
) -> list[Refusal]:
    """Every reason to refuse posting ``new`` after ``previous`` (``None`` before the first).

    ``last_posted_epoch`` is the distributor's ``currentEpoch()`` (0 before any post);
    ``funded_emissions`` and ``finalized_fees_deposited`` are the finalized totals of
    ``Funded`` and ``FeesDeposited``.
    """
    return [
        *_epoch_refusals(previous, new, last_posted_epoch),
        *_decrease_refusals(previous, new),
        *_funding_refusals(new, funded_emissions + finalized_fees_deposited),
    ]


def same_bytes(first: Statement, second: Statement) -> list[Refusal]:
    """Refuse unless two computations of one statement gave the same canonical bytes."""
    if first.canonical_bytes() == second.canonical_bytes():
        return []
    return [
        Refusal(
            "recomputation_differs",
            f"two computations of epoch {first.epoch} differ: statement hashes "
            f"{first.statement_hash} and {second.statement_hash}",
            "do not post; the inputs changed between reads or the computation is not "
            "deterministic; diff the two statements' JSON and recompute from the store",
        )
    ]


def _epoch_refusals(
    previous: Statement | None, new: Statement, last_posted_epoch: int
) -> list[Refusal]:
    refusals = []
    if new.epoch != last_posted_epoch + 1:
        refusals.append(
            Refusal(
                "not_next_epoch",
                f"statement is for epoch {new.epoch} but the next epoch to post is "
                f"{last_posted_epoch + 1}",
                "post the epochs in order, one root each; never skip or repeat one",
            )
        )
    if previous is not None and previous.epoch != new.epoch - 1:
        refusals.append(
            Refusal(
                "previous_not_adjacent",
                f"previous statement is of epoch {previous.epoch}, not {new.epoch - 1}",
                "compare with the statement of the epoch just before",
            )
        )
    return refusals


def _decrease_refusals(previous: Statement | None, new: Statement) -> list[Refusal]:
    if previous is None:
        return []
    refusals = []
    for old in previous.lines:
        line = new.line(old.address)
        now = 0 if line is None else line.cumulative
        if now < old.cumulative:
            refusals.append(
                Refusal(
                    "cumulative_decreased",
                    f"cumulative of {old.address} falls from {old.cumulative} to {now} wei "
                    f"in epoch {new.epoch}",
                    "do not post; a cumulative entitlement may only grow: check the previous "
                    "cumulatives the statement was built on",
                )
            )
    return refusals


def _funding_refusals(new: Statement, available: int) -> list[Refusal]:
    if new.total_cumulative <= available:
        return []
    return [
        Refusal(
            "over_funded",
            f"total cumulative {new.total_cumulative} wei exceeds the {available} wei funded "
            "and deposited (finalized)",
            "fund the distributor with the missing emissions or wait for deposits to finalize",
        )
    ]


__all__ = [
    "REWARD_LEAF_ENCODING",
    "STATEMENT_FORMAT",
    "ZERO_ROOT",
    "InvalidStatement",
    "Refusal",
    "Statement",
    "StatementLine",
    "build_statement",
    "check_statement",
    "load_statement",
    "same_bytes",
]
