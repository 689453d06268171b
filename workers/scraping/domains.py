"""Domain rules with ports: which URLs a crawl may fetch, and which it must never fetch.

A rule is ``host`` or ``host:port``. ``host`` covers that host and its subdomains on any
port (scrapy's ``allowed_domains`` semantics); ``host:port`` covers them on that port only,
comparing with the URL's effective port (80 for http, 443 for https when none is written).
Scrapy's own offsite filter ignores ports, so ``127.0.0.1:8001`` would let a crawl wander to
every other service on 127.0.0.1; these rules are enforced instead.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from urllib.parse import SplitResult, urlsplit

DEFAULT_PORTS = {"http": 80, "https": 443}


@dataclass(frozen=True)
class DomainRule:
    """One ``host`` or ``host:port`` rule."""

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
