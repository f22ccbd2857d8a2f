"""A post index keeps each post's time: a search `within` a span of time leaves out the
usearch segments whose posts all lie outside it, so triage's repeat search costs by the
posts of its window, not by the whole history (docs/scale-out.md). Hits inside the span
are those of the whole search."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from factbridge.backends.storage.sqlite import SQLiteStorage
from factbridge.backends.vectors import hnsw
from factbridge.backends.vectors.base import search_above, search_batch, time_stamp
from factbridge.backends.vectors.hnsw import HnswIndex
from factbridge.backends.vectors.selection import (
    VectorIndexTuning,
    forget_indexes,
    stored_vector_index,
)
from factbridge.models import Post

DAY = 86_400_000_000  # microseconds
T0 = time_stamp(datetime(2026, 11, 1, tzinfo=UTC))
assert T0 is not None
DIM = 16


def _unit(n: int, seed: int) -> np.ndarray:
    rows = np.random.default_rng(seed).standard_normal((n, DIM)).astype(np.float32)
    return rows / np.linalg.norm(rows, axis=1, keepdims=True)


def _days(days: int, per_day: int, seed: int) -> tuple[list[str], np.ndarray, list[int]]:
    """`per_day` posts a day: one story a day, posted in near-copies (repeats above 0.9)."""
    base = _unit(days, seed)
    noise = _unit(days * per_day, seed + 1)
    rows = np.repeat(base, per_day, axis=0) + 0.15 * noise
    rows /= np.linalg.norm(rows, axis=1, keepdims=True)
    stamps = [T0 + d * DAY + n * 60_000_000 for d in range(days) for n in range(per_day)]
    return [f"d{d}-{n}" for d in range(days) for n in range(per_day)], rows.astype(np.float32), stamps


def _searched(monkeypatch: pytest.MonkeyPatch, index: HnswIndex) -> list[int]:
    """The first keys of the segments each search goes into."""
    seen: list[int] = []
    views = index._exact_views

    def spied(within: Any = None) -> Any:
        out = views(within)
        seen.extend(segment.first_key for segment, _ in out)
        return out

    monkeypatch.setattr(index, "_exact_views", spied)
    return seen


@pytest.mark.parametrize("exact_below", [hnsw.EXACT_BELOW, 10])
def test_segments_outside_the_span_are_left_out_and_the_hits_inside_are_the_same(monkeypatch: pytest.MonkeyPatch, exact_below: int) -> None:
    monkeypatch.setattr(hnsw, "EXACT_BELOW", exact_below)  # exact scans, or every segment its graph
    ids, rows, stamps = _days(6, 40, 3)
    index = HnswIndex("emb", DIM, segment_size=40)
    index.add(ids, rows, "emb", stamps=stamps)
    assert index.segments == 6 and [s.span for s in index._segments] == [(stamps[d * 40], stamps[d * 40 + 39]) for d in range(6)]
    queries, floor = rows[205:215], 0.9  # day 5's posts
    within = (stamps[205] - DAY, stamps[214] + DAY)
    stamp_of = dict(zip(ids, stamps, strict=True))
    whole = search_above(index, queries, 200, "emb", floor)
    seen = _searched(monkeypatch, index)
    for search in (search_above, search_batch):
        seen.clear()
        got = search(index, queries, 200, "emb", floor, within)
        assert sorted(set(seen)) == [160, 200], "days 4 and 5 only"
        assert [[(i, s) for i, s in hits if within[0] <= stamp_of[i] <= within[1]] for hits in whole] == got
    assert all(len(hits) >= 30 for hits in got), "the day's copies found"
    seen.clear()
    assert search_batch(index, queries, 200, "emb", floor) == whole and sorted(set(seen)) == [0, 40, 80, 120, 160, 200], "no span: all"


def test_a_segment_with_a_vector_of_unknown_time_is_always_searched(monkeypatch: pytest.MonkeyPatch) -> None:
    ids, rows, stamps = _days(3, 20, 5)
    index = HnswIndex("emb", DIM, segment_size=20)
    index.add(ids[:20], rows[:20], "emb", stamps=stamps[:20])
    index.add(ids[20:40], rows[20:40], "emb", stamps=[*stamps[20:39], None])  # one post without a time
    index.add(ids[40:], rows[40:], "emb")  # no times at all
    assert [s.timed for s in index._segments] == [True, False, False]
    seen = _searched(monkeypatch, index)
    index.search_many(rows[:2], 10, "emb", 0.5, within=(stamps[0], stamps[19]))
    assert sorted(set(seen)) == [0, 20, 40]
    seen.clear()
    index.search_many(rows[:2], 10, "emb", 0.5, within=(stamps[59] + 10 * DAY, stamps[59] + 11 * DAY))
    assert sorted(set(seen)) == [20, 40], "a span after every known time: only the untimed segments"


def test_a_replaced_post_is_found_at_its_new_time(monkeypatch: pytest.MonkeyPatch) -> None:
    ids, rows, stamps = _days(3, 20, 7)
    index = HnswIndex("emb", DIM, segment_size=20)
    index.add(ids, rows, "emb", stamps=stamps)
    moved = stamps[59] + 5 * DAY
    index.add(["d0-3"], rows[3:4], "emb", stamps=[moved])  # the same post, now with a later time: into the newest segment
    assert index.segments == 4 and index._segments[0].span == (stamps[0], stamps[19]), "a bound: the old span stays"
    got = index.search_many(rows[3:4], 5, "emb", 0.99, within=(moved - DAY, moved + DAY))
    assert [i for i, _ in got[0]] == ["d0-3"]


def test_spans_are_saved_and_an_index_saved_without_them_is_searched_whole(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    ids, rows, stamps = _days(4, 20, 9)
    index = HnswIndex("emb", DIM, segment_size=20)
    index.add(ids, rows, "emb", stamps=stamps)
    index.add(["late"], rows[:1], "emb")  # the newest segment: untimed
    index.save(tmp_path / "posts")
    within = (stamps[60], stamps[79])
    expected = index.search_many(rows[60:64], 30, "emb", 0.8, within=within)
    opened = HnswIndex.open(tmp_path / "posts", "emb", DIM)
    assert [(s.timed, s.span) for s in opened._segments] == [(s.timed, s.span) for s in index._segments]
    seen = _searched(monkeypatch, opened)
    assert opened.search_many(rows[60:64], 30, "emb", 0.8, within=within) == expected
    assert sorted(set(seen)) == [60, 80]
    meta_path = tmp_path / "posts.json"
    meta = json.loads(meta_path.read_text())
    for segment in meta["segments"]:
        segment.pop("span", None)  # as written before spans
    meta_path.write_text(json.dumps(meta))
    older = HnswIndex.open(tmp_path / "posts", "emb", DIM)
    assert not any(s.timed for s in older._segments)
    seen = _searched(monkeypatch, older)
    older.search_many(rows[60:64], 30, "emb", 0.8, within=within)
    assert sorted(set(seen)) == [0, 20, 40, 60, 80]


def test_the_stored_post_index_takes_the_posts_times_from_the_store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Built from the store (another process's posts, a restart): each post's time comes from
    `post_times`; a batch added with its vectors brings its own."""
    storage = SQLiteStorage(f"sqlite:///{tmp_path / 'db.sqlite'}")
    storage.migrate()
    try:
        ids, rows, stamps = _days(3, 10, 11)
        start = datetime(2026, 11, 1, tzinfo=UTC)
        times = [start + timedelta(microseconds=t - T0) for t in stamps]
        storage.upsert_posts("org", [Post(id=i, text=f"post {i}", platform="test", created_at=t) for i, t in zip(ids, times, strict=True)])
        storage.put_vectors("org", "post", "emb", [(i, f"sha-{i}", rows[n]) for n, i in enumerate(ids)])
        tuning = VectorIndexTuning(segment_size=10)
        index = stored_vector_index(storage, "org", "post", "emb", DIM, tuning=tuning)
        assert isinstance(index, HnswIndex)
        assert [s.span for s in index._segments] == [(stamps[0], stamps[9]), (stamps[10], stamps[19]), (stamps[20], stamps[29])]
        later = [time_stamp(start + timedelta(days=9))]
        storage.upsert_posts("org", [Post(id="new", text="new post", platform="test", created_at=start + timedelta(days=9))])
        storage.put_vectors("org", "post", "emb", [("new", "sha-new", rows[0])])
        index = stored_vector_index(storage, "org", "post", "emb", DIM, tuning=tuning, fresh_ids=["new"], fresh_vectors=rows[:1], fresh_stamps=later)
        assert isinstance(index, HnswIndex) and index._segments[-1].span == (later[0], later[0])
        seen = _searched(monkeypatch, index)
        assert [i for i, _ in index.search_many(rows[:1], 5, "emb", 0.99, within=(later[0] - DAY, later[0] + DAY))[0]] == ["new"]
        assert sorted(set(seen)) == [30]
        assert all(s.timed for s in index._segments)
        factchecks = stored_vector_index(storage, "org", "factcheck", "emb", DIM, tuning=tuning)
        assert isinstance(factchecks, HnswIndex)
    finally:
        forget_indexes(storage)
        storage.close()


def test_triage_searches_only_its_window_and_queues_the_same(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Four days of posts, three days apart, a segment a day: each day's batch searches only its
    own day's segment (the 24 h window reaches no other), and its queue entries are the ones a
    search of the whole index gives (the hits of other days are dropped by the window either way)."""
    from factbridge.bench.feed import generated_posts
    from factbridge.pipeline import triage
    from factbridge.pipeline.prepare import prepare_post
    from factbridge.pipeline.stages import run_stages
    from factbridge.services import Services
    from factbridge.settings import load_settings
    from factbridge.testing.triage import comparable_entries

    captured: list[list[Any]] = []
    monkeypatch.setattr(triage, "_put", lambda storage, org, entries, *rest: captured.append(list(entries)))
    spans: list[Any] = []
    threshold_search, batch_search = triage.search_above, triage.search_batch

    def spied(search: Any) -> Any:
        def run(index: Any, queries: Any, k: int, embedder_id: str, min_score: Any = None, within: Any = None, **held: Any) -> Any:
            spans.append(within)
            return search(index, queries, k, embedder_id, min_score, within, **held)

        return run

    def whole(search: Any) -> Any:
        return lambda index, queries, k, embedder_id, min_score=None, within=None, **held: search(index, queries, k, embedder_id, min_score, **held)

    settings = load_settings(env={}, overrides={
        "data_dir": str(tmp_path), "storage_url": f"sqlite:///{tmp_path / 'desk.db'}", "embedder": "hashing", "embed_cache": "off",
        "vector_segment_size": 30,
    })
    services = Services(settings)
    try:
        generated = generated_posts(30, "tweet", duplicates=0.4, seed=29)
        start = datetime(2026, 11, 1, tzinfo=UTC)
        segments_searched: list[list[int]] = []
        for day in range(4):
            batch = [prepare_post(p.model_copy(update={"id": f"{p.id}-day{day}", "created_at": start + timedelta(days=3 * day, minutes=n)}))
                     for n, p in enumerate(generated)]  # the same stories every day: repeats across days, outside the window
            services.storage.upsert_posts("desk", batch)
            monkeypatch.setattr(triage, "search_above", spied(threshold_search))
            monkeypatch.setattr(triage, "search_batch", spied(batch_search))
            index = stored_vector_index(services.storage, "desk", "post", services.embedder.id, services.embedder.dim,
                                        tuning=VectorIndexTuning(segment_size=30), data_dir=tmp_path)
            seen = _searched(monkeypatch, index) if isinstance(index, HnswIndex) else []
            run_stages(services, "desk", batch)
            segments_searched.append(sorted(set(seen)))
            assert spans and all(s is not None for s in spans), "every batch search asks for its window"
            pruned = comparable_entries(captured.pop())
            monkeypatch.setattr(triage, "search_above", whole(threshold_search))
            monkeypatch.setattr(triage, "search_batch", whole(batch_search))
            triage.triage_posts(services, "desk", batch)
            assert pruned == comparable_entries(captured.pop()), f"day {day}: the same entries as a search of the whole index"
            assert any(d["components"]["velocity"]["evidence"]["repeats"] for d in pruned.values() if d["kind"] == "post"), "repeats within the day"
        # one segment a day: the day's (each batch is added twice, by the stage and by the reference run: 60 keys a day)
        assert segments_searched == [[0], [60], [120], [180]], segments_searched
    finally:
        services.close()


def test_a_post_whose_time_changed_is_added_again_when_the_index_is_brought_up_to_date(tmp_path: Path) -> None:
    """Its text (and vector hash) unchanged: the resync leaves it, the batch that stored it adds
    it again with its new time."""
    storage = SQLiteStorage(f"sqlite:///{tmp_path / 'db.sqlite'}")
    storage.migrate()
    try:
        ids, rows, stamps = _days(2, 10, 13)
        start = datetime(2026, 11, 1, tzinfo=UTC)
        storage.upsert_posts("org", [Post(id=i, text=f"post {i}", platform="test", created_at=start + timedelta(microseconds=t - T0))
                                     for i, t in zip(ids, stamps, strict=True)])
        storage.put_vectors("org", "post", "emb", [(i, f"sha-{i}", rows[n]) for n, i in enumerate(ids)])
        tuning = VectorIndexTuning(segment_size=10)
        stored_vector_index(storage, "org", "post", "emb", DIM, tuning=tuning)
        moved = start + timedelta(days=30)
        storage.upsert_posts("org", [Post(id="d0-4", text="post d0-4", platform="test", created_at=moved)])
        index = stored_vector_index(storage, "org", "post", "emb", DIM, tuning=tuning, resync_s=0.0,  # a resync is due
                                    fresh_ids=["d0-4"], fresh_vectors=rows[4:5], fresh_stamps=[time_stamp(moved)])
        assert isinstance(index, HnswIndex)
        t = time_stamp(moved)
        assert t is not None
        assert [i for i, _ in index.search_many(rows[4:5], 5, "emb", 0.99, within=(t - DAY, t + DAY))[0]] == ["d0-4"]
    finally:
        forget_indexes(storage)
        storage.close()


def _copies_around(base: np.ndarray, rng: np.random.Generator, n: int, noise: float) -> np.ndarray:
    """`n` unit vectors near `base` (a text's copies: `noise` apart)."""
    rows = base[None, :] + noise * rng.standard_normal((n, len(base))).astype(np.float32)
    return (rows / np.linalg.norm(rows, axis=1, keepdims=True)).astype(np.float32)


@pytest.mark.parametrize(("n_old", "dtype"), [(300, "f32"), (5000, "f32"), (5000, "f16")], ids=["exact-scan", "graph", "f16-reranked"])
def test_a_windows_copies_are_not_crowded_out_within_one_segment(n_old: int, dtype: str, tmp_path: Path) -> None:
    """One segment holding three months (the default 250,000 a segment is months of a desk's
    posts): a text posted hundreds of times long ago, and again this week, keeps its copies of
    the week in a search of the week. The segment's answer is kept to the span, and a row whose
    answer was all other times' copies is answered again over the span's vectors (as PostgreSQL's
    window filter: tests/test_pgvector_window.py). It holds for an index saved and opened again,
    whose vectors' stamps are saved with their ids."""
    now = datetime(2026, 11, 30, 12, tzinfo=UTC)
    rng = np.random.default_rng(5)
    base = rng.standard_normal(16).astype(np.float32)

    old, recent = _copies_around(base, rng, n_old, 0.02), _copies_around(base, rng, 6, 0.05)
    others = rng.standard_normal((50, 16)).astype(np.float32)
    others /= np.linalg.norm(others, axis=1, keepdims=True)
    ids = [f"old{i}" for i in range(n_old)] + [f"new{i}" for i in range(6)] + [f"other{i}" for i in range(50)] + ["untimed"]
    stamps = [time_stamp(now - timedelta(days=90, minutes=i)) for i in range(n_old)] + [time_stamp(now - timedelta(days=i)) for i in range(6)]
    stamps += [time_stamp(now - timedelta(hours=i)) for i in range(50)] + [None]
    vectors = np.concatenate([old, recent, others, recent[:1]])
    floats = dict(zip(ids, vectors, strict=True))  # the store's float vectors, for a quantised index's re-rank
    rerank = (lambda wanted: np.stack([floats[i] for i in wanted])) if dtype != "f32" else None
    index = HnswIndex("emb", 16, segment_size=250_000, dtype=dtype, rerank=rerank)
    index.add(ids, vectors, "emb", stamps=stamps)
    week = (time_stamp(now - timedelta(days=7)), time_stamp(now + timedelta(days=7)))
    index.save(tmp_path / "posts")
    for searched in (index, HnswIndex.open(tmp_path / "posts", "emb", 16, rerank=rerank)):
        for search in (search_batch, search_above):
            [hits] = search(searched, recent[:1], 20, "emb", 0.5, week)
            found = {i for i, _ in hits}
            assert {f"new{i}" for i in range(6)} | {"untimed"} <= found, (search.__name__, sorted(found))
            assert not any(i.startswith("old") for i in found), "the week's span, not three months ago"
            [everything] = search(searched, recent[:1], 20, "emb", 0.5, None)
            assert sum(i.startswith("old") for i, _ in everything) >= 10, "without a span: the whole history, as before"


def test_the_exact_pass_over_a_span_does_not_read_a_segment_of_unknown_times_whole(monkeypatch: pytest.MonkeyPatch) -> None:
    """A segment whose vectors are mostly of unknown time (saved before per-key stamps) is not read
    whole when a row is answered again over the span: only its vectors stamped in the span are
    (the unknown ones stand in the answer as the graph gave them)."""
    monkeypatch.setattr(hnsw, "UNKNOWN_EXACT_MAX", 10)
    now = datetime(2026, 11, 30, 12, tzinfo=UTC)
    rng = np.random.default_rng(9)
    base = rng.standard_normal(16).astype(np.float32)

    index = HnswIndex("emb", 16)
    index.add([f"unknown{i}" for i in range(300)], _copies_around(base, rng, 300, 0.2), "emb")  # far copies, of unknown time
    index.add([f"old{i}" for i in range(300)], _copies_around(base, rng, 300, 0.02), "emb", stamps=[time_stamp(now - timedelta(days=90))] * 300)
    recent = _copies_around(base, rng, 6, 0.05)
    index.add([f"new{i}" for i in range(6)], recent, "emb", stamps=[time_stamp(now - timedelta(days=i)) for i in range(6)])
    fetched: list[int] = []
    [segment] = index._segments
    real_get = segment.graph.get
    monkeypatch.setattr(segment.graph, "get", lambda keys, **kw: fetched.append(len(keys)) or real_get(keys, **kw), raising=False)
    [hits] = search_batch(index, recent[:1], 20, "emb", 0.5, (time_stamp(now - timedelta(days=7)), time_stamp(now + timedelta(days=7))))
    assert {f"new{i}" for i in range(6)} <= {i for i, _ in hits} and not any(i.startswith("old") for i, _ in hits)
    assert fetched == [6], "only the span's stamped vectors were read"
