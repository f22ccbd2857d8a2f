"""The HNSW index's threshold search (`search_above`, triage's repeat search): each graph asked
first for a few neighbours at a low expansion, and for `k` only by the queries whose few all
reach the score. Against the exact answer on clustered vectors above EXACT_BELOW (where the
graphs answer), and against `search_many` where the wide search ran."""

from __future__ import annotations

import threading
from typing import Any

import numpy as np

from factbridge.backends.vectors.base import search_above
from factbridge.backends.vectors.hnsw import EXACT_BELOW, NARROW_K, HnswIndex

DIM = 32
FLOOR = 0.9


def _clustered(seed: int = 3) -> np.ndarray:
    """Near-copies around centres: most centres with 1-4 copies, a few campaigns with 40-80
    (more than NARROW_K above FLOOR), all unit vectors."""
    rng = np.random.default_rng(seed)
    sizes = [int(s) for s in rng.integers(1, 5, 1500)] + [int(s) for s in rng.integers(40, 81, 20)]
    centres = rng.standard_normal((len(sizes), DIM))
    rows = np.concatenate([c + 0.04 * rng.standard_normal((n, DIM)) for c, n in zip(centres / np.linalg.norm(centres, axis=1, keepdims=True), sizes, strict=True)])
    rows = rows[rng.permutation(len(rows))].astype(np.float32)
    return rows / np.linalg.norm(rows, axis=1, keepdims=True)


def _index(rows: np.ndarray) -> HnswIndex:
    index = HnswIndex("emb", DIM, expansion_search=256)
    for start in range(0, len(rows), 1000):  # as batches add them
        index.add([f"p{n}" for n in range(start, min(len(rows), start + 1000))], rows[start : start + 1000], "emb")
    assert len(rows) >= EXACT_BELOW and index._segments[0].floats is None, "the graph answers"
    return index


def test_threshold_search_finds_what_the_exact_search_finds_and_asks_wide_only_where_needed() -> None:
    rows = _clustered()
    index = _index(rows)
    queries = rows[::5]
    calls: list[tuple[int, int, int | None]] = []
    graph_hits = index._graph_hits

    def counted(graph: Any, q: np.ndarray, count: int, exact: bool, expansion: int | None = None) -> Any:
        calls.append((len(q), count, expansion))
        return graph_hits(graph, q, count, exact, expansion)

    index._graph_hits = counted  # type: ignore[method-assign]
    found = search_above(index, queries, 200, "emb", FLOOR)
    scores = queries @ rows.T
    truth = [{f"p{n}" for n in np.flatnonzero(row >= FLOOR)} for row in scores]
    assert sum(len(t) > NARROW_K for t in truth) >= 10 and sum(len(t) <= 4 for t in truth) >= 200, "the fixture has campaigns and loners"
    wanted = sum(len(t) for t in truth)
    got = sum(len(t & {i for i, _ in hits}) for t, hits in zip(truth, found, strict=True))
    assert got / wanted >= 0.99, f"recall of the hits >= {FLOOR}: {got / wanted:.4f}"
    for hits, row in zip(found, scores, strict=True):
        assert all(s >= FLOOR for _, s in hits) and [s for _, s in hits] == sorted((s for _, s in hits), reverse=True)
        assert all(abs(s - float(row[int(i[1:])])) < 1e-5 for i, s in hits), "scores are the inner products"
    narrow, *wide = calls
    assert narrow == (len(queries), NARROW_K, 64), "first every query, for a few, at a low expansion"
    assert len(wide) == 1 and wide[0][1:] == (200, None), "then the index's own search, for k"
    saturated = [n for n, hits in enumerate(found) if len(hits) >= NARROW_K]
    assert wide[0][0] == len(saturated) < len(queries) // 4, "asked wide only by the queries whose few all reach the floor"
    index._graph_hits = graph_hits  # type: ignore[method-assign]
    full = index.search_many(queries[saturated], 200, "emb", FLOOR)
    assert [found[n] for n in saturated] == full, "where the wide search ran, its answer is search_many's"


def test_the_narrow_search_leaves_the_index_searching_at_its_own_expansion() -> None:
    rows = _clustered(seed=4)
    index = _index(rows)
    queries = rows[np.flatnonzero(((rows[:200] @ rows.T) >= FLOOR).sum(axis=1) < NARROW_K)]  # none asks for the wide search
    before = [index.search(q, 50, "emb") for q in queries]
    index.search_above(queries, 200, "emb", FLOOR)
    assert index._segments[0].graph.expansion_search == 64, "the narrow pass set its expansion (and no wide one ran)"
    assert [index.search(q, 50, "emb") for q in queries] == before
    assert index._segments[0].graph.expansion_search == 256
    assert index.search_many(queries, 50, "emb") == before


def test_threshold_and_plain_searches_side_by_side_answer_as_one_after_the_other() -> None:
    rows = _clustered(seed=5)
    index = _index(rows)
    queries = rows[:60]
    above, many = index.search_above(queries, 200, "emb", FLOOR), index.search_many(queries, 30, "emb")
    errors: list[str] = []

    def run(kind: str) -> None:
        for _ in range(15):
            got = index.search_above(queries, 200, "emb", FLOOR) if kind == "above" else index.search_many(queries, 30, "emb")
            if got != (above if kind == "above" else many):
                errors.append(kind)

    threads = [threading.Thread(target=run, args=(kind,)) for kind in ("above", "many", "above", "many")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
