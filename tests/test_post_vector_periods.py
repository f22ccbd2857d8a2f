"""PostgreSQL keeps a copy of each post vector in `post_vectors`, partitioned by the period of
the post's time (storage migration 8), so that the vector index's search of a window walks the
graphs of that window's periods only. These tests hold the copies to the vectors of record:
one copy per post and embedder, in its post's period, whatever order posts and vectors come
in, whoever makes the period's partition, and for a store made before the periods."""

from __future__ import annotations

import re
import threading
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from factbridge.backends.vectors.base import search_batch, time_stamp
from factbridge.models import Post

pytestmark = pytest.mark.postgres

NOW = datetime(2026, 11, 30, 12, tzinfo=UTC)


def _copies(store) -> dict[tuple[str, str], list[int]]:  # type: ignore[no-untyped-def]
    """(item, embedder) -> the periods its copies are in (one, unless something went wrong)."""
    out: dict[tuple[str, str], list[int]] = {}
    for item_id, embedder, period in store._read(lambda c: c.execute("SELECT item_id, embedder, period FROM post_vectors").fetchall()):
        out.setdefault((item_id, embedder), []).append(int(period))
    return out


def _unit(n: int, seed: int, dim: int = 8) -> np.ndarray:
    rows = np.random.default_rng(seed).standard_normal((n, dim)).astype(np.float32)
    return rows / np.linalg.norm(rows, axis=1, keepdims=True)


def test_the_period_in_python_is_the_databases(postgres_factory) -> None:  # type: ignore[no-untyped-def]
    from factbridge.backends.storage.postgres import post_period

    store = postgres_factory()
    try:
        span = store.post_period_s()
        assert span == 7 * 86400, "a week unless the store says otherwise"
        edge = datetime(1970, 1, 1, tzinfo=UTC) + timedelta(seconds=span * 2950)
        times = [None, edge, edge - timedelta(microseconds=1), edge + timedelta(microseconds=1), NOW,
                 datetime(1969, 12, 31, 23, 59, tzinfo=UTC), datetime(1900, 1, 1, tzinfo=UTC),
                 datetime(2026, 3, 1, 7, tzinfo=UTC).astimezone(__import__("zoneinfo").ZoneInfo("Asia/Phnom_Penh"))]
        found = store._read(lambda c: [c.execute("SELECT factbridge_period(%s, %s)", (t, span)).fetchone()[0] for t in times])
        assert found == [post_period(t, span) for t in times]
        assert found[:4] == [-1, 2950, 2949, 2950] and found[5:7] == [0, 0]
    finally:
        store.close()


def test_each_vector_has_one_copy_in_its_posts_period(postgres_factory) -> None:  # type: ignore[no-untyped-def]
    from factbridge.backends.storage.postgres import post_period

    store = postgres_factory()
    try:
        span = store.post_period_s()
        posts = [Post(id=f"p{i}", text="x", created_at=NOW - timedelta(days=3 * i)) for i in range(20)] + [Post(id="untimed", text="x")]
        store.upsert_posts("org", posts)
        vecs = _unit(len(posts) + 1, 0)
        store.put_vectors("org", "post", "emb", [(p.id, "s", v) for p, v in zip(posts, vecs, strict=False)])
        store.put_vectors("org", "post", "emb", [("early", "s", vecs[-1])])  # its post comes later
        store.put_vectors("org", "post", "other-emb", [("p0", "s", vecs[0][:4])])  # another embedder: its own copy
        store.put_vectors("org", "factcheck", "emb", [("f0", "s", vecs[0])])  # fact-checks: no copy
        want = {(p.id, "emb"): [post_period(p.created_at, span)] for p in posts}
        want |= {("early", "emb"): [-1], ("p0", "other-emb"): [post_period(NOW, span)]}
        assert _copies(store) == want
        # the same vectors again change nothing; a new vector replaces the copy's
        store.put_vectors("org", "post", "emb", [(p.id, "s", v) for p, v in zip(posts, vecs, strict=False)])
        store.put_vectors("org", "post", "emb", [("p1", "s2", vecs[5])])
        assert _copies(store) == want
        _ids, stored = store.load_vectors("org", "post", "emb", ids=["p1"])
        copy = store._read(lambda c: c.execute("SELECT vec::text FROM post_vectors WHERE item_id = 'p1' AND embedder = 'emb'").fetchone()[0])
        assert np.allclose(np.array(copy.strip("[]").split(","), dtype=np.float32), stored[0]) and np.allclose(stored[0], vecs[5])

        # the post of "early" arrives with a time: the copy goes to that period
        store.upsert_posts("org", [Post(id="early", text="x", created_at=NOW - timedelta(days=40))])
        # p2's time is corrected into another period; p3's text changes but its time does not
        store.upsert_posts("org", [Post(id="p2", text="x", created_at=NOW - timedelta(days=200)),
                                   Post(id="p3", text="changed", created_at=posts[3].created_at),
                                   Post(id="untimed", text="x", created_at=NOW)])
        want[("early", "emb")] = [post_period(NOW - timedelta(days=40), span)]
        want[("p2", "emb")] = [post_period(NOW - timedelta(days=200), span)]
        want[("untimed", "emb")] = [post_period(NOW, span)]
        assert _copies(store) == want
        assert {p for ps in want.values() for p in ps if p >= 0} <= store.post_periods()
    finally:
        store.close()


def test_a_moved_post_is_found_in_its_new_window_only(postgres_factory) -> None:  # type: ignore[no-untyped-def]
    from factbridge.backends.vectors.pgvector import PgVectorIndex

    store = postgres_factory()
    try:
        vecs = _unit(30, 1)
        posts = [Post(id=f"p{i}", text="x", created_at=NOW - timedelta(days=60 + i)) for i in range(30)]
        store.upsert_posts("org", posts)
        store.put_vectors("org", "post", "emb", [(p.id, "s", v) for p, v in zip(posts, vecs, strict=True)])
        index = PgVectorIndex(store, "org", "post", "emb", 8, hnsw=True, ef_search=40)
        window = (time_stamp(NOW - timedelta(days=2)), time_stamp(NOW))
        assert search_batch(index, vecs[:1], 10, "emb", None, window) == [[]]
        store.upsert_posts("org", [Post(id="p0", text="x", created_at=NOW - timedelta(hours=1))])
        [[(found, score)]] = search_batch(index, vecs[:1], 10, "emb", None, window)
        assert found == "p0" and score == pytest.approx(1.0, abs=1e-5)
        [old] = search_batch(index, vecs[:1], 10, "emb", None, (time_stamp(NOW - timedelta(days=90)), time_stamp(NOW - timedelta(days=50))))
        assert "p0" not in {i for i, _ in old} and len(old) == 10
    finally:
        store.close()


def test_the_move_and_the_lookups_read_only_the_periods_they_name(postgres_factory) -> None:  # type: ignore[no-untyped-def]
    """The statements that find a post's copies by id say which periods to read, so the planner
    leaves the other partitions out (reading each would cost by how many periods there are)."""
    store = postgres_factory()
    try:
        posts = [Post(id=f"p{i}", text="x", created_at=NOW - timedelta(days=7 * i)) for i in range(12)]
        store.upsert_posts("org", posts)
        store.put_vectors("org", "post", "emb", [(p.id, "s", v) for p, v in zip(posts, _unit(12, 2), strict=True)])
        assert len(store.post_periods()) >= 12
        plan = store._read(lambda c: "\n".join(r[0] for r in c.execute(
            "EXPLAIN DELETE FROM post_vectors v USING posts p WHERE v.org = %s AND v.item_id = ANY(%s)"
            " AND v.period = ANY(%s) AND p.org = v.org AND p.id = v.item_id AND v.period <> factbridge_period(p.created_at, %s)",
            ("org", ["p1"], [-1], store.post_period_s())).fetchall()))
        assert set(re.findall(r"\bon (post_vectors_\w+)", plan)) == {"post_vectors_unknown"}, plan
    finally:
        store.close()


def test_two_workers_make_a_period_once(postgres_factory) -> None:  # type: ignore[no-untyped-def]
    """Two storage handles (as two workers) write posts of the same new periods at once; and one
    whose knowledge of the partitions is stale finds the other's partition and writes there."""
    first = postgres_factory()
    second = type(first)(first.url)
    try:
        assert second.post_periods() == first.post_periods() == set()
        errors: list[BaseException] = []
        barrier = threading.Barrier(2)

        def work(store, name: str) -> None:  # type: ignore[no-untyped-def]
            try:
                posts = [Post(id=f"{name}{i}", text="x", created_at=NOW - timedelta(days=i)) for i in range(40)]
                barrier.wait()
                store.upsert_posts("org", posts)
                store.put_vectors("org", "post", "emb", [(p.id, "s", v) for p, v in zip(posts, _unit(40, len(name)), strict=True)])
            except BaseException as exc:  # noqa: BLE001 - reported below
                errors.append(exc)

        threads = [threading.Thread(target=work, args=(s, n)) for s, n in ((first, "a"), (second, "bb"))]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert not errors, errors
        copies = _copies(first)
        assert len(copies) == 80 and all(len(p) == 1 and p[0] >= 0 for p in copies.values())

        # `second` knows the partitions it has seen; `first` makes a new one; `second` writes a
        # vector of a post in it without having been told
        known = set(second.post_periods())
        first.upsert_posts("org", [Post(id="late", text="x", created_at=NOW + timedelta(days=30))])
        assert second.post_periods() == known
        second.put_vectors("org", "post", "emb", [("late", "s", _unit(1, 9)[0])])
        assert len(_copies(first)[("late", "emb")]) == 1 and len(second.post_periods()) == len(known) + 1
    finally:
        second.close()
        first.close()


def test_a_store_made_before_the_periods_is_migrated(postgres_factory) -> None:  # type: ignore[no-untyped-def]
    """A schema-7 store with post and fact-check vectors and their HNSW graphs over `vectors`:
    the migration copies every post vector into its period and drops the graph over every post
    (the index makes one per period); the fact-checks' graph stays."""
    import psycopg

    from factbridge.backends.storage.base import SCHEMA_VERSION
    from factbridge.backends.storage.postgres import MIGRATIONS, PostgresStorage, post_period
    from factbridge.backends.vectors.pgvector import PgVectorIndex

    url = postgres_factory.new_database()
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
        for statement in MIGRATIONS[:7]:
            conn.execute(statement)
        conn.execute("INSERT INTO meta VALUES ('schema_version', '7')")
        conn.execute("INSERT INTO embedders VALUES ('emb', 8, now())")
        vecs = _unit(41, 3)
        for i in range(40):
            created = None if i == 39 else NOW - timedelta(days=5 * i)
            conn.execute("INSERT INTO posts (org, id, created_at, doc, sha, ingested_at, updated_at) VALUES ('org', %s, %s, '{}', 's', now(), now())",
                         (f"p{i}", created))
            conn.execute("INSERT INTO vectors (org, kind, item_id, embedder, text_sha, vec) VALUES ('org', 'post', %s, 'emb', 's', %s::vector)",
                         (f"p{i}", str(vecs[i].tolist())))
        conn.execute("INSERT INTO vectors (org, kind, item_id, embedder, text_sha, vec) VALUES ('org', 'post', 'orphan', 'emb', 's', %s::vector)",
                     (str(vecs[40].tolist()),))
        conn.execute("INSERT INTO vectors (org, kind, item_id, embedder, text_sha, vec) VALUES ('org', 'factcheck', 'f0', 'emb', 's', %s::vector)",
                     (str(vecs[0].tolist()),))
    store = PostgresStorage(url)
    try:
        # the graphs a schema-7 index made: over every post, and over the fact-checks
        old_post = PgVectorIndex.__new__(PgVectorIndex)
        old_post.embedder_id, old_post.dim, old_post.kind, old_post.halfvec = "emb", 8, "post", False
        store._write(lambda c: c.execute(
            f"CREATE INDEX {old_post.hnsw_index_name} ON vectors USING hnsw ((vec::vector(8)) vector_ip_ops) WHERE embedder = 'emb' AND kind = 'post'"))
        PgVectorIndex(store, "org", "factcheck", "emb", 8, hnsw=True)
        store.migrate()
        assert store.schema_version() == SCHEMA_VERSION == 8
        span = store.post_period_s()
        want = {(f"p{i}", "emb"): [post_period(None if i == 39 else NOW - timedelta(days=5 * i), span)] for i in range(40)}
        want[("orphan", "emb")] = [-1]
        assert _copies(store) == want
        indexes = {r[0]: r[1] for r in store._read(lambda c: c.execute(
            "SELECT indexname, tablename FROM pg_indexes WHERE schemaname = current_schema() AND indexdef LIKE '%hnsw%'").fetchall())}
        fc_graph = PgVectorIndex(store, "org", "factcheck", "emb", 8).hnsw_index_name
        assert indexes.get(fc_graph) == "vectors" and not any(t == "vectors" and n != fc_graph for n, t in indexes.items())
        store.migrate()  # again: nothing changes
        assert _copies(store) == want
        index = PgVectorIndex(store, "org", "post", "emb", 8, hnsw=True, ef_search=40)
        [hits] = search_batch(index, vecs[3:4], 5, "emb", None, (time_stamp(NOW - timedelta(days=16)), time_stamp(NOW - timedelta(days=14))))
        assert [i for i, _ in hits][:1] == ["p3"] and {i for i, _ in hits} <= {"p3", "p39", "orphan"}
    finally:
        store.close()


def test_the_period_is_a_setting_for_a_new_store_only(postgres_url, tmp_path, caplog) -> None:  # type: ignore[no-untyped-def]
    """`vector_period_hours` fixes a new store's period; a store holding post vectors keeps its own
    (its partitions are numbered in it) and says so."""
    import dataclasses

    from factbridge.services import Services
    from factbridge.settings import Settings

    base = Settings(data_dir=str(tmp_path), storage_url=postgres_url, embedder="hashing", embed_cache="off")
    daily = Services(dataclasses.replace(base, vector_period_hours=24))
    try:
        store = daily.storage
        assert store.post_period_s() == 86400
        store.upsert_posts("org", [Post(id=f"p{i}", text="x", created_at=NOW - timedelta(days=i)) for i in range(3)])
        store.put_vectors("org", "post", "emb", [(f"p{i}", "s", v) for i, v in enumerate(_unit(3, 4))])
        assert sorted(p for ps in _copies(store).values() for p in ps) == sorted(int(NOW.timestamp()) // 86400 - i for i in range(3))
    finally:
        daily.close()
    weekly = Services(base)
    try:
        with caplog.at_level("WARNING"):
            assert weekly.storage.post_period_s() == 86400
        assert "keeps its post vectors by periods of 24 h (vector_period_hours=168" in caplog.text
    finally:
        weekly.close()


def test_an_index_in_the_catalog_is_not_made_again(postgres_factory) -> None:  # type: ignore[no-untyped-def]
    """A search's index (made per batch) only reads the catalog once the graph is there: CREATE
    INDEX IF NOT EXISTS would take its lock on every period's partition first."""
    from factbridge.backends.vectors.pgvector import PgVectorIndex

    first = postgres_factory()
    second = type(first)(first.url)
    try:
        store_posts = [Post(id=f"p{i}", text="x", created_at=NOW - timedelta(days=9 * i)) for i in range(5)]
        first.upsert_posts("org", store_posts)
        PgVectorIndex(first, "org", "post", "emb", 8, hnsw=True)

        def refuse(fn):  # type: ignore[no-untyped-def]
            raise AssertionError("a write")

        second._write = refuse
        for _ in range(3):
            PgVectorIndex(second, "org", "post", "emb", 8, hnsw=True)
        with pytest.raises(AssertionError, match="a write"):  # another graph is still made
            PgVectorIndex(second, "org", "post", "emb", 8, hnsw=True, halfvec=True)
    finally:
        second.close()
        first.close()


def test_a_period_that_cannot_be_made_fails_the_write_whole(postgres_factory) -> None:  # type: ignore[no-untyped-def]
    """A period's partition detached by hand is named in the error of a write that needs it, and
    nothing of the write is stored (neither the vectors of record nor any copy); attached again,
    the write goes through. A partition that cannot be made at all fails the write the same way."""
    from factbridge.backends.storage.postgres import post_period
    from factbridge.errors import StorageError

    store = postgres_factory()
    try:
        store.upsert_posts("org", [Post(id="a", text="x", created_at=NOW)])
        period = post_period(NOW, store.post_period_s())
        store._write(lambda c: c.execute(f"ALTER TABLE post_vectors DETACH PARTITION post_vectors_{period}"))
        vec = _unit(1, 5)[0]
        with pytest.raises(StorageError, match=rf"table post_vectors_{period} is not a partition of post_vectors \(detached\?\)"):
            store.put_vectors("org", "post", "emb", [("a", "s", vec)])
        assert store.load_vectors("org", "post", "emb")[0] == [] and _copies(store) == {}
        store.ensure_post_periods = lambda periods: None  # as if it could not be made, and said nothing
        with pytest.raises(StorageError, match=rf"periods \[{period}\] are still missing"):
            store.put_vectors("org", "post", "emb", [("a", "s", vec)])
        del store.ensure_post_periods
        store._write(lambda c: c.execute(f"ALTER TABLE post_vectors ATTACH PARTITION post_vectors_{period} FOR VALUES FROM ({period}) TO ({period + 1})"))
        store.put_vectors("org", "post", "emb", [("a", "s", vec)])
        assert _copies(store) == {("a", "emb"): [period]}
    finally:
        store.close()


def test_indexes_list_shows_the_post_vectors_periods(postgres_url, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """`factbridge indexes list` on PostgreSQL adds each period's partition: its span, rows and
    the bytes of its vectors and graphs (to plan the disk by retention)."""
    import json

    from typer.testing import CliRunner

    from factbridge.backends.storage.postgres import PostgresStorage, post_period
    from factbridge.backends.vectors.pgvector import PgVectorIndex
    from factbridge.cli import app

    store = PostgresStorage(postgres_url)
    try:
        store.migrate()
        posts = [Post(id=f"p{i}", text="x", created_at=NOW - timedelta(days=10 * (i % 3))) for i in range(30)]
        store.upsert_posts("org", posts)
        PgVectorIndex(store, "org", "post", "hashing-v1-256", 256, hnsw=True)
        store.put_vectors("org", "post", "hashing-v1-256", [(p.id, "s", v) for p, v in zip(posts, _unit(30, 6, 256), strict=True)])
        store._write(lambda c: c.execute("ANALYZE post_vectors"))
        span = store.post_period_s()
    finally:
        store.close()
    result = CliRunner().invoke(app, ["--data-dir", str(tmp_path), "--storage-url", postgres_url, "--embedder", "hashing",
                                      "--embed-cache", "off", "indexes", "list", "--json"])
    assert result.exit_code == 0, result.output
    periods = json.loads(result.output)["post_periods"]
    timed = {r["period"]: r for r in periods if r["period"] >= 0}
    assert set(timed) == {post_period(NOW - timedelta(days=10 * k), span) for k in range(3)}
    assert [r["period"] for r in periods][0] == -1 and periods[0]["from"] is None, "the posts of no known time first"
    assert sum(r["rows_estimate"] for r in timed.values()) == 30 and all(r["table_bytes"] > 0 and r["index_bytes"] > 0 for r in timed.values())
    first = timed[post_period(NOW, span)]
    assert datetime.fromisoformat(first["from"]) <= NOW < datetime.fromisoformat(first["to"])
    table = CliRunner().invoke(app, ["--data-dir", str(tmp_path), "--storage-url", postgres_url, "--embedder", "hashing",
                                     "--embed-cache", "off", "indexes", "list"])
    assert table.exit_code == 0 and "post vectors by period" in table.output and "4 periods" in table.output, table.output
