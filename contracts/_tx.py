"""Signs transactions with a local key, broadcasts them and waits for their receipts.

Signing and broadcasting are separate steps so a caller (root posting) can persist the nonce and
the raw transaction before anything leaves the machine, and broadcast the same bytes again after
a restart.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol, cast

from eth_account.signers.local import LocalAccount
from eth_tester.exceptions import TransactionFailed
from eth_tester.exceptions import ValidationError as TesterValidationError
from eth_typing import HexStr
from eth_utils import ValidationError as EvmValidationError
from web3 import Web3
from web3.exceptions import TimeExhausted, TransactionNotFound, Web3Exception
from web3.types import Nonce, TxParams, TxReceipt

from contracts.reverts import ContractReverted, as_contract_reverted
from masa.errors import ChainError, RetryableError

GAS_MARGIN_PERCENT = 20
# what a refused broadcast raises: JSON-RPC errors, and the in-process EVM's validation errors
_BROADCAST_ERRORS = (Web3Exception, ValueError, EvmValidationError, TesterValidationError)


class TransactionPending(RetryableError):
    """A broadcast transaction was not mined in time; wait for ``tx_hash`` again later."""

    def __init__(self, tx_hash: str, timeout_s: float) -> None:
        super().__init__(f"transaction {tx_hash} not mined within {timeout_s:g} s")
        self.tx_hash = tx_hash


class Transactable(Protocol):
    """A bound contract function or constructor call, as web3 builds them."""

    def estimate_gas(self, transaction: TxParams | None = None) -> int: ...

    def build_transaction(self, transaction: TxParams | None = None) -> TxParams: ...


@dataclass(frozen=True)
class SignedTx:
    """A signed transaction, ready to (re)broadcast."""

    sender: str
    nonce: int
    tx_hash: HexStr
    raw: HexStr


def _reverted_or_chain_error(exc: Exception, doing: str) -> ChainError:
    return as_contract_reverted(exc) or ChainError(f"{doing} failed: {exc}")


def estimate_gas(call: Transactable, sender: str) -> int:
    """Gas for ``call`` from ``sender`` plus a margin; a revert raises ContractReverted."""
    try:
        gas = call.estimate_gas({"from": sender})
    except (Web3Exception, TransactionFailed) as exc:
        raise _reverted_or_chain_error(exc, "gas estimation") from exc
    return gas * (100 + GAS_MARGIN_PERCENT) // 100


def sign(w3: Web3, account: LocalAccount, call: Transactable, nonce: int | None = None) -> SignedTx:
    """Estimates, builds and signs ``call`` from ``account`` (next pending nonce by default)."""
    sender = account.address
    if nonce is None:
        nonce = w3.eth.get_transaction_count(sender, "pending")
    gas = estimate_gas(call, sender)
    params: TxParams = {"from": sender, "nonce": Nonce(nonce), "gas": gas}
    signed = account.sign_transaction(cast(dict[str, Any], call.build_transaction(params)))
    return SignedTx(
        sender, nonce, HexStr(signed.hash.to_0x_hex()), HexStr(signed.raw_transaction.to_0x_hex())
    )


def _is_known(w3: Web3, tx_hash: str) -> bool:
    try:
        w3.eth.get_transaction(HexStr(tx_hash))
    except TransactionNotFound:
        return False
    return True


def _replay(w3: Web3, receipt: TxReceipt) -> ContractReverted:
    """Replays a mined, reverted call on the state after its block, to recover the error.

    The transactions before it in the block (the usual cause: a competing transaction won) are
    included that way; ones after it are too, so the decoded error is a best effort.
    """
    tx = w3.eth.get_transaction(receipt["transactionHash"])
    call: TxParams = {"from": tx["from"], "to": tx["to"], "data": tx["input"], "value": tx["value"]}
    tx_hash = receipt["transactionHash"].to_0x_hex()
    try:
        w3.eth.call(call, block_identifier=receipt["blockNumber"])
    except (Web3Exception, TransactionFailed) as exc:
        reverted = as_contract_reverted(exc)
        if reverted is not None:
            return ContractReverted(reverted.error, reverted.params, tx_hash)
    return ContractReverted(None, tx_hash=tx_hash)


def send_signed(w3: Web3, signed: SignedTx, timeout_s: float = 120.0) -> TxReceipt:
    """Broadcasts ``signed`` (a no-op when the node already has it) and waits for its receipt.

    A mined revert raises :class:`ContractReverted` (error recovered by a replay, see
    :func:`_replay`); a timeout raises :class:`TransactionPending`.
    """
    try:
        w3.eth.send_raw_transaction(signed.raw)
    except _BROADCAST_ERRORS as exc:
        if not _is_known(w3, signed.tx_hash):
            raise ChainError(f"broadcast of {signed.tx_hash} failed: {exc}") from exc
    try:
        receipt = w3.eth.wait_for_transaction_receipt(signed.tx_hash, timeout=timeout_s)
    except TimeExhausted as exc:
        raise TransactionPending(signed.tx_hash, timeout_s) from exc
    if receipt["status"] != 1:
        raise _replay(w3, receipt)
    return receipt


def transact(
    w3: Web3, account: LocalAccount, call: Transactable, timeout_s: float = 120.0
) -> TxReceipt:
    """Signs ``call`` with ``account``'s key, broadcasts it and returns its successful receipt."""
    return send_signed(w3, sign(w3, account, call), timeout_s)
