"""Data job specs, domain rules with ports, and extraction from a page (no network)."""

from __future__ import annotations

from typing import Any

import pytest
from parsel import Selector
from pydantic import ValidationError
from scrapy.http import HtmlResponse

from indexer.events.specs import DomainRule, url_matches
from workers.scraping import DataItem, DataJobSpec, Query, items_digest
from workers.scraping.spider import extract_items, link_urls, text_of

PAGE = """<html><body>
<article><h1>  Hello
   world </h1><a class="more" href="/next">next</a><span class="empty">  </span></article>
<ul><li class="p"><b>A</b><i>1</i></li><li class="p"><b>B</b></li><li class="p"></li></ul>
<a href="mailto:x@y.z">mail</a><a href="https://other.io/x#frag">other</a><a>no href</a>
</body></html>"""


def spec(**overrides: Any) -> DataJobSpec:
    fields: dict[str, Any] = {"start_urls": ["http://s.io/"], "fields": {"t": {"css": "h1"}}}
    return DataJobSpec(**{**fields, **overrides})


# -- spec ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "query",
    [{}, {"css": "h1", "xpath": "//h1"}, {"css": "h1["}, {"xpath": "//h1["}, {"xpath": "x:y"}],
)
def test_a_query_is_exactly_one_valid_selector(query: dict[str, str]) -> None:
    with pytest.raises(ValidationError):
        Query.model_validate(query)


@pytest.mark.parametrize(
    "overrides",
    [
        {"start_urls": []},
        {"start_urls": ["ftp://s.io/"]},
        {"start_urls": ["http:///x"]},
        {"start_urls": ["http://s.io:99999/"]},
        {"start_urls": [f"http://s.io/{n}" for n in range(51)]},
        {"fields": {}},
        {"fields": {"bad name": {"css": "h1"}}},
        {"max_depth": 6},
        {"item_limit": 0},
        {"allowed_domains": ["s.io/path"]},
        {"allowed_domains": ["other.io"]},  # the start URL would be offsite
        {"unknown": 1},
    ],
)
def test_invalid_specs_are_refused(overrides: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        spec(**overrides)


def test_allowed_domains_default_to_the_start_hosts_with_their_ports() -> None:
    job = spec(start_urls=["http://127.0.0.1:8001/a", "https://S.io/", "http://127.0.0.1:8001/b"])
    assert job.domain_rules == (DomainRule("127.0.0.1", 8001), DomainRule("s.io"))


def test_allowed_domains_are_normalised() -> None:
    assert spec(allowed_domains=["S.IO", "[::1]:8080"]).allowed_domains == ["s.io", "[::1]:8080"]


# -- domain rules --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("rule", "url", "covered"),
    [
        ("s.io", "http://s.io/", True),
        ("s.io", "https://www.s.io:8443/", True),
        ("s.io", "http://nots.io/", False),
        ("127.0.0.1:8001", "http://127.0.0.1:8001/x", True),
        ("127.0.0.1:8001", "http://127.0.0.1:8002/x", False),
        ("127.0.0.1:8001", "http://127.0.0.1/x", False),
        ("s.io:80", "http://s.io/", True),
        ("s.io:443", "https://s.io/", True),
        ("s.io:80", "https://s.io/", False),
    ],
)
def test_domain_rules_compare_hosts_and_ports(rule: str, url: str, covered: bool) -> None:
    assert url_matches(url, [DomainRule.parse(rule)]) is covered


# -- extraction ----------------------------------------------------------------------------


def test_text_is_whitespace_normalised_and_blank_is_none() -> None:
    page = Selector(text=PAGE)
    assert text_of(page, Query(css="h1")) == "Hello world"
    assert text_of(page, Query(xpath="//a[@class='more']/@href")) == "/next"
    assert text_of(page, Query(css=".empty")) is None
    assert text_of(page, Query(css="h2")) is None


def test_a_page_is_one_item_unless_an_item_selector_splits_it() -> None:
    page = Selector(text=PAGE)
    whole = list(extract_items(page, "http://s.io/", spec()))
    assert whole == [DataItem(source_url="http://s.io/", fields={"t": "Hello world"})]
    fields = {"name": {"css": "b"}, "n": {"xpath": ".//i"}}
    split = list(
        extract_items(page, "http://s.io/", spec(item_selector={"css": "li.p"}, fields=fields))
    )
    assert [item.fields for item in split] == [{"name": "A", "n": "1"}, {"name": "B", "n": None}]


def test_links_are_absolute_http_urls() -> None:
    response = HtmlResponse(url="http://s.io/dir/page", body=PAGE.encode(), encoding="utf-8")
    assert list(link_urls(response, Query(css="a"))) == [
        "http://s.io/next",
        "https://other.io/x#frag",
    ]
    assert list(link_urls(response, Query(xpath="//a[@class='more']/@href"))) == [
        "http://s.io/next"
    ]


def test_digest_covers_order_and_content() -> None:
    a = DataItem(source_url="http://s.io/a", fields={"t": "x"})
    b = DataItem(source_url="http://s.io/b", fields={"t": None})
    assert items_digest([a, b]) != items_digest([b, a])
    assert items_digest([a]) != items_digest([DataItem(source_url=a.source_url, fields={"t": "y"})])
    assert (
        items_digest([])
        == "0x" + "518674ab2b227e5f11e9084f615d57663cde47bce1ba168b4c19c7ee22a73d70"
    )
