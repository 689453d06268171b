import json
import random
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import eth_abi
import pytest
from eth_utils import keccak, to_checksum_address
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from settlement.merkle import (
    REWARD_LEAF_ENCODING,
    MerkleTreeError,
    StandardMerkleTree,
    rewards_tree,
    verify_proof,
)
from tests.support.fixtures import require

ROOT = Path(__file__).resolve().parents[2]
OZ_SCRIPT = ROOT / "tests" / "support" / "oz_merkle.mjs"
OZ_PACKAGE = ROOT / "node_modules" / "@openzeppelin" / "merkle-tree" / "package.json"
ENC = list(REWARD_LEAF_ENCODING)


def _address_forms(n: int) -> list[str]:
    lower = f"0x{n:040x}"
    return [lower, to_checksum_address(lower), "0x" + lower[2:].upper()]


addresses = st.builds(
    lambda n, form: _address_forms(n)[form], st.integers(0, 2**160 - 1), st.integers(0, 2)
)
amounts = st.integers(0, 2**256 - 1)
leaves = st.lists(st.tuples(addresses, amounts), min_size=1, max_size=40)


def _distinct_by_hash(tree: StandardMerkleTree) -> list[int]:
    """One index per distinct leaf hash."""
    seen: dict[str, int] = {}
    for i, value in tree:
        seen.setdefault(tree.leaf_hash(value), i)
    return list(seen.values())


# --- properties -------------------------------------------------------------------------------


@given(leaves)
def test_every_proof_verifies(values: list[tuple[str, int]]) -> None:
    tree = StandardMerkleTree.of(values, ENC)
    last_with_hash = {tree.leaf_hash(value): i for i, value in tree}
    for i, value in tree:
        proof = tree.get_proof(i)
        assert tree.verify(i, proof)
        assert tree.verify(value, proof)
        assert verify_proof(tree.root, ENC, value, proof)
        assert tree.get_proof(value) == tree.get_proof(last_with_hash[tree.leaf_hash(value)])


@given(leaves, st.integers(1, 2**256 - 1))
def test_proof_fails_for_changed_amount(values: list[tuple[str, int]], delta: int) -> None:
    tree = StandardMerkleTree.of(values, ENC)
    for i, (address, amount) in tree:
        changed = (address, (amount + delta) % 2**256)
        assert not tree.verify(changed, tree.get_proof(i))
        assert not verify_proof(tree.root, ENC, changed, tree.get_proof(i))


@given(leaves, addresses)
def test_proof_fails_for_changed_address(values: list[tuple[str, int]], other: str) -> None:
    tree = StandardMerkleTree.of(values, ENC)
    for i, (address, amount) in tree:
        if other.lower() != address.lower():
            assert not tree.verify((other, amount), tree.get_proof(i))


@given(leaves)
def test_proof_fails_for_another_leaf(values: list[tuple[str, int]]) -> None:
    tree = StandardMerkleTree.of(values, ENC)
    distinct = _distinct_by_hash(tree)
    for i in distinct:
        for j in distinct:
            if i != j:
                assert not tree.verify(i, tree.get_proof(j))


@given(st.data(), leaves)
def test_root_is_independent_of_input_order(data: st.DataObject, values: list[Any]) -> None:
    shuffled = data.draw(st.permutations(values))
    assert StandardMerkleTree.of(shuffled, ENC).tree == StandardMerkleTree.of(values, ENC).tree


@given(leaves)
def test_dump_load_round_trip(values: list[tuple[str, int]]) -> None:
    tree = StandardMerkleTree.of(values, ENC)
    dump = json.loads(json.dumps(tree.dump()))
    loaded = StandardMerkleTree.load(dump)
    assert loaded == tree
    assert loaded.dump() == dump
    assert [v for _, v in loaded] == [tuple(v) for v in values]


@given(st.integers(0, 2**160 - 1), amounts)
def test_address_case_does_not_change_the_leaf(n: int, amount: int) -> None:
    hashes = {StandardMerkleTree.of([(a, amount)], ENC).root for a in _address_forms(n)}
    assert len(hashes) == 1
    tree = StandardMerkleTree.of([(_address_forms(n)[1], amount)], ENC)
    assert tree.get_proof((_address_forms(n)[0], amount)) == []


static_words = st.one_of(
    st.tuples(st.just("address"), st.binary(min_size=20, max_size=20)),
    st.tuples(st.just("bool"), st.booleans()),
    st.tuples(st.just("uint8"), st.integers(0, 255)),
    st.tuples(st.just("uint256"), amounts),
    st.tuples(st.just("int8"), st.integers(-128, 127)),
    st.tuples(st.just("int256"), st.integers(-(2**255), 2**255 - 1)),
    st.tuples(st.just("bytes1"), st.binary(max_size=1)),
    st.tuples(st.just("bytes32"), st.binary(max_size=32)),
)


@given(st.lists(static_words, min_size=1, max_size=6))
def test_word_fast_path_matches_eth_abi(fields: list[tuple[str, Any]]) -> None:
    types, value = [t for t, _ in fields], [v for _, v in fields]
    expected = "0x" + keccak(keccak(eth_abi.encode(types, value))).hex()
    assert StandardMerkleTree.of([value], types).root == expected


# --- examples and errors ----------------------------------------------------------------------


def test_openzeppelin_readme_root() -> None:
    values = [
        ["0x1111111111111111111111111111111111111111", "5000000000000000000"],
        ["0x2222222222222222222222222222222222222222", "2500000000000000000"],
    ]
    tree = StandardMerkleTree.of(values, ENC)
    assert tree.root == "0xd4dee0beab2d53f2cc83e567171bd2820e49898130a22622b10ead383e90bd77"
    assert len(tree) == 2
    assert list(tree) == [(0, (values[0][0], 5 * 10**18)), (1, (values[1][0], 25 * 10**17))]


def test_duplicates_are_kept_and_lookup_takes_the_last() -> None:
    a = "0x" + "ab" * 20
    tree = StandardMerkleTree.of([(a, 1), (a, 1), (a, 2)], ENC)
    assert len(tree.tree) == 5
    assert tree.get_proof((a, 1)) == tree.get_proof(1) != tree.get_proof(0)


@pytest.mark.parametrize(
    ("values", "encoding", "message"),
    [
        ([], ENC, "Expected non-zero number of leaves"),
        ([("0x" + "11" * 20, -1)], ENC, "does not fit uint256"),
        ([("0x" + "11" * 20, 2**256)], ENC, "Cannot encode"),
        ([(300,)], ["uint8"], "Cannot encode"),
        ([(-129,)], ["int8"], "Cannot encode"),
        ([(b"abc",)], ["bytes2"], "does not fit bytes2"),
        ([("0x12", 1)], ENC, "20-byte address"),
        ([("0x" + "11" * 20,)], ENC, "Expected 2 values"),
        ([("0x" + "11" * 20, True)], ENC, "Expected an integer"),
        ([("0x" + "11" * 20, "1_000")], ENC, "Expected an integer"),
        (["ab"], ["string"], "Expected a sequence"),
        ([(1,)], ["uint7"], "Invalid leaf encoding"),
        ([(1,)], ["fixed128x18"], "Unsupported leaf type"),
        ([([1, 2],)], ["uint8[3]"], "Cannot encode"),
        ([((1, 2, 3),)], ["(uint8,uint8)"], "Wrong arity"),
    ],
)
def test_invalid_values_are_refused(values: Any, encoding: list[str], message: str) -> None:
    with pytest.raises(MerkleTreeError, match=message):
        StandardMerkleTree.of(values, encoding)


def test_string_integers_and_hex_bytes_are_normalized() -> None:
    tree = StandardMerkleTree.of([("0x10", "0x" + "ff" * 32, "-7")], ["uint8", "bytes32", "int16"])
    assert list(tree) == [(0, (16, b"\xff" * 32, -7))]
    assert tree.dump()["values"][0]["value"] == ["16", "0x" + "ff" * 32, "-7"]


def test_lookup_errors() -> None:
    tree = StandardMerkleTree.of([("0x" + "11" * 20, 1), ("0x" + "22" * 20, 2)], ENC)
    for index in (2, -1):
        with pytest.raises(MerkleTreeError, match="Index out of bounds"):
            tree.get_proof(index)
        with pytest.raises(MerkleTreeError, match="Index out of bounds"):
            tree.verify(index, [])
    with pytest.raises(MerkleTreeError, match="Leaf is not in tree"):
        tree.get_proof(("0x" + "11" * 20, 2))
    with pytest.raises(MerkleTreeError, match="32-byte"):
        tree.verify(0, ["0x12"])


def _tampered(change: Callable[[dict[str, Any]], None]) -> dict[str, Any]:
    values = [("0x" + f"{i:02x}" * 20, i) for i in range(1, 6)]
    dump = StandardMerkleTree.of(values, ENC).dump()
    change(dump)
    return dump


def _set_tree_index(dump: dict[str, Any], index: int) -> None:
    dump["values"][0]["treeIndex"] = index


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda d: d.update(format="standard-v2"), "Unknown format 'standard-v2'"),
        (lambda d: d.pop("leafEncoding"), "Expected leaf encoding"),
        (lambda d: d.update(tree=[], values=[]), "Merkle tree is invalid"),
        (lambda d: d["tree"].append(d["tree"][0]), "Merkle tree is invalid"),
        (lambda d: d["tree"].__setitem__(1, "0x" + "00" * 32), "Merkle tree is invalid"),
        (lambda d: d["tree"].__setitem__(0, "0x12"), "32-byte"),
        (
            lambda d: d["values"][0].__setitem__("value", [d["values"][0]["value"][0], "9"]),
            "does not contain the expected value",
        ),
        (lambda d: d["values"].pop(), "one value per leaf"),
        (lambda d: _set_tree_index(d, d["values"][1]["treeIndex"]), "one value per leaf"),
        (lambda d: _set_tree_index(d, 0), "not a leaf"),
        (lambda d: _set_tree_index(d, True), "Malformed value entry"),
    ],
)
def test_load_validates(change: Callable[[dict[str, Any]], None], message: str) -> None:
    with pytest.raises(MerkleTreeError, match=message):
        StandardMerkleTree.load(_tampered(change))


def test_rewards_tree() -> None:
    cumulative = {"0x" + "11" * 20: 5, to_checksum_address("0x" + "ab" * 20): 7}
    tree = rewards_tree(cumulative)
    assert tree == StandardMerkleTree.of(list(cumulative.items()), REWARD_LEAF_ENCODING)
    assert verify_proof(tree.root, ENC, ("0x" + "ab" * 20, 7), tree.get_proof(1))
    with pytest.raises(MerkleTreeError, match="more than once"):
        rewards_tree({"0x" + "ab" * 20: 1, to_checksum_address("0x" + "ab" * 20): 1})


# --- cross-check with @openzeppelin/merkle-tree ------------------------------------------------


@pytest.fixture(scope="module")
def oz_tree() -> Callable[[list[Any], list[str]], dict[str, Any]]:
    node = shutil.which("node")
    if node is None or not OZ_PACKAGE.exists():
        require("node or @openzeppelin/merkle-tree is not installed (run npm ci)")
    version = json.loads(OZ_PACKAGE.read_text())["version"]
    if version != "1.0.8":
        require(f"@openzeppelin/merkle-tree is {version}, the reference is 1.0.8")

    def run(values: list[Any], encoding: list[str]) -> dict[str, Any]:
        payload = json.dumps({"values": values, "leafEncoding": encoding})
        done = subprocess.run(
            [node, str(OZ_SCRIPT)],
            input=payload,
            capture_output=True,
            text=True,
            cwd=ROOT,
            timeout=120,
            check=True,
        )
        return json.loads(done.stdout)

    return run


def _assert_same_as_oz(js: dict[str, Any], tree: StandardMerkleTree, values: list[Any]) -> None:
    assert tree.root == js["root"]
    assert tree.dump() == js["dump"]
    assert [tree.get_proof(i) for i in range(len(tree))] == js["proofs"]
    assert [tree.get_proof(v) for v in values] == js["valueProofs"]
    assert StandardMerkleTree.load(js["dump"]) == tree


def _random_rewards(n: int) -> list[tuple[str, int]]:
    rng = random.Random(n)
    return [
        (_address_forms(rng.getrandbits(160))[rng.randrange(3)], rng.getrandbits(bits))
        for bits in rng.choices([8, 96, 256], k=n)
    ]


@pytest.mark.parametrize("n", [3, 1, 2, 1001])
def test_matches_openzeppelin(oz_tree: Any, n: int) -> None:
    values = _random_rewards(n)
    js = oz_tree([[address, str(amount)] for address, amount in values], ENC)
    _assert_same_as_oz(js, StandardMerkleTree.of(values, ENC), values)


@settings(
    max_examples=8, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(  # a node start per example, hence few examples
    st.lists(st.tuples(addresses, st.sampled_from([0, 2**256 - 1]) | amounts), max_size=12)
)
def test_matches_openzeppelin_generated(oz_tree: Any, values: list[tuple[str, int]]) -> None:
    values = [("0x" + "00" * 20, 0), *values, ("0x" + "00" * 20, 0)]  # pins the duplicate policy
    js = oz_tree([[address, str(amount)] for address, amount in values], ENC)
    _assert_same_as_oz(js, StandardMerkleTree.of(values, ENC), values)


def test_matches_openzeppelin_mixed_encoding(oz_tree: Any) -> None:
    encoding = ["bool", "bytes32", "int256", "string", "uint8[]", "bytes", "(uint64,address)"]
    rng = random.Random(7)
    js_values = [
        [
            bool(i % 2),
            "0x" + rng.randbytes(32).hex(),
            str(rng.randrange(-(2**255), 2**255)),
            f"leaf {i} ü",
            [str(rng.randrange(256)) for _ in range(i)],
            "0x" + rng.randbytes(i * 7).hex(),
            [str(rng.getrandbits(64)), "0x" + rng.randbytes(20).hex()],
        ]
        for i in range(5)
    ]
    _assert_same_as_oz(
        oz_tree(js_values, encoding), StandardMerkleTree.of(js_values, encoding), js_values
    )
