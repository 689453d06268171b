"""Revert decoding without a chain: selectors, built-in errors, and eth-tester's messages."""

from __future__ import annotations

from eth_abi import encode
from eth_tester.exceptions import TransactionFailed
from eth_utils import function_signature_to_4byte_selector as selector
from web3.exceptions import ContractCustomError

from contracts.reverts import ContractReverted, as_contract_reverted, decode_revert
from masa.errors import ChainError, PermanentError

NODE = "0x" + "ab" * 20


def below_minimum() -> bytes:
    return selector("NodeStakingBelowMinimum(uint8,uint256,uint256)") + encode(
        ["uint8", "uint256", "uint256"], [1, 5, 10]
    )


def test_custom_errors_decode_to_name_and_named_args() -> None:
    error = decode_revert(below_minimum())
    assert isinstance(error, ChainError) and isinstance(error, PermanentError)
    assert (error.error, error.params) == (
        "NodeStakingBelowMinimum",
        {"role": 1, "newStake": 5, "minimum": 10},
    )
    assert str(error) == "reverted: NodeStakingBelowMinimum(role=1, newStake=5, minimum=10)"


def test_addresses_are_checksummed_and_bytes_are_hex() -> None:
    data = selector("AccessControlUnauthorizedAccount(address,bytes32)") + encode(
        ["address", "bytes32"], [NODE, b"\x01" * 32]
    )
    error = decode_revert(data)
    assert error.params == {
        "account": "0xABaBaBaBABabABabAbAbABAbABabababaBaBABaB",
        "neededRole": "0x" + "01" * 32,
    }


def test_builtin_error_and_panic_and_unknown_data() -> None:
    message = decode_revert(selector("Error(string)") + encode(["string"], ["nope"]))
    assert (message.error, message.params) == ("Error", {"message": "nope"})
    panic = decode_revert(selector("Panic(uint256)") + encode(["uint256"], [0x11]))
    assert (panic.error, panic.params) == ("Panic", {"code": 0x11})
    unknown = decode_revert(bytes.fromhex("deadbeef"))
    assert (unknown.error, unknown.params) == (None, {"data": "0xdeadbeef"})
    assert decode_revert(b"").params == {}
    truncated = decode_revert(below_minimum()[:20])
    assert truncated.error == "NodeStakingBelowMinimum" and "data" in truncated.params


def test_json_rpc_and_in_process_reverts_translate_alike() -> None:
    data = below_minimum()
    from_rpc = as_contract_reverted(ContractCustomError("0x" + data.hex(), data="0x" + data.hex()))
    from_tester = as_contract_reverted(TransactionFailed(f"execution reverted: {data!r}"))
    assert isinstance(from_rpc, ContractReverted) and isinstance(from_tester, ContractReverted)
    assert (from_rpc.error, from_rpc.params) == (from_tester.error, from_tester.params)
    text = as_contract_reverted(TransactionFailed("execution reverted: out of gas"))
    assert text is not None and (text.error, text.params) == ("Error", {"message": "out of gas"})
    assert as_contract_reverted(ValueError("unrelated")) is None
