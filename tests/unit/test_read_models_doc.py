"""docs/read-models.md documents every read-model table and column the projections write."""

import re
from pathlib import Path

from projections.tables import READ_MODEL_TABLES

DOC = (Path(__file__).resolve().parents[2] / "docs" / "read-models.md").read_text()


def _section(table: str) -> str:
    match = re.search(rf"^## {table}\n(.*?)(?=^## |\Z)", DOC, re.M | re.S)
    assert match, f"docs/read-models.md has no section for {table}"
    return match.group(1)


def test_every_table_and_column_is_documented():
    missing = [
        f"{t.name}.{column}"
        for t in READ_MODEL_TABLES
        for column in t.columns
        if f"`{column}`" not in _section(t.name)
    ]
    assert not missing, f"undocumented columns: {missing}"


def test_no_section_documents_a_table_that_does_not_exist():
    documented = set(re.findall(r"^## ([a-z_]+)$", DOC, re.M))
    assert documented == {t.name for t in READ_MODEL_TABLES}
