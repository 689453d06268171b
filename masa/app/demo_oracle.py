"""``masa demo``'s oracle app, a small news summary: what the network is for.

One data request scrapes the local news site; then, where vLLM is installed, one LLM request
summarises those items, naming them in ``data_refs`` so that the worker credits their
contributors. Both go through :class:`~masa.app.client.OracleClient` exactly as
``masa request submit --wait`` does (submit, wait for the stored outcome, fetch the result,
verified against the ledger's digest and decrypted with the oracle's key). A request to a
closed port shows a failure on the way.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any
from uuid import UUID

import orjson

from indexer.events.types import DataUsed
from indexer.store.log import EventLog
from masa.app.client import OracleClient, Outcome
from masa.errors import PermanentError
from workers.results import result_digest

FEE = 10**16
"""Wei per request: what the oracle prepaid covers a hundred thousand of them."""
FIELDS = {"headline": {"css": "h1::text"}, "lede": {"css": "p.lede::text"}}
MODEL = "tiny-llama"
UNREACHABLE = "http://127.0.0.1:9/"


@dataclass
class Answer:
    """One request of the app, as the app saw it."""

    request_id: UUID
    kind: str
    outcome: Outcome
    result: bytes | None = None

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"request_id": str(self.request_id), "kind": self.kind,
                               "status": self.outcome.status, "worker": self.outcome.worker,
                               "result_digest": self.outcome.result_digest}  # fmt: skip
        if self.outcome.status == "failed":
            out["reason"] = self.outcome.reason
        if self.result is not None:
            # the client accepted it: signed by the closing worker, decrypted, and hashing to
            # the digest the ledger stored; the demo shows the check once more
            out["verified"] = result_digest(self.result) == self.outcome.result_digest
            out["result_bytes"] = len(self.result)
        return out


@dataclass
class NewsSummary:
    data: Answer
    items: list[dict[str, Any]]
    failed: Answer
    summary: Answer | None = None
    llm: str = "off"
    credited: list[dict[str, Any]] = field(default_factory=list)
    """The contributors credited for the summary (for the items, when there is no summary)."""

    @property
    def text(self) -> str | None:
        return None if self.summary is None or self.summary.result is None else (
            self.summary.result.decode("utf-8", "replace")
        )  # fmt: skip

    def to_json(self) -> dict[str, Any]:
        data = {**self.data.to_json(), "items": self.items}
        summary = None if self.summary is None else {**self.summary.to_json(), "text": self.text}
        return {"data": data, "summary": summary, "llm": self.llm, "credited": self.credited,
                "failed": self.failed.to_json()}  # fmt: skip


def news_spec(site: str) -> dict[str, Any]:
    return {"start_urls": [f"{site}/index.html"], "max_depth": 1, "item_limit": 20,
            "follow": {"css": "a"}, "fields": FIELDS}  # fmt: skip


def run_news_summary(
    client: OracleClient, log: EventLog, site: str, skip_llm: str | None, timeout_s: float = 120
) -> NewsSummary:
    """The app's two requests (and the failing one), each awaited like ``--wait``;
    ``skip_llm`` says why there is no summary (None: there is one)."""
    rid = client.submit("data", news_spec(site), FEE)
    bad = client.submit("data", {"start_urls": [UNREACHABLE], "fields": FIELDS}, FEE)
    data = _ask(client, rid, "data", timeout_s)
    if data.result is None:
        raise PermanentError(f"the news request {rid} failed: {data.outcome.reason}")
    items = orjson.loads(data.result)
    news = NewsSummary(data, items, _ask(client, bad, "data", timeout_s))
    if skip_llm is not None:
        news.llm = skip_llm
        news.credited = credits(log, data.request_id, timeout_s)
        return news
    articles = [item for item in items if any(item["fields"].values())]
    spec = {"model": MODEL, "prompt": prompt(articles), "max_tokens": 32, "seed": 1,
            "data_refs": [item["source_url"] for item in articles]}  # fmt: skip
    summary_id = client.submit("llm", spec, FEE)
    news.summary, news.llm = _ask(client, summary_id, "llm", timeout_s), "on"
    news.credited = credits(log, summary_id, timeout_s)
    return news


def _ask(client: OracleClient, request_id: UUID, kind: str, timeout_s: float) -> Answer:
    """What ``masa request submit --wait`` does once the request is sent."""
    outcome = client.wait(request_id, timeout_s)
    if outcome.status != "completed":
        return Answer(request_id, kind, outcome)
    return Answer(request_id, kind, outcome, client.result(request_id, timeout_s))


def prompt(items: list[dict[str, Any]]) -> str:
    lines = [f"- {item['fields'].get('headline')}: {item['fields'].get('lede')}" for item in items]
    return "Summarise today's news in one sentence.\n" + "\n".join(lines) + "\nSummary:"


def credits(log: EventLog, request_id: UUID, timeout_s: float) -> list[dict[str, Any]]:
    """The ``DataUsed`` the ledger stored for the request: who is credited, for what."""
    deadline = time.monotonic() + timeout_s
    while True:
        for event in log.iterate(types=["DataUsed"]):
            payload = event.payload
            if isinstance(payload, DataUsed) and payload.request_id == request_id:
                return [{"contributor": u.contributor, "source": u.source, "units": u.units}
                        for u in payload.uses]  # fmt: skip
        if time.monotonic() > deadline:
            return []
        time.sleep(0.1)
