"""Every Storage backend passes the same conformance suite
(factbridge.testing.storage_conformance), plus backend-specific checks."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable
from pathlib import Path

import pytest

from factbridge.backends.storage.sqlite import SQLiteStorage, _dumps
from factbridge.errors import StorageError
from factbridge.models import FactCheck, Post
from factbridge.testing.storage_conformance import (
    STORAGE_CHECKS,
    parametrize_storage_checks,
    scoped_protocol_methods,
)


class SQLiteMemoryFactory:
    def __call__(self) -> SQLiteStorage:
        store = SQLiteStorage("sqlite:///:memory:")
        store.migrate()
        return store


class SQLiteFileFactory:
    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.count = 0

    def __call__(self) -> SQLiteStorage:
        self.count += 1
        store = SQLiteStorage(f"sqlite:///{self.folder / f'store-{self.count}.db'}")
        store.migrate()
        return store

    def reopen(self, store: SQLiteStorage) -> SQLiteStorage:
        return SQLiteStorage(store.url)

    def set_schema_version(self, store: SQLiteStorage, version: int) -> None:
        with sqlite3.connect(store.url.removeprefix("sqlite:///")) as conn:
            conn.execute("UPDATE meta SET value=? WHERE key='schema_version'", (str(version),))


@parametrize_storage_checks()
def test_sqlite_memory(check) -> None:  # type: ignore[no-untyped-def]
    check(SQLiteMemoryFactory())


@parametrize_storage_checks()
def test_sqlite_file(check, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    check(SQLiteFileFactory(tmp_path))


@pytest.mark.postgres
@parametrize_storage_checks()
def test_postgres(check, postgres_factory) -> None:  # type: ignore[no-untyped-def]
    check(postgres_factory)


def test_suite_covers_every_scoped_method() -> None:
    # the scope check itself asserts this; here it fails even if the check is skipped
    assert {"upsert_posts", "list_docs", "load_vectors"} <= scoped_protocol_methods()
    assert len({c.__name__ for c in STORAGE_CHECKS}) == len(STORAGE_CHECKS)


# -- SQLite specifics ---------------------------------------------------------------


@pytest.mark.parametrize("where", ["memory", "file"])
def test_sqlite_many_threads_never_see_database_locked(where: str, tmp_path: Path) -> None:
    url = "sqlite:///:memory:" if where == "memory" else f"sqlite:///{tmp_path / 'busy.db'}"
    store = SQLiteStorage(url)
    store.migrate()
    errors: list[BaseException] = []
    start = threading.Barrier(10)

    def work(worker: int) -> None:
        start.wait()
        try:
            for i in range(15):
                store.upsert_posts("org", [Post(id=f"{worker}-{i}-{j}", text="t", tokens=f"hello w{worker}") for j in range(4)])
                store.put_docs("org", "c", [(f"{worker}-{i}", {"i": i}, float(i))])
                store.count_posts("org")
                store.list_posts("org", limit=10)
                store.get_posts("org", [f"{worker}-{i}-0", f"{worker}-{i}-1"])
        except BaseException as exc:  # collected for the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(10)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    try:
        assert not errors, f"{len(errors)} failures, e.g. {errors[:2]}"
        assert store.count_posts("org") == 10 * 15 * 4
    finally:
        store.close()


def test_sqlite_file_uses_wal(tmp_path: Path) -> None:
    store = SQLiteStorage(f"sqlite:///{tmp_path / 'wal.db'}")
    store.migrate()
    try:
        assert store._read(lambda c: c.execute("PRAGMA journal_mode").fetchone()[0]) == "wal"
        assert store._write(lambda c: c.execute("PRAGMA journal_mode").fetchone()[0]) == "wal"
    finally:
        store.close()
    assert (tmp_path / "wal.db").exists()


def test_sqlite_read_time_limit_raises_storage_error() -> None:
    store = SQLiteStorage("sqlite:///:memory:")
    store.migrate()
    store.read_time_limit_s = 0.05
    endless = "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n) SELECT count(*) FROM n"
    try:
        with pytest.raises(StorageError, match="longer than"):
            store._read(lambda c: c.execute(endless).fetchone())
        assert store.count_posts("org") == 0, "the connection is usable after an interrupted query"
    finally:
        store.close()


def test_sqlite_read_time_limit_counts_the_query_not_the_parsing(monkeypatch: pytest.MonkeyPatch) -> None:
    """Parsing many documents after a quick query is not a slow query: a large library's
    fact-checks read while the machine is loaded raised "took longer than 10 s" when each was
    parsed inside the read."""
    import time as clock

    from factbridge.models import FactCheck

    store = SQLiteStorage("sqlite:///:memory:")
    store.migrate()
    store.upsert_factchecks("org", [FactCheck(id=f"fc{i}", claim=f"claim {i}") for i in range(1200)])  # three parts of ids
    store.put_docs("org", "c", [(f"d{i}", {"n": i}, None) for i in range(1200)])
    store.read_time_limit_s = 0.2
    parse, loads = FactCheck.model_validate_json, SQLiteStorage.get_docs.__globals__["_loads"]
    monkeypatch.setattr(FactCheck, "model_validate_json", classmethod(lambda cls, raw: clock.sleep(0.0005) or parse(raw)))
    monkeypatch.setitem(SQLiteStorage.get_docs.__globals__, "_loads", lambda raw: clock.sleep(0.0005) or loads(raw))
    try:
        assert len(store.get_factchecks("org", [f"fc{i}" for i in range(1200)])) == 1200  # ~0.6 s of parsing
        assert len(store.get_docs("org", "c", [f"d{i}" for i in range(1200)])) == 1200
    finally:
        store.close()


def test_sqlite_write_error_is_storage_error_and_writer_survives() -> None:
    store = SQLiteStorage("sqlite:///:memory:")
    store.migrate()
    try:
        with pytest.raises(StorageError):
            store._write(lambda c: c.execute("INSERT INTO nowhere VALUES (1)"))
        store.upsert_posts("org", [Post(id="p", text="t")])
        assert store.count_posts("org") == 1
    finally:
        store.close()


# -- PostgreSQL specifics -------------------------------------------------------------


@pytest.mark.postgres
def test_postgres_read_time_limit_raises_storage_error(postgres_factory) -> None:  # type: ignore[no-untyped-def]
    store = postgres_factory()
    try:
        store.read_time_limit_s = 0.05
        with pytest.raises(StorageError, match="longer than"):
            store._read(lambda c: c.execute("SELECT pg_sleep(2)").fetchall())
        store.read_time_limit_s = 10.0
        assert store.count_posts("org") == 0, "the pooled connection is usable after a cancelled query"
    finally:
        store.close()


@pytest.mark.postgres
def test_postgres_changed_posts_sees_a_writer_that_commits_late(postgres_factory) -> None:  # type: ignore[no-untyped-def]
    """A transaction that began writing before a read and commits after it: the reader's next
    `changed_posts` has its post, although a later transaction's post was read before."""
    import psycopg

    from factbridge.models import Post

    store = postgres_factory()
    try:
        _, token = store.changed_posts("org")
        with psycopg.connect(store.url) as slow:
            slow.execute(  # not committed yet: its xid is older than the next writer's
                "INSERT INTO posts (org, id, doc, sha, ingested_at, updated_at) VALUES ('org', 'slow', %s, 'x', now(), now())",
                (Post(id="slow", text="written first, committed last").model_dump_json(),),
            )
            store.upsert_posts("org", [Post(id="fast", text="written second, committed first")])
            first, token = store.changed_posts("org", token)
            assert [p.id for p in first] == ["fast"]
            slow.commit()
        second, token = store.changed_posts("org", token)
        assert "slow" in [p.id for p in second], "a post committed after a read that skipped it must come on the next read"
        assert store.changed_posts("org", token)[0] == [], "with no writer left running, nothing comes again"
    finally:
        store.close()


@pytest.mark.postgres
def test_postgres_stamps_see_a_writer_that_commits_late(postgres_factory) -> None:  # type: ignore[no-untyped-def]
    """A transaction that wrote a vector and a fact-check before a newer writer committed, and
    commits after a read: while it runs, each stamp is one of a kind (the reader reloads); once
    it committed, the stamp is stable again and differs from every stamp read before, and what
    changed since a stamp read meanwhile holds that writer's rows."""
    import numpy as np
    import psycopg

    store = postgres_factory()
    try:
        store.put_vectors("org", "factcheck", "emb", [("fc-0", "s0", np.ones(4, np.float32))])
        store.upsert_factchecks("org", [FactCheck(id="fc-0", claim="first")])
        quiet = (store.vector_stamp("org", "factcheck", "emb"), store.factcheck_stamp("org"))
        assert quiet == (store.vector_stamp("org", "factcheck", "emb"), store.factcheck_stamp("org")), "no writer: stable"
        with psycopg.connect(store.url) as slow:
            slow.execute("INSERT INTO vectors (org, kind, item_id, embedder, text_sha, vec) VALUES ('org', 'factcheck', 'slow', 'emb', 's', '[1,1,1,1]')")
            slow.execute("UPDATE factchecks SET sha = 'edited', changed_xid = pg_current_xact_id() WHERE org = 'org' AND id = 'fc-0'")
            store.put_vectors("org", "factcheck", "emb", [("fast", "f", np.ones(4, np.float32))])  # newer, committed first
            store.upsert_factchecks("org", [FactCheck(id="fc-1", claim="second")])
            pending = [(store.vector_stamp("org", "factcheck", "emb"), store.factcheck_stamp("org")) for _ in range(2)]
            assert pending[0][0] != pending[1][0] and pending[0][1] != pending[1][1], "an older writer may still commit: one of a kind"
            slow.commit()
        after = (store.vector_stamp("org", "factcheck", "emb"), store.factcheck_stamp("org"))
        assert after == (store.vector_stamp("org", "factcheck", "emb"), store.factcheck_stamp("org")), "no writer left: stable"
        assert after[0] not in {quiet[0], *(p[0] for p in pending)} and after[1] not in {quiet[1], *(p[1] for p in pending)}
        # a reader that read a stamp while the older writer ran is told of its rows, committed since under the older id
        assert "slow" in (store.vectors_changed("org", "factcheck", "emb", pending[0][0]) or ())
        assert "fc-0" in (store.factchecks_changed("org", pending[0][1]) or ())
        assert store.vectors_changed("org", "factcheck", "emb", after[0]) == [] and store.factchecks_changed("org", after[1]) == []
    finally:
        store.close()


@pytest.mark.postgres
def test_postgres_concurrent_migrations_are_serialised(postgres_url: str) -> None:
    from factbridge.backends.storage.base import SCHEMA_VERSION
    from factbridge.backends.storage.postgres import PostgresStorage

    stores = [PostgresStorage(postgres_url) for _ in range(4)]
    errors: list[BaseException] = []
    start = threading.Barrier(len(stores))

    def migrate(store: PostgresStorage) -> None:
        start.wait()
        try:
            store.migrate()
        except BaseException as exc:  # collected for the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=migrate, args=(s,)) for s in stores]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    try:
        assert not errors, errors
        assert all(s.schema_version() == SCHEMA_VERSION for s in stores)
    finally:
        for s in stores:
            s.close()


@pytest.mark.postgres
def test_postgres_unreachable_server_is_a_storage_error(tmp_path: Path) -> None:
    from factbridge.backends.storage.postgres import PostgresStorage

    store = PostgresStorage(f"postgresql://nobody:secret@/nowhere?host={tmp_path}&connect_timeout=1")
    with pytest.raises(StorageError, match="cannot connect") as caught:
        store.migrate()
    assert "secret" not in str(caught.value), "the password never appears in an error"
    store.close()


def test_sqlite_upgrades_a_version_1_database(tmp_path: Path) -> None:
    """A database written by schema 1 migrates: its data stays, its unused FTS tables go (schema 3)."""
    from factbridge.backends.storage.base import SCHEMA_VERSION
    from factbridge.backends.storage.sqlite import MIGRATIONS

    path = tmp_path / "v1.db"
    with sqlite3.connect(path) as conn:
        conn.executescript(MIGRATIONS[0])
        conn.execute("CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
        conn.execute("INSERT INTO meta VALUES ('schema_version', '1')")
        doc = FactCheck(id="fc-1", claim="old claim", tokens="old claim")
        conn.execute(
            "INSERT INTO factchecks VALUES (?,?,?,?,?,?,?,?,?)",
            ("org", "fc-1", None, None, "old claim", doc.model_dump_json(), "sha-v1", "2024", "2024"),
        )
        conn.execute("INSERT INTO text_fts (tokens, org, kind, item_id) VALUES ('old claim', 'org', 'factcheck', 'fc-1')")
    store = SQLiteStorage(f"sqlite:///{path}")
    store.migrate()
    try:
        assert store.schema_version() == SCHEMA_VERSION
        assert store.get_factcheck("org", "fc-1").claim == "old claim"
        store.upsert_factchecks("org", [FactCheck(id="fc-1", claim="new claim", tokens="new claim")])
        assert store.get_factcheck("org", "fc-1").claim == "new claim"
    finally:
        store.close()
    with sqlite3.connect(path) as conn:
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert not {"text_fts", "text_rows"} & tables


def _upsert_posts_row_by_row(conn: sqlite3.Connection, org: str, posts: list[Post], now: str) -> tuple[list[str], list[str], list[str]]:
    """What SQLiteStorage.upsert_posts did before it batched its reads and writes: a read and a
    write per post, in turn (the reference the batched form must match)."""
    from factbridge.backends.storage.base import content_sha
    from factbridge.backends.storage.sqlite import _iso

    inserted: list[str] = []
    updated: list[str] = []
    unchanged: list[str] = []
    changed = int(conn.execute("SELECT coalesce(max(changed), 0) + 1 FROM posts WHERE org=?", (org,)).fetchone()[0])
    for post in posts:
        doc = post.model_dump(mode="json")
        sha = content_sha(doc)
        row = conn.execute("SELECT sha FROM posts WHERE org=? AND id=?", (org, post.id)).fetchone()
        if row and row[0] == sha:
            unchanged.append(post.id)
            continue
        args = (_iso(post.created_at), post.language, post.author, post.tokens, _dumps(doc), sha)  # the store's JSON (tests/test_sqlite_json.py: json's values)
        if row:
            conn.execute("UPDATE posts SET created_at=?, language=?, author=?, tokens=?, doc=?, sha=?, updated_at=?, changed=?"
                         " WHERE org=? AND id=?", (*args, now, changed, org, post.id))
            updated.append(post.id)
        else:
            conn.execute("INSERT INTO posts (org, id, created_at, language, author, tokens, doc, sha, ingested_at, updated_at, changed)"
                         " VALUES (?,?,?,?,?,?,?,?,?,?,?)", (org, post.id, *args, now, now, changed))
            inserted.append(post.id)
    return inserted, updated, unchanged


def test_sqlite_batched_post_upsert_writes_what_row_by_row_writes(tmp_path: Path) -> None:
    """upsert_posts reads the batch's stored hashes once and writes with one statement per kind:
    the same rows (rowids, JSON text, hashes, change counter) and the same report as a read and a
    write per post (of each id's last copy: a post given twice is stored and reported once), with
    new, unchanged, edited and repeated posts, non-ASCII text, another org."""
    from datetime import UTC, datetime

    def post(post_id: str, text: str, **extra: object) -> Post:
        return Post(id=post_id, text=text, platform="test", author="acct-1", language="vi", tokens=text.lower(),
                    created_at=datetime(2024, 5, 1, 7, 30, tzinfo=UTC), **extra)  # type: ignore[arg-type]

    batches = [
        [post("p-1", "Bộ Y tế nói 50% “sai”"), post("p-2", "ខ្ញុំគិតថា"), post("p-1", "Bộ Y tế nói 50% “sai”")],
        [post("p-2", "ខ្ញុំគិតថា"), post("p-3", "new one", raw={"k": ["ü", 1.5]}), post("p-1", "edited"), post("p-3", "new two"),
         post("p-3", "new two"), post("p-4", "another")],
        [],
        [post("p-4", "another"), post("p-1", "edited again")],
    ]
    store = SQLiteStorage(f"sqlite:///{tmp_path / 'batched.db'}")
    store.migrate()
    reference = SQLiteStorage(f"sqlite:///{tmp_path / 'reference.db'}")
    reference.migrate()
    reference.close()
    columns = "rowid, org, id, created_at, language, author, tokens, doc, sha, changed"
    try:
        with sqlite3.connect(tmp_path / "reference.db", isolation_level=None) as ref:
            for org in ("org", "other"):
                for batch in batches:
                    got = store.upsert_posts(org, batch)
                    want = _upsert_posts_row_by_row(ref, org, list({p.id: p for p in batch}.values()), "2024")
                    assert (got.inserted, got.updated, got.unchanged) == want, batch
            expected = ref.execute(f"SELECT {columns} FROM posts ORDER BY rowid").fetchall()
        with sqlite3.connect(tmp_path / "batched.db") as conn:
            assert conn.execute(f"SELECT {columns} FROM posts ORDER BY rowid").fetchall() == expected
        assert store.get_post("org", "p-3").text == "new two" and store.get_post("other", "p-1").text == "edited again"
    finally:
        store.close()


def test_sqlite_finds_vectors_by_text_hash_through_an_index(tmp_path: Path) -> None:
    """A schema-4 store gains the text-hash index (schema 5): the embedding stage's lookup of
    vectors stored for the same text no longer reads all of an organisation's vectors."""
    import numpy as np

    from factbridge.backends.storage.sqlite import MIGRATIONS

    path = tmp_path / "v4.db"
    store = SQLiteStorage(f"sqlite:///{path}")
    store.migrate()
    store.put_vectors("org", "post", "e5", [(f"p{i}", f"sha{i % 7}", np.full(4, i, np.float32)) for i in range(50)])
    store.close()

    def as_schema_4(conn: sqlite3.Connection) -> None:
        conn.execute("DROP INDEX vectors_sha")
        _as_schema_5(conn)

    store = _migrated_from(path, 4, as_schema_4)
    try:
        assert store.vector_shas("org", "post", "e5", shas=["sha3"]) == {f"p{i}": "sha3" for i in range(3, 50, 7)}
        assert store.vector_shas("org", "post", "e5", ids=["p1", "p2"], shas=["sha2"]) == {"p2": "sha2"}
    finally:
        store.close()
    with sqlite3.connect(path) as conn:
        plan = " ".join(str(r) for r in conn.execute(
            "EXPLAIN QUERY PLAN SELECT item_id, text_sha FROM vectors WHERE org=? AND kind=? AND embedder=? AND text_sha IN (?,?)",
            ("org", "post", "e5", "sha1", "sha2")))
    assert "vectors_sha" in plan, plan
    assert "CREATE INDEX IF NOT EXISTS vectors_sha" in MIGRATIONS[4]


def _as_schema_5(conn: sqlite3.Connection) -> None:
    """Schema 6's and 7's change numbers taken out of a current store."""
    for table in ("vectors", "factchecks"):
        conn.execute(f"DROP INDEX {table}_changed")
        conn.execute(f"ALTER TABLE {table} DROP COLUMN changed")


def _migrated_from(path: Path, version: int, undo: Callable[[sqlite3.Connection], object]) -> SQLiteStorage:
    """The closed store at `path` as schema `version` left it (`undo` takes out what came
    after), opened again and migrated to the current schema."""
    from factbridge.backends.storage.base import SCHEMA_VERSION

    with sqlite3.connect(path) as conn:
        undo(conn)
        conn.execute("UPDATE meta SET value=? WHERE key='schema_version'", (str(version),))
    store = SQLiteStorage(f"sqlite:///{path}")
    store.migrate()
    assert store.schema_version() == SCHEMA_VERSION
    return store


def test_sqlite_stamps_are_one_index_lookup_after_upgrading_a_schema_5_store(tmp_path: Path) -> None:
    """A schema-5 store (vectors and fact-checks without their change numbers) gains them
    (schemas 6 and 7): its rows keep number 0, the next write numbers its rows above them, and
    `vector_stamp` / `factcheck_stamp` read one index entry instead of every row."""
    import numpy as np

    from factbridge.backends.storage.sqlite import MIGRATIONS

    path = tmp_path / "v5.db"
    store = SQLiteStorage(f"sqlite:///{path}")
    store.migrate()
    store.put_vectors("org", "factcheck", "e5", [(f"fc{i}", f"sha{i}", np.full(4, i, np.float32)) for i in range(20)])
    store.upsert_factchecks("org", [FactCheck(id="fc3", claim="a claim")])
    store.close()
    store = _migrated_from(path, 5, _as_schema_5)
    try:
        before = store.vector_stamp("org", "factcheck", "e5")
        assert before == "changed:0" and store.vector_shas("org", "factcheck", "e5")["fc3"] == "sha3", "the rows stay, numbered 0"
        store.put_vectors("org", "factcheck", "e5", [("fc3", "sha3b", np.full(4, 9, np.float32))])
        assert store.vector_stamp("org", "factcheck", "e5") == "changed:1"
        assert store.factcheck_stamp("org") == "changed:0" and store.get_factcheck("org", "fc3").claim == "a claim"
        store.upsert_factchecks("org", [FactCheck(id="fc3", claim="a claim", rating="False")])
        assert store.factcheck_stamp("org") == "changed:1"
    finally:
        store.close()
    with sqlite3.connect(path) as conn:
        plan = " ".join(str(r) for r in conn.execute(
            "EXPLAIN QUERY PLAN SELECT coalesce(max(changed), 0) FROM vectors WHERE org=? AND kind=? AND embedder=?", ("org", "factcheck", "e5")))
        fc_plan = " ".join(str(r) for r in conn.execute("EXPLAIN QUERY PLAN SELECT coalesce(max(changed), 0) FROM factchecks WHERE org=?", ("org",)))
    assert "vectors_changed" in plan and "factchecks_changed" in fc_plan, (plan, fc_plan)
    assert "vectors_changed" in MIGRATIONS[5] and "factchecks_changed" in MIGRATIONS[6]


@pytest.mark.postgres
def test_postgres_has_the_text_hash_index(postgres_url: str) -> None:
    from factbridge.backends.storage.postgres import PostgresStorage

    store = PostgresStorage(postgres_url)
    store.migrate()
    try:
        with store._pool.connection() as conn:
            names = {r[0] for r in conn.execute("SELECT indexname FROM pg_indexes WHERE tablename = 'vectors'")}
        assert "vectors_sha" in names
    finally:
        store.close()


def test_sqlite_import_is_linear_in_library_size() -> None:
    """Importing a large library stays linear (schema 2 found FTS rows by key; schema 3 has none)."""
    import time

    from factbridge.models import FactCheck

    store = SQLiteStorage("sqlite:///:memory:")
    store.migrate()
    try:
        items = [FactCheck(id=f"fc-{i}", claim="c", tokens=f"claim n{i}") for i in range(6000)]
        started = time.perf_counter()
        store.upsert_factchecks("org", items)
        elapsed = time.perf_counter() - started
        # ~1.2 s on a busy 2-core machine; the quadratic version took over 40 s
        assert elapsed < 15, f"importing 6000 fact-checks took {elapsed:.1f} s"
        assert store.count_factchecks("org") == 6000
    finally:
        store.close()


def test_backends_number_their_migrations_alike() -> None:
    from factbridge.backends.storage import postgres, sqlite
    from factbridge.backends.storage.base import SCHEMA_VERSION

    assert len(sqlite.MIGRATIONS) == len(postgres.MIGRATIONS) == SCHEMA_VERSION
