"""On PostgreSQL, triage's repeat search of a post asks only for the posts of its window
(`within`): a text posted many times long ago, and again now, must not have its recent copies
crowded out of the nearest `k` by the old ones."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from factbridge.backends.vectors.base import search_above, search_batch, time_stamp
from factbridge.models import Post

pytestmark = pytest.mark.postgres

NOW = datetime(2026, 11, 30, 12, tzinfo=UTC)


def _copies(n: int, seed: int, base: np.ndarray, noise: float) -> np.ndarray:
    rows = base[None, :] + noise * np.random.default_rng(seed).standard_normal((n, len(base))).astype(np.float32)
    return (rows / np.linalg.norm(rows, axis=1, keepdims=True)).astype(np.float32)


@pytest.mark.parametrize("hnsw", [False, True, "halfvec"], ids=["exact", "hnsw", "hnsw-halfvec"])
def test_the_window_is_searched_not_the_whole_history(hnsw: bool | str, postgres_factory) -> None:  # type: ignore[no-untyped-def]
    from factbridge.backends.vectors.pgvector import PgVectorIndex

    store = postgres_factory()
    try:
        base = np.random.default_rng(0).standard_normal(16).astype(np.float32)
        old = _copies(300, 1, base, 0.02)  # the same chain message, 300 times, three months ago
        recent = _copies(6, 2, base, 0.05)  # and six times this week: a little further from one another
        other = _copies(50, 3, -base, 0.3)  # unrelated posts this week
        posts = [Post(id=f"old{i}", text="x", created_at=NOW - timedelta(days=90, minutes=i)) for i in range(300)]
        posts += [Post(id=f"new{i}", text="x", created_at=NOW - timedelta(days=i)) for i in range(6)]
        posts += [Post(id=f"other{i}", text="x", created_at=NOW - timedelta(hours=i)) for i in range(50)]
        posts += [Post(id="untimed", text="x")]
        store.upsert_posts("org", posts)
        rows = np.concatenate([old, recent, other, recent[:1]])
        store.put_vectors("org", "post", "emb", [(p.id, "s", v) for p, v in zip(posts, rows, strict=True)])
        store.put_vectors("org", "post", "emb", [("no-post-row", "s", recent[1])])  # a vector whose post is not stored: no time known
        index = PgVectorIndex(store, "org", "post", "emb", 16, hnsw=bool(hnsw), halfvec=hnsw == "halfvec", ef_search=40)
        window = timedelta(hours=48 * 7)
        within = (time_stamp(NOW - window), time_stamp(NOW + window))
        for search in (search_batch, search_above):
            [hits] = search(index, recent[:1], 20, "emb", 0.5, within)
            found = {i for i, _ in hits}
            assert {f"new{i}" for i in range(6)} <= found, (search.__name__, sorted(found))
            assert {"untimed", "no-post-row"} <= found, "a hit without a known time is kept, as the embedded index keeps it"
            assert not any(i.startswith("old") for i in found), "the window's span, not three months ago"
            [everything] = search(index, recent[:1], 20, "emb", 0.5, None)
            assert sum(i.startswith("old") for i, _ in everything) >= 10, "without a span: the whole history, as before"
        # a row whose narrow first pass is all above the score is asked for all `k`
        [narrow], [wide] = search_above(index, old[:1], 200, "emb", 0.5, None), search_batch(index, old[:1], 200, "emb", 0.5, None)
        assert len(narrow) == 200 and {i for i, _ in narrow} == {i for i, _ in wide} and [s for _, s in narrow] == sorted((s for _, s in narrow), reverse=True)
    finally:
        store.close()


def test_the_span_query_walks_only_its_periods_graphs(postgres_factory) -> None:  # type: ignore[no-untyped-def]
    """The query shape with the posts joined for their time orders by the HNSW graphs of the
    periods the span covers, and of the posts of no known time, and by no other (a tiny table
    is cheaper to sort: the planner is told not to, to show it can)."""
    import re

    from factbridge.backends.storage.postgres import post_period
    from factbridge.backends.vectors.pgvector import PgVectorIndex

    store = postgres_factory()
    try:
        rows = np.random.default_rng(2).standard_normal((200, 8)).astype(np.float32)
        posts = [Post(id=f"p{i}", text="x", created_at=NOW - timedelta(hours=7 * i)) for i in range(200)]  # 58 days
        store.upsert_posts("org", posts)
        index = PgVectorIndex(store, "org", "post", "emb", 8, hnsw=True)
        index.add([f"p{i}" for i in range(200)], rows, "emb")
        span = store.post_period_s()
        every = {post_period(p.created_at, span) for p in posts}
        assert len(every) >= 8 and every <= store.post_periods()
        from psycopg import sql

        start = NOW - timedelta(days=1)
        statement, params, settings = index.query(rows[0], 5, (time_stamp(start), time_stamp(NOW)))
        plan = "\n".join(r[0] for r in store._read(lambda c: c.execute(sql.SQL("EXPLAIN ") + statement, params).fetchall(),
                                                     local_settings={**settings, "enable_seqscan": "off", "enable_sort": "off"}))
        walked = set(re.findall(r"Index Scan using (\S+) on (post_vectors_\w+)", plan))
        window = {f"post_vectors_{p}" for p in {post_period(start, span), post_period(NOW, span)}} | {"post_vectors_unknown"}
        assert {table for _index, table in walked} == window, plan
        assert "Seq Scan on post_vectors" not in plan and "posts" in plan, plan
        graphs = {r[0] for r in store._read(lambda c: c.execute(  # each period's part of the partitioned HNSW index
            "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid WHERE i.inhparent = %s::regclass",
            (index.hnsw_index_name,)).fetchall())}
        assert {index_name for index_name, _table in walked} <= graphs, (graphs, walked)
    finally:
        store.close()
