"""The pure core of fee reservation: what an oracle may still spend, and how a reservation, a
release, a deposit and a retraction change it. No I/O.

An oracle's ``Funds`` live in its node stream (``StreamState.funds``). Ingest accepts a
``RequestSubmitted`` only when ``reserve`` takes its fee from deposits that are final, where
"final" means: the deposit's block is at or below the highest block a ``ChainFinalized`` of
its chain, already stored, declared final (``Finality``). Completion spends the reservation
without changing what is available (``committed`` counts reserved and spent alike); failure
releases it. Because every change to ``committed`` is written to the oracle's stream at the
next version, two ingestors reserving at once collide on the store's ``(stream, version)`` key
and one of them redoes its batch: an oracle is never overdrawn.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace

from indexer.ingest.port import Deposit, Funds

#: chain id -> the highest block known final on that chain.
Finality = Mapping[int, int]

NO_FUNDS = Funds()


def is_final(deposit: Deposit, finality: Finality) -> bool:
    block = finality.get(deposit.chain_id)
    return block is not None and deposit.block <= block


def settled(funds: Funds, finality: Finality) -> Funds:
    """``funds`` with the pending deposits final under ``finality`` moved into ``final`` (a
    final deposit is never retracted, so it need not be remembered one by one)."""
    done = [d for d in funds.pending if is_final(d, finality)]
    if not done:
        return funds
    return Funds(
        funds.final + sum(d.amount for d in done),
        tuple(d for d in funds.pending if not is_final(d, finality)),
        funds.committed,
    )


def available(funds: Funds, finality: Finality) -> int:
    """What a new request may take: final deposits less the fees already committed."""
    return settled(funds, finality).final - funds.committed


def pending(funds: Funds, finality: Finality) -> int:
    """Deposits seen but not final under ``finality``."""
    return sum(d.amount for d in settled(funds, finality).pending)


def reserve(funds: Funds, fee: int, finality: Finality) -> Funds | None:
    """``funds`` with ``fee`` committed, or None when what is available does not cover it."""
    _require_natural(fee)
    now = settled(funds, finality)
    if fee > now.final - now.committed:
        return None
    return replace(now, committed=now.committed + fee)


def release(funds: Funds, fee: int) -> Funds:
    """Give a failed request's reservation back."""
    _require_natural(fee)
    if fee > funds.committed:
        raise ValueError(f"fee {fee} exceeds the {funds.committed} wei committed")
    return replace(funds, committed=funds.committed - fee)


def deposit(funds: Funds, made: Deposit) -> Funds:
    _require_natural(made.amount)
    return replace(funds, pending=(*funds.pending, made))


def retract(funds: Funds, event_id: str, finality: Finality) -> Funds:
    """A reorg removed a deposit: forgotten if it was not final under ``finality`` (a final
    log is never retracted; if an indexer says otherwise, the deposit stays, as in the read
    models)."""
    now = settled(funds, finality)
    kept = tuple(d for d in now.pending if d.event_id != event_id)
    return now if len(kept) == len(now.pending) else replace(now, pending=kept)


def shortfall(funds: Funds, fee: int, finality: Finality, oracle: str) -> str:
    """Why ``fee`` does not fit, and what the oracle can do about it (one line)."""
    free, waiting = available(funds, finality), pending(funds, finality)
    missing = fee - free
    state = f"fee {fee} wei is more than the {free} wei available to {oracle}"
    if waiting >= missing:
        return f"{state}; {waiting} wei deposited are not final yet: it is taken once they are"
    return (
        f"{state} ({waiting} wei not final yet); deposit at least {missing - waiting} wei more"
        " (masa oracle deposit), then masa dlq replay if it was dead-lettered"
    )


def _require_natural(amount: int) -> None:
    if isinstance(amount, bool) or not isinstance(amount, int) or amount < 0:
        raise ValueError(f"amounts are non-negative integers of wei, got {amount!r}")
