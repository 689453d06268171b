"""``requests``, ``fee_deposits``, ``oracle_balances`` and ``epoch_fees``: each request's life
(submitted, completed, failed, unpaid) with its fee, worker, units and latency; each oracle's
prepaid fees (final deposits only), reserved, spent and available; per epoch the fees paid and
their split once the epoch's parameters are known.

Fees are debited in store order: a submission reserves its fee when the oracle's available
balance covers it; a completion spends the reservation (or, with none, what is available at
that point: a completion beyond it is ``unpaid`` and earns nothing); a failure releases it."""

from __future__ import annotations

from indexer.events import types as t
from indexer.store.log import LoggedEvent
from projections.models.epochs import ensure_epoch
from projections.rules import OracleBalance, split_fee
from projections.state import LedgerState
from projections.tables import Row


def submitted(state: LedgerState, event: LoggedEvent, p: t.RequestSubmitted) -> None:
    oracle = event.producer
    balance, reserved = _balance(state, oracle).reserve(p.fee)
    _set_balance(state, oracle, balance)
    state["requests"].put(
        {
            "request_id": str(p.request_id), "kind": p.kind, "oracle": oracle, "fee": p.fee,
            "reserved": reserved, "status": "submitted", "worker": None, "units": None,
            "result_digest": None, "failure_reason": None, "submitted_at": event.occurred_at,
            "closed_at": None, "latency_ms": None, "epoch": None,
            "submitted_position": event.position, "closed_position": None,
            "closed_event_id": None,
        }
    )  # fmt: skip


def completed(state: LedgerState, event: LoggedEvent, p: t.RequestCompleted) -> None:
    row = _open_request(state, p.request_id)
    if row is None:
        return
    balance, paid = _balance(state, row["oracle"]).settle(row["fee"], row["reserved"])
    _set_balance(state, row["oracle"], balance)
    _close(state, event, row, "completed" if paid else "unpaid")
    row.update(worker=event.producer, units=p.units, result_digest=p.result_digest)
    if not paid:
        state.dirty_balances.add(row["oracle"])
        state.unpaid[row["oracle"]] = state.unpaid.get(row["oracle"], 0) + 1


def failed(state: LedgerState, event: LoggedEvent, p: t.RequestFailed) -> None:
    row = _open_request(state, p.request_id)
    if row is None:
        return
    if row["reserved"]:
        _set_balance(state, row["oracle"], _balance(state, row["oracle"]).release(row["fee"]))
    _close(state, event, row, "failed")
    row.update(worker=event.producer, failure_reason=p.reason, reserved=False)


def _open_request(state: LedgerState, request_id: object) -> Row | None:
    """The request's row while it is open (ingest closes a request once; a store written by
    other means gets the same answer)."""
    row = state["requests"].get(str(request_id))
    return row if row is not None and row["status"] == "submitted" else None


def _close(state: LedgerState, event: LoggedEvent, row: Row, status: str) -> None:
    epoch = state.money_epoch(event)
    latency = event.occurred_at - row["submitted_at"]
    row.update(
        status=status, closed_at=event.occurred_at, epoch=epoch,
        latency_ms=max(0, int(latency.total_seconds() * 1000)), closed_position=event.position,
        closed_event_id=str(event.event_id),
    )  # fmt: skip
    state["requests"].put(row)
    if epoch is not None:
        ensure_epoch(state, epoch)
        state.epoch_requests[epoch].add(row["request_id"])
        _count_closed(state, epoch, row)


def _count_closed(state: LedgerState, epoch: int, row: Row) -> None:
    """Add one closed request to its epoch's totals (a parameter change recomputes them)."""
    totals = state["epoch_fees"].get(epoch) or _no_fees(epoch, state.params(epoch) is not None)
    counter = {"completed": "paid_requests", "unpaid": "unpaid_requests"}
    totals[counter.get(row["status"], "failed_requests")] += 1
    params = state.params(epoch)
    if row["status"] == "completed":
        totals["fees_paid"] += row["fee"]
        if params is not None and totals["protocol_part"] is not None:
            split = split_fee(row["fee"], params.protocol_share_bps, params.data_share_bps)
            totals["protocol_part"] += split.protocol
            totals["data_part"] += split.data
            totals["worker_part"] += split.worker
    state["epoch_fees"].put(totals)


def _no_fees(epoch: int, with_parts: bool) -> Row:
    zero = 0 if with_parts else None
    counts = {"paid_requests": 0, "unpaid_requests": 0, "failed_requests": 0, "fees_paid": 0}
    return {"epoch": epoch, **counts, "protocol_part": zero, "data_part": zero, "worker_part": zero}


def deposited(state: LedgerState, event: LoggedEvent, p: t.FeesDeposited) -> None:
    finalized = state.finalized_block(p.log.chain_id)
    final = finalized is not None and p.log.block_number <= finalized
    state["fee_deposits"].put(
        {
            "event_id": str(event.event_id), "oracle": p.oracle, "amount": p.amount,
            "chain_id": p.log.chain_id, "block_number": p.log.block_number, "final": final,
            "retracted": False,
            "position": event.position,
        }
    )  # fmt: skip
    if final:
        _set_balance(state, p.oracle, _balance(state, p.oracle).deposit(p.amount))
    else:
        state.unfinal_deposits.add(str(event.event_id))
        state.dirty_balances.add(p.oracle)


def retract_deposit(state: LedgerState, retracted_id: str) -> None:
    row = state["fee_deposits"].get(retracted_id)
    if row is None or row["retracted"] or row["final"]:
        return
    state["fee_deposits"].put({**row, "retracted": True})
    state.unfinal_deposits.discard(retracted_id)
    state.dirty_balances.add(row["oracle"])


def finalize_deposits(state: LedgerState, chain_id: int, block: int) -> None:
    table = state["fee_deposits"]
    for event_id in sorted(state.unfinal_deposits, key=lambda e: table.rows[(e,)]["position"]):
        row = table.rows[(event_id,)]
        if row["chain_id"] == chain_id and row["block_number"] <= block:
            table.put({**row, "final": True})
            state.unfinal_deposits.discard(event_id)
            balance = _balance(state, row["oracle"]).deposit(row["amount"])
            _set_balance(state, row["oracle"], balance)


def _balance(state: LedgerState, oracle: str) -> OracleBalance:
    return state.balances.get(oracle) or OracleBalance()


def _set_balance(state: LedgerState, oracle: str, balance: OracleBalance) -> None:
    state.balances[oracle] = balance
    state.dirty_balances.add(oracle)


def refresh(state: LedgerState) -> None:
    """Rewrite the balances and epoch totals that moved."""
    for oracle in sorted(state.dirty_balances):
        balance = _balance(state, oracle)
        state["oracle_balances"].put(
            {
                "oracle": oracle, "deposited": balance.deposited,
                "pending_deposits": _pending_deposits(state, oracle),
                "reserved": balance.reserved, "spent": balance.spent,
                "available": balance.available, "unpaid_requests": state.unpaid.get(oracle, 0),
            }
        )  # fmt: skip
    state.dirty_balances.clear()
    for epoch in sorted(state.dirty_fees):
        _epoch_fees(state, epoch)
    state.dirty_fees.clear()


def _pending_deposits(state: LedgerState, oracle: str) -> int:
    table = state["fee_deposits"].rows
    return sum(
        table[(e,)]["amount"] for e in state.unfinal_deposits if table[(e,)]["oracle"] == oracle
    )


def _epoch_fees(state: LedgerState, epoch: int) -> None:
    requests = state["requests"].rows
    closed = [requests[(rid,)] for rid in sorted(state.epoch_requests.get(epoch, ()))]
    paid = [r["fee"] for r in closed if r["status"] == "completed"]
    params = state.params(epoch)
    splits = None
    if params is not None:
        splits = [split_fee(fee, params.protocol_share_bps, params.data_share_bps) for fee in paid]
    state["epoch_fees"].put(
        {
            "epoch": epoch,
            "paid_requests": len(paid),
            "unpaid_requests": sum(1 for r in closed if r["status"] == "unpaid"),
            "failed_requests": sum(1 for r in closed if r["status"] == "failed"),
            "fees_paid": sum(paid),
            "protocol_part": None if splits is None else sum(s.protocol for s in splits),
            "data_part": None if splits is None else sum(s.data for s in splits),
            "worker_part": None if splits is None else sum(s.worker for s in splits),
        }
    )
