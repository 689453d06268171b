"""Claiming rewards: what ``masa claim`` does, for the CLI and ``masa demo`` alike.

The proof comes from the recorded settlement whose root the distributor holds now (its current
root, or the previous one, which it also accepts); the tokens go to the account, whoever sends
the transaction. One claim pays everything not yet claimed, over any number of epochs.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from contracts.client import MasaClient
from masa.errors import ConfigurationError, PermanentError
from settlement.settler import Settlement


@dataclass(frozen=True)
class Claimed:
    """One claim: the statement it was proved against and what the distributor paid."""

    account: str
    epoch: int
    cumulative: int
    paid: int
    claimed: int
    """What the account has been paid in all, after this claim (read from the distributor)."""

    def to_json(self) -> dict[str, Any]:
        return {"account": self.account, "epoch": self.epoch, "cumulative": str(self.cumulative),
                "paid": str(self.paid), "claimed": str(self.claimed)}  # fmt: skip


def claim(client: MasaClient, settlements: Sequence[Settlement], account: str) -> Claimed:
    """Claim for ``account`` (lower case) from ``client``'s key against the latest of
    ``settlements`` whose root the distributor holds."""
    state = client.distributor_state()
    roots = {state.root.lower(), state.previous_root.lower()}
    posted = [s for s in settlements if s.posting.root.lower() in roots
              and s.posting.chain_epoch <= state.current_epoch]  # fmt: skip
    if not posted:
        raise PermanentError("no settlement here matches the distributor's roots")
    latest = max(posted, key=lambda s: s.epoch)
    statement = latest.statement()
    line = statement.line(account)
    if line is None:
        raise ConfigurationError(f"{account} has no entitlement in epoch {latest.epoch}")
    paid = client.claim(account, line.cumulative, statement.proof(account))
    return Claimed(account, latest.epoch, line.cumulative, paid, client.claimed(account))
