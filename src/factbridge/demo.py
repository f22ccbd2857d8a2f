"""`make demo`: the bundled multilingual sample, end to end, with a readable summary."""

from __future__ import annotations

import shutil
from collections import Counter
from importlib.resources import files
from pathlib import Path

from rich.table import Table

from factbridge.console import console, progress_bar
from factbridge.pipeline.ingest import (
    embed_posts,
    import_factcheck_files,
    ingest_file,
    match_and_store,
)
from factbridge.pipeline.matching import index_factchecks
from factbridge.pipeline.stages import run_stages
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
    posts = []
    quarantined = []
    for path in sorted(sample.glob("posts*")):
        outcome = ingest_file(storage, org, path, services.languages)
        posts.extend(outcome.posts)
        quarantined.extend(outcome.report.quarantined)
    console.print(f"posts: {storage.count_posts(org)} stored, {len(quarantined)} rows quarantined (the sample has some bad rows on purpose)")
    for q in quarantined:
        console.print(f"  [yellow]quarantined[/] {Path(q.source).name}:{q.line} {q.field or ''} — {q.reason}")
    all_posts = list(storage.iter_posts(org))
    with progress_bar("embedding posts", len(all_posts)) as advance:
        embed_posts(storage, services.embedder, org, all_posts, advance)
    matcher = services.matcher()
    results = match_and_store(storage, matcher, org, all_posts)
    # After matching, as in the pipeline: triage reads the stored matches (resurfacing debunks).
    stage_summary = run_stages(services, org, all_posts, skip=("matching",))
    fcs = {fc.id: fc for fc in storage.iter_factchecks(org)}
    table = Table(title="Posts that repeat a fact-checked claim", show_lines=False)
    for col in ("post", "lang", "decision", "score", "fact-check (lang, rating)", "post text"):
        table.add_column(col, overflow="fold")
    decisions: Counter[str] = Counter()
    pairs: Counter[str] = Counter()
    for post, result in sorted(zip(all_posts, results, strict=True), key=lambda pr: -(pr[1].best.fused_score if pr[1].best else 0)):
        best = result.best
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
