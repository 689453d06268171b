"""``masa config``: the effective settings, and the reference of all of them."""

from __future__ import annotations

import typer

from masa.app.cli.common import JsonOption, examples, out_console, print_json, settings, table
from masa.app.settings import settings_reference

app = typer.Typer(
    help="Show the effective settings or the reference of all settings.", no_args_is_help=True
)

_SECRET = ("password",)


@app.command(
    "show",
    epilog=examples(
        "masa config show",
        "MASA_STORE__BACKEND=postgres masa --config prod.toml config show --json",
    ),
)
def show(ctx: typer.Context, as_json: bool = JsonOption) -> None:
    """The settings this command line resolves to (env, masa.toml, options), secrets masked."""
    data = settings(ctx).model_dump(mode="json")
    for section in data.values():
        if isinstance(section, dict):
            for key in section:
                if any(word in key for word in _SECRET) and section[key]:
                    section[key] = "***"
    if as_json:
        print_json(data)
        return
    rows = [
        [f"{section}.{key}" if isinstance(values, dict) else section, value]
        for section, values in data.items()
        for key, value in (values.items() if isinstance(values, dict) else [("", values)])
    ]
    out_console.print(table("settings", ["setting", "value"], rows))


@app.command(
    "reference",
    epilog=examples(
        "masa config reference > settings.md",
    ),
)
def reference() -> None:
    """Every setting as a Markdown table (environment variable, default, meaning)."""
    typer.echo(settings_reference(), nl=False)
