"""Matching a large library on PostgreSQL without loading its vectors: dense retrieval goes
through pgvector HNSW (the library's centred vectors stored as their own kind)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from factbridge.backends.vectors.pgvector import PgVectorIndex
from factbridge.models import Post
from factbridge.pipeline.centering import LanguageCentering
from factbridge.pipeline.ingest import embed_posts, import_factcheck_files, ingest_file
from factbridge.pipeline.matching import Matcher, index_factchecks
from factbridge.services import Services
from factbridge.settings import load_settings

SAMPLE = Path(__file__).resolve().parent.parent / "src" / "factbridge" / "data" / "sample"
ORG = "default"


def _load_sample(services: Services) -> list[Post]:
    """The sample library, indexed, and the sample posts, stored with their vectors."""
    storage, embedder = services.storage, services.embedder
    import_factcheck_files(storage, ORG, [SAMPLE / "factchecks.jsonld"], services.languages)
    index_factchecks(storage, embedder, ORG)
    posts = ingest_file(storage, ORG, SAMPLE / "posts.jsonl", services.languages).posts
    embed_posts(storage, embedder, ORG, posts)
    return posts


def _assert_same_rankings(stored: Matcher, memory: Matcher, posts: list[Post]) -> None:
    agree = 0
    for s, m in zip(stored.match_posts(posts), memory.match_posts(posts), strict=True):
        assert [c.factcheck_id for c in s.candidates][:1] == [c.factcheck_id for c in m.candidates][:1] or not m.candidates
        agree += [c.factcheck_id for c in s.candidates] == [c.factcheck_id for c in m.candidates]
    assert agree >= len(posts) * 0.8, "the same rankings but for ties among unrelated fact-checks"


@pytest.mark.postgres
def test_large_library_on_postgres_is_searched_in_the_database(postgres_url: str, tmp_path: Path) -> None:
    settings = load_settings(env={}, overrides={
        "data_dir": str(tmp_path), "storage_url": postgres_url, "embedder": "hashing", "embed_cache": "off",
        "match_fusion": "rrf", "match_memory_max": 0,
    })
    with Services(settings) as services:
        storage, embedder = services.storage, services.embedder
        posts = _load_sample(services)

        stored = services.matcher(ORG)
        assert stored.dense_index == "stored" and isinstance(stored.search_index, PgVectorIndex)
        assert len(stored.index) == 0, "no library vector is loaded into the process"
        memory = Matcher(storage, embedder, ORG, fusion="rrf")
        assert len(memory) == len(stored) > 0
        _assert_same_rankings(stored, memory, posts)

        # centred library vectors are stored once as their own kind, and used
        dim = embedder.dim
        rng = np.random.default_rng(0)
        mean = (rng.standard_normal(dim) * 0.01).astype(np.float32)
        centering = LanguageCentering("test-centering-1", embedder.id, {"passage": {"*": mean}, "query": {"*": mean}})
        centred = Matcher(storage, embedder, ORG, fusion="rrf", centering=centering, dense_index="stored")
        kind = "factcheck~test-centering-1"
        assert len(storage.vector_shas(ORG, kind, embedder.id)) == len(centred)
        assert centred.search_index is not None and centred.search_index.kind == kind
        plain = Matcher(storage, embedder, ORG, fusion="rrf", centering=centering)
        for s, m in zip(centred.match_posts(posts[:5]), plain.match_posts(posts[:5]), strict=True):
            assert [c.factcheck_id for c in s.candidates][:1] == [c.factcheck_id for c in m.candidates][:1] or not m.candidates


def test_large_library_on_sqlite_is_searched_through_a_saved_hnsw_index(tmp_path: Path) -> None:
    """SQLite: a library above match_memory_max is searched through a usearch index (f16,
    re-ranked with the stored floats) saved in data_dir, not loaded into NumPy."""
    from factbridge.backends.vectors.hnsw import HnswIndex

    settings = load_settings(env={}, overrides={
        "data_dir": str(tmp_path), "storage_url": f"sqlite:///{tmp_path / 'db.sqlite'}", "embedder": "hashing", "embed_cache": "off",
        "match_fusion": "rrf", "match_memory_max": 0, "vector_dtype": "f16",
    })
    with Services(settings) as services:
        storage, embedder = services.storage, services.embedder
        posts = _load_sample(services)

        stored = services.matcher(ORG)
        assert stored.dense_index == "stored" and isinstance(stored.search_index, HnswIndex)
        assert stored.search_index.dtype == "f16" and len(stored.index) == 0, "no library vector is loaded into NumPy"
        assert list((tmp_path / "indexes").glob("factcheck-*.json")), "the index is saved in data_dir/indexes"
        memory = Matcher(storage, embedder, ORG, fusion="rrf")
        _assert_same_rankings(stored, memory, posts)
        size = len(stored.search_index)
    with Services(settings) as again:  # another process: opens the saved index
        reopened = again.matcher(ORG)
        assert isinstance(reopened.search_index, HnswIndex) and len(reopened.search_index) == size
