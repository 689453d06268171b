"""One interface over the two test chains: anvil over JSON-RPC and the in-process EVM.

Both understand ``evm_snapshot`` / ``evm_revert``; the clock moves with ``evm_increaseTime``
on anvil and eth-tester's ``testing_timeTravel`` in process. Each chain comes with pre-funded
local accounts (private keys known), so tests sign exactly as operators do.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from eth_account import Account
from eth_account.signers.local import LocalAccount
from web3 import EthereumTesterProvider, Web3

from tests.support.anvil import AnvilNode


@dataclass
class EvmChain:
    """A chain to test against; ``name`` is ``anvil`` or ``inprocess``."""

    name: str
    w3: Web3
    accounts: list[LocalAccount]

    @classmethod
    def anvil(cls, node: AnvilNode) -> EvmChain:
        return cls("anvil", Web3(Web3.HTTPProvider(node.rpc_url)), node.accounts)

    @classmethod
    def inprocess(cls) -> EvmChain:
        provider = EthereumTesterProvider()
        keys = provider.ethereum_tester.backend.account_keys  # type: ignore[union-attr]
        return cls("inprocess", Web3(provider), [Account.from_key(k.to_bytes()) for k in keys])

    def _rpc(self, method: str, *params: Any) -> Any:
        response = self.w3.provider.make_request(method, list(params))  # type: ignore[arg-type]
        if "error" in response:
            raise RuntimeError(f"{self.name} {method}: {response['error']}")
        return response["result"]

    def snapshot(self) -> Any:
        """An id to :meth:`revert` to; anvil forgets it once used."""
        return self._rpc("evm_snapshot")

    def revert(self, snapshot: Any) -> None:
        self._rpc("evm_revert", snapshot)

    def timestamp(self) -> int:
        """The latest block's timestamp."""
        return int(self.w3.eth.get_block("latest")["timestamp"])

    def travel(self, seconds: int) -> None:
        """Mine a block at least ``seconds`` after the latest one."""
        if self.name == "anvil":
            self._rpc("evm_increaseTime", seconds)
            self._rpc("evm_mine")
        else:
            # eth-tester mines the time-travel block one second before the target it is given
            self._rpc("testing_timeTravel", self.timestamp() + seconds + 1)
