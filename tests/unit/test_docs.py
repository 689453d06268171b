"""Documents generated from code must match the code."""

from pathlib import Path

from indexer.events.reference import render_markdown
from masa.app.settings import settings_reference

ROOT = Path(__file__).resolve().parents[2]


def test_the_event_reference_matches_the_registry():
    committed = (ROOT / "docs" / "events.md").read_text()
    assert committed == render_markdown(), "run: masa events schema > docs/events.md"


def test_the_operator_guide_lists_every_setting():
    guide = (ROOT / "docs" / "operator-guide.md").read_text()
    assert guide.endswith(settings_reference()), "run: masa config reference (end of the guide)"
