"""Posts and fact-checks in: ingest, quarantine, the fact-check library, match."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table
from rich.text import Text

from factbridge.backends.connectors.reading import InputLimits
from factbridge.cli.app import (
    _print_quarantine,
    _state,
    app,
    factchecks_app,
)
from factbridge.console import cells, clean, console, err_console, esc, plain, progress_bar
from factbridge.errors import InputError, QueueError


@app.command()
def ingest(
    ctx: typer.Context,
    files: Annotated[list[Path], typer.Argument(help="JSONL or CSV files of posts (or what --connector reads).")],
    platform: Annotated[str, typer.Option(help="Platform name for rows that do not say.")] = "",
    connector: Annotated[str | None, typer.Option(help="Connector (entry point in factbridge.connectors: jsonl, csv or a plugin's); default: from the file name.")] = None,
    match: Annotated[bool, typer.Option(help="Match new posts against the fact-check library.")] = True,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
) -> None:
    """Ingest posts: bad rows are quarantined with file, line and reason; the rest go in. Idempotent.

    New and changed posts, and unchanged ones that miss a stage (an interrupted run), are
    queued for the stages: run here with the in-process queue, by `factbridge worker` with
    a shared one."""
    from factbridge.images.processing import ImageProcessor
    from factbridge.models import ImportReport
    from factbridge.pipeline.ingest import read_file
    from factbridge.pipeline.process import ProcessReport, drain, process
    from factbridge.pipeline.work import BatchOutcome

    services = _state(ctx).services()
    org = services.settings.org
    limits = InputLimits.from_settings(services.settings)
    queued = not services.queue.in_process
    reports: list[ImportReport] = []
    total = ProcessReport()
    skip = () if match else ("matching",)
    for path in files:
        posts, bad = read_file(path, services.languages, platform, limits, connector,
                               images=ImageProcessor.from_settings(services.settings, show_progress=True))
        try:
            done = process(services, org, posts, bad, skip=skip)
        except QueueError as exc:
            raise QueueError(f"{exc}. The posts of {path} are stored but not all are queued: once the queue is back, "
                             "`factbridge worker` (its start sweep) or `factbridge pipeline resume` queues them") from exc
        total.add(done)
        reports.append(ImportReport(source=str(path), inserted=done.inserted, updated=done.updated, unchanged=done.unchanged, quarantined=bad))
    summary: dict[str, dict[str, Any]] = {}
    failed: list[str] = []
    if total.queued and not queued:
        with progress_bar("processing posts (stages)", total.queued) as advance:
            def on_batch(outcome: BatchOutcome) -> None:
                advance(outcome.posts)
                for name, info in outcome.stages.items():
                    merged = summary.setdefault(name, {})
                    for key, value in info.items():
                        merged[key] = merged.get(key, 0) + value if isinstance(value, int | float) and not isinstance(value, bool) else value
                if outcome.status != "done":
                    failed.append(f"batch {outcome.batch_id}: {outcome.error}")
            drain(services, on_batch)
    matched = int(summary.get("matching", {}).get("matched", 0))
    if as_json:
        out: dict[str, Any] = {"files": [r.model_dump() for r in reports], "resumed": total.resumed, "queued": total.queued, "stages": summary}
        if queued and total.queued:
            out["published"] = {"posts": total.queued, "batches": len(total.batches), "batch_ids": total.batches}
        console.print_json(json.dumps(out, default=str))
        return
    table = Table(title="Ingest")
    for col in ("file", "new", "updated", "unchanged", "quarantined"):
        table.add_column(col)
    for r in reports:
        table.add_row(*cells(r.source, r.inserted, r.updated, r.unchanged, len(r.quarantined)))
    console.print(table)
    console.print(f"{total.inserted + total.updated} new or changed, {total.unchanged} unchanged, {total.resumed} resumed "
                  "(unchanged posts an earlier run left without every stage)")
    if queued:
        console.print(f"queued {total.queued} posts in {len(total.batches)} batches on "
                      f"{esc(services.settings.queue_url)}; `factbridge worker` processes run the stages.")
        _print_quarantine([q for r in reports for q in r.quarantined])
        return
    console.print(f"{matched} processed posts repeat a fact-checked claim (match or possible).")
    for name, info in summary.items():
        if name != "matching":
            console.print(esc(f"{name}: " + ", ".join(f"{k} {v}" for k, v in info.items())))
    for line in failed:
        err_console.print(f"[red]failed[/] {esc(line)} (`factbridge batches failed`)")
    _print_quarantine([q for r in reports for q in r.quarantined])
    if failed:
        raise typer.Exit(1)


@app.command()
def quarantine(ctx: typer.Context, limit: int = 50) -> None:
    """List quarantined rows (newest first)."""
    services = _state(ctx).services()
    rows = services.storage.list_quarantine(services.settings.org, limit)
    if not rows:
        console.print("nothing quarantined")
    _print_quarantine(rows, limit)


def _parse_map(items: list[str]) -> dict[str, str]:
    mapping = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep:
            raise InputError(f"--map expects FIELD=COLUMN, got '{item}'")
        mapping[key.strip()] = value.strip()
    return mapping


@factchecks_app.command("import")
def factchecks_import(
    ctx: typer.Context,
    files: Annotated[list[Path], typer.Argument(help="ClaimReview JSON/JSON-LD/HTML, Google Fact Check JSON, CSV, CheckThat! files or folders.")],
    fmt: Annotated[str, typer.Option("--format", help="auto, claimreview, google, csv or checkthat.")] = "auto",
    map_: Annotated[list[str], typer.Option("--map", help="CSV column mapping FIELD=COLUMN (claim, title, rating, publisher, url, language, published_at...).")] = [],  # noqa: B006
    recheck: Annotated[bool, typer.Option(help="Re-match stored posts against new fact-checks.")] = True,
) -> None:
    """Import fact-checks (upsert by id/URL), embed the new ones, re-check stored posts."""
    from factbridge.images.processing import ImageProcessor
    from factbridge.pipeline.ingest import import_factcheck_files
    from factbridge.pipeline.matching import index_factchecks

    services = _state(ctx).services()
    org = services.settings.org
    t0 = time.perf_counter()
    with progress_bar("reading fact-checks", None) as advance:
        report, changed = import_factcheck_files(
            services.storage, org, files, services.languages, fmt, _parse_map(map_), advance, InputLimits.from_settings(services.settings),
            images=ImageProcessor.from_settings(services.settings),
        )
    t1 = time.perf_counter()
    with progress_bar("embedding fact-checks", None) as advance:
        embedded = index_factchecks(services.storage, services.embedder, org, advance, on_total=advance.set_total)
    t2 = time.perf_counter()
    console.print(
        f"fact-checks: {report.inserted} new, {report.updated} updated, {report.unchanged} unchanged, "
        f"{len(report.quarantined)} quarantined; read in {t1 - t0:.1f} s; embedded {embedded} in {t2 - t1:.1f} s"
        + (f" ({embedded / (t2 - t1):.1f}/s)" if embedded else "")
    )
    _print_quarantine(report.quarantined)
    if recheck and changed and services.storage.count_posts(org):
        from factbridge.pipeline.recheck import recheck_factchecks

        outcome = recheck_factchecks(services, org, changed)
        found = {k: v for k, v in outcome.hits.items() if v}
        for fc_id, posts in sorted(found.items(), key=lambda kv: -len(kv[1]))[:10]:
            console.print(f"  debunk {esc(fc_id)} matches {len(posts)} stored posts")
        console.print(
            f"re-checked stored posts: {sum(map(len, found.values()))} post matches to {len(found)} new fact-checks; "
            f"{outcome.narratives.get('narratives_changed', 0)} narratives' fact-check lists and "
            f"{outcome.queue.get('queued_posts', 0) + outcome.queue.get('queued_narratives', 0)} queue entries refreshed"
        )
        if outcome.alerts.get("reclassified"):
            console.print(f"  {outcome.alerts['reclassified']} burst alert(s) now repeat a debunked claim that had gone quiet: re-classified as resurfacing")


@factchecks_app.command("list")
def factchecks_list(ctx: typer.Context, limit: int = 20) -> None:
    """List fact-checks in the library."""
    services = _state(ctx).services()
    org = services.settings.org
    table = Table(title=f"Fact-checks ({services.storage.count_factchecks(org)})")
    for col in ("id", "lang", "rating", "publisher", "claim"):
        table.add_column(col, overflow="fold")
    for n, fc in enumerate(services.storage.iter_factchecks(org)):
        if n >= limit:
            break
        table.add_row(*cells(fc.id, fc.language or "", fc.rating, fc.publisher, fc.claim[:120]))
    console.print(table)


def _partner_note(fc: Any) -> Text:
    """A partner desk's fact-check says so: "debunked by Khmer Desk (partner km), verified signature"."""
    from factbridge.federation.sync import trust_label

    label = trust_label(fc)
    return Text("\n" + clean(label), style="bold cyan") if label else Text("")


def _match_table(results: list[Any], texts: list[str]) -> None:
    for text, result in zip(texts, results, strict=True):
        table = Table(title=plain(f"[{result.language}] {text[:100]}"), title_justify="left")
        for col in ("#", "decision", "fused", "dense (rank)", "lexical (rank)", "rating", "lang", "fact-check"):
            table.add_column(col, overflow="fold")
        for c in result.candidates:
            fc = c.factcheck
            style = {"match": "bold green", "possible": "yellow"}.get(c.decision, "dim")
            table.add_row(*cells(
                c.rank, plain(c.decision, style), f"{c.fused_score:.3f}",
                f"{c.dense.score:.3f} ({c.dense.rank})" if c.dense.score is not None else "-",
                f"{c.lexical.score:.2f} ({c.lexical.rank})" if c.lexical.score is not None else "-",
                fc.rating if fc else "", fc.language if fc else "",
                (Text(clean(f"{fc.publisher}: {fc.claim[:90]}")) + _partner_note(fc)) if fc else c.factcheck_id,
            ))
        console.print(table)
        console.print(f"[dim]decided_by: {esc(result.decided_by)}[/]")


@app.command()
def match(
    ctx: typer.Context,
    text: Annotated[str | None, typer.Argument(help="Post text to match.")] = None,
    file: Annotated[Path | None, typer.Option(help="JSONL/CSV posts to match (not stored).")] = None,
    language: Annotated[str | None, typer.Option(help="Language of the text if known.")] = None,
    top_k: Annotated[int | None, typer.Option(help="Fact-checks to show per post.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Which fact-checks does this post repeat? Shows each signal, the fused score and the decision."""
    from factbridge.backends.connectors.files import read_posts
    from factbridge.models import Post, Quarantined
    from factbridge.pipeline.prepare import prepare_post

    if (text is None) == (file is None):
        raise InputError("give either a TEXT or --file")
    services = _state(ctx).services(**({"match_top_k": top_k} if top_k else {}))
    posts: list[Post] = []
    if text is not None:
        posts.append(Post(id="cli", text=text, language=language))
    else:
        assert file is not None
        for item in read_posts(file):
            if isinstance(item, Quarantined):
                _print_quarantine([item])
            else:
                posts.append(item)
    posts = [prepare_post(p, services.languages) for p in posts]
    if not services.storage.count_factchecks(services.settings.org):
        raise InputError("the fact-check library is empty: run 'factbridge factchecks import FILE' first")
    matcher = services.matcher()
    results = matcher.match_posts(posts, with_factchecks=True)
    if as_json:
        payload = [r.model_dump(mode="json") for r in results]
        sys.stdout.write(json.dumps(payload if file else payload[0], ensure_ascii=False, indent=2) + "\n")
        return
    _match_table(results, [p.text for p in posts])
