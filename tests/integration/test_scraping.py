"""Data jobs against a real site on 127.0.0.1: scrapy in a subprocess, end to end."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest

from masa.errors import JobError
from tests.support.site import Site, closed_port, serve_site
from workers.scraping import (
    DataJobResult,
    DataJobSpec,
    DataUse,
    attribute,
    items_digest,
    run_data_job,
)

ALICE = "0x" + "a1" * 20
BOB = "0x" + "b2" * 20
CAROL = "0x" + "c3" * 20
ARTICLE_FIELDS = {
    "title": {"css": "article h1"},
    "author": {"css": ".author::text"},
    "body": {"xpath": "//div[@class='body']"},
}
FAST = {"download_timeout_s": 1.0, "download_delay_s": 0.02}


def spec(*start_urls: str, **overrides: Any) -> DataJobSpec:
    fields: dict[str, Any] = {"fields": ARTICLE_FIELDS, "follow": {"css": "a"}, **overrides}
    return DataJobSpec(start_urls=list(start_urls), **fields)


def run(job: DataJobSpec, **overrides: Any) -> DataJobResult:
    return run_data_job(job, **{"timeout_s": 60.0, **FAST, **overrides})


def new_paths(site: Site, since: int) -> set[str]:
    return {hit.path for hit in site.hits[since:]}


@pytest.fixture(scope="module")
def other_site() -> Iterator[Site]:
    """Another service on 127.0.0.1, on another port: never to be crawled."""
    with serve_site() as site:
        yield site


@pytest.fixture(scope="module")
def site(other_site: Site) -> Iterator[Site]:
    with serve_site(extra_links=[other_site.url("/articles/1")]) as served:
        yield served
        assert not [hit for hit in served.hits if hit.path.startswith("/private/")]


@pytest.fixture(scope="module")
def full_crawl(site: Site) -> DataJobResult:
    """The index and everything one hop away: articles, robots-disallowed, slow, 500, ..."""
    return run(spec(site.url("/"), max_depth=1))


def test_items_carry_their_source_urls(site: Site, full_crawl: DataJobResult) -> None:
    assert full_crawl.items == [site.article(k) for k in (1, 2, 3)]
    assert full_crawl.pages_fetched == 5  # /, /articles/ and three articles
    assert full_crawl.stopped == "finished"


def test_every_failure_is_reported_with_its_reason(
    site: Site, other_site: Site, full_crawl: DataJobResult
) -> None:
    reported = {(f.url, f.reason, f.status) for f in full_crawl.failures}
    assert reported == {
        (site.url("/private/secret"), "disallowed_by_robots", None),
        (site.url("/slow"), "timeout", None),
        (site.url("/error"), "http_error", 500),
        (site.url("/logo.png"), "unsupported_content", None),
        (f"http://localhost:{site.port}/articles/1", "offsite", None),
        (other_site.url("/articles/1"), "offsite", None),
    }


def test_disallowed_and_offsite_pages_are_never_fetched(
    site: Site, other_site: Site, full_crawl: DataJobResult
) -> None:
    assert "/robots.txt" in site.paths()
    assert "/private/secret" not in site.paths()
    assert {hit.host for hit in site.hits} == {f"127.0.0.1:{site.port}"}
    assert other_site.hits == []  # same host, other port: offsite


def test_depth_zero_fetches_the_start_page_only(site: Site) -> None:
    since = len(site.hits)
    result = run(spec(site.url("/articles/1"), max_depth=0))
    assert result.items == [site.article(1)]
    assert new_paths(site, since) == {"/robots.txt", "/articles/1"}


def test_depth_limit_is_respected(site: Site) -> None:
    since = len(site.hits)
    result = run(spec(site.url("/articles/"), max_depth=2))
    notes = [item.source_url for item in result.items if item.source_url.endswith("/notes")]
    assert len(result.items) == 6
    assert notes == [site.url(f"/articles/{k}/notes") for k in (1, 2, 3)]
    # "/" is two hops away and fetched; its links (/slow, /error, ...) are three
    assert new_paths(site, since) == {
        "/robots.txt",
        "/articles/",
        "/",
        *(f"/articles/{k}" for k in (1, 2, 3)),
        *(f"/articles/{k}/notes" for k in (1, 2, 3)),
    }


def test_item_limit_is_respected(site: Site) -> None:
    result = run(spec(site.url("/articles/"), max_depth=2, item_limit=2))
    assert len(result.items) == 2
    assert result.stopped == "item_limit"


def test_item_selector_yields_one_item_per_node(site: Site) -> None:
    fields = {"name": {"css": ".name"}, "price": {"xpath": ".//span[@class='price']/text()"}}
    job = spec(site.url("/list"), max_depth=0, item_selector={"css": "li.product"}, fields=fields)
    result = run(job)
    assert [item.fields for item in result.items] == [  # the empty <li> yields nothing
        {"name": "Widget A", "price": "1.00"},
        {"name": "Widget B", "price": "2.50"},
        {"name": "Widget C", "price": "9.99"},
    ]
    assert {item.source_url for item in result.items} == {site.url("/list")}


def test_unreachable_site_fails_the_job() -> None:
    with pytest.raises(JobError) as raised:
        run(spec(f"http://127.0.0.1:{closed_port()}/"))
    assert raised.value.reason == "unreachable"


def test_start_page_disallowed_by_robots_fails_the_job(site: Site) -> None:
    with pytest.raises(JobError) as raised:
        run(spec(site.url("/private/secret")))
    assert raised.value.reason == "disallowed_by_robots"


def test_blocked_start_url_is_refused_before_anything_is_fetched(site: Site) -> None:
    since = len(site.hits)
    with pytest.raises(JobError) as raised:
        run(spec(site.url("/")), blocked_domains=["127.0.0.1"])
    assert raised.value.reason == "blocked_domain"
    assert site.hits[since:] == []


def test_redirect_to_a_blocked_domain_is_not_followed(site: Site) -> None:
    allowed = [f"127.0.0.1:{site.port}", f"localhost:{site.port}"]
    job = spec(site.url("/away"), site.url("/articles/1"), max_depth=0, allowed_domains=allowed)
    result = run(job, blocked_domains=["localhost"])
    assert result.items == [site.article(1)]
    assert [(f.url, f.reason) for f in result.failures] == [
        (f"http://localhost:{site.port}/articles/2", "blocked_domain")
    ]
    assert all(hit.host.startswith("127.0.0.1:") for hit in site.hits)


def test_digest_is_reproducible(site: Site) -> None:
    job = spec(site.url("/articles/"), max_depth=2)
    first, second = run(job), run(job)
    assert first.items == second.items
    assert first.digest == second.digest == items_digest(first.items)
    assert first.digest.startswith("0x") and len(first.digest) == 66


def test_scraped_items_are_attributed_to_registered_contributors(
    site: Site, other_site: Site, full_crawl: DataJobResult
) -> None:
    sources = {
        site.url("/articles"): ALICE,
        site.url("/articles/2"): BOB,
        other_site.url("/"): CAROL,
    }
    assert attribute(full_crawl.items, sources) == [
        DataUse(source=site.url("/articles"), contributor=ALICE, units=2),
        DataUse(source=site.url("/articles/2"), contributor=BOB, units=1),
    ]


def test_twenty_pages() -> None:
    with serve_site(articles=20) as site:
        result = run(spec(site.url("/articles/"), max_depth=1))
    assert result.pages_fetched == 21
    assert len(result.items) == 20


def test_deadline_kills_the_crawl_and_keeps_what_it_found() -> None:
    with serve_site(articles=20) as site:
        started = time.monotonic()
        result = run(spec(site.url("/articles/"), max_depth=1), timeout_s=5.0, download_delay_s=0.5)
    assert time.monotonic() - started < 7.0
    assert result.stopped == "deadline"
    assert 0 < len(result.items) < 20
    assert result.digest == items_digest(result.items)


def test_deadline_before_any_page_fails_as_timeout(site: Site) -> None:
    started = time.monotonic()
    with pytest.raises(JobError) as raised:
        run(spec(site.url("/slow"), max_depth=0), timeout_s=2.0, download_timeout_s=10.0)
    assert raised.value.reason == "timeout"
    assert time.monotonic() - started < 4.0
