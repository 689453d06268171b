"""Is this worker staked? Asked before serving and every ``stake_recheck_s`` after.

A ``StakeCheck`` returns when the address is staked as a worker, raises ``ChainError``
when it is not, and ``RetryableError`` when it cannot tell. ``masa worker run`` reads the
chain; ``masa demo`` and tests pass a check of their own.
"""

from __future__ import annotations

from collections.abc import Callable

from web3.exceptions import Web3Exception

from contracts.client import MasaClient, Role, StakeStatus
from masa.errors import ChainError, RetryableError

StakeCheck = Callable[[str], None]


def require_worker_stake(status: StakeStatus) -> None:
    if status.role is not Role.WORKER:
        held = "no role" if status.role is None else f"the {status.role.name.lower()} role"
        raise ChainError(f"{status.node} is not staked as a worker (it holds {held}); stake first")
    if not status.active:
        raise ChainError(
            f"{status.node}'s worker stake {status.stake} wei is below the minimum "
            f"{status.min_stake} wei; stake more"
        )


def chain_stake_check(client: MasaClient) -> StakeCheck:
    """The check against NodeStaking, read through ``client``."""

    def check(address: str) -> None:
        try:
            status = client.stake_status(address)
        except (OSError, Web3Exception) as exc:
            raise RetryableError(f"cannot read the stake of {address}: {exc}") from exc
        require_worker_stake(status)

    return check
