"""``nodes`` and ``stake_changes``: every NodeStaking log about a node (with its finality and
retraction), and the node's status and stake, final and pending, recomputed from those logs."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from indexer.events import types as t
from indexer.store.log import LoggedEvent
from projections.rules import ChainFact, NodeStakeView
from projections.rules.stakes import Kind
from projections.state import LedgerState, unix

ROLE_NAMES = {1: "worker", 2: "oracle"}
STAKE_TYPES = frozenset(k.value for k in Kind)


def stake_log(state: LedgerState, event: LoggedEvent, p: t.ChainPayload) -> None:
    fact = ChainFact.of(str(event.event_id), p, unix(event.occurred_at))  # type: ignore[arg-type]
    log = p.log
    final = _is_final(state, log.chain_id, log.block_number)
    state["stake_changes"].put(
        {
            "event_id": fact.event_id, "position": event.position, "node": fact.node,
            "kind": fact.kind.value, "role": fact.role, "amount": fact.amount,
            "stake_after": fact.stake_after, "locked_after": fact.locked_after,
            "chain_id": log.chain_id, "block_number": log.block_number,
            "log_index": log.log_index, "block_hash": log.block_hash, "tx_hash": log.tx_hash,
            "block_time": event.occurred_at, "final": final, "retracted": False,
        }
    )  # fmt: skip
    state.facts[fact.node].append(fact)
    state.fact_chain[fact.node] = log.chain_id
    if not final:
        state.unfinal_stake.add(fact.event_id)
    seen(state, fact.node, event.occurred_at)
    node_changed(state, fact.node)


def retract_stake_log(state: LedgerState, retracted_id: str) -> None:
    row = state["stake_changes"].get(retracted_id)
    if row is None or row["retracted"]:
        return
    state["stake_changes"].put({**row, "retracted": True})
    state.retracted.add(retracted_id)
    state.unfinal_stake.discard(retracted_id)
    node_changed(state, row["node"])


def finalize_stake_logs(state: LedgerState, chain_id: int, block: int) -> None:
    table = state["stake_changes"]
    for event_id in sorted(state.unfinal_stake):
        row = table.rows[(event_id,)]
        if row["chain_id"] == chain_id and row["block_number"] <= block:
            table.put({**row, "final": True})
            state.unfinal_stake.discard(event_id)
            node_changed(state, row["node"])


def heartbeat(state: LedgerState, event: LoggedEvent, p: t.Heartbeat) -> None:
    row = seen(state, event.producer, event.occurred_at)
    last = row["last_heartbeat"]
    row["last_heartbeat"] = event.occurred_at if last is None else max(last, event.occurred_at)
    row["heartbeats"] += 1
    row["capabilities"] = ",".join(sorted(p.capabilities))


def seen(state: LedgerState, address: str, at: datetime) -> dict[str, Any]:
    """The node's row, created on first sight, with its first and last seen times."""
    table = state["nodes"]
    row = table.get(address) or _new_node(address, at)
    row["first_seen"] = min(row["first_seen"], at)
    row["last_seen"] = max(row["last_seen"], at)
    return table.put(row)


def _new_node(address: str, at: datetime) -> dict[str, Any]:
    return {
        "address": address, "role": None, "status": "never_staked", "active_stake": 0,
        "locked_stake": 0, "pending_status": "never_staked", "pending_active_stake": 0,
        "pending_locked_stake": 0, "slashed": 0, "first_seen": at, "last_seen": at,
        "last_heartbeat": None, "heartbeats": 0, "capabilities": "",
    }  # fmt: skip


def node_changed(state: LedgerState, node: str) -> None:
    state.dirty_nodes.add(node)
    state.dirty_uptime |= {(node, e) for e in state.node_epochs[node] if not state.is_closed(e)}


def refresh(state: LedgerState) -> None:
    """Recompute the stake columns of every node whose logs or finality changed."""
    for node in sorted(state.dirty_nodes):
        facts = state.facts.get(node, [])
        view = NodeStakeView.of(facts, state.retracted, state.node_finalized_block(node))
        row = state["nodes"].get(node)
        if row is None:
            continue
        row.update(
            role=ROLE_NAMES.get(view.pending.role or 0),
            status=view.final.status.value,
            active_stake=view.final.active,
            locked_stake=view.final.locked,
            pending_status=view.pending.status.value,
            pending_active_stake=view.pending.active,
            pending_locked_stake=view.pending.locked,
            slashed=_slashed(state, node),
        )
        state["nodes"].put(row)
    state.dirty_nodes.clear()


def _slashed(state: LedgerState, node: str) -> int:
    """Final, not retracted ``Slashed`` amounts (a ``LockSlashed`` is part of its ``Slashed``)."""
    finalized = state.node_finalized_block(node)
    if finalized is None:
        return 0
    return sum(
        f.amount
        for f in state.facts.get(node, ())
        if f.kind is Kind.SLASHED
        and f.event_id not in state.retracted
        and f.block_number <= finalized
    )


def _is_final(state: LedgerState, chain_id: int, block: int) -> bool:
    finalized = state.finalized_block(chain_id)
    return finalized is not None and block <= finalized
