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
