"""Operator-facing calls on the Masa contracts, signed locally by an eth-account key.

Every write estimates gas first, so a call that would revert raises
:class:`~contracts.reverts.ContractReverted` (the custom error's name and decoded arguments)
before anything is broadcast; nothing is signed by the node. Reads of one logical state (a
node's stake, the distributor's totals) are taken at one block.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from eth_account.signers.local import LocalAccount
from eth_typing import ChecksumAddress
from eth_utils import to_checksum_address
from web3 import Web3
from web3.contract import Contract
from web3.contract.contract import ContractEvent
from web3.logs import DISCARD
from web3.types import BlockIdentifier, TxReceipt

from contracts._tx import SignedTx, Transactable, send_signed, sign, transact
from contracts.deploy import Deployment, contract_at
from indexer.events import NodeRole as Role
from masa.errors import ChainError, ConfigurationError

__all__ = ["DistributorState", "LockInfo", "MasaClient", "Role", "StakeStatus", "to_bytes32"]


@dataclass(frozen=True)
class LockInfo:
    """Unstaked tokens that ``withdraw(lock_id)`` pays from ``unlock_at`` (unix seconds)."""

    lock_id: int
    amount: int
    unlock_at: int


@dataclass(frozen=True)
class StakeStatus:
    """One node's staking state, read at ``block_number``."""

    node: ChecksumAddress
    role: Role | None
    stake: int
    locked: int
    active: bool
    locks: tuple[LockInfo, ...]
    min_stake: int | None
    cooldown_s: int
    balance: int
    block_number: int
    block_timestamp: int

    @property
    def withdrawable(self) -> tuple[LockInfo, ...]:
        """Locks whose cooldown had passed at ``block_timestamp``."""
        return tuple(lock for lock in self.locks if lock.unlock_at <= self.block_timestamp)


@dataclass(frozen=True)
class DistributorState:
    """RewardsDistributor's epoch, roots and totals, read at ``block_number``."""

    current_epoch: int
    root: str
    previous_root: str
    total_cumulative: int
    total_funded: int
    total_fees_deposited: int
    total_claimed: int
    balance: int
    block_number: int


def to_bytes32(value: str | bytes) -> bytes:
    """``0x`` + 64 hex digits as is; other text or bytes (≤ 32) right-padded with zeros."""
    if isinstance(value, str) and value.startswith("0x") and len(value) == 66:
        return bytes.fromhex(value[2:])
    raw = value.encode() if isinstance(value, str) else value
    if len(raw) > 32:
        raise ConfigurationError(f"{value!r} does not fit in 32 bytes")
    return raw.ljust(32, b"\0")


class MasaClient:
    """Calls on one deployment; writes need ``account``, reads do not."""

    def __init__(
        self,
        w3: Web3,
        deployment: Deployment,
        account: LocalAccount | None = None,
        *,
        receipt_timeout_s: float = 120.0,
    ) -> None:
        deployment.verify(w3)
        self.w3 = w3
        self.deployment = deployment
        self.account = account
        self.receipt_timeout_s = receipt_timeout_s
        self.token = contract_at(w3, "MasaToken", deployment.token.address)
        self.staking = contract_at(w3, "NodeStaking", deployment.staking.address)
        self.distributor = contract_at(w3, "RewardsDistributor", deployment.distributor.address)

    @property
    def address(self) -> ChecksumAddress:
        """The signing account's address."""
        return self._signer().address

    # ------------------------------------------------------------------ staking

    def stake(self, role: Role, amount: int) -> int:
        """Stake ``amount`` wei in ``role`` (approving first if needed); returns the new stake."""
        self._ensure_allowance(self.staking, amount)
        receipt = self.send(self.staking.functions.stake(int(role), amount))
        return int(self._event(self.staking.events.Staked, receipt)["newStake"])

    def request_unstake(self, amount: int) -> LockInfo:
        """Move ``amount`` wei of active stake into a new lock."""
        receipt = self.send(self.staking.functions.requestUnstake(amount))
        args = self._event(self.staking.events.UnstakeRequested, receipt)
        return LockInfo(int(args["lockId"]), int(args["amount"]), int(args["unlockAt"]))

    def withdraw(self, lock_id: int) -> int:
        """Withdraw an unlocked lock; returns the wei paid (less if it was slashed)."""
        receipt = self.send(self.staking.functions.withdraw(lock_id))
        return int(self._event(self.staking.events.Withdrawn, receipt)["amount"])

    def slash(self, node: str, amount: int, reason: str | bytes) -> int:
        """Slash up to ``amount`` wei from ``node`` (slasher role); returns the wei taken."""
        call = self.staking.functions.slash(to_checksum_address(node), amount, to_bytes32(reason))
        receipt = self.send(call)
        return int(self._event(self.staking.events.Slashed, receipt)["amount"])

    def stake_status(self, node: str | None = None) -> StakeStatus:
        """The staking state of ``node`` (default: the signing account)."""
        who = to_checksum_address(node) if node else self.address
        block = self.w3.eth.get_block("latest")
        at = block["number"]
        fns = self.staking.functions
        role_value = fns.roleOf(who).call(block_identifier=at)
        role = Role(role_value) if role_value else None
        lock_ids = fns.locksOf(who).call(block_identifier=at)
        return StakeStatus(
            node=who,
            role=role,
            stake=fns.stakeOf(who).call(block_identifier=at),
            locked=fns.lockedOf(who).call(block_identifier=at),
            active=fns.isActive(who).call(block_identifier=at),
            locks=tuple(self._lock(who, lock_id, at) for lock_id in lock_ids),
            min_stake=fns.minStake(int(role)).call(block_identifier=at) if role else None,
            cooldown_s=fns.cooldown().call(block_identifier=at),
            balance=self.token.functions.balanceOf(who).call(block_identifier=at),
            block_number=at,
            block_timestamp=block["timestamp"],
        )

    # ------------------------------------------------------------------ token and pool

    def mint(self, to: str, amount: int) -> TxReceipt:
        """Mint ``amount`` wei of the token to ``to`` (minter role)."""
        return self.send(self.token.functions.mint(to_checksum_address(to), amount))

    def balance_of(self, account: str) -> int:
        """Token balance of ``account``, in wei."""
        return int(self.token.functions.balanceOf(to_checksum_address(account)).call())

    def fund(self, amount: int) -> int:
        """Add ``amount`` wei of emissions to the pool; returns the total funded."""
        self._ensure_allowance(self.distributor, amount)
        receipt = self.send(self.distributor.functions.fund(amount))
        return int(self._event(self.distributor.events.Funded, receipt)["newTotalFunded"])

    def deposit_fees(self, amount: int) -> int:
        """Prepay ``amount`` wei of request fees; returns this oracle's deposited total."""
        self._ensure_allowance(self.distributor, amount)
        receipt = self.send(self.distributor.functions.depositFees(amount))
        return int(self._event(self.distributor.events.FeesDeposited, receipt)["deposited"])

    # ------------------------------------------------------------------ rewards

    def sign_post_root(
        self,
        epoch: int,
        root: str | bytes,
        total_cumulative: int,
        statement_hash: str | bytes,
        nonce: int | None = None,
    ) -> SignedTx:
        """Sign (not send) ``postRoot``; store it, then hand it to :meth:`send_signed`."""
        call = self.distributor.functions.postRoot(
            epoch, to_bytes32(root), total_cumulative, to_bytes32(statement_hash)
        )
        return sign(self.w3, self._signer(), call, nonce)

    def send_signed(self, signed: SignedTx) -> TxReceipt:
        """Broadcast a signed transaction (again, if need be) and wait for its receipt."""
        return send_signed(self.w3, signed, self.receipt_timeout_s)

    def post_root(
        self, epoch: int, root: str | bytes, total_cumulative: int, statement_hash: str | bytes
    ) -> TxReceipt:
        """Post epoch ``epoch``'s root (poster role) and wait for it to be mined."""
        return self.send_signed(self.sign_post_root(epoch, root, total_cumulative, statement_hash))

    def claim(self, account: str, cumulative: int, proof: Sequence[str | bytes]) -> int:
        """Pay ``account`` up to ``cumulative`` (anyone may send it); returns the wei paid."""
        call = self.distributor.functions.claim(
            to_checksum_address(account), cumulative, [to_bytes32(p) for p in proof]
        )
        receipt = self.send(call)
        return int(self._event(self.distributor.events.Claimed, receipt)["amount"])

    def claimed(self, account: str) -> int:
        """What ``account`` has been paid so far, in wei."""
        return int(self.distributor.functions.claimed(to_checksum_address(account)).call())

    def current_epoch(self) -> int:
        """The last epoch whose root was posted (0 before the first)."""
        return int(self.distributor.functions.currentEpoch().call())

    def distributor_state(self) -> DistributorState:
        """The distributor's epoch, roots and totals at the latest block."""
        at = self.w3.eth.block_number
        fns = self.distributor.functions

        def read(fn: Any) -> Any:
            return fn().call(block_identifier=at)

        return DistributorState(
            current_epoch=read(fns.currentEpoch),
            root="0x" + read(fns.root).hex(),
            previous_root="0x" + read(fns.previousRoot).hex(),
            total_cumulative=read(fns.totalCumulative),
            total_funded=read(fns.totalFunded),
            total_fees_deposited=read(fns.totalFeesDeposited),
            total_claimed=read(fns.totalClaimed),
            balance=self.token.functions.balanceOf(self.distributor.address).call(
                block_identifier=at
            ),
            block_number=at,
        )

    # ------------------------------------------------------------------ helpers

    def _signer(self) -> LocalAccount:
        if self.account is None:
            raise ConfigurationError("this client has no account to sign with")
        return self.account

    def send(self, call: Transactable) -> TxReceipt:
        """Sign and send any bound contract call (admin setters, role grants) from the account."""
        return transact(self.w3, self._signer(), call, self.receipt_timeout_s)

    def _ensure_allowance(self, spender: Contract, amount: int) -> None:
        owner = self.address
        if self.token.functions.allowance(owner, spender.address).call() < amount:
            self.send(self.token.functions.approve(spender.address, amount))

    def _lock(self, node: str, lock_id: int, at: BlockIdentifier) -> LockInfo:
        unlock_at, amount = self.staking.functions.lockOf(node, lock_id).call(block_identifier=at)
        return LockInfo(lock_id, amount, unlock_at)

    @staticmethod
    def _event(event: ContractEvent, receipt: TxReceipt) -> Mapping[str, Any]:
        logs = event().process_receipt(receipt, errors=DISCARD)
        if not logs:
            raise ChainError(
                f"no {event.event_name} event in {receipt['transactionHash'].to_0x_hex()}"
            )
        args: Mapping[str, Any] = logs[0]["args"]
        return args
