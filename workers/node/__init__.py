"""The worker node: serves accepted requests from the bus and reports signed results.

``Worker(bus, config, account, stake_check, engine).run(should_stop)`` is the whole
node; ``masa worker run`` wraps it with a keystore, the chain's stake check and a vLLM
engine. See docs/worker.md.
"""

from workers.node.config import JobConfig, WorkerConfig
from workers.node.heartbeat import Heartbeats, next_seq
from workers.node.jobs import JobRunner, LlmEngine
from workers.node.offsets import OffsetTracker
from workers.node.outcome import Completed, Failed, Outcome, result_event_id, result_messages
from workers.node.stake import StakeCheck, chain_stake_check, require_worker_stake
from workers.node.worker import Worker

__all__ = [
    "Completed",
    "Failed",
    "Heartbeats",
    "JobConfig",
    "JobRunner",
    "LlmEngine",
    "OffsetTracker",
    "Outcome",
    "StakeCheck",
    "Worker",
    "WorkerConfig",
    "chain_stake_check",
    "next_seq",
    "require_worker_stake",
    "result_event_id",
    "result_messages",
]
