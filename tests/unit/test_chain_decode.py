"""Log decoding from the contracts' ABIs, checked against eth_abi's encoder for every event."""

from __future__ import annotations

import pytest
from eth_abi import encode
from eth_utils import keccak, to_checksum_address
from hypothesis import given
from hypothesis import strategies as st

from contracts import load_artifact
from indexer.chain.decode import LogDecoder, snake
from indexer.chain.model import RawLog
from indexer.events import CHAIN_TYPES, EVENT_TYPES
from masa.errors import ChainError

ABIS = [load_artifact("NodeStaking").abi, load_artifact("RewardsDistributor").abi]
DECODER = LogDecoder(ABIS, CHAIN_TYPES)
EVENTS = {
    i["name"]: i for abi in ABIS for i in abi if i["type"] == "event" and i["name"] in CHAIN_TYPES
}
CONTRACT = "0x" + "cd" * 20


def value(abi_type: str, name: str) -> st.SearchStrategy:
    if abi_type == "address":
        return st.binary(min_size=20, max_size=20).map(lambda b: to_checksum_address(b))
    if abi_type == "bytes32":
        return st.binary(min_size=32, max_size=32)
    bits = int(abi_type.removeprefix("uint") or 256)
    if name == "role":
        return st.integers(1, 2)
    if abi_type == "uint64" or name in {"unlockAt", "cooldown"}:
        return st.integers(0, 2**53 - 1)
    return st.integers(0, 2**bits - 1)


@st.composite
def event_log(draw: st.DrawFn) -> tuple[str, dict, RawLog]:
    name = draw(st.sampled_from(sorted(EVENTS)))
    inputs = EVENTS[name]["inputs"]
    args = {i["name"]: draw(value(i["type"], i["name"])) for i in inputs}
    signature = f"{name}({','.join(i['type'] for i in inputs)})"
    topics = ["0x" + keccak(text=signature).hex()] + [
        "0x" + encode([i["type"]], [args[i["name"]]]).hex() for i in inputs if i["indexed"]
    ]
    data_inputs = [i for i in inputs if not i["indexed"]]
    data = encode([i["type"] for i in data_inputs], [args[i["name"]] for i in data_inputs])
    raw = RawLog(CONTRACT, tuple(topics), data, 7, "0x" + "11" * 32, "0x" + "22" * 32, 3)
    return name, args, raw


def expected(abi_type: str, arg: object) -> object:
    if abi_type == "address":
        return str(arg).lower()
    if abi_type == "bytes32":
        return "0x" + bytes(arg).hex()  # type: ignore[call-overload]
    return arg


@given(event_log())
def test_every_contract_event_decodes_to_its_payload(sample):
    name, args, raw = sample
    type_name, payload, key = DECODER.decode(raw, chain_id=5)
    assert type_name == name
    for i in EVENTS[name]["inputs"]:
        assert getattr(payload, snake(i["name"])) == expected(i["type"], args[i["name"]])
    assert payload.log.model_dump() == {
        "chain_id": 5,
        "contract": CONTRACT,
        "block_number": 7,
        "block_hash": "0x" + "11" * 32,
        "tx_hash": "0x" + "22" * 32,
        "log_index": 3,
    }
    assert key == EVENT_TYPES[(name, 1)].key(payload, "")


def test_the_topic_filter_names_every_chain_event():
    assert len(DECODER.topics) == len(CHAIN_TYPES) == len(EVENTS)


def test_other_events_are_not_ours():
    role_granted = "0x" + keccak(text="RoleGranted(bytes32,address,address)").hex()
    raw = RawLog(CONTRACT, (role_granted,), b"", 1, "0x" + "11" * 32, "0x" + "22" * 32, 0)
    assert DECODER.decode(raw, 1) is None


def test_a_log_of_the_wrong_shape_is_a_chain_error():
    name, inputs = "Funded", EVENTS["Funded"]["inputs"]
    topic0 = "0x" + keccak(text=f"{name}({','.join(i['type'] for i in inputs)})").hex()
    raw = RawLog(CONTRACT, (topic0,), b"\0" * 64, 1, "0x" + "11" * 32, "0x" + "22" * 32, 0)
    with pytest.raises(ChainError, match="wrong shape"):
        DECODER.decode(raw, 1)
