"""NumpyIndex and PgVectorIndex pass the same vector-index checks."""

from __future__ import annotations

import re
from collections.abc import Iterator

import numpy as np
import pytest

from factbridge.backends.vectors.hnsw import HnswIndex
from factbridge.backends.vectors.numpy_index import NumpyIndex
from factbridge.errors import ConfigError, EmbedderMismatch
from factbridge.testing.vector_index_conformance import parametrize_vector_index_checks


@parametrize_vector_index_checks()
def test_numpy_index(check) -> None:  # type: ignore[no-untyped-def]
    check(NumpyIndex)


@parametrize_vector_index_checks()
def test_hnsw_index(check) -> None:  # type: ignore[no-untyped-def]
    check(HnswIndex)


@parametrize_vector_index_checks()
def test_hnsw_index_saved_and_opened(check, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """The checks hold for an index that was saved and opened again at each step."""

    class Reopening:
        def __init__(self, embedder_id: str, dim: int) -> None:
            self.embedder_id, self.dim, self.path = embedder_id, dim, tmp_path / f"ix-{embedder_id}-{dim}"
            for suffix in (".usearch", ".json"):
                self.path.with_name(self.path.name + suffix).unlink(missing_ok=True)
            HnswIndex(embedder_id, dim).save(self.path)

        def add(self, ids, vectors, embedder_id):  # type: ignore[no-untyped-def]
            index = HnswIndex.open(self.path, self.embedder_id, self.dim)
            index.add(ids, vectors, embedder_id)
            index.save(self.path)

        def search(self, query, k, embedder_id):  # type: ignore[no-untyped-def]
            return HnswIndex.open(self.path, self.embedder_id, self.dim).search(query, k, embedder_id)

        def __len__(self) -> int:
            return len(HnswIndex.open(self.path, self.embedder_id, self.dim))

    check(Reopening)


def test_hnsw_index_persists_text_hashes_and_refuses_other_embedders(tmp_path) -> None:  # type: ignore[no-untyped-def]
    rows = np.random.default_rng(4).standard_normal((50, 8)).astype(np.float32)
    rows /= np.linalg.norm(rows, axis=1, keepdims=True)
    index = HnswIndex("emb", 8)
    index.add([f"p{i}" for i in range(50)], rows, "emb", shas=[f"s{i}" for i in range(50)])
    index.save(tmp_path / "posts")
    opened = HnswIndex.open(tmp_path / "posts", "emb", 8)
    assert len(opened) == 50
    assert opened.search(rows[7], 1, "emb")[0][0] == "p7"
    shas = {f"p{i}": f"s{i}" for i in range(50)} | {"p3": "changed", "new": "s"}
    assert opened.stale_ids(shas) == ["new", "p3"], "only what changed since the save is added again"
    opened.add(["p3"], -rows[3:4], "emb", shas=["changed"])
    assert len(opened) == 50 and opened.search(-rows[3], 1, "emb")[0] == ("p3", pytest.approx(1.0, abs=1e-5))
    with pytest.raises(EmbedderMismatch):
        HnswIndex.open(tmp_path / "posts", "emb-other", 8)
    with pytest.raises(EmbedderMismatch):
        HnswIndex.open(tmp_path / "posts", "emb", 16)
    assert len(HnswIndex.open(tmp_path / "nothing-here", "emb", 8)) == 0


def test_hnsw_recall_against_exact_search() -> None:
    rng = np.random.default_rng(9)
    rows = rng.standard_normal((3000, 32)).astype(np.float32)
    rows /= np.linalg.norm(rows, axis=1, keepdims=True)
    ids = [str(i) for i in range(3000)]
    approx, exact = HnswIndex("emb", 32), NumpyIndex("emb", 32)
    approx.add(ids, rows, "emb")
    exact.add(ids, rows, "emb")
    queries = rng.standard_normal((50, 32)).astype(np.float32)
    hits = sum(len({i for i, _ in approx.search(q, 10, "emb")} & {i for i, _ in exact.search(q, 10, "emb")}) for q in queries)
    assert hits / 500 >= 0.98


@pytest.fixture
def pg_store(postgres_factory) -> Iterator[object]:  # type: ignore[no-untyped-def]
    store = postgres_factory()
    yield store
    store.close()


@pytest.mark.postgres
@pytest.mark.parametrize("hnsw", [False, True, "halfvec"], ids=["exact", "hnsw", "hnsw-halfvec"])
@parametrize_vector_index_checks()
def test_pgvector_index(check, hnsw: bool | str, postgres_factory) -> None:  # type: ignore[no-untyped-def]
    from factbridge.backends.vectors.pgvector import PgVectorIndex

    stores = []

    def factory(embedder_id: str, dim: int) -> PgVectorIndex:
        store = postgres_factory()
        stores.append(store)
        return PgVectorIndex(store, "org", "factcheck", embedder_id, dim, hnsw=bool(hnsw), halfvec=hnsw == "halfvec")

    try:
        check(factory)
    finally:
        for store in stores:
            store.close()


@pytest.mark.postgres
def test_pgvector_index_searches_stored_vectors_of_one_org_and_embedder(pg_store) -> None:  # type: ignore[no-untyped-def]
    from factbridge.backends.vectors.pgvector import PgVectorIndex

    rng = np.random.default_rng(1)
    mine = rng.standard_normal((20, 8)).astype(np.float32)
    pg_store.put_vectors("org-a", "factcheck", "emb", [(f"a{i}", f"sha{i}", v) for i, v in enumerate(mine)])
    pg_store.put_vectors("org-b", "factcheck", "emb", [(f"b{i}", "s", v * 10) for i, v in enumerate(mine)])
    pg_store.put_vectors("org-a", "post", "emb", [(f"p{i}", "s", v * 10) for i, v in enumerate(mine)])
    pg_store.put_vectors("org-a", "factcheck", "emb-other", [(f"o{i}", "s", np.ones(3)) for i in range(3)])
    reference = NumpyIndex("emb", 8)
    reference.add([f"a{i}" for i in range(20)], mine, "emb")
    for hnsw in (False, True):
        index = PgVectorIndex(pg_store, "org-a", "factcheck", "emb", 8, hnsw=hnsw)
        assert len(index) == 20
        for q in mine[:5]:
            got = index.search(q, 5, "emb")
            assert [i for i, _ in got] == [i for i, _ in reference.search(q, 5, "emb")], "same ranking as exact NumPy search"
            assert all(i.startswith("a") for i, _ in got), "never another org's or kind's vectors"
    # adding through the index keeps the text hash the pipeline stored
    PgVectorIndex(pg_store, "org-a", "factcheck", "emb", 8).add(["a0"], mine[1:2], "emb")
    assert pg_store.vector_shas("org-a", "factcheck", "emb")["a0"] == "sha0"
    with pytest.raises(EmbedderMismatch):
        PgVectorIndex(pg_store, "org-a", "factcheck", "emb", 16)


@pytest.mark.postgres
@pytest.mark.parametrize("kind", ["factcheck", "post"])
def test_pgvector_hnsw_index_is_used(kind: str, pg_store) -> None:  # type: ignore[no-untyped-def]
    """The index's own query orders by its partial HNSW index: on `vectors` for fact-checks, on
    the post vectors' copies by period (`post_vectors`, one graph per period) for posts."""
    from psycopg import sql

    from factbridge.backends.vectors.pgvector import PgVectorIndex

    rows = np.random.default_rng(2).standard_normal((200, 8)).astype(np.float32)
    index = PgVectorIndex(pg_store, "org", kind, "emb", 8, hnsw=True)
    index.add([f"p{i}" for i in range(200)], rows, "emb")
    statement, params, settings = index.query(rows[0], 5)
    plan = " ".join(r[0] for r in pg_store._read(
        lambda c: c.execute(sql.SQL("EXPLAIN ") + statement, params).fetchall(),
        # a tiny table is cheaper to sort; this shows the query shape can use the partial HNSW index
        local_settings={**settings, "enable_seqscan": "off", "enable_sort": "off"},
    ))
    graphs = {index.hnsw_index_name} | {r[0] for r in pg_store._read(lambda c: c.execute(
        "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid WHERE i.inhparent = %s::regclass",
        (index.hnsw_index_name,)).fetchall())}
    used = set(re.findall(r"Index Scan using (\S+)", plan))
    assert used and used <= graphs, plan
    assert ("post_vectors" in plan) == (kind == "post"), plan


@pytest.mark.parametrize("choice", ["hnsw", "exact"])
def test_stored_vector_index_is_persisted_and_updated_incrementally(choice: str, tmp_path) -> None:  # type: ignore[no-untyped-def]
    from factbridge.backends.storage.sqlite import SQLiteStorage
    from factbridge.backends.vectors.selection import (
        forget_indexes,
        index_path,
        stored_vector_index,
    )

    store = SQLiteStorage(f"sqlite:///{tmp_path / 'db.sqlite'}")
    store.migrate()
    rows = np.random.default_rng(5).standard_normal((30, 8)).astype(np.float32)
    rows /= np.linalg.norm(rows, axis=1, keepdims=True)
    store.put_vectors("org", "post", "emb", [(f"p{i}", f"s{i}", v) for i, v in enumerate(rows)])
    reads: list[int] = []
    original = store.load_vectors
    store.load_vectors = lambda org, kind, emb, ids=None: reads.append(len(ids or [])) or original(org, kind, emb, ids=ids)  # type: ignore[method-assign]
    index = stored_vector_index(store, "org", "post", "emb", 8, choice=choice, data_dir=tmp_path)
    assert len(index) == 30 and reads == [30]
    assert index.search(rows[4], 1, "emb")[0][0] == "p4"
    saved = index_path(tmp_path, "org", "post", "emb")
    assert (bool(HnswIndex.saved_files(saved))) == (choice == "hnsw")
    # a new process (nothing kept in memory) with one post changed and one added
    forget_indexes(store)
    store.put_vectors("org", "post", "emb", [("p4", "changed", -rows[4]), ("p30", "s30", rows[0])])
    reads.clear()
    again = stored_vector_index(store, "org", "post", "emb", 8, choice=choice, data_dir=tmp_path)
    assert len(again) == 31
    assert reads == ([2] if choice == "hnsw" else [31]), "the saved index reads only what changed since"
    assert again.search(-rows[4], 1, "emb")[0][0] == "p4"
    store.close()


def test_stored_vector_index_is_saved_once_enough_was_added(tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """Saved when a process first brings it up to date, then only once SAVE_AFTER vectors (or a
    quarter of the newest segment) were added since; a restart adds what the file lacks."""
    from factbridge.backends.storage.sqlite import SQLiteStorage
    from factbridge.backends.vectors import selection
    from factbridge.backends.vectors.selection import (
        forget_indexes,
        index_path,
        stored_vector_index,
    )

    monkeypatch.setattr(selection, "SAVE_AFTER", 10)
    store = SQLiteStorage(f"sqlite:///{tmp_path / 'db.sqlite'}")
    store.migrate()
    rows = _unit(80, 8, 13)
    saves: list[int] = []
    original = HnswIndex.save
    monkeypatch.setattr(HnswIndex, "save", lambda self, path: saves.append(len(self)) or original(self, path))

    def batch(start: int, end: int) -> HnswIndex:
        store.put_vectors("org", "post", "emb", [(f"p{i}", f"s{i}", rows[i]) for i in range(start, end)])
        index = stored_vector_index(store, "org", "post", "emb", 8, data_dir=tmp_path, resync_s=1e9,
                                    fresh_ids=[f"p{i}" for i in range(start, end)], fresh_vectors=rows[start:end],
                                    fresh_shas=[f"s{i}" for i in range(start, end)])
        assert isinstance(index, HnswIndex)
        return index

    batch(0, 20)
    assert saves == [20], "the first use: saved"
    for start in range(20, 36, 4):
        batch(start, start + 4)
    assert saves == [20, 32], "then once 10 more were added (4, 8, 12: saved at 12), not at each use"
    batch(36, 60)  # the newest segment holds 60: a quarter is 15, above SAVE_AFTER
    assert saves == [20, 32, 60]
    batch(60, 64)
    assert saves == [20, 32, 60] and len(HnswIndex.open(index_path(tmp_path, "org", "post", "emb"), "emb", 8)) == 60
    forget_indexes(store)  # a restart: the file lacks p60-p63, the store has them
    reads: list[int] = []
    load = store.load_vectors
    store.load_vectors = lambda org, kind, emb, ids=None: reads.append(len(ids or [])) or load(org, kind, emb, ids=ids)  # type: ignore[method-assign]
    again = stored_vector_index(store, "org", "post", "emb", 8, data_dir=tmp_path)
    assert len(again) == 64 and reads == [4], "only what the file lacked read from the store"
    assert [i for i, _ in again.search(rows[62], 1, "emb")] == ["p62"]
    reads.clear()
    stored_vector_index(store, "org", "post", "emb", 8, data_dir=tmp_path, resync_s=0.0)  # a resync: nothing changed
    assert reads == [], "every vector's hash known: nothing read or added again"
    forget_indexes(store)
    store.close()


def test_a_batch_added_with_its_hashes_is_not_added_again_at_the_next_resync(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """Fresh vectors given with the hashes they were made from: the next resync finds them
    up to date (without the hashes it reads and adds them all again)."""
    from factbridge.backends.storage.sqlite import SQLiteStorage
    from factbridge.backends.vectors.selection import forget_indexes, stored_vector_index

    rows = _unit(30, 8, 17)
    for given in (True, False):
        store = SQLiteStorage(f"sqlite:///{tmp_path / f'db-{given}.sqlite'}")
        store.migrate()
        store.put_vectors("org", "post", "emb", [(f"p{i}", f"s{i}", rows[i]) for i in range(10)])
        stored_vector_index(store, "org", "post", "emb", 8)
        store.put_vectors("org", "post", "emb", [(f"p{i}", f"s{i}", rows[i]) for i in range(10, 30)])
        stored_vector_index(store, "org", "post", "emb", 8, resync_s=1e9, fresh_ids=[f"p{i}" for i in range(10, 30)], fresh_vectors=rows[10:],
                            fresh_shas=[f"s{i}" for i in range(10, 30)] if given else None)
        reads: list[int] = []
        load = store.load_vectors
        store.load_vectors = lambda org, kind, emb, ids=None, load=load, reads=reads: reads.append(len(ids or [])) or load(org, kind, emb, ids=ids)  # type: ignore[method-assign]
        index = stored_vector_index(store, "org", "post", "emb", 8, resync_s=0.0)
        assert len(index) == 30 and reads == ([] if given else [20]), (given, reads)
        forget_indexes(store)
        store.close()


@pytest.mark.parametrize("choice", ["hnsw", "exact"])
def test_a_resync_reads_the_hashes_only_when_the_vectors_stamp_moved(choice: str, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """A fact-check library's index: each due resync asks the store's `vector_stamp` first and,
    when a vector was written since (here by another process), reads the hashes of what was
    written since the last resync (`vectors_changed`), not every hash; only the first resync
    reads them all (the saved file may be older than the store)."""
    from factbridge.backends.storage.sqlite import SQLiteStorage
    from factbridge.backends.vectors.selection import forget_indexes, stored_vector_index

    rows = _unit(30, 8, 19)
    path = tmp_path / "db.sqlite"
    store, other = SQLiteStorage(f"sqlite:///{path}"), SQLiteStorage(f"sqlite:///{path}")
    store.migrate()
    other.put_vectors("org", "factcheck", "emb", [(f"fc{i}", f"s{i}", rows[i]) for i in range(20)])
    full_reads: list[str] = []
    by_ids: list[list[str]] = []
    read_shas = store.vector_shas

    def counted(org: str, kind: str, emb: str, ids=None, shas=None):  # type: ignore[no-untyped-def]
        if ids is None and shas is None:
            full_reads.append(kind)
        elif ids is not None:
            by_ids.append(sorted(ids))
        return read_shas(org, kind, emb, ids=ids, shas=shas)

    store.vector_shas = counted  # type: ignore[method-assign]
    assert len(stored_vector_index(store, "org", "factcheck", "emb", 8, choice=choice, resync_s=0.0)) == 20 and full_reads == ["factcheck"]
    for _ in range(3):  # due every time, nothing written: no hash read
        assert len(stored_vector_index(store, "org", "factcheck", "emb", 8, choice=choice, resync_s=0.0)) == 20
    assert full_reads == ["factcheck"]
    other.put_vectors("org", "factcheck", "emb", [(f"fc{i}", f"s{i}", rows[i]) for i in range(20, 30)])
    index = stored_vector_index(store, "org", "factcheck", "emb", 8, choice=choice, resync_s=0.0)
    assert len(index) == 30 and full_reads == ["factcheck"], "another process's write: read and added"
    assert by_ids == [sorted(f"fc{i}" for i in range(20, 30))], "the hashes of what was written since, alone"
    other.put_vectors("org", "factcheck", "emb", [("fc3", "s3-again", rows[3])])  # re-embedded from another text
    index = stored_vector_index(store, "org", "factcheck", "emb", 8, choice=choice, resync_s=0.0)
    assert by_ids[-1] == ["fc3"] and full_reads == ["factcheck"] and len(index) == 30
    assert [i for i, _ in index.search(rows[25], 1, "emb")] == ["fc25"]
    forget_indexes(store)
    store.close()
    other.close()


@pytest.mark.parametrize("choice", ["hnsw", "exact"])
def test_stored_vector_index_takes_the_fresh_vectors_the_caller_read(choice: str, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """`fresh_vectors` given: the batch is not read again, and the index holds and answers what
    reading it would have given (the same ids in the same order, a repeated id once)."""
    from factbridge.backends.storage.sqlite import SQLiteStorage
    from factbridge.backends.vectors.selection import stored_vector_index

    rows = _unit(40, 8, 11)
    answers = []
    for given in (False, True):
        store = SQLiteStorage(f"sqlite:///{tmp_path / f'db-{given}.sqlite'}")
        store.migrate()
        store.put_vectors("org", "post", "emb", [(f"p{i:02d}", f"s{i}", rows[i]) for i in range(20)])
        reads: list[int] = []
        original = store.load_vectors
        store.load_vectors = lambda org, kind, emb, ids=None, original=original, reads=reads: (  # type: ignore[method-assign]
            reads.append(len(ids or [])) or original(org, kind, emb, ids=ids))
        stored_vector_index(store, "org", "post", "emb", 8, choice=choice, resync_s=1e9)  # opened and synced: 20
        store.put_vectors("org", "post", "emb", [(f"p{i:02d}", f"s{i}", rows[i]) for i in range(20, 31)])
        fresh = [f"p{i:02d}" for i in (30, 26, 28, 27, 29, 28, 20, 25, 21, 22, 24, 23)]  # unsorted, one id twice
        reads.clear()
        index = stored_vector_index(store, "org", "post", "emb", 8, choice=choice, resync_s=1e9, fresh_ids=fresh,
                                    fresh_vectors=rows[[int(i[1:]) for i in fresh]] if given else None)
        assert reads == ([] if given else [11])
        assert len(index) == 31
        if isinstance(index, HnswIndex):
            assert index._ids[20:] == [f"p{i}" for i in range(20, 31)]  # the keys reading them gives
        answers.append([index.search(q, 31, "emb") for q in rows[:31]])
        with pytest.raises(ValueError, match="3 rows for 2 fresh_ids"):  # rows not lined up with ids: never indexed under the wrong id
            stored_vector_index(store, "org", "post", "emb", 8, choice=choice, resync_s=1e9, fresh_ids=["p20", "p21"], fresh_vectors=rows[:3])
        store.close()
    assert answers[0] == answers[1]


def _unit(n: int, dim: int, seed: int) -> np.ndarray:
    rows = np.random.default_rng(seed).standard_normal((n, dim)).astype(np.float32)
    return rows / np.linalg.norm(rows, axis=1, keepdims=True)


class _FloatsKept:
    """A quantised HnswIndex whose re-rank reads float vectors kept beside it (the storage's role)."""

    def __init__(self, embedder_id: str, dim: int, dtype: str = "f16") -> None:
        self.floats: dict[str, np.ndarray] = {}
        self.index = HnswIndex(embedder_id, dim, dtype=dtype, rerank=lambda ids: np.stack([self.floats[i] for i in ids]))
        self.embedder_id, self.dim = embedder_id, dim

    def add(self, ids, vectors, embedder_id):  # type: ignore[no-untyped-def]
        self.index.add(ids, vectors, embedder_id)
        self.floats.update(zip(ids, np.asarray(vectors, dtype=np.float32).reshape(len(ids), self.dim), strict=True))

    def search(self, query, k, embedder_id):  # type: ignore[no-untyped-def]
        return self.index.search(query, k, embedder_id)

    def __len__(self) -> int:
        return len(self.index)


@pytest.mark.parametrize("dtype", ["f16", "i8"])
@parametrize_vector_index_checks()
def test_quantised_hnsw_index_with_float_rerank(check, dtype: str) -> None:  # type: ignore[no-untyped-def]
    """f16 / i8 storage passes the same checks (exact scores, exact order) thanks to the float re-rank."""
    check(lambda embedder_id, dim: _FloatsKept(embedder_id, dim, dtype))


@pytest.mark.parametrize("dtype", ["f32", "f16", "i8"])
def test_hnsw_graph_recall_per_dtype(dtype: str) -> None:
    """Above EXACT_BELOW the graph answers: recall@10 against exact search stays >= 0.98."""
    rows = _unit(5000, 32, 9)
    ids = [str(i) for i in range(5000)]
    approx, exact = _FloatsKept("emb", 32, dtype), NumpyIndex("emb", 32)
    approx.add(ids, rows, "emb")
    exact.add(ids, rows, "emb")
    queries = _unit(50, 32, 10)
    hits = sum(len({i for i, _ in approx.search(q, 10, "emb")} & {i for i, _ in exact.search(q, 10, "emb")}) for q in queries)
    assert hits / 500 >= 0.98
    got = approx.search(queries[0], 10, "emb")
    assert [s for _, s in got] == pytest.approx([float(rows[int(i)] @ queries[0]) for i, _ in got], abs=1e-6), "float scores"


def test_hnsw_memory_mapped_view_of_a_saved_index(tmp_path) -> None:  # type: ignore[no-untyped-def]
    rows = _unit(5000, 16, 11)
    index = HnswIndex("emb", 16, dtype="f16")
    index.add([f"p{i}" for i in range(5000)], rows, "emb")
    index.save(tmp_path / "posts")
    loaded = HnswIndex.open(tmp_path / "posts", "emb", 16)
    view = HnswIndex.open(tmp_path / "posts", "emb", 16, view=True)
    assert view.read_only and not loaded.read_only and len(view) == 5000 and view.dtype == "f16"
    for q in rows[:20]:
        assert view.search(q, 5, "emb") == loaded.search(q, 5, "emb")
    with pytest.raises(ValueError, match="read-only"):
        view.add(["x"], rows[:1], "emb")
    with pytest.raises(ValueError, match="read-only"):
        view.save(tmp_path / "posts")


def test_hnsw_save_interrupted_keeps_the_last_complete_index(tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    import factbridge.backends.vectors.hnsw as hnsw_module

    rows = _unit(40, 8, 12)
    index = HnswIndex("emb", 8)
    index.add([f"p{i}" for i in range(20)], rows[:20], "emb")
    index.save(tmp_path / "posts")
    first = HnswIndex.saved_files(tmp_path / "posts")
    index.add([f"p{i}" for i in range(20, 40)], rows[20:], "emb")

    def crash(src, dst):  # type: ignore[no-untyped-def]
        raise OSError("disk gone")  # the process dies after writing the new graph, before the commit

    monkeypatch.setattr(hnsw_module.os, "replace", crash)
    with pytest.raises(OSError):
        index.save(tmp_path / "posts")
    monkeypatch.undo()
    reopened = HnswIndex.open(tmp_path / "posts", "emb", 8)
    assert len(reopened) == 20 and HnswIndex.saved_files(tmp_path / "posts") == first, "the previous pair is intact"
    assert reopened.search(rows[5], 1, "emb")[0][0] == "p5"
    index.save(tmp_path / "posts")
    assert len(HnswIndex.open(tmp_path / "posts", "emb", 8)) == 40
    assert [p.name for p in tmp_path.glob("posts.*usearch")] == [p.name for p in HnswIndex.saved_files(tmp_path / "posts")], "old and orphaned generations removed"


def test_stored_vector_index_quantised_reranks_with_stored_floats(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from factbridge.backends.storage.sqlite import SQLiteStorage
    from factbridge.backends.vectors.selection import (
        VectorIndexTuning,
        forget_indexes,
        stored_vector_index,
    )

    store = SQLiteStorage(f"sqlite:///{tmp_path / 'db.sqlite'}")
    store.migrate()
    rows = _unit(300, 8, 13)
    store.put_vectors("org", "post", "emb", [(f"p{i}", f"s{i}", v) for i, v in enumerate(rows)])
    tuning = VectorIndexTuning(m=8, ef_construction=32, ef_search=64, dtype="i8")
    index = stored_vector_index(store, "org", "post", "emb", 8, data_dir=tmp_path, tuning=tuning)
    assert isinstance(index, HnswIndex) and index.dtype == "i8" and index.params["connectivity"] == 8
    got = index.search(rows[7], 5, "emb")
    assert got[0][0] == "p7" and got[0][1] == pytest.approx(1.0, abs=1e-6)
    expected = np.argsort(-(rows @ rows[7]), kind="stable")[:5]
    assert [i for i, _ in got] == [f"p{j}" for j in expected]
    assert [s for _, s in got] == pytest.approx([float(rows[j] @ rows[7]) for j in expected], abs=1e-6)
    forget_indexes(store)
    # a saved index keeps how it was built; search-time tuning still applies
    again = stored_vector_index(store, "org", "post", "emb", 8, data_dir=tmp_path, tuning=VectorIndexTuning(ef_search=32))
    assert isinstance(again, HnswIndex) and again.dtype == "i8" and again.params["expansion_search"] == 32
    store.close()


@pytest.mark.parametrize("dtype", ["f32", "i8"])
def test_hnsw_batch_search_is_each_search_on_the_graph(dtype: str) -> None:
    """Above EXACT_BELOW the index searches its graph: one call for a batch of queries gives
    each query's own answer (quantised: re-ranked per query), removed items left out."""
    from factbridge.backends.vectors.base import search_batch
    from factbridge.backends.vectors.hnsw import EXACT_BELOW

    rng = np.random.default_rng(12)
    rows = rng.standard_normal((EXACT_BELOW + 300, 16)).astype(np.float32)
    rows /= np.linalg.norm(rows, axis=1, keepdims=True)
    ids = [f"p{i}" for i in range(len(rows))]
    index = HnswIndex("emb", 16, dtype=dtype, rerank=lambda wanted: rows[[int(i[1:]) for i in wanted]])
    index.add(ids, rows, "emb")
    index.add(ids[:40], -rows[:40], "emb")  # replaced: their old keys are removed from the graph
    queries = np.vstack([rows[:50], rows[-20:]])
    for k, floor in ((10, None), (200, 0.3)):
        each = [[(i, s) for i, s in index.search(q, k, "emb") if floor is None or s >= floor] for q in queries]
        assert search_batch(index, queries, k, "emb", floor) == each


def test_hnsw_exact_batch_search_is_each_search() -> None:
    """Below EXACT_BELOW (exact search), in two segments, k above the vectors held: one call
    for a batch gives each query's own answer, the hits under the floor left out."""
    from factbridge.backends.vectors.base import search_batch

    rng = np.random.default_rng(5)
    rows = rng.standard_normal((300, 16)).astype(np.float32)
    rows /= np.linalg.norm(rows, axis=1, keepdims=True)
    rows[150:160] = rows[0]  # tied copies
    ids = [f"p{i}" for i in range(len(rows))]
    index = HnswIndex("emb", 16, segment_size=200)
    index.add(ids, rows, "emb")
    index.add(ids[:5], -rows[:5], "emb")  # replaced: their old keys are gone
    queries = np.vstack([rows[:30], -rows[:3]])
    for k, floor in ((10, None), (400, None), (400, 0.2), (50, 2.0)):
        each = [[(i, s) for i, s in index.search(q, k, "emb") if floor is None or s >= floor] for q in queries]
        assert search_batch(index, queries, k, "emb", floor) == each
        assert floor != 2.0 or not any(each)
    assert len(search_batch(index, queries[:1], 400, "emb")[0]) == len(rows)


def test_search_effort_defaults_per_index_and_the_setting_overrides_both(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """`vector_ef_search` unset: 256 for usearch, 600 for pgvector (its one graph needs more
    effort for the same recall at a million); set, it is what both use."""
    from factbridge.backends.storage.sqlite import SQLiteStorage
    from factbridge.backends.vectors.selection import (
        EF_SEARCH,
        VectorIndexTuning,
        forget_indexes,
        stored_vector_index,
    )
    from factbridge.settings import load_settings

    assert load_settings(env={}).vector_ef_search is None
    assert load_settings(env={"FACTBRIDGE_VECTOR_EF_SEARCH": "400"}).vector_ef_search == 400
    assert load_settings(env={"FACTBRIDGE_VECTOR_EF_SEARCH": ""}).vector_ef_search is None
    default, set_to = VectorIndexTuning.from_settings(load_settings(env={})), VectorIndexTuning(ef_search=400)
    assert (default.search_effort("usearch"), default.search_effort("pgvector")) == (EF_SEARCH["usearch"], EF_SEARCH["pgvector"]) == (256, 600)
    assert set_to.search_effort("usearch") == set_to.search_effort("pgvector") == 400
    assert (default.build_effort("usearch"), default.build_effort("pgvector")) == (64, 128)
    assert VectorIndexTuning(ef_construction=80).build_effort("pgvector") == 80
    assert load_settings(env={"FACTBRIDGE_VECTOR_EF_CONSTRUCTION": "96"}).vector_ef_construction == 96
    with pytest.raises(ConfigError, match="at least 2"):
        VectorIndexTuning(ef_search=1)
    store = SQLiteStorage(f"sqlite:///{tmp_path / 'db.sqlite'}")
    store.migrate()
    for tuning, effort in ((default, 256), (set_to, 400)):
        forget_indexes(store)
        embedded = stored_vector_index(store, "org", "post", "emb", 8, data_dir=tmp_path, tuning=tuning)
        assert isinstance(embedded, HnswIndex) and embedded.params["expansion_search"] == effort and embedded.params["expansion_add"] == 64
    store.close()


@pytest.mark.postgres
def test_pgvector_search_effort_default(pg_store) -> None:  # type: ignore[no-untyped-def]
    from factbridge.backends.vectors.pgvector import PgVectorIndex
    from factbridge.backends.vectors.selection import VectorIndexTuning, stored_vector_index

    for tuning, effort in ((VectorIndexTuning(), 600), (VectorIndexTuning(ef_search=400), 400)):
        pg = stored_vector_index(pg_store, "org", "factcheck", "emb", 8, tuning=tuning)
        assert isinstance(pg, PgVectorIndex) and pg.hnsw and pg.ef_search == effort
        assert pg.query(np.ones(8, dtype=np.float32), 10)[2]["hnsw.ef_search"] == str(effort)
    # the graph built with ef_construction 128 (a new index; an existing one keeps its build)
    definition = pg_store._read(lambda c: c.execute("SELECT indexdef FROM pg_indexes WHERE indexname = %s", (pg.hnsw_index_name,)).fetchone()[0])
    assert "ef_construction='128'" in definition.replace(" ", ""), definition
