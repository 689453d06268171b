"""Entry point of the crawl subprocess: ``python -m workers.scraping.crawl``.

Reads a :class:`~workers.scraping.protocol.CrawlJob` as JSON on stdin, runs one scrapy crawl
and writes protocol lines on stdout. Logs go to stderr at WARNING. A fresh process per job
because the Twisted reactor cannot be restarted, and so the runner can kill it at a deadline.
"""

from __future__ import annotations

import os
import sys
from typing import Any, TextIO

from scrapy.crawler import CrawlerProcess

from workers.scraping.protocol import CrawlJob, LineWriter
from workers.scraping.spider import ALLOWED_SETTING, BLOCKED_SETTING, DataSpider

_MAX_PAGE_BYTES = 10 * 1024 * 1024


def crawl_settings(job: CrawlJob) -> dict[str, Any]:
    """Scrapy settings for one job: polite, bounded, no listening ports, nothing on disk."""
    return {
        "USER_AGENT": job.user_agent,
        "ROBOTSTXT_OBEY": True,
        "CONCURRENT_REQUESTS": 8,
        "CONCURRENT_REQUESTS_PER_DOMAIN": 2,
        "DOWNLOAD_DELAY": job.download_delay_s,
        "AUTOTHROTTLE_ENABLED": True,
        "AUTOTHROTTLE_START_DELAY": job.download_delay_s,
        "AUTOTHROTTLE_MAX_DELAY": 10.0,
        "RETRY_TIMES": 1,
        "RETRY_GIVE_UP_LOG_LEVEL": "INFO",  # the result reports it as a failure already
        "DOWNLOAD_TIMEOUT": job.download_timeout_s,
        "DNS_TIMEOUT": job.download_timeout_s,
        "DOWNLOAD_MAXSIZE": _MAX_PAGE_BYTES,
        # 0 means "no limit" to scrapy; the spider itself stops following at max_depth.
        "DEPTH_LIMIT": job.spec.max_depth,
        "CLOSESPIDER_ITEMCOUNT": job.spec.item_limit,
        "COOKIES_ENABLED": False,
        "HTTPCACHE_ENABLED": False,
        "TELNETCONSOLE_ENABLED": False,
        "REMOTE_CONTROL_ENABLED": False,  # an HTTP server plus a job file in $HOME otherwise
        "EXTENSIONS": {
            "scrapy.extensions.telnet.TelnetConsole": None,
            "scrapy.extensions.remote_control.RemoteControl": None,
        },
        "DOWNLOADER_MIDDLEWARES": {
            "scrapy.downloadermiddlewares.offsite.OffsiteMiddleware": None,
            "workers.scraping.spider.GuardMiddleware": 50,  # before robots.txt is fetched
        },
        ALLOWED_SETTING: [str(rule) for rule in job.spec.domain_rules],
        BLOCKED_SETTING: list(job.blocked_domains),
        "LOG_LEVEL": "WARNING",
        "LOG_FILE": None,
        "STATS_DUMP": False,
    }


def main() -> int:
    job = CrawlJob.model_validate_json(sys.stdin.read())
    with _claim_stdout() as protocol:
        process = CrawlerProcess(crawl_settings(job))
        process.crawl(DataSpider, job=job, writer=LineWriter(protocol))
        process.start()
    return 0


def _claim_stdout() -> TextIO:
    """Keep the real stdout for protocol lines; stray prints from libraries go to stderr."""
    protocol = os.fdopen(os.dup(sys.stdout.fileno()), "w", encoding="utf-8")
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
    return protocol


if __name__ == "__main__":
    sys.exit(main())
