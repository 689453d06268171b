"""An oracle's prepaid fee balance (DESIGN §7), in wei.

- ``deposited``: the sum of the oracle's final, non-retracted ``FeesDeposited.amount``.
- ``reserved``: fees of requests accepted but not closed yet.
- ``spent``: fees of completed requests that were paid.
- ``available = deposited - reserved - spent``, never negative: a reservation or an
  unreserved payment that does not fit is refused instead.

Requests are debited in store order. Ingest reserves a request's fee when it accepts the
request; a failed request releases its reservation; a completed one turns it into spending.
A completed request with no reservation is paid from what is available at that point in the
order, and is ``unpaid`` (no debit at all, never a partial one) when its fee does not fit.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class OracleBalance:
    deposited: int = 0
    reserved: int = 0
    spent: int = 0

    @property
    def available(self) -> int:
        return self.deposited - self.reserved - self.spent

    def deposit(self, amount: int) -> OracleBalance:
        """A final deposit of ``amount``."""
        _require_natural(amount)
        return OracleBalance(self.deposited + amount, self.reserved, self.spent)

    def reserve(self, fee: int) -> tuple[OracleBalance, bool]:
        """Set ``fee`` aside for an accepted request; refused (unchanged, False) if it does
        not fit in what is available."""
        _require_natural(fee)
        if fee > self.available:
            return self, False
        return OracleBalance(self.deposited, self.reserved + fee, self.spent), True

    def release(self, fee: int) -> OracleBalance:
        """Give back the reservation of a failed request."""
        self._require_reserved(fee)
        return OracleBalance(self.deposited, self.reserved - fee, self.spent)

    def settle(self, fee: int, reserved: bool) -> tuple[OracleBalance, bool]:
        """Debit a completed request: from its reservation if it had one, else from what is
        available; ``(unchanged, False)`` -- unpaid -- when an unreserved fee does not fit."""
        if reserved:
            self._require_reserved(fee)
            return OracleBalance(self.deposited, self.reserved - fee, self.spent + fee), True
        _require_natural(fee)
        if fee > self.available:
            return self, False
        return OracleBalance(self.deposited, self.reserved, self.spent + fee), True

    def _require_reserved(self, fee: int) -> None:
        _require_natural(fee)
        if fee > self.reserved:
            raise ValueError(f"fee {fee} exceeds the {self.reserved} wei reserved")


def _require_natural(amount: int) -> None:
    if isinstance(amount, bool) or not isinstance(amount, int) or amount < 0:
        raise ValueError(f"amounts are non-negative integers of wei, got {amount!r}")
