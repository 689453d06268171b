"""What a data job returns; what it asks for lives in the event contract.

A :class:`DataJobSpec` (``indexer.events.specs``) travels inside ``RequestSubmitted`` (kind
``data``); the worker answers with a :class:`DataJobResult` whose ``digest`` goes into
``RequestCompleted``.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Literal

import rfc8785
from eth_utils.crypto import keccak
from pydantic import BaseModel, ConfigDict

FailureReason = Literal[
    "unreachable",  # DNS failure, connection refused or reset before a response
    "timeout",  # no response within the download timeout
    "http_error",  # a non-2xx status after retries; ``status`` says which
    "disallowed_by_robots",  # the site's robots.txt forbids the URL
    "blocked_domain",  # on the worker's blocklist; never fetched
    "offsite",  # outside the spec's allowed domains; never fetched
    "unsupported_content",  # fetched, but not HTML/XML text
    "download_failed",  # any other transport failure (TLS, truncated body, ...)
]

StopReason = Literal["finished", "item_limit", "deadline"]


class DataItem(BaseModel):
    """One extracted item and the page it came from (after redirects)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    source_url: str
    fields: dict[str, str | None]


class CrawlFailure(BaseModel):
    """A URL the crawl could not use, with a machine-readable reason."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    url: str
    reason: FailureReason
    detail: str = ""
    status: int | None = None


class DataJobResult(BaseModel):
    """Items in canonical order, their digest, and what went wrong on the way."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    items: list[DataItem]
    digest: str
    pages_fetched: int
    failures: list[CrawlFailure]
    stopped: StopReason


def sort_items(items: Iterable[DataItem]) -> list[DataItem]:
    """Items ordered by ``(source_url, canonical JSON of fields)``."""
    return sorted(items, key=lambda item: (item.source_url, rfc8785.dumps(item.fields)))


def items_json(items: Iterable[DataItem]) -> bytes:
    """The RFC 8785 canonical JSON of the item list, in given order: a data job's result as
    delivered to its oracle, and what its digest commits to."""
    return rfc8785.dumps([item.model_dump(mode="json") for item in items])


def items_digest(items: Iterable[DataItem]) -> str:
    """``0x`` + keccak256 of the RFC 8785 canonical JSON of the item list, in given order."""
    return "0x" + keccak(items_json(items)).hex()
