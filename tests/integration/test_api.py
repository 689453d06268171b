"""The read API over PostgreSQL read models filled by real ingest and the ledger projection
(tests/support/readmodels.py), connected as the SELECT-only reader role: as-of-epoch answers,
pagination, problem+json errors, writes refused, and schemathesis over the OpenAPI
description. On top of that network: messages ingest dead-letters, and epochs 0 and 1 closed
by the settler's ``EpochClosed`` and settled from the store by the settler's own computation
and records (posted on no chain: marked confirmed), for the claimant's view and ``/metrics``."""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from fastapi import FastAPI
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, settings
from schemathesis.specs.openapi.checks import positive_data_acceptance

from indexer.events import make_event
from indexer.store.log import EventLog
from masa.app.api import create_app
from masa.app.settings import Settings
from masa.app.synthetic import Participants, Scenario
from masa.app.wiring import open_read_db, open_store
from masa.errors import PermanentError
from projections import queries
from settlement.compute import settle_all
from settlement.posting import PostingRecord, State
from settlement.settler import Settlement, SettlementDb
from settlement.statement import Statement
from tests.integration.conftest import Harness
from tests.support.readmodels import EPOCHS, Network, fill, filled_postgres, project, trusting

PROBLEM = "application/problem+json"
#: Probes ingest rejects without waiting and without a valid event of their own first.
REJECTED = {
    "bad_json", "bad_envelope", "unknown_type", "bad_payload", "bad_signature", "wrong_key",
    "too_large", "clock_skew", "untrusted_indexer", "not_contributor", "wrong_role",
    "source_taken",
}  # fmt: skip
SETTLED = (0, 1)


@pytest.fixture(scope="module")
def network(postgres_server: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Network]:
    with filled_postgres(postgres_server, tmp_path_factory.mktemp("api"), seed=21) as net:
        _reject_and_settle(net)
        yield net


def _reject_and_settle(net: Network) -> None:
    """Dead letters, then ``EpochClosed`` for epochs 0 and 1 (one at a time: they are keyed
    apart and must be stored in order), all ingested and projected; then each closed epoch's
    statement computed from the store and recorded as the settler records it, as posted."""
    people = net.harness.people
    assert people.settler is not None
    harness = net.harness.with_ingest(trusted_settlers=[people.settler.address.lower()])
    probes = [p for p in Scenario(people, seed=99).probes() if p.expect in REJECTED]
    assert {p.expect for p in probes} == REJECTED
    harness.send(probes)
    for epoch in SETTLED:
        store = open_store(harness.settings)
        head = EventLog(store).head()
        store.close()
        body = {"epoch": epoch, "cutoff_position": head, "finalized_block": 10_000}
        harness.send([make_event(people.settler, "EpochClosed", body)])
        harness.ingest(idle_s=0.5)  # everything is on the bus already
    project(harness)
    store, db = open_store(harness.settings), open_read_db(harness.settings)
    try:
        records = SettlementDb(db)
        for settled in settle_all(EventLog(store).iterate()):
            s = settled.statement
            posting = PostingRecord(s.epoch, s.root, s.statement_hash, s.total_cumulative)
            text = s.canonical_bytes().decode()
            record = Settlement(posting, settled.close_position, settled.finalized_block, text,
                                datetime.now(UTC))  # fmt: skip
            records.save_computed(record, s)
            posted = replace(posting, state=State.CONFIRMED, tx_hash="0x" + "ab" * 32,
                             block_number=10_000 + s.epoch)  # fmt: skip
            records.save(replace(record, posting=posted))
        assert [r.epoch for r in records.all()] == list(SETTLED)
    finally:
        store.close()
        db.close()


def _statements(network: Network) -> list[Statement]:
    db = open_read_db(network.harness.settings)
    try:
        return [record.statement() for record in SettlementDb(db).all()]
    finally:
        db.close()


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


def test_the_claimant_view_reads_the_posted_statements(
    client: TestClient, network: Network
) -> None:
    previous, latest = _statements(network)
    assert latest.lines and {line.address for line in previous.lines} <= {
        line.address for line in latest.lines
    }
    for line in latest.lines:
        view = client.get(f"/v1/users/{line.address}/rewards").json()
        assert (view["epoch"], view["chain_epoch"], view["root"]) == (1, 2, latest.root)
        assert int(view["cumulative"]) == line.cumulative == int(view["claimable"])
        assert view["proof"] == latest.proof(line.address)
        assert latest.tree().verify((line.address, line.cumulative), view["proof"])
        before = previous.line(line.address)
        assert view["previous"]["root"] == previous.root
        assert int(view["previous"]["cumulative"]) == (before.cumulative if before else 0)
        assert view["previous"]["proof"] == (previous.proof(line.address) if before else [])
        earned = sum(int(b["earned"]) for b in view["breakdown"])
        assert earned == line.cumulative and {b["epoch"] for b in view["breakdown"]} <= {0, 1}
        assert set(view["pending"]["epochs"]) <= {2, 3}
    rows = client.get("/v1/requests?status=completed&limit=500").json()["items"]
    for worker in {r["worker"] for r in rows}:
        unsettled = {r["epoch"] for r in rows if r["worker"] == worker} - set(SETTLED)
        view = client.get(f"/v1/users/{worker}/rewards").json()
        assert view["pending"]["epochs"] == sorted(unsettled)
        assert (int(view["pending"]["worker_fee"]) > 0) == bool(unsettled)
    stranger = client.get("/v1/users/0x" + "ef" * 20 + "/rewards").json()
    assert (stranger["cumulative"], stranger["proof"], stranger["breakdown"]) == ("0", [], [])


def test_the_claimant_view_says_what_to_run_without_the_lines(
    client: TestClient, network: Network
) -> None:
    """Statements recorded before the read models had their lines (revision 0004): a 503 that
    names the command, until the settler's next pass writes them."""
    latest = _statements(network)[-1]
    address = latest.lines[0].address
    before = client.get(f"/v1/users/{address}/rewards").json()
    db = open_read_db(network.harness.settings)
    try:
        with db.transaction() as tx:
            tx.execute("DELETE FROM statement_lines WHERE epoch = ?", (latest.epoch,))
        missing = client.get(f"/v1/users/{address}/rewards")
        assert missing.status_code == 503 and missing.headers["content-type"] == PROBLEM
        assert "masa settle run" in missing.json()["detail"]
        assert SettlementDb(db).fill_missing_trees() == [latest.epoch]
        assert SettlementDb(db).fill_missing_trees() == []
    finally:
        db.close()
    assert client.get(f"/v1/users/{address}/rewards").json() == before


def _metrics(client: TestClient) -> dict[str, dict[tuple[tuple[str, str], ...], float]]:
    response = client.get("/metrics")
    assert response.status_code == 200 and response.headers["content-type"].startswith(
        "text/plain; version=0.0.4"
    )
    families: dict[str, dict[tuple[tuple[str, str], ...], float]] = {}
    for line in response.text.splitlines():
        if line.startswith("# TYPE"):
            families.setdefault(line.split()[2], {})
        elif line and not line.startswith("#"):
            match = re.fullmatch(r"([a-z_]+)(?:\{(.*)\})? (\S+)", line)
            assert match, line
            labels = tuple(sorted(re.findall(r'([a-z_]+)="([^"]*)"', match.group(2) or "")))
            families[match.group(1)][labels] = float(match.group(3))
    return families


def test_metrics_count_what_ingest_projection_and_settler_did(
    client: TestClient, network: Network
) -> None:
    m = _metrics(client)
    letters = Counter(letter.reason for letter in network.harness.dead_letters())
    assert set(letters) == REJECTED
    assert m["masa_dead_letters_total"] == {(("reason", r),): float(n) for r, n in letters.items()}
    rows = client.get("/v1/requests?limit=500").json()["items"]
    statuses = Counter(r["status"] for r in rows)
    assert m["masa_requests"] == {(("status", s),): float(n) for s, n in statuses.items()}
    assert m["masa_settlement_epochs"] == {(("state", "confirmed"),): 2.0}
    assert m["masa_settlement_latest_epoch"] == {(("state", "confirmed"),): 1.0}
    assert sum(m["masa_ingest_events_total"].values()) == network.harness.stored_count()
    partitions = set(m["masa_ingest_events_total"])
    assert set(m["masa_ingest_offset"]) == set(m["masa_ingest_last_stored_timestamp_seconds"])
    assert set(m["masa_ingest_lag_seconds"]) <= partitions == set(m["masa_ingest_offset"])
    assert m["masa_ingest_lag_seconds"] and min(m["masa_ingest_lag_seconds"].values()) >= 0
    assert m["masa_projection_lag_events"] == {(("projection", "ledger"),): 0.0}
    assert m["masa_nodes"] == {(("status", "staked"),): float(network.nodes)}


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
    probes = [p for p in Scenario(people, seed=55).probes() if p.expect in REJECTED]
    network.harness.send(probes[:4])
    network.harness.ingest(idle_s=0.5)
    project(network.harness)  # the dead letters, from the SQLite store's outbox
    api = create_app(lambda: open_read_db(network.harness.settings, reader=True))
    with TestClient(api) as c:
        letters = Counter(p.expect for p in probes[:4])
        dead = _metrics(c)["masa_dead_letters_total"]
        assert dead == {(("reason", r),): float(n) for r, n in letters.items()}
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
