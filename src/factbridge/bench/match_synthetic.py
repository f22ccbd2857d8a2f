"""`bench match --synthetic N`: search latency, recall and memory of the vector index at a
size no real library here has (millions of fact-checks or posts).

Synthetic vectors (384-d, unit length) imitate how e5 vectors lie: every vector shares a
common direction (unrelated e5 texts have a cosine of ~0.7-0.8), vectors form topics
(N / 50 cluster centres) and each vector is its centre plus independent noise:
    v = normalise(0.55 * common + 0.45 * centre_c + 0.55 * noise)
which gives unrelated pairs a cosine of ~0.55 and same-topic pairs ~0.75. Chunk i of
the library is drawn from its own seed, so the library is never held in memory by the
bench (only by the index under test) and exact search can walk it again chunk by chunk.
Queries are fresh draws from the same distribution (recall@10 against exact search).

Latency per post includes embedding: each timed request encodes a generated tweet-length
post with the configured embedder (no cache) and searches the index with a synthetic
query vector (the library is synthetic, so the real vector would find nothing of
meaning; the search cost is the same).
"""

from __future__ import annotations

import os
import resource
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from factbridge.backends.embedders.base import Embedder
from factbridge.backends.vectors.base import VectorIndex

DIM = 384
CHUNK = 10_000  # the library is drawn in blocks of this size, each from its own seed
EMBEDDER_ID = "synthetic-384"


@dataclass
class SyntheticSpace:
    n: int
    dim: int = DIM
    seed: int = 17
    topics: int = 0
    _common: np.ndarray = field(init=False, repr=False)
    _centres: np.ndarray = field(init=False, repr=False)

    def __post_init__(self) -> None:
        rng = np.random.default_rng(self.seed)
        self.topics = self.topics or max(10, self.n // 50)
        common = rng.standard_normal(self.dim).astype(np.float32)
        self._common = common / np.linalg.norm(common)
        centres = rng.standard_normal((self.topics, self.dim)).astype(np.float32)  # 20k x 384: 30 MB at 1M
        self._centres = centres / np.linalg.norm(centres, axis=1, keepdims=True)

    def _centre(self, topics: np.ndarray) -> np.ndarray:
        return self._centres[topics]

    def _draw(self, rng: np.random.Generator, count: int) -> np.ndarray:
        topics = rng.integers(0, self.topics, size=count)
        noise = rng.standard_normal((count, self.dim)).astype(np.float32)
        noise /= np.linalg.norm(noise, axis=1, keepdims=True)
        v = 0.55 * self._common + 0.45 * self._centre(topics) + 0.55 * noise
        return (v / np.linalg.norm(v, axis=1, keepdims=True)).astype(np.float32)

    def chunks(self) -> Iterator[tuple[int, np.ndarray]]:
        """(first row, vectors) of the library, block after block; the same every time."""
        for start in range(0, self.n, CHUNK):
            count = min(CHUNK, self.n - start)
            yield start, self._draw(np.random.default_rng((self.seed, 2, start)), count)

    def queries(self, count: int) -> np.ndarray:
        return self._draw(np.random.default_rng((self.seed, 3)), count)


def item_id(row: int) -> str:
    return f"s{row}"


def exact_top_k(space: SyntheticSpace, queries: np.ndarray, k: int = 10) -> list[set[str]]:
    best_scores = np.full((queries.shape[0], k), -np.inf, dtype=np.float32)
    best_rows = np.zeros((queries.shape[0], k), dtype=np.int64)
    for start, chunk in space.chunks():
        scores = queries @ chunk.T
        rows = np.broadcast_to(np.arange(start, start + chunk.shape[0]), scores.shape)
        all_scores = np.concatenate([best_scores, scores], axis=1)
        all_rows = np.concatenate([best_rows, rows], axis=1)
        top = np.argpartition(-all_scores, k - 1, axis=1)[:, :k]
        best_scores = np.take_along_axis(all_scores, top, axis=1)
        best_rows = np.take_along_axis(all_rows, top, axis=1)
    return [{item_id(int(r)) for r in row} for row in best_rows]


def rss_mb() -> tuple[float, float]:
    """(current, peak) resident memory of this process in MB."""
    current = 0.0
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                current = int(line.split()[1]) / 1024
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return current, peak


@dataclass
class MatchBench:
    backend: str
    n: int
    build_s: float = 0.0
    latency_ms: list[float] = field(default_factory=list)
    search_ms: list[float] = field(default_factory=list)
    recall_at_10: float = 0.0
    rss_mb: float = 0.0
    peak_rss_mb: float = 0.0
    server_mb: float | None = None
    load: list[float] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        lat = np.asarray(self.latency_ms or [0.0])
        srch = np.asarray(self.search_ms or [0.0])
        return {
            "backend": self.backend, "n": self.n, "build_s": round(self.build_s, 1),
            "p50_ms": round(float(np.percentile(lat, 50)), 2), "p99_ms": round(float(np.percentile(lat, 99)), 2),
            "search_p50_ms": round(float(np.percentile(srch, 50)), 2), "search_p99_ms": round(float(np.percentile(srch, 99)), 2),
            "recall_at_10": round(self.recall_at_10, 4), "rss_mb": round(self.rss_mb), "peak_rss_mb": round(self.peak_rss_mb),
            "server_mb": None if self.server_mb is None else round(self.server_mb), "load": self.load, "cpus": os.cpu_count(),
        }


def build_index(index: VectorIndex, space: SyntheticSpace, progress: Callable[[int], None] | None = None) -> float:
    t = time.perf_counter()
    for start, chunk in space.chunks():
        index.add([item_id(start + i) for i in range(chunk.shape[0])], chunk, EMBEDDER_ID)
        if progress:
            progress(chunk.shape[0])
    return time.perf_counter() - t


def measure(
    index: VectorIndex, space: SyntheticSpace, embedder: Embedder, texts: list[str], result: MatchBench, n_queries: int = 200,
    recall_queries: int = 100,
) -> MatchBench:
    queries = space.queries(max(n_queries, recall_queries))
    embedder.encode_queries(texts[:2])  # warm-up
    for i in range(n_queries):
        t0 = time.perf_counter()
        embedder.encode_queries([texts[i % len(texts)]])
        t1 = time.perf_counter()
        index.search(queries[i], 10, EMBEDDER_ID)
        t2 = time.perf_counter()
        result.latency_ms.append((t2 - t0) * 1000)
        result.search_ms.append((t2 - t1) * 1000)
    truth = exact_top_k(space, queries[:recall_queries])
    hits = sum(len({i for i, _ in index.search(q, 10, EMBEDDER_ID)} & truth[j]) for j, q in enumerate(queries[:recall_queries]))
    result.recall_at_10 = hits / (10 * recall_queries)
    result.rss_mb, result.peak_rss_mb = rss_mb()
    result.load.append(round(os.getloadavg()[0], 2))
    return result
