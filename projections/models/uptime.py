"""``node_uptime``: per node and epoch, the seconds covered by heartbeats while staked (final
stake only), the seconds staked, the epoch's length (the denominator), the uptime in parts per
million, the heartbeats counted and those that came after the epoch closed (late: they earn
nothing). ``coverage`` keeps the union of the heartbeats' intervals so that a duplicate or a
reordered heartbeat changes nothing."""

from __future__ import annotations

import orjson

from indexer.store.log import LoggedEvent
from projections.models.epochs import ensure_epoch
from projections.rules import Coverage
from projections.rules.stakes import staked_coverage
from projections.state import LedgerState, unix

WORKER_ROLE = 1


def heartbeat(state: LedgerState, event: LoggedEvent) -> None:
    node, at = event.producer, unix(event.occurred_at)
    epoch = state.epoch_of(event.occurred_at)
    if epoch is None:
        return
    params = state.params(epoch)
    if params is None:
        return
    if state.is_closed(epoch):
        _row(state, node, epoch)["late_heartbeats"] += 1  # type: ignore[operator]
        return
    span = (at, at + 2 * params.heartbeat_interval_s)
    for touched in (epoch, epoch + 1):
        start, end = state.schedule.bounds(touched)
        if span[0] < end and start < span[1] and not state.is_closed(touched):
            row = _row(state, node, touched)
            key = (node, touched)
            known = state.coverage.get(key) or _load(str(row["coverage"]))
            state.coverage[key] = known.add(*span)
            row["heartbeats"] += touched == epoch  # type: ignore[operator]
            state.dirty_uptime.add((node, touched))


def _row(state: LedgerState, node: str, epoch: int) -> dict[str, object]:
    table = state["node_uptime"]
    row = table.get(node, epoch)
    if row is None:
        ensure_epoch(state, epoch)
        start, end = state.schedule.bounds(epoch)
        row = {"node": node, "epoch": epoch, "covered_s": 0, "staked_s": 0,
               "expected_s": end - start, "uptime_ppm": 0, "heartbeats": 0,
               "late_heartbeats": 0, "coverage": "[]"}  # fmt: skip
        state.node_epochs[node].add(epoch)
    return table.put(row)


def refresh(state: LedgerState, only_epoch: int | None = None) -> None:
    """Recompute the figures of every (node, epoch) whose heartbeats, stake or finality moved
    (only those of ``only_epoch`` if given: what ``EpochClosed`` freezes, computed before it does,
    so the figures of a closed epoch never depend on where a batch ended)."""
    due = sorted(k for k in state.dirty_uptime if only_epoch is None or k[1] == only_epoch)
    for node, epoch in due:
        row = state["node_uptime"].get(node, epoch)
        if row is None or state.is_closed(epoch):
            continue
        start, end = state.schedule.bounds(epoch)
        staked = staked_coverage(
            state.facts.get(node, ()),
            state.retracted,
            state.node_finalized_block(node),
            end,
            role=WORKER_ROLE,
        ).clip(start, end)
        coverage = state.coverage.get((node, epoch)) or _load(row["coverage"])
        covered = coverage.clip(start, end).intersect(staked).measure()
        expected = end - start
        row.update(
            coverage=_dump(coverage),
            covered_s=covered,
            staked_s=staked.measure(),
            expected_s=expected,
            uptime_ppm=covered * 1_000_000 // expected,
        )
        state["node_uptime"].put(row)
    state.dirty_uptime.difference_update(due)


def _load(text: str) -> Coverage:
    return Coverage.of(tuple(pair) for pair in orjson.loads(text))


def _dump(coverage: Coverage) -> str:
    return orjson.dumps([list(pair) for pair in coverage.intervals]).decode()
