"""The vector index contract. An index belongs to one embedder: it refuses
vectors or queries from another (STYLE.md #10)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol, runtime_checkable

import numpy as np

from factbridge.errors import EmbedderMismatch

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
STAMP_UNIT = timedelta(microseconds=1)  # what one step of a `time_stamp` is: a duration // STAMP_UNIT is in stamps

Span = tuple[int, int]  # the first and last `time_stamp` an index is asked for (both included)


def time_stamp(t: datetime | None) -> int | None:
    """A time as whole microseconds since the epoch (a naive time is UTC): compared and
    subtracted exactly as the datetimes, without making one per comparison. An index's
    items carry these (`HnswIndex.add(stamps=...)`), and a search's `within` is two of them."""
    return None if t is None else ((t if t.tzinfo else t.replace(tzinfo=UTC)) - _EPOCH) // STAMP_UNIT


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


def search_batch(index: VectorIndex, queries: np.ndarray, k: int, embedder_id: str, min_score: float | None = None,
                 within: Span | None = None) -> list[list[tuple[str, float]]]:
    """Per row of `queries`, what `index.search(row, k, embedder_id)` answers, less the hits
    scoring under `min_score`: in one call when the index searches a batch at once (it has
    `search_many`, same arguments), else one search per row.

    `within`: only hits stamped (`time_stamp`) in that span are wanted, and the caller keeps
    only those. An index whose items carry stamps may then leave out the parts of it that
    hold none (the HNSW index's segments): a post index's search costs by the posts of the
    span, not of the whole history. Hits outside it may still come back; without stamps,
    the whole index is searched."""
    many = getattr(index, "search_many", None)
    if callable(many):
        found: list[list[tuple[str, float]]] = many(queries, k, embedder_id, min_score, **_given(within=within))
        return found
    return [[(i, s) for i, s in index.search(q, k, embedder_id) if min_score is None or s >= min_score] for q in queries]


def search_above(index: VectorIndex, queries: np.ndarray, k: int, embedder_id: str, min_score: float,
                 within: Span | None = None, held: Sequence[str] | None = None) -> list[list[tuple[str, float]]]:
    """Per row of `queries`, its hits scoring at least `min_score` (at most `k`, best first):
    `search_batch(index, queries, k, embedder_id, min_score, within)`, answered the index's
    cheaper way for a threshold where it has one (`search_above`, same arguments: the HNSW
    index asks its graphs for a few neighbours first, and for `k` only where all of those
    reach the score). `held`: each row's id when the row is the vector the index holds
    under it (the HNSW index then also asks the wide search for a row whose first search
    did not find itself)."""
    above = getattr(index, "search_above", None)
    if callable(above):
        found: list[list[tuple[str, float]]] = above(queries, k, embedder_id, min_score, **_given(within=within, held=held))
        return found
    return search_batch(index, queries, k, embedder_id, min_score, within)


def _given(**options: Any) -> dict[str, Any]:
    """The options given (not None), as keywords: an index whose searches take no span (`within`)
    or no held ids (`held`) is asked without them, and searched whole."""
    return {name: value for name, value in options.items() if value is not None}
