"""NumpyIndex and PgVectorIndex pass the same vector-index checks."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest

from factbridge.backends.vectors.numpy_index import NumpyIndex
from factbridge.errors import EmbedderMismatch
from factbridge.testing.vector_index_conformance import parametrize_vector_index_checks


@parametrize_vector_index_checks()
def test_numpy_index(check) -> None:  # type: ignore[no-untyped-def]
    check(NumpyIndex)


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
