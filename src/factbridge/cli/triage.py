"""Commands of check-worthiness and the triage queue:
`train checkworthiness`, `eval checkworthiness`, `bench checkworthiness`, `queue`."""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from factbridge.cli.app import _state, app, bench_app, eval_app, train_app
from factbridge.console import console, err_console, esc, progress_bar
from factbridge.errors import InputError

DATA_HELP = "The shared check-worthiness folder (../shared/data/checkworthiness)."


def _progress_factory(stack: ExitStack) -> Callable[[str, int], Callable[[int], None]]:
    def make(description: str, total: int) -> Callable[[int], None]:
        return stack.enter_context(progress_bar(description, total))

    return make


def _require_dir(path: Path) -> None:
    if not path.is_dir():
        raise InputError("check-worthiness data folder not found", source=str(path))


@train_app.command("checkworthiness")
def train_checkworthiness(
    ctx: typer.Context,
    data: Annotated[Path, typer.Option(help=DATA_HELP)] = Path("../shared/data/checkworthiness"),
    out: Annotated[Path, typer.Option(help="Folder to write model.npz, model.json and card.json.")] = Path("src/factbridge/data/checkworthiness"),
    seed: Annotated[int, typer.Option(help="Seed of the fold assignment and of the vector network.")] = 13,
    fixture: Annotated[list[Path] | None, typer.Option(help="Labelled JSONL fixtures ({text, language, label}) kept out of training and reported in the card.")] = None,
    evaluate_after: Annotated[bool, typer.Option("--evaluate/--no-evaluate", help="Measure the new model on the evaluation sets and write the figures into its card.")] = True,
    work_dir: Annotated[Path | None, typer.Option(help="Keeps level-0 results between runs, keyed by data, vectors and settings (default: data_dir/train-cache); delete to start afresh.")] = None,
) -> None:
    """Reproduce the shipped check-worthiness model (fixed seed; e5 vectors from the embedding cache or computed)."""
    from factbridge.pipeline.checkworthiness import CheckworthinessModel
    from factbridge.pipeline.checkworthiness_training import (
        evaluate,
        load_training_data,
        train_model,
        write_card_metrics,
    )

    _require_dir(data)
    services = _state(ctx).services()
    fixtures = list(fixture or [])
    training = load_training_data(data, fixtures)
    console.print(f"training examples: {len(training.train)} (dropped {training.dropped_overlap} that occur in evaluation sets, {training.dropped_duplicates} duplicates)")
    with ExitStack() as stack:
        folder = work_dir or Path(services.settings.data_dir) / "train-cache"
        report = train_model(training, services.embedder, seed=seed, progress=_progress_factory(stack), work_dir=folder)
    report.model.save(out)
    console.print(f"wrote {out}; out-of-fold validation on the training data: {json.dumps(report.validation)}")
    if evaluate_after:
        # Measure the model as shipped: the saved weights are float16, so reload them.
        shipped = CheckworthinessModel.load(out)
        with ExitStack() as stack:
            results = evaluate(shipped, data, services.embedder, fixtures, progress=_progress_factory(stack))
        write_card_metrics(shipped, results, out)
        _print_results(results)


def _fmt(value: float | None) -> str:
    return "" if value is None else f"{value:.3f}"


def _print_results(results: list[Any]) -> None:
    table = Table(title="Check-worthiness: positive class (model vs TF-IDF + LR baseline trained on the same train split)")
    for col in ("set", "head", "n", "pos", "P", "R", "F1", "acc", "base P", "base R", "base F1", "ΔF1"):
        table.add_column(col, justify="right" if col not in ("set", "head") else "left")
    for r in results:
        m, b = r.model, r.baseline
        table.add_row(r.name, r.head, str(m.n), str(m.positives), _fmt(m.precision), _fmt(m.recall), _fmt(m.f1), _fmt(m.accuracy),
                      _fmt(b.precision if b else None), _fmt(b.recall if b else None), _fmt(b.f1 if b else None),
                      f"{m.f1 - b.f1:+.3f}" if b else "")
    console.print(table)
    fixtures = [r for r in results if r.name.startswith("fixture/")]
    for r in fixtures:
        lt = Table(title=f"{r.name}: per language")
        for col in ("language", "n", "claims", "accuracy", "P", "R", "F1"):
            lt.add_column(col, justify="right" if col != "language" else "left")
        for lang, s in r.per_language.items():
            lt.add_row(lang, str(s.n), str(s.positives), _fmt(s.accuracy), _fmt(s.precision), _fmt(s.recall), _fmt(s.f1))
        console.print(lt)


@eval_app.command("checkworthiness")
def eval_checkworthiness(
    ctx: typer.Context,
    data: Annotated[Path | None, typer.Option(help=DATA_HELP)] = None,
    fixture: Annotated[list[Path] | None, typer.Option(help="Labelled JSONL fixture(s): accuracy per language.")] = None,
    sets: Annotated[str, typer.Option(help="Comma-separated evaluation sets (default: all CheckThat! dev sets).")] = "",
    baseline: Annotated[bool, typer.Option("--baseline/--no-baseline", help="Train and score the TF-IDF + LR baseline beside the model.")] = True,
    model: Annotated[Path | None, typer.Option(help="Model folder (default: the setting, else the shipped model).")] = None,
    cached_only: Annotated[bool, typer.Option("--cached-only", help="Never embed: a set whose vectors are not all cached is scored by the text-only head.")] = False,
    export_cache: Annotated[Path | None, typer.Option(help="Also write the query vectors of every evaluated text to this cache file (the committed test cache).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Precision, recall and F1 of the positive class per set and language, beside a TF-IDF + LR baseline."""
    from factbridge.pipeline.checkworthiness import CheckworthinessModel
    from factbridge.pipeline.checkworthiness_training import evaluate

    if data is None and not fixture:
        raise InputError("give --data (the shared check-worthiness folder) and/or --fixture")
    if data is not None:
        _require_dir(data)
    services = _state(ctx).services()
    loaded = CheckworthinessModel.load(model or services.settings.checkworthiness_model or None)
    if services.embedder.id != loaded.embedder_id:
        err_console.print(f"[yellow]embedder {services.embedder.id} is not the model's ({loaded.embedder_id}): scoring with the text-only head[/]")
    wanted = [s.strip() for s in sets.split(",") if s.strip()] or None
    with ExitStack() as stack:
        results = evaluate(loaded, data, services.embedder, list(fixture or []), sets=wanted, with_baseline=baseline, progress=_progress_factory(stack), cached_only=cached_only)
    if export_cache is not None:
        _export_cache(services.embedder, data, wanted, list(fixture or []), export_cache)
    if as_json:
        sys.stdout.write(json.dumps({"model": loaded.decided_by_base, "results": [r.as_dict() for r in results]}, indent=2) + "\n")
        return
    console.print(f"model {loaded.decided_by_base} (embedder {loaded.embedder_id})")
    _print_results(results)


def _export_cache(embedder: Any, data: Path | None, sets: list[str] | None, fixtures: list[Path], dest: Path) -> None:
    """Copy the cached vectors of the evaluated texts into a small cache file (the committed test cache)."""
    from factbridge.backends.embedders.cache import EmbeddingCache, text_sha
    from factbridge.eval.checkworthiness_data import load_set, read_jsonl, shared_sets
    from factbridge.pipeline.checkworthiness_training import EVAL_SETS

    specs = {s.name: s for s in shared_sets()}
    texts = [e.text for name in (sets or EVAL_SETS) if data is not None for e in load_set(data, specs[name])]
    texts += [e.text for path in fixtures for e in read_jsonl(path)]
    shas = list(dict.fromkeys(text_sha(t) for t in texts))
    source = getattr(embedder, "cache", None)
    if source is None:
        raise InputError("--export-cache needs an embedding cache (set embed_cache)")
    found = source.get_many(embedder.id, "query", shas)  # copies what is cached; never embeds
    cache = EmbeddingCache(dest)
    try:
        cache.put_many(embedder.id, "query", list(found.items()))
    finally:
        cache.close()
    err_console.print(f"wrote {len(found)} of {len(shas)} query vectors to {dest}")


def _bench_texts(data: Path | None, n: int) -> Iterator[tuple[str, str]]:
    from factbridge.eval.checkworthiness_data import iter_available

    if data is None:
        from factbridge.backends.connectors.files import read_posts
        from factbridge.demo import sample_dir
        from factbridge.models import Post

        # The sample holds bad rows on purpose: the connector sets them aside.
        pairs = [(p.text, p.language or "") for path in sorted(sample_dir().glob("posts*")) for p in read_posts(path) if isinstance(p, Post)]
    else:
        pairs = [(e.text, e.language) for _, examples in iter_available(data, split="dev") for e in examples]
    if not pairs:
        raise InputError("no texts to benchmark with")
    for i in range(n):
        yield pairs[i % len(pairs)]


@bench_app.command("checkworthiness")
def bench_checkworthiness(
    ctx: typer.Context,
    data: Annotated[Path | None, typer.Option(help=DATA_HELP + " Texts of its dev sets are used; default: the bundled sample.")] = None,
    posts: Annotated[int, typer.Option(help="Posts in the timed batch.")] = 2000,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Posts/s of the checkworthiness and triage stages with the post vectors already stored (as after matching)."""
    import numpy as np

    from factbridge.backends.embedders.base import embedder_family
    from factbridge.backends.embedders.cache import CachedEmbedder, text_sha
    from factbridge.models import Engagement, Post
    from factbridge.pipeline.checkworthiness import checkworthiness_stage, load_model
    from factbridge.pipeline.prepare import embedding_text, prepare_post
    from factbridge.pipeline.triage import triage_stage
    from factbridge.services import Services

    base = _state(ctx).services()
    model = load_model(base.settings.checkworthiness_model)
    services = Services(base.settings.replace(storage_url="sqlite:///:memory:"))
    try:
        storage = services.storage
        org = "bench"
        items = [prepare_post(Post(id=f"b{i}", text=text, language=lang or None, engagement=Engagement(likes=i % 500, shares=i % 37)), base.languages) for i, (text, lang) in enumerate(_bench_texts(data, posts))]
        storage.upsert_posts(org, items)
        # Vectors as the matching stage stores them: from the embedding cache when it holds
        # them; otherwise random unit vectors (the scoring cost does not depend on the values).
        embedder = base.embedder
        texts = [embedding_text(p) for p in items]
        found: dict[str, np.ndarray] = {}
        if isinstance(embedder, CachedEmbedder) and embedder_family(embedder.id) == embedder_family(model.embedder_id):
            found = embedder.cache.get_many(embedder.id, "query", list({text_sha(t) for t in texts}))
        rng = np.random.default_rng(0)
        rows = []
        from_cache = 0
        for post, text in zip(items, texts, strict=True):
            vec = found.get(text_sha(text))
            if vec is None:
                vec = rng.standard_normal(model.vector_dim).astype(np.float32)
            else:
                from_cache += 1
            rows.append((post.id, text_sha(text), vec / np.linalg.norm(vec)))
        storage.put_vectors(org, "post", model.embedder_id, rows)
        # The stage resolves vectors by the configured embedder id: bench as the e5 setup runs.
        services.__dict__["embedder"] = _IdOnly(model.embedder_id, model.vector_dim)
        checkworthiness_stage(services, org, items[:16])  # warm-up (model load, regex compile)
        t0 = time.perf_counter()
        cw = checkworthiness_stage(services, org, items)
        cw_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        tr = triage_stage(services, org, items)
        tr_s = time.perf_counter() - t0
    finally:
        services.close()
    import os

    figures = {
        "posts": len(items),
        "vectors_from_cache": from_cache,
        "checkworthiness_posts_per_s": round(len(items) / cw_s, 1),
        "checkworthiness_seconds": round(cw_s, 3),
        "triage_posts_per_s": round(len(items) / tr_s, 1),
        "triage_seconds": round(tr_s, 3),
        "with_embedding": cw["with_embedding"],
        "cpus": os.cpu_count(),
        "load_average_1min": round(os.getloadavg()[0], 2),
        "model": model.decided_by_base,
        "queued": tr["queued_posts"],
    }
    if as_json:
        sys.stdout.write(json.dumps(figures, indent=2) + "\n")
        return
    table = Table(title="Check-worthiness and triage throughput (vectors already stored)")
    table.add_column("figure")
    table.add_column("value", justify="right")
    for k, v in figures.items():
        table.add_row(k, str(v))
    console.print(table)


class _IdOnly:
    """Stands for the configured embedder where only its id and dim are read (never encodes)."""

    def __init__(self, embedder_id: str, dim: int) -> None:
        self.id = embedder_id
        self.dim = dim

    def encode_queries(self, texts: Any, progress: Any = None) -> Any:
        raise RuntimeError("the benchmark must not embed")

    encode_documents = encode_queries


@app.command("queue")
def queue(
    ctx: typer.Context,
    limit: Annotated[int, typer.Option(help="Entries to show.")] = 20,
    kind: Annotated[str, typer.Option(help="all, post or narrative.")] = "all",
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON (full entries with components and evidence).")] = False,
) -> None:
    """The top of the triage queue: priority, its components and why."""
    from factbridge.pipeline.records import TriageQueue
    from factbridge.pipeline.triage import COMPONENTS, list_queue

    if kind not in ("all", "post", "narrative"):
        raise InputError(f"--kind must be all, post or narrative, got {kind!r}", field="kind")
    services = _state(ctx).services()
    org = services.settings.org
    entries = list_queue(services.storage, org, limit=limit, kind=kind)
    if as_json:
        sys.stdout.write(json.dumps([{"id": i, **d} for i, d in entries], ensure_ascii=False, indent=2) + "\n")
        return
    total = TriageQueue(services.storage).count(org)
    console.print(queue_table(entries, total, COMPONENTS))
    console.print("[dim]ch re ve de ri: contributions of check-worthiness, reach, velocity, debunked, risk "
                  "(weight x value / sum of weights); `--json` shows the evidence and decided_by[/]")


def queue_table(entries: list[tuple[str, dict[str, Any]]], total: int, components: Sequence[str]) -> Table:
    """At most three lines per entry, whatever the terminal width (80 columns included): the
    text, the contributions, and why (gate, the fact-check it repeats). Untrusted text is escaped
    and stripped of control characters (`console.esc`)."""
    table = Table(title=f"Triage queue ({total} entries; top {len(entries)})", expand=False, pad_edge=False)
    table.add_column("#", justify="right", no_wrap=True)
    table.add_column("prio", justify="right", no_wrap=True)
    table.add_column("entry", overflow="ellipsis", no_wrap=True, max_width=66)
    for rank, (entry_id, d) in enumerate(entries, start=1):
        comps = d.get("components", {})
        text = " ".join(str(d.get("text") or d.get("title") or "").split())
        label = f"{entry_id} [{d.get('language') or '-'}]" if d.get("kind") == "post" else f"{entry_id} (narrative)"
        lines = [f"{esc(label)} {esc(text)}",
                 "[dim]" + " ".join(f"{c[:2]} {comps.get(c, {}).get('contribution', 0):.2f}" for c in components) + "[/]"]
        why = []
        if d.get("gated"):
            why.append(f"gated: {d.get('gate_reason')}")
        deb = comps.get("debunked", {}).get("evidence", {})
        if deb.get("factcheck_id"):
            why.append(f"repeats {str(deb['factcheck_id']).rstrip('/').rsplit('/', 1)[-1]} ({deb.get('decision')}, {deb.get('rating') or 'no rating'})")
        if why:
            lines.append("[yellow]" + esc("; ".join(why)) + "[/]")
        table.add_row(str(rank), f"{d.get('priority', 0):.3f}", "\n".join(lines))
    return table


@bench_app.command("repeats")
def bench_repeats(
    ctx: typer.Context,
    backend: Annotated[str, typer.Option(help="postgres (an embedded PostgreSQL 18: post vectors by period) or hnsw (the embedded usearch index's segments).")] = "postgres",
    old: Annotated[int, typer.Option(help="Posts of the history: 30-330 days old, around the same 500 topics as the recent ones.")] = 40_000,
    recent: Annotated[int, typer.Option(help="Posts of the last two days.")] = 2_000,
    dim: Annotated[int, typer.Option(help="Vector dimension (synthetic vectors).")] = 64,
    queries: Annotated[int, typer.Option(help="Recent posts searched for their repeats.")] = 100,
    span_days: Annotated[float, typer.Option(help="The span searched either side of now (a batch's windows).")] = 14.0,
    segment_size: Annotated[int, typer.Option(help="With --backend hnsw: vectors per segment (vector_segment_size: the default is 250,000).")] = 0,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
) -> None:
    """Triage's repeat search over a long history: ms per query and hits against the exact answer,
    in the span and without one (see bench/repeats.py)."""
    import dataclasses

    from factbridge.backends.vectors.selection import VectorIndexTuning
    from factbridge.bench.repeats import embedded_index, postgres_index, run_repeats_bench

    if backend not in ("postgres", "hnsw"):
        raise InputError(f"--backend must be postgres or hnsw, not '{backend}'")
    state = _state(ctx)
    tuning = VectorIndexTuning.from_settings(state.services().settings)
    if segment_size:
        tuning = dataclasses.replace(tuning, segment_size=segment_size)
    if backend == "postgres":
        from factbridge.testing.postgres import TEST_DB, EmbeddedPostgres

        server = EmbeddedPostgres().start()
        try:
            with progress_bar(f"storing {old + recent:,} posts and their vectors in PostgreSQL, then searching", 1) as advance:
                result = run_repeats_bench("postgres", postgres_index(server.url(TEST_DB), tuning), old=old, recent=recent, dim=dim,
                                           queries=queries, span_days=span_days)
                advance(1)
        finally:
            server.stop()
    else:
        with progress_bar(f"indexing {old + recent:,} vectors (usearch), then searching", 1) as advance:
            result = run_repeats_bench("hnsw", embedded_index(tuning), old=old, recent=recent, dim=dim, queries=queries, span_days=span_days)
            advance(1)
    if as_json:
        sys.stdout.write(json.dumps(result.as_dict(), indent=2) + "\n")
        return
    table = Table(title=f"bench repeats ({backend}): {old:,} old posts, {recent:,} recent, {dim}-d, {result.queries} queries at cosine >= 0.92, span +-{span_days:g} days")
    for col in ("search", "ms/query", "returned", "hits kept", "exact"):
        table.add_column(col, justify="left" if col == "search" else "right")
    for r in result.rows:
        table.add_row(esc(r["search"]), f"{r['ms_per_query']:.2f}", f"{r['returned']:,}", f"{r['hits']:,}", f"{r['exact']:,}")
    console.print(table)
    console.print(f"stored and indexed in {result.load_s:.1f} s")
