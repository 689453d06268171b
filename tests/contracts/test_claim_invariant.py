"""Invariant 5 on chain: no address is paid twice or more than its cumulative entitlement.

Hypothesis draws epochs of non-decreasing entitlements and claims in any order against the
current or the previous root, by anyone, including inflated amounts; a plain-Python model
predicts every payment and every revert.
"""

from __future__ import annotations

from dataclasses import dataclass

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from contracts.reverts import ContractReverted
from settlement.merkle import StandardMerkleTree, rewards_tree
from tests.contracts.conftest import Net

ACCOUNTS = (4, 5, 6)
CLAIMER = 7


@dataclass(frozen=True)
class Claim:
    account: int
    previous_root: bool
    inflate: int


epoch_increments = st.lists(st.integers(0, 1_000), min_size=len(ACCOUNTS), max_size=len(ACCOUNTS))
claims = st.lists(
    st.builds(Claim, st.sampled_from(ACCOUNTS), st.booleans(), st.sampled_from([0, 0, 0, 1])),
    max_size=4,
)
scenarios = st.lists(st.tuples(epoch_increments, claims), min_size=1, max_size=3)


class Model:
    def __init__(self) -> None:
        self.cumulative = dict.fromkeys(ACCOUNTS, 0)
        self.claimed = dict.fromkeys(ACCOUNTS, 0)
        self.trees: list[tuple[StandardMerkleTree, dict[int, int]]] = []

    def post(self, net: Net, increments: list[int]) -> None:
        for account, extra in zip(ACCOUNTS, increments, strict=True):
            self.cumulative[account] += extra
        snapshot = dict(self.cumulative)
        tree = rewards_tree({net.address(a): amount for a, amount in snapshot.items()})
        total = sum(snapshot.values())
        funded = net.poster.distributor_state().total_funded
        if total > funded:
            net.client(CLAIMER).fund(total - funded)
        net.poster.post_root(len(self.trees) + 1, tree.root, total, "0x" + "00" * 32)
        self.trees.append((tree, snapshot))

    def leaf(self, claim: Claim) -> tuple[StandardMerkleTree, int]:
        """The tree the claim proves against (the previous one if asked and posted)."""
        use_previous = claim.previous_root and len(self.trees) > 1
        tree, amounts = self.trees[-2 if use_previous else -1]
        return tree, amounts[claim.account]

    def expected(self, claim: Claim) -> tuple[str | None, int]:
        """The error name (None for success) and the amount paid."""
        if claim.inflate:
            return "RewardsDistributorInvalidProof", 0
        owed = self.leaf(claim)[1] - self.claimed[claim.account]
        return (None, owed) if owed > 0 else ("RewardsDistributorNothingToClaim", 0)

    def attempt(self, net: Net, claim: Claim) -> tuple[str | None, int]:
        tree, amount = self.leaf(claim)
        address = net.address(claim.account)
        proof = tree.get_proof((address, amount))
        try:
            paid = net.client(CLAIMER).claim(address, amount + claim.inflate, proof)
        except ContractReverted as error:
            return error.error, 0
        self.claimed[claim.account] += paid
        return None, paid


@settings(
    max_examples=10,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(scenario=scenarios)
def test_payments_never_exceed_entitlements(
    net: Net, scenario: list[tuple[list[int], list[Claim]]]
) -> None:
    snapshot = net.chain.snapshot()
    try:
        model = Model()
        for increments, epoch_claims in scenario:
            model.post(net, increments)
            for claim in epoch_claims:
                expected = model.expected(claim)
                assert model.attempt(net, claim) == expected
        check_ledger(net, model)
    finally:
        net.chain.revert(snapshot)


def check_ledger(net: Net, model: Model) -> None:
    state = net.poster.distributor_state()
    assert state.total_claimed == sum(model.claimed.values()) <= state.total_cumulative
    for account in ACCOUNTS:
        paid = net.poster.claimed(net.address(account))
        assert paid == model.claimed[account] <= model.cumulative[account]
