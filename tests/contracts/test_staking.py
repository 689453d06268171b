"""NodeStaking: stake, unstake with cooldown, withdraw, slash, roles, minimums."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any

import pytest
from eth_utils import keccak

from contracts.client import LockInfo, MasaClient, Role, to_bytes32
from contracts.reverts import ContractReverted
from tests.contracts.conftest import COOLDOWN_S, MIN_ORACLE, MIN_WORKER, USER_TOKENS, Net

WORKER, ORACLE, OUTSIDER = 4, 5, 6
SLASHER_ROLE = "0x" + keccak(text="SLASHER_ROLE").hex()
ADMIN_ROLE = "0x" + "00" * 32
ZERO_ADDRESS = "0x" + "00" * 20


def reverts(call: Callable[[], Any], error: str, **params: Any) -> None:
    """Assert ``call`` reverts with custom error ``error`` and exactly ``params``."""
    with pytest.raises(ContractReverted) as info:
        call()
    assert (info.value.error, info.value.params) == (error, params)


def events(client: MasaClient, name: str, block: int | None = None) -> list[dict[str, Any]]:
    """Decoded ``name`` events of NodeStaking in ``block`` (default: the latest)."""
    at = client.w3.eth.block_number if block is None else block
    logs = getattr(client.staking.events, name)().get_logs(from_block=at, to_block=at)
    return [dict(log["args"]) for log in logs]


def test_stake_sets_role_and_events_carry_the_new_stake(net: Net) -> None:
    worker = net.client(WORKER)
    assert worker.stake(Role.WORKER, 150) == 150
    assert events(worker, "Staked") == [
        {"node": worker.address, "role": 1, "amount": 150, "newStake": 150}
    ]
    assert worker.stake(Role.WORKER, 50) == 200
    status = worker.stake_status()
    assert (status.role, status.stake, status.locked, status.active) == (Role.WORKER, 200, 0, True)
    assert status.balance == USER_TOKENS - 200
    assert worker.staking.functions.totalStaked().call() == 200


@pytest.mark.parametrize(
    ("role", "amount", "minimum"),
    [(Role.WORKER, MIN_WORKER - 1, MIN_WORKER), (Role.ORACLE, 150, MIN_ORACLE)],
)
def test_stake_below_the_role_minimum_reverts(
    net: Net, role: Role, amount: int, minimum: int
) -> None:
    node = net.client(WORKER)
    reverts(
        lambda: node.stake(role, amount),
        "NodeStakingBelowMinimum",
        role=role,
        newStake=amount,
        minimum=minimum,
    )
    assert node.stake(role, minimum) == minimum


def test_invalid_role_and_zero_amount_revert(net: Net) -> None:
    node = net.client(WORKER)
    reverts(lambda: node.stake(0, 100), "NodeStakingInvalidRole", role=0)  # type: ignore[arg-type]
    reverts(lambda: node.stake(3, 100), "NodeStakingInvalidRole", role=3)  # type: ignore[arg-type]
    reverts(lambda: node.stake(Role.WORKER, 0), "NodeStakingZeroAmount")
    reverts(lambda: node.request_unstake(0), "NodeStakingZeroAmount")


def test_one_role_per_address_until_fully_withdrawn(net: Net) -> None:
    node = net.client(WORKER)
    node.stake(Role.WORKER, 100)
    mismatch = {"node": node.address, "role": 1, "requested": 2}
    reverts(lambda: node.stake(Role.ORACLE, 200), "NodeStakingRoleMismatch", **mismatch)
    lock = node.request_unstake(100)
    reverts(lambda: node.stake(Role.ORACLE, 200), "NodeStakingRoleMismatch", **mismatch)
    net.chain.travel(COOLDOWN_S)
    assert node.withdraw(lock.lock_id) == 100
    assert node.stake_status().role is None
    assert node.stake(Role.ORACLE, 200) == 200
    assert node.stake_status().role is Role.ORACLE


def test_unstake_must_leave_zero_or_at_least_the_minimum(net: Net) -> None:
    node = net.client(WORKER)
    node.stake(Role.WORKER, 150)
    reverts(
        lambda: node.request_unstake(60),
        "NodeStakingBelowMinimum",
        role=1,
        newStake=90,
        minimum=MIN_WORKER,
    )
    reverts(
        lambda: node.request_unstake(151),
        "NodeStakingInsufficientStake",
        node=node.address,
        stake=150,
        requested=151,
    )
    node.request_unstake(50)
    node.request_unstake(100)
    status = node.stake_status()
    assert (status.stake, status.locked, status.active) == (0, 150, False)


def test_withdraw_waits_for_the_cooldown(net: Net) -> None:
    node = net.client(WORKER)
    node.stake(Role.WORKER, 300)
    lock = node.request_unstake(100)
    assert lock.unlock_at == net.chain.timestamp() + COOLDOWN_S
    assert events(node, "UnstakeRequested") == [
        {
            "node": node.address,
            "lockId": lock.lock_id,
            "amount": 100,
            "unlockAt": lock.unlock_at,
            "newStake": 200,
            "newLocked": 100,
        }
    ]
    not_ready = {"lockId": lock.lock_id, "unlockAt": lock.unlock_at}
    reverts(lambda: node.withdraw(lock.lock_id), "NodeStakingLockNotReady", **not_ready)
    net.chain.travel(COOLDOWN_S // 2)
    reverts(lambda: node.withdraw(lock.lock_id), "NodeStakingLockNotReady", **not_ready)
    net.chain.travel(COOLDOWN_S // 2)
    assert node.withdraw(lock.lock_id) == 100
    assert events(node, "Withdrawn") == [
        {"node": node.address, "lockId": lock.lock_id, "amount": 100, "newLocked": 0}
    ]
    status = node.stake_status()
    assert (status.stake, status.locked, status.locks, status.balance) == (
        200,
        0,
        (),
        USER_TOKENS - 200,
    )
    assert node.staking.functions.lockOf(node.address, lock.lock_id).call() == (0, 0)


def test_a_lock_is_withdrawn_once_and_only_by_its_node(net: Net) -> None:
    node, other = net.client(WORKER), net.client(OTHER := ORACLE)
    node.stake(Role.WORKER, 100)
    lock = node.request_unstake(100)
    net.chain.travel(COOLDOWN_S)
    reverts(
        lambda: other.withdraw(lock.lock_id),
        "NodeStakingUnknownLock",
        node=net.address(OTHER),
        lockId=lock.lock_id,
    )
    node.withdraw(lock.lock_id)
    reverts(
        lambda: node.withdraw(lock.lock_id),
        "NodeStakingUnknownLock",
        node=node.address,
        lockId=lock.lock_id,
    )


def test_cooldown_change_applies_to_new_locks_only(net: Net) -> None:
    node = net.client(WORKER)
    node.stake(Role.WORKER, 300)
    first = node.request_unstake(100)
    net.admin.send(net.admin.staking.functions.setCooldown(2 * COOLDOWN_S))
    assert events(node, "CooldownUpdated") == [{"cooldown": 2 * COOLDOWN_S}]
    second = node.request_unstake(100)
    assert second.unlock_at == net.chain.timestamp() + 2 * COOLDOWN_S
    net.chain.travel(COOLDOWN_S)
    assert node.withdraw(first.lock_id) == 100
    reverts(
        lambda: node.withdraw(second.lock_id),
        "NodeStakingLockNotReady",
        lockId=second.lock_id,
        unlockAt=second.unlock_at,
    )


def test_only_the_admin_sets_parameters_within_bounds(net: Net) -> None:
    admin, outsider = net.admin, net.client(OUTSIDER)
    unauthorized = {"account": outsider.address, "neededRole": ADMIN_ROLE}
    fns = outsider.staking.functions
    for call in (fns.setCooldown(1), fns.setMinStake(1, 1), fns.setTreasury(outsider.address)):
        reverts(partial(outsider.send, call), "AccessControlUnauthorizedAccount", **unauthorized)
    year = 365 * 24 * 3600
    reverts(
        lambda: admin.send(admin.staking.functions.setCooldown(year + 1)),
        "NodeStakingCooldownTooLong",
        cooldown=year + 1,
        maximum=year,
    )
    reverts(
        lambda: admin.send(admin.staking.functions.setMinStake(3, 1)),
        "NodeStakingInvalidRole",
        role=3,
    )
    reverts(
        lambda: admin.send(admin.staking.functions.setTreasury(ZERO_ADDRESS)),
        "NodeStakingZeroTreasury",
    )


def test_raised_minimum_keeps_existing_stakes_but_marks_them_inactive(net: Net) -> None:
    node = net.client(WORKER)
    node.stake(Role.WORKER, 100)
    net.admin.send(net.admin.staking.functions.setMinStake(1, 150))
    assert events(node, "MinimumStakeUpdated") == [{"role": 1, "minimum": 150}]
    status = node.stake_status()
    assert (status.stake, status.min_stake, status.active) == (100, 150, False)
    assert node.stake(Role.WORKER, 50) == 150
    assert node.stake_status().active


def test_slash_takes_active_stake_first_then_locks_newest_first(net: Net) -> None:
    node = net.client(WORKER)
    node.stake(Role.WORKER, 300)
    older = node.request_unstake(50)
    newer = node.request_unstake(50)
    treasury_before = node.balance_of(net.treasury)
    reason = to_bytes32("double-sign")
    assert net.slasher.slash(node.address, 260, "double-sign") == 260
    receipt_block = node.w3.eth.block_number
    assert events(node, "LockSlashed", receipt_block) == [
        {"node": node.address, "lockId": newer.lock_id, "amount": 50, "remaining": 0},
        {"node": node.address, "lockId": older.lock_id, "amount": 10, "remaining": 40},
    ]
    assert events(node, "Slashed", receipt_block) == [
        {"node": node.address, "reason": reason, "amount": 260, "newStake": 0, "newLocked": 40}
    ]
    status = node.stake_status()
    assert (status.stake, status.locked, status.role) == (0, 40, Role.WORKER)
    assert status.locks == (LockInfo(older.lock_id, 40, older.unlock_at),)
    assert node.balance_of(net.treasury) == treasury_before + 260
    net.chain.travel(COOLDOWN_S)
    assert node.withdraw(older.lock_id) == 40
    assert node.stake_status().role is None


def test_slash_of_locked_tokens_survives_the_cooldown(net: Net) -> None:
    node = net.client(WORKER)
    node.stake(Role.WORKER, 100)
    lock = node.request_unstake(100)
    net.chain.travel(COOLDOWN_S)
    assert net.slasher.slash(node.address, 30, "late-evidence") == 30
    assert node.withdraw(lock.lock_id) == 70


def test_slash_larger_than_the_holdings_takes_everything(net: Net) -> None:
    node = net.client(WORKER)
    node.stake(Role.WORKER, 100)
    lock = node.request_unstake(100)
    assert net.slasher.slash(node.address, 10**9, b"fraud") == 100
    status = node.stake_status()
    assert (status.stake, status.locked, status.locks, status.role) == (0, 0, (), None)
    reverts(
        lambda: node.withdraw(lock.lock_id),
        "NodeStakingUnknownLock",
        node=node.address,
        lockId=lock.lock_id,
    )
    reverts(
        lambda: net.slasher.slash(node.address, 1, "x"),
        "NodeStakingNothingToSlash",
        node=node.address,
    )
    reverts(lambda: net.slasher.slash(node.address, 0, "x"), "NodeStakingZeroAmount")


def test_slash_below_the_minimum_makes_the_node_inactive(net: Net) -> None:
    node = net.client(WORKER)
    node.stake(Role.WORKER, 150)
    net.slasher.slash(node.address, 100, "downtime")
    assert not node.stake_status().active
    reverts(
        lambda: node.stake(Role.WORKER, 10),
        "NodeStakingBelowMinimum",
        role=1,
        newStake=60,
        minimum=MIN_WORKER,
    )
    node.stake(Role.WORKER, 50)
    assert node.stake_status().active


def test_only_slashers_slash(net: Net) -> None:
    node, outsider = net.client(WORKER), net.client(OUTSIDER)
    node.stake(Role.WORKER, 100)
    unauthorized = {"account": outsider.address, "neededRole": SLASHER_ROLE}
    reverts(
        lambda: outsider.slash(node.address, 1, "x"),
        "AccessControlUnauthorizedAccount",
        **unauthorized,
    )
    unauthorized["account"] = node.address
    reverts(
        lambda: node.slash(node.address, 1, "x"), "AccessControlUnauthorizedAccount", **unauthorized
    )


def test_open_locks_are_capped(net: Net) -> None:
    node = net.client(WORKER)
    node.stake(Role.WORKER, 1_000)
    for _ in range(16):
        node.request_unstake(1)
    reverts(
        lambda: node.request_unstake(1), "NodeStakingTooManyLocks", node=node.address, maximum=16
    )
    assert len(node.stake_status().locks) == 16


def test_slashed_tokens_follow_the_treasury(net: Net) -> None:
    node, new_treasury = net.client(WORKER), net.address(OUTSIDER)
    node.stake(Role.WORKER, 100)
    net.admin.send(net.admin.staking.functions.setTreasury(new_treasury))
    assert events(node, "TreasuryUpdated") == [{"treasury": new_treasury}]
    net.slasher.slash(node.address, 25, "x")
    assert node.balance_of(new_treasury) == USER_TOKENS + 25
