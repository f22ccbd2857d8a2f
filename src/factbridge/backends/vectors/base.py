"""The vector index contract. An index belongs to one embedder: it refuses
vectors or queries from another (STYLE.md #10)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable

import numpy as np

from factbridge.errors import EmbedderMismatch


def check_vectors(index: VectorIndex, embedder_id: str, dim: int) -> None:
    """Refuse vectors or queries from another embedder or of another width."""
    if embedder_id != index.embedder_id:
        raise EmbedderMismatch(f"index holds vectors of '{index.embedder_id}', refused vectors of '{embedder_id}'")
    if dim != index.dim:
        raise EmbedderMismatch(f"index dimension is {index.dim}, got {dim}")


@runtime_checkable
class VectorIndex(Protocol):
    embedder_id: str
    dim: int

    def add(self, ids: Sequence[str], vectors: np.ndarray, embedder_id: str) -> None: ...
    def search(self, query: np.ndarray, k: int, embedder_id: str) -> list[tuple[str, float]]: ...
    def __len__(self) -> int: ...


def search_batch(index: VectorIndex, queries: np.ndarray, k: int, embedder_id: str, min_score: float | None = None) -> list[list[tuple[str, float]]]:
    """Per row of `queries`, what `index.search(row, k, embedder_id)` answers, less the hits
    scoring under `min_score`: in one call when the index searches a batch at once (it has
    `search_many`, same arguments), else one search per row."""
    many = getattr(index, "search_many", None)
    if callable(many):
        found: list[list[tuple[str, float]]] = many(queries, k, embedder_id, min_score)
        return found
    return [[(i, s) for i, s in index.search(q, k, embedder_id) if min_score is None or s >= min_score] for q in queries]


def search_above(index: VectorIndex, queries: np.ndarray, k: int, embedder_id: str, min_score: float) -> list[list[tuple[str, float]]]:
    """Per row of `queries`, its hits scoring at least `min_score` (at most `k`, best first):
    `search_batch(index, queries, k, embedder_id, min_score)`, answered the index's cheaper way
    for a threshold where it has one (`search_above`, same arguments: the HNSW index asks its
    graphs for a few neighbours first, and for `k` only where all of those reach the score)."""
    above = getattr(index, "search_above", None)
    if callable(above):
        found: list[list[tuple[str, float]]] = above(queries, k, embedder_id, min_score)
        return found
    return search_batch(index, queries, k, embedder_id, min_score)
