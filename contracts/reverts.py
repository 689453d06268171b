"""Turns reverts of the Masa contracts into :class:`ContractReverted` errors.

Revert data is ``selector ‖ abi-encoded args``; the selectors of every custom error in the three
ABIs (OpenZeppelin's included) plus Solidity's built-in ``Error(string)`` and ``Panic(uint256)``
are decoded to a name and a dict of named arguments. Both chain backends are understood: JSON-RPC
nodes (web3 raises ``ContractLogicError`` carrying ``data``) and the in-process EVM (eth-tester
raises ``TransactionFailed`` whose message holds the raw bytes).
"""

from __future__ import annotations

import ast
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from typing import Any

from eth_abi import decode
from eth_abi.exceptions import DecodingError
from eth_tester.exceptions import TransactionFailed
from eth_utils import function_signature_to_4byte_selector, to_checksum_address
from web3.exceptions import ContractLogicError

from contracts import CONTRACT_NAMES, load_artifact
from masa.errors import ChainError

_REVERTED_PREFIX = "execution reverted: "


class ContractReverted(ChainError):
    """A contract call reverted.

    ``error`` is the custom error's name (``Error`` for a revert string, ``Panic`` for a panic,
    ``None`` when the data could not be decoded); ``params`` maps argument names to decoded
    values (addresses checksummed, bytes as ``0x`` hex).
    """

    def __init__(
        self, error: str | None, params: Mapping[str, Any] | None = None, tx_hash: str | None = None
    ) -> None:
        self.error = error
        self.params = dict(params or {})
        self.tx_hash = tx_hash
        super().__init__(self._describe())

    def _describe(self) -> str:
        args = ", ".join(f"{k}={v}" for k, v in self.params.items())
        what = f"{self.error}({args})" if self.error else "without a known reason"
        where = f" in {self.tx_hash}" if self.tx_hash else ""
        return f"reverted{where}: {what}"


@dataclass(frozen=True)
class _ErrorSpec:
    name: str
    arg_names: tuple[str, ...]
    arg_types: tuple[str, ...]


def _specs_of(abi: list[dict[str, Any]]) -> dict[bytes, _ErrorSpec]:
    specs = {}
    for entry in abi:
        if entry["type"] != "error":
            continue
        types = tuple(arg["type"] for arg in entry["inputs"])
        names = tuple(arg["name"] or f"arg{i}" for i, arg in enumerate(entry["inputs"]))
        selector = function_signature_to_4byte_selector(f"{entry['name']}({','.join(types)})")
        specs[selector] = _ErrorSpec(entry["name"], names, types)
    return specs


@cache
def _error_specs() -> dict[bytes, _ErrorSpec]:
    specs = _specs_of(
        [
            {"type": "error", "name": "Error", "inputs": [{"name": "message", "type": "string"}]},
            {"type": "error", "name": "Panic", "inputs": [{"name": "code", "type": "uint256"}]},
        ]
    )
    for name in CONTRACT_NAMES:
        specs.update(_specs_of(load_artifact(name).abi))
    return specs


def _normalize(value: Any, abi_type: str) -> Any:
    if abi_type == "address":
        return to_checksum_address(value)
    if isinstance(value, bytes):
        return "0x" + value.hex()
    return value


def decode_revert(data: bytes, tx_hash: str | None = None) -> ContractReverted:
    """The error that revert ``data`` encodes."""
    spec = _error_specs().get(data[:4])
    if spec is None:
        return ContractReverted(None, {"data": "0x" + data.hex()} if data else None, tx_hash)
    try:
        values = decode(list(spec.arg_types), data[4:])
    except DecodingError:
        return ContractReverted(spec.name, {"data": "0x" + data.hex()}, tx_hash)
    params = {
        n: _normalize(v, t) for n, v, t in zip(spec.arg_names, values, spec.arg_types, strict=True)
    }
    return ContractReverted(spec.name, params, tx_hash)


def _data_from_tester(exc: TransactionFailed) -> bytes | str:
    message = str(exc.args[0]) if exc.args else ""
    message = message.removeprefix(_REVERTED_PREFIX)
    if message.startswith(("b'", 'b"')):
        raw = ast.literal_eval(message)
        if isinstance(raw, bytes):
            return raw
    return message


def _from_logic_error(exc: ContractLogicError) -> ContractReverted:
    """A node's revert; some nodes send no ``data`` (or not hex), only a message."""
    data = exc.data if isinstance(exc.data, str) else ""
    try:
        raw = bytes.fromhex(data.removeprefix("0x"))
    except ValueError:
        raw = b""
    if raw:
        return decode_revert(raw)
    message = str(exc.message or exc).removeprefix(_REVERTED_PREFIX).strip()
    if message in ("", "execution reverted"):
        return ContractReverted(None)
    return ContractReverted("Error", {"message": message})


def as_contract_reverted(exc: Exception) -> ContractReverted | None:
    """The :class:`ContractReverted` behind a web3 or eth-tester exception, if it is a revert."""
    if isinstance(exc, ContractLogicError):
        return _from_logic_error(exc)
    if isinstance(exc, TransactionFailed):
        data = _data_from_tester(exc)
        if isinstance(data, bytes):
            return decode_revert(data)
        return ContractReverted("Error", {"message": data})
    return None
