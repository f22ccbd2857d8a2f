"""`factbridge worker` and `factbridge batches ...`: scale-out processing of ingested posts
(see docs/scale-out.md)."""

from __future__ import annotations

import json
import signal
import threading
from types import FrameType
from typing import Annotated

import typer
from rich.table import Table

from factbridge.cli.app import _state, app
from factbridge.console import cells, console, err_console, esc
from factbridge.errors import ConfigError

queue_app = typer.Typer(help="Batches of queued work between ingest and workers: failed ones, retries, backlog (`factbridge queue` is the triage queue).", no_args_is_help=True)
app.add_typer(queue_app, name="batches")


@app.command()
def worker(
    ctx: typer.Context,
    once: Annotated[bool, typer.Option("--once", help="Stop when no batch is ready (cron, tests).")] = False,
    max_batches: Annotated[int | None, typer.Option(help="Stop after this many batches.")] = None,
    name: Annotated[str, typer.Option(help="Worker name in records and logs (default host:pid).")] = "",
    fetch_timeout: Annotated[float, typer.Option(help="Seconds to wait for a batch before looking again (and, with --once, stopping).")] = 2.0,
    as_json: Annotated[bool, typer.Option("--json", help="Print the summary as JSON.")] = False,
    sweep_on_start: Annotated[bool, typer.Option("--sweep/--no-sweep", help="First, when the queue is empty, queue every stored post that misses a stage (after a crash).")] = True,
    sources: Annotated[bool, typer.Option("--sources/--no-sources", help="Also run every organisation's live sources when their interval has passed (`factbridge sources`).")] = True,
) -> None:
    """Run the pipeline stages on batches queued by `factbridge ingest` (queue_url=nats://...).

    Any number of workers share the queue's durable consumer: each batch goes to one of
    them. SIGTERM or Ctrl-C stops after the current batch; a second one hands the batch
    back to the queue at once."""
    from factbridge.pipeline.work import BatchOutcome, Worker

    services = _state(ctx).services()
    queue = services.queue
    if queue.in_process:
        raise ConfigError(
            f"queue_url is '{services.settings.queue_url}' (in-process): `factbridge ingest` runs the stages itself. "
            "Workers need a shared queue: set queue_url=nats://host:port (FACTBRIDGE_QUEUE_URL or --queue-url)."
        )
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        if stop.is_set():
            raise KeyboardInterrupt  # second signal: the current batch is handed back (nack)
        err_console.print(f"[yellow]{signal.Signals(signum).name}: stopping after the current batch[/]")
        stop.set()

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}

    def show(outcome: BatchOutcome) -> None:
        colour = {"done": "green", "retry": "yellow", "failed": "red"}.get(outcome.status, "white")
        line = (f"[{colour}]{outcome.status:6}[/] batch {esc(outcome.batch_id[:12])} org {esc(outcome.org)} "
                f"{outcome.posts} posts, attempt {outcome.attempt}, {outcome.seconds:.2f} s")
        err_console.print(line + (f" — {esc(outcome.error)}" if outcome.error else ""))

    runner = Worker(services, queue, name=name, stop=stop, on_batch=show, fetch_timeout_s=fetch_timeout)
    if sources and not once:
        from rich.markup import escape

        from factbridge.sources.registry import SourceScheduler

        SourceScheduler(services, None, stop, on_result=lambda r: err_console.print(
            f"source {escape(r['name'])}: {r['status']}, {r['posts_new']} new posts, {r['factchecks_new']} new fact-checks"
            + (f" — {escape(r['error'])}" if r["error"] else ""))).start_thread()
    every = services.settings.federation_sync_every_s
    if every > 0 and not once:  # partner feeds on a schedule (docs/federation.md)
        from factbridge.federation.schedule import PartnerSyncScheduler

        PartnerSyncScheduler(services, None, stop, every, on_result=lambda org, r: err_console.print(
            f"partner {esc(r.partner)} of {esc(org)}: {len(r.accepted)} fact-checks accepted, {len(r.refused)} refused, "
            f"{len(r.withdrawn)} withdrawn, {len(r.rematched)} posts re-matched" + (f" — {esc(r.error)}" if r.error else ""))).start_thread()
    err_console.print(f"worker {runner.name} consuming {services.settings.queue_url} (storage {services.settings.resolved_storage_url})")
    if sweep_on_start:
        from factbridge.pipeline.process import sweep

        swept = {org: n for org, n in sweep(services, only_if_idle=True).items() if n}
        if swept:
            err_console.print("start sweep: queued " + ", ".join(f"{n} posts of {org}" for org, n in swept.items()) + " that miss a stage")
    try:
        report = runner.run(max_batches=max_batches, once=once)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    summary = report.as_dict()
    if as_json:
        console.print_json(json.dumps(summary, default=str))
        return
    table = Table(title=f"Worker {report.worker}")
    for col in ("batches done", "posts", "retried", "failed", "seconds", "posts/s"):
        table.add_column(col)
    rate = summary["posts"] / report.seconds if report.seconds else 0.0
    table.add_row(str(summary["done"]), str(summary["posts"]), str(summary["retried"]), str(summary["failed"]),
                  f"{report.seconds:.1f}", f"{rate:.1f}")
    console.print(table)


@queue_app.command("failed")
def queue_failed(
    ctx: typer.Context,
    limit: Annotated[int, typer.Option(help="Most records shown.")] = 50,
    include_resolved: Annotated[bool, typer.Option("--all", help="Also batches that were retried or recovered.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the records as JSON.")] = False,
) -> None:
    """Batches that failed after every allowed delivery, with their error (newest first)."""
    from factbridge.pipeline.work import list_failures

    services = _state(ctx).services()
    rows = list_failures(services, services.settings.org, limit, include_resolved)
    if as_json:
        console.print_json(json.dumps([dict(r.to_doc(), id=r.id) for r in rows], default=str))
        return
    if not rows:
        console.print("no failed batches")
        return
    table = Table(title=f"Failed batches ({len(rows)})")
    for col in ("batch", "status", "posts", "attempts", "worker", "when", "error"):
        table.add_column(col)
    for row in rows:
        table.add_row(*cells(row.id, row.status, len(row.post_ids), row.attempts, row.worker, row.updated_at, row.error))
    console.print(table)


@queue_app.command("retry")
def queue_retry(
    ctx: typer.Context,
    batch_ids: Annotated[list[str] | None, typer.Argument(help="Failed batch ids (default: every failed batch of the org).")] = None,
) -> None:
    """Publish failed batches again (after fixing their cause); they keep their history."""
    from factbridge.pipeline.work import retry_failures

    services = _state(ctx).services()
    if services.queue.in_process:
        raise ConfigError("batches retry needs a shared queue (queue_url=nats://...) that workers consume")
    done = retry_failures(services, services.settings.org, batch_ids or None)
    console.print(f"republished {len(done)} batches" + (": " + ", ".join(done) if done else ""))


@queue_app.command("requeue")
def queue_requeue(
    ctx: typer.Context,
    post_ids: Annotated[list[str] | None, typer.Argument(help="Stored post ids to process again.")] = None,
    all_posts: Annotated[bool, typer.Option("--all", help="Every stored post of the organisation.")] = False,
    match: Annotated[bool, typer.Option(help="Include the matching stage.")] = True,
) -> None:
    """Queue stored posts for the workers again (posts stored while the queue was down;
    stages are idempotent, so requeueing processed posts only costs time)."""
    from factbridge.errors import InputError, NotFound
    from factbridge.pipeline.work import publish_post_ids

    services = _state(ctx).services()
    org = services.settings.org
    if services.queue.in_process:
        raise ConfigError("batches requeue needs a shared queue (queue_url=nats://...) that workers consume")
    if all_posts == bool(post_ids):
        raise InputError("give post ids or --all (not both)", field="post_ids")
    if all_posts:
        ids = [p.id for p in services.storage.iter_posts(org)]
    else:
        ids = list(dict.fromkeys(post_ids or []))
        found = services.storage.get_posts(org, ids)
        unknown = [i for i in ids if i not in found]
        if unknown:
            raise NotFound(f"no post {', '.join(unknown[:10])} in org '{org}'")
    published = publish_post_ids(services, org, ids, () if match else ("matching",), force=True)
    console.print(f"queued {published['posts']} posts in {published['batches']} batches")


@queue_app.command("status")
def queue_status(ctx: typer.Context, as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """Backlog of the queue: batches waiting and batches held by workers."""
    from factbridge.pipeline.work import list_failures

    services = _state(ctx).services()
    counts = services.queue.pending()
    counts["failed"] = len(list_failures(services, services.settings.org, limit=100_000))
    if as_json:
        console.print_json(json.dumps(counts))
        return
    console.print(f"{services.settings.queue_url}: {counts['waiting']} batches waiting, {counts['in_flight']} held by workers, "
                  f"{counts['failed']} failed (org {services.settings.org})")
