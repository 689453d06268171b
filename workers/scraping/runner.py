"""Run a data job in a scrapy subprocess, with a hard deadline.

At ``timeout_s`` the subprocess is killed by its PID. What it streamed before that is a
complete partial result (``stopped="deadline"``). Scrapy's own graceful close is not used
for the deadline: it drains every request already queued in the downloader, each after the
politeness delay, which can take longer than the job has left.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path

from indexer.events.specs import DataJobSpec, DomainRule, url_matches
from masa.errors import ConfigurationError, JobError
from workers.scraping.protocol import LINE, ClosedLine, CrawlJob, FailureLine, ItemLine, PageLine
from workers.scraping.spec import (
    CrawlFailure,
    DataJobResult,
    StopReason,
    items_digest,
    sort_items,
)

DEFAULT_USER_AGENT = "masa-worker/0.1 (+https://masa.ai)"

_STDERR_TAIL = 2000
_PACKAGE_ROOT = Path(__file__).resolve().parents[2]
_STOP_REASONS: dict[str, StopReason] = {
    "finished": "finished",
    "closespider_itemcount": "item_limit",
}

Line = PageLine | ItemLine | FailureLine | ClosedLine


def run_data_job(
    spec: DataJobSpec,
    *,
    timeout_s: float,
    blocked_domains: Iterable[str] = (),
    user_agent: str = DEFAULT_USER_AGENT,
    download_timeout_s: float = 10.0,
    download_delay_s: float = 0.25,
) -> DataJobResult:
    """Crawl as ``spec`` says and return the items in canonical order with their digest.

    ``blocked_domains`` are ``host`` / ``host:port`` rules never fetched; a blocked start URL
    fails the job before anything starts. At ``timeout_s`` the crawl is killed and what it
    found so far is returned. Raises :class:`JobError` with the dominant failure reason when
    no page could be fetched (``timeout`` when the deadline came first and nothing failed),
    ``crawler_error`` when the subprocess dies.
    """
    if timeout_s <= 0 or download_timeout_s <= 0 or download_delay_s <= 0:
        raise ConfigurationError("timeouts and the download delay must be positive")
    blocked = _blocklist(blocked_domains)
    _refuse_blocked_starts(spec, blocked)
    job = CrawlJob(
        spec=spec,
        blocked_domains=tuple(str(rule) for rule in blocked),
        user_agent=user_agent,
        download_timeout_s=download_timeout_s,
        download_delay_s=download_delay_s,
    )
    return _result(*_run_child(job, timeout_s))


def _blocklist(domains: Iterable[str]) -> tuple[DomainRule, ...]:
    try:
        return tuple(DomainRule.parse(domain) for domain in domains)
    except ValueError as exc:
        raise ConfigurationError(f"bad blocked domain: {exc}") from exc


def _refuse_blocked_starts(spec: DataJobSpec, blocked: Sequence[DomainRule]) -> None:
    refused = [url for url in spec.start_urls if url_matches(url, blocked)]
    if refused:
        raise JobError("blocked_domain", f"start URLs on blocked domains: {refused}")


def _run_child(job: CrawlJob, timeout_s: float) -> tuple[list[Line], ClosedLine | None]:
    """The lines the crawl wrote and its closing line (``None``: killed at the deadline)."""
    with tempfile.TemporaryDirectory(prefix="masa-crawl-") as workdir:
        child = subprocess.Popen(
            [sys.executable, "-m", "workers.scraping.crawl"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            cwd=workdir,
            env=_child_env(),
            encoding="utf-8",
            errors="replace",
        )
        try:
            out, err = child.communicate(job.model_dump_json(), timeout=timeout_s)
        except subprocess.TimeoutExpired:
            child.kill()
            out, _ = child.communicate()
            return _parse(out), None
        except BaseException:  # interrupted: never leave a crawl running behind us
            child.kill()
            child.wait()
            raise
    lines = _parse(out)
    last = lines[-1] if lines else None
    if child.returncode != 0 or not isinstance(last, ClosedLine):
        raise JobError("crawler_error", f"exit {child.returncode}: {err[-_STDERR_TAIL:]}")
    return lines, last


def _parse(out: str) -> list[Line]:
    """Every complete line; a last line torn by the kill has no newline and is dropped."""
    return [LINE.validate_json(text) for text in out.split("\n")[:-1]]


def _child_env() -> dict[str, str]:
    """Our environment without scrapy project settings, with this package importable."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("SCRAPY_")}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(_PACKAGE_ROOT), env.get("PYTHONPATH")]))
    return env


def _result(lines: list[Line], closed: ClosedLine | None) -> DataJobResult:
    items = sort_items(line.item for line in lines if isinstance(line, ItemLine))
    failures = sorted(
        (line.failure for line in lines if isinstance(line, FailureLine)),
        key=lambda failure: (failure.url, failure.reason),
    )
    pages = sum(isinstance(line, PageLine) for line in lines)
    if not items and pages == 0:
        raise JobError(_dominant_reason(failures), _summary(failures))
    return DataJobResult(
        items=items,
        digest=items_digest(items),
        pages_fetched=pages,
        failures=failures,
        stopped="deadline" if closed is None else _stop_reason(closed.reason),
    )


def _stop_reason(scrapy_reason: str) -> StopReason:
    if scrapy_reason not in _STOP_REASONS:
        raise JobError("crawler_error", f"crawl closed: {scrapy_reason}")
    return _STOP_REASONS[scrapy_reason]


def _dominant_reason(failures: Sequence[CrawlFailure]) -> str:
    """The most frequent reason (ties: alphabetical); ``timeout`` when nothing was recorded."""
    counts = Counter(failure.reason for failure in failures)
    return min(counts, key=lambda reason: (-counts[reason], reason), default="timeout")


def _summary(failures: Sequence[CrawlFailure]) -> str:
    return "; ".join(f"{f.url}: {f.reason} {f.detail}".strip() for f in failures[:5])
