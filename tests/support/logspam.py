"""A 70-byte contract that emits ``count`` NodeStaking ``Staked`` logs per call, for load.

Hand-assembled so tests and benchmarks need no compiler: ``spam(count)`` is the whole ABI
(calldata = one 32-byte word). Log ``i`` (1-based) is
``Staked(node=msg.sender, role=1, amount=i, newStake=i)``, about 2.1k gas each, so a 30M-gas
block holds ~13k of them. Deploy it anywhere (anvil or the in-process EVM) with ``deploy``.
"""

from __future__ import annotations

from eth_account.signers.local import LocalAccount
from eth_utils import keccak
from web3 import Web3

STAKED_TOPIC = keccak(text="Staked(address,uint8,uint256,uint256)")
GAS_PER_LOG = 2_300
_LOOP, _END = 0x05, 0x44

RUNTIME = b"".join(
    [
        bytes.fromhex("600035"),  # count = calldataload(0)
        bytes.fromhex("6000"),  # i = 0
        bytes.fromhex("5b"),  # loop:
        bytes.fromhex("8181101560") + bytes([_END]) + bytes.fromhex("57"),  # if !(i < count) end
        bytes.fromhex("600101"),  # i += 1
        bytes.fromhex("8060005280602052"),  # mem[0:32] = mem[32:64] = i
        bytes.fromhex("600133"),  # topic2 = role 1, topic1 = caller
        bytes.fromhex("7f") + STAKED_TOPIC,  # topic0
        bytes.fromhex("60406000a3"),  # log3(0, 64, ...)
        bytes.fromhex("60") + bytes([_LOOP]) + bytes.fromhex("56"),  # jump loop
        bytes.fromhex("5b00"),  # end: stop
    ]
)
assert RUNTIME[_LOOP] == 0x5B and RUNTIME[_END] == 0x5B
# init code: copy the runtime (which follows these 11 bytes) to memory and return it
INIT = bytes.fromhex(f"60{len(RUNTIME):02x}80600b6000396000f3") + RUNTIME


def deploy(w3: Web3, account: LocalAccount) -> str:
    """Deploy a spammer from ``account``; returns its checksum address."""
    tx = {
        "from": account.address,
        "data": INIT,
        "gas": 200_000,
        "nonce": w3.eth.get_transaction_count(account.address, "pending"),
        "gasPrice": w3.eth.gas_price,
        "chainId": w3.eth.chain_id,
    }
    signed = account.sign_transaction(tx)
    receipt = w3.eth.wait_for_transaction_receipt(
        w3.eth.send_raw_transaction(signed.raw_transaction)
    )
    return str(receipt["contractAddress"])


def calldata(count: int) -> bytes:
    return count.to_bytes(32, "big")


def send_spam(w3: Web3, sender: LocalAccount, to: str, count: int, nonce: int) -> None:
    """Broadcast one transaction that makes ``to`` (a deployed spammer) emit ``count`` logs."""
    tx = {
        "to": to,
        "data": calldata(count),
        "gas": count * GAS_PER_LOG + 50_000,
        "nonce": nonce,
        "gasPrice": w3.eth.gas_price,
        "chainId": w3.eth.chain_id,
    }
    w3.eth.send_raw_transaction(sender.sign_transaction(tx).raw_transaction)
