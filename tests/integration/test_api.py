"""The read API over PostgreSQL read models filled by real ingest and the ledger projection
(tests/support/readmodels.py), connected as the SELECT-only reader role: as-of-epoch answers,
pagination, problem+json errors, writes refused, and schemathesis over the OpenAPI
description."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from fastapi import FastAPI
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, settings
from schemathesis.specs.openapi.checks import positive_data_acceptance

from masa.app.api import create_app
from masa.app.settings import Settings
from masa.app.synthetic import Participants
from masa.app.wiring import open_read_db
from masa.errors import PermanentError
from projections import queries
from tests.integration.conftest import Harness
from tests.support.readmodels import EPOCHS, Network, fill, filled_postgres, trusting

PROBLEM = "application/problem+json"


@pytest.fixture(scope="module")
def network(postgres_server: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Network]:
    with filled_postgres(postgres_server, tmp_path_factory.mktemp("api"), seed=21) as net:
        yield net


_connect: dict[str, Any] = {}
#: One app for the module, built at import for schemathesis (which reads its OpenAPI
#: description then); its database opens on the first request, once ``network`` is filled.
API = create_app(lambda: open_read_db(_connect["settings"], reader=True), max_lag_s=3600)


@pytest.fixture(scope="module")
def app(network: Network) -> FastAPI:
    _connect["settings"] = network.harness.settings
    return API


@pytest.fixture(scope="module")
def client(app: FastAPI) -> Iterator[TestClient]:
    with TestClient(app) as c:
        yield c


def _all(client: TestClient, path: str, limit: int) -> tuple[list[dict[str, Any]], int, int]:
    """Every item of a paged list, its total, and the pages it took."""
    items: list[dict[str, Any]] = []
    cursor, pages, total = None, 0, -1
    while True:
        params: dict[str, Any] = {"limit": limit} | ({"cursor": cursor} if cursor else {})
        body = client.get(path, params=params).json()
        pages += 1
        items += body["items"]
        total = body["total"]
        cursor = body["next_cursor"]
        if cursor is None:
            return items, total, pages


def test_pages_see_every_row_once(client: TestClient, network: Network) -> None:
    nodes, total, pages = _all(client, "/v1/nodes", limit=2)
    addresses = [n["address"] for n in nodes]
    assert total == network.nodes == len(addresses) == len(set(addresses))
    assert addresses == sorted(addresses) and pages == -(-total // 2)
    requests, total, pages = _all(client, "/v1/requests", limit=7)
    ids = [r["request_id"] for r in requests]
    assert len(ids) == len(set(ids)) == total > 7 and pages > 1
    everything = client.get("/v1/requests", params={"limit": 500}).json()
    assert sorted(ids) == sorted(r["request_id"] for r in everything["items"])
    uptime, total, _ = _all(client, "/v1/uptime", limit=3)
    assert len({(u["node"], u["epoch"]) for u in uptime}) == total == len(uptime) > 3


def test_as_of_epoch_answers_only_up_to_that_epoch(client: TestClient, network: Network) -> None:
    epochs = client.get("/v1/epochs").json()["items"]
    assert [e["epoch"] for e in epochs][:EPOCHS] == list(range(EPOCHS))
    assert [e["epoch"] for e in client.get("/v1/epochs?as_of_epoch=1").json()["items"]] == [0, 1]
    worker = network.harness.people.workers[0].address.lower()
    node = client.get(f"/v1/nodes/{worker}", params={"as_of_epoch": 1}).json()
    assert node["status"] == "staked" and [u["epoch"] for u in node["uptime"]] == [0, 1]
    assert all(0 < u["uptime_ppm"] <= 1_000_000 for u in node["uptime"])
    full = client.get("/v1/fees").json()["items"]
    early = client.get("/v1/fees?as_of_epoch=1").json()["items"]
    assert early == [f for f in full if f["epoch"] <= 1] and len(full) > len(early)
    assert sum(int(f["fees_paid"]) for f in full) == sum(
        int(r["fee"]) for r in client.get("/v1/requests?status=completed&limit=500").json()["items"]
    )
    credited = client.get("/v1/attribution?as_of_epoch=2").json()["items"]
    assert credited and {a["epoch"] for a in credited} <= {0, 1, 2}
    for row in credited:
        mine = client.get(f"/v1/contributors/{row['contributor']}/attribution?as_of_epoch=2")
        units = sum(i["units"] for i in mine.json()["items"] if i["epoch"] == row["epoch"])
        assert units == row["units"]
    ids = {u["node"] for u in client.get("/v1/uptime?as_of_epoch=0&limit=500").json()["items"]}
    assert ids == {w.address.lower() for w in network.harness.people.workers}


def test_latency_and_overview_match_the_rows(client: TestClient, network: Network) -> None:
    rows = client.get("/v1/requests?limit=500").json()["items"]
    stats = {k["kind"]: k for k in client.get("/v1/stats/latency").json()["items"]}
    for kind, entry in stats.items():
        latencies = [r["latency_ms"] for r in rows if r["kind"] == kind and r["latency_ms"]]
        assert entry["requests"] == sum(1 for r in rows if r["kind"] == kind)
        assert entry["p50_ms"] == queries.percentile(latencies, 0.5)
        assert entry["p50_ms"] <= entry["p95_ms"] <= entry["max_ms"] == max(latencies)
    early = client.get("/v1/stats/latency?as_of_epoch=0").json()["items"]
    assert sum(k["requests"] for k in early) == sum(1 for r in rows if r["epoch"] == 0)
    overview = client.get("/v1/overview").json()
    assert overview["nodes"]["total"] == network.nodes
    assert overview["nodes"]["by_status"] == {"staked": network.nodes}
    assert int(overview["stake"]["active_stake"]) == network.nodes * 10**21
    assert overview["requests"]["total"] == len(rows)
    assert overview["projection"]["lag_events"] == 0
    assert len(overview["requests"]["throughput"]) == 60
    assert sum(p["requests"] for p in overview["requests"]["throughput"]) == len(rows)


@pytest.mark.parametrize(
    ("path", "status"),
    [
        ("/v1/nodes/0x" + "ab" * 20, 404),
        ("/v1/requests/no-such-request", 404),
        ("/v1/oracles/0x" + "cd" * 20 + "/balance", 404),
        ("/v1/epochs/999999", 404),
        ("/v1/no-such-route", 404),
        ("/v1/nodes/not-an-address", 422),
        ("/v1/nodes?limit=0", 422),
        ("/v1/nodes?limit=100000", 422),
        ("/v1/epochs?as_of_epoch=-1", 422),
        ("/v1/stats/latency?as_of_epoch=x", 422),
        ("/v1/requests?worker=not-an-address", 422),
        ("/v1/requests?worker=%00", 422),  # PostgreSQL refuses NUL in text: no 503 for it
        ("/v1/nodes?status=active%00", 422),
        ("/v1/requests/abc%00def", 422),
        ("/v1/nodes?cursor=garbage", 400),
        ("/v1/uptime?cursor=WzFd", 400),  # a cursor of another list: one key part, not two
    ],
)
def test_errors_are_problem_json(client: TestClient, path: str, status: int) -> None:
    response = client.get(path)
    assert response.status_code == status
    assert response.headers["content-type"] == PROBLEM
    body = response.json()
    assert body["status"] == status and body["title"] and body["detail"]
    assert body["instance"] == path.split("?")[0].replace("%00", "\x00")


def test_the_apis_role_cannot_write(network: Network) -> None:
    db = open_read_db(network.harness.settings, reader=True)
    try:
        assert db.query("SELECT COUNT(*) FROM nodes")[0][0] == network.nodes
        statements = [
            ("INSERT INTO nodes (address, status) VALUES (?, ?)", ("0x" + "00" * 20, "staked")),
            ("UPDATE oracle_balances SET available = 0", ()),
            ("DELETE FROM requests", ()),
            ("SELECT COUNT(*) FROM stored_events", ()),  # nor read the event store itself
        ]
        for sql, params in statements:
            with (
                pytest.raises(PermanentError, match="permission denied"),
                db.transaction() as tx,
            ):
                tx.execute(sql, params)
    finally:
        db.close()


schema = schemathesis.openapi.from_asgi("/openapi.json", API).exclude(path="/v1/stream")


@schema.parametrize()
@settings(
    max_examples=25, deadline=None, database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much,
                           HealthCheck.function_scoped_fixture],
)  # fmt: skip
def test_openapi_no_5xx_and_responses_match_the_schema(case: Any, app: FastAPI) -> None:
    # Cursors are opaque: any string fits their schema, only those handed out are accepted
    # (400 otherwise, documented), so "schema-valid data is accepted" cannot hold for them.
    case.call_and_validate(excluded_checks=[positive_data_acceptance])


def test_the_stream_says_where_the_models_are(client: TestClient) -> None:
    with client.stream("GET", "/v1/stream?max_events=1") as response:
        text = "".join(response.iter_text())
    assert response.headers["content-type"].startswith("text/event-stream")
    assert "event: position" in text and '"name":"ledger"' in text


def test_the_dashboard_and_its_files_are_served(client: TestClient) -> None:
    page = client.get("/")
    assert page.status_code == 200 and 'id="kpi-nodes"' in page.text
    for asset in ("/static/dashboard.js", "/static/dashboard.css"):
        assert client.get(asset).status_code == 200
    assert "/" not in client.get("/openapi.json").json()["paths"]


def test_the_static_files_are_package_data() -> None:
    pyproject = (Path(__file__).resolve().parents[2] / "pyproject.toml").read_text()
    assert '"masa.app.api" = ["static/*"]' in pyproject


def test_the_aggregates_on_sqlite(tmp_path: Path) -> None:
    """The same questions on the embedded default's SQLite read models (wei as text, times as
    ISO text), opened read-only."""
    people = Participants.from_seed(5)
    config = Settings(
        home=tmp_path,
        ingest={"trusted_indexers": [people.indexer.address.lower()], "poll_timeout_s": 0.2},
        bus={"backend": "embedded", "partitions": 3},
    )
    network = fill(trusting(Harness(config, people)), seed=5)
    api = create_app(lambda: open_read_db(network.harness.settings, reader=True))
    with TestClient(api) as c:
        overview = c.get("/v1/overview").json()
        rows = c.get("/v1/requests?limit=500").json()["items"]
        assert overview["nodes"]["total"] == network.nodes
        assert int(overview["stake"]["active_stake"]) == network.nodes * 10**21
        assert sum(p["requests"] for p in overview["requests"]["throughput"]) == len(rows)
        for entry in c.get("/v1/stats/latency").json()["items"]:
            mine = [r["latency_ms"] for r in rows if r["kind"] == entry["kind"] and r["closed_at"]]
            assert entry["p95_ms"] == queries.percentile(mine, 0.95)
        uptime, total, _ = _all(c, "/v1/uptime", limit=5)
        assert len(uptime) == total == len(people.workers) * EPOCHS
        early = c.get("/v1/uptime?as_of_epoch=1&limit=500").json()
        assert early["total"] == len(people.workers) * 2
        fees = c.get("/v1/fees").json()["items"]
        paid = [r for r in rows if r["status"] == "completed"]
        assert sum(int(f["fees_paid"]) for f in fees) == sum(int(r["fee"]) for r in paid)
        units = sum(a["units"] for a in c.get("/v1/attribution").json()["items"])
        assert units == sum(r["units"] for r in paid)
