"""The indexer's checkpoint: its state as one record of a compacted topic, keyed by indexer
name and chain, written in the same bus transaction as the events it accounts for.

The value is zlib-compressed JSON. Per unfinalized block it keeps each published log's
transaction (by index into the block's list), log index, contract (by index), event type and
stream key; event ids are derived again on load (``window.event_id``), since a block in the
window has been retracted exactly as often as when its logs were published.
"""

from __future__ import annotations

import zlib
from dataclasses import replace
from typing import Any

import orjson

from indexer.bus.base import Bus
from indexer.chain.model import BlockId, BlockRef, IndexerState, Published, TrackedBlock
from indexer.chain.window import event_id
from indexer.events.types import ChainLog
from masa.errors import ConfigurationError

FORMAT = 1


def checkpoint_key(indexer: str, chain_id: int) -> bytes:
    return f"{indexer}:{chain_id}".encode()


def encode(state: IndexerState) -> bytes:
    data = {
        "format": FORMAT,
        "chain_id": state.chain_id,
        "contracts": list(state.contracts),
        "start_block": state.start_block,
        "finalized": [state.finalized.number, state.finalized.hash],
        "log_count": state.log_count,
        "blocks": [_encode_block(state.contracts, t) for t in state.blocks],
        "retracted": [list(r) for r in state.retracted],
    }
    return zlib.compress(orjson.dumps(data), 6)


def _encode_block(contracts: tuple[str, ...], tracked: TrackedBlock) -> list[Any]:
    txs = list(dict.fromkeys(p.tx_hash for p in tracked.published))
    logs = [
        [txs.index(p.tx_hash), p.log_index, contracts.index(p.contract), p.type, p.stream_key]
        for p in tracked.published
    ]
    block = tracked.block
    return [block.number, block.hash, block.parent_hash, txs, logs]


def decode(value: bytes) -> IndexerState:
    try:
        data = orjson.loads(zlib.decompress(value))
    except (zlib.error, orjson.JSONDecodeError) as exc:
        raise ConfigurationError(f"unreadable indexer checkpoint: {exc}") from exc
    if data.get("format") != FORMAT:
        raise ConfigurationError(f"checkpoint format {data.get('format')}, expected {FORMAT}")
    number, hash_ = data["finalized"]
    state = IndexerState(
        chain_id=data["chain_id"],
        contracts=tuple(data["contracts"]),
        start_block=data["start_block"],
        finalized=BlockId(number, hash_),
        log_count=data["log_count"],
        retracted=tuple((h, n, t) for h, n, t in data["retracted"]),
    )
    blocks = tuple(_decode_block(state, item) for item in data["blocks"])
    return replace(state, blocks=blocks)


def _decode_block(state: IndexerState, item: list[Any]) -> TrackedBlock:
    number, hash_, parent, txs, logs = item
    published = []
    for tx, log_index, contract, type_, key in logs:
        log = ChainLog(
            chain_id=state.chain_id,
            contract=state.contracts[contract],
            block_number=number,
            block_hash=hash_,
            tx_hash=txs[tx],
            log_index=log_index,
        )
        published.append(
            Published(event_id(state, log), type_, key, log.contract, log.tx_hash, log_index)
        )
    return TrackedBlock(BlockRef(number, hash_, parent), tuple(published))


def load(bus: Bus, topic: str, key: bytes) -> IndexerState | None:
    """The latest committed checkpoint under ``key``; None if there is none."""
    record = bus.latest(topic, key)
    return None if record is None else decode(record.value)
