"""Claim matching's measurements and training: eval claim-retrieval, train matcher/centering/vi-tones, bench match."""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from factbridge.cli.app import (
    _state,
    bench_app,
    eval_app,
    train_app,
)
from factbridge.console import console, err_console, progress_bar
from factbridge.errors import InputError


@eval_app.command("claim-retrieval")
def eval_claim_retrieval(
    ctx: typer.Context,
    claims: Annotated[list[Path], typer.Option(help="Fact-check library file(s) (any importable format).")],
    queries: Annotated[Path, typer.Option(help="Queries: CheckThat! TSV or JSONL with inline gold.")],
    qrels: Annotated[Path | None, typer.Option(help="Qrels file (omit for JSONL queries with gold).")] = None,
    fusion: Annotated[str, typer.Option(help="Comma-separated fusions to compare: learned, rrf, dense.")] = "learned,rrf,dense",
    centering: Annotated[bool | None, typer.Option(help="Per-language mean centering (default: the match_centering setting).")] = None,
    reranker_path: Annotated[Path | None, typer.Option("--reranker", help="Re-ranker file (default: the one shipped).")] = None,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """MAP@1/3/5/10, MRR, S@10 and Recall@10 of claim matching, per language when languages differ."""
    from factbridge.eval.claim_retrieval import evaluate, load_eval_set, scratch_library
    from factbridge.pipeline.matching import default_reranker_path
    from factbridge.pipeline.reranker import Reranker

    services = _state(ctx).services()
    with scratch_library(services.embedder, claims, services.languages, progress_bar) as (storage, lib):
        qs, gold = load_eval_set(queries, qrels, services.languages)
        fusions = [f.strip() for f in fusion.split(",") if f.strip()]
        reranker = Reranker.load(reranker_path or default_reranker_path()) if "learned" in fusions else None
        with progress_bar("embedding queries", len(qs)) as advance:
            report = evaluate(storage, services.embedder, qs, gold, fusions, reranker, advance, centering=services.centering(wanted=centering))
    report.timings.update(lib)
    if as_json:
        sys.stdout.write(json.dumps(report.__dict__, indent=2) + "\n")
        return
    names = ["MAP@1", "MAP@3", "MAP@5", "MAP@10", "MRR", "S@10", "Recall@10"]
    table = Table(title=f"Claim retrieval: {report.queries} queries, library of {report.library_size}")
    table.add_column("fusion")
    for n in names:
        table.add_column(n, justify="right")
    for f, m in report.metrics.items():
        table.add_row(f, *(f"{m[n]:.4f}" for n in names))
    console.print(table)
    for f, langs in report.per_language.items():
        if len(langs) > 1:
            lt = Table(title=f"Per query language ({f})")
            lt.add_column("language")
            lt.add_column("queries", justify="right")
            for n in names:
                lt.add_column(n, justify="right")
            for lang, m in langs.items():
                lt.add_row(lang, str(int(m["queries"])), *(f"{m[n]:.4f}" for n in names))
            console.print(lt)
    first = next(iter(report.per_language.values()), {})
    if any("/" in key for key in first):
        from factbridge.cli.scale import print_language_gaps

        print_language_gaps(report.per_language)
    console.print(f"language pairs measured (query->library): {', '.join(report.language_pairs)}")
    console.print(
        f"library: {int(lib['claims'])} claims imported in {lib['import_s']:.1f} s, embedded in {lib['embed_s']:.1f} s; "
        + ", ".join(f"{k} {v:.2f}" for k, v in report.timings.items() if k.startswith("match_"))
    )


def _fingerprint(text: str) -> str:
    return " ".join(text.lower().split())[:200]


@train_app.command("matcher")
def train_matcher(
    ctx: typer.Context,
    claims: Annotated[list[Path], typer.Option(help="Library per training set (repeat; paired with --queries/--qrels).")],
    queries: Annotated[list[Path], typer.Option(help="Training queries per set (train split only).")],
    qrels: Annotated[list[Path], typer.Option(help="Training qrels per set.")],
    dev_claims: Annotated[Path, typer.Option(help="Library of the dev set (threshold tuning).")],
    dev_queries: Annotated[Path, typer.Option(help="Dev queries.")],
    dev_qrels: Annotated[Path, typer.Option(help="Dev qrels.")],
    out: Annotated[Path, typer.Option(help="Where to write the re-ranker JSON.")] = Path("src/factbridge/data/reranker-e5.json"),
    version_: Annotated[str, typer.Option("--version", help="Version recorded in decided_by.")] = "e5-lr-1",
    exclude: Annotated[list[Path], typer.Option(help="Query files whose tweets must not be trained on (held-out eval sets that other editions reuse).")] = [],  # noqa: B006
    centering: Annotated[bool | None, typer.Option(help="Per-language mean centering (default: the match_centering setting).")] = None,
    feedback: Annotated[bool, typer.Option(help="Also train on the desk's stored decisions (same claim / not the same claim) of --org.")] = False,
    l2: float = 1.0,
) -> None:
    """Fit the matcher's re-ranker on train splits and tune its thresholds on dev."""
    from factbridge.backends.storage.sqlite import SQLiteStorage
    from factbridge.eval.claim_retrieval import load_eval_set, load_library
    from factbridge.eval.datasets import load_queries
    from factbridge.pipeline.matching import Matcher
    from factbridge.pipeline.reranker_training import TrainingSet, train_reranker

    if not (len(claims) == len(queries) == len(qrels)):
        raise InputError("--claims, --queries and --qrels must be given the same number of times")
    services = _state(ctx).services()
    held_out = {_fingerprint(p.text) for path in exclude for p in load_queries(path)}
    stores = []
    sets = []
    try:
        for c, q, r in [*zip(claims, queries, qrels, strict=True), (dev_claims, dev_queries, dev_qrels)]:
            storage = SQLiteStorage("sqlite:///:memory:")
            storage.migrate()
            stores.append(storage)
            load_library(storage, services.embedder, [c], services.languages, progress_bar)
            qs, gold = load_eval_set(q, r, services.languages)
            kept = [x for x in qs if _fingerprint(x.text) not in held_out]
            if len(kept) < len(qs):
                console.print(f"{q.name} ({r.name}): left out {len(qs) - len(kept)} queries that occur in held-out sets")
            qs = kept
            matcher = Matcher(storage, services.embedder, "eval", fusion="dense", candidates=services.settings.match_candidates, top_k=10, centering=services.centering(wanted=centering))
            sets.append(TrainingSet(name=f"{q.name} / {r.name}", matcher=matcher, queries=qs, qrels=gold))
        if feedback:
            from factbridge.workflow.match_reviews import feedback_training_set

            desk = feedback_training_set(services, services.settings.org, centering)
            if desk is None:
                raise InputError(f"--feedback: nobody in '{services.settings.org}' has decided a match yet (the post page's "
                                 "'Same claim' / 'Not the same claim')")
            console.print(f"{desk.name}: {len(desk.queries)} reviewed posts, {sum(len(g) for g in desk.qrels.values())} confirmed pairs")
            sets.insert(0, desk)  # a training set; the last one stays the dev set
        with progress_bar("embedding queries", sum(len(s.queries) for s in sets)) as advance:
            model = train_reranker(sets[:-1], sets[-1], services.embedder, version_, l2=l2, progress=advance)
    finally:
        for s in stores:
            s.close()
    model.card["held_out_query_files"] = [p.name for p in exclude]
    if feedback:
        model.card["desk_feedback"] = sets[0].name
    model.save(out)
    console.print(f"wrote {out}: thresholds {model.thresholds}; {model.card['rows']} rows, {model.card['positives']} positives")


@train_app.command("centering")
def train_centering(
    ctx: typer.Context,
    texts: Annotated[list[Path], typer.Option(help="JSONL files with 'text' (and 'language' if known), or CheckThat! query TSVs.")],
    per_language: Annotated[int, typer.Option(help="At most this many texts per language (first ones, in file order).")] = 80,
    out: Annotated[Path, typer.Option(help="Where to write the means.")] = Path("src/factbridge/data/centering-e5.npz"),
    version_: Annotated[str, typer.Option("--version", help="Version recorded in decided_by.")] = "lang-mean-1",
) -> None:
    """Estimate the per-language mean vectors that cross-lingual matching subtracts."""
    from factbridge.eval.datasets import load_queries
    from factbridge.pipeline.centering import estimate_centering
    from factbridge.text.langid import detect_language

    services = _state(ctx).services()
    by_lang: dict[str, list[str]] = {}
    for path in texts:
        if path.suffix == ".tsv":
            rows = [(p.text, None) for p in load_queries(path)]
        else:
            rows = []
            for line in path.read_text(encoding="utf-8").splitlines():
                try:
                    row = json.loads(line) if line.strip() else None
                except json.JSONDecodeError:
                    continue  # sample files hold deliberately broken rows
                if isinstance(row, dict) and isinstance(row.get("text"), str) and row["text"].strip():
                    rows.append((row["text"], row.get("language")))
        for text, lang in rows:
            lang = lang or detect_language(text, services.languages).language
            bucket = by_lang.setdefault(lang, [])
            if len(bucket) < per_language and text not in bucket:
                bucket.append(text)
    kept = {k: v for k, v in by_lang.items() if len(v) >= 10}
    with progress_bar("embedding", None):
        model = estimate_centering(services.embedder, kept, version_, [p.name for p in texts])
    model.save(out)
    console.print(f"wrote {out}: " + ", ".join(f"{k} {len(v)}" for k, v in sorted(kept.items())))


@train_app.command("vi-tones")
def train_vi_tones(
    data: Annotated[Path, typer.Option(help="CSV of Vietnamese posts with a 'post_message' column (VLSP ReINTEL) or a text file, one post per line.")],
    out: Annotated[Path, typer.Option(help="Where to write the tone model.")] = Path("src/factbridge/data/vi_tones.json.gz"),
    min_count: Annotated[int, typer.Option(help="Drop unigrams and bigrams seen fewer times.")] = 2,
) -> None:
    """Build the Vietnamese tone-restoration table used for posts typed without tone marks."""
    import csv

    from factbridge.text.vietnamese import train_tone_model

    if not data.is_file():
        raise InputError("no such file", source=str(data))
    if data.suffix == ".csv":
        csv.field_size_limit(10 * 1024 * 1024)
        with data.open(encoding="utf-8", newline="") as handle:
            reader = csv.DictReader(handle)
            if "post_message" not in (reader.fieldnames or []):
                raise InputError("no 'post_message' column", source=str(data), line=1)
            texts = [row["post_message"] or "" for row in reader]
    else:
        texts = data.read_text(encoding="utf-8").splitlines()
    model = train_tone_model(texts, min_bigram=min_count, min_unigram=min_count, source=f"{data.name} ({len(texts)} posts; VLSP 2020 ReINTEL, research use: only pruned n-gram counts are kept)")
    model.save(out)
    console.print(f"wrote {out}: {model.card['unigrams']} syllables, {model.card['bigrams']} bigrams")


@bench_app.command("match")
def bench_match(
    ctx: typer.Context,
    claims: Annotated[list[Path] | None, typer.Option(help="Fact-check library file(s).")] = None,
    queries: Annotated[Path | None, typer.Option(help="Queries file (TSV or JSONL) to time.")] = None,
    n: Annotated[int, typer.Option(help="Single-post requests to time.")] = 100,
    batch: Annotated[int, typer.Option(help="Posts in the batch-throughput run.")] = 64,
    synthetic: Annotated[int, typer.Option(help="Instead of a library: an index of this many synthetic vectors (latency, recall@10, memory; see bench/match_synthetic.py).")] = 0,
    backend: Annotated[str, typer.Option(help="With --synthetic: hnsw (usearch), exact (NumPy) or postgres (pgvector HNSW on an embedded server).")] = "hnsw",
    as_json: Annotated[bool, typer.Option("--json", help="With --synthetic: print the figures as JSON.")] = False,
    dtype: Annotated[str, typer.Option(help="With --synthetic --backend hnsw: how the index stores vectors (f32, f16, i8; quantised ones re-rank their candidates with float vectors). With --backend postgres: vector or halfvec for the HNSW index.")] = "f16",
    base: Annotated[Path | None, typer.Option(help="With --synthetic: an embedding cache file whose passage vectors the library is made from (default: the first embed_cache_seed file with claim_retrieval in its name, else random topics).")] = None,
    rebuild: Annotated[bool, typer.Option(help="With --synthetic --backend hnsw: build again even when data_dir holds this index (a build is checkpointed there and resumed).")] = False,
    warmup: Annotated[int, typer.Option(help="With --synthetic: untimed requests after the first (cold, reported on its own) and before the timed ones.")] = 20,
) -> None:
    """Latency of matching one post (p50/p99, embedding included, cache off) and batch throughput."""
    import numpy as np

    if synthetic:
        from factbridge.cli.scale import bench_match_synthetic

        bench_match_synthetic(ctx, synthetic, backend, n, as_json, dtype=dtype, base=base, rebuild=rebuild, warmup=max(0, warmup))
        return
    if not claims or queries is None:
        raise InputError("bench match needs --claims and --queries (or --synthetic N)", field="claims")

    from factbridge.backends.embedders.cache import CachedEmbedder
    from factbridge.eval.claim_retrieval import EVAL_ORG, prepare_queries, scratch_library
    from factbridge.pipeline.prepare import embedding_text

    services = _state(ctx).services()
    with scratch_library(services.embedder, claims, services.languages, progress_bar) as (storage, lib):
        posts = prepare_queries(queries, services.languages)
        # Time the real work: no embedding cache on the timed path.
        inner = services.embedder.inner if isinstance(services.embedder, CachedEmbedder) else services.embedder
        matcher = services.matcher(EVAL_ORG, storage=storage, embedder=inner)
        matcher.match_posts(posts[:3])  # warm-up
        latencies = []
        # No live progress bar here: its refresh thread competes with the encoder's
        # two OpenMP threads on a 2-core machine and inflates the very latency measured.
        err_console.print(f"timing {n} single-post requests...")
        for i in range(n):
            post = posts[i % len(posts)]
            t0 = time.perf_counter()
            matcher.match_posts([post])
            latencies.append((time.perf_counter() - t0) * 1000)
        vectors = inner.encode_queries([embedding_text(p) for p in posts[: min(len(posts), n)]])
        search_ms = []
        for post, vector in zip(posts, vectors, strict=False):
            t0 = time.perf_counter()
            matcher.match_vectors([post], vector[None, :])
            search_ms.append((time.perf_counter() - t0) * 1000)
        sample = [posts[i % len(posts)] for i in range(batch)]
        t0 = time.perf_counter()
        matcher.match_posts(sample)
        batch_s = time.perf_counter() - t0
    lat = np.array(latencies)
    console.print(f"library: {len(matcher)} fact-checks ({lib['embed_s']:.1f} s to embed what was not cached)")
    console.print(f"single post: p50 {np.percentile(lat, 50):.1f} ms, p95 {np.percentile(lat, 95):.1f} ms, p99 {np.percentile(lat, 99):.1f} ms over {n} requests")
    console.print(f"  of which retrieval + fusion (vector given): p50 {np.percentile(search_ms, 50):.1f} ms, p99 {np.percentile(search_ms, 99):.1f} ms")
    console.print(f"batch of {batch}: {batch / batch_s:.1f} posts/s ({batch_s * 1000 / batch:.1f} ms per post)")
    console.print(f"[dim]load average during the run: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores (figures are only comparable on an idle machine)[/]")
