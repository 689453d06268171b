"""Job specs: what a ``RequestSubmitted`` asks a worker to do, one model per request kind.

They belong to the event contract: ingest rejects a request whose ``spec`` does not validate
against the model of its ``kind`` (``bad_payload``), so workers only ever see valid specs.
The spec travels as the JSON the oracle signed; these models read it, they never rewrite it.

``data``  :class:`DataJobSpec`: a crawl (start URLs, domains, depth, selectors, item limit).
``llm``   :class:`LlmJobSpec`: a prompt or chat messages for one model, with decoding
          parameters and ``data_refs``: the ``source_url`` of each item from earlier data
          jobs that the request's context was built from (attributed in ``DataUsed``).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Annotated, Any, Literal
from urllib.parse import SplitResult, urlsplit

from cssselect import SelectorError
from parsel import Selector
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    model_validator,
)

# --- domain rules ---------------------------------------------------------------------------

DEFAULT_PORTS = {"http": 80, "https": 443}


@dataclass(frozen=True)
class DomainRule:
    """One ``host`` or ``host:port`` rule.

    ``host`` covers that host and its subdomains on any port (scrapy's ``allowed_domains``
    semantics); ``host:port`` covers them on that port only, comparing with the URL's
    effective port (80 for http, 443 for https when none is written). Scrapy's own offsite
    filter ignores ports, so ``127.0.0.1:8001`` would let a crawl wander to every other
    service on 127.0.0.1; these rules are enforced instead.
    """

    host: str
    port: int | None = None

    @classmethod
    def parse(cls, text: str) -> DomainRule:
        """Parse ``host`` or ``host:port``; ``ValueError`` for anything else."""
        parts = urlsplit(f"//{text.strip()}")
        if not parts.hostname or parts.netloc != text.strip() or "@" in parts.netloc:
            raise ValueError(f"not a host or host:port: {text!r}")
        return cls(host=parts.hostname, port=parts.port)

    @classmethod
    def of_url(cls, url: str) -> DomainRule:
        """The rule naming the host of ``url``, with its port when the URL writes one."""
        parts = urlsplit(url)
        if not parts.hostname:
            raise ValueError(f"URL has no host: {url!r}")
        return cls(host=parts.hostname, port=parts.port)

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return host if self.port is None else f"{host}:{self.port}"

    def covers(self, parts: SplitResult) -> bool:
        """Whether the split URL ``parts`` is on this host (or a subdomain) and port."""
        host = parts.hostname or ""
        if host != self.host and not host.endswith(f".{self.host}"):
            return False
        return self.port is None or effective_port(parts) == self.port


def effective_port(parts: SplitResult) -> int | None:
    """The URL's port, or its scheme's default; ``None`` for a malformed port."""
    try:
        return parts.port or DEFAULT_PORTS.get(parts.scheme)
    except ValueError:
        return None


def url_matches(url: str, rules: Iterable[DomainRule]) -> bool:
    """Whether any rule covers ``url``."""
    parts = urlsplit(url)
    return any(rule.covers(parts) for rule in rules)


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


# --- data jobs ------------------------------------------------------------------------------


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
            _check_selector(self.css, self.xpath)
        except (ValueError, SelectorError) as exc:
            raise ValueError(f"invalid selector: {exc}") from exc
        return self


_EMPTY_PAGE = Selector(text="<html></html>")


def _check_selector(css: str | None, xpath: str | None) -> None:
    """Compile the selector with the grammar the workers run it with (parsel's): syntax,
    unknown functions, unbound prefixes. Running it on a page is the workers' business
    (``workers.scraping.spider.select``); ingest must still reject what they cannot run."""
    if css is not None:
        _EMPTY_PAGE.css(css)
    else:
        _EMPTY_PAGE.xpath(xpath or "")


class DataJobSpec(BaseModel):
    """A crawl: where to start, how far to go, and what to extract from each page.

    ``allowed_domains`` holds ``host`` or ``host:port`` rules (see :class:`DomainRule`);
    left empty it is the hosts of ``start_urls``, with their ports when written.
    ``max_depth`` counts link hops from a start URL (0: start pages only). Without
    ``item_selector`` a page is one item; a node whose fields are all empty yields no
    item. ``follow`` selects links (``<a>`` elements or href strings).
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


# --- LLM jobs -------------------------------------------------------------------------------


class ChatMessage(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    role: Literal["system", "user", "assistant"]
    content: str


class LlmJobSpec(BaseModel):
    """An LLM request: a plain ``prompt`` or chat ``messages``, exactly one of the two.

    ``temperature`` 0 with a ``seed`` decodes deterministically. ``data_refs`` name the
    data items the oracle retrieved into the prompt, by their ``source_url`` (as a data
    job's ``DataItem`` carries it); the worker attributes each distinct one to the source
    registered for it.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    model: str = Field(min_length=1, description="the model name the request asks for")
    prompt: str | None = Field(default=None, min_length=1)
    messages: list[ChatMessage] | None = Field(default=None, min_length=1)
    max_tokens: int = Field(ge=1, le=4096)
    temperature: float = Field(default=0.0, ge=0.0)
    seed: int | None = None
    data_refs: list[HttpUrl] = Field(
        default_factory=list,
        max_length=1000,
        description="source URLs of the data items the prompt was built from",
    )

    @model_validator(mode="after")
    def _one_input(self) -> LlmJobSpec:
        if (self.prompt is None) == (self.messages is None):
            raise ValueError("give exactly one of prompt and messages")
        return self


# --- by kind --------------------------------------------------------------------------------

JobSpec = DataJobSpec | LlmJobSpec
SPEC_MODELS: dict[str, type[DataJobSpec] | type[LlmJobSpec]] = {
    "data": DataJobSpec,
    "llm": LlmJobSpec,
}


def parse_spec(kind: str, spec: dict[str, Any]) -> JobSpec:
    """The spec of a request of ``kind``; pydantic's ``ValidationError`` when it is invalid."""
    return SPEC_MODELS[kind].model_validate(spec)
