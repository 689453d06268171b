"""The chain port (``ChainRpc``) and its adapters: JSON-RPC over HTTP, and any web3 provider
(the in-process EVM of ``masa demo``).

The HTTP adapter speaks JSON-RPC itself (one ``requests`` session, orjson) rather than through
web3.py: it sees every status code and error message to translate them (``errors.py``), and
it skips web3's per-field result formatting, which costs more than the request on log-heavy
ranges. Each adapter holds a token bucket: one client per provider, one rate limit.

Calls are retried with exponential backoff (tenacity) except ``logs``, whose failures the
follower answers by shrinking the range (``ranges.py``).
"""

from __future__ import annotations

import re
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from typing import Any, Protocol, TypeVar, cast

import orjson
import requests
from tenacity import Retrying, retry_if_exception, stop_after_attempt, wait_exponential, wait_random
from web3 import Web3
from web3.exceptions import BlockNotFound, Web3Exception
from web3.types import BlockIdentifier, FilterParams

from indexer.chain.errors import (
    ChainMoved,
    RangeTooLarge,
    RateLimited,
    RpcTimeout,
    RpcUnavailable,
)
from indexer.chain.model import BlockRef, RawLog
from masa.errors import ChainError, RetryableError

T = TypeVar("T")
BlockTag = int | str


class ChainRpc(Protocol):
    """What the follower reads from a node."""

    faults: Counter[str]
    """Failures seen, by class name (retried ones included)."""

    def chain_id(self) -> int: ...

    def block(self, at: BlockTag) -> BlockRef | None:
        """The header at a number or tag (``latest``); None if the node has no such block."""

    def finalized(self) -> BlockRef | None:
        """The node's ``finalized`` block; None when the node does not report one."""

    def logs(
        self, addresses: Sequence[str], topics: Sequence[str], first: int, last: int
    ) -> list[RawLog]:
        """Logs of ``addresses`` with topic0 in ``topics`` in blocks ``first..last``; one
        attempt, so the caller can shrink the range."""

    def block_logs(
        self, addresses: Sequence[str], topics: Sequence[str], block: BlockRef
    ) -> list[RawLog]:
        """Exactly the logs of ``block`` (by hash); ``ChainMoved`` if the node lost it."""

    def block_time(self, number: int, block_hash: str) -> int:
        """The timestamp of block ``number``; ``ChainMoved`` if it is no longer ``block_hash``."""


class TokenBucket:
    """``rate`` requests per second on average, bursts of up to ``burst``."""

    def __init__(
        self,
        rate: float,
        burst: float | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.rate = rate
        self.burst = burst if burst is not None else max(1.0, rate)
        self._clock, self._sleep = clock, sleep
        self._tokens = self.burst
        self._stamp = clock()
        self._lock = threading.Lock()

    def acquire(self) -> None:
        with self._lock:
            now = self._clock()
            self._tokens = min(self.burst, self._tokens + (now - self._stamp) * self.rate)
            self._stamp = now
            self._tokens -= 1
            wait = -self._tokens / self.rate if self._tokens < 0 else 0.0
        if wait > 0:
            self._sleep(wait)


def _transient(exc: BaseException) -> bool:
    return isinstance(exc, RetryableError) and not isinstance(exc, RangeTooLarge)


def _retrying(attempts: int, faults: Counter[str]) -> Retrying:
    def note(state: Any) -> None:
        faults["retries"] += 1

    return Retrying(
        retry=retry_if_exception(_transient),
        stop=stop_after_attempt(attempts),
        wait=wait_exponential(multiplier=0.1, max=5.0) + wait_random(0, 0.1),
        before_sleep=note,
        reraise=True,
    )


# --- JSON-RPC over HTTP -------------------------------------------------------------------

_RATE = re.compile(
    r"rate.?limit|too many requests|exceeded .*(capacity|quota|per second)|throughput", re.I
)
_RANGE = re.compile(
    r"more than \d+ (results|logs)|too many (results|logs)|response size|result window|"
    r"range (is )?too (large|wide|big)|block range|exceed.*(range|max|limit)|limit exceeded|"
    r"query returned more",
    re.I,
)
_TIMEOUT = re.compile(r"time(d)? ?out|deadline|took too long", re.I)


def translate_rpc_error(method: str, error: dict[str, Any]) -> Exception:
    """A JSON-RPC ``error`` object as one of our errors (provider wording varies)."""
    message = str(error.get("message", error))
    text = f"{method}: {message} (code {error.get('code')})"
    if _RATE.search(message):
        return RateLimited(text)
    if method == "eth_getLogs" and _RANGE.search(message):
        return RangeTooLarge(text)
    if _TIMEOUT.search(message):
        return RpcTimeout(text)
    return ChainError(text)


class HttpRpc:
    def __init__(
        self,
        url: str,
        *,
        timeout_s: float = 30.0,
        requests_per_second: float = 25.0,
        attempts: int = 6,
    ) -> None:
        self.url = url
        self.timeout_s = timeout_s
        self.attempts = attempts
        self.bucket = TokenBucket(requests_per_second)
        self.faults: Counter[str] = Counter()
        self._session = requests.Session()
        self._session.headers["Content-Type"] = "application/json"
        self._has_finalized = True

    def chain_id(self) -> int:
        return int(self._call("eth_chainId", []), 16)

    def block(self, at: BlockTag) -> BlockRef | None:
        tag = hex(at) if isinstance(at, int) else at
        return _block_from_json(self._call("eth_getBlockByNumber", [tag, False]))

    def block_time(self, number: int, block_hash: str) -> int:
        block = self._call("eth_getBlockByNumber", [hex(number), False])
        if block is None or block["hash"].lower() != block_hash:
            raise ChainMoved(f"block {number} is no longer {block_hash}")
        return int(block["timestamp"], 16)

    def finalized(self) -> BlockRef | None:
        if not self._has_finalized:
            return None
        try:
            return self.block("finalized")
        except ChainError:
            self._has_finalized = False
            return None

    def logs(
        self, addresses: Sequence[str], topics: Sequence[str], first: int, last: int
    ) -> list[RawLog]:
        query = {"fromBlock": hex(first), "toBlock": hex(last), "address": list(addresses)}
        result = self._once("eth_getLogs", [query | {"topics": [list(topics)]}])
        return [_log_from_json(item) for item in result]

    def block_logs(
        self, addresses: Sequence[str], topics: Sequence[str], block: BlockRef
    ) -> list[RawLog]:
        query = {"blockHash": block.hash, "address": list(addresses), "topics": [list(topics)]}
        try:
            result = self._call("eth_getLogs", [query])
        except ChainError as exc:
            if "unknown block" in str(exc).lower() or "not found" in str(exc).lower():
                raise ChainMoved(f"block {block.number} {block.hash} is gone: {exc}") from exc
            raise
        return [_log_from_json(item) for item in result]

    def _call(self, method: str, params: list[Any]) -> Any:
        for attempt in _retrying(self.attempts, self.faults):
            with attempt:
                return self._once(method, params)
        raise AssertionError("unreachable")

    def _once(self, method: str, params: list[Any]) -> Any:
        self.bucket.acquire()
        try:
            return self._post(method, params)
        except (RetryableError, ChainError) as exc:
            self.faults[type(exc).__name__] += 1
            raise

    def _post(self, method: str, params: list[Any]) -> Any:
        body = orjson.dumps({"jsonrpc": "2.0", "id": 1, "method": method, "params": params})
        try:
            response = self._session.post(self.url, data=body, timeout=self.timeout_s)
        except requests.Timeout as exc:
            raise RpcTimeout(f"{method}: no answer in {self.timeout_s:g} s") from exc
        except requests.RequestException as exc:
            raise RpcUnavailable(f"{method}: {exc}") from exc
        reply = _json_or_none(response.content)
        if isinstance(reply, dict) and reply.get("error") is not None:
            raise translate_rpc_error(method, reply["error"])
        if response.status_code == 429:
            raise RateLimited(f"{method}: HTTP 429")
        if response.status_code != 200 or not isinstance(reply, dict) or "result" not in reply:
            raise RpcUnavailable(f"{method}: HTTP {response.status_code}: {response.text[:200]}")
        return reply["result"]


def _json_or_none(content: bytes) -> Any:
    try:
        return orjson.loads(content)
    except orjson.JSONDecodeError:
        return None


def _block_from_json(block: dict[str, Any] | None) -> BlockRef | None:
    if block is None:
        return None
    return BlockRef(int(block["number"], 16), block["hash"].lower(), block["parentHash"].lower())


def _log_from_json(log: dict[str, Any]) -> RawLog:
    return RawLog(
        address=log["address"].lower(),
        topics=tuple(t.lower() for t in log["topics"]),
        data=bytes.fromhex(log["data"][2:]),
        block_number=int(log["blockNumber"], 16),
        block_hash=log["blockHash"].lower(),
        tx_hash=log["transactionHash"].lower(),
        log_index=int(log["logIndex"], 16),
        block_timestamp=int(log["blockTimestamp"], 16) if log.get("blockTimestamp") else None,
    )


# --- any web3 provider --------------------------------------------------------------------


class Web3Rpc:
    """Through web3.py's API, for providers that are not HTTP (the in-process EVM). The
    in-process EVM filters logs neither by block hash nor by a list of topics, so both are
    done here."""

    def __init__(self, w3: Web3, *, requests_per_second: float = 1000.0, attempts: int = 3) -> None:
        self.w3 = w3
        self.attempts = attempts
        self.bucket = TokenBucket(requests_per_second)
        self.faults: Counter[str] = Counter()

    def chain_id(self) -> int:
        return self._call(lambda: int(self.w3.eth.chain_id))

    def block(self, at: BlockTag) -> BlockRef | None:
        def read() -> BlockRef | None:
            try:
                block = self.w3.eth.get_block(cast(BlockIdentifier, at))  # a tag or a number
            except BlockNotFound:
                return None
            return BlockRef(
                int(block["number"]), block["hash"].to_0x_hex(), block["parentHash"].to_0x_hex()
            )

        return self._call(read)

    def finalized(self) -> BlockRef | None:
        try:
            return self.block("finalized")
        except ChainError:
            return None

    def block_time(self, number: int, block_hash: str) -> int:
        def read() -> int:
            try:
                block = self.w3.eth.get_block(number)
            except BlockNotFound:
                block = None
            if block is None or block["hash"].to_0x_hex() != block_hash:
                raise ChainMoved(f"block {number} is no longer {block_hash}")
            return int(block["timestamp"])

        return self._call(read)

    def logs(
        self, addresses: Sequence[str], topics: Sequence[str], first: int, last: int
    ) -> list[RawLog]:
        self.bucket.acquire()
        return self._logs(addresses, topics, first, last)

    def block_logs(
        self, addresses: Sequence[str], topics: Sequence[str], block: BlockRef
    ) -> list[RawLog]:
        logs = self._call(lambda: self._logs(addresses, topics, block.number, block.number))
        if any(log.block_hash != block.hash for log in logs) or self.block(block.number) != block:
            raise ChainMoved(f"block {block.number} {block.hash} is no longer canonical")
        return logs

    def _logs(
        self, addresses: Sequence[str], topics: Sequence[str], first: int, last: int
    ) -> list[RawLog]:
        query: FilterParams = {
            "fromBlock": first,
            "toBlock": last,
            "address": [Web3.to_checksum_address(a) for a in addresses],
        }
        try:
            found = self.w3.eth.get_logs(query)
        except Exception as exc:  # the in-process EVM raises its own classes
            raise _translate_web3(exc, "eth_getLogs") from exc
        wanted = set(topics)
        return [
            _log_from_web3(log)
            for log in found
            if log["topics"] and log["topics"][0].to_0x_hex() in wanted
        ]

    def _call(self, read: Callable[[], T]) -> T:
        for attempt in _retrying(self.attempts, self.faults):
            with attempt:
                self.bucket.acquire()
                try:
                    return read()
                except (RetryableError, ChainError):
                    raise
                except Exception as exc:
                    raise _translate_web3(exc, "call") from exc
        raise AssertionError("unreachable")


def _translate_web3(exc: Exception, method: str) -> Exception:
    if isinstance(exc, (ConnectionError, TimeoutError)):
        return RpcUnavailable(f"{method}: {exc}")
    if "not found" in str(exc).lower():
        return ChainMoved(f"{method}: {exc}")
    if isinstance(exc, Web3Exception):
        return ChainError(f"{method}: {exc}")
    return ChainError(f"{method}: {type(exc).__name__}: {exc}")


def _log_from_web3(log: Any) -> RawLog:
    return RawLog(
        address=str(log["address"]).lower(),
        topics=tuple(t.to_0x_hex() for t in log["topics"]),
        data=bytes(log["data"]),
        block_number=int(log["blockNumber"]),
        block_hash=log["blockHash"].to_0x_hex(),
        tx_hash=log["transactionHash"].to_0x_hex(),
        log_index=int(log["logIndex"]),
    )


def open_rpc(
    w3: Web3, *, timeout_s: float = 30.0, requests_per_second: float = 25.0
) -> HttpRpc | Web3Rpc:
    """The adapter for ``w3``'s provider: our own JSON-RPC client for HTTP, web3's API else."""
    url = getattr(w3.provider, "endpoint_uri", None)
    if isinstance(url, str) and url.startswith(("http://", "https://")):
        return HttpRpc(url, timeout_s=timeout_s, requests_per_second=requests_per_second)
    return Web3Rpc(w3)
