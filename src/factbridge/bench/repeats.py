"""`factbridge bench repeats`: triage's repeat search over a long history, the window against
the whole, in the post index a deployment has (PostgreSQL's periods, or the embedded index's
segments), against the exact answer.

The history is the costly case for a window: `old` posts over the year before the last month
and `recent` posts of the last two days, all drawn around the same 500 topic centres, so every
recent post's neighbourhood is mostly older posts. `queries` recent posts are searched at
triage's threshold (0.92) for their repeats: with a span of `span_days` either side (a batch's
new posts: the threshold search; the posts it refreshes: the wide search of all
`REPEAT_NEIGHBOURS`), and without one (a post of no known time). Each search's hits are
counted against NumPy's exact answer. (docs/performance.md §5, "Fifteenth round".)
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np

from factbridge.backends.vectors.base import search_above, search_batch, time_stamp
from factbridge.models import Post

NOW = datetime(2026, 11, 30, tzinfo=UTC)
EMBEDDER_ID = "bench-repeats"
CENTRES = 500
THRESHOLD = 0.92


@dataclass
class RepeatsBench:
    backend: str
    old: int
    recent: int
    dim: int
    queries: int
    span_days: float
    load_s: float = 0.0
    rows: list[dict[str, Any]] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {"backend": self.backend, "old": self.old, "recent": self.recent, "dim": self.dim, "queries": self.queries,
                "span_days": self.span_days, "threshold": THRESHOLD, "load_s": round(self.load_s, 2), "searches": self.rows}


def history(old: int, recent: int, dim: int, seed: int = 0) -> tuple[list[Post], np.ndarray]:
    """The posts (old ones 30-330 days back, recent ones within 48 h) and their unit vectors."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((CENTRES, dim)).astype(np.float32)
    rows = centres[rng.integers(CENTRES, size=old + recent)] + 0.15 * rng.standard_normal((old + recent, dim)).astype(np.float32)
    rows /= np.linalg.norm(rows, axis=1, keepdims=True)
    posts = [Post(id=f"o{i}", text="x", created_at=NOW - timedelta(days=30 + i % 300, minutes=i % 1440)) for i in range(old)]
    posts += [Post(id=f"n{i}", text="x", created_at=NOW - timedelta(hours=i % 48)) for i in range(recent)]
    return posts, rows


def run_repeats_bench(
    backend: str, index_of: Callable[[list[Post], np.ndarray], Any], *, old: int, recent: int, dim: int = 64, queries: int = 100,
    span_days: float = 14.0, k: int = 200, seed: int = 0,
) -> RepeatsBench:
    """`index_of(posts, vectors)` stores them and returns the post index to search."""
    result = RepeatsBench(backend, old, recent, dim, min(queries, recent), span_days)
    posts, rows = history(old, recent, dim, seed)
    t0 = time.perf_counter()
    index = index_of(posts, rows)
    result.load_s = time.perf_counter() - t0
    asked = rows[old : old + result.queries]
    lo, hi = time_stamp(NOW - timedelta(days=span_days)), time_stamp(NOW + timedelta(days=span_days))
    assert lo is not None and hi is not None  # (times given)
    span = (lo, hi)
    stamps = np.asarray([time_stamp(p.created_at) for p in posts], dtype=np.int64)  # (every post has a time)
    in_span = (stamps >= lo) & (stamps <= hi)
    sims = asked @ rows.T
    exact_span = int(np.minimum(((sims >= THRESHOLD) & in_span[None, :]).sum(axis=1), k).sum())
    exact_all = int(np.minimum((sims >= THRESHOLD).sum(axis=1), k).sum())
    runs: list[tuple[str, Callable[..., list[list[tuple[str, float]]]], Any, int]] = [
        ("a batch's new posts: threshold search, the span", search_above, span, exact_span),
        ("refreshed posts: wide search, the span", search_batch, span, exact_span),
        ("a post of no known time: threshold search, no span", search_above, None, exact_all),
    ]
    spanned = {p.id for p, inside in zip(posts, in_span.tolist(), strict=True) if inside}
    for name, search, within, exact in runs:
        t = time.perf_counter()
        found = search(index, asked, k, EMBEDDER_ID, THRESHOLD, within)
        elapsed = time.perf_counter() - t
        returned = sum(len(r) for r in found)
        # the hits triage keeps: those of the span (the embedded index returns a kept segment's
        # others too, which triage then drops by their times)
        hits = returned if within is None else sum(1 for r in found for i, _ in r if i in spanned)
        result.rows.append({"search": name, "ms_per_query": round(1000 * elapsed / len(asked), 2), "returned": returned, "hits": hits, "exact": exact})
    return result


def postgres_index(url: str, tuning: Any) -> Callable[[list[Post], np.ndarray], Any]:
    """Store the posts and vectors in a PostgreSQL store at `url` (migrated here) and return its
    post index (PgVectorIndex, HNSW by period) with the deployment's tuning."""
    from factbridge.backends.storage.postgres import PostgresStorage
    from factbridge.backends.vectors.selection import stored_vector_index

    def make(posts: list[Post], rows: np.ndarray) -> Any:
        store = PostgresStorage(url)
        store.migrate()
        index = stored_vector_index(store, "bench", "post", EMBEDDER_ID, rows.shape[1], choice="hnsw", tuning=tuning)
        for s in range(0, len(posts), 5000):
            store.upsert_posts("bench", posts[s : s + 5000])
            store.put_vectors("bench", "post", EMBEDDER_ID, [(p.id, "", v) for p, v in zip(posts[s : s + 5000], rows[s : s + 5000], strict=True)])
        store._write(lambda c: c.execute("ANALYZE vectors; ANALYZE posts; ANALYZE post_vectors"))
        return index

    return make


def embedded_index(tuning: Any) -> Callable[[list[Post], np.ndarray], Any]:
    """The embedded usearch index (segments with their spans) with the deployment's tuning."""
    from factbridge.backends.vectors.hnsw import HnswIndex

    def make(posts: list[Post], rows: np.ndarray) -> Any:
        index = HnswIndex(EMBEDDER_ID, rows.shape[1], **tuning.usearch_options())
        # in time order, as a feed fills it (each segment then spans a stretch of time)
        order = sorted(range(len(posts)), key=lambda i: (posts[i].created_at or NOW, posts[i].id))
        index.add([posts[i].id for i in order], rows[order], EMBEDDER_ID, stamps=[time_stamp(posts[i].created_at) for i in order])
        return index

    return make
