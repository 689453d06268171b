"""``masa demo``'s money: the settler closes the epochs and posts their roots (its posting
machine, as ``masa settle run`` drives it), a worker and a contributor claim (``masa claim``'s
function), and their statement lines, ``explain`` and ``verify`` are read back as the CLI reads
them. Token balances must move by exactly the statements' cumulative amounts."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from eth_account.signers.local import LocalAccount

from contracts.client import MasaClient
from contracts.deploy import Deployment
from indexer.bus.base import Bus
from indexer.events import SignedMessage
from indexer.store.log import EventLog
from masa.app.claims import claim
from masa.app.demo_chain import DemoChain
from masa.app.demo_network import Network
from masa.app.settings import Settings
from masa.app.settle_chain import SettlementChain
from masa.app.verify import EpochCheck, verify_store
from masa.app.wiring import run_indexer, settler_config
from masa.errors import RetryableError
from settlement.compute import Settled, settle_all
from settlement.explain import Explanation, explain
from settlement.formula import KINDS
from settlement.posting import State
from settlement.settler import Settlement, SettlementDb, Settler
from settlement.statement import StatementLine

Progress = Callable[[str, int, int], None]
SETTLE_STEP = "settle: close, compute, post and confirm each epoch"


@dataclass
class Ledger:
    """What the money part drives: the chain and its indexer, the bus and ingest, the store's
    read port and the settlements' records."""

    chain: DemoChain
    deployment: Deployment
    bus: Bus
    settings: Settings
    indexer: LocalAccount
    network: Network
    log: EventLog
    db: SettlementDb

    def advance(self, blocks: int = 1) -> None:
        """Mine ``blocks``, index them (finality included) and wait until ingest stored it."""
        self.chain.mine(blocks)
        run_indexer(self.chain.w3, self.deployment, self.bus, self.settings, self.indexer)
        self.network.wait_ingested()

    def produce(self, message: SignedMessage) -> None:
        producer = self.bus.producer()
        try:
            producer.send(self.settings.bus.events_topic, message.key.encode(), message.value)
            producer.flush()
        finally:
            producer.close()

    def client(self, account: LocalAccount | None = None) -> MasaClient:
        return MasaClient(self.chain.w3, self.deployment, account)


# --- settling ---------------------------------------------------------------------------------


def settle(
    ledger: Ledger, settler_key: LocalAccount, through: int, progress: Progress
) -> tuple[list[Settlement], list[str]]:
    """Close and post epochs 0 to ``through``, one block at a time, until each root is
    confirmed; the settler's own lines of what it did come back with the records."""
    chain = SettlementChain(ledger.client(settler_key))
    settler = Settler(
        ledger.log, ledger.db, chain, settler_key, ledger.produce,
        settler_config(ledger.settings), wait_stored=lambda: time.sleep(0.05),
    )  # fmt: skip
    lines: list[str] = []
    ledger.advance(ledger.settings.chain.finality_depth + 1)  # final past the last epoch's end
    deadline = time.monotonic() + 120
    while (done := _confirmed(ledger.db, through)) <= through:
        progress(SETTLE_STEP, done, through + 1)
        lines += settler.run_once().lines
        if _confirmed(ledger.db, through) > through:
            break
        if time.monotonic() > deadline:
            raise RetryableError(f"epochs 0 to {through} not confirmed within 120 s: {lines[-1:]}")
        ledger.advance()  # the chain moves on: confirmations, finality past the next epoch
    progress(SETTLE_STEP, through + 1, through + 1)
    return ledger.db.all(), lines


def _confirmed(db: SettlementDb, through: int) -> int:
    return sum(1 for s in db.all() if s.epoch <= through and s.posting.state is State.CONFIRMED)


# --- what was earned, claimed and checked ------------------------------------------------------


@dataclass
class Payee:
    """A worker or a contributor of the demo: its lines, their explanations, its claim."""

    role: str
    address: str
    lines: list[dict[str, Any]] = field(default_factory=list)
    explained: list[dict[str, Any]] = field(default_factory=list)
    claim: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {"role": self.role, "address": self.address, "statement_lines": self.lines,
                "explain": self.explained, "claim": self.claim}  # fmt: skip


@dataclass
class Money:
    genesis: str
    epoch_length_s: int
    epochs: list[dict[str, Any]]
    payees: list[Payee]
    checks: list[EpochCheck]
    settler_lines: list[str]

    @property
    def verified(self) -> bool:
        return bool(self.checks) and all(c.status == "ok" for c in self.checks)

    def to_json(self) -> dict[str, Any]:
        return {
            "genesis": self.genesis,
            "epoch_length_s": self.epoch_length_s,
            "epochs": self.epochs,
            "payees": [p.to_json() for p in self.payees],
            "verify": {"ok": self.verified, "epochs": [c.to_json() for c in self.checks]},
            "settler": self.settler_lines,
        }


def epoch_rows(records: list[Settlement], settled: dict[int, Settled]) -> list[dict[str, Any]]:
    """Per settled epoch: its posting, and who earned what kind of reward."""
    rows = []
    for record in records:
        p, statement = record.posting, settled[record.epoch].statement
        inputs = settled[record.epoch].inputs
        rows.append({
            "epoch": p.epoch, "chain_epoch": p.chain_epoch, "state": str(p.state),
            "root": p.root, "statement_hash": p.statement_hash, "tx_hash": p.tx_hash,
            "block_number": p.block_number, "total_cumulative": str(p.total_cumulative),
            "total_earned": str(statement.total_earned),
            "uptime_ppm": {w.address: w.uptime_ppm for w in inputs.workers},
            "paid_requests": sum(1 for r in inputs.requests if r.paid),
            **{f"{kind}_earners": sum(1 for line in statement.lines if getattr(line, kind))
               for kind in KINDS},
        })  # fmt: skip
    return rows


def read_back(ledger: Ledger, payees: list[Payee]) -> tuple[dict[int, Settled], list[EpochCheck]]:
    """The statements recomputed from the store (one fold, as ``masa settle explain`` folds),
    each payee's lines and their explanations, and ``masa settle verify --all``."""
    settled = {s.epoch: s for s in settle_all(ledger.log.iterate())}
    for payee in payees:
        for epoch, s in sorted(settled.items()):
            payee.lines.append(_line(epoch, s.statement.line(payee.address)))
            payee.explained.append(_explained(explain(s.rewards, s.statement, payee.address)))
    return settled, verify_store(ledger.client(), ledger.log)


def _line(epoch: int, line: StatementLine | None) -> dict[str, Any]:
    amounts = dict.fromkeys((*KINDS, "earned", "cumulative"), "0")
    return {"epoch": epoch, **(amounts if line is None else line.to_json())}


def _explained(explanation: Explanation) -> dict[str, Any]:
    """``masa settle explain``'s lines, summed by kind."""
    by_kind: dict[str, dict[str, Any]] = {}
    for line in explanation.lines:
        entry = by_kind.setdefault(line.kind, {"wei": 0, "lines": 0})
        entry["wei"] += line.amount
        entry["lines"] += 1
    events = {e for line in explanation.lines for e in line.event_ids}
    return {
        "epoch": explanation.epoch,
        "earned": str(explanation.earned),
        "previous_cumulative": str(explanation.previous_cumulative),
        "cumulative": str(explanation.cumulative),
        "by_kind": {k: {"wei": str(v["wei"]), "lines": v["lines"]} for k, v in by_kind.items()},
        "events": len(events),
        "first_line": explanation.lines[0].formula if explanation.lines else None,
    }


def claim_for(ledger: Ledger, sender: LocalAccount, payee: Payee) -> None:
    """``masa claim`` for the payee, sent by ``sender`` (anyone may claim for anyone), and its
    token balance before and after: it must grow by exactly the statement's cumulative."""
    client = ledger.client(sender)
    before = client.balance_of(payee.address)
    done = claim(client, ledger.db.all(), payee.address)
    after = client.balance_of(payee.address)
    payee.claim = {
        **done.to_json(),
        "sender": sender.address.lower(),
        "balance_before": str(before),
        "balance_after": str(after),
        "balance_matches_statement": after - before == done.cumulative == done.paid,
    }
