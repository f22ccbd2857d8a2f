"""The ingest throughput bench: the whole pipeline on generated posts, timed per stage,
beside the encoder alone on the same texts.

A batch goes the way `factbridge ingest` and `factbridge worker` take it: normalise
(Unicode, language, tokens, links), store, then every registered stage in order
(embedding first: vectors stored once, shared by every later stage), each recorded in
the stage ledger. The encoder-alone run encodes the same posts'
texts, one after the other in batches, with nothing else around it: what the encoder
costs by itself, so that `1 - pipeline rate / encoder rate` is the pipeline's overhead.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from factbridge.backends.embedders.base import Embedder
from factbridge.backends.embedders.cache import CachedEmbedder
from factbridge.models import Post
from factbridge.pipeline.prepare import embedding_text, prepare_post
from factbridge.pipeline.stages import load_stages, run_stages


@dataclass
class IngestBench:
    posts: int
    stage_s: dict[str, float] = field(default_factory=dict)
    embedded: int = 0
    reused: int = 0
    encoder_s: float = 0.0
    encoder_texts: int = 0
    mean_chars: float = 0.0
    load_before: float = 0.0
    load_after: float = 0.0

    @property
    def total_s(self) -> float:
        return sum(self.stage_s.values())

    @property
    def rate(self) -> float:
        return self.posts / self.total_s if self.total_s else 0.0

    @property
    def encoder_rate(self) -> float:
        return self.encoder_texts / self.encoder_s if self.encoder_s else 0.0

    @property
    def overhead(self) -> float:
        """Share of the encoder-alone rate the pipeline loses (negative: it is faster, by reusing vectors)."""
        return 1.0 - self.rate / self.encoder_rate if self.encoder_rate else 0.0

    def as_dict(self) -> dict[str, Any]:
        return {
            "posts": self.posts, "mean_chars": round(self.mean_chars, 1), "stage_s": {k: round(v, 3) for k, v in self.stage_s.items()},
            "total_s": round(self.total_s, 3), "posts_per_s": round(self.rate, 2), "embedded": self.embedded, "reused": self.reused,
            "encoder_alone_posts_per_s": round(self.encoder_rate, 2), "overhead": round(self.overhead, 4),
            "load_before": self.load_before, "load_after": self.load_after, "cpus": os.cpu_count(),
        }


def bare_embedder(embedder: Embedder) -> Embedder:
    """The encoder without its cache: the bench times real encoding."""
    return embedder.inner if isinstance(embedder, CachedEmbedder) else embedder


def run_ingest_bench(
    services: Any, org: str, raw: Sequence[Post], batch_size: int = 64, progress: Callable[[int], None] | None = None,
) -> IngestBench:
    """Ingest `raw` through every stage in batches, timing each stage, then the encoder alone.
    `services.embedder` must be the encoder to time (no embedding cache)."""
    result = IngestBench(posts=len(raw), load_before=round(os.getloadavg()[0], 2))
    stages = load_stages()
    clock: dict[str, float] = {"normalise": 0.0, "store": 0.0, **{stage.name: 0.0 for stage in stages}}
    prepared_all: list[Post] = []
    for start in range(0, len(raw), batch_size):
        part = raw[start : start + batch_size]
        t0 = time.perf_counter()
        prepared = [prepare_post(p, services.languages) for p in part]
        t1 = time.perf_counter()
        services.storage.upsert_posts(org, prepared)
        clock["normalise"] += t1 - t0
        clock["store"] += time.perf_counter() - t1
        for stage in stages:  # one at a time, each with its ledger record, as run_stages does
            t = time.perf_counter()
            summary = run_stages(services, org, prepared, stages=[stage]).get(stage.name, {})
            clock[stage.name] += time.perf_counter() - t
            if stage.name == "embedding":
                embedded, reused = summary.get("embedded", 0), summary.get("reused", 0)
                result.embedded += embedded if isinstance(embedded, int) else 0
                result.reused += reused if isinstance(reused, int) else 0
        prepared_all.extend(prepared)
        if progress:
            progress(len(part))
    result.stage_s = clock
    texts = [embedding_text(p) for p in prepared_all]
    result.mean_chars = sum(len(p.text) for p in prepared_all) / max(1, len(prepared_all))
    t = time.perf_counter()
    for start in range(0, len(texts), batch_size):  # as the pipeline hands them over
        services.embedder.encode_queries(texts[start : start + batch_size])
    result.encoder_s = time.perf_counter() - t
    result.encoder_texts = len(texts)
    result.load_after = round(os.getloadavg()[0], 2)
    return result
