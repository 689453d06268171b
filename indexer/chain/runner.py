"""The indexer loop: load the checkpoint, then step the follower and publish each step,
retrying transient failures with backoff and stopping loudly on permanent ones.

A failed commit is handled like a restart: a new transactional producer settles the old
transaction (committed or aborted) and the state is read back from the checkpoint topic.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

from eth_account.signers.local import LocalAccount

from indexer.bus.base import Bus
from indexer.chain.checkpoint import checkpoint_key
from indexer.chain.decode import LogDecoder
from indexer.chain.follower import FollowConfig, Follower
from indexer.chain.model import IndexerState, LogsBatch, Reorg, Step
from indexer.chain.publisher import Publisher, Topics
from indexer.chain.rpc import ChainRpc
from indexer.chain.window import initial_state
from indexer.retry import Backoff, never
from masa.errors import ChainError, ConfigurationError, RetryableError

log = logging.getLogger("masa.index")
T = TypeVar("T")


@dataclass(frozen=True)
class IndexerConfig:
    name: str
    """Names the checkpoint (with the chain id) and the transactional id."""
    topics: Topics
    follow: FollowConfig
    start_block: int
    poll_interval_s: float = 1.0
    marker_interval_s: float = 10.0
    retry_limit: int = 30
    """Consecutive transient failures before giving up (``RetryableError``)."""
    retry_budget_s: float | None = None
    """Give up, too, once steps have failed for this long in a row (None: only the limit)."""


@dataclass
class IndexerStats:
    started: float = field(default_factory=time.monotonic)
    blocks: int = 0
    logs: int = 0
    retracted: int = 0
    reorgs: int = 0
    published: int = 0
    commits: int = 0
    head: int = -1
    tip: int = -1
    finalized: int = -1
    faults: Counter[str] = field(default_factory=Counter)

    @property
    def seconds(self) -> float:
        return time.monotonic() - self.started

    def add(self, step: Step, published: int) -> None:
        self.commits += 1
        self.published += published
        self.blocks += step.blocks
        self.head = max(self.head, step.head)
        self.tip = step.state.tip.number
        self.finalized = step.state.finalized.number
        for stage in step.stages:
            match stage:
                case LogsBatch(events=events):
                    self.logs += len(events)
                case Reorg(retracted=retracted):
                    self.reorgs += 1
                    self.retracted += len(retracted)

    def to_json(self) -> dict[str, Any]:
        seconds = self.seconds
        return {
            "blocks": self.blocks,
            "logs": self.logs,
            "retracted": self.retracted,
            "reorgs": self.reorgs,
            "published": self.published,
            "commits": self.commits,
            "head": self.head,
            "tip": self.tip,
            "finalized": self.finalized,
            "faults": dict(sorted(self.faults.items())),
            "seconds": round(seconds, 3),
            "blocks_per_s": round(self.blocks / seconds, 1) if seconds else 0.0,
            "logs_per_s": round(self.logs / seconds, 1) if seconds else 0.0,
        }


class Indexer:
    def __init__(
        self,
        rpc: ChainRpc,
        bus: Bus,
        account: LocalAccount,
        decoder: LogDecoder,
        *,
        chain_id: int,
        contracts: Sequence[str],
        config: IndexerConfig,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.rpc = rpc
        self.bus = bus
        self.account = account
        self.chain_id = chain_id
        self.config = config
        self._should_stop: Callable[[], bool] = never
        self.follower = Follower(
            rpc, decoder, config.follow, lambda s: self._backoff.pause(s, self._should_stop)
        )
        self.initial = initial_state(chain_id, contracts, config.start_block)
        self.stats = IndexerStats()
        self._backoff = Backoff(sleep=sleep)
        self._failing_since: float | None = None

    def run(
        self,
        *,
        until_head: bool = False,
        should_stop: Callable[[], bool] = lambda: False,
        on_progress: Callable[[IndexerStats], None] | None = None,
    ) -> IndexerStats:
        """Index until ``should_stop`` (checked between steps) or, with ``until_head``, until
        caught up with the head."""
        self._should_stop = should_stop  # the follower's waits end on it too
        found = self._retrying(self.rpc.chain_id, should_stop)
        if found is not None and found != self.chain_id:
            raise ChainError(f"the node serves chain {found}, the deployment is on {self.chain_id}")
        publisher = self._retrying(self._open_publisher, should_stop)
        if publisher is None:
            return self.stats
        try:
            state = self._retrying(lambda: self._load(publisher), should_stop)
            while state is not None and not should_stop():
                state = self._advance(publisher, state, until_head, should_stop)
                if on_progress is not None:
                    on_progress(self.stats)
        finally:
            publisher.close()
            self.stats.faults.update(self.rpc.faults)
        return self.stats

    def _advance(
        self,
        publisher: Publisher,
        state: IndexerState,
        until_head: bool,
        should_stop: Callable[[], bool],
    ) -> IndexerState | None:
        """One step and its commit; the state to go on from (None: caught up, stop)."""
        try:
            step = self.follower.step(state)
        except RetryableError as exc:
            self._failed(exc, should_stop)
            return state
        if step is None:
            self._succeeded()
            if until_head:
                return None
            self._backoff.pause(self.config.poll_interval_s, should_stop)
            return state
        try:
            published = publisher.publish(step)
        except RetryableError as exc:
            self._failed(exc, should_stop)
            return self._retrying(lambda: self._reopen(publisher), should_stop)
        self._succeeded()
        self.stats.add(step, published)
        return step.state

    def _reopen(self, publisher: Publisher) -> IndexerState:
        """After a failed commit, which may have happened or not: settle it, read back."""
        publisher.reopen()
        return self._load(publisher)

    def _open_publisher(self) -> Publisher:
        key = checkpoint_key(self.config.name, self.chain_id)
        return Publisher(
            self.bus,
            self.account,
            self.config.topics,
            key,
            marker_interval_s=self.config.marker_interval_s,
        )

    def _load(self, publisher: Publisher) -> IndexerState:
        state = publisher.load()
        if state is None:
            log.info("no checkpoint: starting at block %d", self.initial.start_block)
            return self.initial
        if (state.chain_id, state.contracts) != (self.initial.chain_id, self.initial.contracts):
            raise ConfigurationError(
                f"checkpoint {publisher.key.decode()!r} is for chain {state.chain_id}"
                f" {', '.join(state.contracts)}, not this deployment; use another indexer name"
            )
        log.info("resuming after block %d (finalized %d)", state.tip.number, state.finalized.number)
        self.stats.tip, self.stats.finalized = state.tip.number, state.finalized.number
        return state

    # --- failures ---------------------------------------------------------------------------

    def _retrying(self, action: Callable[[], T], should_stop: Callable[[], bool]) -> T | None:
        while not should_stop():
            try:
                result = action()
            except RetryableError as exc:
                self._failed(exc, should_stop)
                continue
            self._succeeded()
            return result
        return None

    def _succeeded(self) -> None:
        self._backoff.reset()
        self._failing_since = None

    def _failed(self, exc: RetryableError, should_stop: Callable[[], bool]) -> None:
        self.stats.faults[type(exc).__name__] += 1
        if self._failing_since is None:
            self._failing_since = time.monotonic()
        delay = self._backoff.next_delay()
        budget = self.config.retry_budget_s
        if self._backoff.failures > self.config.retry_limit or (
            budget is not None and time.monotonic() - self._failing_since >= budget
        ):
            raise exc
        log.warning("%s; retrying in %.1f s", exc, delay)
        self._backoff.pause(delay, should_stop)
