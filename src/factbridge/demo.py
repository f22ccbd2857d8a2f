"""`make demo`: the bundled multilingual sample, end to end, with a readable summary."""

from __future__ import annotations

import shutil
from collections import Counter
from importlib.resources import files
from pathlib import Path

from rich.table import Table

from factbridge.console import console, progress_bar
from factbridge.pipeline.ingest import import_factcheck_files, read_file
from factbridge.pipeline.matching import index_factchecks
from factbridge.pipeline.process import drain, process
from factbridge.pipeline.work import BatchOutcome
from factbridge.services import Services


def sample_dir() -> Path:
    return Path(str(files("factbridge") / "data" / "sample"))


def run_demo(services: Services, fresh: bool = True) -> dict[str, int]:
    settings = services.settings
    if fresh and settings.resolved_storage_url.startswith("sqlite:///"):
        db = Path(settings.resolved_storage_url.removeprefix("sqlite:///"))
        for suffix in ("", "-wal", "-shm"):
            Path(str(db) + suffix).unlink(missing_ok=True)
        shutil.rmtree(db.parent / "artifacts", ignore_errors=True)
    org = settings.org
    storage = services.storage
    sample = sample_dir()
    console.rule("[bold]FactBridge demo")
    report, _ = import_factcheck_files(storage, org, sorted(sample.glob("factchecks*")), services.languages)
    console.print(f"fact-check library: {storage.count_factchecks(org)} fact-checks ({report.inserted} new) from {sample}")
    with progress_bar("embedding fact-checks", None) as advance:
        index_factchecks(storage, services.embedder, org, advance, on_total=advance.set_total)
    quarantined = []
    queued = 0
    for path in sorted(sample.glob("posts*")):
        posts, bad = read_file(path, services.languages)
        queued += process(services, org, posts, bad).queued
        quarantined.extend(bad)
    console.print(f"posts: {storage.count_posts(org)} stored, {len(quarantined)} rows quarantined (the sample has some bad rows on purpose)")
    for q in quarantined:
        console.print(f"  [yellow]quarantined[/] {Path(q.source).name}:{q.line} {q.field or ''} — {q.reason}")
    # the one processing path: posts were stored and queued; this process is the queue's consumer
    stage_summary: dict[str, dict[str, object]] = {}
    with progress_bar("processing posts (stages)", queued) as advance:
        def on_batch(outcome: BatchOutcome) -> None:
            advance(outcome.posts)
            for name, info in outcome.stages.items():
                stage_summary.setdefault(name, {}).update(info)
        drain(services, on_batch)
    all_posts = list(storage.iter_posts(org))
    matcher = services.matcher()
    results = [storage.matches_for_post(org, p.id) for p in all_posts]
    fcs = {fc.id: fc for fc in storage.iter_factchecks(org)}
    table = Table(title="Posts that repeat a fact-checked claim", show_lines=False)
    for col in ("post", "lang", "decision", "score", "fact-check (lang, rating)", "post text"):
        table.add_column(col, overflow="fold")
    decisions: Counter[str] = Counter()
    pairs: Counter[str] = Counter()
    for post, cands in sorted(zip(all_posts, results, strict=True), key=lambda pr: -(pr[1][0].fused_score if pr[1] else 0)):
        best = cands[0] if cands else None
        decisions[best.decision if best else "none"] += 1
        if not best or best.decision == "none":
            continue
        fc = fcs[best.factcheck_id]
        pairs[f"{post.language}->{fc.language}"] += 1
        table.add_row(post.id, post.language or "", best.decision, f"{best.fused_score:.2f}", f"{fc.claim[:70]} ({fc.language}, {fc.rating})", post.text[:80])
    console.print(table)
    console.print(
        f"decisions: {decisions['match']} match, {decisions['possible']} possible, {decisions['none']} none; "
        f"language pairs matched: {', '.join(f'{k} x{v}' for k, v in sorted(pairs.items()))}"
    )
    console.print(f"[dim]decided_by: {matcher.decided_by}[/]")
    for name, info in stage_summary.items():
        console.print(f"{name}: " + ", ".join(f"{k} {v}" for k, v in info.items()))
    return dict(decisions)
