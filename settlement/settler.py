"""The settler: closes each epoch once it is due, computes its statement from the store (twice),
checks it, records it with its payouts, and drives the posting machine until the root is
confirmed; then the next epoch.

An epoch ``e`` is due when ``now >= end_e + grace_e`` (its own parameters) and the chain block
the store last saw finalized (``ChainFinalized`` of the deployment's chain) has a timestamp at or
after ``end_e``: every stake and deposit that counts in ``e`` is then final in the store. The
settler then produces ``EpochClosed{e, cutoff_position: the store's head, finalized_block}``
signed by its key, with an event id derived from the distributor and the epoch (a retry after a
crash is the same event, deduplicated by ingest), and waits until ingest has stored it.

Funded totals for the checks are read from the chain at the ``EpochClosed``'s
``finalized_block`` (``totalFunded`` and ``totalFeesDeposited`` of the distributor there): final
by construction, and the same totals ``postRoot`` compares against, never below them.

Everything here speaks through ports (:class:`SettlerChain`, :class:`SettlementDb`, an
``EventLog`` and a ``produce`` callable); ``masa.app`` builds the adapters.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any, Protocol

from eth_account.signers.local import LocalAccount

from indexer.events import SignedMessage, make_event
from indexer.events import types as t
from indexer.store.log import EventLog
from masa.errors import PermanentError, RetryableError
from projections import ledger
from projections.db import ReadDb, Tx
from projections.state import LedgerState, unix
from projections.tables import MERKLE_NODES, PAYOUTS, SETTLEMENTS, STATEMENT_LINES, Row
from settlement.compute import Settled, settle_all
from settlement.formula import KINDS
from settlement.posting import (
    FINAL_STATES,
    Action,
    Policy,
    PostingChain,
    PostingRecord,
    State,
    drive_once,
    hashes_from,
    hashes_text,
)
from settlement.statement import (
    ZERO_ROOT,
    Refusal,
    Statement,
    check_statement,
    load_statement,
    same_bytes,
)

log = logging.getLogger(__name__)
_NAMESPACE = uuid.UUID("6d617361-2d65-706f-6368-2d636c6f7365")


class SettlementRefused(PermanentError):
    """A statement or a posting was refused; the record says why (exit status 3)."""

    exit_code = 3


class SettlerChain(PostingChain, Protocol):
    chain_id: int
    distributor: str

    def block_timestamp(self, block: int) -> int: ...

    def funded_totals(self, block: int) -> tuple[int, int]:
        """``(totalFunded, totalFeesDeposited)`` of the distributor at ``block``."""
        ...

    def current_epoch(self) -> int: ...


# --- the settlements record -------------------------------------------------------------------


@dataclass(frozen=True)
class Settlement:
    """One ``settlements`` row: the posting record and what it was computed from."""

    posting: PostingRecord
    close_position: int
    finalized_block: int
    statement_json: str
    updated_at: datetime

    @property
    def epoch(self) -> int:
        return self.posting.epoch

    def statement(self) -> Statement:
        return load_statement(self.statement_json)

    def to_row(self) -> Row:
        p = self.posting
        return {
            "epoch": p.epoch, "chain_epoch": p.chain_epoch, "root": p.root,
            "statement_hash": p.statement_hash, "total_cumulative": p.total_cumulative,
            "state": str(p.state), "nonce": p.nonce, "raw_tx": p.raw_tx, "tx_hash": p.tx_hash,
            "replaced_tx_hashes": hashes_text(p.replaced_tx_hashes),
            "max_fee_per_gas": p.max_fee_per_gas,
            "max_priority_fee_per_gas": p.max_priority_fee_per_gas,
            "broadcast_at": p.broadcast_at, "block_number": p.block_number,
            "close_position": self.close_position, "finalized_block": self.finalized_block,
            "statement": self.statement_json, "refusal": p.refusal, "updated_at": self.updated_at,
        }  # fmt: skip

    @classmethod
    def from_row(cls, row: Row) -> Settlement:
        posting = PostingRecord(
            epoch=row["epoch"], root=row["root"], statement_hash=row["statement_hash"],
            total_cumulative=row["total_cumulative"], state=State(row["state"]),
            nonce=row["nonce"], raw_tx=row["raw_tx"], tx_hash=row["tx_hash"],
            replaced_tx_hashes=hashes_from(row["replaced_tx_hashes"]),
            max_fee_per_gas=row["max_fee_per_gas"],
            max_priority_fee_per_gas=row["max_priority_fee_per_gas"],
            broadcast_at=row["broadcast_at"], block_number=row["block_number"],
            refusal=row["refusal"],
        )  # fmt: skip
        return cls(
            posting, row["close_position"], row["finalized_block"], row["statement"],
            row["updated_at"],
        )  # fmt: skip


class SettlementDb:
    """The ``settlements`` and ``payouts`` tables (the read models' database)."""

    def __init__(self, db: ReadDb) -> None:
        self.db = db

    def all(self) -> list[Settlement]:
        with self.db.transaction() as tx:
            rows = SETTLEMENTS.load(tx)
        return [Settlement.from_row(rows[k]) for k in sorted(rows)]

    def get(self, epoch: int) -> Settlement | None:
        return next((s for s in self.all() if s.epoch == epoch), None)

    def save(self, settlement: Settlement) -> None:
        with self.db.transaction() as tx:
            SETTLEMENTS.upsert(tx, [settlement.to_row()])

    def save_computed(self, settlement: Settlement, statement: Statement) -> None:
        """The record, the statement's payouts, its lines and its tree, in one transaction."""
        with self.db.transaction() as tx:
            for table in (PAYOUTS, STATEMENT_LINES, MERKLE_NODES):
                tx.execute(f"DELETE FROM {table.name} WHERE epoch = ?", (settlement.epoch,))
            PAYOUTS.upsert(tx, _payout_rows(tx, statement))
            _write_tree(tx, statement)
            SETTLEMENTS.upsert(tx, [settlement.to_row()])

    def fill_missing_trees(self) -> list[int]:
        """Write the lines and tree of every recorded statement that has leaves but none
        written (recorded before the read models had them, revision 0004); the epochs done."""
        with self.db.transaction() as tx:
            rows = tx.fetchall(
                "SELECT epoch FROM settlements s WHERE root <> ? AND NOT EXISTS"
                " (SELECT 1 FROM statement_lines l WHERE l.epoch = s.epoch)",
                (ZERO_ROOT,),
            )
        epochs = sorted(int(r[0]) for r in rows)
        for epoch in epochs:
            settlement = self.get(epoch)
            assert settlement is not None
            with self.db.transaction() as tx:
                _write_tree(tx, settlement.statement())
        return epochs


def _write_tree(tx: Tx, statement: Statement) -> None:
    """Each line's cumulative and leaf position, and every node of the tree, by epoch: a
    claimant's proof is then a few keyed rows (``settlement.claimant``)."""
    if not statement.lines:
        return
    tree = statement.tree()
    epoch = statement.epoch
    STATEMENT_LINES.upsert(
        tx,
        [
            {"epoch": epoch, "address": line.address, "earned": line.earned,
             "cumulative": line.cumulative, "tree_index": index}
            for line, index in zip(statement.lines, tree.tree_indices, strict=True)
        ],
    )  # fmt: skip
    nodes = [{"epoch": epoch, "node": i, "hash": "0x" + h.hex()} for i, h in enumerate(tree.tree)]
    MERKLE_NODES.upsert(tx, nodes)


def _payout_rows(tx: Tx, statement: Statement) -> list[Row]:
    before: dict[tuple[str, str], int] = {}
    for row in PAYOUTS.load(tx).values():
        if row["epoch"] < statement.epoch:
            key = (row["address"], row["kind"])
            before[key] = before.get(key, 0) + row["earned"]
    rows = []
    for line in statement.lines:
        for kind in KINDS:
            earned = getattr(line, kind)
            if earned:
                cumulative = before.get((line.address, kind), 0) + earned
                rows.append({"epoch": statement.epoch, "address": line.address, "kind": kind,
                             "earned": earned, "cumulative": cumulative})  # fmt: skip
    return rows


# --- the settler ------------------------------------------------------------------------------


@dataclass(frozen=True)
class SettlerConfig:
    policy: Policy = field(default_factory=Policy)
    close_wait_s: float = 60.0
    poll_interval_s: float = 1.0


@dataclass
class Progress:
    """What one pass did, as lines for the operator."""

    lines: list[str] = field(default_factory=list)
    moved: bool = False

    def say(self, line: str) -> None:
        log.debug(line)
        self.lines.append(line)


@dataclass(frozen=True)
class Due:
    epoch: int
    due: bool
    reason: str
    finalized_block: int | None = None


class Settler:
    def __init__(
        self,
        log_: EventLog,
        db: SettlementDb,
        chain: SettlerChain,
        account: LocalAccount,
        produce: Callable[[SignedMessage], None],
        config: SettlerConfig,
        *,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
        wait_stored: Callable[[], None] | None = None,
        stop_after: Callable[[PostingRecord], bool] = lambda _: False,
    ) -> None:
        self.log = log_
        self.db = db
        self.chain = chain
        self.account = account
        self.produce = produce
        self.config = config
        self.now = now
        self.wait_stored = wait_stored or (lambda: time.sleep(0.2))
        self.stop_after = stop_after
        """Tests: raise after persisting a record for which this holds (a simulated crash)."""

    # -- one pass ----------------------------------------------------------------------------

    def run_once(self, progress: Progress | None = None) -> Progress:
        """Do everything possible now: finish the posting in hand, close and post what is due.
        Returns when waiting is all that is left (confirmations, an epoch not due yet)."""
        progress = progress or Progress()
        for epoch in self.db.fill_missing_trees():
            progress.say(f"epoch {epoch}: statement lines and tree written for the claimant view")
        while self._step(progress):
            progress.moved = True
        return progress

    def _step(self, progress: Progress) -> bool:
        records = self.db.all()
        latest = records[-1] if records else None
        if latest is not None and latest.posting.state is State.REFUSED:
            if _code(latest.posting.refusal) not in RECOMPUTABLE:
                raise SettlementRefused(f"epoch {latest.epoch} refused: {latest.posting.refusal}")
            progress.say(f"epoch {latest.epoch}: recomputing after '{latest.posting.refusal}'")
            return self._compute(latest.epoch, progress)
        if latest is not None and latest.posting.state not in FINAL_STATES:
            return self._drive(latest, progress)
        epoch = 0 if latest is None else latest.epoch + 1
        if self._closed_in_store(epoch):
            return self._compute(epoch, progress)
        due = self.due(epoch)
        if not due.due:
            progress.say(f"epoch {epoch}: not due ({due.reason})")
            return False
        assert due.finalized_block is not None
        self._close(epoch, due.finalized_block, progress)
        return True

    # -- closing -----------------------------------------------------------------------------

    def ledger_state(self) -> LedgerState:
        state = LedgerState.empty()
        for event in self.log.iterate():
            ledger.apply(state, event)
        return state

    def due(self, epoch: int) -> Due:
        state = self.ledger_state()
        params = state.params(epoch)
        if state.schedule.genesis is None or params is None:
            return Due(epoch, False, "no parameters in force (ParametersSet)")
        end = state.schedule.bounds(epoch)[1]
        now = unix(self.now())
        if now < end + params.grace_s:
            return Due(epoch, False, f"ends at {end} + {params.grace_s} s grace; now {now}")
        finalized = state.finalized.get(self.chain.chain_id)
        if finalized is None:
            return Due(epoch, False, f"the store has no finalized block of chain "
                                     f"{self.chain.chain_id} yet (run the indexer)")  # fmt: skip
        at = self.chain.block_timestamp(finalized)
        if at < end:
            return Due(epoch, False, f"finalized block {finalized} (time {at}) is before the "
                                     f"epoch's end {end}")  # fmt: skip
        return Due(epoch, True, "due", finalized)

    def close_event(self, epoch: int, finalized_block: int) -> SignedMessage:
        event_id = uuid.uuid5(_NAMESPACE, f"{self.chain.chain_id}:{self.chain.distributor}:{epoch}")
        payload = {
            "epoch": epoch,
            "cutoff_position": self.log.head(),
            "finalized_block": finalized_block,
        }
        return make_event(self.account, "EpochClosed", payload, event_id=event_id)

    def _close(self, epoch: int, finalized_block: int, progress: Progress) -> None:
        message = self.close_event(epoch, finalized_block)
        self.produce(message)
        progress.say(f"epoch {epoch}: EpochClosed sent (finalized block {finalized_block})")
        deadline = time.monotonic() + self.config.close_wait_s
        while not self._closed_in_store(epoch):
            if time.monotonic() > deadline:
                raise RetryableError(
                    f"epoch {epoch}: EpochClosed not stored within {self.config.close_wait_s:g} s;"
                    " is masa ingest running and does ingest.trusted_settlers list "
                    f"{self.account.address.lower()}?"
                )
            self.wait_stored()

    def _closed_in_store(self, epoch: int) -> bool:
        """Whether a trusted settler's ``EpochClosed{epoch}`` is stored (ingest stores only
        those of ``ingest.trusted_settlers``; this key's or a predecessor's)."""
        return any(
            isinstance(e.payload, t.EpochClosed) and e.payload.epoch == epoch
            for e in self.log.iterate(types=["EpochClosed"])
        )

    # -- computing ---------------------------------------------------------------------------

    def compute(self, epoch: int) -> Settled:
        for settled in settle_all(self.log.iterate()):
            if settled.epoch == epoch:
                return settled
        raise SettlementRefused(f"epoch {epoch}: no EpochClosed in the store to settle")

    def _compute(self, epoch: int, progress: Progress) -> bool:
        first, second = self.compute(epoch), self.compute(epoch)
        statement = first.statement
        refusals = same_bytes(first.statement, second.statement)
        previous = self.db.get(epoch - 1) if epoch > 0 else None
        if epoch > 0 and (previous is None or previous.posting.state is not State.CONFIRMED):
            raise SettlementRefused(f"epoch {epoch}: epoch {epoch - 1} is not confirmed")
        funded, fees = self.chain.funded_totals(first.finalized_block)
        refusals += check_statement(
            previous.statement() if previous else None,
            statement,
            funded,
            fees,
            self.chain.current_epoch() - 1,
        )
        posting = PostingRecord(
            epoch, statement.root, statement.statement_hash, statement.total_cumulative
        )
        if refusals:
            posting = replace(posting, state=State.REFUSED,
                              refusal="; ".join(str(r) for r in refusals))  # fmt: skip
        settlement = Settlement(
            posting,
            first.close_position,
            first.finalized_block,
            statement.canonical_bytes().decode(),
            self.now(),
        )
        self.db.save_computed(settlement, statement)
        if refusals:
            raise SettlementRefused(f"epoch {epoch} refused: {_first_line(refusals)}")
        progress.say(
            f"epoch {epoch}: computed root {statement.root}, total {statement.total_cumulative} wei"
        )
        self._check_stop(settlement.posting)
        return True

    # -- posting -----------------------------------------------------------------------------

    def _drive(self, settlement: Settlement, progress: Progress) -> bool:
        def persist(record: PostingRecord) -> None:
            self.db.save(replace(settlement, posting=record, updated_at=self.now()))
            self._check_stop(record)

        before = settlement.posting
        if before.refusal and before.state is not State.REFUSED:
            before = replace(before, refusal=None)  # the last attempt's error, tried again
        try:
            step = drive_once(before, self.chain, persist, self.config.policy, self.now)
        except PermanentError as exc:
            # postRoot would revert (no poster role, underfunded on chain): nothing was sent;
            # the record keeps its state, says why, and the next run tries again
            failed = replace(self.db.get(before.epoch) or settlement, updated_at=self.now())
            noted = replace(failed.posting, refusal=f"post_failed: {exc}")
            self.db.save(replace(failed, posting=noted))
            raise SettlementRefused(f"epoch {before.epoch} refused: post_failed: {exc}") from exc
        for note in step.notes:
            progress.say(f"epoch {before.epoch}: {note}")
        record = step.record
        if record.state is State.REFUSED:
            raise SettlementRefused(f"epoch {record.epoch} refused: {record.refusal}")
        if record.state != before.state or step.action in (Action.SIGN, Action.BROADCAST):
            progress.say(f"epoch {record.epoch}: {before.state} -> {record.state}"
                         + (f" ({record.tx_hash})" if record.tx_hash else ""))  # fmt: skip
            return True
        return False

    def _check_stop(self, record: PostingRecord) -> None:
        if self.stop_after(record):
            raise SimulatedCrash(record)

    # -- running -----------------------------------------------------------------------------

    def run(self, should_stop: Callable[[], bool]) -> Iterator[Progress]:
        """Passes for ever (until ``should_stop``), ``poll_interval_s`` apart when idle.
        A retryable error (RPC down, ingest late) is logged and tried again."""
        while not should_stop():
            try:
                progress = self.run_once()
            except RetryableError as exc:
                log.warning("%s", exc)
                progress = Progress([f"waiting: {exc}"])
            yield progress
            if not progress.moved:
                time.sleep(self.config.poll_interval_s)


class SimulatedCrash(Exception):
    """Raised by ``stop_after`` in tests: the process 'dies' right after a persisted state."""

    def __init__(self, record: PostingRecord) -> None:
        super().__init__(f"simulated crash after {record.state}")
        self.record = record


RECOMPUTABLE = frozenset({"over_funded", "recomputation_differs"})
"""Refusals a later run computes again (funding arrived, the store settled); every other one
stands until an operator acts (docs/settlement.md)."""


def _code(refusal: str | None) -> str:
    return (refusal or "").split(":", 1)[0]


def _first_line(refusals: list[Refusal]) -> str:
    first = str(refusals[0])
    return first if len(refusals) == 1 else f"{first} (+{len(refusals) - 1} more)"


def status_rows(db: SettlementDb) -> list[dict[str, Any]]:
    """Per epoch: state, root, transaction, refusal (``masa settle status``)."""
    return [
        {
            "epoch": s.epoch,
            "chain_epoch": s.posting.chain_epoch,
            "state": str(s.posting.state),
            "root": s.posting.root,
            "total_cumulative": str(s.posting.total_cumulative),
            "tx_hash": s.posting.tx_hash,
            "nonce": s.posting.nonce,
            "block_number": s.posting.block_number,
            "refusal": s.posting.refusal,
            "updated_at": s.updated_at.isoformat(),
        }
        for s in db.all()
    ]
