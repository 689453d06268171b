"""Statements recomputed from the store against the roots on chain (DESIGN §7, invariant 4):
what ``masa settle verify`` prints and ``masa demo`` shows. Ledger epoch ``e`` is posted on
chain as the distributor's epoch ``e + 1``."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from contracts.client import DistributorState, MasaClient
from indexer.store.log import EventLog
from masa.errors import ChainError
from settlement.bundle import chain_epoch
from settlement.compute import Settled, settle_all


@dataclass(frozen=True)
class PostedRoot:
    """One ``RootPosted`` log of the distributor (``chain_epoch`` is the distributor's)."""

    chain_epoch: int
    root: str
    total_cumulative: int
    statement_hash: str
    block_number: int
    tx_hash: str


def posted_roots(client: MasaClient) -> dict[int, PostedRoot]:
    """Every root the distributor posted, by chain epoch, read from its ``RootPosted`` logs
    up to one block, and checked against its ``currentEpoch()`` and ``root()`` there."""
    state = client.distributor_state()
    start = client.deployment.distributor.block_number
    logs = client.distributor.events.RootPosted().get_logs(
        from_block=start, to_block=state.block_number
    )
    posted: dict[int, PostedRoot] = {}
    for log in logs:
        args = log["args"]
        epoch = int(args["epoch"])
        if epoch in posted:
            raise ChainError(f"the distributor posted chain epoch {epoch} twice")
        posted[epoch] = PostedRoot(
            chain_epoch=epoch,
            root="0x" + bytes(args["root"]).hex(),
            total_cumulative=int(args["totalCumulative"]),
            statement_hash="0x" + bytes(args["statementHash"]).hex(),
            block_number=int(log["blockNumber"]),
            tx_hash=log["transactionHash"].to_0x_hex(),
        )
    _check_logs_against_state(posted, state)
    return posted


def _check_logs_against_state(posted: dict[int, PostedRoot], state: DistributorState) -> None:
    if sorted(posted) != list(range(1, state.current_epoch + 1)):
        raise ChainError(
            f"the distributor's currentEpoch() is {state.current_epoch} but its RootPosted logs "
            f"are for chain epochs {sorted(posted)}; is the deployment file for this chain?"
        )
    if state.current_epoch and posted[state.current_epoch].root != state.root:
        raise ChainError(
            f"the distributor's root() {state.root} is not the last RootPosted root "
            f"{posted[state.current_epoch].root}"
        )


@dataclass(frozen=True)
class EpochCheck:
    """One epoch recomputed from the store against what the chain holds for it."""

    epoch: int
    status: str  # ok | mismatch | not_posted | not_closed
    computed_root: str | None
    posted_root: str | None
    computed_hash: str | None
    posted_hash: str | None
    computed_total: int | None
    posted_total: int | None
    reasons: tuple[str, ...] = ()

    @property
    def failed(self) -> bool:
        return self.status in ("mismatch", "not_closed")

    def line(self) -> str:
        head = f"epoch {self.epoch} (chain epoch {chain_epoch(self.epoch)}): {self.status}"
        if self.status == "ok":
            return f"{head}, root {self.computed_root}, statement {self.computed_hash}"
        if self.status == "not_posted":
            return f"{head}, computed root {self.computed_root} (nothing on chain yet)"
        return f"{head}: {'; '.join(self.reasons)}"

    def to_json(self) -> dict[str, Any]:
        return {
            "epoch": self.epoch,
            "chain_epoch": chain_epoch(self.epoch),
            "status": self.status,
            "computed_root": self.computed_root,
            "posted_root": self.posted_root,
            "computed_statement_hash": self.computed_hash,
            "posted_statement_hash": self.posted_hash,
            "computed_total_cumulative": _str(self.computed_total),
            "posted_total_cumulative": _str(self.posted_total),
            "reasons": list(self.reasons),
        }


def _str(value: int | None) -> str | None:
    return None if value is None else str(value)


def check_epoch(settled: Settled | None, posted: PostedRoot | None, epoch: int) -> EpochCheck:
    """Compare one epoch's recomputation with its posted root."""
    if settled is None:
        if posted is None:
            return EpochCheck(epoch, "not_closed", None, None, None, None, None, None,
                              (f"epoch {epoch} is not closed in the store",))  # fmt: skip
        return EpochCheck(
            epoch, "not_closed", None, posted.root, None, posted.statement_hash, None,
            posted.total_cumulative,
            (f"the chain holds a root for it ({posted.root}) but the store has not closed it",),
        )  # fmt: skip
    s = settled.statement
    computed = (s.root, s.statement_hash, s.total_cumulative)
    if posted is None:
        return EpochCheck(epoch, "not_posted", *_pair(computed, None))
    reasons = []
    if s.root != posted.root:
        reasons.append(f"root on chain {posted.root}, recomputed {s.root}")
    if s.statement_hash != posted.statement_hash:
        reasons.append(
            f"statement hash on chain {posted.statement_hash}, recomputed {s.statement_hash}"
        )
    if s.total_cumulative != posted.total_cumulative:
        reasons.append(
            f"total cumulative on chain {posted.total_cumulative} wei, recomputed "
            f"{s.total_cumulative} wei"
        )
    status = "mismatch" if reasons else "ok"
    posted_values = (posted.root, posted.statement_hash, posted.total_cumulative)
    return EpochCheck(epoch, status, *_pair(computed, posted_values), tuple(reasons))


def _pair(
    computed: tuple[str, str, int], posted: tuple[str, str, int] | None
) -> tuple[str, str | None, str, str | None, int, int | None]:
    p = posted or (None, None, None)
    return computed[0], p[0], computed[1], p[1], computed[2], p[2]


def verify_with_chain(
    settled: list[Settled], posted: dict[int, PostedRoot], epoch: int | None = None
) -> list[EpochCheck]:
    """Every closed epoch (or ``epoch`` alone) against the chain, plus any root posted on chain
    for an epoch the store never closed."""
    by_epoch = {s.epoch: s for s in settled}
    if epoch is not None:
        return [check_epoch(by_epoch.get(epoch), posted.get(chain_epoch(epoch)), epoch)]
    epochs = sorted(set(by_epoch) | {e - 1 for e in posted})
    return [check_epoch(by_epoch.get(e), posted.get(chain_epoch(e)), e) for e in epochs]


def verify_store(client: MasaClient, log: EventLog, epoch: int | None = None) -> list[EpochCheck]:
    """Recompute every closed epoch (or ``epoch``) from the store and compare it with the
    distributor's ``RootPosted`` logs (``masa settle verify --all`` / ``--epoch N``)."""
    posted = posted_roots(client)
    return verify_with_chain(list(settle_all(log.iterate())), posted, epoch)
