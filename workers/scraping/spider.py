"""The scrapy side of a data job: the spider, the domain guard and failure classification.

Imported only inside the crawl subprocess (:mod:`workers.scraping.crawl`).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable, Iterator
from typing import Any
from urllib.parse import urlsplit

import scrapy
from lxml import etree
from parsel import Selector, SelectorList
from scrapy.crawler import Crawler
from scrapy.exceptions import (
    CannotResolveHostError,
    DownloadConnectionRefusedError,
    DownloadTimeoutError,
    IgnoreRequest,
)
from scrapy.http import Request, Response, TextResponse
from scrapy.spidermiddlewares.httperror import HttpError
from twisted.internet.error import ConnectError, TCPTimedOutError
from twisted.internet.error import TimeoutError as TwistedTimeoutError
from twisted.python.failure import Failure

from indexer.events.specs import DataJobSpec, DomainRule, Query, url_matches
from workers.scraping.protocol import (
    ClosedLine,
    CrawlJob,
    FailureLine,
    ItemLine,
    LineWriter,
    PageLine,
)
from workers.scraping.spec import CrawlFailure, DataItem, FailureReason

ALLOWED_SETTING = "MASA_ALLOWED_DOMAINS"
BLOCKED_SETTING = "MASA_BLOCKED_DOMAINS"

# scrapy's RobotsTxtMiddleware raises a plain IgnoreRequest with this message
_ROBOTS_MESSAGE = "Forbidden by robots.txt"
_TIMEOUTS = (DownloadTimeoutError, TwistedTimeoutError, TCPTimedOutError)
_UNREACHABLE = (CannotResolveHostError, DownloadConnectionRefusedError, ConnectError)


def select(node: Selector, query: Query) -> SelectorList[Selector]:
    """Evaluate ``query`` against ``node`` (the contract only checks that it compiles)."""
    return node.css(query.css) if query.css is not None else node.xpath(query.xpath or "")


class Refused(IgnoreRequest):
    """A request the guard refused before any connection was made."""

    def __init__(self, reason: FailureReason, detail: str) -> None:
        super().__init__(detail)
        self.reason: FailureReason = reason


class GuardMiddleware:
    """Downloader middleware refusing blocked and offsite URLs, port-aware, redirects included.

    It replaces scrapy's OffsiteMiddleware, which ignores ports.
    """

    def __init__(self, allowed: tuple[DomainRule, ...], blocked: tuple[DomainRule, ...]) -> None:
        self._allowed = allowed
        self._blocked = blocked

    @classmethod
    def from_crawler(cls, crawler: Crawler) -> GuardMiddleware:
        settings = crawler.settings
        return cls(
            allowed=tuple(DomainRule.parse(d) for d in settings.getlist(ALLOWED_SETTING)),
            blocked=tuple(DomainRule.parse(d) for d in settings.getlist(BLOCKED_SETTING)),
        )

    def process_request(self, request: Request) -> None:
        if url_matches(request.url, self._blocked):
            raise Refused("blocked_domain", "the host is on the worker's blocklist")
        if not url_matches(request.url, self._allowed):
            raise Refused("offsite", "the host is outside the job's allowed domains")


class DataSpider(scrapy.Spider):
    """Fetches the spec's pages, extracts items, follows links up to ``max_depth``."""

    name = "masa-data"

    def __init__(self, job: CrawlJob, writer: LineWriter, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._spec = job.spec
        self._writer = writer
        self._items = 0

    async def start(self) -> AsyncIterator[Request]:
        for url in self._spec.start_urls:
            yield self._request(url)

    def parse(self, response: Response, **kwargs: Any) -> Iterator[dict[str, Any] | Request]:
        if not isinstance(response, TextResponse):
            self._fail(unsupported(response))
            return
        self._writer.write(PageLine(url=response.url))
        yield from self._take(extract_items(response.selector, response.url, self._spec))
        follow = self._spec.follow
        if follow is not None and self._may_follow(response):
            yield from map(self._request, link_urls(response, follow))

    def closed(self, reason: str) -> None:
        self._writer.write(ClosedLine(reason=reason))

    def _may_follow(self, response: Response) -> bool:
        depth: int = response.meta.get("depth", 0)
        return depth < self._spec.max_depth and self._items < self._spec.item_limit

    def _take(self, items: Iterable[DataItem]) -> Iterator[dict[str, Any]]:
        for item in items:
            if self._items >= self._spec.item_limit:
                return
            self._items += 1
            self._writer.write(ItemLine(item=item))
            yield item.model_dump()

    def _request(self, url: str) -> Request:
        return Request(url, callback=self.parse, errback=self._failed)

    def _failed(self, failure: Failure) -> None:
        self._fail(classify(failure))

    def _fail(self, failure: CrawlFailure) -> None:
        self._writer.write(FailureLine(failure=failure))


def extract_items(page: Selector, url: str, spec: DataJobSpec) -> Iterator[DataItem]:
    """The items of one page: one per item node, or the page itself; empty ones skipped."""
    nodes = select(page, spec.item_selector) if spec.item_selector is not None else [page]
    for node in nodes:
        if not etree.iselement(node.root):
            continue
        fields = {name: text_of(node, query) for name, query in spec.fields.items()}
        if any(value is not None for value in fields.values()):
            yield DataItem(source_url=url, fields=fields)


def text_of(node: Selector, query: Query) -> str | None:
    """Whitespace-normalised text of the first match, ``None`` when nothing (or blank) matches."""
    match = next(iter(select(node, query)), None)
    if match is None:
        return None
    raw = match.xpath("string()").get() if etree.iselement(match.root) else match.get()
    return " ".join((raw or "").split()) or None


def link_urls(response: TextResponse, query: Query) -> Iterator[str]:
    """Absolute http(s) URLs of the links ``query`` selects (elements give their ``href``)."""
    for node in select(response.selector, query):
        href = node.attrib.get("href") if etree.iselement(node.root) else node.get()
        url = response.urljoin(href.strip()) if href else ""
        if urlsplit(url).scheme in ("http", "https"):
            yield url


def classify(failure: Failure) -> CrawlFailure:
    """Translate a request's failure into a :class:`CrawlFailure` with a reason code."""
    exc = failure.value
    url: str = failure.request.url  # type: ignore[attr-defined]  # set by scrapy for errbacks
    if isinstance(exc, HttpError):
        status = exc.response.status
        return CrawlFailure(url=url, reason="http_error", detail=f"HTTP {status}", status=status)
    return CrawlFailure(url=url, reason=_reason(exc), detail=str(exc)[:500])


def unsupported(response: Response) -> CrawlFailure:
    """The failure for a response that is not text (an image, a PDF, ...)."""
    content_type = (response.headers.get("Content-Type") or b"").decode("latin-1")
    return CrawlFailure(url=response.url, reason="unsupported_content", detail=content_type)


def _reason(exc: BaseException | None) -> FailureReason:
    if isinstance(exc, Refused):
        return exc.reason
    if isinstance(exc, IgnoreRequest) and str(exc).startswith(_ROBOTS_MESSAGE):
        return "disallowed_by_robots"
    if isinstance(exc, _TIMEOUTS):
        return "timeout"
    if isinstance(exc, _UNREACHABLE):
        return "unreachable"
    return "download_failed"
