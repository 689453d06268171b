"""MasaToken, the deployment record and the transaction path shared by every write."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest
from eth_account import Account
from eth_utils import keccak, to_checksum_address

from contracts.client import MasaClient
from contracts.deploy import Deployment, DeployParams, deploy_all
from contracts.reverts import ContractReverted
from masa.errors import ChainError, ConfigurationError
from tests.contracts.conftest import ADMIN, POSTER, SLASHER, USER_TOKENS, Net
from tests.contracts.test_staking import reverts
from tests.support.anvil import AnvilNode
from tests.support.chains import EvmChain

ALICE, BOB = 4, 5


def role(name: str) -> bytes:
    return keccak(text=name)


def test_roles_are_granted_as_deployed(net: Net) -> None:
    admin = net.admin
    assert admin.token.functions.hasRole(role("MINTER_ROLE"), net.address(ADMIN)).call()
    assert admin.staking.functions.hasRole(role("SLASHER_ROLE"), net.address(SLASHER)).call()
    assert admin.distributor.functions.hasRole(role("POSTER_ROLE"), net.address(POSTER)).call()
    assert not admin.distributor.functions.hasRole(role("POSTER_ROLE"), net.address(ADMIN)).call()
    staking = admin.staking.functions
    assert (staking.cooldown().call(), staking.treasury().call()) == (24 * 3600, net.treasury)


def test_only_minters_mint(net: Net) -> None:
    alice = net.client(ALICE)
    reverts(
        lambda: alice.mint(alice.address, 1),
        "AccessControlUnauthorizedAccount",
        account=alice.address,
        neededRole="0x" + role("MINTER_ROLE").hex(),
    )
    net.admin.mint(alice.address, 5)
    assert alice.balance_of(alice.address) == USER_TOKENS + 5


def test_permit_lets_a_spender_move_tokens_without_an_approve_transaction(net: Net) -> None:
    owner, spender = net.account(ALICE), net.client(BOB)
    token = spender.token
    deadline = net.chain.timestamp() + 3600
    signed = Account.sign_typed_data(
        owner.key,
        {
            "name": "Masa",
            "version": "1",
            "chainId": net.deployment.chain_id,
            "verifyingContract": token.address,
        },
        {
            "Permit": [
                {"name": n, "type": t}
                for n, t in [
                    ("owner", "address"),
                    ("spender", "address"),
                    ("value", "uint256"),
                    ("nonce", "uint256"),
                    ("deadline", "uint256"),
                ]
            ]
        },
        {
            "owner": owner.address,
            "spender": spender.address,
            "value": 40,
            "nonce": 0,
            "deadline": deadline,
        },
    )
    spender.send(
        token.functions.permit(
            owner.address,
            spender.address,
            40,
            deadline,
            signed.v,
            signed.r.to_bytes(32, "big"),
            signed.s.to_bytes(32, "big"),
        )
    )
    spender.send(token.functions.transferFrom(owner.address, spender.address, 40))
    assert spender.balance_of(spender.address) == USER_TOKENS + 40


def test_deployment_round_trips_through_json(net: Net, tmp_path: Path) -> None:
    path = tmp_path / "nested" / "deployment.json"
    net.deployment.save(path)
    assert Deployment.load(path) == net.deployment
    data = json.loads(path.read_text())
    assert set(data["contracts"]) == {"MasaToken", "NodeStaking", "RewardsDistributor"}
    assert net.deployment.start_block == net.deployment.token.block_number > 0


def test_loading_a_missing_or_malformed_deployment_fails_clearly(tmp_path: Path) -> None:
    with pytest.raises(ChainError, match="masa contracts deploy"):
        Deployment.load(tmp_path / "absent.json")
    (tmp_path / "bad.json").write_text('{"format": 1, "chain_id": 1, "contracts": {}}')
    with pytest.raises(ConfigurationError, match="malformed"):
        Deployment.load(tmp_path / "bad.json")


def test_a_client_refuses_a_deployment_it_cannot_find(net: Net) -> None:
    elsewhere = replace(net.deployment, chain_id=net.deployment.chain_id + 1)
    with pytest.raises(ChainError, match="deployment is for chain"):
        MasaClient(net.chain.w3, elsewhere)
    no_code = replace(net.deployment.staking, address=to_checksum_address("0x" + "5a" * 20))
    with pytest.raises(ChainError, match="no NodeStaking code"):
        MasaClient(net.chain.w3, replace(net.deployment, staking=no_code))


def test_a_signed_transaction_can_be_broadcast_again(net: Net) -> None:
    net.client(ALICE).fund(10)
    signed = net.poster.sign_post_root(1, "0x" + "11" * 32, 10, "0x" + "22" * 32)
    assert net.poster.current_epoch() == 0  # signing sends nothing
    first = net.poster.send_signed(signed)
    again = net.poster.send_signed(signed)
    assert first["transactionHash"] == again["transactionHash"]
    assert net.poster.current_epoch() == 1


@pytest.mark.anvil
def test_a_mined_revert_is_decoded_with_its_transaction(manual_anvil: AnvilNode) -> None:
    """Two posts of epoch 1 in one block: the second one mines and reverts."""
    chain = EvmChain.anvil(manual_anvil)
    manual_anvil.rpc("evm_setAutomine", True)
    deployment = deploy_all(chain.w3, chain.accounts[0], DeployParams())
    manual_anvil.rpc("evm_setAutomine", False)
    poster = MasaClient(chain.w3, deployment, chain.accounts[0])
    first = poster.sign_post_root(1, "0x" + "11" * 32, 0, "0x" + "22" * 32)
    second = poster.sign_post_root(1, "0x" + "33" * 32, 0, "0x" + "22" * 32, nonce=first.nonce + 1)
    for signed in (first, second):
        chain.w3.eth.send_raw_transaction(signed.raw)
    manual_anvil.rpc("evm_mine")
    poster.send_signed(first)
    with pytest.raises(ContractReverted) as info:
        poster.send_signed(second)
    assert (info.value.error, info.value.params, info.value.tx_hash) == (
        "RewardsDistributorUnexpectedEpoch",
        {"epoch": 1, "expected": 2},
        second.tx_hash,
    )
