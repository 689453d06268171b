"""A JSON-RPC proxy on 127.0.0.1 that injects the faults of real providers in front of a node.

    with FaultyRpc(node.rpc_url, Faults(rate_limited=0.1, hang=0.05)) as proxy:
        rpc = HttpRpc(proxy.url, timeout_s=0.5)

Per request, in this order: HTTP 429 (``rate_limited``), no answer until the client gives up
(``hang``), ``eth_getLogs`` over more than ``max_log_blocks`` blocks or with more than
``max_logs`` results answered "query returned more than 10000 results", and every
``stale_head_every``-th ``latest`` block answered with one ``stale_by`` blocks older (a node
lagging behind a load balancer). Random decisions come from a seeded generator; ``counts``
says what was injected.
"""

from __future__ import annotations

import random
import threading
import time
import urllib.request
from collections import Counter
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, Self

import orjson

from tests.support.services import LOOPBACK

TOO_MANY = {"code": -32005, "message": "query returned more than 10000 results"}


@dataclass(frozen=True)
class Faults:
    rate_limited: float = 0.0
    hang: float = 0.0
    hang_s: float = 1.5
    max_log_blocks: int | None = None
    max_logs: int | None = None
    stale_head_every: int | None = None
    stale_by: int = 3
    seed: int = 0


class FaultyRpc:
    def __init__(self, upstream: str, faults: Faults) -> None:
        self.upstream = upstream
        self.faults = faults
        self.counts: Counter[str] = Counter()
        self._rng = random.Random(faults.seed)
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer((LOOPBACK, 0), self._handler())
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://{LOOPBACK}:{self._server.server_address[1]}"

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()

    def _roll(self, probability: float) -> bool:
        with self._lock:
            return self._rng.random() < probability

    def forward(self, request: dict[str, Any]) -> dict[str, Any]:
        body = orjson.dumps(request)
        headers = {"Content-Type": "application/json"}
        upstream = urllib.request.Request(self.upstream, body, headers)
        with urllib.request.urlopen(upstream, timeout=30) as response:
            return orjson.loads(response.read())  # type: ignore[no-any-return]

    def answer(self, request: dict[str, Any]) -> tuple[int, dict[str, Any] | None]:
        """(HTTP status, JSON reply); a None reply means hang up without answering."""
        f, method, params = self.faults, request.get("method"), request.get("params") or []
        if self._roll(f.rate_limited):
            self.counts["429"] += 1
            return 429, {
                "jsonrpc": "2.0",
                "id": request.get("id"),
                "error": {"code": 429, "message": "Too Many Requests"},
            }
        if self._roll(f.hang):
            self.counts["hang"] += 1
            time.sleep(f.hang_s)
            return 0, None
        if method == "eth_getLogs" and self._too_wide(params[0]):
            self.counts["too_many"] += 1
            return 200, {"jsonrpc": "2.0", "id": request.get("id"), "error": TOO_MANY}
        if method == "eth_getBlockByNumber" and params[0] == "latest" and self._stale_turn():
            return 200, self._stale_head(request)
        reply = self.forward(request)
        if (
            method == "eth_getLogs"
            and f.max_logs is not None
            and len(reply.get("result") or []) > f.max_logs
        ):
            self.counts["too_many"] += 1
            return 200, {"jsonrpc": "2.0", "id": request.get("id"), "error": TOO_MANY}
        return 200, reply

    def _stale_turn(self) -> bool:
        every = self.faults.stale_head_every
        with self._lock:
            self.counts["latest"] += 1
            return every is not None and self.counts["latest"] % every == 0

    def _too_wide(self, query: dict[str, Any]) -> bool:
        limit = self.faults.max_log_blocks
        if limit is None or "fromBlock" not in query:
            return False
        return int(query["toBlock"], 16) - int(query["fromBlock"], 16) + 1 > limit

    def _stale_head(self, request: dict[str, Any]) -> dict[str, Any]:
        head = self.forward({"jsonrpc": "2.0", "id": 1, "method": "eth_blockNumber", "params": []})
        older = max(0, int(head["result"], 16) - self.faults.stale_by)
        self.counts["stale_head"] += 1
        return self.forward({**request, "params": [hex(older), *request["params"][1:]]})

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                request = orjson.loads(self.rfile.read(int(self.headers["Content-Length"])))
                status, reply = proxy.answer(request)
                if reply is None:
                    self.close_connection = True
                    return
                body = orjson.dumps(reply)
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *_: Any) -> None:
                pass

        return Handler
