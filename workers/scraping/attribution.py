"""Which registered data sources a job's items came from (pure).

A source pattern is a URL prefix ``scheme://host[:port]/path-prefix`` (http or https; no
query, fragment or user info). An item's ``source_url`` matches a pattern when

* scheme and host are equal (the host case-insensitively; subdomains do not match),
* the effective ports are equal (a missing port is the scheme's default: ``http://a`` and
  ``http://a:80`` are the same source), and
* the pattern's path is a prefix of the URL's path **at a segment boundary**: ``/blog``
  (or ``/blog/``) matches ``/blog``, ``/blog/`` and ``/blog/post``, never ``/blogger``; an
  empty path or ``/`` matches the whole origin. Paths compare case-sensitively, as written
  (write patterns percent-encoded, as URLs are); the URL's query and fragment are ignored.

Among matching patterns the longest path wins; patterns that normalise to the same prefix
are resolved to the smallest pattern string, so the result never depends on the order of
``sources``. Items matching no pattern are not attributed.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Iterator, Mapping
from urllib.parse import SplitResult, urlsplit

from indexer.events.specs import effective_port
from indexer.events.types import DataUse
from workers.scraping.spec import DataItem

Origin = tuple[str, str, int]  # scheme, lower-case host, effective port
Prefix = tuple[Origin, str]  # origin, path without trailing slashes ("" for the root)


def attribute(items: Iterable[DataItem], sources: Mapping[str, str]) -> list[DataUse]:
    """Count items per longest matching source pattern, sorted by pattern.

    ``sources`` maps a registered pattern to its contributor's address. Raises
    ``ValueError`` naming the first malformed pattern.
    """
    index = _index(sources)
    counts = Counter(
        pattern for item in items if (pattern := _longest_match(item.source_url, index)) is not None
    )
    return [
        DataUse(source=pattern, contributor=sources[pattern], units=units)
        for pattern, units in sorted(counts.items())
    ]


def parse_source_pattern(pattern: str) -> Prefix:
    """The normalised prefix of a source pattern; ``ValueError`` when malformed."""
    parts = urlsplit(pattern)
    origin = _origin(parts)
    if origin is None or parts.query or parts.fragment or "@" in parts.netloc:
        raise ValueError(f"not a source pattern (scheme://host[:port]/path): {pattern!r}")
    return origin, parts.path.rstrip("/")


def _index(sources: Mapping[str, str]) -> dict[Prefix, str]:
    index: dict[Prefix, str] = {}
    for pattern in sorted(sources, reverse=True):  # the smallest pattern is written last
        index[parse_source_pattern(pattern)] = pattern
    return index


def _longest_match(url: str, index: Mapping[Prefix, str]) -> str | None:
    parts = urlsplit(url)
    origin = _origin(parts)
    if origin is None:
        return None
    return next(
        (index[key] for key in _candidates(origin, parts.path) if key in index),
        None,
    )


def _candidates(origin: Origin, path: str) -> Iterator[Prefix]:
    """Every segment-boundary prefix of ``path``, longest first, down to the root ``""``."""
    prefix = path.rstrip("/")
    while True:
        yield origin, prefix
        if not prefix:
            return
        prefix = prefix.rpartition("/")[0]


def _origin(parts: SplitResult) -> Origin | None:
    port = effective_port(parts)
    if parts.scheme not in ("http", "https") or not parts.hostname or port is None:
        return None
    return parts.scheme, parts.hostname, port
