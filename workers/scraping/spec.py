"""What a data job asks for and what it returns.

A :class:`DataJobSpec` travels inside ``RequestSubmitted`` (kind ``data``); the worker answers
with a :class:`DataJobResult` whose ``digest`` goes into ``RequestCompleted``. Selectors are
checked for syntax here, so a bad spec fails before any crawl starts.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Annotated, Literal
from urllib.parse import urlsplit

import rfc8785
from cssselect import SelectorError
from eth_utils.crypto import keccak
from parsel import Selector, SelectorList
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    model_validator,
)

from workers.scraping.domains import DomainRule, url_matches

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


def _check_http_url(url: str) -> str:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"not an http(s) URL: {url!r}")
    DomainRule.of_url(url)  # rejects a malformed port
    return url


def _check_domain(text: str) -> str:
    return str(DomainRule.parse(text))


HttpUrl = Annotated[str, StringConstraints(max_length=2048), AfterValidator(_check_http_url)]
Domain = Annotated[str, AfterValidator(_check_domain)]
FieldName = Annotated[str, StringConstraints(pattern=r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")]


class Query(BaseModel):
    """A CSS or an XPath selector (exactly one).

    In ``fields`` it extracts text from the first node it selects: an element gives its
    whole text content, ``::text`` / ``text()`` and ``::attr(x)`` / ``@x`` give that string;
    whitespace runs collapse to one space. Under an ``item_selector`` it is evaluated
    relative to the item node (write XPath as ``.//...`` to stay inside it).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    css: Annotated[str, StringConstraints(min_length=1, max_length=1000)] | None = None
    xpath: Annotated[str, StringConstraints(min_length=1, max_length=1000)] | None = None

    @model_validator(mode="after")
    def _exactly_one_valid(self) -> Query:
        if (self.css is None) == (self.xpath is None):
            raise ValueError("give exactly one of css or xpath")
        try:
            select(_EMPTY_PAGE, self)  # syntax, unknown functions, unbound prefixes
        except (ValueError, SelectorError) as exc:
            raise ValueError(f"invalid selector: {exc}") from exc
        return self


_EMPTY_PAGE = Selector(text="<html></html>")


def select(node: Selector, query: Query) -> SelectorList[Selector]:
    """Evaluate ``query`` against ``node``."""
    return node.css(query.css) if query.css is not None else node.xpath(query.xpath or "")


class DataJobSpec(BaseModel):
    """A crawl: where to start, how far to go, and what to extract from each page.

    ``allowed_domains`` holds ``host`` or ``host:port`` rules (see
    :mod:`workers.scraping.domains`); left empty it is the hosts of ``start_urls``, with
    their ports when written. ``max_depth`` counts link hops from a start URL (0: start
    pages only). Without ``item_selector`` a page is one item; a node whose fields are all
    empty yields no item. ``follow`` selects links (``<a>`` elements or href strings).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    start_urls: Annotated[list[HttpUrl], Field(min_length=1, max_length=50)]
    allowed_domains: Annotated[list[Domain], Field(max_length=50)] = []
    max_depth: Annotated[int, Field(ge=0, le=5)] = 1
    item_selector: Query | None = None
    fields: Annotated[dict[FieldName, Query], Field(min_length=1, max_length=50)]
    follow: Query | None = None
    item_limit: Annotated[int, Field(ge=1, le=10_000)] = 100

    @property
    def domain_rules(self) -> tuple[DomainRule, ...]:
        """The rules a fetched URL must satisfy."""
        if self.allowed_domains:
            return tuple(DomainRule.parse(domain) for domain in self.allowed_domains)
        return tuple(dict.fromkeys(DomainRule.of_url(url) for url in self.start_urls))

    @model_validator(mode="after")
    def _start_urls_allowed(self) -> DataJobSpec:
        rules = self.domain_rules
        outside = [url for url in self.start_urls if not url_matches(url, rules)]
        if outside:
            raise ValueError(f"start URLs outside allowed_domains: {outside}")
        return self


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


def items_digest(items: Iterable[DataItem]) -> str:
    """``0x`` + keccak256 of the RFC 8785 canonical JSON of the item list, in given order."""
    payload = [item.model_dump(mode="json") for item in items]
    return "0x" + keccak(rfc8785.dumps(payload)).hex()
