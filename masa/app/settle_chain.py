"""The settler's chain adapter: a thin layer over :class:`~contracts.client.MasaClient` that
the posting machine and the settler see through their ports (``settlement.posting``,
``settlement.settler``). Built by ``masa.app.wiring.settler_chain``."""

from __future__ import annotations

from typing import Any, cast

from eth_typing import HexStr
from web3.exceptions import TransactionNotFound, Web3Exception
from web3.types import Nonce, TxParams

from contracts._tx import estimate_gas
from contracts.client import MasaClient, to_bytes32
from contracts.reverts import ContractReverted
from masa.errors import RetryableError
from settlement.posting import ChainView, PostedRoot, PostingRecord, SignedPost


def _hex(value: Any) -> str:
    return value if isinstance(value, str) else "0x" + bytes(value).hex()


class SettlementChain:
    """Reads and writes of one deployment's RewardsDistributor for the settler's account."""

    def __init__(self, client: MasaClient) -> None:
        self.client = client
        self.w3 = client.w3
        self.chain_id = client.deployment.chain_id
        self.distributor = client.distributor.address.lower()
        self.start_block = client.deployment.start_block

    # -- reads ---------------------------------------------------------------------------

    def view(self, record: PostingRecord) -> ChainView:
        try:
            head = self.w3.eth.block_number
            nonce = self.w3.eth.get_transaction_count(self.client.address, head)
            epoch = self.client.distributor.functions.currentEpoch().call(block_identifier=head)
            posted = self.posted_root(record.chain_epoch, head)
            known = any(self._known(h) for h in record.tx_hashes)
        except (Web3Exception, OSError) as exc:
            raise RetryableError(f"cannot read the chain: {exc}") from exc
        return ChainView(int(epoch), head, posted, int(nonce), known)

    def posted_root(self, chain_epoch: int, head: int | str = "latest") -> PostedRoot | None:
        """The canonical chain's ``RootPosted`` for ``chain_epoch`` (at most one exists)."""
        logs = self.client.distributor.events.RootPosted.get_logs(
            from_block=self.start_block, to_block=head, argument_filters={"epoch": chain_epoch}
        )
        if not logs:
            return None
        entry = logs[-1]
        args = entry["args"]
        return PostedRoot(
            chain_epoch=int(args["epoch"]),
            root=_hex(args["root"]),
            statement_hash=_hex(args["statementHash"]),
            total_cumulative=int(args["totalCumulative"]),
            block_number=int(entry["blockNumber"]),
            tx_hash=_hex(entry["transactionHash"]),
        )

    def _known(self, tx_hash: str) -> bool:
        try:
            self.w3.eth.get_transaction(HexStr(tx_hash))
        except TransactionNotFound:
            return False
        return True

    def block_timestamp(self, block: int) -> int:
        return int(self.w3.eth.get_block(block)["timestamp"])

    def funded_totals(self, block: int) -> tuple[int, int]:
        fns = self.client.distributor.functions
        return (
            int(fns.totalFunded().call(block_identifier=block)),
            int(fns.totalFeesDeposited().call(block_identifier=block)),
        )

    def current_epoch(self) -> int:
        return self.client.current_epoch()

    # -- writes --------------------------------------------------------------------------

    def sign_post(
        self,
        record: PostingRecord,
        nonce: int | None,
        max_fee_per_gas: int | None,
        max_priority_fee_per_gas: int | None,
    ) -> SignedPost:
        account = self.client.account
        assert account is not None
        call = self.client.distributor.functions.postRoot(
            record.chain_epoch,
            to_bytes32(record.root),
            record.total_cumulative,
            to_bytes32(record.statement_hash),
        )
        if nonce is None:
            nonce = self.w3.eth.get_transaction_count(account.address, "pending")
        if max_priority_fee_per_gas is None or max_fee_per_gas is None:
            priority = int(self.w3.eth.max_priority_fee)
            base = int(self.w3.eth.get_block("latest").get("baseFeePerGas", 0))
            max_priority_fee_per_gas = priority
            max_fee_per_gas = 2 * base + priority
        try:
            gas = estimate_gas(call, account.address)
        except ContractReverted as exc:
            if self.posted_root(record.chain_epoch) is not None:
                # the chain moved on (a transaction of ours was mined meanwhile): look again
                moved = f"postRoot of chain epoch {record.chain_epoch}: {exc}"
                raise RetryableError(moved) from exc
            raise
        params: TxParams = {
            "from": account.address,
            "nonce": Nonce(nonce),
            "gas": gas,
            "maxFeePerGas": max_fee_per_gas,  # type: ignore[typeddict-item]
            "maxPriorityFeePerGas": max_priority_fee_per_gas,  # type: ignore[typeddict-item]
            "chainId": self.chain_id,
        }
        signed = account.sign_transaction(cast(dict[str, Any], call.build_transaction(params)))
        return SignedPost(
            nonce,
            signed.raw_transaction.to_0x_hex(),
            signed.hash.to_0x_hex(),
            max_fee_per_gas,
            max_priority_fee_per_gas,
        )

    def broadcast(self, raw_tx: str, tx_hash: str) -> None:
        try:
            self.w3.eth.send_raw_transaction(HexStr(raw_tx))
        except (Web3Exception, ValueError, OSError) as exc:
            if not self._known(tx_hash):
                raise RetryableError(f"broadcast of {tx_hash} failed: {exc}") from exc
