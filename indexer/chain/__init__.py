"""The chain indexer: follows NodeStaking and RewardsDistributor logs and publishes one
signed event per log, reorg-safe and crash-safe (docs/indexer.md).

Pure core: ``window`` (reorg bookkeeping), ``ranges`` (adaptive ``eth_getLogs`` ranges),
``decode`` (logs → payloads), ``checkpoint`` encoding. Around it: ``rpc`` (the chain port and
its adapters), ``follower`` (state → next step, reads only), ``publisher`` (step → one bus
transaction with the checkpoint) and ``runner`` (the loop).
"""

from indexer.chain.decode import LogDecoder
from indexer.chain.errors import (
    ChainMoved,
    HeadBehind,
    RangeTooLarge,
    RateLimited,
    RpcTimeout,
    RpcUnavailable,
)
from indexer.chain.follower import FollowConfig, Follower
from indexer.chain.model import (
    BlockId,
    BlockRef,
    ChainEvent,
    Finalized,
    IndexerState,
    LogsBatch,
    Published,
    RawLog,
    Reorg,
    Stage,
    Step,
)
from indexer.chain.publisher import Publisher, Topics
from indexer.chain.rpc import ChainRpc, HttpRpc, TokenBucket, Web3Rpc, open_rpc
from indexer.chain.runner import Indexer, IndexerConfig, IndexerStats

__all__ = [
    "BlockId",
    "BlockRef",
    "ChainEvent",
    "ChainMoved",
    "ChainRpc",
    "Finalized",
    "FollowConfig",
    "Follower",
    "HeadBehind",
    "HttpRpc",
    "Indexer",
    "IndexerConfig",
    "IndexerState",
    "IndexerStats",
    "LogDecoder",
    "LogsBatch",
    "Published",
    "Publisher",
    "RangeTooLarge",
    "RateLimited",
    "RawLog",
    "Reorg",
    "RpcTimeout",
    "RpcUnavailable",
    "Stage",
    "Step",
    "TokenBucket",
    "Topics",
    "Web3Rpc",
    "open_rpc",
]
