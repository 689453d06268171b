"""A small website on 127.0.0.1 for ``masa demo``'s data jobs: an index, articles from two
sections, and a ``/private/`` path that robots.txt forbids."""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

SECTIONS = {"science": 4, "markets": 3}


def _page(title: str, body: str) -> bytes:
    return f"<html><head><title>{title}</title></head><body>{body}</body></html>".encode()


def _pages() -> dict[str, bytes]:
    links = "".join(
        f'<li><a href="/{section}/{n}.html">{section} {n}</a></li>'
        for section, count in SECTIONS.items()
        for n in range(1, count + 1)
    )
    pages = {
        "/robots.txt": b"User-agent: *\nDisallow: /private/\n",
        "/index.html": _page(
            "Masa demo news", f'<ul>{links}</ul><a href="/private/notes.html">notes</a>'
        ),
        "/private/notes.html": _page("private", "<h1>not for crawlers</h1>"),
    }
    for section, count in SECTIONS.items():
        for n in range(1, count + 1):
            lede = f'<p class="lede">Story {n} of the {section} desk.</p>'
            body = f"<h1>{section.title()} story {n}</h1>{lede}"
            pages[f"/{section}/{n}.html"] = _page(f"{section} {n}", body)
    return pages


class DemoSite:
    """Serves the pages until ``close``; records every path requested."""

    def __init__(self) -> None:
        pages = _pages()
        requested: list[str] = []

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                requested.append(self.path)
                page = pages.get(self.path)
                self.send_response(200 if page else 404)
                self.send_header(
                    "Content-Type", "text/plain" if self.path.endswith(".txt") else "text/html"
                )
                self.end_headers()
                self.wfile.write(page or b"not found")

            def log_message(self, *_: object) -> None:
                pass

        self.requested = requested
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def __enter__(self) -> DemoSite:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()
