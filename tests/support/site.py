"""A small website served on 127.0.0.1 (random port) for the scraping tests.

``/``                 index: links to the listing, every article, /private/secret, /slow,
                      /error, /logo.png, the same site as ``localhost`` and ``extra_links``
``/articles/``        listing: links to every article
``/articles/<k>``     an article (title, author, body), links to its notes and home
``/articles/<k>/notes`` notes on the article (one more hop)
``/list``             three products in ``li.product`` and one empty ``li.product``
``/private/secret``   an article, disallowed by robots.txt
``/slow``             answers after ``SLOW_S`` seconds
``/error``            500
``/logo.png``         not text
``/away``             302 to ``/articles/2`` on ``localhost``
Every request is logged as a :class:`Hit` so tests can assert what was never fetched.
"""

from __future__ import annotations

import socket
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import NamedTuple

from workers.scraping import DataItem

SLOW_S = 3.0
ROBOTS_TXT = "User-agent: *\nDisallow: /private/\n"


class Hit(NamedTuple):
    host: str  # the Host header, with the port
    path: str


@dataclass
class Site:
    """A running site: its base URL and the log of requests it received."""

    port: int
    articles: int
    extra_links: Sequence[str]
    hits: list[Hit] = field(default_factory=list)

    def url(self, path: str = "/") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def paths(self) -> list[str]:
        return [hit.path for hit in self.hits]

    def article(self, k: int) -> DataItem:
        """The item a crawl with the article fields makes of ``/articles/k``."""
        fields: dict[str, str | None] = {
            "title": f"Article {k}",
            "author": f"Author {k}",
            "body": f"Body of article {k}. More.",
        }
        return DataItem(source_url=self.url(f"/articles/{k}"), fields=fields)


def _page(title: str, body: str) -> str:
    return f"<!doctype html><html><head><title>{title}</title></head><body>{body}</body></html>"


def _links(hrefs: Sequence[str]) -> str:
    return "".join(f'<a href="{href}">{href}</a> ' for href in hrefs)


def _article(title: str, author: str, text: str, links: Sequence[str]) -> str:
    body = (
        f'<article><h1> {title} </h1><p class="author">{author}</p>'
        f'<div class="body"><p>{text}</p>\n<p>More.</p></div></article>'
    )
    return _page(title, body + _links(links))


def _index(site: Site) -> str:
    articles = [f"/articles/{k}" for k in range(1, site.articles + 1)]
    others = ["/articles/", "/private/secret", "/slow", "/error", "/logo.png", "mailto:x@y.z"]
    localhost = f"http://localhost:{site.port}/articles/1"
    return _page(
        "Index", "<h2>Index</h2>" + _links([*others, *articles, localhost, *site.extra_links])
    )


def _listing(site: Site) -> str:
    return _page("Articles", _links([f"/articles/{k}" for k in range(1, site.articles + 1)]))


def _products() -> str:
    rows = "".join(
        f'<li class="product"><span class="name">Widget {name}</span>'
        f'<span class="price">{price}</span></li>'
        for name, price in (("A", "1.00"), ("B", "2.50"), ("C", "9.99"))
    )
    return _page("Products", f'<ul>{rows}<li class="product"></li></ul>')


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def do_GET(self) -> None:
        site = self.server.site
        site.hits.append(Hit(self.headers.get("Host", ""), self.path))
        status, content_type, body = _route(site, self.path)
        if status == 302:
            self.send_response(302)
            self.send_header("Location", body)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        data = body.encode()
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: object) -> None:
        """Quiet."""


HTML = "text/html; charset=utf-8"
Route = tuple[int, str, str]


def _route(site: Site, path: str) -> Route:
    fixed: dict[str, Callable[[], Route]] = {
        "/": lambda: (200, HTML, _index(site)),
        "/articles/": lambda: (200, HTML, _listing(site)),
        "/robots.txt": lambda: (200, "text/plain", ROBOTS_TXT),
        "/list": lambda: (200, HTML, _products()),
        "/private/secret": lambda: (200, HTML, _article("Secret", "Nobody", "hidden", [])),
        "/slow": _slow,
        "/error": lambda: (500, HTML, _page("Error", "<h1>Server error</h1>")),
        "/logo.png": lambda: (200, "image/png", "\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR"),
        "/away": lambda: (302, "", f"http://localhost:{site.port}/articles/2"),
    }
    if path in fixed:
        return fixed[path]()
    return _article_route(site, path)


def _slow() -> Route:
    time.sleep(SLOW_S)
    return 200, HTML, _article("Slow", "Sloth", "late", [])


def _article_route(site: Site, path: str) -> Route:
    parts = path.strip("/").split("/")
    if parts[0] != "articles" or len(parts) not in (2, 3) or not parts[1].isdigit():
        return 404, HTML, _page("Not found", "")
    k = int(parts[1])
    if not 1 <= k <= site.articles or (len(parts) == 3 and parts[2] != "notes"):
        return 404, HTML, _page("Not found", "")
    if len(parts) == 3:
        return 200, HTML, _article(f"Notes on article {k}", "Editor", f"Notes {k}.", [])
    text = f"Body of article {k}."
    return 200, HTML, _article(f"Article {k}", f"Author {k}", text, [f"{path}/notes", "/"])


class _Server(ThreadingHTTPServer):
    daemon_threads = True  # the slow handler must not hold up shutdown

    def __init__(self, site: Site) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.site = site
        site.port = self.server_address[1]

    def handle_error(self, request: object, client_address: object) -> None:
        """The crawler hangs up on /slow: expected, not worth a traceback."""
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)  # type: ignore[arg-type]


@contextmanager
def serve_site(articles: int = 3, extra_links: Sequence[str] = ()) -> Iterator[Site]:
    """Serve the site in a background thread for the duration of the block."""
    site = Site(port=0, articles=articles, extra_links=extra_links)
    server = _Server(site)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield site
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def closed_port() -> int:
    """A port on 127.0.0.1 with nothing listening (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])
