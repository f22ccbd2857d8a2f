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

Files (`path` is a stem): `<path>.usearch` (the graph and vectors) and
`<path>.json` (embedder, dimension, ids, text hashes, version). Opening a saved
index made by another embedder or of another dimension raises EmbedderMismatch.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from factbridge.backends.vectors.base import check_vectors
from factbridge.errors import EmbedderMismatch

HNSW_INDEX_VERSION = "usearch-hnsw-1"
# Below this many vectors a brute-force scan costs well under a millisecond and is exact, where
# the graph's answer is approximate (a small graph can miss a neighbour now and then).
EXACT_BELOW = 4096


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
    ) -> None:
        self.embedder_id = embedder_id
        self.dim = dim
        self.dtype = dtype
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
        found = self._index.search(query, min(k, len(self._key)), exact=len(self._key) < EXACT_BELOW)
        out = []
        for key, distance in zip(np.asarray(found.keys).tolist(), np.asarray(found.distances).tolist(), strict=True):
            item = self._ids[key] if 0 <= key < len(self._ids) else None
            if item is not None:
                out.append((item, 1.0 - float(distance)))  # usearch's "ip" distance is 1 - inner product
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
        """Write `<path>.usearch` and `<path>.json` (each replaced atomically)."""
        stem = Path(path)
        stem.parent.mkdir(parents=True, exist_ok=True)
        meta = {
            "version": HNSW_INDEX_VERSION, "embedder_id": self.embedder_id, "dim": self.dim, "dtype": self.dtype,
            "params": self.params, "ids": self._ids, "shas": self._sha,
        }
        with self._lock:
            tmp = stem.with_name(stem.name + ".usearch.tmp")
            self._index.save(str(tmp))
            os.replace(tmp, stem.with_name(stem.name + ".usearch"))
            tmp_meta = stem.with_name(stem.name + ".json.tmp")
            tmp_meta.write_text(json.dumps(meta), encoding="utf-8")
            os.replace(tmp_meta, stem.with_name(stem.name + ".json"))

    @classmethod
    def open(cls, path: str | Path, embedder_id: str, dim: int, **options: Any) -> HnswIndex:
        """The index saved at `path`, or a new empty one when there is none."""
        stem = Path(path)
        meta_path = stem.with_name(stem.name + ".json")
        data_path = stem.with_name(stem.name + ".usearch")
        if not meta_path.exists() or not data_path.exists():
            return cls(embedder_id, dim, **options)
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
        if meta.get("embedder_id") != embedder_id or meta.get("dim") != dim:
            raise EmbedderMismatch(
                f"{meta_path}: index holds vectors of '{meta.get('embedder_id')}' (dimension {meta.get('dim')}),"
                f" asked for '{embedder_id}' (dimension {dim})"
            )
        if meta.get("version") != HNSW_INDEX_VERSION:
            return cls(embedder_id, dim, **options)  # another layout: rebuilt from storage
        index = cls(embedder_id, dim, **{"dtype": meta.get("dtype", "f32"), **meta.get("params", {}), **options})
        index._index.load(str(data_path))
        index._ids = list(meta["ids"])
        index._key = {item: key for key, item in enumerate(index._ids) if item is not None}
        index._sha = dict(meta.get("shas", {}))
        return index
