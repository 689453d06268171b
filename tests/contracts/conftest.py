"""Fixtures for the contract tests: every test runs on anvil and on the in-process EVM.

One chain and one deployment per backend for the session; each test runs between an
``evm_snapshot`` and an ``evm_revert``, so tests see a fresh deployment without redeploying.
Without the anvil binary the anvil half skips, unless ``MASA_REQUIRE_SERVICES=1``.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest
from eth_account.signers.local import LocalAccount
from eth_typing import ChecksumAddress

from contracts.client import MasaClient
from contracts.deploy import Deployment, DeployParams, deploy_all
from tests.support.anvil import AnvilNode
from tests.support.chains import EvmChain
from tests.support.fixtures import start_anvil

COOLDOWN_S = 24 * 3600
MIN_WORKER = 100
MIN_ORACLE = 200
USER_TOKENS = 1_000_000

# accounts[i] by duty; users get USER_TOKENS each at deployment
ADMIN, SLASHER, POSTER, TREASURY = 0, 1, 2, 3
USERS = range(4, 10)


@pytest.fixture
def manual_anvil() -> Iterator[AnvilNode]:
    """An anvil of this test's own that mines only on ``evm_mine``."""
    node = start_anvil(auto_mine=False)
    try:
        yield node
    finally:
        node.stop()


@dataclass(frozen=True)
class Deployed:
    chain: EvmChain
    deployment: Deployment


@pytest.fixture(
    scope="session", params=[pytest.param("anvil", marks=pytest.mark.anvil), "inprocess"]
)
def deployed(request: pytest.FixtureRequest) -> Deployed:
    if request.param == "anvil":
        chain = EvmChain.anvil(request.getfixturevalue("anvil_node"))
    else:
        chain = EvmChain.inprocess()
    accounts = chain.accounts
    params = DeployParams(
        cooldown_s=COOLDOWN_S,
        min_worker_stake=MIN_WORKER,
        min_oracle_stake=MIN_ORACLE,
        treasury=accounts[TREASURY].address,
        slasher=accounts[SLASHER].address,
        poster=accounts[POSTER].address,
    )
    deployment = deploy_all(chain.w3, accounts[ADMIN], params)
    admin = MasaClient(chain.w3, deployment, accounts[ADMIN])
    for i in USERS:
        admin.mint(accounts[i].address, USER_TOKENS)
    return Deployed(chain, deployment)


@pytest.fixture
def chain(deployed: Deployed) -> Iterator[EvmChain]:
    """The backend's chain, reverted to the fresh deployment after the test."""
    snapshot = deployed.chain.snapshot()
    try:
        yield deployed.chain
    finally:
        deployed.chain.revert(snapshot)


@dataclass
class Net:
    """The deployment seen through clients of the accounts that hold each duty."""

    chain: EvmChain
    deployment: Deployment
    _clients: dict[int, MasaClient] = field(default_factory=dict)

    def client(self, index: int) -> MasaClient:
        if index not in self._clients:
            account = self.account(index)
            self._clients[index] = MasaClient(self.chain.w3, self.deployment, account)
        return self._clients[index]

    def account(self, index: int) -> LocalAccount:
        return self.chain.accounts[index]

    def address(self, index: int) -> ChecksumAddress:
        return self.chain.accounts[index].address

    @property
    def admin(self) -> MasaClient:
        return self.client(ADMIN)

    @property
    def slasher(self) -> MasaClient:
        return self.client(SLASHER)

    @property
    def poster(self) -> MasaClient:
        return self.client(POSTER)

    @property
    def treasury(self) -> ChecksumAddress:
        return self.address(TREASURY)


@pytest.fixture
def net(chain: EvmChain, deployed: Deployed) -> Net:
    return Net(chain, deployed.deployment)
