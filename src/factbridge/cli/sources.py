"""`factbridge sources add/list/run/remove`: connectors that resume where they stopped."""

from __future__ import annotations

import json
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from factbridge.cli.app import _state, app
from factbridge.console import console, err_console

sources_app = typer.Typer(help="Live sources (RSS/Atom, ClaimReview sitemaps, Telegram exports, Mastodon, Bluesky, Meta Content Library, YouTube comments, webhooks).", no_args_is_help=True)
app.add_typer(sources_app, name="sources")


@sources_app.command("add")
def sources_add(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="A short name for the source (lower case).")],
    connector: Annotated[str, typer.Argument(help="Connector: rss, claimreview-sitemap, telegram-export, mastodon, bluesky, meta-content-library, youtube-comments, jsonl, csv or webhook.")],
    option: Annotated[list[str], typer.Option("--option", "-o", help="Connector option KEY=VALUE (repeat), e.g. -o url=https://example.org/feed.xml")] = [],  # noqa: B006
    interval: Annotated[float, typer.Option(help="Seconds between scheduled runs.")] = 3600.0,
) -> None:
    """Add a source; its options are checked now. A webhook source prints its signing secret once."""
    from factbridge.sources.registry import add_source, parse_options

    services = _state(ctx).services()
    record = add_source(services, services.settings.org, name, connector, parse_options(option), interval)
    console.print(f"source {escape(name)} added ({escape(connector)}, every {interval:.0f} s)")
    if record.secret:
        console.print(f"webhook: POST /api/v1/hooks/{escape(services.settings.org)}/{escape(name)} signed with secret [bold]{record.secret}[/] "
                      "(header X-FactBridge-Signature: t=<unix time>,v1=<hex HMAC-SHA256 of '<t>.<body>'>); shown once")


@sources_app.command("list")
def sources_list(ctx: typer.Context, as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """Sources with their cursor, last run and totals."""
    from factbridge.sources.registry import list_sources

    services = _state(ctx).services()
    rows = list_sources(services.storage, services.settings.org)
    if as_json:
        console.print_json(json.dumps([s.public() for s in rows], default=str))
        return
    table = Table(title=f"Sources ({len(rows)})")
    for col in ("name", "connector", "every (s)", "last run", "status", "cursor", "posts", "fact-checks", "quarantined"):
        table.add_column(col, overflow="fold")
    for row in rows:
        status = row.last_status + (f": {row.last_error}" if row.last_error else "")
        table.add_row(escape(row.name), escape(row.connector), f"{row.interval_s:.0f}", str(row.last_run_at or "-"), escape(status),
                      escape(str(row.cursor or "-"))[:60], *(str(row.totals.get(k, 0)) for k in ("posts", "factchecks", "quarantined")))
    console.print(table)


@sources_app.command("run")
def sources_run(
    ctx: typer.Context,
    names: Annotated[list[str] | None, typer.Argument(help="Sources to run (default: every source that is due).")] = None,
    due: Annotated[bool, typer.Option("--due", help="Only the sources whose interval has passed (what the scheduler does).")] = False,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Fetch from each source's cursor, ingest (idempotent), store the new cursor."""
    from factbridge.sources.registry import due_sources, list_sources, run_source

    services = _state(ctx).services()
    org = services.settings.org
    if names:
        todo = list(names)
    elif due:
        todo = due_sources(services.storage, org)
    else:
        todo = [s.name for s in list_sources(services.storage, org) if s.connector != "webhook"]
    results = []
    for name in todo:
        with console.status(f"fetching {escape(name)}"):
            results.append(run_source(services, org, name))
    if as_json:
        console.print_json(json.dumps(results))
        return
    table = Table(title="Source runs")
    for col in ("source", "status", "pages", "posts new", "updated", "unchanged", "fact-checks new", "quarantined", "seconds"):
        table.add_column(col)
    for r in results:
        table.add_row(escape(r["name"]), r["status"], str(r["pages"]), str(r["posts_new"]), str(r["posts_updated"]), str(r["posts_unchanged"]),
                      str(r["factchecks_new"]), str(r["quarantined"]), f"{r['seconds']:.1f}")
    console.print(table)
    for r in results:
        if r["error"]:
            err_console.print(f"[red]{escape(r['name'])}[/]: {escape(r['error'])}")
    if not results:
        console.print("no source to run")
    if any(r["status"] != "ok" for r in results):
        raise typer.Exit(1)


@sources_app.command("remove")
def sources_remove(ctx: typer.Context, name: Annotated[str, typer.Argument()]) -> None:
    """Stop fetching a source (what it brought in stays)."""
    from factbridge.sources.registry import remove_source

    services = _state(ctx).services()
    remove_source(services.storage, services.settings.org, name)
    console.print(f"source {escape(name)} removed; its posts stay")


@sources_app.command("schedule")
def sources_schedule(
    ctx: typer.Context,
    tick: Annotated[float, typer.Option(help="Seconds between looks for due sources.")] = 30.0,
) -> None:
    """Run due sources until stopped (Ctrl-C): the scheduler of `factbridge worker`, for
    installations with the in-process queue."""
    import threading

    from factbridge.sources.registry import SourceScheduler

    services = _state(ctx).services()
    stop = threading.Event()
    scheduler = SourceScheduler(services, services.settings.org, stop, tick, on_result=lambda r: console.print(
        f"source {escape(r['name'])}: {r['status']}, {r['posts_new']} new posts, {r['factchecks_new']} new fact-checks"
        + (f" — {escape(r['error'])}" if r["error"] else "")))
    err_console.print(f"running due sources of org {escape(services.settings.org)} every {tick:.0f} s; Ctrl-C stops")
    try:
        scheduler.run()
    except KeyboardInterrupt:
        stop.set()
