"""Approximate nearest-neighbour search (HNSW, from `usearch`), persisted beside the database.

The embedded default for what grows without bound (millions of posts; a library of
millions of fact-checks). Why usearch (docs/performance.md has the measurements):
prebuilt wheels (hnswlib builds from source), keyed vectors that can be removed and
replaced (faiss' HNSW cannot remove), save / load of one file, and the best recall of
the three at 200k vectors (0.997 at ef=128).

Segments (as Lucene's or Qdrant's): the index is a list of usearch graphs of at most
`segment_size` keys each. New vectors go into the newest segment; a full one is sealed
(nothing is added to it again) and, once saved, is never written again unless one of
its vectors is removed or replaced. A search asks every segment for its candidates and
merges them (by the float re-rank when there is one, else by score). Why: one HNSW
graph of 1M clustered e5-like vectors with m=16 / ef_construction=64 reaches recall@10
0.96 whatever the search effort, where graphs of 250,000 reach >= 0.99
(docs/performance.md); a build slows down with the graph's size, and a save rewrites
only what changed (the new segment) instead of the whole file.

Item ids are strings; usearch keys are integers (given in order, so each segment holds
one range of keys): the index keeps the id of each key and, per id, the hash of the
text its vector was made from, so a process that opens the saved index adds only what
changed since it was saved (`stale_ids`). A vector added again under the same id
replaces the old one. Scores are inner products (vectors are L2-normalised: cosine),
best first, like every VectorIndex.

Files (`path` is a stem): per segment, `<path>.<generation>.usearch` (its graph and
vectors) and `<path>.<generation>.ids.json` (the id of each of its keys and their text
hashes), and `<path>.json` (embedder, dimension, version, and the segments: the files and
first key of each). A save writes the files of the segments changed since the last save
under new names, then replaces the `.json` atomically (the commit point), then removes the
files no segment names any more: a crash at any moment leaves the last complete set
readable. A sealed segment is written once (again only when one of its vectors is
replaced), so a save costs by the newest segment, not by the whole index (before version 3
the `.json` listed every id and hash: 105 MB and 1.6 s a save at a million). Opening a
saved index made by another embedder or of another dimension raises EmbedderMismatch.
`open(..., view=True)` memory-maps the saved files instead of reading them (a read-only
index whose pages the OS shares and evicts: what a process that only searches needs).
A file of the layout before segments (`usearch-hnsw-1`, one `data` file) opens as one
segment; one of version 2 (every id in the `.json`) opens too, and its next save writes
version 3.

Memory: `dtype="f16"` (768 bytes per 384-d vector) or `"i8"` (384 bytes) instead of
`"f32"` (1,536 bytes). Quantised distances move scores by ~1e-3 (f16) or ~1e-2 (i8),
so with `rerank` (a function giving the float vectors of a few ids, e.g. from storage)
the index asks each segment for a few times `k` candidates and orders them all by their
exact inner products: the scores returned are the float ones, and recall is the graphs'.
"""

from __future__ import annotations

import bisect
import contextlib
import importlib.util
import json
import os
import threading
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import numpy as np
import orjson

from factbridge.backends.vectors.base import Span, check_vectors
from factbridge.errors import EmbedderMismatch

HNSW_INDEX_VERSION = "usearch-hnsw-3"  # 3: each segment's ids in a file of its own; 2: segments; 1: one graph (both still read)
READABLE_VERSIONS = ("usearch-hnsw-1", "usearch-hnsw-2", HNSW_INDEX_VERSION)
# Below this many vectors a brute-force scan costs well under a millisecond and is exact, where
# the graph's answer is approximate (a small graph can miss a neighbour now and then). An f32
# segment scans a float32 copy of its vectors (`_Floats`, at most this many rows); f16 / i8 ones
# usearch's scan (their quantised values are usearch's own).
EXACT_BELOW = 4096
DTYPES = ("f32", "f16", "i8")
RERANK_FACTOR = 4  # with a quantised index and `rerank`: candidates asked of each segment per result
NO_STAMP = int(np.iinfo(np.int64).min)  # a key's stamp when its vector came without one (`_stamps`)
UNKNOWN_EXACT_MAX = 20_000  # vectors of unknown time an exact pass over a span reads with it (`_read_in_span`)
SEGMENT_SIZE = 250_000  # keys per segment (the vector_segment_size setting; docs/performance.md)
# A threshold search (`search_above`: the hits at or above a score, at most k) asks each graph
# first for its NARROW_K nearest at expansion NARROW_EF, and for k at the index's expansion only
# where all NARROW_K reach the score: near-copies are few for most posts, and a graph search
# costs by its expansion (5,120 generated tweets, 2 cores, k=200 at ef=256: 0.42-0.56 ms per
# query; 32 at 64: 0.18-0.19, finding 99.94 % of the hits >= 0.92 of the queries it answers, and
# 18 % of them asking again; 16 or 64 at 64 cost about as much in all, 64 finding 99.82 %;
# docs/performance.md §5, "Seventh round").
NARROW_K = 32
NARROW_EF = 64

Rerank = Callable[[Sequence[str]], np.ndarray]  # ids -> their float vectors, one row each, in order


def _usearch() -> Any:
    # usearch 2.26's native module loaded before ONNX Runtime's makes ONNX Runtime's import
    # crash the process (segmentation fault; the other order is fine): when the `fast` extra
    # is installed, load ONNX Runtime first, as an embedder with embed_engine=onnx will.
    if importlib.util.find_spec("onnxruntime") is not None:
        import onnxruntime  # noqa: F401
    from usearch.index import Index  # a core dependency, imported when an index is made

    return Index


class _Floats:
    """A small f32 segment's vectors as float32 rows in key order (the order they were
    added), searched below EXACT_BELOW by one product per query instead of usearch's scan,
    which computes one pair at a time (2.5-3x the CPU: docs/performance.md §5). The rows of
    removed keys are masked, and dropped when the rows would pass EXACT_BELOW: at most
    EXACT_BELOW rows. A search reads a `view()` taken under the index's lock: what the
    index changes later goes into rows past the view's or into new arrays (the mask is
    copied before it changes), so a view is never changed under its reader."""

    def __init__(self, keys: np.ndarray, vectors: np.ndarray) -> None:
        self.keys = np.asarray(keys, dtype=np.int64)
        self.rows = np.ascontiguousarray(vectors, dtype=np.float32)
        self.used = len(self.keys)
        self.dead = np.zeros(self.used, dtype=bool)

    def view(self) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        """The rows, their keys and the mask of removed ones (None: none removed)."""
        dead = self.dead[: self.used]
        return self.rows[: self.used], self.keys[: self.used], dead if dead.any() else None

    def append(self, keys: np.ndarray, vectors: np.ndarray) -> None:
        """Rows for keys above every key held."""
        if self.used + len(keys) > len(self.rows):  # full: new arrays, the masked rows dropped
            live = ~self.dead[: self.used]
            held = int(live.sum())
            capacity = max(held + len(keys), min(EXACT_BELOW, max(64, 2 * (held + len(keys)))))  # room to grow, up to EXACT_BELOW
            rows = np.empty((capacity, self.rows.shape[1]), dtype=np.float32)
            rows[:held] = self.rows[: self.used][live]
            self.keys = np.concatenate([self.keys[: self.used][live], np.zeros(capacity - held, dtype=np.int64)])
            self.rows, self.dead, self.used = rows, np.zeros(capacity, dtype=bool), held
        self.rows[self.used : self.used + len(keys)] = vectors
        self.keys[self.used : self.used + len(keys)] = keys
        self.used += len(keys)  # published last: a view taken before sees none of them

    def remove(self, keys: Sequence[int]) -> None:
        dead = self.dead.copy()
        dead[np.searchsorted(self.keys[: self.used], np.asarray(keys, dtype=np.int64))] = True
        self.dead = dead


def _exact_hits(view: tuple[np.ndarray, np.ndarray, np.ndarray | None], query: np.ndarray, n: int,
                min_score: float | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The keys and "ip" distances (1 - inner product, in float32, as usearch's) of the `n`
    nearest live rows of a `_Floats` view, nearest first, less those scoring (1 - distance)
    under `min_score`; ties in key order (the order added, as the merge of segments orders
    them; usearch's scan leaves exact copies in the order its top-k buffer does, which no key
    order reproduces: docs/performance.md §5). One matrix-vector product per query, never a
    batch's matrix product: BLAS rounds a row of a batch's product differently by the
    batch's size, and `search` and `search_many` must give the same answers."""
    rows, keys, dead = view
    distances = np.float32(1.0) - rows @ query
    if dead is not None:
        distances[dead] = np.inf
        n = min(n, len(rows) - int(dead.sum()))  # the view's live rows (an add since may have changed the segment's count)
    # the score falls as the distance grows: the hits above `min_score` are a prefix of the n nearest
    top = np.arange(len(distances)) if min_score is None else np.flatnonzero(1.0 - distances.astype(np.float64) >= min_score)
    if n < len(top):  # every row up to the n-th distance, ties at the cut included
        top = top[distances[top] <= np.partition(distances[top], n - 1)[n - 1]]
    top = top[np.argsort(distances[top], kind="stable")][:n]
    return keys[top], distances[top]


@dataclass
class _Segment:
    graph: Any  # usearch Index
    first_key: int
    live: int = 0  # vectors not removed
    saved_as: str | None = None  # its file as last saved; None: changed since (or never saved)
    floats: _Floats | None = None  # below EXACT_BELOW (f32): its vectors, for the exact search; None: not kept
    # the first and last stamp of the vectors it was given, removed ones included (a bound); None with
    # `timed`: none given yet. `timed` False: a vector came without a stamp (or the file had no span)
    span: Span | None = None
    timed: bool = True

    def stamped(self, stamps: Sequence[int | None] | None) -> None:
        """Widen the span to vectors with these stamps (None: unknown)."""
        if stamps is None or any(t is None for t in stamps):
            self.timed = False
            return
        known = cast(Sequence[int], stamps)
        if known:
            low, high = min(known), max(known)
            self.span = (low, high) if self.span is None else (min(self.span[0], low), max(self.span[1], high))

    def may_hold(self, within: Span | None) -> bool:
        """Whether a vector stamped within `within` may be here (False only when every vector's
        stamp is known and none is in it)."""
        if within is None or not self.timed:
            return True
        return self.span is not None and self.span[0] <= within[1] and within[0] <= self.span[1]


class HnswIndex:
    def __init__(
        self,
        embedder_id: str,
        dim: int,
        *,
        connectivity: int = 16,
        expansion_add: int = 64,
        expansion_search: int = 128,
        dtype: str = "f32",
        threads: int = 0,
        rerank: Rerank | None = None,
        segment_size: int = SEGMENT_SIZE,
    ) -> None:
        if dtype not in DTYPES:
            raise ValueError(f"HnswIndex dtype must be one of {', '.join(DTYPES)}, got '{dtype}'")
        if segment_size < 1:
            raise ValueError(f"HnswIndex segment_size must be positive, got {segment_size}")
        self.embedder_id = embedder_id
        self.dim = dim
        self.dtype = dtype
        self.rerank = rerank
        self.read_only = False
        self.threads = threads or (os.cpu_count() or 1)
        self.segment_size = segment_size
        self.params = {"connectivity": connectivity, "expansion_add": expansion_add, "expansion_search": expansion_search}
        self._segments: list[_Segment] = []
        self._ids: list[str | None] = []  # key -> id (None: removed)
        # key -> its vector's stamp (`base.time_stamp`; NO_STAMP: unknown), for a search `within` a
        # span inside a segment that holds other times too (`_in_span`)
        self._stamps = np.zeros(0, dtype=np.int64)
        self._key: dict[str, int] = {}
        self._sha: dict[str, str] = {}
        self._lock = threading.Lock()
        # every graph search sets its graph's expansion first: one search at a time (usearch
        # holds the GIL while it searches, so searches never ran side by side anyway)
        self._search_lock = threading.Lock()

    def _graph(self) -> Any:
        return _usearch()(ndim=self.dim, metric="ip", dtype=self.dtype, **self.params)

    @property
    def segments(self) -> int:
        return len(self._segments)

    @property
    def newest_size(self) -> int:
        """Vectors in the newest segment (the one a save writes again; sealed ones are kept)."""
        return self._segments[-1].live if self._segments else 0

    # -- the VectorIndex contract ---------------------------------------------------
    def add(self, ids: Sequence[str], vectors: np.ndarray, embedder_id: str, shas: Sequence[str] | None = None,
            stamps: Sequence[int | None] | None = None) -> None:
        """Add (or replace) these vectors. `shas`: the hash of each one's text (`stale_ids`).
        `stamps`: each one's time (`base.time_stamp`, None: unknown), which lets a search
        `within` a span leave out the segments holding none of it."""
        check_vectors(self, embedder_id, self.dim)
        if not len(ids):
            return
        vectors = np.ascontiguousarray(np.asarray(vectors, dtype=np.float32).reshape(len(ids), -1))
        check_vectors(self, embedder_id, vectors.shape[1])
        if self.read_only:
            raise ValueError("this HnswIndex is a read-only view of a saved file: open it without view=True to add")
        last = {item_id: n for n, item_id in enumerate(ids)}  # a repeated id: its last vector wins
        rows = sorted(last.values())
        with self._lock:
            old: dict[int, list[int]] = {}
            for n in rows:
                if ids[n] in self._key:
                    key = self._key[ids[n]]
                    old.setdefault(bisect.bisect_right([s.first_key for s in self._segments], key) - 1, []).append(key)
            for position, gone in old.items():
                segment = self._segments[position]
                segment.graph.remove(np.asarray(gone, dtype=np.uint64))
                segment.live -= len(gone)
                segment.saved_as = None
                if segment.floats is not None:
                    segment.floats.remove(gone)
                for key in gone:
                    self._ids[key] = None
            done = 0
            while done < len(rows):
                newest = self._segments[-1] if self._segments else None
                if newest is None or len(self._ids) - newest.first_key >= self.segment_size:
                    newest = _Segment(self._graph(), len(self._ids))  # the newest is full: sealed
                    if self.dtype == "f32":
                        newest.floats = _Floats(np.zeros(0, dtype=np.int64), np.zeros((0, self.dim), dtype=np.float32))
                    self._segments.append(newest)
                part = rows[done : done + newest.first_key + self.segment_size - len(self._ids)]
                keys = np.arange(len(self._ids), len(self._ids) + len(part), dtype=np.uint64)
                newest.stamped([stamps[n] for n in part] if stamps is not None else None)  # before the vectors: a search never sees one outside the span
                self._push_stamps([stamps[n] for n in part] if stamps is not None else [None] * len(part))  # (and each key's, likewise)
                newest.graph.add(keys, vectors[part], threads=self.threads)
                newest.live += len(part)
                newest.saved_as = None
                if newest.floats is not None:
                    if newest.live < EXACT_BELOW:
                        newest.floats.append(keys.astype(np.int64), vectors[part])
                    else:
                        newest.floats = None  # the graph answers from now on
                for key, n in zip(keys.tolist(), part, strict=True):
                    self._ids.append(ids[n])
                    self._key[ids[n]] = key
                    if shas is not None:
                        self._sha[ids[n]] = shas[n]
                done += len(part)

    def _push_stamps(self, stamps: Sequence[int | None]) -> None:
        """The stamps of the keys about to be appended (grown by doubling, as the keys are)."""
        start, end = len(self._ids), len(self._ids) + len(stamps)
        if end > self._stamps.shape[0]:
            grown = np.full(max(end, 2 * self._stamps.shape[0], 1024), NO_STAMP, dtype=np.int64)
            grown[: self._stamps.shape[0]] = self._stamps
            self._stamps = grown
        self._stamps[start:end] = [NO_STAMP if t is None else int(t) for t in stamps]

    def _stamps_of(self, keys: np.ndarray) -> np.ndarray:
        """These keys' stamps (NO_STAMP: unknown)."""
        held = self._stamps  # (an add may grow it meanwhile: a key past it is one being added, unknown here)
        stamps = np.full(keys.shape, NO_STAMP, dtype=np.int64)
        known = keys < held.shape[0]
        stamps[known] = held[keys[known]]
        return stamps

    def _in_span(self, keys: np.ndarray, within: Span) -> np.ndarray:
        """Which of these keys' vectors may be of `within` (stamped in it, or of unknown time)."""
        stamps = self._stamps_of(keys)
        inside: np.ndarray = (stamps == NO_STAMP) | ((stamps >= within[0]) & (stamps <= within[1]))
        return inside

    def _read_in_span(self, keys: np.ndarray, within: Span) -> np.ndarray:
        """Which of these keys' vectors an exact pass over `within` reads: those stamped in it,
        and those of unknown time unless they are more than UNKNOWN_EXACT_MAX (a segment saved
        before per-key stamps has every key unknown, and is not read whole: its unknown ones
        stand in the answer as the graph gave them)."""
        stamps = self._stamps_of(keys)
        unknown = stamps == NO_STAMP
        inside: np.ndarray = ~unknown & (stamps >= within[0]) & (stamps <= within[1])
        if int(unknown.sum()) <= UNKNOWN_EXACT_MAX:
            inside |= unknown
        return inside

    def _span_hits(self, segment: _Segment, end: int, queries: np.ndarray, kept: dict[int, tuple[np.ndarray, np.ndarray]], k: int,
                   min_score: float | None, within: Span) -> dict[int, tuple[np.ndarray, np.ndarray]]:
        """Each of these rows' `k` best of the segment's vectors of `within`, exactly: for the rows
        whose graph answer was full and lost places to other times' copies (a text posted hundreds
        of times before crowds its copies of the window out of the `k` nearest). `kept`: each
        row's answer kept to the span; its vectors of unknown time that the exact pass does not
        read (`_read_in_span`: when there are many) stay in the answer as the graph gave them."""
        keys = np.arange(segment.first_key, end, dtype=np.int64)
        keys = keys[self._read_in_span(keys, within)]  # (vectorised; then the few of the span checked for removal)
        keys = keys[np.fromiter((self._ids[key] is not None for key in keys.tolist()), dtype=bool, count=keys.size)]
        vectors = np.asarray(segment.graph.get(keys.astype(np.uint64), dtype=np.float32), dtype=np.float32).reshape(keys.size, self.dim) \
            if keys.size else np.zeros((0, self.dim), dtype=np.float32)
        rows = list(kept)
        scores = queries[rows] @ vectors.T
        out: dict[int, tuple[np.ndarray, np.ndarray]] = {}
        for n, row in enumerate(rows):
            row_keys = kept[row][0].astype(np.int64)  # (kept: in the span or of unknown time)
            unread = ~np.isin(row_keys, keys)  # of unknown time, not read by the exact pass: as the graph gave them
            all_keys = np.concatenate([keys, row_keys[unread]])
            all_scores = np.concatenate([scores[n].astype(np.float64), kept[row][1][unread]])
            order = np.argsort(-all_scores, kind="stable")[:k]
            if min_score is not None:
                order = order[all_scores[order] >= min_score]
            out[row] = (all_keys[order], all_scores[order])
        return out

    def _reranked_in_span(self, queries: np.ndarray, answers: list[list[tuple[str, float]]], k: int, min_score: float | None,
                          within: Span) -> list[list[tuple[str, float]]]:
        """A quantised index's re-ranked answers kept to `within`; a row whose answer was full and
        lost places to other times is answered again exactly over every vector of the span (the
        floats from `rerank`), as `_span_hits` does for a segment."""
        out: list[list[tuple[str, float]]] = []
        span_ids: list[str] | None = None
        span_rows: np.ndarray | None = None
        for row, hits in enumerate(answers):
            keys = np.asarray([self._key.get(i, -1) for i, _ in hits], dtype=np.int64)
            keep = self._in_span(keys, within) | (keys < 0)
            kept = [hit for hit, inside in zip(hits, keep.tolist(), strict=True) if inside]
            if len(hits) == k and len(kept) < len(hits):  # hits of other times took places
                if span_ids is None:
                    with self._lock:
                        count = len(self._ids)
                        candidates = np.flatnonzero(self._read_in_span(np.arange(count, dtype=np.int64), within))
                        span_ids = [item for key in candidates.tolist() if (item := self._ids[key]) is not None]
                    span_rows = np.asarray(self.rerank(span_ids), dtype=np.float32).reshape(len(span_ids), self.dim) if span_ids and self.rerank \
                        else np.zeros((0, self.dim), dtype=np.float32)
                assert span_rows is not None
                scores = span_rows @ queries[row]
                exact = [(span_ids[j], float(scores[j])) for j in np.argsort(-scores, kind="stable")[:k].tolist()]
                read = set(span_ids)
                unread = [hit for hit in kept if hit[0] not in read]  # of unknown time, not read: as the graph gave them
                kept = [hit for hit in sorted(exact + unread, key=lambda hit: -hit[1])[:k] if min_score is None or hit[1] >= min_score]
            out.append(kept)
        return out

    def search(self, query: np.ndarray, k: int, embedder_id: str) -> list[tuple[str, float]]:
        query = np.asarray(query, dtype=np.float32).reshape(-1)
        check_vectors(self, embedder_id, query.shape[0])
        if k <= 0 or not self._key:
            return []
        reranked = self.rerank is not None and self.dtype != "f32"
        wanted = max(k * RERANK_FACTOR, k + 32) if reranked else k
        out: list[tuple[str, float]] = []
        for segment, floats in self._exact_views():  # every segment may hold all k best
            if not segment.live:
                continue
            if floats is not None:
                keys, distances = _exact_hits(floats, query, min(wanted, segment.live))
                scores = 1.0 - distances.astype(np.float64)  # usearch's "ip" distance is 1 - inner product
            else:
                [(keys, scores)] = self._graph_hits(segment.graph, query[None, :], min(wanted, segment.live), segment.live < EXACT_BELOW)
            for key, score in zip(keys.tolist(), scores.tolist(), strict=True):
                item = self._ids[key] if 0 <= key < len(self._ids) else None
                if item is not None:
                    out.append((item, score))
        if reranked and out and self.rerank is not None:
            exact = np.asarray(self.rerank([i for i, _ in out]), dtype=np.float32) @ query
            order = np.argsort(-exact, kind="stable")[:k]
            return [(out[j][0], float(exact[j])) for j in order]
        if len(self._segments) > 1:
            out.sort(key=lambda pair: -pair[1])  # stable: one segment's order is kept on ties
        return out[:k]

    def search_many(self, queries: np.ndarray, k: int, embedder_id: str, min_score: float | None = None,
                    within: Span | None = None) -> list[list[tuple[str, float]]]:
        """`search` of each row of `queries` in one call into each segment's graph (the same
        search per row, so the same answers), less the hits scoring under `min_score`,
        filtered before any Python object is made for them. `within`: only hits stamped in
        that span are wanted; the segments whose vectors all carry stamps outside it are not
        searched (their hits are not returned; other hits outside it may be)."""
        return self._search_rows(queries, k, embedder_id, min_score, narrow=False, within=within)

    def search_above(self, queries: np.ndarray, k: int, embedder_id: str, min_score: float,
                     within: Span | None = None, held: Sequence[str] | None = None) -> list[list[tuple[str, float]]]:
        """Each row's hits scoring at least `min_score` (at most `k`, best first): a threshold
        search, for when most rows have far fewer than `k` such hits (a post's near-copies).
        `search_many(queries, k, embedder_id, min_score)`, except that each graph is asked
        first for the NARROW_K nearest at expansion NARROW_EF (or its own, when lower), and for
        `k` (at the index's expansion, as `search_many`) only by the rows whose NARROW_K all
        reach `min_score`: the graph may miss a hit of a narrow row that the wide search finds
        (the bench's tweets at 0.92: 6 in 10,000). The exact scans (segments below
        EXACT_BELOW) answer as `search_many`; `within` as there.

        `held`: each row's id, when the row is the vector the index holds under it (a batch
        searched right after it was added). A narrow search that does not find the row itself
        has lost its way (a low expansion can stall outside a dense cluster of near-copies and
        find none of them: docs/performance.md §5, "Ninth round"), so that row asks the wide
        search too."""
        return self._search_rows(queries, k, embedder_id, min_score, narrow=True, within=within, held=held)

    def _graph_hits(self, graph: Any, queries: np.ndarray, count: int, exact: bool, expansion: int | None = None) -> list[tuple[np.ndarray, np.ndarray]]:
        """Each query's keys and scores (1 - float distance), nearest first, from one search of
        `graph` for `count` at `expansion` (the index's own when None). Every graph search goes
        through here: the expansion is set on the graph, so the search holds the lock."""
        wanted = int(self.params["expansion_search"]) if expansion is None else expansion
        with self._search_lock:
            if graph.expansion_search != wanted:
                graph.expansion_search = wanted
            found = graph.search(queries, count, exact=exact, threads=1)
        keys = np.asarray(found.keys).reshape(len(queries), -1)
        # past each row's count the distances are memory usearch never wrote: a signalling NaN
        # there set the cast's "invalid value" warning (seen once in tests/test_vector_spans.py)
        with np.errstate(invalid="ignore"):
            scores = 1.0 - np.asarray(found.distances).reshape(len(queries), -1).astype(np.float64)
        counts = np.asarray(found.counts).reshape(-1).tolist() if hasattr(found, "counts") else [keys.shape[1]]  # one row: usearch answers a Matches
        return [(keys[row, :n], scores[row, :n]) for row, n in enumerate(counts)]

    def _search_rows(self, queries: np.ndarray, k: int, embedder_id: str, min_score: float | None, narrow: bool,
                     within: Span | None = None, held: Sequence[str] | None = None) -> list[list[tuple[str, float]]]:
        queries = np.asarray(queries, dtype=np.float32)
        queries = np.ascontiguousarray(queries.reshape(len(queries), -1)) if len(queries) else queries.reshape(0, self.dim)
        check_vectors(self, embedder_id, queries.shape[1])
        if k <= 0 or not self._key or not len(queries):
            return [[] for _ in range(len(queries))]
        if self.rerank is not None and self.dtype != "f32":  # re-ranked per query, as `search` does
            answers = [[(i, s) for i, s in self.search(q, k, embedder_id) if min_score is None or s >= min_score] for q in queries]
            return answers if within is None else self._reranked_in_span(queries, answers, k, min_score, within)
        out: list[list[tuple[str, float]]] = [[] for _ in range(len(queries))]
        if held is not None and len(held) != len(queries):
            raise ValueError(f"held names {len(held)} ids for {len(queries)} queries: one per row")
        own = None if held is None else np.asarray([self._key.get(item, -1) for item in held], dtype=np.int64)  # -1: not held
        ends = {id(s): e for s, e in zip(self._segments, [s.first_key for s in self._segments[1:]] + [len(self._ids)], strict=True)}
        for segment, floats in self._exact_views(within):  # every segment may hold all k best (as `search`)
            if not segment.live:
                continue
            # a segment that holds other times than the span too: its answers are kept to the span,
            # and a row whose answer was all of other times is answered again over the span's keys
            straddles = within is not None and not (segment.timed and segment.span is not None
                                                    and within[0] <= segment.span[0] and segment.span[1] <= within[1])
            if floats is not None:  # as `search`, query by query
                ids = self._ids  # the floats' keys are all in it (ids are never dropped, only set to None)
                for row in range(len(queries)):
                    keys_of, distances_of = _exact_hits(floats, queries[row], min(k, segment.live), min_score)
                    scores_of = 1.0 - distances_of.astype(np.float64)
                    if straddles and within is not None:
                        saturated = keys_of.size == min(k, segment.live)
                        keep = self._in_span(keys_of, within)
                        dropped = not keep.all()
                        keys_of, scores_of = keys_of[keep], scores_of[keep]
                        if saturated and dropped:  # hits of other times took places
                            keys_of, scores_of = self._span_hits(segment, ends[id(segment)], queries, {row: (keys_of, scores_of)}, k, min_score, within)[row]
                    out[row].extend((item, score) for key, score in zip(keys_of.tolist(), scores_of.tolist(), strict=True) if (item := ids[key]) is not None)
                continue
            count, exact = min(k, segment.live), segment.live < EXACT_BELOW
            if narrow and min_score is not None and not exact and count > NARROW_K:
                per_row = self._graph_hits(segment.graph, queries, NARROW_K, False, min(NARROW_EF, int(self.params["expansion_search"])))
                # all NARROW_K reach the score: there may be more; or a row this graph holds did not find itself
                lost: set[int] = set()
                if own is not None:
                    mine = np.flatnonzero(own >= 0)
                    in_graph = mine[np.asarray(segment.graph.contains(own[mine].astype(np.uint64)), dtype=bool).reshape(-1)] if len(mine) else mine
                    lost = {row for row in in_graph.tolist() if not (per_row[row][0] == own[row]).any()}
                wide = [row for row, (_, found_scores) in enumerate(per_row)
                        if (len(found_scores) == NARROW_K and found_scores[-1] >= min_score) or row in lost]
                if wide:
                    for row, found in zip(wide, self._graph_hits(segment.graph, queries[wide], count, False), strict=True):
                        per_row[row] = found
            else:
                per_row = self._graph_hits(segment.graph, queries, count, exact)
            if straddles and within is not None:
                crowded = []
                for row, (keys, row_scores) in enumerate(per_row):
                    full = len(keys) == count or (narrow and len(keys) == NARROW_K)
                    reaching = not len(row_scores) or min_score is None or row_scores[-1] >= min_score
                    keep = self._in_span(keys.astype(np.int64), within)
                    per_row[row] = (keys[keep], row_scores[keep])
                    if full and reaching and int(keep.sum()) < min(k, len(keys)):  # hits of other times took places
                        crowded.append(row)
                if crowded:
                    for row, answer in self._span_hits(segment, ends[id(segment)], queries, {row: per_row[row] for row in crowded}, k, min_score,
                                                       within).items():
                        per_row[row] = answer
            for row, (keys, row_scores) in enumerate(per_row):
                keep = np.arange(len(keys)) if min_score is None else np.flatnonzero(row_scores >= min_score)
                for key, score in zip(keys[keep].tolist(), row_scores[keep].tolist(), strict=True):
                    item = self._ids[key] if 0 <= key < len(self._ids) else None
                    if item is not None:
                        out[row].append((item, score))
        if len(self._segments) > 1:
            for hits in out:
                hits.sort(key=lambda pair: -pair[1])  # stable: one segment's order is kept on ties
        return [hits[:k] for hits in out]

    def _exact_views(self, within: Span | None = None) -> list[tuple[_Segment, tuple[np.ndarray, np.ndarray, np.ndarray | None] | None]]:
        """The segments (those that may hold a vector stamped `within`), each with the
        `_Floats` view its exact search reads (f32, below EXACT_BELOW) or None (usearch
        answers), taken together under the lock. A segment below EXACT_BELOW without its
        floats (loaded from a file, or shrunk below it by replacements) gets them from its
        graph, once."""
        with self._lock:
            if self.dtype != "f32":
                return [(segment, None) for segment in self._segments if segment.may_hold(within)]
            views: list[tuple[_Segment, tuple[np.ndarray, np.ndarray, np.ndarray | None] | None]] = []
            for position, segment in enumerate(self._segments):
                if not segment.may_hold(within):
                    continue
                if segment.live >= EXACT_BELOW or not segment.live:
                    views.append((segment, None))
                    continue
                if segment.floats is None:
                    end = self._segments[position + 1].first_key if position + 1 < len(self._segments) else len(self._ids)
                    keys = np.asarray([key for key in range(segment.first_key, end) if self._ids[key] is not None], dtype=np.int64)
                    vectors = np.stack(segment.graph.get(keys.astype(np.uint64), dtype=np.float32))
                    segment.floats = _Floats(keys, vectors.reshape(len(keys), self.dim))
                views.append((segment, segment.floats.view()))
            return views

    def __len__(self) -> int:
        return len(self._key)

    # -- persistence and incremental updates ----------------------------------------
    @property
    def text_shas(self) -> dict[str, str]:
        """Per id, the hash of the text its vector was made from ('' when not given)."""
        return self._sha

    def stale_ids(self, shas: Mapping[str, str]) -> list[str]:
        """Ids whose stored text hash differs from the one their vector here was made from (or absent)."""
        return sorted(i for i, sha in shas.items() if self._sha.get(i) != sha)

    def save(self, path: str | Path) -> None:
        """Write each segment changed since the last save to a new `<path>.<generation>.usearch`,
        then `<path>.json` naming every segment's file (the commit point, replaced atomically),
        then remove the files it no longer names. A crash before the `.json` is replaced leaves
        the previous set; an orphaned new file is removed by the next save."""
        stem = Path(path)
        stem.parent.mkdir(parents=True, exist_ok=True)
        # workers sharing a data_dir save the same index: one at a time, or one's clean-up removes
        # the other's files before its `.json` names them (and both write the one `.json.tmp`)
        with self._lock, _saving(stem):
            if self.read_only:
                raise ValueError("a read-only view of a saved index is not saved again")
            names: list[str] = []
            ends = [s.first_key for s in self._segments[1:]] + [len(self._ids)] if self._segments else []
            for segment, end in zip(self._segments, ends, strict=True):
                name = segment.saved_as
                if name is None or not stem.with_name(name).exists() or not stem.with_name(_ids_file(name)).exists():
                    name = f"{stem.name}.{uuid.uuid4().hex[:12]}.usearch"
                    segment.graph.save(str(stem.with_name(name)))
                    _fsync(stem.with_name(name))
                    ids = self._ids[segment.first_key : end]
                    # an id's hash goes with the segment of its current key (a replaced vector's new key is in the newest)
                    shas = {i: self._sha[i] for i in ids if i is not None and i in self._sha}
                    stamps = [None if t == NO_STAMP else t for t in self._stamps[segment.first_key : end].tolist()]
                    stem.with_name(_ids_file(name)).write_bytes(orjson.dumps({"first_key": segment.first_key, "ids": ids, "shas": shas, "stamps": stamps}))
                    _fsync(stem.with_name(_ids_file(name)))
                names.append(name)
            meta = {
                "version": HNSW_INDEX_VERSION, "embedder_id": self.embedder_id, "dim": self.dim, "dtype": self.dtype,
                "params": self.params, "segment_size": self.segment_size,
                "segments": [{"data": name, "ids": _ids_file(name), "first_key": s.first_key,
                              **({"span": list(s.span) if s.span else None} if s.timed else {})}
                             for name, s in zip(names, self._segments, strict=True)],
                "count": len(self._ids),
            }
            tmp_meta = stem.with_name(stem.name + ".json.tmp")
            tmp_meta.write_text(json.dumps(meta), encoding="utf-8")
            _fsync(tmp_meta)
            os.replace(tmp_meta, stem.with_name(stem.name + ".json"))
            _fsync(stem.parent)
            for segment, name in zip(self._segments, names, strict=True):
                segment.saved_as = name  # only once committed
            kept = {*names, *(_ids_file(n) for n in names)}
            for pattern in (f"{stem.name}.*usearch", f"{stem.name}.*.ids.json"):
                for old in stem.parent.glob(pattern):
                    if old.name not in kept and _is_generation(old.name, stem.name):
                        old.unlink(missing_ok=True)

    @staticmethod
    def _saved_segments(meta: Mapping[str, Any], stem: Path) -> list[tuple[Path, int]]:
        if "segments" in meta:
            return [(stem.with_name(str(s["data"])), int(s["first_key"])) for s in meta["segments"]]
        return [(stem.with_name(str(meta.get("data") or stem.name + ".usearch")), 0)]  # usearch-hnsw-1: one graph

    @staticmethod
    def _saved_id_files(meta: Mapping[str, Any], stem: Path) -> list[Path]:
        """Each segment's ids file (version 3; before it the `.json` held every id)."""
        return [stem.with_name(str(s["ids"])) for s in meta.get("segments", []) if "ids" in s]

    @staticmethod
    def _saved_spans(meta: Mapping[str, Any], count: int) -> list[tuple[bool, Span | None]]:
        """Each saved segment's (timed, span): one saved without "span" (a vector came without a
        stamp, or the file is from before spans) is untimed: searched whatever the span."""
        out: list[tuple[bool, Span | None]] = [(False, None)] * count
        for n, saved in enumerate(meta.get("segments", [])[:count]):
            if "span" in saved:
                span = saved["span"]
                out[n] = (True, (int(span[0]), int(span[1])) if span else None)
        return out

    @classmethod
    def saved_files(cls, path: str | Path) -> list[Path]:
        """The `.usearch` files (one per segment) the index saved at `path` reads ([] when
        nothing complete is saved)."""
        stem = Path(path)
        meta_path = stem.with_name(stem.name + ".json")
        if not meta_path.exists():
            return []
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
        files = [p for p, _ in cls._saved_segments(meta, stem)]
        return files if all(p.exists() for p in [*files, *cls._saved_id_files(meta, stem)]) else []

    @classmethod
    def open(cls, path: str | Path, embedder_id: str, dim: int, *, view: bool = False, **options: Any) -> HnswIndex:
        """The index saved at `path`, or a new empty one when there is none. `view`: memory-map
        the saved files read-only instead of loading them (an empty, writable index when none)."""
        stem = Path(path)
        meta_path = stem.with_name(stem.name + ".json")
        if not meta_path.exists():
            return cls(embedder_id, dim, **options)
        for _ in range(2):  # a save in another process may replace the set between the two reads: read again
            meta = json.loads(meta_path.read_text(encoding="utf-8"))
            saved = cls._saved_segments(meta, stem)
            if all(p.exists() for p in [*(p for p, _ in saved), *cls._saved_id_files(meta, stem)]):
                break
        if meta.get("embedder_id") != embedder_id or meta.get("dim") != dim:
            raise EmbedderMismatch(
                f"{meta_path}: index holds vectors of '{meta.get('embedder_id')}' (dimension {meta.get('dim')}),"
                f" asked for '{embedder_id}' (dimension {dim})"
            )
        id_files = cls._saved_id_files(meta, stem)
        if meta.get("version") not in READABLE_VERSIONS or not all(p.exists() for p in [*(p for p, _ in saved), *id_files]):
            return cls(embedder_id, dim, **options)  # another layout, or its data lost: rebuilt from storage
        # how the graphs were built comes from the file; search-time options (expansion_search, rerank) from the caller
        built = {"dtype": meta.get("dtype", "f32"), **{k: v for k, v in meta.get("params", {}).items() if k != "expansion_search"}}
        if "segment_size" in meta:  # a graph of the layout before segments: sealed when above the caller's size
            built["segment_size"] = int(meta["segment_size"])
        index = cls(embedder_id, dim, **{**options, **built})
        if meta.get("version") == HNSW_INDEX_VERSION:  # each segment's keys, in key order
            if len(id_files) != len(saved):
                return cls(embedder_id, dim, **options)  # a segment without its ids: rebuilt from storage
            for path in id_files:
                part = orjson.loads(path.read_bytes())
                if int(part["first_key"]) != len(index._ids):
                    return cls(embedder_id, dim, **options)  # not the set the .json named: rebuilt from storage
                index._push_stamps(part.get("stamps") or [None] * len(part["ids"]))  # (a file from before per-key stamps: unknown)
                index._ids.extend(part["ids"])
                index._sha.update(part["shas"])
            if len(index._ids) != int(meta.get("count", len(index._ids))):
                return cls(embedder_id, dim, **options)
        else:
            index._push_stamps([None] * len(meta["ids"]))
            index._ids = list(meta["ids"])
            index._sha = dict(meta.get("shas", {}))
        index._key = {item: key for key, item in enumerate(index._ids) if item is not None}
        first_keys = np.asarray([first for _, first in saved], dtype=np.int64)
        live = np.bincount(np.searchsorted(first_keys, np.fromiter(index._key.values(), dtype=np.int64, count=len(index._key)), side="right") - 1,
                           minlength=len(saved)) if index._key else np.zeros(len(saved), dtype=np.int64)
        for (data_path, first), count, (timed, span) in zip(saved, live.tolist(), cls._saved_spans(meta, len(saved)), strict=True):
            graph = index._graph()
            if view:
                graph.view(str(data_path))
            else:
                graph.load(str(data_path))
            index._segments.append(_Segment(graph, first, int(count), data_path.name, span=span, timed=timed))
        index.read_only = view
        return index


@contextlib.contextmanager
def _saving(stem: Path) -> Iterator[None]:
    """Hold `<stem>.lock` (an advisory lock of the whole file) while a save writes and cleans up:
    another process saving the same index waits. Where there is no `fcntl`: nothing is held."""
    try:
        import fcntl
    except ImportError:  # not POSIX
        yield
        return
    with open(stem.with_name(stem.name + ".lock"), "a+b") as handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def _ids_file(data: str) -> str:
    """The ids file saved beside a segment's `.usearch` file."""
    return data.removesuffix(".usearch") + ".ids.json"


def _is_generation(name: str, stem: str) -> bool:
    """`<stem>.<12 hex>.usearch` or `.ids.json`, `<stem>.usearch` (the layout before generations) or a left-over `.tmp`."""
    middle = name[len(stem) + 1 :].removesuffix(".ids.json").removesuffix(".usearch").removesuffix(".tmp")
    return middle in ("", "usearch") or (len(middle) == 12 and all(c in "0123456789abcdef" for c in middle))


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
