"""Data jobs: crawl with scrapy in a subprocess, extract items, attribute them to sources.

``run_data_job`` runs a :class:`DataJobSpec` and returns a :class:`DataJobResult` whose
``digest`` a ``RequestCompleted`` carries; ``attribute`` turns its items into the
``DataUse`` entries of a ``DataUsed`` event.
"""

from indexer.events.specs import DataJobSpec, Query
from indexer.events.types import DataUse
from workers.scraping.attribution import attribute, parse_source_pattern
from workers.scraping.runner import DEFAULT_USER_AGENT, run_data_job
from workers.scraping.spec import (
    CrawlFailure,
    DataItem,
    DataJobResult,
    FailureReason,
    StopReason,
    items_digest,
    items_json,
)

__all__ = [
    "DEFAULT_USER_AGENT",
    "CrawlFailure",
    "DataItem",
    "DataJobResult",
    "DataJobSpec",
    "DataUse",
    "FailureReason",
    "Query",
    "StopReason",
    "attribute",
    "items_digest",
    "items_json",
    "parse_source_pattern",
    "run_data_job",
]
