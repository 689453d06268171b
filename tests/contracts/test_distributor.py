"""RewardsDistributor: funding, root posting rules and cumulative claims."""

from __future__ import annotations

from typing import Any

from eth_utils import keccak

from contracts.client import MasaClient
from settlement.merkle import StandardMerkleTree, rewards_tree
from tests.contracts.conftest import USER_TOKENS, Net
from tests.contracts.test_staking import reverts

ALICE, BOB, CAROL, ORACLE, OUTSIDER = 4, 5, 6, 7, 8
POSTER_ROLE = "0x" + keccak(text="POSTER_ROLE").hex()
STATEMENT = "0x" + "ab" * 32
ZERO_ROOT = "0x" + "00" * 32


def events(client: MasaClient, name: str) -> list[dict[str, Any]]:
    at = client.w3.eth.block_number
    logs = getattr(client.distributor.events, name)().get_logs(from_block=at, to_block=at)
    return [dict(log["args"]) for log in logs]


def post(net: Net, epoch: int, cumulative: dict[int, int]) -> StandardMerkleTree:
    """Post epoch ``epoch`` with ``cumulative[account index]``, funding what it lacks."""
    tree = rewards_tree({net.address(i): amount for i, amount in cumulative.items()})
    total = sum(cumulative.values())
    state = net.poster.distributor_state()
    missing = total - state.total_funded - state.total_fees_deposited
    if missing > 0:
        net.client(OUTSIDER).fund(missing)
    net.poster.post_root(epoch, tree.root, total, STATEMENT)
    return tree


def claim(net: Net, tree: StandardMerkleTree, index: int, amount: int, by: int = OUTSIDER) -> int:
    address = net.address(index)
    return net.client(by).claim(address, amount, tree.get_proof((address, amount)))


def test_fund_and_fee_deposits_carry_post_state_totals(net: Net) -> None:
    oracle, funder = net.client(ORACLE), net.client(OUTSIDER)
    assert funder.fund(1_000) == 1_000
    assert events(funder, "Funded") == [
        {"funder": funder.address, "amount": 1_000, "newTotalFunded": 1_000}
    ]
    assert oracle.deposit_fees(30) == 30
    assert oracle.deposit_fees(12) == 42
    assert events(oracle, "FeesDeposited") == [
        {"oracle": oracle.address, "amount": 12, "deposited": 42, "newTotalFeesDeposited": 42}
    ]
    funder.deposit_fees(8)
    state = funder.distributor_state()
    assert (state.total_funded, state.total_fees_deposited, state.balance) == (1_000, 50, 1_050)
    reverts(lambda: funder.fund(0), "RewardsDistributorZeroAmount")
    reverts(lambda: funder.deposit_fees(0), "RewardsDistributorZeroAmount")


def test_roots_are_posted_in_epoch_order_only(net: Net) -> None:
    poster = net.poster
    assert poster.current_epoch() == 0
    reverts(
        lambda: poster.post_root(2, ZERO_ROOT, 0, STATEMENT),
        "RewardsDistributorUnexpectedEpoch",
        epoch=2,
        expected=1,
    )
    reverts(
        lambda: poster.post_root(0, ZERO_ROOT, 0, STATEMENT),
        "RewardsDistributorUnexpectedEpoch",
        epoch=0,
        expected=1,
    )
    tree = post(net, 1, {ALICE: 10})
    assert events(poster, "RootPosted") == [
        {
            "epoch": 1,
            "root": bytes.fromhex(tree.root[2:]),
            "totalCumulative": 10,
            "statementHash": bytes.fromhex(STATEMENT[2:]),
        }
    ]
    reverts(
        lambda: poster.post_root(1, tree.root, 10, STATEMENT),
        "RewardsDistributorUnexpectedEpoch",
        epoch=1,
        expected=2,
    )
    state = poster.distributor_state()
    assert (state.current_epoch, state.root, state.previous_root, state.total_cumulative) == (
        1,
        tree.root,
        ZERO_ROOT,
        10,
    )


def test_root_total_must_be_funded(net: Net) -> None:
    net.client(OUTSIDER).fund(70)
    net.client(ORACLE).deposit_fees(30)
    reverts(
        lambda: net.poster.post_root(1, ZERO_ROOT, 101, STATEMENT),
        "RewardsDistributorUnderfunded",
        totalCumulative=101,
        available=100,
    )
    net.poster.post_root(1, ZERO_ROOT, 100, STATEMENT)


def test_root_total_never_decreases(net: Net) -> None:
    post(net, 1, {ALICE: 50, BOB: 50})
    reverts(
        lambda: net.poster.post_root(2, ZERO_ROOT, 99, STATEMENT),
        "RewardsDistributorDecreasingTotal",
        totalCumulative=99,
        current=100,
    )
    net.poster.post_root(2, ZERO_ROOT, 100, STATEMENT)


def test_only_posters_post(net: Net) -> None:
    outsider = net.client(OUTSIDER)
    reverts(
        lambda: outsider.post_root(1, ZERO_ROOT, 0, STATEMENT),
        "AccessControlUnauthorizedAccount",
        account=outsider.address,
        neededRole=POSTER_ROLE,
    )


def test_anyone_claims_for_anyone_and_the_account_is_paid(net: Net) -> None:
    tree = post(net, 1, {ALICE: 300, BOB: 200, CAROL: 0})
    claimer_before = net.client(OUTSIDER).balance_of(net.address(OUTSIDER))
    assert claim(net, tree, ALICE, 300, by=OUTSIDER) == 300
    alice = net.client(ALICE)
    assert events(alice, "Claimed") == [
        {"account": alice.address, "amount": 300, "cumulative": 300}
    ]
    assert alice.balance_of(alice.address) == USER_TOKENS + 300
    assert alice.balance_of(net.address(OUTSIDER)) == claimer_before
    assert alice.claimed(alice.address) == 300
    assert claim(net, tree, BOB, 200, by=BOB) == 200
    state = alice.distributor_state()
    assert (state.total_claimed, state.balance) == (500, 0)


def test_later_epochs_pay_the_difference(net: Net) -> None:
    first = post(net, 1, {ALICE: 100, BOB: 50})
    assert claim(net, first, ALICE, 100) == 100
    second = post(net, 2, {ALICE: 250, BOB: 50, CAROL: 40})
    assert claim(net, second, ALICE, 250) == 150
    assert claim(net, second, BOB, 50) == 50
    third = post(net, 3, {ALICE: 260, BOB: 50, CAROL: 40})
    assert claim(net, third, ALICE, 260) == 10
    assert net.poster.claimed(net.address(ALICE)) == 260


def test_proofs_against_the_previous_root_are_accepted(net: Net) -> None:
    first = post(net, 1, {ALICE: 100, BOB: 70})
    second = post(net, 2, {ALICE: 180, BOB: 70})
    assert claim(net, first, ALICE, 100) == 100
    assert claim(net, second, ALICE, 180) == 80
    post(net, 3, {ALICE: 180, BOB: 90})
    reverts(
        lambda: claim(net, first, BOB, 70),
        "RewardsDistributorInvalidProof",
        account=net.address(BOB),
        cumulative=70,
    )


def test_a_second_claim_of_the_same_leaf_reverts(net: Net) -> None:
    first = post(net, 1, {ALICE: 100})
    claim(net, first, ALICE, 100)
    nothing = {"account": net.address(ALICE), "cumulative": 100, "alreadyClaimed": 100}
    reverts(lambda: claim(net, first, ALICE, 100), "RewardsDistributorNothingToClaim", **nothing)
    second = post(net, 2, {ALICE: 150})
    claim(net, second, ALICE, 150)
    stale = {"account": net.address(ALICE), "cumulative": 100, "alreadyClaimed": 150}
    reverts(lambda: claim(net, first, ALICE, 100), "RewardsDistributorNothingToClaim", **stale)
    assert net.poster.claimed(net.address(ALICE)) == 150


def test_wrong_proofs_revert(net: Net) -> None:
    tree = post(net, 1, {ALICE: 100, BOB: 200})
    alice, bob = net.address(ALICE), net.address(BOB)
    outsider = net.client(OUTSIDER)
    proof = tree.get_proof((alice, 100))
    reverts(
        lambda: outsider.claim(alice, 101, proof),
        "RewardsDistributorInvalidProof",
        account=alice,
        cumulative=101,
    )
    reverts(
        lambda: outsider.claim(bob, 100, proof),
        "RewardsDistributorInvalidProof",
        account=bob,
        cumulative=100,
    )
    reverts(
        lambda: outsider.claim(alice, 100, []),
        "RewardsDistributorInvalidProof",
        account=alice,
        cumulative=100,
    )
    reverts(
        lambda: outsider.claim(bob, 200, proof),
        "RewardsDistributorInvalidProof",
        account=bob,
        cumulative=200,
    )


def test_an_epoch_without_leaves_posts_the_zero_root(net: Net) -> None:
    net.poster.post_root(1, ZERO_ROOT, 0, STATEMENT)
    tree = post(net, 2, {ALICE: 5})
    assert claim(net, tree, ALICE, 5) == 5


def test_total_paid_never_exceeds_the_current_total(net: Net) -> None:
    """A faulty statement that lowers one account's cumulative cannot drain other funds."""
    first = post(net, 1, {ALICE: 100})
    second = post(net, 2, {ALICE: 0, BOB: 100})  # wrong: Alice's cumulative went down
    net.client(OUTSIDER).fund(1_000)
    assert claim(net, first, ALICE, 100) == 100
    reverts(
        lambda: claim(net, second, BOB, 100),
        "RewardsDistributorExceedsTotal",
        totalClaimed=200,
        totalCumulative=100,
    )
