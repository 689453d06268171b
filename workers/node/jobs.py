"""Serving one request: run its job, attribute the data it used, say how it ended.

Runs on a job thread; touches no bus. A job's own failures (``JobError``: unreachable
site, blocked domain, engine errors, ...) become ``Failed`` with their reason.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from pydantic import ValidationError

from indexer.events.specs import DataJobSpec, LlmJobSpec, parse_spec
from indexer.events.types import RequestSubmitted
from masa.errors import JobError
from workers.llm.spec import LlmOutput
from workers.node.config import JobConfig
from workers.node.outcome import Completed, Failed, Outcome
from workers.scraping import DataItem, DataUse, attribute, items_json, run_data_job


class LlmEngine(Protocol):
    def generate(self, spec: LlmJobSpec) -> LlmOutput: ...


@dataclass(frozen=True)
class JobRunner:
    settings: JobConfig
    sources: Callable[[], Mapping[str, str]]
    """Registered source pattern → contributor, current when called."""
    engine: LlmEngine | None = None

    def serve(self, request: RequestSubmitted) -> Outcome:
        try:
            spec = parse_spec(request.kind, request.spec)
        except ValidationError as exc:  # ingest validated it; a newer contract may not match
            return Failed("bad_spec", str(exc))
        try:
            if isinstance(spec, DataJobSpec):
                return self._data(spec)
            return self._llm(spec)
        except JobError as exc:
            return Failed(exc.reason, exc.detail)

    def _data(self, spec: DataJobSpec) -> Completed:
        s = self.settings
        result = run_data_job(
            spec,
            timeout_s=s.job_timeout_s,
            blocked_domains=s.blocked_domains,
            download_timeout_s=s.download_timeout_s,
            download_delay_s=s.download_delay_s,
        )
        return Completed(
            result.digest,
            len(result.items),
            self._attribute(result.items),
            result=items_json(result.items),
        )

    def _llm(self, spec: LlmJobSpec) -> Completed:
        if self.engine is None:
            raise JobError("llm_unavailable", "this worker has no LLM engine loaded")
        output = self.engine.generate(spec)
        refs = [DataItem(source_url=url, fields={}) for url in dict.fromkeys(spec.data_refs)]
        return Completed(
            output.digest, output.units, self._attribute(refs), result=output.text.encode("utf-8")
        )

    def _attribute(self, items: Sequence[DataItem]) -> list[DataUse]:
        return attribute(items, self.sources()) if items else []
