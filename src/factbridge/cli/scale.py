"""Scale and speed measurements: bench ingest (the whole pipeline per stage, beside the encoder alone)."""

from __future__ import annotations

import json
import os
import sys
import tempfile
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from factbridge.cli.app import _state, bench_app
from factbridge.console import console, progress_bar
from factbridge.errors import InputError

INGEST_TARGETS = {"550": 50.0, "tweet": 150.0}


@bench_app.command("ingest")
def bench_ingest(
    ctx: typer.Context,
    posts: Annotated[int, typer.Option(help="Generated posts to ingest.")] = 300,
    mix: Annotated[str, typer.Option(help="Length mix: tweet (60-280 characters), 550 (450-650) or mixed.")] = "550",
    duplicates: Annotated[float, typer.Option(help="Share of posts repeating an earlier one (exactly or edited).")] = 0.0,
    claims: Annotated[list[Path] | None, typer.Option(help="Fact-check library to match against (embedded through the embedding cache and its seeds).")] = None,
    batch: Annotated[int, typer.Option(help="Posts per batch (as a queued batch of work).")] = 64,
    seed: Annotated[int, typer.Option(help="Seed of the generated posts.")] = 5,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Posts/s of the full ingest pipeline on generated posts, per stage, and of the encoder alone in the same run."""
    from factbridge.backends.embedders.cache import CachedEmbedder, EmbeddingCache
    from factbridge.bench.feed import MIXES, generated_posts
    from factbridge.bench.ingest import bare_embedder, run_ingest_bench
    from factbridge.pipeline.ingest import import_factcheck_files
    from factbridge.pipeline.matching import index_factchecks

    if mix not in MIXES:
        raise InputError(f"--mix must be one of {', '.join(MIXES)}, got '{mix}'", field="mix")
    if posts < 1 or batch < 1 or not 0 <= duplicates < 1:
        raise InputError("--posts and --batch must be positive and --duplicates in [0, 1)", field="posts")
    state = _state(ctx)
    with tempfile.TemporaryDirectory(prefix="factbridge-bench-ingest-") as tmp:
        services = state.services(data_dir=tmp, storage_url=f"sqlite:///{Path(tmp) / 'bench.db'}", embed_cache="off")
        org = services.settings.org
        encoder = bare_embedder(services.embedder)
        if claims:
            report, _ = import_factcheck_files(services.storage, org, claims, services.languages)
            seeds = [p for part in filter(None, services.settings.embed_cache_seed.split(os.pathsep))
                     for p in (sorted(Path(part).glob("*.sqlite")) if Path(part).is_dir() else [Path(part)])]
            cache = EmbeddingCache(Path(tmp) / "library.sqlite", readonly_paths=seeds)
            try:
                with progress_bar("embedding the library", None) as advance:
                    index_factchecks(services.storage, CachedEmbedder(encoder, cache), org, advance, on_total=getattr(advance, "set_total", None))
            finally:
                cache.close()
            services.matcher(org)  # load the library once, as a running worker has it
        raw = generated_posts(posts, mix, duplicates, seed)
        encoder.encode_queries(["warm up"])
        with progress_bar(f"ingesting {posts} generated posts ({mix})", posts) as advance:
            result = run_ingest_bench(services, org, raw, batch, advance)
        library = services.storage.count_factchecks(org)
    if as_json:
        sys.stdout.write(json.dumps({"mix": mix, "duplicates": duplicates, "library": library, **result.as_dict()}, indent=2) + "\n")
        return
    table = Table(title=f"bench ingest: {posts} posts, mix {mix} (mean {result.mean_chars:.0f} characters), duplicates {duplicates:.0%}, library {library}")
    table.add_column("stage")
    table.add_column("seconds", justify="right")
    table.add_column("share", justify="right")
    table.add_column("posts/s", justify="right")
    for name, seconds in result.stage_s.items():
        table.add_row(name, f"{seconds:.2f}", f"{seconds / result.total_s:.0%}" if result.total_s else "-", f"{posts / seconds:,.1f}" if seconds else "-")
    table.add_row("[bold]end to end[/]", f"{result.total_s:.2f}", "100%", f"[bold]{result.rate:,.1f}[/]")
    console.print(table)
    console.print(f"embedded {result.embedded} texts, reused {result.reused} vectors (same or near-same text)")
    console.print(
        f"encoder alone, same {result.encoder_texts} posts: {result.encoder_rate:,.1f} posts/s; "
        f"pipeline overhead {result.overhead:+.1%} (target <= 15%)"
    )
    target = INGEST_TARGETS.get(mix)
    if target:
        verdict = "reached" if result.rate >= target else "not reached"
        console.print(f"target for {mix} posts: >= {target:.0f} posts/s end to end on 2 cores: {verdict}")
    console.print(f"[dim]load average {result.load_before} before, {result.load_after} after, on {os.cpu_count()} cores (other processes share them)[/]")
