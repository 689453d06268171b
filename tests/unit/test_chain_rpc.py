"""Provider errors → our hierarchy, and the token bucket, without a network."""

import pytest

from indexer.chain.errors import RangeTooLarge, RateLimited, RpcTimeout
from indexer.chain.rpc import TokenBucket, translate_rpc_error
from masa.errors import ChainError


@pytest.mark.parametrize(
    ("method", "message", "expected"),
    [
        ("eth_getLogs", "query returned more than 10000 results", RangeTooLarge),  # Infura
        (
            "eth_getLogs",
            "Log response size exceeded. You can make eth_getLogs requests with up to a 2K"
            " block range",
            RangeTooLarge,
        ),  # Alchemy
        ("eth_getLogs", "block range is too wide", RangeTooLarge),
        ("eth_getLogs", "exceed maximum block range: 5000", RangeTooLarge),
        ("eth_getLogs", "query timeout exceeded", RpcTimeout),
        ("eth_getBlockByNumber", "request timed out", RpcTimeout),
        ("eth_getLogs", "daily request count exceeded, request rate limited", RateLimited),
        ("eth_call", "Too Many Requests", RateLimited),
        ("eth_getBlockByNumber", "invalid block tag", ChainError),
        ("eth_getBlockByNumber", "block range is too wide", ChainError),
    ],
)
def test_provider_wordings_map_to_our_errors(method, message, expected):
    error = translate_rpc_error(method, {"code": -32005, "message": message})
    assert type(error) is expected
    assert message in str(error)


class Clock:
    def __init__(self) -> None:
        self.now = 0.0
        self.slept: list[float] = []

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


def test_the_bucket_allows_a_burst_then_the_rate():
    clock = Clock()
    bucket = TokenBucket(10, burst=3, clock=lambda: clock.now, sleep=clock.sleep)
    for _ in range(3):
        bucket.acquire()
    assert clock.slept == []
    for _ in range(10):
        bucket.acquire()
    assert clock.now == pytest.approx(1.0)


def test_the_bucket_refills_while_idle_up_to_the_burst():
    clock = Clock()
    bucket = TokenBucket(5, burst=2, clock=lambda: clock.now, sleep=clock.sleep)
    bucket.acquire()
    bucket.acquire()
    clock.now += 100
    bucket.acquire()
    bucket.acquire()
    assert clock.slept == []
    bucket.acquire()
    assert clock.slept == [pytest.approx(0.2)]
