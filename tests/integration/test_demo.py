"""The README's demo command, end to end on embedded defaults: `masa demo` (as scripts/demo
runs it, minus the set-up) deploys, stakes, indexes, serves jobs, ingests, and reports."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

MASA = str(Path(sys.executable).parent / "masa")
PROBE_REASONS = {
    "bad_envelope", "bad_json", "bad_payload", "bad_signature", "clock_skew", "duplicate_request",
    "not_contributor", "request_closed", "source_taken", "stale_heartbeat", "too_large",
    "unknown_type", "untrusted_indexer", "wrong_key", "wrong_role",
}  # fmt: skip


def test_the_demo_runs_the_pipeline_and_reports_it(tmp_path):
    done = subprocess.run(
        [MASA, "--home", str(tmp_path), "demo", "--no-llm", "--requests", "30", "--json"],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout)

    assert report["chain"]["staked_workers"] == 5 and report["chain"]["staked_oracles"] == 2
    assert report["chain_events_indexed"]["Staked"] == 7
    assert report["stored_by_type"]["Staked.v1"] == 7
    assert report["live_requests"] == {"completed": 3, "failed:unreachable": 1}
    # three crawls of 4 science and 3 markets articles, each source registered by a contributor
    assert sorted(report["attribution_units"].values()) == [9, 12]
    assert set(report["rejected_by_reason"]) == PROBE_REASONS
    assert all(count == 1 for count in report["rejected_by_reason"].values())
    assert report["stored"] > 100
    assert (tmp_path / "demo" / "store.sqlite").exists()
