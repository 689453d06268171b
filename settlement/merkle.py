"""OpenZeppelin ``StandardMerkleTree`` (``@openzeppelin/merkle-tree`` 1.0.8), pure Python.

Same leaves (``keccak256(keccak256(abi.encode(values)))``), same leaf order (sorted by hash,
stable), same heap-array tree with sorted-pair node hashing, same proofs and the same
``standard-v1`` dump, so OpenZeppelin tooling and ``MerkleProof.verify`` accept our roots and
proofs, and we load theirs.

Values are normalized on the way in (``of`` and ``load`` alike): integers may be given as ``int``
or as decimal / ``0x`` strings and are kept as ``int``; ``bytes``/``bytesN`` may be given as bytes
or ``0x`` strings and are kept as bytes; addresses are kept as the string given (case included,
like the JS library) and ``abi.encode`` ignores their case, so a checksummed and a lower-case
address give the same leaf. ``dump()`` renders integers as decimal strings and bytes as lower-case
``0x`` hex, which is what the JS library writes when given the usual string inputs.

Duplicate values are kept as separate leaves, as in the JS library; looking one up by value
resolves to its last occurrence.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property, lru_cache
from typing import Any, TypeGuard, cast

import eth_abi
from eth_abi.exceptions import ABITypeError, EncodingError, ParseError
from eth_abi.grammar import ABIType, BasicType, TupleType, parse
from sha3 import keccak_256

FORMAT = "standard-v1"
REWARD_LEAF_ENCODING: tuple[str, ...] = ("address", "uint256")

_INT = re.compile(r"-?[0-9]+|0[xX][0-9a-fA-F]+")
_ADDRESS = re.compile(r"0x[0-9a-fA-F]{40}")
_HEX = re.compile(r"0[xX](?:[0-9a-fA-F]{2})*")


class MerkleTreeError(ValueError):
    """Invalid input, dump or lookup for a Merkle tree."""


@dataclass(frozen=True)
class StandardMerkleTree:
    """Build with :meth:`of` or :meth:`load`; the constructor does not validate."""

    leaf_encoding: tuple[str, ...]
    tree: tuple[bytes, ...]
    """Heap array: node ``i`` has children ``2i+1`` and ``2i+2``; leaves fill the tail."""
    values: tuple[tuple[Any, ...], ...]
    """Normalized values in input order."""
    tree_indices: tuple[int, ...]
    """``tree_indices[i]`` is the position of ``values[i]``'s leaf in :attr:`tree`."""

    @classmethod
    def of(
        cls, values: Sequence[Sequence[Any]], leaf_encoding: Sequence[str]
    ) -> StandardMerkleTree:
        encoding = tuple(leaf_encoding)
        normalized = tuple(_normalize_leaf(encoding, value) for value in values)
        if not normalized:
            raise MerkleTreeError("Expected non-zero number of leaves")
        hashes = [_hash_normalized(encoding, value) for value in normalized]
        order = sorted(range(len(hashes)), key=hashes.__getitem__)
        tree = _make_tree([hashes[i] for i in order])
        tree_indices = [0] * len(hashes)
        for leaf_index, value_index in enumerate(order):
            tree_indices[value_index] = len(tree) - 1 - leaf_index
        return cls(encoding, tree, normalized, tuple(tree_indices))

    @classmethod
    def load(cls, dump: Mapping[str, Any]) -> StandardMerkleTree:
        """Read a ``standard-v1`` dump and :meth:`validate` it."""
        if dump.get("format") != FORMAT:
            raise MerkleTreeError(f"Unknown format {dump.get('format')!r}")
        encoding = dump.get("leafEncoding")
        if not isinstance(encoding, list) or not all(isinstance(t, str) for t in encoding):
            raise MerkleTreeError("Expected leaf encoding")
        nodes, entries = dump.get("tree"), dump.get("values")
        if not isinstance(nodes, list) or not isinstance(entries, list):
            raise MerkleTreeError("Expected 'tree' and 'values' lists")
        values, tree_indices = [], []
        for entry in entries:
            if not isinstance(entry, Mapping) or type(entry.get("treeIndex")) is not int:
                raise MerkleTreeError(f"Malformed value entry: {entry!r}")
            values.append(_normalize_leaf(tuple(encoding), entry.get("value")))
            tree_indices.append(entry["treeIndex"])
        tree = cls(tuple(encoding), tuple(map(_node, nodes)), tuple(values), tuple(tree_indices))
        tree.validate()
        return tree

    @property
    def root(self) -> str:
        return _hex(self.tree[0])

    def __len__(self) -> int:
        return len(self.values)

    def __iter__(self) -> Iterator[tuple[int, tuple[Any, ...]]]:
        """``(index, value)`` pairs in input order, like the JS ``entries()``."""
        return iter(enumerate(self.values))

    def leaf_hash(self, value: Sequence[Any]) -> str:
        return _hex(_leaf_hash(self.leaf_encoding, value))

    def get_proof(self, index_or_value: int | Sequence[Any]) -> list[str]:
        """Sibling hashes from the leaf up to (excluding) the root."""
        index = self.tree_indices[self._value_index(index_or_value)]
        return [_hex(self.tree[node]) for node in proof_nodes(index)]

    def verify(self, index_or_value: int | Sequence[Any], proof: Sequence[str]) -> bool:
        if isinstance(index_or_value, int):
            leaf = self.tree[self.tree_indices[self._check_index(index_or_value)]]
        else:
            leaf = _leaf_hash(self.leaf_encoding, index_or_value)
        return _process_proof(leaf, proof) == self.tree[0]

    def dump(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "leafEncoding": list(self.leaf_encoding),
            "tree": [_hex(node) for node in self.tree],
            "values": [
                {"value": _to_json(value), "treeIndex": tree_index}
                for value, tree_index in zip(self.values, self.tree_indices, strict=True)
            ],
        }

    def validate(self) -> None:
        """Check the node hashes and that every value sits, once, on its own leaf."""
        if not _is_valid_tree(self.tree):
            raise MerkleTreeError("Merkle tree is invalid")
        leaf_count = (len(self.tree) + 1) // 2
        if len(self.values) != leaf_count or len(set(self.tree_indices)) != leaf_count:
            raise MerkleTreeError(f"Expected exactly one value per leaf ({leaf_count} leaves)")
        for value, tree_index in zip(self.values, self.tree_indices, strict=True):
            if not len(self.tree) - leaf_count <= tree_index < len(self.tree):
                raise MerkleTreeError(f"Tree index {tree_index} is not a leaf")
            if self.tree[tree_index] != _hash_normalized(self.leaf_encoding, value):
                raise MerkleTreeError("Merkle tree does not contain the expected value")

    @cached_property
    def _hash_lookup(self) -> dict[bytes, int]:
        # Later duplicates overwrite earlier ones, as JS Object.fromEntries does.
        return {self.tree[tree_index]: i for i, tree_index in enumerate(self.tree_indices)}

    def _value_index(self, index_or_value: int | Sequence[Any]) -> int:
        if isinstance(index_or_value, int):
            return self._check_index(index_or_value)
        found = self._hash_lookup.get(_leaf_hash(self.leaf_encoding, index_or_value))
        if found is None:
            raise MerkleTreeError("Leaf is not in tree")
        return found

    def _check_index(self, index: int) -> int:
        if not 0 <= index < len(self.values):
            raise MerkleTreeError("Index out of bounds")
        return index


def verify_proof(
    root: str, leaf_encoding: Sequence[str], value: Sequence[Any], proof: Sequence[str]
) -> bool:
    """Whether ``proof`` links ``value``'s leaf to ``root`` (what ``MerkleProof.verify`` checks)."""
    return _process_proof(_leaf_hash(tuple(leaf_encoding), value), proof) == _node(root)


def proof_nodes(tree_index: int) -> list[int]:
    """The heap positions of the siblings that prove the leaf at ``tree_index``, from the leaf
    up to (excluding) the root: a proof is these nodes' hashes."""
    nodes = []
    while tree_index > 0:
        nodes.append(tree_index - 1 if tree_index % 2 == 0 else tree_index + 1)
        tree_index = (tree_index - 1) // 2
    return nodes


def rewards_tree(cumulative: Mapping[str, int]) -> StandardMerkleTree:
    """Tree over ``(address, cumulative amount)`` leaves, one per address.

    Addresses that differ only in case would be the same leaf twice, so they are refused.
    """
    seen: set[str] = set()
    for address in cumulative:
        if address.lower() in seen:
            raise MerkleTreeError(f"Address {address} appears more than once")
        seen.add(address.lower())
    return StandardMerkleTree.of(list(cumulative.items()), REWARD_LEAF_ENCODING)


def _make_tree(sorted_leaves: list[bytes]) -> tuple[bytes, ...]:
    size = 2 * len(sorted_leaves) - 1
    tree = [b""] * (size - len(sorted_leaves)) + sorted_leaves[::-1]
    for i in range(size - len(sorted_leaves) - 1, -1, -1):
        tree[i] = _node_hash(tree[2 * i + 1], tree[2 * i + 2])
    return tuple(tree)


def _is_valid_tree(tree: Sequence[bytes]) -> bool:
    if len(tree) % 2 == 0:  # a heap of 2n-1 nodes; also rejects the empty tree
        return False
    internal = (len(tree) - 1) // 2
    return all(tree[i] == _node_hash(tree[2 * i + 1], tree[2 * i + 2]) for i in range(internal))


def _process_proof(leaf: bytes, proof: Sequence[str]) -> bytes:
    node = leaf
    for sibling in proof:
        node = _node_hash(node, _node(sibling))
    return node


def _keccak(data: bytes) -> bytes:
    digest: bytes = keccak_256(data).digest()  # sha3 has no type information
    return digest


def _node_hash(a: bytes, b: bytes) -> bytes:
    return _keccak(a + b if a <= b else b + a)


def _leaf_hash(encoding: tuple[str, ...], value: Sequence[Any]) -> bytes:
    return _hash_normalized(encoding, _normalize_leaf(encoding, value))


def _hash_normalized(encoding: tuple[str, ...], value: tuple[Any, ...]) -> bytes:
    return _keccak(_keccak(_abi_encode(encoding, value)))


def _abi_encode(encoding: tuple[str, ...], value: tuple[Any, ...]) -> bytes:
    types = _parse_encoding(encoding)
    try:
        words = [t for t in types if _is_word(t)]
        if len(words) == len(types):
            # eth_abi's validation would be two thirds of building a 100k-leaf tree.
            return b"".join(map(_word, words, value))
        return eth_abi.encode(encoding, value)
    except (EncodingError, OverflowError) as exc:
        raise MerkleTreeError(f"Cannot encode {value!r} as {list(encoding)}: {exc}") from exc


def _is_word(abi_type: ABIType) -> TypeGuard[BasicType]:
    return isinstance(abi_type, BasicType) and not abi_type.is_array and not abi_type.is_dynamic


def _word(abi_type: BasicType, value: Any) -> bytes:
    """abi.encode of one normalized static scalar: a single 32-byte word."""
    base, bits = abi_type.base, abi_type.sub
    if base == "address":
        return bytes(12) + bytes.fromhex(value[2:])
    if base == "bool" and isinstance(value, bool):
        return value.to_bytes(32, "big")
    if base == "uint" and value >= 0:
        return cast(int, value).to_bytes(bits // 8, "big").rjust(32, b"\0")
    if base == "int":
        pad = b"\xff" if value < 0 else b"\0"
        return cast(int, value).to_bytes(bits // 8, "big", signed=True).rjust(32, pad)
    if base == "bytes" and len(value) <= bits:
        return cast(bytes, value).ljust(32, b"\0")
    raise MerkleTreeError(f"Value {value!r} does not fit {abi_type.to_type_str()}")


def _normalize_leaf(encoding: tuple[str, ...], value: Any) -> tuple[Any, ...]:
    types = _parse_encoding(encoding)
    _check_sequence(value, "a leaf value")
    if len(value) != len(types):
        raise MerkleTreeError(f"Expected {len(types)} values for {list(encoding)}, got {value!r}")
    return tuple(_normalize(t, v) for t, v in zip(types, value, strict=True))


@lru_cache(maxsize=64)
def _parse_encoding(encoding: tuple[str, ...]) -> tuple[ABIType, ...]:
    try:
        types = tuple(parse(t) for t in encoding)
        for abi_type in types:
            abi_type.validate()
    except (ParseError, ABITypeError) as exc:
        raise MerkleTreeError(f"Invalid leaf encoding {list(encoding)}: {exc}") from exc
    return types


def _normalize(abi_type: ABIType, value: Any) -> Any:
    if abi_type.is_array or isinstance(abi_type, TupleType):
        _check_sequence(value, abi_type.to_type_str())
        if abi_type.is_array:
            return tuple(_normalize(abi_type.item_type, item) for item in value)
        assert isinstance(abi_type, TupleType)
        if len(value) != len(abi_type.components):
            raise MerkleTreeError(f"Wrong arity for {abi_type.to_type_str()}: {value!r}")
        return tuple(_normalize(t, v) for t, v in zip(abi_type.components, value, strict=True))
    assert isinstance(abi_type, BasicType)
    if abi_type.base in ("uint", "int"):
        return _to_int(value)
    if abi_type.base == "bytes":
        return _to_bytes(value)
    if abi_type.base == "address":
        return _to_address(value)
    if abi_type.base in ("bool", "string"):
        return value
    raise MerkleTreeError(f"Unsupported leaf type {abi_type.to_type_str()}")


def _check_sequence(value: Any, what: str) -> None:
    if isinstance(value, str | bytes) or not isinstance(value, Sequence):
        raise MerkleTreeError(f"Expected a sequence for {what}, got {value!r}")


def _to_int(value: Any) -> int:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str) and _INT.fullmatch(value):
        return int(value, 0 if value[:2] in ("0x", "0X") else 10)
    raise MerkleTreeError(f"Expected an integer, got {value!r}")


def _to_bytes(value: Any) -> bytes:
    if isinstance(value, bytes | bytearray):
        return bytes(value)
    if isinstance(value, str) and _HEX.fullmatch(value):
        return bytes.fromhex(value[2:])
    raise MerkleTreeError(f"Expected bytes or 0x-hex, got {value!r}")


def _to_address(value: Any) -> str:
    if isinstance(value, bytes) and len(value) == 20:
        return _hex(value)
    if isinstance(value, str) and _ADDRESS.fullmatch(value):
        return value
    raise MerkleTreeError(f"Expected a 0x-prefixed 20-byte address, got {value!r}")


def _to_json(value: Any) -> Any:
    if isinstance(value, tuple):
        return [_to_json(item) for item in value]
    if isinstance(value, bytes):
        return _hex(value)
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return value


def _node(value: Any) -> bytes:
    if not isinstance(value, str) or not _HEX.fullmatch(value) or len(value) != 66:
        raise MerkleTreeError(f"Merkle tree nodes must be 32-byte 0x-hex strings, got {value!r}")
    return bytes.fromhex(value[2:])


def _hex(data: bytes) -> str:
    return "0x" + data.hex()
