"""The pipe between :mod:`workers.scraping.runner` and the crawl subprocess.

The runner writes one :class:`CrawlJob` as JSON on the child's stdin; the child writes one
JSON line per :class:`PageLine` / :class:`ItemLine` / :class:`FailureLine` as they happen
and a final :class:`ClosedLine`. Each line is flushed whole, so what was written before the
runner kills the child at its deadline is a usable partial result.
"""

from __future__ import annotations

from typing import Annotated, Literal, TextIO

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter

from indexer.events.specs import DataJobSpec
from workers.scraping.spec import CrawlFailure, DataItem


class CrawlJob(BaseModel):
    """The spec plus the worker's own policy for this crawl."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    spec: DataJobSpec
    blocked_domains: tuple[str, ...]
    user_agent: str
    download_timeout_s: float
    download_delay_s: float


class PageLine(BaseModel):
    kind: Literal["page"] = "page"
    url: str


class ItemLine(BaseModel):
    kind: Literal["item"] = "item"
    item: DataItem


class FailureLine(BaseModel):
    kind: Literal["failure"] = "failure"
    failure: CrawlFailure


class ClosedLine(BaseModel):
    kind: Literal["closed"] = "closed"
    reason: str  # scrapy's close reason: finished, closespider_itemcount, ...


Line = Annotated[PageLine | ItemLine | FailureLine | ClosedLine, Field(discriminator="kind")]
LINE: TypeAdapter[PageLine | ItemLine | FailureLine | ClosedLine] = TypeAdapter(Line)


class LineWriter:
    """Writes protocol lines to a text stream, flushing each so none is lost on a kill."""

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream

    def write(self, line: PageLine | ItemLine | FailureLine | ClosedLine) -> None:
        self._stream.write(line.model_dump_json() + "\n")
        self._stream.flush()
