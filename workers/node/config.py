"""What a worker node needs to know, as plain values built by the shell's wiring from the
settings (``masa.app.wiring.worker_config``); the worker never reads settings itself."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta


@dataclass(frozen=True)
class JobConfig:
    """How one job runs: deadlines and the crawl's politeness."""

    job_timeout_s: float = 120
    blocked_domains: tuple[str, ...] = ()
    download_timeout_s: float = 10
    download_delay_s: float = 0.25


@dataclass(frozen=True)
class WorkerConfig:
    """Where a worker reads requests and writes outcomes, and how it paces itself."""

    events_topic: str
    requests_topic: str
    max_clock_skew: timedelta
    results_topic: str = "masa.results"
    """Where results go, encrypted to their oracle (``workers.results``)."""
    group: str = "workers"
    concurrency: int = 4
    shutdown_grace_s: float = 30
    rebalance_wait_s: float = 8
    heartbeat_interval_s: float = 30
    stake_recheck_s: float = 300
    jobs: JobConfig = JobConfig()
