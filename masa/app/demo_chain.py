"""``masa demo``'s chain: an in-process EVM (eth-tester on py-evm) whose clock does not run
ahead of the wall clock, and the network's set-up on it.

eth-tester mines one block per transaction and stamps it ``max(now, parent + 1)``: the forty-odd
transactions of the set-up, sent in a second or two, push the chain's clock half a minute into
the future. Stakes count from their block's time (DESIGN §7, decision 53), so every heartbeat
of that half minute came before its worker's stake and earned nothing: ``masa demo`` showed
``covered_s = 0`` in ``node_uptime``. Here the chain's history starts ``history_s`` in the past
with blocks one second apart, like a chain with one-second blocks that has been running for a
while; :meth:`DemoChain.go_live` then stamps blocks as eth-tester does, never before now (an
empty block when it is mined, not when the block before it was).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from eth_account import Account
from eth_account.signers.local import LocalAccount
from eth_tester import PyEVMBackend
from eth_tester.backends.pyevm.main import get_default_genesis_params
from web3 import EthereumTesterProvider, Web3
from web3.types import Wei

from contracts.client import MasaClient, Role
from contracts.deploy import WEI_PER_TOKEN, Deployment, DeployParams, deploy_all

STAKE = 1_000 * WEI_PER_TOKEN
FEES = 1_000 * WEI_PER_TOKEN
"""Each oracle's prepaid fees: enough for the synthetic requests of a few epochs."""
EMISSION = 1_000 * WEI_PER_TOKEN
"""Emitted per epoch (ParametersSet); ten epochs' worth are funded."""
GAS_MONEY = Wei(10**18)


class BackdatedBackend(PyEVMBackend):  # type: ignore[misc]
    """py-evm whose blocks are one second apart from a genesis at ``start`` (unix seconds),
    until :meth:`go_live`; then stamped ``max(now, parent + 1)``."""

    def __init__(self, start: int) -> None:
        self.live = False
        self._receipts: dict[bytes, Any] = {}
        super().__init__(genesis_parameters=get_default_genesis_params({"timestamp": start}))
        self._backdate()

    def get_transaction_receipt(self, transaction_hash: bytes) -> Any:
        """eth-tester finds a transaction by walking back through every block, so reading logs
        costs blocks times transactions; a mined receipt never changes here (no reorgs): kept."""
        receipt = self._receipts.get(transaction_hash)
        if receipt is None:
            receipt = super().get_transaction_receipt(transaction_hash)
            if receipt["block_number"] is not None:
                self._receipts[transaction_hash] = receipt
        return receipt

    def mine_blocks(self, num_blocks: int = 1, coinbase: Any = None) -> tuple[bytes, ...]:
        hashes: list[bytes] = []
        for _ in range(num_blocks):
            if self.live and not self.chain.get_block().transactions:
                self._stamp_now()  # eth-tester stamped it when the block before was mined
            mined = super().mine_blocks(1) if coinbase is None else super().mine_blocks(1, coinbase)
            hashes += mined
            self._backdate()
        return tuple(hashes)

    def go_live(self) -> None:
        self.live = True
        self._stamp_now()

    def _stamp_now(self) -> None:
        self._stamp(max(int(time.time()), self._parent_time() + 1))

    def _backdate(self) -> None:
        if not self.live:
            self._stamp(self._parent_time() + 1)

    def _parent_time(self) -> int:
        return int(self.chain.get_canonical_head().timestamp)

    def _stamp(self, timestamp: int) -> None:
        """The pending block's timestamp (what eth-tester's ``time_travel`` sets)."""
        self.chain.header = self.chain.header.copy(timestamp=timestamp)


@dataclass
class DemoChain:
    """The EVM; py-evm is not thread-safe: one thread at a time reads or writes it."""

    w3: Web3
    backend: BackdatedBackend

    @classmethod
    def open(cls, history_s: int = 120) -> DemoChain:
        backend = BackdatedBackend(int(time.time()) - history_s)
        return cls(Web3(EthereumTesterProvider(backend)), backend)

    def admin(self) -> LocalAccount:
        """eth-tester's first funded account: deploys, mints, funds the emissions."""
        account: LocalAccount = Account.from_key(self.backend.account_keys[0].to_bytes())
        return account

    def mine(self, blocks: int = 1) -> None:
        provider: Any = self.w3.provider
        provider.ethereum_tester.mine_blocks(blocks)

    def go_live(self) -> None:
        self.backend.go_live()

    def head_time(self) -> int:
        return int(self.w3.eth.get_block("latest")["timestamp"])


def set_up(
    chain: DemoChain,
    workers: list[LocalAccount],
    oracles: list[LocalAccount],
    settler: LocalAccount,
    *,
    finality_depth: int,
    epochs_funded: int = 10,
) -> Deployment:
    """Deploy (the settler may post roots), stake ``workers`` and ``oracles``, prepay the
    oracles' fees, fund the emissions, then mine until all of it is final."""
    w3, admin = chain.w3, chain.admin()
    params = DeployParams(
        cooldown_s=3600,
        min_worker_stake=STAKE // 10,
        min_oracle_stake=STAKE // 10,
        poster=settler.address,
    )
    deployment = deploy_all(w3, admin, params)
    minter = MasaClient(w3, deployment, admin)
    nodes = [*((w, Role.WORKER) for w in workers), *((o, Role.ORACLE) for o in oracles)]
    for account, role in nodes:
        w3.eth.send_transaction({"from": admin.address, "to": account.address, "value": GAS_MONEY})
        minter.mint(account.address, STAKE + (FEES if role is Role.ORACLE else 0))
        node = MasaClient(w3, deployment, account)
        node.stake(role, STAKE)
        if role is Role.ORACLE:
            node.deposit_fees(FEES)
    w3.eth.send_transaction({"from": admin.address, "to": settler.address, "value": GAS_MONEY})
    minter.mint(admin.address, epochs_funded * EMISSION)
    minter.fund(epochs_funded * EMISSION)
    chain.mine(finality_depth + 1)
    return deployment
