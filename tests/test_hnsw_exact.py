"""Below EXACT_BELOW an f32 segment of the HNSW index is searched by a float32 product over a
copy of its live vectors instead of usearch's exact scan: the same hits in the same order,
scores within float rounding (1e-6), ties (exact copies) in the order they were added."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest

from factbridge.backends.vectors import hnsw
from factbridge.backends.vectors.hnsw import HnswIndex

DIM = 24


def _rows(n: int, seed: int) -> np.ndarray:
    rows = np.random.default_rng(seed).standard_normal((n, DIM)).astype(np.float32)
    return rows / np.linalg.norm(rows, axis=1, keepdims=True)


def _usearch_scan(index: HnswIndex, query: np.ndarray, k: int, exact: bool = True) -> list[tuple[str, float]]:
    """What the index answered before: each segment asked of usearch (its exact scan, or its
    graph with `exact=False`), merged by score, a stable sort."""
    out: list[tuple[str, float]] = []
    for segment in index._segments:
        if segment.live:
            found = segment.graph.search(query, min(k, segment.live), exact=exact, threads=1)
            out += [(i, 1.0 - float(d)) for key, d in zip(np.asarray(found.keys).tolist(), np.asarray(found.distances).tolist(), strict=True)
                    if (i := index._ids[key]) is not None]
    out.sort(key=lambda pair: -pair[1])
    return out[:k]


def _assert_same(got: list[tuple[str, float]], expected: list[tuple[str, float]]) -> None:
    assert [i for i, _ in got] == [i for i, _ in expected]
    assert max((abs(a - b) for (_, a), (_, b) in zip(got, expected, strict=True)), default=0.0) < 1e-6


def _assert_scan(index: HnswIndex, queries: np.ndarray, k: int, min_score: float | None = None) -> None:
    """search and search_many against usearch's exact scan, and search_many is each search."""
    each = [index.search(q, k, "emb") for q in queries]
    for q, got in zip(queries, each, strict=True):
        _assert_same(got, _usearch_scan(index, q, k))
    batch = index.search_many(queries, k, "emb", min_score)
    assert batch == [[(i, s) for i, s in hits if min_score is None or s >= min_score] for hits in each]


def test_exact_path_is_usearchs_scan_after_adds_and_replacements() -> None:
    index = HnswIndex("emb", DIM)
    rows = _rows(700, 1)
    index.add([f"p{n}" for n in range(300)], rows[:300], "emb")
    assert index._segments[0].floats is not None, "a small f32 segment keeps its floats"
    _assert_scan(index, _rows(20, 2), 10)
    index.add([f"p{n}" for n in range(300, 700)], rows[300:], "emb")
    index.add([f"p{n}" for n in range(0, 700, 7)], _rows(100, 3), "emb")  # replaced: the old rows masked
    assert len(index) == 700
    queries = np.concatenate([_rows(20, 4), rows[1:40:3]])
    _assert_scan(index, queries, 10, min_score=0.3)
    _assert_scan(index, queries, 1)
    everything = index.search(queries[0], 5000, "emb")  # k above the vectors held: every live one
    assert len(everything) == 700 and {i for i, _ in everything} == {f"p{n}" for n in range(700)}
    _assert_scan(index, queries[:5], 5000)


def test_several_segments_and_k_above_each() -> None:
    index = HnswIndex("emb", DIM, segment_size=100)
    index.add([f"p{n}" for n in range(350)], _rows(350, 5), "emb")
    index.add([f"p{n}" for n in range(0, 350, 3)], _rows(117, 6), "emb")  # replaced across segments
    assert index.segments == 5 and all(s.floats is not None for s in index._segments)
    _assert_scan(index, _rows(15, 7), 150, min_score=0.0)
    _assert_scan(index, _rows(15, 8), 7)


def test_exact_copies_come_in_the_order_they_were_added() -> None:
    """usearch's scan leaves exact copies in the order its top-k buffer does (often the last
    added first, no key order once there are many); the product gives them in the order they
    were added, across segments too (the merge's stable sort keeps the older segment first)."""
    index = HnswIndex("emb", DIM, segment_size=40)
    base, noise = _rows(3, 9), _rows(120, 10)
    rows = noise.copy()
    copies = [5, 11, 12, 30, 47, 48, 90, 119]  # one vector, in three segments
    rows[copies] = base[0]
    index.add([f"p{n}" for n in range(120)], rows, "emb")
    got = index.search(base[0], 20, "emb")
    assert [i for i, _ in got[: len(copies)]] == [f"p{n}" for n in copies]
    assert len({s for _, s in got[: len(copies)]}) == 1
    scan = _usearch_scan(index, base[0], 20)
    assert sorted(i for i, _ in scan[: len(copies)]) == sorted(i for i, _ in got[: len(copies)]), "the same copies found"
    _assert_same(got[len(copies) :], scan[len(copies) :])
    first = index.search(base[0], 3, "emb")  # k cuts the ties: the first added
    assert [i for i, _ in first] == ["p5", "p11", "p12"]
    assert index.search_many(base[:1], 3, "emb") == [first]
    assert index.search_many(base[:1], 3, "emb", min_score=0.5) == [first], "the floor taken before the cut: the same hits"
    assert index.search_many(base[:1], 20, "emb", min_score=0.99) == [got[: len(copies)]]


def test_a_segment_loaded_from_disk_gets_its_floats_from_its_graph(tmp_path: Path) -> None:
    index = HnswIndex("emb", DIM, segment_size=200)
    index.add([f"p{n}" for n in range(450)], _rows(450, 11), "emb")
    index.add([f"p{n}" for n in range(0, 450, 5)], _rows(90, 12), "emb")
    index.save(tmp_path / "posts")
    queries = _rows(12, 13)
    expected = [index.search(q, 25, "emb") for q in queries]
    for view in (False, True):
        opened = HnswIndex.open(tmp_path / "posts", "emb", DIM, view=view)
        assert all(s.floats is None for s in opened._segments), "built when first searched, not on open"
        assert [opened.search(q, 25, "emb") for q in queries] == expected
        assert all(s.floats is not None for s in opened._segments)
        _assert_scan(opened, queries, 25, min_score=0.1)
    opened = HnswIndex.open(tmp_path / "posts", "emb", DIM)
    opened.search(queries[0], 5, "emb")
    opened.add(["p1", "new"], _rows(2, 14), "emb")  # then added to and replaced in
    _assert_scan(opened, queries, 25)


def test_a_segment_crossing_exact_below_switches_to_its_graph(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(hnsw, "EXACT_BELOW", 100)
    index = HnswIndex("emb", DIM, segment_size=150)
    index.add([f"p{n}" for n in range(90)], _rows(90, 15), "emb")
    segment = index._segments[0]
    assert segment.floats is not None
    index.add([f"p{n}" for n in range(90, 150)], _rows(60, 16), "emb")  # 150 live: the graph answers
    assert segment.floats is None
    queries = _rows(10, 17)
    for q in queries:
        assert index.search(q, 10, "emb") == _usearch_scan(index, q, 10, exact=False)
    index.add([f"p{n}" for n in range(0, 150, 2)], _rows(75, 18), "emb")  # 75 replaced: 75 live again below
    assert index._segments[0].live == 75 and index.segments == 2
    _assert_scan(index, queries, 10)
    assert index._segments[0].floats is not None, "got again from the graph"
    for seed in range(30, 33):
        index.add([f"p{n}" for n in range(1, 150, 2)], _rows(75, seed), "emb")  # masked and appended rows
        assert all(s.floats is None or len(s.floats.rows) <= hnsw.EXACT_BELOW for s in index._segments), "memory bounded"
    _assert_scan(index, queries, 30)


def test_quantised_segments_keep_usearchs_scan() -> None:
    index = HnswIndex("emb", DIM, dtype="f16")
    index.add([f"p{n}" for n in range(200)], _rows(200, 20), "emb")
    assert index._segments[0].floats is None
    q = _rows(1, 21)[0]
    assert index.search(q, 10, "emb") == _usearch_scan(index, q, 10)


def test_searches_while_another_thread_adds() -> None:
    """Searches under adds and replacements in another thread: every answer holds live or
    just-replaced ids, best first, and nothing fails."""
    index = HnswIndex("emb", DIM, segment_size=300)
    rows = _rows(900, 22)
    index.add([f"p{n}" for n in range(100)], rows[:100], "emb")
    errors: list[BaseException] = []

    def add() -> None:
        try:
            for start in range(100, 900, 50):
                index.add([f"p{n}" for n in range(start, start + 50)], rows[start : start + 50], "emb")
                index.add([f"p{n}" for n in range(0, start, 9)], rows[: start : 9][::-1].copy(), "emb")
        except BaseException as e:  # pragma: no cover - reported below
            errors.append(e)

    worker = threading.Thread(target=add)
    worker.start()
    queries = _rows(8, 23)
    while worker.is_alive():
        for hits in index.search_many(queries, 20, "emb"):
            assert [s for _, s in hits] == sorted((s for _, s in hits), reverse=True)
            assert all(i.startswith("p") for i, _ in hits)
    worker.join()
    assert not errors
    _assert_scan(index, queries, 20)


def test_a_hit_whose_id_went_after_the_view_is_left_out() -> None:
    """The exact path's hits whose id was removed after the search took its view (a replacement
    in another thread) are left out of `search_many`'s answer, the others kept in order."""
    index = HnswIndex("emb", DIM)
    rows = _rows(50, 30)
    index.add([f"p{n}" for n in range(50)], rows, "emb")
    before = index.search_many(rows[:3], 5, "emb")
    gone = before[0][1][0]
    index._ids[index._key[gone]] = None  # its row still live in the floats, as in a view taken before the replacement
    assert index.search_many(rows[:3], 5, "emb") == [[(i, s) for i, s in hits if i != gone] for hits in before]
    assert index.search_many(rows[:3], 5, "emb", min_score=-1.0) == [[(i, s) for i, s in hits if i != gone] for hits in before]
