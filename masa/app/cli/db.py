"""``masa db``: the read models' schema (migrations, revision, the dashboards' reader role)."""

from __future__ import annotations

import typer

from masa.app.cli.common import JsonOption, out_console, print_json, settings
from masa.app.wiring import open_read_db
from masa.errors import ConfigurationError

app = typer.Typer(
    help="The read models' schema: migrate, status, grant-reader.", no_args_is_help=True
)


@app.command("migrate")
def migrate(ctx: typer.Context, as_json: bool = JsonOption) -> None:
    """Create or upgrade the read-model tables to the newest revision (safe to run again).

    Examples:
      masa db migrate
      MASA_STORE__BACKEND=postgres masa db migrate --json
    """
    from projections.schema import migrate as run_migrations

    db = open_read_db(settings(ctx))
    try:
        before = _revision(db.url)
        after = run_migrations(db.url)
    finally:
        db.close()
    if as_json:
        print_json({"from": before, "to": after})
    else:
        out_console.print(f"read models: revision {before or 'none'} -> {after}")


@app.command("status")
def status(ctx: typer.Context, as_json: bool = JsonOption) -> None:
    """The read models' revision and the newest one this code knows.

    Examples:
      masa db status --json
    """
    from projections.schema import head_revision

    db = open_read_db(settings(ctx))
    try:
        current = _revision(db.url)
    finally:
        db.close()
    report = {"revision": current, "head": head_revision(), "database": db.dialect}
    if as_json:
        print_json(report)
    else:
        behind = "" if current == report["head"] else " (behind: run 'masa db migrate')"
        out_console.print(f"read models: revision {current or 'none'} of {report['head']}{behind}")


@app.command("grant-reader")
def grant_reader(
    ctx: typer.Context,
    role: str = typer.Argument(..., help="An existing PostgreSQL role (e.g. created by a DBA)."),
    as_json: bool = JsonOption,
) -> None:
    """Give a dashboard role SELECT on the read models and nothing else (PostgreSQL).

    The role cannot write, and cannot read the event store's own tables. Rebuilt tables keep
    the grant.

    Examples:
      psql -c "CREATE ROLE grafana LOGIN PASSWORD 'secret'"
      masa db grant-reader grafana
    """
    from projections.schema import grant_reader as grant

    config = settings(ctx)
    db = open_read_db(config)
    try:
        if db.dialect == "postgresql":
            with db.transaction() as tx:
                exists = tx.fetchall("SELECT 1 FROM pg_roles WHERE rolname = ?", (role,))
            if not exists:
                raise ConfigurationError(
                    f"no PostgreSQL role {role!r}: have it created first"
                    f" (CREATE ROLE {role} LOGIN PASSWORD '...'), then rerun"
                )
        tables = grant(db, role, schema=config.projections.postgres_schema)
    finally:
        db.close()
    if as_json:
        print_json({"role": role, "tables": tables})
    else:
        out_console.print(f"{role}: SELECT on {len(tables)} read-model tables")


def _revision(url: str) -> str | None:
    from projections.schema import current_revision

    return current_revision(url)
