"""How chain reads fail, as classes of the project's hierarchy (``masa.errors``)::

RetryableError
├── RpcUnavailable   connection refused or reset, HTTP 5xx, a reply that is not JSON-RPC
├── RpcTimeout       no reply in time                     ┐ an eth_getLogs range that
├── RateLimited      HTTP 429 or a rate-limit error       ├ failed so is retried
├── RangeTooLarge    "too many results", response size    ┘ smaller
├── ChainMoved       the chain changed while a step read it; redo the step
└── HeadBehind       the node's head is below blocks we processed (a lagging node?)
ChainError           anything else the node refuses (permanent)
└── ReorgTooDeep     the chain replaced a finalized block
"""

from __future__ import annotations

from masa.errors import ChainError, ReorgTooDeep, RetryableError


class RpcUnavailable(RetryableError):
    """The node could not be reached or answered with something other than JSON-RPC."""


class RpcTimeout(RetryableError):
    """The node did not answer in time."""


class RateLimited(RetryableError):
    """The provider refused the request for its rate limit."""


class RangeTooLarge(RetryableError):
    """The provider refused an ``eth_getLogs`` range as too large; a smaller one may pass."""


class ChainMoved(RetryableError):
    """Headers or logs read in one step do not fit together: the chain moved meanwhile."""


class HeadBehind(RetryableError):
    """The node reports a head below our tip. Taken as a provider fault (a node behind a
    load balancer lagging) until it persists; see ``FollowConfig.backward_patience``."""


#: Failures after which an ``eth_getLogs`` range is retried smaller.
SHRINKING = (RangeTooLarge, RpcTimeout, RateLimited)

__all__ = [
    "SHRINKING",
    "ChainError",
    "ChainMoved",
    "HeadBehind",
    "RangeTooLarge",
    "RateLimited",
    "ReorgTooDeep",
    "RpcTimeout",
    "RpcUnavailable",
]
