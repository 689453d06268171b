"""The Grafana provisioning (docs/grafana/): every panel's SQL, with Grafana's macros and the
dashboard variable replaced, runs as the reader role against PostgreSQL read models filled by
real ingest and projection, and agrees with the read API's own queries."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from masa.app.wiring import open_read_db
from projections import queries
from projections.db import ReadDb
from tests.support.readmodels import EPOCHS, Network, filled_postgres

GRAFANA = Path(__file__).resolve().parents[2] / "docs" / "grafana"
DASHBOARD = json.loads((GRAFANA / "dashboards" / "masa-ledger.json").read_text())
PANELS = {p["title"]: p["targets"][0]["rawSql"] for p in DASHBOARD["panels"]}


def plain_sql(sql: str, as_of_epoch: int) -> str:
    """Grafana's macros as PostgreSQL: a time filter is true (all of time), a time group is
    the minute; ``$as_of_epoch`` the variable's value."""
    sql = re.sub(r"\$__timeFilter\([^)]*\)", "TRUE", sql)
    sql = re.sub(
        r"\$__timeGroupAlias\(\s*(\w+)\s*,\s*'?1m'?\s*\)", r"date_trunc('minute', \1) AS time", sql
    )
    sql = sql.replace("$as_of_epoch", str(as_of_epoch))
    assert "$" not in sql, f"a macro left unreplaced: {sql}"
    return sql


@pytest.fixture(scope="module")
def network(postgres_server: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Network]:
    with filled_postgres(postgres_server, tmp_path_factory.mktemp("grafana"), seed=45) as net:
        yield net


@pytest.fixture(scope="module")
def reader(network: Network) -> Iterator[ReadDb]:
    db = open_read_db(network.harness.settings, reader=True)
    yield db
    db.close()


def _run(db: ReadDb, title: str, as_of_epoch: int = 10**6) -> list[dict[str, Any]]:
    with db.transaction() as tx:
        cursor = tx._cursor  # the column names, which Grafana shows
        rows = tx.fetchall(plain_sql(PANELS[title], as_of_epoch))
        names = [c.name for c in cursor.description]  # type: ignore[attr-defined]
    return [dict(zip(names, r, strict=True)) for r in rows]


@pytest.mark.parametrize("title", sorted(PANELS))
def test_every_panel_runs_as_the_reader_role(reader: ReadDb, title: str) -> None:
    rows = _run(reader, title)
    assert rows, f"{title}: no rows over a filled network"
    assert _run(reader, title, as_of_epoch=0) is not None


def test_panels_agree_with_the_api(reader: ReadDb, network: Network) -> None:
    assert _run(reader, "Nodes") == [{"nodes": network.nodes}]
    assert {r["status"]: r["nodes"] for r in _run(reader, "Nodes by status")} == {
        "staked": network.nodes
    }
    for as_of in (1, 10**6):
        python = {k["kind"]: k for k in queries.latency_by_kind(reader, as_of)}
        for row in _run(reader, "Latency by kind (ms)", as_of):
            mine = python[row["kind"]]
            assert row["requests"] == mine["closed"] and row["max_ms"] == mine["max_ms"]
            assert row["p50_ms"] == pytest.approx(mine["p50_ms"])
            assert row["p95_ms"] == pytest.approx(mine["p95_ms"])
    fees = _run(reader, "Fees per epoch (MASA)", as_of_epoch=1)
    assert [r["epoch"] for r in fees] == ["0", "1"]
    uptime = _run(reader, "Uptime per node and epoch (%)")
    assert {r["epoch"] for r in uptime} == set(range(EPOCHS))
    attribution = _run(reader, "Attribution by contributor (table)")
    assert [(r["contributor"], r["epoch"], r["units"]) for r in attribution] == [
        (a["contributor"], a["epoch"], a["units"]) for a in queries.attribution_by_epoch(reader)
    ]
    per_minute = _run(reader, "Requests per minute")
    assert sum(r["requests"] for r in per_minute) == len(queries.requests(reader))


def test_provisioning_uses_the_reader_role() -> None:
    provisioning = GRAFANA / "provisioning"
    datasource = yaml.safe_load((provisioning / "datasources" / "masa.yaml").read_text())
    [source] = datasource["datasources"]
    assert source["type"] == "grafana-postgresql-datasource"
    assert source["uid"] == DASHBOARD["panels"][0]["datasource"]["uid"]
    assert "READER" in source["user"] and "password" in source["secureJsonData"]
    provider = yaml.safe_load((provisioning / "dashboards" / "masa.yaml").read_text())
    assert provider["providers"][0]["type"] == "file"
    variables = {v["name"] for v in DASHBOARD["templating"]["list"]}
    used = {v for sql in PANELS.values() for v in re.findall(r"\$(\w+)", sql)}
    assert used - {"__timeFilter", "__timeGroupAlias"} <= variables
