"""Deploys MasaToken, NodeStaking and RewardsDistributor and records where they live.

``deploy_all`` sends every transaction from one local account, which becomes the admin of all
three contracts, then grants the minter, slasher and poster roles. The resulting
:class:`Deployment` (chain id, addresses, deploy blocks) is saved as JSON for the CLI, the
indexer (which starts following logs at ``start_block``) and the settlement job.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from eth_account.signers.local import LocalAccount
from eth_typing import ChecksumAddress
from eth_utils import keccak, to_checksum_address
from web3 import Web3
from web3.contract import Contract
from web3.types import TxReceipt

from contracts import load_artifact
from contracts._tx import Transactable, transact
from masa.errors import ChainError, ConfigurationError

DEPLOYMENT_FORMAT = 1
WEI_PER_TOKEN = 10**18


@dataclass(frozen=True)
class DeployParams:
    """Parameters of a deployment; an address left ``None`` means the deployer."""

    cooldown_s: int = 7 * 24 * 3600
    min_worker_stake: int = 1_000 * WEI_PER_TOKEN
    min_oracle_stake: int = 1_000 * WEI_PER_TOKEN
    treasury: str | None = None
    minter: str | None = None
    slasher: str | None = None
    poster: str | None = None


@dataclass(frozen=True)
class DeployedContract:
    address: ChecksumAddress
    block_number: int
    tx_hash: str


@dataclass(frozen=True)
class Deployment:
    """Where the three contracts live on chain ``chain_id``."""

    chain_id: int
    token: DeployedContract
    staking: DeployedContract
    distributor: DeployedContract

    @property
    def start_block(self) -> int:
        """The first block that can hold a log of these contracts."""
        return min(c.block_number for c in (self.token, self.staking, self.distributor))

    def contracts(self) -> dict[str, DeployedContract]:
        """The deployed contracts by artifact name."""
        return {
            "MasaToken": self.token,
            "NodeStaking": self.staking,
            "RewardsDistributor": self.distributor,
        }

    def verify(self, w3: Web3) -> None:
        """Raise :class:`ChainError` unless ``w3`` is on this chain and every contract has code."""
        if w3.eth.chain_id != self.chain_id:
            raise ChainError(
                f"deployment is for chain {self.chain_id}, node is on {w3.eth.chain_id}"
            )
        for name, deployed in self.contracts().items():
            if not w3.eth.get_code(deployed.address):
                raise ChainError(f"no {name} code at {deployed.address}; was the chain reset?")

    def save(self, path: Path) -> None:
        """Write the deployment as JSON, atomically."""
        data: dict[str, object] = {"format": DEPLOYMENT_FORMAT, "chain_id": self.chain_id}
        data["contracts"] = {name: asdict(c) for name, c in self.contracts().items()}
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n", encoding="utf-8")
        os.replace(tmp, path)

    @classmethod
    def load(cls, path: Path) -> Deployment:
        """Read a deployment written by :meth:`save`."""
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError as exc:
            raise ChainError(f"no deployment at {path}; run `masa contracts deploy`") from exc
        except (OSError, ValueError) as exc:
            raise ConfigurationError(f"cannot read deployment {path}: {exc}") from exc
        try:
            return cls._from_json(data)
        except (KeyError, TypeError, ValueError) as exc:
            raise ConfigurationError(f"malformed deployment {path}: {exc!r}") from exc

    @classmethod
    def _from_json(cls, data: dict[str, Any]) -> Deployment:
        if data["format"] != DEPLOYMENT_FORMAT:
            raise ValueError(f"format {data['format']}, expected {DEPLOYMENT_FORMAT}")
        found = {name: _deployed_from_json(c) for name, c in data["contracts"].items()}
        return cls(
            chain_id=int(data["chain_id"]),
            token=found["MasaToken"],
            staking=found["NodeStaking"],
            distributor=found["RewardsDistributor"],
        )


def _deployed_from_json(data: dict[str, Any]) -> DeployedContract:
    return DeployedContract(
        address=to_checksum_address(data["address"]),
        block_number=int(data["block_number"]),
        tx_hash=str(data["tx_hash"]),
    )


def contract_at(w3: Web3, name: str, address: str) -> Contract:
    """A web3 contract object for artifact ``name`` at ``address``."""
    return w3.eth.contract(address=to_checksum_address(address), abi=load_artifact(name).abi)


def _deploy(w3: Web3, account: LocalAccount, name: str, *args: Any) -> DeployedContract:
    artifact = load_artifact(name)
    factory = w3.eth.contract(abi=artifact.abi, bytecode=artifact.bytecode)
    receipt = transact(w3, account, factory.constructor(*args))
    address = receipt["contractAddress"]
    if address is None:
        raise ChainError(f"{name} deployment receipt has no contract address")
    return DeployedContract(address, receipt["blockNumber"], receipt["transactionHash"].to_0x_hex())


def _grant(w3: Web3, account: LocalAccount, contract: Contract, role: str, to: str) -> TxReceipt:
    call: Transactable = contract.functions.grantRole(keccak(text=role), to_checksum_address(to))
    return transact(w3, account, call)


def deploy_all(w3: Web3, deployer: LocalAccount, params: DeployParams) -> Deployment:
    """Deploy the three contracts from ``deployer`` (their admin) and grant the roles."""
    me = deployer.address
    token = _deploy(w3, deployer, "MasaToken", me)
    staking = _deploy(
        w3,
        deployer,
        "NodeStaking",
        token.address,
        me,
        to_checksum_address(params.treasury or me),
        params.cooldown_s,
        params.min_worker_stake,
        params.min_oracle_stake,
    )
    distributor = _deploy(w3, deployer, "RewardsDistributor", token.address, me)
    grants = [
        ("MasaToken", token, "MINTER_ROLE", params.minter),
        ("NodeStaking", staking, "SLASHER_ROLE", params.slasher),
        ("RewardsDistributor", distributor, "POSTER_ROLE", params.poster),
    ]
    for name, deployed, role, holder in grants:
        _grant(w3, deployer, contract_at(w3, name, deployed.address), role, holder or me)
    return Deployment(w3.eth.chain_id, token, staking, distributor)
