"""Embedding throughput: posts cut to the encoder's token budget, the same or near-same
text never embedded twice."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest

from factbridge.backends.embedders.base import Progress
from factbridge.backends.embedders.cache import CachedEmbedder, EmbeddingCache, text_sha
from factbridge.backends.embedders.hashing import HashingEmbedder
from factbridge.backends.storage.sqlite import SQLiteStorage
from factbridge.models import Post
from factbridge.pipeline.ingest import embed_posts
from factbridge.pipeline.prepare import prepare_post

ORG = "org"
BASE = "Bộ Y tế cảnh báo tin giả về vắc-xin gây vô sinh lan truyền trên mạng xã hội từ sáng nay, người dân không nên chia sẻ"


class CountingEmbedder(HashingEmbedder):
    def __init__(self) -> None:
        super().__init__(dim=64)
        self.seen: list[str] = []

    def encode_queries(self, texts: Sequence[str], progress: Progress | None = None) -> np.ndarray:
        self.seen.extend(texts)
        return super().encode_queries(texts, progress)


def _post(pid: str, text: str) -> Post:
    return prepare_post(Post(id=pid, text=text, language="vi"))


def test_same_and_near_same_texts_are_embedded_once(storage: SQLiteStorage) -> None:
    emb = CountingEmbedder()
    posts = [
        _post("a", BASE),
        _post("b", BASE),  # the same text
        _post("c", BASE + " https://bit.ly/x1 !!"),  # a copy with a link and punctuation added
        _post("d", "Giá xăng tăng mạnh từ ngày mai theo thông báo của liên bộ Công Thương và Tài chính"),
    ]
    ticks: list[int] = []
    summary = embed_posts(storage, emb, ORG, posts, ticks.append, near_duplicate=0.9)
    assert summary == {"embedded": 2, "reused": 2}
    assert len(emb.seen) == 2 and sum(ticks) == 4, "progress counts every post, embedded or not"
    ids, matrix = storage.load_vectors(ORG, "post", emb.id)
    vec = dict(zip(ids, matrix, strict=True))
    assert set(vec) == {"a", "b", "c", "d"}
    assert np.allclose(vec["a"], vec["b"]) and np.allclose(vec["a"], vec["c"])
    assert not np.allclose(vec["a"], vec["d"])

    # a later batch: a post repeating a stored text reuses the stored vector
    emb.seen.clear()
    assert embed_posts(storage, emb, ORG, [_post("e", BASE)], near_duplicate=0.9) == {"embedded": 0, "reused": 1}
    assert emb.seen == []
    # nothing changed: nothing to do (idempotent)
    assert embed_posts(storage, emb, ORG, posts, near_duplicate=0.9) == {"embedded": 0, "reused": 0}


def test_near_duplicate_off_embeds_every_distinct_text(storage: SQLiteStorage) -> None:
    emb = CountingEmbedder()
    posts = [_post("a", BASE), _post("b", BASE), _post("c", BASE + " https://bit.ly/x1 !!")]
    assert embed_posts(storage, emb, ORG, posts, near_duplicate=0) == {"embedded": 2, "reused": 1}
    ids, matrix = storage.load_vectors(ORG, "post", emb.id)
    vec = dict(zip(ids, matrix, strict=True))
    assert np.allclose(vec["a"], vec["b"])


@pytest.fixture(scope="module")
def clipped_e5() -> object:
    from factbridge.backends.embedders.e5 import E5Embedder

    return E5Embedder(threads=2, batch_size=16, max_query_tokens=32)


def test_e5_reads_posts_up_to_the_token_budget(clipped_e5) -> None:  # type: ignore[no-untyped-def]
    long_text = " ".join([BASE] * 6)
    short = "Vaccine causes infertility?"
    clipped = clipped_e5.clip_queries([long_text, short])
    assert clipped[1] == short, "a text within the budget is untouched"
    assert long_text.startswith(clipped[0]) and len(clipped[0]) < len(long_text)
    tokens = clipped_e5._model.token_count(clipped[0], True)
    assert 24 <= tokens <= 32, "cut close under the budget"
    vecs = clipped_e5.encode_queries([long_text, clipped[0], short])
    assert float(vecs[0] @ vecs[1]) > 0.999, "the query vector is the clipped text's"
    # passages (fact-checks) are read whole
    docs = clipped_e5.encode_documents([long_text, clipped[0]])
    assert float(docs[0] @ docs[1]) < 0.999
    # the vector does not depend on where a text sits in the batch (batches are sorted by length)
    alone = clipped_e5.encode_queries([short])
    assert float(alone[0] @ vecs[2]) > 0.9999


def test_cache_keys_clipped_queries_by_what_was_embedded(clipped_e5, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    long_text = " ".join([BASE] * 6)
    cache = EmbeddingCache(tmp_path / "c.sqlite")
    cached = CachedEmbedder(clipped_e5, cache)
    first = cached.encode_queries([long_text])
    # a different tail beyond the budget is the same query: served from the cache
    same_start = clipped_e5.clip_queries([long_text + " khác"])[0]
    hit = cache.get_many(cached.id, "query", [text_sha(same_start)])
    assert len(hit) == 1
    assert np.allclose(next(iter(hit.values())), first[0], atol=2e-3)
    cache.close()
