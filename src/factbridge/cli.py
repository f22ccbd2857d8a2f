"""The `factbridge` command line. Errors from the exception tree become one
clear line on stderr and a non-zero exit; nothing is half-done silently."""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from factbridge import __version__
from factbridge.console import console, err_console, progress_bar
from factbridge.errors import FactBridgeError, InputError, QueueError
from factbridge.services import Services
from factbridge.settings import load_settings, setting_docs

app = typer.Typer(
    help="FactBridge: find, triage and share fact-checks of social posts across languages.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
factchecks_app = typer.Typer(help="The fact-check library.", no_args_is_help=True)
eval_app = typer.Typer(help="Quality measurements on labelled data; each prints its figures.", no_args_is_help=True)
bench_app = typer.Typer(help="Speed and memory measurements; each prints its figures.", no_args_is_help=True)
train_app = typer.Typer(help="Reproduce the shipped models from the shared training data.", no_args_is_help=True)
app.add_typer(factchecks_app, name="factchecks")
app.add_typer(eval_app, name="eval")
app.add_typer(bench_app, name="bench")
app.add_typer(train_app, name="train")


class State:
    def __init__(self, overrides: dict[str, Any], config: Path | None) -> None:
        self.overrides = overrides
        self.config = config
        self._services: Services | None = None

    def services(self, **extra: Any) -> Services:
        if self._services is None:
            settings = load_settings(self.config, overrides={**self.overrides, **extra})
            logging.basicConfig(level=settings.log_level.upper(), format="%(levelname)s %(name)s: %(message)s")
            self._services = Services(settings)
        return self._services

    def close(self) -> None:
        if self._services:
            self._services.close()


def _state(ctx: typer.Context) -> State:
    return ctx.ensure_object(State) if isinstance(ctx.obj, State) else ctx.obj


@app.callback()
def main_options(
    ctx: typer.Context,
    config: Annotated[Path | None, typer.Option(help="Settings file (TOML).", envvar="FACTBRIDGE_CONFIG")] = None,
    data_dir: Annotated[str | None, typer.Option(help="Folder for the embedded database and caches.")] = None,
    storage_url: Annotated[str | None, typer.Option(help="sqlite:///file.db or postgresql://...")] = None,
    queue_url: Annotated[str | None, typer.Option(help="local:// (stages run in ingest) or nats://host:port (workers run them).")] = None,
    org: Annotated[str | None, typer.Option(help="Organisation scope.")] = None,
    embedder: Annotated[str | None, typer.Option(help="Embedder backend: e5, sentence-transformers, hashing.")] = None,
    embed_cache: Annotated[str | None, typer.Option(help="Embedding cache file, or 'off'.")] = None,
    embed_cache_seed: Annotated[str | None, typer.Option(help="Read-only embedding caches to consult first (files or folders).")] = None,
) -> None:
    overrides = {"data_dir": data_dir, "storage_url": storage_url, "queue_url": queue_url, "org": org, "embedder": embedder, "embed_cache": embed_cache, "embed_cache_seed": embed_cache_seed}
    ctx.obj = State({k: v for k, v in overrides.items() if v is not None}, config)
    ctx.call_on_close(ctx.obj.close)


@app.command()
def version() -> None:
    """Print the FactBridge version."""
    console.print(f"factbridge {__version__}")


@app.command()
def settings(ctx: typer.Context) -> None:
    """Show every setting: name, value in force, default and meaning."""
    current = load_settings(_state(ctx).config, overrides=_state(ctx).overrides)
    table = Table(title="Settings (file < FACTBRIDGE_* env < CLI)")
    for col in ("name", "value", "default", "help"):
        table.add_column(col)
    for name, default, help_text in setting_docs():
        table.add_row(name, str(getattr(current, name)), str(default), help_text)
    console.print(table)


@app.command()
def init(ctx: typer.Context) -> None:
    """Create the data folder and bring the database schema up to date."""
    services = _state(ctx).services()
    version_ = services.storage.schema_version()
    console.print(f"storage ready: {services.settings.resolved_storage_url} (schema v{version_})")


def _print_quarantine(rows: list[Any], limit: int = 20) -> None:
    if not rows:
        return
    table = Table(title=f"Quarantined rows ({len(rows)})", title_style="bold yellow")
    for col in ("source", "line", "field", "reason"):
        table.add_column(col)
    for q in rows[:limit]:
        table.add_row(q.source, str(q.line or ""), q.field or "", q.reason)
    err_console.print(table)
    if len(rows) > limit:
        err_console.print(f"... and {len(rows) - limit} more (factbridge quarantine)")


@app.command()
def ingest(
    ctx: typer.Context,
    files: Annotated[list[Path], typer.Argument(help="JSONL or CSV files of posts.")],
    platform: Annotated[str, typer.Option(help="Platform name for rows that do not say.")] = "",
    match: Annotated[bool, typer.Option(help="Match new posts against the fact-check library.")] = True,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
) -> None:
    """Ingest posts: bad rows are quarantined with file, line and reason; the rest go in. Idempotent."""
    from factbridge.pipeline.ingest import embed_posts, ingest_file
    from factbridge.pipeline.stages import run_stages
    from factbridge.pipeline.work import publish_posts

    services = _state(ctx).services()
    org = services.settings.org
    # connect to the queue before storing anything: posts stored but never queued would wait forever
    queued = not services.queue.in_process
    reports = []
    new_posts = []
    for path in files:
        outcome = ingest_file(services.storage, org, path, services.languages, platform)
        reports.append(outcome.report)
        new_posts.extend(outcome.posts)
    summary: dict[str, Any] = {}
    published: dict[str, Any] | None = None
    skip = () if match else ("matching",)
    if new_posts and queued:
        # scale-out: `factbridge worker` processes run the stages on the published batches
        try:
            published = publish_posts(services, org, new_posts, skip)
        except QueueError as exc:
            raise QueueError(f"{exc}. {len(new_posts)} new or changed posts are stored but not all are queued: "
                             "once the queue is back, run `factbridge batches requeue` with their ids (or --all)") from exc
    elif new_posts:
        with progress_bar("embedding posts", len(new_posts)) as advance:
            embed_posts(services.storage, services.embedder, org, new_posts, advance)
        summary = run_stages(services, org, new_posts, skip=skip)
    matched = int(summary.get("matching", {}).get("matched", 0))
    if as_json:
        out: dict[str, Any] = {"files": [r.model_dump() for r in reports], "stages": summary}
        if published is not None:
            out["published"] = published
        console.print_json(json.dumps(out, default=str))
        return
    table = Table(title="Ingest")
    for col in ("file", "new", "updated", "unchanged", "quarantined"):
        table.add_column(col)
    for r in reports:
        table.add_row(r.source, str(r.inserted), str(r.updated), str(r.unchanged), str(len(r.quarantined)))
    console.print(table)
    if published is not None:
        console.print(f"queued {published['posts']} new or changed posts in {published['batches']} batches on "
                      f"{services.settings.queue_url}; `factbridge worker` processes run the stages.")
        _print_quarantine([q for r in reports for q in r.quarantined])
        return
    console.print(f"{matched} new or changed posts repeat a fact-checked claim (match or possible).")
    for name, info in summary.items():
        if name != "matching":
            console.print(f"{name}: " + ", ".join(f"{k} {v}" for k, v in info.items()))
    _print_quarantine([q for r in reports for q in r.quarantined])


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
    from factbridge.pipeline.ingest import import_factcheck_files
    from factbridge.pipeline.matching import index_factchecks

    services = _state(ctx).services()
    org = services.settings.org
    t0 = time.perf_counter()
    with progress_bar("reading fact-checks", None) as advance:
        report, changed = import_factcheck_files(services.storage, org, files, services.languages, fmt, _parse_map(map_), advance)
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
            console.print(f"  debunk {fc_id} matches {len(posts)} stored posts")
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
        table.add_row(fc.id, fc.language or "", fc.rating, fc.publisher, fc.claim[:120])
    console.print(table)


def _match_table(results: list[Any], texts: list[str]) -> None:
    for text, result in zip(texts, results, strict=True):
        table = Table(title=f"[{result.language}] {text[:100]}", title_justify="left")
        for col in ("#", "decision", "fused", "dense (rank)", "lexical (rank)", "rating", "lang", "fact-check"):
            table.add_column(col, overflow="fold")
        for c in result.candidates:
            fc = c.factcheck
            style = {"match": "bold green", "possible": "yellow"}.get(c.decision, "dim")
            table.add_row(
                str(c.rank), f"[{style}]{c.decision}[/]", f"{c.fused_score:.3f}",
                f"{c.dense.score:.3f} ({c.dense.rank})" if c.dense.score is not None else "-",
                f"{c.lexical.score:.2f} ({c.lexical.rank})" if c.lexical.score is not None else "-",
                fc.rating if fc else "", fc.language if fc else "",
                f"{fc.publisher}: {fc.claim[:90]}" if fc else c.factcheck_id,
            )
        console.print(table)
        console.print(f"[dim]decided_by: {result.decided_by}[/]")


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
        with progress_bar("embedding queries", sum(len(s.queries) for s in sets)) as advance:
            model = train_reranker(sets[:-1], sets[-1], services.embedder, version_, l2=l2, progress=advance)
    finally:
        for s in stores:
            s.close()
    model.card["held_out_query_files"] = [p.name for p in exclude]
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
    claims: Annotated[list[Path], typer.Option(help="Fact-check library file(s).")],
    queries: Annotated[Path, typer.Option(help="Queries file (TSV or JSONL) to time.")],
    n: Annotated[int, typer.Option(help="Single-post requests to time.")] = 100,
    batch: Annotated[int, typer.Option(help="Posts in the batch-throughput run.")] = 64,
) -> None:
    """Latency of matching one post (p50/p99, embedding included, cache off) and batch throughput."""
    import numpy as np

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


@app.command()
def demo(
    ctx: typer.Context,
    fresh: Annotated[bool, typer.Option(help="Start from an empty demo database.")] = True,
    serve: Annotated[bool, typer.Option(help="Then start the workspace with the demo data and demo users.")] = False,
) -> None:
    """Load the bundled multilingual sample, ingest, match and print a summary."""
    from factbridge.cli_web import run_server, seed_demo_accounts
    from factbridge.demo import run_demo

    state = _state(ctx)
    if "data_dir" not in state.overrides:
        state.overrides["data_dir"] = ".factbridge/demo"
    services = state.services()
    run_demo(services, fresh=fresh)
    password = seed_demo_accounts(services)
    settings = services.settings
    console.print(
        f"workspace: http://{settings.host}:{settings.port}/  sign in as [bold]editor[/] (second editor: [bold]reviewer[/], "
        f"also analyst, admin) with password [bold]{password}[/]; public site: http://{settings.host}:{settings.port}/public/{settings.org}"
    )
    if serve:
        run_server(services)


from factbridge import cli_triage  # noqa: E402,F401


def main() -> None:
    try:
        app()
    except FactBridgeError as exc:
        err_console.print(f"[bold red]error:[/] {exc}")
        sys.exit(2 if isinstance(exc, InputError) else 1)


import factbridge.cli_narratives  # noqa: E402,F401
import factbridge.cli_queue  # noqa: E402,F401
import factbridge.cli_web  # noqa: E402,F401
from factbridge import cli_linkrisk  # noqa: E402,F401

if __name__ == "__main__":
    main()

