"""`factbridge pipeline ...`: the registered stages and the posts that miss some of them."""

from __future__ import annotations

import json
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from factbridge.cli.app import _state, app
from factbridge.console import console, progress_bar

pipeline_app = typer.Typer(help="The stages of the pipeline, and which stored posts miss which stage.", no_args_is_help=True)
app.add_typer(pipeline_app, name="pipeline")


@pipeline_app.command("stages")
def pipeline_stages() -> None:
    """The registered stages in the order they run (by declared needs)."""
    from factbridge.pipeline.stages import load_stages

    table = Table(title="Stages (factbridge.stages entry points)")
    for col in ("#", "stage", "version", "needs", "writes"):
        table.add_column(col)
    for n, stage in enumerate(load_stages(), 1):
        table.add_row(str(n), escape(stage.name), escape(stage.version), escape(", ".join(stage.needs)), escape(", ".join(stage.writes)))
    console.print(table)


@pipeline_app.command("status")
def pipeline_status(
    ctx: typer.Context,
    all_orgs: Annotated[bool, typer.Option("--all-orgs", help="Every registered organisation, not only --org.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """How many stored posts miss which stage (an interrupted ingest or worker leaves some)."""
    from factbridge.pipeline.process import backlog, known_orgs

    services = _state(ctx).services()
    orgs = known_orgs(services) if all_orgs else [services.settings.org]
    results = {org: backlog(services, org) for org in orgs}
    if as_json:
        out = {org: {"posts": b.posts, "complete": b.complete, "missing": b.missing} for org, b in results.items()}
        console.print_json(json.dumps(out))
        return
    for org, b in results.items():
        table = Table(title=f"org {escape(org)}: {b.posts} posts, {b.complete} with every stage, {b.posts - b.complete} missing some")
        table.add_column("stage")
        table.add_column("posts missing it", justify="right")
        for name, count in b.missing.items():
            table.add_row(escape(name), f"[yellow]{count}[/]" if count else "0")
        console.print(table)
    if any(b.posts - b.complete for b in results.values()):
        console.print("`factbridge pipeline resume` (or a worker's start sweep) finishes them.")


@pipeline_app.command("resume")
def pipeline_resume(
    ctx: typer.Context,
    all_orgs: Annotated[bool, typer.Option("--all-orgs", help="Every registered organisation, not only --org.")] = False,
) -> None:
    """Queue every stored post that misses a stage; with the in-process queue, run them here."""
    from factbridge.pipeline.process import drain, known_orgs, sweep
    from factbridge.pipeline.work import BatchOutcome

    services = _state(ctx).services()
    orgs = known_orgs(services) if all_orgs else [services.settings.org]
    queued = sweep(services, orgs)
    total = sum(queued.values())
    console.print(f"queued {total} posts that miss a stage" + (f" ({', '.join(f'{escape(o)}: {n}' for o, n in queued.items())})" if total else ""))
    if total and services.queue.in_process:
        with progress_bar("processing posts (stages)", total) as advance:
            def on_batch(outcome: BatchOutcome) -> None:
                advance(outcome.posts)
            report = drain(services, on_batch)
        console.print(f"processed {sum(o.posts for o in report.outcomes if o.status == 'done')} posts; "
                      f"{report.count('failed')} batches failed (`factbridge batches failed`)")
