"""Raw logs → chain event payloads, from the contracts' ABIs. Pure.

Every event the contracts emit has static parameters only (uint, address, bytes32), so a
parameter is one 32-byte word, in a topic when indexed, else in ``data`` in ABI order;
decoding is slicing. The decoder refuses, when built, any event it could not decode so.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from indexer.chain.model import RawLog
from indexer.events.signing import keccak
from indexer.events.types import CURRENT_VERSION, ChainPayload, lookup
from masa.errors import ChainError

WORD = 32
Decoded = tuple[str, ChainPayload, str]
"""(event type, payload, stream key)"""


def _uint(word: bytes) -> int:
    return int.from_bytes(word, "big")


def _address(word: bytes) -> str:
    return "0x" + word[12:].hex()


def _bytes32(word: bytes) -> str:
    return "0x" + word.hex()


def _word_decoder(abi_type: str) -> Callable[[bytes], Any]:
    if re.fullmatch(r"uint(8|16|32|64|128|256)?", abi_type):
        return _uint
    if abi_type == "address":
        return _address
    if abi_type == "bytes32":
        return _bytes32
    raise ValueError(f"cannot decode ABI type {abi_type} from one word")


def snake(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


@dataclass(frozen=True)
class _Field:
    name: str
    decode: Callable[[bytes], Any]


@dataclass(frozen=True)
class _EventSpec:
    name: str
    topics: tuple[_Field, ...]
    data: tuple[_Field, ...]
    payload: type[ChainPayload]


class LogDecoder:
    """Decodes the logs of events named in ``types`` found in ``abis``; ignores others."""

    def __init__(self, abis: Iterable[Sequence[Mapping[str, Any]]], types: Collection[str]) -> None:
        self._specs: dict[str, _EventSpec] = {}
        for abi in abis:
            for item in abi:
                if item.get("type") == "event" and item["name"] in types:
                    topic0, spec = _spec(item)
                    self._specs[topic0] = spec

    @property
    def topics(self) -> tuple[str, ...]:
        """topic0 of every event decoded: the ``eth_getLogs`` topic filter."""
        return tuple(sorted(self._specs))

    def decode(self, log: RawLog, chain_id: int) -> Decoded | None:
        """The event type, payload and stream key of ``log``; None if not ours."""
        spec = self._specs.get(log.topics[0]) if log.topics else None
        if spec is None:
            return None
        if len(log.topics) != len(spec.topics) + 1 or len(log.data) != WORD * len(spec.data):
            raise ChainError(f"{spec.name} log {log.tx_hash}:{log.log_index} has the wrong shape")
        values = {
            f.name: f.decode(bytes.fromhex(t[2:]))
            for f, t in zip(spec.topics, log.topics[1:], strict=True)
        }
        for i, f in enumerate(spec.data):
            values[f.name] = f.decode(log.data[i * WORD : (i + 1) * WORD])
        values["log"] = {
            "chain_id": chain_id,
            "contract": log.address,
            "block_number": log.block_number,
            "block_hash": log.block_hash,
            "tx_hash": log.tx_hash,
            "log_index": log.log_index,
        }
        try:
            payload = spec.payload.model_validate(values)
        except ValidationError as exc:
            raise ChainError(f"{spec.name} log {log.tx_hash}:{log.log_index}: {exc}") from exc
        event_type = lookup(spec.name, CURRENT_VERSION[spec.name])
        assert event_type is not None
        return spec.name, payload, event_type.key(payload, "")


def _spec(item: Mapping[str, Any]) -> tuple[str, _EventSpec]:
    name = item["name"]
    if item.get("anonymous"):
        raise ValueError(f"{name} is anonymous")
    inputs = item["inputs"]
    signature = f"{name}({','.join(i['type'] for i in inputs)})"
    event_type = lookup(name, CURRENT_VERSION[name])
    if event_type is None or not issubclass(event_type.payload, ChainPayload):
        raise ValueError(f"{name} is not a chain event type")
    fields = [(i["indexed"], _Field(snake(i["name"]), _word_decoder(i["type"]))) for i in inputs]
    spec = _EventSpec(
        name,
        tuple(f for indexed, f in fields if indexed),
        tuple(f for indexed, f in fields if not indexed),
        event_type.payload,
    )
    return "0x" + keccak(signature.encode()).hex(), spec
