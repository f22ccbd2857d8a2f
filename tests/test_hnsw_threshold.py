"""The HNSW index's threshold search (`search_above`, triage's repeat search): each graph asked
first for a few neighbours at a low expansion, and for `k` only by the queries whose few all
reach the score. Against the exact answer on clustered vectors above EXACT_BELOW (where the
graphs answer), and against `search_many` where the wide search ran; a row named by the id it is
held under (`held`) asks the wide search too when its narrow pass did not find it."""

from __future__ import annotations

import threading
from typing import Any

import numpy as np

from factbridge.backends.vectors.base import search_above
from factbridge.backends.vectors.hnsw import EXACT_BELOW, NARROW_EF, NARROW_K, HnswIndex

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
    assert narrow == (len(queries), NARROW_K, NARROW_EF), "first every query, for a few, at a low expansion"
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
    assert index._segments[0].graph.expansion_search == NARROW_EF, "the narrow pass set its expansion (and no wide one ran)"
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


def test_a_held_row_whose_narrow_search_did_not_find_itself_asks_the_wide_search() -> None:
    """A low expansion can stall outside a dense cluster and find none of it (the bench's Khmer
    campaigns: rows with 56-182 hits answered with none). Simulated here: the narrow pass of two
    rows comes back with unrelated neighbours. Without `held` they keep that answer; with it,
    a row the index holds that did not find itself asks the wide search and gets its hits."""
    rows = _clustered(seed=6)
    index = _index(rows)
    picked = [int(n) for n in np.flatnonzero(((rows @ rows.T) >= FLOOR).sum(axis=1) > 3)[:2]]  # rows with a few near-copies
    queries, held = rows[picked], [f"p{n}" for n in picked]
    graph_hits = index._graph_hits
    stalled: list[int] = []

    def stalling(graph: Any, q: np.ndarray, count: int, exact: bool, expansion: int | None = None) -> Any:
        found = graph_hits(graph, q, count, exact, expansion)
        if count == NARROW_K:  # the narrow pass: far neighbours only, as a search lost outside the cluster answers
            stalled.append(len(q))
            far = [(keys[scores < 0.5], scores[scores < 0.5]) for keys, scores in graph_hits(graph, q, len(rows), True)]
            return [(keys[-NARROW_K:][::-1], scores[-NARROW_K:][::-1]) for keys, scores in far]
        return found

    index._graph_hits = stalling  # type: ignore[method-assign]
    assert search_above(index, queries, 200, "emb", FLOOR) == [[], []], "stalled, nothing asked again"
    got = search_above(index, queries, 200, "emb", FLOOR, held=held)
    index._graph_hits = graph_hits  # type: ignore[method-assign]
    assert got == index.search_many(queries, 200, "emb", FLOOR) and all(len(hits) > 3 for hits in got), "asked wide: all found"
    assert stalled == [2, 2]
    # a row the index does not hold (an id it never took) is not expected to find itself
    assert search_above(index, queries, 200, "emb", FLOOR, held=["elsewhere", "p-none"]) == index.search_many(queries, 200, "emb", FLOOR)


def test_held_rows_miss_themselves_no_more_than_the_wide_search_does() -> None:
    """Campaign copies packed tight (cosine ~0.999 within a campaign) beside loners: a row
    searched with `held` misses itself only where the wide search (`search_many`) does too,
    and finds the hits at the floor as well as it."""
    rng = np.random.default_rng(8)
    centres = rng.standard_normal((60, DIM))
    campaigns = np.concatenate([c + 0.005 * rng.standard_normal((120, DIM)) for c in centres])
    loners = rng.standard_normal((1200, DIM))
    rows = np.concatenate([campaigns, loners])[rng.permutation(60 * 120 + 1200)].astype(np.float32)
    rows /= np.linalg.norm(rows, axis=1, keepdims=True)
    index = _index(rows)
    picked = np.arange(0, len(rows), 7)
    truth = [{f"p{m}" for m in np.flatnonzero(row >= FLOOR)} for row in rows[picked] @ rows.T]

    def missing_themselves(found: list[list[tuple[str, float]]]) -> set[int]:
        return {n for n, hits in zip(picked.tolist(), found, strict=True) if f"p{n}" not in {i for i, _ in hits}}

    held = search_above(index, rows[picked], 200, "emb", FLOOR, held=[f"p{n}" for n in picked])
    wide = index.search_many(rows[picked], 200, "emb", FLOOR)
    assert missing_themselves(held) <= missing_themselves(wide)
    assert len(missing_themselves(held)) <= len(missing_themselves(search_above(index, rows[picked], 200, "emb", FLOOR)))
    wanted = sum(min(len(t), 200) for t in truth)

    def recall(found: list[list[tuple[str, float]]]) -> float:
        return sum(len(t & {i for i, _ in hits}) for t, hits in zip(truth, found, strict=True)) / wanted

    # the graph is built on two threads and differs from build to build (recall 0.9987-0.9999
    # over 55 builds), so the held search is held to the wide search's recall on the same graph:
    # equal in all 55; a row whose narrow pass found itself keeps that pass's hits, which may
    # lack one the wide search has, hence the small allowance
    assert recall(held) >= recall(wide) - 5e-4 and recall(wide) >= 0.995


def test_a_held_row_asks_the_wide_search_only_of_the_segment_holding_it() -> None:
    """Two graph segments: a held row that does not find itself in the narrow pass asks the wide
    search of its own segment only (in the other it is not expected to find itself)."""
    rows = np.concatenate([_clustered(seed=7), _clustered(seed=9)])
    half = len(rows) // 2
    index = HnswIndex("emb", DIM, expansion_search=256, segment_size=half)
    for start in range(0, len(rows), 1000):  # a batch across the boundary goes into both
        index.add([f"p{n}" for n in range(start, min(len(rows), start + 1000))], rows[start : start + 1000], "emb")
    assert index.segments == 2 and all(s.live >= EXACT_BELOW for s in index._segments), "two graphs answer"
    picked = [5, half + 5]  # one row in each segment
    graph_hits = index._graph_hits
    wide_asked: list[tuple[int, int]] = []

    def stalling(graph: Any, q: np.ndarray, count: int, exact: bool, expansion: int | None = None) -> Any:
        if count == NARROW_K:  # every narrow pass lost: nothing found
            return [(np.zeros(0, dtype=np.uint64), np.zeros(0)) for _ in range(len(q))]
        wide_asked.append((next(n for n, s in enumerate(index._segments) if s.graph is graph), len(q)))
        return graph_hits(graph, q, count, exact, expansion)

    index._graph_hits = stalling  # type: ignore[method-assign]
    found = search_above(index, rows[picked], 200, "emb", FLOOR, held=[f"p{n}" for n in picked])
    index._graph_hits = graph_hits  # type: ignore[method-assign]
    assert sorted(wide_asked) == [(0, 1), (1, 1)], "each segment asked wide by the one row it holds"
    assert f"p{picked[0]}" in {i for i, _ in found[0]} and f"p{picked[1]}" in {i for i, _ in found[1]}
