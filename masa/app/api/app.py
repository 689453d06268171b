"""The read API: FastAPI over ``projections.queries`` (the same queries the CLI uses), on a
database connection that cannot write (PostgreSQL's reader role, a read-only SQLite file).

Amounts are decimal strings of wei, times RFC 3339 UTC; lists are pages with a ``cursor``;
errors are RFC 9457 problem+json.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Mapping
from datetime import UTC, datetime
from typing import Annotated, Any

import orjson
from fastapi import FastAPI, HTTPException, Path, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse
from pydantic import BaseModel
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Receive, Scope, Send

from masa.app.api.dashboard import mount_dashboard
from masa.errors import MasaError
from projections import queries
from projections.db import ReadDb
from projections.tables import (
    CONTRIBUTOR_ATTRIBUTION,
    DEAD_LETTERS,
    EPOCH_FEES,
    EPOCHS,
    NODE_UPTIME,
    NODES,
    ORACLE_BALANCES,
    PARAMETERS,
    PROJECTION_POSITIONS,
    REQUESTS,
    STAKE_CHANGES,
    Row,
    Table,
)
from settlement.claimant import user_rewards

ADDRESS = r"^0x[0-9a-fA-F]{40}$"
Address = Annotated[str, Path(pattern=ADDRESS, description="0x address (any case)")]
AddressFilter = Annotated[str | None, Query(pattern=ADDRESS, description="0x address (any case)")]
Cursor = Annotated[str | None, Query(description="from the previous page's next_cursor")]
Limit = Annotated[int, Query(ge=1, le=queries.MAX_PAGE, description="rows per page")]
AsOfEpoch = Annotated[int | None, Query(ge=0, description="only epochs up to this one")]
PROBLEM = "application/problem+json"
_PROBLEM_SCHEMA = {
    "type": "object",
    "required": ["type", "title", "status", "detail", "instance"],
    "properties": {
        "type": {"type": "string"}, "title": {"type": "string"},
        "status": {"type": "integer"}, "detail": {"type": "string"},
        "instance": {"type": "string"},
    },
}  # fmt: skip
#: Every route may answer these, as RFC 9457 problem+json (documented once, app-wide).
ERRORS: dict[int | str, dict[str, Any]] = {
    status: {"description": what, "content": {PROBLEM: {"schema": _PROBLEM_SCHEMA}}}
    for status, what in [
        (400, "Bad request (a cursor this server did not hand out)"),
        (404, "Not found"),
        (422, "Invalid parameters"),
        (503, "Read models unavailable"),
    ]
}


def json_row(table: Table, row: Row) -> dict[str, Any]:
    """A row as JSON: wei as decimal strings, times as RFC 3339."""
    out: dict[str, Any] = {}
    for column, kind in table.columns.items():
        value = row[column]
        if value is not None and kind == "wei":
            value = str(value)
        elif isinstance(value, datetime):
            value = value.astimezone(UTC).isoformat().replace("+00:00", "Z")
        out[column] = value
    return out


class PageOut(BaseModel):
    """A page of a list, in key order; ``next_cursor`` fetches the next (null: the last)."""

    items: list[dict[str, Any]]
    next_cursor: str | None
    total: int


def _page(table: Table, page: queries.Page) -> Response:
    """The page as JSON, written by orjson directly: FastAPI's own validation and encoding of
    a response model walks every value in Python, most of a 100-row page's time. Wei become
    decimal strings; times (UTC from both dialects) RFC 3339 with ``Z``, as ``json_row``."""
    wei = [c for c, kind in table.columns.items() if kind == "wei"]
    items = [_wei_as_text(row, wei) for row in page.items]
    body = {"items": items, "next_cursor": page.next_cursor, "total": page.total}
    return Response(orjson.dumps(body, option=orjson.OPT_UTC_Z), media_type="application/json")


def _wei_as_text(row: Row, wei: list[str]) -> Row:
    for column in wei:
        if row[column] is not None:
            row[column] = str(row[column])
    return row


def create_app(
    open_db: Callable[[], ReadDb], *, max_lag_s: float = 30.0, poll_s: float = 0.5
) -> FastAPI:
    """The API on one read-only database connection opened by ``open_db``."""
    db_holder: dict[str, ReadDb] = {}

    def db() -> ReadDb:
        if "db" not in db_holder:
            db_holder["db"] = open_db()
        return db_holder["db"]

    app = FastAPI(
        title="Masa ledger read API",
        version="1",
        description="Read-only views of the Masa ledger's read models (docs/read-models.md).",
        responses=ERRORS,
    )
    _errors(app)
    _health(app, db, max_lag_s)
    _nodes(app, db)
    _requests(app, db)
    _money(app, db)
    _stats(app, db)
    _stream(app, db, poll_s)
    mount_dashboard(app)
    return app


def _problem(
    status: int, title: str, detail: str, request: Request,
    headers: Mapping[str, str] | None = None,
) -> JSONResponse:  # fmt: skip
    body = {"type": "about:blank", "title": title, "status": status, "detail": detail,
            "instance": str(request.url.path)}  # fmt: skip
    return JSONResponse(body, status_code=status, media_type=PROBLEM, headers=headers)


def _errors(app: FastAPI) -> None:
    app.add_middleware(RefuseNul)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        # headers kept: a 405 says what is Allow-ed (RFC 9110)
        title = _title(exc.status_code)
        return _problem(exc.status_code, title, str(exc.detail), request, exc.headers)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0] if exc.errors() else {"loc": (), "msg": "invalid request"}
        where = ".".join(str(p) for p in first.get("loc", ()))
        return _problem(422, "Invalid request", f"{where}: {first.get('msg')}", request)

    @app.exception_handler(queries.BadCursor)
    async def bad_cursor(request: Request, exc: queries.BadCursor) -> JSONResponse:
        return _problem(400, "Bad cursor", str(exc), request)

    @app.exception_handler(MasaError)
    async def unavailable(request: Request, exc: MasaError) -> JSONResponse:
        return _problem(503, "Read models unavailable", str(exc), request)


class RefuseNul:
    """No text column can hold NUL (PostgreSQL refuses it outright), so no parameter can match
    one: a request with a NUL in its path or query is a 422 here rather than the database's
    503. Plain ASGI: Starlette's ``BaseHTTPMiddleware`` costs a task group and a stream per
    request, a good part of a small request's time."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and _has_nul(scope):
            request = Request(scope)
            detail = "a parameter contains a NUL (0x00) byte"
            await _problem(422, "Invalid request", detail, request)(scope, receive, send)
            return
        await self.app(scope, receive, send)


def _has_nul(scope: Scope) -> bool:
    # the path comes percent-decoded; the query string raw (a NUL in it is "%00")
    query: bytes = scope.get("query_string", b"")
    return "\x00" in scope["path"] or b"%00" in query or b"\x00" in query


def _title(status: int) -> str:
    return {404: "Not found", 400: "Bad request", 405: "Method not allowed"}.get(status, "Error")


def _health(app: FastAPI, db: Callable[[], ReadDb], max_lag_s: float) -> None:
    @app.get("/health", summary="Up, and the projections within their lag bound (else 503)")
    def health() -> JSONResponse:
        rows = queries.projection_status(db())
        problems = [_lagging(r, max_lag_s) for r in rows]
        problems = [p for p in problems if p] or ([] if rows else ["no projection has run yet"])
        body = {"status": "unhealthy" if problems else "ok", "problems": problems,
                "projections": [json_row(PROJECTION_POSITIONS, r) for r in rows]}  # fmt: skip
        return JSONResponse(body, status_code=503 if problems else 200)

    @app.get("/metrics", summary="Prometheus metrics", response_class=PlainTextResponse)
    def metrics() -> Response:
        return Response(_metrics(db()), media_type="text/plain; version=0.0.4")


def _lagging(row: Row, max_lag_s: float) -> str | None:
    silent = (datetime.now(UTC) - row["updated_at"]).total_seconds()
    if silent > max_lag_s:
        return f"{row['name']}: no progress report for {silent:.0f} s (is 'masa project run' up?)"
    if row["lag_seconds"] > max_lag_s:
        return f"{row['name']}: {row['lag_seconds']:.1f} s behind the store"
    return None


def _metrics(db: ReadDb) -> str:
    out = _Metrics()
    positions = queries.projection_status(db)
    out.gauge("masa_projection_lag_events", "events stored but not yet projected",
              [({"projection": r["name"]}, r["lag_events"]) for r in positions])  # fmt: skip
    out.gauge("masa_projection_lag_seconds", "ingestion-to-projection delay of the last batch",
              [({"projection": r["name"]}, r["lag_seconds"]) for r in positions])  # fmt: skip
    out.gauge("masa_projection_position", "last store position applied",
              [({"projection": r["name"]}, r["position"]) for r in positions])  # fmt: skip
    _ingest_metrics(out, db)
    out.counter("masa_dead_letters_total", "messages ingest rejected to the dead-letter topic",
                _counts(db, DEAD_LETTERS, "reason"))  # fmt: skip
    out.gauge("masa_requests", "requests by status (outcome)", _counts(db, REQUESTS, "status"))
    out.gauge("masa_nodes", "nodes by status", _counts(db, NODES, "status"))
    states = queries.settlement_states(db)
    out.gauge("masa_settlement_epochs", "settled epochs by posting state",
              [({"state": r["state"]}, r["epochs"]) for r in states])  # fmt: skip
    out.gauge("masa_settlement_latest_epoch", "the newest epoch in each posting state",
              [({"state": r["state"]}, r["latest"]) for r in states])  # fmt: skip
    return out.text()


def _ingest_metrics(out: _Metrics, db: ReadDb) -> None:
    parts = queries.ingest_partitions(db)

    def of(row: Row) -> dict[str, str]:
        return {"topic": row["source_topic"], "partition": str(row["source_partition"])}

    timed = [r for r in parts if r["ingest_delay_s"] is not None]
    out.gauge("masa_ingest_lag_seconds",
              "from its producer's occurred_at to its storage, of the newest event sent now",
              [(of(r), r["ingest_delay_s"]) for r in timed])  # fmt: skip
    out.gauge("masa_ingest_last_stored_timestamp_seconds", "when ingest stored the newest event",
              [(of(r), r["last_ingested_at"].timestamp()) for r in parts])  # fmt: skip
    out.gauge("masa_ingest_offset", "bus offset of the newest event stored",
              [(of(r), r["last_offset"]) for r in parts])  # fmt: skip
    out.counter("masa_ingest_events_total", "events stored from the partition (as projected)",
                [(of(r), r["events"]) for r in parts])  # fmt: skip


def _counts(db: ReadDb, table: Table, column: str) -> list[tuple[dict[str, str], float]]:
    return [({column: value}, n) for value, n in queries.counts_by(db, table, column).items()]


class _Metrics:
    """Prometheus text exposition format 0.0.4."""

    def __init__(self) -> None:
        self.lines: list[str] = []

    def gauge(self, name: str, help_: str, samples: list[tuple[dict[str, str], float]]) -> None:
        self._family(name, "gauge", help_, samples)

    def counter(self, name: str, help_: str, samples: list[tuple[dict[str, str], float]]) -> None:
        self._family(name, "counter", help_, samples)

    def _family(
        self, name: str, kind: str, help_: str, samples: list[tuple[dict[str, str], float]]
    ) -> None:
        self.lines.extend([f"# HELP {name} {help_}", f"# TYPE {name} {kind}"])
        for labels, value in samples:
            tags = ",".join(f'{k}="{_label(v)}"' for k, v in sorted(labels.items()))
            self.lines.append(f"{name}{{{tags}}} {value}" if tags else f"{name} {value}")

    def text(self) -> str:
        return "\n".join(self.lines) + "\n"


def _label(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _nodes(app: FastAPI, db: Callable[[], ReadDb]) -> None:
    @app.get(
        "/v1/nodes", response_model=PageOut,
        summary="Nodes with their stake and status, a page at a time",
    )  # fmt: skip
    def list_nodes(
        status: str | None = None, role: str | None = None, cursor: Cursor = None,
        limit: Limit = 100,
    ) -> Response:  # fmt: skip
        found = queries.page(db(), NODES, {"status": status, "role": role}, cursor, limit)
        return _page(NODES, found)

    @app.get("/v1/nodes/{address}", summary="One node: stake, status, uptime per epoch, history")
    def one_node(address: Address, as_of_epoch: AsOfEpoch = None) -> dict[str, Any]:
        address = address.lower()
        row = queries.node(db(), address)
        if row is None:
            raise HTTPException(404, f"no node {address}")
        return {
            **json_row(NODES, row),
            "uptime": [
                json_row(NODE_UPTIME, r) for r in queries.node_uptime(db(), address, as_of_epoch)
            ],
            "stake_changes": [
                json_row(STAKE_CHANGES, r) for r in queries.stake_changes(db(), address)
            ],
        }


def _requests(app: FastAPI, db: Callable[[], ReadDb]) -> None:
    @app.get("/v1/requests", response_model=PageOut, summary="Requests, filtered, a page at a time")
    def list_requests(
        status: str | None = None, kind: str | None = None, oracle: AddressFilter = None,
        worker: AddressFilter = None, epoch: int | None = None, cursor: Cursor = None,
        limit: Limit = 100,
    ) -> Response:  # fmt: skip
        filters = {"status": status, "kind": kind, "oracle": oracle and oracle.lower(),
                   "worker": worker and worker.lower(), "epoch": epoch}  # fmt: skip
        return _page(REQUESTS, queries.page(db(), REQUESTS, filters, cursor, limit))

    @app.get("/v1/requests/{request_id}", summary="One request, with the data it used")
    def one_request(request_id: Annotated[str, Path(max_length=64)]) -> dict[str, Any]:
        row = queries.request(db(), request_id.lower())
        if row is None:
            raise HTTPException(404, f"no request {request_id}")
        uses = queries.request_uses(db(), row["request_id"])
        return {**json_row(REQUESTS, row), "data_uses": [_use(u) for u in uses]}


def _use(row: Row) -> dict[str, Any]:
    return {k: row[k] for k in ("event_id", "contributor", "source", "units", "credited",
                                "refusal", "epoch")}  # fmt: skip


def _money(app: FastAPI, db: Callable[[], ReadDb]) -> None:
    @app.get("/v1/contributors/{address}/attribution", summary="Attribution per epoch, source")
    def contributor(address: Address, as_of_epoch: AsOfEpoch = None) -> dict[str, Any]:
        rows = queries.attribution(db(), address.lower(), as_of_epoch)
        return {"contributor": address.lower(),
                "items": [json_row(CONTRIBUTOR_ATTRIBUTION, r) for r in rows]}  # fmt: skip

    @app.get("/v1/oracles/{address}/balance", summary="An oracle's prepaid fees")
    def balance(address: Address) -> dict[str, Any]:
        row = queries.oracle_balance(db(), address.lower())
        if row is None:
            raise HTTPException(404, f"no deposits or requests from {address.lower()}")
        return json_row(ORACLE_BALANCES, row)

    @app.get(
        "/v1/users/{address}/rewards", summary="The claimant's view: claimable, proof, pending"
    )
    def rewards(address: Address) -> dict[str, Any]:
        """Cumulative, claimed and claimable against the newest posted root, with its proof and
        epoch; the previous root (which still accepts a proof); the breakdown by epoch, kind
        and source down to event ids; and what is pending in epochs not settled yet (never
        part of claimable)."""
        return user_rewards(db(), address.lower())

    @app.get("/v1/epochs", summary="Epochs with their bounds, closing and fees")
    def list_epochs(as_of_epoch: AsOfEpoch = None) -> dict[str, Any]:
        items = [_epoch(db(), r) for r in queries.epochs(db(), as_of_epoch)]
        parameters = [json_row(PARAMETERS, r) for r in queries.parameters(db())]
        return {"items": items, "parameters": parameters}

    @app.get("/v1/epochs/{number}", summary="One epoch")
    def one_epoch(number: Annotated[int, Path(ge=0)]) -> dict[str, Any]:
        row = queries.epoch(db(), number)
        if row is None:
            raise HTTPException(404, f"no epoch {number} yet")
        return _epoch(db(), row)


def _epoch(db: ReadDb, row: Row) -> dict[str, Any]:
    fees = queries.epoch_fees(db, row["epoch"])
    return {**json_row(EPOCHS, row), "fees": json_row(EPOCH_FEES, fees) if fees else None}


def _stats(app: FastAPI, db: Callable[[], ReadDb]) -> None:
    @app.get("/v1/overview", summary="Nodes by status, total stake, request rate, projection lag")
    def overview(
        minutes: Annotated[int, Query(ge=1, le=1440, description="throughput window")] = 60,
    ) -> dict[str, Any]:
        return _overview(db(), minutes)

    @app.get("/v1/stats/latency", summary="Requests and latency p50/p95 (ms) by kind")
    def latency(as_of_epoch: AsOfEpoch = None) -> dict[str, Any]:
        return {"as_of_epoch": as_of_epoch, "items": queries.latency_by_kind(db(), as_of_epoch)}

    @app.get(
        "/v1/uptime", response_model=PageOut,
        summary="Uptime per node and epoch (ppm), a page at a time",
    )  # fmt: skip
    def uptime(
        as_of_epoch: AsOfEpoch = None, cursor: Cursor = None, limit: Limit = 100
    ) -> Response:
        return _page(NODE_UPTIME, queries.uptime_page(db(), as_of_epoch, cursor, limit))

    @app.get("/v1/attribution", summary="Attribution per contributor and epoch, all sources")
    def attribution(as_of_epoch: AsOfEpoch = None) -> dict[str, Any]:
        return {"items": queries.attribution_by_epoch(db(), as_of_epoch)}

    @app.get("/v1/fees", summary="Fees per epoch and their split (wei)")
    def fees(as_of_epoch: AsOfEpoch = None) -> dict[str, Any]:
        rows = queries.all_epoch_fees(db(), as_of_epoch)
        return {"items": [json_row(EPOCH_FEES, r) for r in rows]}


def _overview(db: ReadDb, minutes: int) -> dict[str, Any]:
    now = datetime.now(UTC)
    nodes = queries.counts_by(db, NODES, "status")
    requests = queries.counts_by(db, REQUESTS, "status")
    series = queries.requests_per_minute(db, minutes, now)
    recent = [n for _, n in series[-6:-1]]  # the last five whole minutes
    positions = queries.projection_status(db)
    epochs = queries.epochs(db)
    return {
        "generated_at": _rfc3339(now),
        "nodes": {"total": sum(nodes.values()), "by_status": nodes,
                  "by_role": queries.counts_by(db, NODES, "role")},
        "stake": {k: str(v) for k, v in queries.total_stake(db).items()},
        "requests": {"total": sum(requests.values()), "by_status": requests,
                     "per_minute": sum(recent) / len(recent) if recent else 0.0,
                     "last_minute": series[-1][1] if series else 0,
                     "throughput": [{"minute": _rfc3339(t), "requests": n} for t, n in series]},
        "epochs": {"count": len(epochs), "latest": epochs[-1]["epoch"] if epochs else None,
                   "closed": sum(1 for e in epochs if e["closed"])},
        "projection": {"position": max((r["position"] for r in positions), default=0),
                       "lag_events": max((r["lag_events"] for r in positions), default=0),
                       "lag_seconds": max((r["lag_seconds"] for r in positions), default=0.0),
                       "items": [json_row(PROJECTION_POSITIONS, r) for r in positions]},
    }  # fmt: skip


def _rfc3339(value: datetime) -> str:
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _stream(app: FastAPI, db: Callable[[], ReadDb], poll_s: float) -> None:
    @app.get("/v1/stream", summary="Server-sent events: a 'position' event when the models move")
    async def stream(request: Request, max_events: int | None = None) -> StreamingResponse:
        return StreamingResponse(
            _positions(request, db, poll_s, max_events), media_type="text/event-stream"
        )


async def _positions(
    request: Request, db: Callable[[], ReadDb], poll_s: float, max_events: int | None
) -> AsyncIterator[bytes]:
    last: dict[str, int] = {}
    sent = 0
    yield b": masa read models\n\n"
    while max_events is None or sent < max_events:
        if await request.is_disconnected():
            return
        rows = await asyncio.to_thread(queries.projection_status, db())
        for row in rows:
            if last.get(row["name"]) != row["position"]:
                last[row["name"]] = row["position"]
                data = orjson.dumps(json_row(PROJECTION_POSITIONS, row)).decode()
                yield f"event: position\ndata: {data}\n\n".encode()
                sent += 1
        await asyncio.sleep(poll_s)
