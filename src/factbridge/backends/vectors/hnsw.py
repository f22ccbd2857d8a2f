"""Approximate nearest-neighbour search (HNSW, from `usearch`), persisted beside the database.

The embedded default for what grows without bound (millions of posts; a library of
millions of fact-checks). Why usearch (docs/performance.md has the measurements):
prebuilt wheels (hnswlib builds from source), keyed vectors that can be removed and
replaced (faiss' HNSW cannot remove), save / load of one file, and the best recall of
the three at 200k vectors (0.997 at ef=128).

Item ids are strings; usearch keys are integers: the index keeps the id of each key
and, per id, the hash of the text its vector was made from, so a process that opens
the saved index adds only what changed since it was saved (`stale_ids`). A vector
added again under the same id replaces the old one. Scores are inner products
(vectors are L2-normalised: cosine), best first, like every VectorIndex.

Files (`path` is a stem): `<path>.<generation>.usearch` (the graph and vectors) and
`<path>.json` (embedder, dimension, ids, text hashes, version, and the name of its
`.usearch` file). A save writes a new generation's file, then replaces the `.json`
atomically (the commit point), then removes older generations: a crash at any moment
leaves the last complete pair readable. Opening a saved index made by another embedder
or of another dimension raises EmbedderMismatch. `open(..., view=True)` memory-maps
the saved file instead of reading it (a read-only index whose pages the OS shares and
evicts: what a process that only searches needs).

Memory: `dtype="f16"` (768 bytes per 384-d vector) or `"i8"` (384 bytes) instead of
`"f32"` (1,536 bytes). Quantised distances move scores by ~1e-3 (f16) or ~1e-2 (i8),
so with `rerank` (a function giving the float vectors of a few ids, e.g. from storage)
the index asks the graph for a few times `k` candidates and orders them by their exact
inner products: the scores returned are the float ones, and recall is the graph's.
"""

from __future__ import annotations

import json
import os
import threading
import uuid
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from factbridge.backends.vectors.base import check_vectors
from factbridge.errors import EmbedderMismatch

HNSW_INDEX_VERSION = "usearch-hnsw-1"
# Below this many vectors a brute-force scan costs well under a millisecond and is exact, where
# the graph's answer is approximate (a small graph can miss a neighbour now and then).
EXACT_BELOW = 4096
DTYPES = ("f32", "f16", "i8")
RERANK_FACTOR = 4  # with a quantised index and `rerank`: candidates asked of the graph per result

Rerank = Callable[[Sequence[str]], np.ndarray]  # ids -> their float vectors, one row each, in order


def _usearch() -> Any:
    from usearch.index import Index  # a core dependency, imported when an index is made

    return Index


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
    ) -> None:
        if dtype not in DTYPES:
            raise ValueError(f"HnswIndex dtype must be one of {', '.join(DTYPES)}, got '{dtype}'")
        self.embedder_id = embedder_id
        self.dim = dim
        self.dtype = dtype
        self.rerank = rerank
        self.read_only = False
        self.threads = threads or (os.cpu_count() or 1)
        self.params = {"connectivity": connectivity, "expansion_add": expansion_add, "expansion_search": expansion_search}
        self._index = _usearch()(ndim=dim, metric="ip", dtype=dtype, **self.params)
        self._ids: list[str | None] = []  # key -> id (None: removed)
        self._key: dict[str, int] = {}
        self._sha: dict[str, str] = {}
        self._lock = threading.Lock()

    # -- the VectorIndex contract ---------------------------------------------------
    def add(self, ids: Sequence[str], vectors: np.ndarray, embedder_id: str, shas: Sequence[str] | None = None) -> None:
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
            old = [self._key[ids[n]] for n in rows if ids[n] in self._key]
            if old:
                self._index.remove(np.asarray(old, dtype=np.uint64))
                for key in old:
                    self._ids[key] = None
            keys = np.arange(len(self._ids), len(self._ids) + len(rows), dtype=np.uint64)
            self._index.add(keys, vectors[rows], threads=self.threads)
            for key, n in zip(keys.tolist(), rows, strict=True):
                self._ids.append(ids[n])
                self._key[ids[n]] = key
                if shas is not None:
                    self._sha[ids[n]] = shas[n]

    def search(self, query: np.ndarray, k: int, embedder_id: str) -> list[tuple[str, float]]:
        query = np.asarray(query, dtype=np.float32).reshape(-1)
        check_vectors(self, embedder_id, query.shape[0])
        if k <= 0 or not self._key:
            return []
        reranked = self.rerank is not None and self.dtype != "f32"
        wanted = min(max(k * RERANK_FACTOR, k + 32) if reranked else k, len(self._key))
        found = self._index.search(query, wanted, exact=len(self._key) < EXACT_BELOW)
        out = []
        for key, distance in zip(np.asarray(found.keys).tolist(), np.asarray(found.distances).tolist(), strict=True):
            item = self._ids[key] if 0 <= key < len(self._ids) else None
            if item is not None:
                out.append((item, 1.0 - float(distance)))  # usearch's "ip" distance is 1 - inner product
        if reranked and out and self.rerank is not None:
            exact = np.asarray(self.rerank([i for i, _ in out]), dtype=np.float32) @ query
            order = np.argsort(-exact, kind="stable")[:k]
            return [(out[j][0], float(exact[j])) for j in order]
        return out[:k]

    def search_many(self, queries: np.ndarray, k: int, embedder_id: str, min_score: float | None = None) -> list[list[tuple[str, float]]]:
        """`search` of each row of `queries` in one call into the graph (the same search per
        row, so the same answers), less the hits scoring under `min_score`, filtered before
        any Python object is made for them."""
        queries = np.asarray(queries, dtype=np.float32)
        queries = np.ascontiguousarray(queries.reshape(len(queries), -1)) if len(queries) else queries.reshape(0, self.dim)
        check_vectors(self, embedder_id, queries.shape[1])
        if k <= 0 or not self._key or not len(queries):
            return [[] for _ in range(len(queries))]
        if self.rerank is not None and self.dtype != "f32":  # re-ranked per query, as `search` does
            return [[(i, s) for i, s in self.search(q, k, embedder_id) if min_score is None or s >= min_score] for q in queries]
        wanted = min(k, len(self._key))
        found = self._index.search(queries, wanted, exact=len(self._key) < EXACT_BELOW)
        keys = np.asarray(found.keys).reshape(len(queries), -1)
        scores = 1.0 - np.asarray(found.distances).reshape(len(queries), -1).astype(np.float64)  # as `search`: 1 - float(distance)
        counts = np.asarray(found.counts).reshape(-1) if hasattr(found, "counts") else np.asarray([len(keys[0])])  # one row: usearch answers a Matches
        out: list[list[tuple[str, float]]] = []
        for row in range(len(queries)):
            n = int(counts[row])
            keep = np.arange(n) if min_score is None else np.flatnonzero(scores[row, :n] >= min_score)
            hits = []
            for key, score in zip(keys[row, keep].tolist(), scores[row, keep].tolist(), strict=True):
                item = self._ids[key] if 0 <= key < len(self._ids) else None
                if item is not None:
                    hits.append((item, score))
            out.append(hits[:k])
        return out

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
        """Write a new `<path>.<generation>.usearch`, then `<path>.json` naming it (the commit
        point, replaced atomically), then remove older generations. A crash before the
        `.json` is replaced leaves the previous pair; an orphaned new file is removed by
        the next save."""
        stem = Path(path)
        stem.parent.mkdir(parents=True, exist_ok=True)
        data_name = f"{stem.name}.{uuid.uuid4().hex[:12]}.usearch"
        with self._lock:
            if self.read_only:
                raise ValueError("a read-only view of a saved index is not saved again")
            meta = {
                "version": HNSW_INDEX_VERSION, "embedder_id": self.embedder_id, "dim": self.dim, "dtype": self.dtype,
                "params": self.params, "data": data_name, "count": len(self._ids), "ids": self._ids, "shas": self._sha,
            }
            self._index.save(str(stem.with_name(data_name)))
            _fsync(stem.with_name(data_name))
            tmp_meta = stem.with_name(stem.name + ".json.tmp")
            tmp_meta.write_text(json.dumps(meta), encoding="utf-8")
            _fsync(tmp_meta)
            os.replace(tmp_meta, stem.with_name(stem.name + ".json"))
            _fsync(stem.parent)
        for old in stem.parent.glob(f"{stem.name}.*usearch"):
            if old.name != data_name and _is_generation(old.name, stem.name):
                old.unlink(missing_ok=True)

    @staticmethod
    def saved_file(path: str | Path) -> Path | None:
        """The `.usearch` file the index saved at `path` reads (None when nothing complete is saved)."""
        stem = Path(path)
        meta_path = stem.with_name(stem.name + ".json")
        if not meta_path.exists():
            return None
        data = stem.with_name(str(json.loads(meta_path.read_text(encoding="utf-8")).get("data") or stem.name + ".usearch"))
        return data if data.exists() else None

    @classmethod
    def open(cls, path: str | Path, embedder_id: str, dim: int, *, view: bool = False, **options: Any) -> HnswIndex:
        """The index saved at `path`, or a new empty one when there is none. `view`: memory-map
        the saved file read-only instead of loading it (an empty, writable index when none)."""
        stem = Path(path)
        meta_path = stem.with_name(stem.name + ".json")
        if not meta_path.exists():
            return cls(embedder_id, dim, **options)
        for _ in range(2):  # a save in another process may replace the pair between the two reads: read again
            meta = json.loads(meta_path.read_text(encoding="utf-8"))
            data_path = stem.with_name(str(meta.get("data") or stem.name + ".usearch"))
            if data_path.exists():
                break
        if meta.get("embedder_id") != embedder_id or meta.get("dim") != dim:
            raise EmbedderMismatch(
                f"{meta_path}: index holds vectors of '{meta.get('embedder_id')}' (dimension {meta.get('dim')}),"
                f" asked for '{embedder_id}' (dimension {dim})"
            )
        if meta.get("version") != HNSW_INDEX_VERSION or not data_path.exists():
            return cls(embedder_id, dim, **options)  # another layout, or its data lost: rebuilt from storage
        # how the graph was built comes from the file; search-time options (expansion_search, rerank) from the caller
        built = {"dtype": meta.get("dtype", "f32"), **{k: v for k, v in meta.get("params", {}).items() if k != "expansion_search"}}
        index = cls(embedder_id, dim, **{**options, **built})
        if view:
            index._index.view(str(data_path))
            index.read_only = True
        else:
            index._index.load(str(data_path))
        index._ids = list(meta["ids"])
        index._key = {item: key for key, item in enumerate(index._ids) if item is not None}
        index._sha = dict(meta.get("shas", {}))
        return index


def _is_generation(name: str, stem: str) -> bool:
    """`<stem>.<12 hex>.usearch`, `<stem>.usearch` (the layout before generations) or a left-over `.tmp`."""
    middle = name[len(stem) + 1 :].removesuffix(".usearch").removesuffix(".tmp")
    return middle in ("", "usearch") or (len(middle) == 12 and all(c in "0123456789abcdef" for c in middle))


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
