"""Exact inner-product search in NumPy.

For a fact-check library (tens of thousands of claims) exact search costs about
a millisecond and never misses; ANN indexes are for the millions of posts.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from factbridge.backends.vectors.base import check_vectors


class NumpyIndex:
    def __init__(self, embedder_id: str, dim: int) -> None:
        self.embedder_id = embedder_id
        self.dim = dim
        self._ids: list[str] = []
        self._pos: dict[str, int] = {}
        self._matrix = np.zeros((0, dim), dtype=np.float32)

    @classmethod
    def of(cls, embedder_id: str, dim: int, ids: Sequence[str], matrix: np.ndarray) -> NumpyIndex:
        """An index holding `matrix`'s rows under `ids`, in that order (the matrix is taken, not copied)."""
        index = cls(embedder_id, dim)
        if len(ids) != len(matrix) or (len(ids) and matrix.shape[1] != dim):
            raise ValueError(f"{len(ids)} ids for a matrix of shape {matrix.shape} (dim {dim})")
        index._ids = list(ids)
        index._pos = {item_id: n for n, item_id in enumerate(index._ids)}
        if len(index._pos) != len(index._ids):
            raise ValueError("an id given twice")
        index._matrix = np.asarray(matrix, dtype=np.float32) if len(ids) else index._matrix
        return index

    def _check(self, embedder_id: str, dim: int) -> None:
        check_vectors(self, embedder_id, dim)

    def add(self, ids: Sequence[str], vectors: np.ndarray, embedder_id: str) -> None:
        self._check(embedder_id, self.dim)
        if not len(ids):
            return  # NumPy cannot infer the width of an empty reshape
        vectors = np.asarray(vectors, dtype=np.float32).reshape(len(ids), -1)
        self._check(embedder_id, vectors.shape[1])
        fresh_rows: list[np.ndarray] = []
        fresh_ids: list[str] = []
        for item_id, vec in zip(ids, vectors, strict=True):
            if item_id in self._pos:
                self._matrix[self._pos[item_id]] = vec
            else:
                self._pos[item_id] = len(self._ids) + len(fresh_ids)
                fresh_ids.append(item_id)
                fresh_rows.append(vec)
        if fresh_ids:
            self._ids.extend(fresh_ids)
            self._matrix = np.vstack([self._matrix, np.stack(fresh_rows)])

    @property
    def ids(self) -> list[str]:
        return self._ids

    @property
    def matrix(self) -> np.ndarray:
        return self._matrix

    def scores(self, query: np.ndarray, embedder_id: str) -> np.ndarray:
        query = np.asarray(query, dtype=np.float32).reshape(-1)
        self._check(embedder_id, query.shape[0])
        return self._matrix @ query

    def search(self, query: np.ndarray, k: int, embedder_id: str) -> list[tuple[str, float]]:
        if not self._ids:
            return []
        scores = self.scores(query, embedder_id)
        k = min(k, len(self._ids))
        top = np.argpartition(-scores, k - 1)[:k]
        top = top[np.argsort(-scores[top], kind="stable")]
        return [(self._ids[i], float(scores[i])) for i in top]

    def __len__(self) -> int:
        return len(self._ids)
