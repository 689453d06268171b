"""Values the chain follower works with: block references, raw logs, decoded events, the
indexer's state (what the checkpoint stores) and the stages a step produces.

Hashes and addresses are lower-case 0x hex strings everywhere in this package.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from uuid import UUID

from indexer.events.types import ChainLog, ChainPayload


@dataclass(frozen=True, slots=True)
class BlockId:
    """A block by number and hash. ``hash`` is None only for the block before the start
    block, before anything was fetched: any parent links to it."""

    number: int
    hash: str | None


@dataclass(frozen=True, slots=True)
class BlockRef:
    """A block header, as far as reorg detection needs it."""

    number: int
    hash: str
    parent_hash: str

    @property
    def id(self) -> BlockId:
        return BlockId(self.number, self.hash)


@dataclass(frozen=True, slots=True)
class RawLog:
    """One ``eth_getLogs`` entry, normalised."""

    address: str
    topics: tuple[str, ...]
    data: bytes
    block_number: int
    block_hash: str
    tx_hash: str
    log_index: int
    block_timestamp: int | None = None
    """Unix seconds, where the node puts ``blockTimestamp`` in its logs (else read per block)."""


@dataclass(frozen=True, slots=True)
class Published:
    """What the checkpoint keeps of a published event of an unfinalized block: enough to
    retract it after a restart (the block's number and hash are the enclosing block's)."""

    event_id: UUID
    type: str
    stream_key: str
    contract: str
    tx_hash: str
    log_index: int


@dataclass(frozen=True, slots=True)
class ChainEvent:
    """A decoded log with the id it is published under."""

    type: str
    payload: ChainPayload
    event_id: UUID
    stream_key: str
    block_time: int | None = None
    """The block's timestamp (unix seconds): the event's ``occurred_at``."""

    @property
    def log(self) -> ChainLog:
        return self.payload.log

    def published(self) -> Published:
        log = self.payload.log
        return Published(
            self.event_id, self.type, self.stream_key, log.contract, log.tx_hash, log.log_index
        )


@dataclass(frozen=True, slots=True)
class TrackedBlock:
    """An unfinalized block the indexer processed, and what it published for it."""

    block: BlockRef
    published: tuple[Published, ...] = ()


@dataclass(frozen=True)
class IndexerState:
    """Everything a restart needs; stored in the checkpoint with what was published.

    Blocks up to ``finalized`` are final and published. ``blocks`` are the processed blocks
    above it, each linked to the previous one (the unfinalized window). ``retracted`` counts,
    per block hash above ``finalized``, how often its logs were retracted: if that block
    becomes canonical again its logs are published under new ids (ingest would drop the
    old ids as duplicates).
    """

    chain_id: int
    contracts: tuple[str, ...]
    start_block: int
    finalized: BlockId
    log_count: int = 0
    """Canonical logs in blocks ``start_block..finalized.number``."""
    blocks: tuple[TrackedBlock, ...] = ()
    retracted: tuple[tuple[str, int, int], ...] = ()
    """(block hash, block number, times retracted), by number."""

    @property
    def tip(self) -> BlockId:
        """The last processed block."""
        return self.blocks[-1].block.id if self.blocks else self.finalized

    def hash_at(self, number: int) -> str | None:
        """Our hash at ``number``, for the finalized block and the window only."""
        if number == self.finalized.number:
            return self.finalized.hash
        offset = number - self.finalized.number - 1
        if 0 <= offset < len(self.blocks):
            return self.blocks[offset].block.hash
        return None

    def times_retracted(self, block_hash: str) -> int:
        return next((n for h, _, n in self.retracted if h == block_hash), 0)


# --- stages: what one step of the follower produces, in order ---------------------------


@dataclass(frozen=True, slots=True)
class Retraction:
    published: Published
    block: BlockId


@dataclass(frozen=True)
class Reorg:
    """Blocks above ``ancestor`` left the canonical chain; ``retracted`` lists what was
    published for them, newest first."""

    ancestor: BlockId
    depth: int
    retracted: tuple[Retraction, ...]


@dataclass(frozen=True)
class LogsBatch:
    """The canonical logs of blocks ``first..last.number``, in chain order."""

    first: int
    last: BlockId
    events: tuple[ChainEvent, ...]


@dataclass(frozen=True)
class Finalized:
    """Blocks up to ``block`` are final: their events will never be retracted.
    ``log_count`` canonical logs lie in ``start_block..block.number``."""

    block: BlockId
    log_count: int


Stage = Reorg | LogsBatch | Finalized


@dataclass(frozen=True)
class Step:
    """The stages of one step and the state after them: published together or not at all."""

    stages: tuple[Stage, ...]
    state: IndexerState
    head: int
    blocks: int = field(default=0)
    """Blocks this step covered (for progress)."""
