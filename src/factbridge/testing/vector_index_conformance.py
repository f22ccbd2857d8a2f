"""Checks every VectorIndex passes (NumpyIndex, PgVectorIndex, third-party ones).

A factory is `factory(embedder_id, dim) -> VectorIndex`, a new empty index each call.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from factbridge.backends.vectors.base import VectorIndex, search_above, search_batch
from factbridge.errors import EmbedderMismatch

VectorIndexFactory = Callable[[str, int], VectorIndex]


def _unit_rows(n: int, dim: int, seed: int = 3) -> np.ndarray:
    rows = np.random.default_rng(seed).standard_normal((n, dim)).astype(np.float32)
    return rows / np.linalg.norm(rows, axis=1, keepdims=True)


def _refused(fn: Callable[[], Any], what: str) -> None:
    try:
        fn()
    except EmbedderMismatch:
        return
    raise AssertionError(f"{what} must raise EmbedderMismatch")


def check_empty_index(factory: VectorIndexFactory) -> None:
    index = factory("emb-a", 8)
    assert isinstance(index, VectorIndex)
    assert index.embedder_id == "emb-a" and index.dim == 8 and len(index) == 0
    assert index.search(np.ones(8), 5, "emb-a") == []


def check_exact_top_k(factory: VectorIndexFactory) -> None:
    rows = _unit_rows(60, 16)
    ids = [f"item-{i:02d}" for i in range(60)]
    index = factory("emb-a", 16)
    index.add(ids, rows, "emb-a")
    assert len(index) == 60
    for q in (0, 17, 59):
        found = index.search(rows[q], 5, "emb-a")
        expected = np.argsort(-(rows @ rows[q]), kind="stable")[:5]
        assert [i for i, _ in found] == [ids[j] for j in expected], "top-k by inner product, best first"
        assert found[0][0] == ids[q] and abs(found[0][1] - 1.0) < 1e-4, "a stored vector is its own best match (score = inner product)"
        scores = [s for _, s in found]
        assert scores == sorted(scores, reverse=True)
        assert np.allclose(scores, [float(rows[j] @ rows[q]) for j in expected], atol=1e-4)
    assert len(index.search(rows[0], 500, "emb-a")) == 60, "k larger than the index returns everything"


def check_add_replaces_existing_ids(factory: VectorIndexFactory) -> None:
    rows = _unit_rows(3, 4)
    index = factory("emb-a", 4)
    index.add(["a", "b", "c"], rows, "emb-a")
    index.add(["b"], -rows[0:1], "emb-a")
    assert len(index) == 3
    assert index.search(-rows[0], 1, "emb-a")[0][0] == "b"
    index.add([], np.zeros((0, 4), dtype=np.float32), "emb-a")
    assert len(index) == 3


def check_refuses_other_embedders(factory: VectorIndexFactory) -> None:
    index = factory("emb-a", 4)
    index.add(["a"], np.ones((1, 4)), "emb-a")
    _refused(lambda: index.add(["b"], np.ones((1, 4)), "emb-b"), "adding another embedder's vectors")
    _refused(lambda: index.search(np.ones(4), 1, "emb-b"), "a query from another embedder")
    _refused(lambda: index.add(["c"], np.ones((1, 5)), "emb-a"), "a vector of the wrong dimension")
    _refused(lambda: index.search(np.ones(5), 1, "emb-a"), "a query of the wrong dimension")
    assert len(index) == 1, "a refused add stores nothing"


def check_batch_search_is_each_search(factory: VectorIndexFactory) -> None:
    """`search_batch` (one call where the index has `search_many`) answers what a search per
    query does, less the hits under `min_score`; so does `search_above` (a threshold search)."""
    rows = _unit_rows(60, 16)
    index = factory("emb-a", 16)
    assert search_batch(index, rows[:3], 5, "emb-a") == [[], [], []], "an empty index finds nothing"
    index.add([f"item-{i:02d}" for i in range(60)], rows, "emb-a")
    queries = np.vstack([rows[:7], -rows[7:8], _unit_rows(2, 16, seed=8)])
    for k, min_score in ((5, None), (500, None), (20, 0.25), (1, 0.5)):
        each = [[(i, s) for i, s in index.search(q, k, "emb-a") if min_score is None or s >= min_score] for q in queries]
        assert search_batch(index, queries, k, "emb-a", min_score) == each, (k, min_score)
        if min_score is not None:  # a threshold search of a small index: what the batch search answers
            assert search_above(index, queries, k, "emb-a", min_score) == each, (k, min_score)
            # the rows named by the ids they are held under (the last three are not held)
            held = [f"item-{i:02d}" for i in range(7)] + ["not-held"] * 3
            assert search_above(index, queries, k, "emb-a", min_score, held=held) == each, (k, min_score)
        # a span of time (items added without times): a hint; every index answers it all the same
        assert search_batch(index, queries, k, "emb-a", min_score, within=(0, 10**15)) == each, (k, min_score)
    assert search_batch(index, queries[:1], 3, "emb-a") == [index.search(queries[0], 3, "emb-a")], "one query"
    assert search_batch(index, queries[:0], 3, "emb-a") == []
    _refused(lambda: search_batch(index, np.ones((2, 16)), 1, "emb-b"), "a batch of queries from another embedder")


VECTOR_INDEX_CHECKS: list[Callable[[VectorIndexFactory], None]] = [
    check_empty_index,
    check_exact_top_k,
    check_add_replaces_existing_ids,
    check_refuses_other_embedders,
    check_batch_search_is_each_search,
]


def parametrize_vector_index_checks() -> Any:
    import pytest

    return pytest.mark.parametrize("check", VECTOR_INDEX_CHECKS, ids=[c.__name__.removeprefix("check_") for c in VECTOR_INDEX_CHECKS])
