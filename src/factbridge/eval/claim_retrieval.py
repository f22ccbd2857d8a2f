"""Claim-retrieval evaluation: load a library into a scratch store, match the
queries, score the rankings (overall and per language), for several fusions."""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from factbridge.backends.embedders.base import Embedder
from factbridge.backends.storage.base import Storage
from factbridge.eval.datasets import load_qrels, load_queries
from factbridge.eval.metrics import retrieval_metrics
from factbridge.models import Post
from factbridge.pipeline.centering import LanguageCentering
from factbridge.pipeline.ingest import import_factcheck_files
from factbridge.pipeline.matching import Matcher, index_factchecks
from factbridge.pipeline.prepare import prepare_post
from factbridge.pipeline.reranker import Reranker

EVAL_ORG = "eval"


@dataclass
class EvalReport:
    library_size: int
    queries: int
    metrics: dict[str, dict[str, float]]  # fusion -> metric -> value
    per_language: dict[str, dict[str, dict[str, float]]]  # fusion -> language -> metrics
    timings: dict[str, float] = field(default_factory=dict)
    language_pairs: list[str] = field(default_factory=list)


def load_library(storage: Storage, embedder: Embedder, claims: Sequence[str | Path], languages: tuple[str, ...], progress_factory=None) -> dict[str, float]:
    t0 = time.perf_counter()
    report, _ = import_factcheck_files(storage, EVAL_ORG, claims, languages)
    t1 = time.perf_counter()
    if progress_factory:
        with progress_factory("embedding fact-checks", None) as advance:
            index_factchecks(storage, embedder, EVAL_ORG, advance, on_total=getattr(advance, "set_total", None))
    else:
        index_factchecks(storage, embedder, EVAL_ORG)
    t2 = time.perf_counter()
    return {"import_s": t1 - t0, "embed_s": t2 - t1, "claims": float(report.inserted + report.updated + report.unchanged), "quarantined": float(len(report.quarantined))}


@contextmanager
def scratch_library(
    embedder: Embedder, claims: Sequence[str | Path], languages: tuple[str, ...], progress_factory: Any = None
) -> Iterator[tuple[Storage, dict[str, float]]]:
    """A throw-away in-memory store holding one fact-check library, for eval, bench and training."""
    from factbridge.backends.storage.sqlite import SQLiteStorage

    storage = SQLiteStorage("sqlite:///:memory:")
    storage.migrate()
    try:
        yield storage, load_library(storage, embedder, claims, languages, progress_factory)
    finally:
        storage.close()


def prepare_queries(path: str | Path, languages: tuple[str, ...]) -> list[Post]:
    return [prepare_post(q, languages) for q in load_queries(path)]


def evaluate(
    storage: Storage,
    embedder: Embedder,
    queries: list[Post],
    qrels: dict[str, set[str]],
    fusions: Sequence[str],
    reranker: Reranker | None,
    progress=None,
    candidates: int = 50,
    centering: LanguageCentering | None = None,
) -> EvalReport:
    vectors = embedder.encode_queries([_text(q) for q in queries], progress)
    metrics: dict[str, dict[str, float]] = {}
    per_language: dict[str, dict[str, dict[str, float]]] = {}
    timings: dict[str, float] = {}
    library_langs: set[str] = set()
    for fusion in fusions:
        matcher = Matcher(storage, embedder, EVAL_ORG, fusion=fusion, reranker=reranker if fusion == "learned" else None, candidates=candidates, top_k=10, centering=centering)
        library_langs = {item.language for item in matcher.items}
        t0 = time.perf_counter()
        results = matcher.match_vectors(queries, vectors)
        timings[f"match_{fusion}_ms_per_query"] = (time.perf_counter() - t0) * 1000 / max(1, len(queries))
        rankings = {q.id: [c.factcheck_id for c in r.candidates] for q, r in zip(queries, results, strict=True)}
        metrics[fusion] = retrieval_metrics(rankings, qrels)
        by_lang: dict[str, list[str]] = defaultdict(list)
        for q in queries:
            by_lang[q.language or "und"].append(q.id)
            if q.raw.get("split"):  # a set split tune/report (tests/fixtures/crosslingual_blind): each split apart too
                by_lang[f"{q.language or 'und'}/{q.raw['split']}"].append(q.id)
        if len(by_lang) > 1 or fusion == fusions[0]:
            per_language[fusion] = {
                lang: retrieval_metrics(rankings, {q: qrels[q] for q in ids if q in qrels}) for lang, ids in sorted(by_lang.items())
            }
    query_langs = sorted({q.language or "und" for q in queries})
    pairs = [f"{ql}->{fl}" for ql in query_langs for fl in sorted(library_langs)]
    return EvalReport(library_size=len(matcher.items), queries=len(queries), metrics=metrics, per_language=per_language, timings=timings, language_pairs=pairs)


def _text(post: Post) -> str:
    from factbridge.pipeline.prepare import embedding_text

    return embedding_text(post)


def load_eval_set(queries_path: str | Path, qrels_path: str | Path | None, languages: tuple[str, ...]) -> tuple[list[Post], dict[str, set[str]]]:
    queries = prepare_queries(queries_path, languages)
    qrels = load_qrels(qrels_path, queries)
    ids = set(qrels)
    return [q for q in queries if q.id in ids], qrels
