"""factbridge demo: the main job on the embedded defaults and the bundled sample."""

from __future__ import annotations

from typing import Annotated

import typer

from factbridge.cli.app import (
    _state,
    app,
)
from factbridge.console import console
from factbridge.demo_data import DEFAULT_DATA_DIR, demo_data_dir


@app.command()
def demo(
    ctx: typer.Context,
    fresh: Annotated[bool, typer.Option(help="Start from an empty demo database (by default a re-run keeps the demo's cases, verdicts and decisions).")] = False,
    serve: Annotated[bool, typer.Option(help="Then start the workspace with the demo data and demo users.")] = False,
) -> None:
    """Load the bundled multilingual sample, ingest, match and print a summary."""
    from factbridge.cli.web import run_server, seed_demo_accounts
    from factbridge.demo import run_demo

    state = _state(ctx)
    if "data_dir" not in state.overrides:
        state.overrides["data_dir"] = str(demo_data_dir(DEFAULT_DATA_DIR))
    services = state.services()
    run_demo(services, fresh=fresh)
    password = seed_demo_accounts(services)
    settings = services.settings
    console.print(
        f"workspace: http://{settings.host}:{settings.port}/  sign in as [bold]editor[/] (second editor: [bold]reviewer[/], "
        f"also analyst, admin) with password [bold]{password}[/]; public site: http://{settings.host}:{settings.port}/public/{settings.org}"
    )
    console.print(f"demo data: {settings.data_dir} (other commands use it while {DEFAULT_DATA_DIR} has no database of its own, "
                  "e.g. `factbridge queue`; `factbridge demo --fresh` starts it over)")
    if serve:
        from factbridge.cli.tiplines import start_demo_tipline

        try:
            _, _, botapi_url, _ = start_demo_tipline(services)
        except OSError as exc:  # the port is taken (another demo): the workspace still starts
            console.print(f"[yellow]tipline not started: port {services.settings.tipline_botapi_port} on 127.0.0.1: {exc}[/] "
                          "(set FACTBRIDGE_TIPLINE_BOTAPI_PORT)", soft_wrap=True)
        else:
            console.print(f"tipline: a Telegram bot answers on the bundled Bot API stand-in {botapi_url}; chat with it: "
                          '[bold]factbridge tipline try "Drinking boiled papaya leaf water cures dengue fever"[/]', soft_wrap=True)
        run_server(services)
