"""Documents generated from code must match the code."""

from pathlib import Path

from indexer.events.reference import render_markdown

ROOT = Path(__file__).resolve().parents[2]


def test_the_event_reference_matches_the_registry():
    committed = (ROOT / "docs" / "events.md").read_text()
    assert committed == render_markdown(), "run: masa events schema > docs/events.md"
