"""An anvil node (npm ``@foundry-rs/anvil``) for tests and benchmarks.

    with AnvilNode(chain_id=31337) as node:
        w3 = Web3(Web3.HTTPProvider(node.rpc_url))
        alice = node.accounts[0]          # eth-account LocalAccount, pre-funded

The binary is started directly (never through npx), bound to 127.0.0.1 on a free port, and
stopped through its own PID: SIGTERM, then SIGKILL. ``MASA_ANVIL_BIN`` overrides the binary.
Accounts come from anvil's default mnemonic unless another is given, derived with the same
path anvil uses (``m/44'/60'/0'/0/i``).
"""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.request
from functools import cached_property
from pathlib import Path

from eth_account import Account
from eth_account.signers.local import LocalAccount

from tests.support.services import (
    LOOPBACK,
    REPO_ROOT,
    ServiceFailed,
    ServiceUnavailable,
    _port_taken,
    _Server,
    free_port,
)

ANVIL_BIN = REPO_ROOT / "node_modules" / "@foundry-rs" / "anvil-linux-amd64" / "bin" / "anvil"
DEFAULT_MNEMONIC = "test test test test test test test test test test test junk"
_PORT_ATTEMPTS = 3


def find_anvil() -> Path:
    """The anvil binary: ``MASA_ANVIL_BIN`` or the one npm put in node_modules."""
    path = Path(os.environ.get("MASA_ANVIL_BIN", ANVIL_BIN))
    if not os.access(path, os.X_OK):
        raise ServiceUnavailable(f"anvil not found at {path}; run npm ci or set MASA_ANVIL_BIN")
    return path


class AnvilNode(_Server):
    """One anvil process.

    ``block_time_s`` mines a block every so many seconds instead of one per transaction;
    ``auto_mine=False`` mines only on ``evm_mine`` / ``anvil_mine``.
    """

    kind = "anvil"
    stop_timeout = 10.0
    start_timeout = 30.0

    def __init__(
        self,
        *,
        chain_id: int = 31337,
        accounts: int = 10,
        balance_eth: int = 10_000,
        mnemonic: str = DEFAULT_MNEMONIC,
        block_time_s: float | None = None,
        auto_mine: bool = True,
        keep: bool = False,
    ) -> None:
        super().__init__(keep=keep)
        self.chain_id = chain_id
        self.account_count = accounts
        self.balance_eth = balance_eth
        self.mnemonic = mnemonic
        self.block_time_s = block_time_s
        self.auto_mine = auto_mine
        self.port: int | None = None

    @property
    def rpc_url(self) -> str:
        if self.port is None:
            raise RuntimeError("anvil is not started")
        return f"http://{LOOPBACK}:{self.port}"

    @cached_property
    def accounts(self) -> list[LocalAccount]:
        """The pre-funded accounts, with their private keys."""
        Account.enable_unaudited_hdwallet_features()
        return [
            Account.from_mnemonic(self.mnemonic, account_path=f"m/44'/60'/0'/0/{i}")
            for i in range(self.account_count)
        ]

    def start(self) -> None:
        binary = find_anvil()
        self._make_dir()
        for attempt in range(_PORT_ATTEMPTS):
            self.port = free_port()
            self._spawn(self._argv(binary))
            try:
                self._wait_until(self._answers, self.start_timeout)
                return
            except ServiceFailed:
                self._terminate(self.stop_signal)
                if attempt + 1 == _PORT_ATTEMPTS or not _port_taken(self.log_tail()):
                    raise

    def rpc(self, method: str, *params: object) -> object:
        """One JSON-RPC call; raises ``ServiceFailed`` on an error response."""
        body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": method, "params": list(params)})
        request = urllib.request.Request(
            self.rpc_url, body.encode(), {"Content-Type": "application/json"}
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            reply = json.loads(response.read())
        if "error" in reply:
            raise ServiceFailed(f"anvil {method}: {reply['error']}")
        return reply["result"]

    def _argv(self, binary: Path) -> list[str]:
        argv = [str(binary), "--host", LOOPBACK, "--port", str(self.port)]
        argv += ["--chain-id", str(self.chain_id), "--accounts", str(self.account_count)]
        argv += ["--balance", str(self.balance_eth), "--mnemonic", self.mnemonic]
        if self.block_time_s is not None:
            argv += ["--block-time", f"{self.block_time_s:g}"]
        if not self.auto_mine:
            argv.append("--no-mining")
        return argv

    def _answers(self) -> bool:
        try:
            return self.rpc("eth_chainId") == hex(self.chain_id)
        except (OSError, urllib.error.URLError, ServiceFailed, ValueError):
            return False
