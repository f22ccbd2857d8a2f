"""NumpyIndex and PgVectorIndex pass the same vector-index checks."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest

from factbridge.backends.vectors.hnsw import HnswIndex
from factbridge.backends.vectors.numpy_index import NumpyIndex
from factbridge.errors import EmbedderMismatch
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
@pytest.mark.parametrize("hnsw", [False, True], ids=["exact", "hnsw"])
@parametrize_vector_index_checks()
def test_pgvector_index(check, hnsw: bool, postgres_factory) -> None:  # type: ignore[no-untyped-def]
    from factbridge.backends.vectors.pgvector import PgVectorIndex

    stores = []

    def factory(embedder_id: str, dim: int) -> PgVectorIndex:
        store = postgres_factory()
        stores.append(store)
        return PgVectorIndex(store, "org", "factcheck", embedder_id, dim, hnsw=hnsw)

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
def test_pgvector_hnsw_index_is_used(pg_store) -> None:  # type: ignore[no-untyped-def]
    from factbridge.backends.vectors.pgvector import PgVectorIndex

    rows = np.random.default_rng(2).standard_normal((200, 8)).astype(np.float32)
    index = PgVectorIndex(pg_store, "org", "post", "emb", 8, hnsw=True)
    index.add([f"p{i}" for i in range(200)], rows, "emb")
    query = "[" + ",".join("0.1" for _ in range(8)) + "]"
    plan = pg_store._read(
        lambda c: c.execute(
            "EXPLAIN SELECT item_id FROM vectors WHERE embedder = 'emb' AND org = 'org' AND kind = 'post'"
            f" ORDER BY (vec::vector(8)) <#> '{query}'::vector(8) LIMIT 5"
        ).fetchall(),
        # a tiny table is cheaper to sort; this shows the query shape can use the partial HNSW index
        local_settings={"enable_seqscan": "off", "enable_sort": "off"},
    )
    assert index.hnsw_index_name in " ".join(r[0] for r in plan)


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
    assert saved.with_name(saved.name + ".usearch").exists() == (choice == "hnsw")
    # a new process (nothing kept in memory) with one post changed and one added
    forget_indexes(store)
    store.put_vectors("org", "post", "emb", [("p4", "changed", -rows[4]), ("p30", "s30", rows[0])])
    reads.clear()
    again = stored_vector_index(store, "org", "post", "emb", 8, choice=choice, data_dir=tmp_path)
    assert len(again) == 31
    assert reads == ([2] if choice == "hnsw" else [31]), "the saved index reads only what changed since"
    assert again.search(-rows[4], 1, "emb")[0][0] == "p4"
    store.close()
