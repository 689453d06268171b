"""Attribution of scraped items to registered data sources (pure)."""

from __future__ import annotations

import random
from urllib.parse import urlsplit

import pytest
from hypothesis import given
from hypothesis import strategies as st

from workers.scraping import DataItem, DataUse, attribute, parse_source_pattern

ALICE = "0x" + "a1" * 20
BOB = "0x" + "b2" * 20
CAROL = "0x" + "c3" * 20
PORTS = {"http": 80, "https": 443}


def item(url: str) -> DataItem:
    return DataItem(source_url=url, fields={"title": "t"})


def uses(urls: list[str], sources: dict[str, str]) -> list[tuple[str, str, int]]:
    return [(u.source, u.contributor, u.units) for u in attribute(map(item, urls), sources)]


# -- examples -------------------------------------------------------------------------------


def test_prefix_matches_at_segment_boundaries_only() -> None:
    urls = ["http://s.io/blog", "http://s.io/blog/", "http://s.io/blog/a", "http://s.io/blogger"]
    assert uses(urls, {"http://s.io/blog": ALICE}) == [("http://s.io/blog", ALICE, 3)]


def test_trailing_slash_on_the_pattern_is_the_same_prefix() -> None:
    urls = ["http://s.io/blog", "http://s.io/blog/x", "http://s.io/blogger"]
    assert uses(urls, {"http://s.io/blog/": ALICE}) == [("http://s.io/blog/", ALICE, 2)]


@pytest.mark.parametrize("root", ["http://s.io", "http://s.io/"])
def test_root_pattern_matches_the_whole_origin(root: str) -> None:
    urls = ["http://s.io", "http://s.io/", "http://s.io/a/b?q=1#f"]
    assert uses(urls, {root: ALICE}) == [(root, ALICE, 3)]


def test_longest_prefix_wins() -> None:
    sources = {"http://s.io/": ALICE, "http://s.io/a": BOB, "http://s.io/a/b": CAROL}
    urls = [
        "http://s.io/x",
        "http://s.io/a",
        "http://s.io/a/c",
        "http://s.io/a/b/c",
        "http://s.io/a/bc",
    ]
    assert uses(urls, sources) == [
        ("http://s.io/", ALICE, 1),
        ("http://s.io/a", BOB, 3),
        ("http://s.io/a/b", CAROL, 1),
    ]


def test_origin_must_match_exactly() -> None:
    sources = {"http://s.io/": ALICE}
    urls = ["https://s.io/", "http://s.io:8080/", "http://www.s.io/", "http://s.iox/"]
    assert uses(urls, sources) == []


def test_default_port_and_host_case_are_normalised() -> None:
    sources = {"http://S.io:80/Docs": ALICE, "https://s.io/": BOB}
    urls = ["http://s.io/Docs/1", "HTTP://s.IO/Docs", "https://s.io:443/x", "http://s.io/docs"]
    assert uses(urls, sources) == [("http://S.io:80/Docs", ALICE, 2), ("https://s.io/", BOB, 1)]


def test_ports_are_compared_for_local_sites() -> None:
    sources = {"http://127.0.0.1:8001/": ALICE, "http://127.0.0.1:8002/": BOB}
    urls = ["http://127.0.0.1:8001/a", "http://127.0.0.1:8002/a", "http://127.0.0.1/a"]
    assert uses(urls, sources) == [
        ("http://127.0.0.1:8001/", ALICE, 1),
        ("http://127.0.0.1:8002/", BOB, 1),
    ]


def test_equivalent_patterns_resolve_to_the_smallest_string() -> None:
    sources = {"http://s.io/a/": BOB, "http://s.io:80/a": CAROL, "http://s.io/a": ALICE}
    assert uses(["http://s.io/a/1"], sources) == [("http://s.io/a", ALICE, 1)]


def test_unmatched_and_malformed_item_urls_are_not_attributed() -> None:
    assert uses(["ftp://s.io/a", "http://s.io:99999/a", "not a url"], {"http://s.io/": ALICE}) == []


def test_results_are_sorted_by_source_and_typed() -> None:
    result = attribute(
        [item("http://b.io/"), item("http://a.io/")], {"http://b.io": BOB, "http://a.io": ALICE}
    )
    assert result == [
        DataUse(source="http://a.io", contributor=ALICE, units=1),
        DataUse(source="http://b.io", contributor=BOB, units=1),
    ]


def test_no_items_no_uses() -> None:
    assert attribute([], {"http://s.io/": ALICE}) == []


@pytest.mark.parametrize(
    "pattern",
    [
        "s.io/a",
        "ftp://s.io/",
        "http:///a",
        "http://s.io/a?x=1",
        "http://s.io/#f",
        "http://u@s.io/",
        "http://s.io:x/",
    ],
)
def test_malformed_patterns_are_refused(pattern: str) -> None:
    with pytest.raises(ValueError, match="source pattern"):
        parse_source_pattern(pattern)
    with pytest.raises(ValueError, match="source pattern"):
        attribute([], {pattern: ALICE})


# -- properties against a literal reading of the rules ----------------------------------------

SEGMENTS = st.lists(st.sampled_from(["a", "b", "ab", "A", ""]), max_size=4)
ORIGINS = st.tuples(
    st.sampled_from(["http", "https"]),
    st.sampled_from(["s.io", "S.io", "t.io"]),
    st.sampled_from(["", ":80", ":443", ":8080"]),
)


@st.composite
def urls(draw: st.DrawFn, *, query: bool) -> str:
    scheme, host, port = draw(ORIGINS)
    path = "/".join(["", *draw(SEGMENTS)]) + draw(st.sampled_from(["", "/"]))
    tail = draw(st.sampled_from(["", "?q=1", "#f"])) if query else ""
    return f"{scheme}://{host}{port}{path}{tail}"


ITEM_URLS = st.lists(urls(query=True), max_size=30)
SOURCES = st.dictionaries(urls(query=False), st.sampled_from([ALICE, BOB, CAROL]), max_size=8)


def _origin(url: str) -> tuple[str, str | None, int | None]:
    parts = urlsplit(url)
    return parts.scheme, parts.hostname, parts.port or PORTS[parts.scheme]


def _literal_match(url: str, pattern: str) -> bool:
    prefix = urlsplit(pattern).path.rstrip("/")
    path = urlsplit(url).path
    return _origin(url) == _origin(pattern) and (path == prefix or path.startswith(prefix + "/"))


def _reference(item_urls: list[str], sources: dict[str, str]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for url in item_urls:
        matching = [p for p in sources if _literal_match(url, p)]
        if matching:
            best = min(matching, key=lambda p: (-len(urlsplit(p).path.rstrip("/")), p))
            counts[best] = counts.get(best, 0) + 1
    return counts


@given(ITEM_URLS, SOURCES)
def test_units_sum_to_the_number_of_matched_items(
    item_urls: list[str], sources: dict[str, str]
) -> None:
    matched = sum(any(_literal_match(url, p) for p in sources) for url in item_urls)
    assert sum(use.units for use in attribute(map(item, item_urls), sources)) == matched


@given(ITEM_URLS, SOURCES)
def test_agrees_with_the_literal_rules(item_urls: list[str], sources: dict[str, str]) -> None:
    result = attribute(map(item, item_urls), sources)
    assert {use.source: use.units for use in result} == _reference(item_urls, sources)
    assert [use.source for use in result] == sorted(use.source for use in result)
    assert all(use.contributor == sources[use.source] for use in result)


@given(urls(query=True))
def test_the_longest_of_nested_prefixes_wins(url: str) -> None:
    parts = urlsplit(url)
    segments = parts.path.rstrip("/").split("/")
    origin = f"{parts.scheme}://{parts.netloc}"
    nested = {origin + "/".join(segments[:n]): f"0x{n:040x}" for n in range(1, len(segments) + 1)}
    longest = origin + "/".join(segments)
    assert uses([url], nested) == [(longest, nested[longest], 1)]


@given(ITEM_URLS, SOURCES, st.randoms(use_true_random=False))
def test_independent_of_item_and_source_order(
    item_urls: list[str], sources: dict[str, str], rnd: random.Random
) -> None:
    shuffled_urls = rnd.sample(item_urls, len(item_urls))
    shuffled_sources = dict(rnd.sample(sorted(sources.items()), len(sources)))
    assert attribute(map(item, shuffled_urls), shuffled_sources) == attribute(
        map(item, item_urls), sources
    )
