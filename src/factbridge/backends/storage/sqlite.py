"""SQLite storage: the embedded default.

Done the datasette way: one writer thread fed by a queue runs every write in
`BEGIN IMMEDIATE` ... `COMMIT`, so concurrent writers queue instead of failing
with "database is locked"; readers use their own per-thread connections under
WAL and get a time limit. A whole batch (a file's posts and its quarantined
rows) commits or rolls back together. Another process on the same file (the CLI
while `factbridge serve` runs) is waited for: a busy timeout per attempt, then
`BEGIN IMMEDIATE` is retried with backoff (`backends.sqlite_busy`).

An in-memory database is one shared-cache database, where WAL does not apply and
SQLite locks whole tables: a reader meeting the writer's open transaction fails
at once with "database table is locked" (busy timeouts do not cover it). There,
reads and write transactions take turns on one lock instead.
"""

from __future__ import annotations

import json
import queue
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import orjson

from factbridge.backends.sqlite_busy import CONNECT_TIMEOUT_S, retry_busy
from factbridge.backends.storage.base import (
    SCHEMA_VERSION,
    Expect,
    Rows,
    UpsertResult,
    content_sha,
    docs_cursor_checked,
    field_paths,
    from_blob,
    keyed_descending,
    last_per_id,
    to_blob,
)
from factbridge.errors import EmbedderMismatch, NotFound, StorageError
from factbridge.models import FactCheck, MatchCandidate, Post, Quarantined

T = TypeVar("T")

# The JSON of stored rows (posts, fact-checks, documents) is orjson's: 4-5x faster to encode
# and ~1.7x to decode than the json module's (a run's writes as a whole: ~12 % less CPU), and
# the same values read back (docs/performance.md §5). What `json.dumps(doc, ensure_ascii=False, default=str)` wrote, with two differences: no
# spaces between items, and NaN or Infinity (which JSON has not) become null, as the PostgreSQL
# backend and pydantic write them. Stored text the json module wrote (NaN included) still reads.
_ORJSON_OPTIONS = orjson.OPT_NON_STR_KEYS | orjson.OPT_PASSTHROUGH_DATETIME | orjson.OPT_PASSTHROUGH_DATACLASS
_JSON = json.JSONEncoder(ensure_ascii=False, default=str)


def _unserialised(value: Any) -> Any:
    """What `default=str` made of a value JSON has no form for (datetimes, dataclasses, numpy
    scalars, sets: their `str`); a float subclass (numpy's float64), which the json module
    wrote as the number it is, stays a number."""
    return float(value) if isinstance(value, float) else str(value)


def _dumps(value: Any) -> str:
    try:
        return orjson.dumps(value, default=_unserialised, option=_ORJSON_OPTIONS).decode()
    except orjson.JSONEncodeError:  # an integer past 64 bits (or a cycle): as the json module writes it (or fails)
        return _JSON.encode(value)


def _loads(text: str) -> Any:
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:  # NaN or Infinity, as the json module wrote them
        return json.loads(text)

MIGRATIONS: list[str] = [
    # 1: the first schema
    """
    CREATE TABLE IF NOT EXISTS factchecks (
        org TEXT NOT NULL, id TEXT NOT NULL, language TEXT, published_at TEXT,
        tokens TEXT NOT NULL DEFAULT '', doc TEXT NOT NULL, sha TEXT NOT NULL,
        created_at TEXT NOT NULL, updated_at TEXT NOT NULL, PRIMARY KEY (org, id));
    CREATE TABLE IF NOT EXISTS posts (
        org TEXT NOT NULL, id TEXT NOT NULL, created_at TEXT, language TEXT, author TEXT,
        tokens TEXT NOT NULL DEFAULT '', doc TEXT NOT NULL, sha TEXT NOT NULL,
        ingested_at TEXT NOT NULL, updated_at TEXT NOT NULL, PRIMARY KEY (org, id));
    CREATE INDEX IF NOT EXISTS posts_time ON posts(org, created_at);
    CREATE TABLE IF NOT EXISTS quarantine (
        seq INTEGER PRIMARY KEY AUTOINCREMENT, org TEXT NOT NULL, kind TEXT NOT NULL,
        source TEXT NOT NULL, line INTEGER, field TEXT, reason TEXT NOT NULL, raw TEXT,
        created_at TEXT NOT NULL);
    CREATE TABLE IF NOT EXISTS embedders (id TEXT PRIMARY KEY, dim INTEGER NOT NULL, first_seen TEXT NOT NULL);
    CREATE TABLE IF NOT EXISTS vectors (
        org TEXT NOT NULL, kind TEXT NOT NULL, item_id TEXT NOT NULL, embedder TEXT NOT NULL
            REFERENCES embedders(id), text_sha TEXT NOT NULL, vec BLOB NOT NULL,
        PRIMARY KEY (org, kind, embedder, item_id));
    CREATE TABLE IF NOT EXISTS matches (
        org TEXT NOT NULL, post_id TEXT NOT NULL, factcheck_id TEXT NOT NULL, rank INTEGER NOT NULL,
        fused_score REAL NOT NULL, decision TEXT NOT NULL, decided_by TEXT NOT NULL,
        doc TEXT NOT NULL, created_at TEXT NOT NULL, PRIMARY KEY (org, post_id, factcheck_id));
    CREATE INDEX IF NOT EXISTS matches_fc ON matches(org, factcheck_id);
    CREATE TABLE IF NOT EXISTS docs (
        org TEXT NOT NULL, collection TEXT NOT NULL, id TEXT NOT NULL, sort_key REAL,
        doc TEXT NOT NULL, created_at TEXT NOT NULL, updated_at TEXT NOT NULL,
        PRIMARY KEY (org, collection, id));
    CREATE INDEX IF NOT EXISTS docs_sort ON docs(org, collection, sort_key);
    CREATE VIRTUAL TABLE IF NOT EXISTS text_fts USING fts5(
        tokens, org UNINDEXED, kind UNINDEXED, item_id UNINDEXED, tokenize='unicode61 remove_diacritics 0');
    """,
    # 2: which FTS row holds which item. FTS5 cannot index its UNINDEXED columns, so
    # replacing an item's tokens by (org, kind, item_id) scanned the whole FTS table:
    # importing 14k fact-checks took minutes (quadratic). Rows are now found by rowid.
    """
    CREATE TABLE IF NOT EXISTS text_rows (
        rowid INTEGER PRIMARY KEY, org TEXT NOT NULL, kind TEXT NOT NULL, item_id TEXT NOT NULL,
        UNIQUE (org, kind, item_id));
    INSERT OR IGNORE INTO text_rows (rowid, org, kind, item_id) SELECT rowid, org, kind, item_id FROM text_fts;
    DELETE FROM text_fts WHERE rowid NOT IN (SELECT rowid FROM text_rows);
    """,
    # 3: no FTS index. The matcher ranks lexically with its own in-memory BM25
    # (pipeline/lexical.py, the same scores on every backend) and nothing read
    # text_fts: keeping it cost a write per post and fact-check for nothing.
    """
    DROP TABLE IF EXISTS text_rows;
    DROP TABLE IF EXISTS text_fts;
    """,
    # 4: a per-organisation change counter on posts, so a reader can catch up with what
    # changed since its last read (`changed_posts`: the incremental coordination stage)
    # instead of re-reading every post. One writer at a time: the counter follows commit order.
    """
    ALTER TABLE posts ADD COLUMN changed INTEGER NOT NULL DEFAULT 0;
    CREATE INDEX IF NOT EXISTS posts_changed ON posts(org, changed);
    """,
    # 5: vectors found by the hash of their text (`vector_shas(shas=...)`: the embedding stage
    # reuses a vector stored for another post of the same text). Without an index every
    # batch read all of an organisation's post vectors' rows: linear in the store.
    """
    CREATE INDEX IF NOT EXISTS vectors_sha ON vectors(org, kind, embedder, text_sha);
    """,
    # 6: a change counter on vectors per (org, kind, embedder), so `vector_stamp` is one index
    # look-up: the matcher asked whether its library changed by hashing every fact-check's
    # (id, text hash) pair, each batch: ~3 s a batch at 300,000 fact-checks. One writer at a
    # time (BEGIN IMMEDIATE): each write's number is above every earlier one.
    """
    ALTER TABLE vectors ADD COLUMN changed INTEGER NOT NULL DEFAULT 0;
    CREATE INDEX IF NOT EXISTS vectors_changed ON vectors(org, kind, embedder, changed);
    """,
    # 7: the same on fact-checks per org (`factcheck_stamp`): the matcher's stamp then covers
    # an edit that keeps the text, and the matcher is no longer reloaded every few minutes
    # whatever changed (~40 s a reload at 300,000 fact-checks)
    """
    ALTER TABLE factchecks ADD COLUMN changed INTEGER NOT NULL DEFAULT 0;
    CREATE INDEX IF NOT EXISTS factchecks_changed ON factchecks(org, changed);
    """,
    # 8: PostgreSQL keeps its post vectors by period too (postgres.py 8); the embedded index
    # keeps its own spans per segment, so nothing changes here
    "SELECT 1",
]
assert len(MIGRATIONS) == SCHEMA_VERSION


def _changed_number(stamp: str) -> int | None:
    """The change number a `factcheck_stamp` / `vector_stamp` holds ("changed:N"), or None."""
    kind, _, number = stamp.partition(":")
    return int(number) if kind == "changed" and number.isascii() and number.isdigit() else None


def _fetch_all(sql: str, params: tuple[Any, ...]) -> Callable[[sqlite3.Connection], list[Any]]:
    """A read of all rows with its parameters bound now (not when the loop variable moves on)."""
    return lambda c: c.execute(sql, params).fetchall()


ID_PART = 500  # ids bound per `IN (...)` read: under SQLite's bound-variable limit


def _id_parts(ids: Iterable[str]) -> Iterator[tuple[list[str], str]]:
    """`ids` without repeats (first seen first), ID_PART at a time, each part with its `?,?,...` marks."""
    unique = list(dict.fromkeys(ids))
    for start in range(0, len(unique), ID_PART):
        part = unique[start : start + ID_PART]
        yield part, ",".join("?" * len(part))


def _now() -> str:
    # microseconds: documents written in the same second must still list in order
    return datetime.now(UTC).isoformat(timespec="microseconds")


def _iso(value: datetime | None) -> str | None:
    """A sortable UTC timestamp (fixed width). Naive datetimes are taken as UTC.

    Columns used for ordering must not keep the source's offset: '10:00+07:00'
    sorts after '05:00+00:00' as text although it is two hours earlier.
    """
    if value is None:
        return None
    value = value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    return value.isoformat(timespec="microseconds")


class SQLiteStorage:
    read_time_limit_s = 10.0

    def __init__(self, url: str) -> None:
        self.url = url
        path = url.split("sqlite:///", 1)[1] if url.startswith("sqlite:///") else url.removeprefix("sqlite://")
        if path in {"", ":memory:"}:
            self._target = f"file:factbridge-{uuid.uuid4().hex}?mode=memory&cache=shared"
            self._uri = True
        else:
            Path(path).parent.mkdir(parents=True, exist_ok=True)
            self._target = path
            self._uri = False
        self._local = threading.local()
        self._closed = False
        self._readers: list[sqlite3.Connection] = []
        self._readers_lock = threading.Lock()
        # shared-cache (in-memory) databases lock whole tables: reads and writes take turns
        self._turns: threading.Lock | None = threading.Lock() if self._uri else None
        # Keeps a shared in-memory database alive; also the writer's connection.
        self._write_conn = self._connect(writer=True)
        self._jobs: queue.Queue[tuple[Callable[[sqlite3.Connection], Any], Future[Any]] | None] = queue.Queue()
        self._writer = threading.Thread(target=self._write_loop, name="factbridge-sqlite-writer", daemon=True)
        self._writer.start()

    # -- connections -------------------------------------------------------
    def _connect(self, writer: bool = False) -> sqlite3.Connection:
        try:
            # check_same_thread off: each connection is used by one thread, but close() runs on another
            conn = sqlite3.connect(self._target, uri=self._uri, check_same_thread=False, timeout=CONNECT_TIMEOUT_S)
        except sqlite3.Error as exc:
            raise StorageError(f"cannot open {self.url}: {exc}") from exc
        conn.row_factory = sqlite3.Row
        conn.isolation_level = None  # explicit transactions only

        def setup() -> None:
            if not self._uri:
                conn.execute("PRAGMA journal_mode=WAL")
                conn.execute("PRAGMA synchronous=NORMAL")
            conn.execute("PRAGMA foreign_keys=ON")

        try:
            retry_busy(setup, f"opening {self.url}")
        except sqlite3.Error as exc:
            conn.close()
            raise StorageError(f"cannot open {self.url}: {exc}") from exc
        return conn

    def _reader(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._connect()
            self._local.conn = conn
            with self._readers_lock:
                self._readers.append(conn)
        return conn

    def _read(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        if self._closed:
            raise StorageError("storage is closed")
        conn = self._reader()
        deadline = time.monotonic() + self.read_time_limit_s
        conn.set_progress_handler(lambda: int(time.monotonic() > deadline), 10_000)
        try:
            if self._turns is None:
                return fn(conn)
            with self._turns:
                return fn(conn)
        except sqlite3.OperationalError as exc:
            if "interrupted" in str(exc):
                raise StorageError(f"query took longer than {self.read_time_limit_s:g} s") from exc
            raise StorageError(str(exc)) from exc
        except sqlite3.Error as exc:
            raise StorageError(f"{type(exc).__name__}: {exc}") from exc
        finally:
            conn.set_progress_handler(None, 0)

    def _write_loop(self) -> None:
        conn = self._write_conn
        while True:
            job = self._jobs.get()
            if job is None:
                return
            fn, fut = job
            if not fut.set_running_or_notify_cancel():
                continue
            try:
                if self._turns is None:
                    result = self._transaction(conn, fn)
                else:
                    with self._turns:
                        result = self._transaction(conn, fn)
            except BaseException as exc:  # handed to the caller, never swallowed
                fut.set_exception(exc)
            else:
                fut.set_result(result)

    @staticmethod
    def _transaction(conn: sqlite3.Connection, fn: Callable[[sqlite3.Connection], T]) -> T:
        # another process's write transaction: wait (busy timeout), then retry with backoff
        retry_busy(lambda: conn.execute("BEGIN IMMEDIATE"), "write transaction")
        try:
            result = fn(conn)
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")
        return result

    def _write(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        if self._closed:
            raise StorageError("storage is closed")
        fut: Future[T] = Future()
        self._jobs.put((fn, fut))
        try:
            return fut.result()
        except sqlite3.Error as exc:
            raise StorageError(str(exc)) from exc

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._jobs.put(None)
        self._writer.join(timeout=10)
        # a write queued while closing would otherwise wait forever for its answer
        while True:
            try:
                job = self._jobs.get_nowait()
            except queue.Empty:
                break
            if job is not None:
                job[1].set_exception(StorageError("storage is closed"))
        with self._readers_lock:
            readers, self._readers = self._readers, []
        for conn in readers:
            conn.close()
        self._write_conn.close()

    # -- schema ------------------------------------------------------------
    def migrate(self) -> None:
        def run(conn: sqlite3.Connection) -> None:
            conn.execute("CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
            row = conn.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
            current = int(row[0]) if row else 0
            if current > SCHEMA_VERSION:
                raise StorageError(f"{self.url}: schema version {current} is newer than this FactBridge ({SCHEMA_VERSION})")
            for version in range(current + 1, SCHEMA_VERSION + 1):
                for statement in MIGRATIONS[version - 1].split(";"):
                    if statement.strip():
                        conn.execute(statement)
                conn.execute("INSERT OR REPLACE INTO meta VALUES ('schema_version', ?)", (str(version),))

        self._write(run)

    def schema_version(self) -> int:
        row = self._read(lambda c: c.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone())
        return int(row[0]) if row else 0

    # -- fact-checks -------------------------------------------------------
    def upsert_factchecks(self, org: str, items: Sequence[FactCheck]) -> UpsertResult:
        def run(conn: sqlite3.Connection) -> UpsertResult:
            result = UpsertResult()
            now = _now()
            changed = int(conn.execute("SELECT coalesce(max(changed), 0) + 1 FROM factchecks WHERE org=?", (org,)).fetchone()[0])
            for fc in last_per_id(items):  # a fact-check given twice: its last copy, reported once
                doc = fc.model_dump(mode="json")
                sha = content_sha(doc)
                row = conn.execute("SELECT sha FROM factchecks WHERE org=? AND id=?", (org, fc.id)).fetchone()
                if row and row[0] == sha:
                    result.unchanged.append(fc.id)
                    continue
                args = (fc.language, _iso(fc.published_at), fc.tokens, _dumps(doc), sha)
                if row:
                    conn.execute(
                        "UPDATE factchecks SET language=?, published_at=?, tokens=?, doc=?, sha=?, updated_at=?, changed=? WHERE org=? AND id=?",
                        (*args, now, changed, org, fc.id),
                    )
                    result.updated.append(fc.id)
                else:
                    conn.execute("INSERT INTO factchecks (org, id, language, published_at, tokens, doc, sha, created_at, updated_at, changed)"
                                 " VALUES (?,?,?,?,?,?,?,?,?,?)", (org, fc.id, *args, now, now, changed))
                    result.inserted.append(fc.id)
            return result

        return self._write(run)

    def get_factcheck(self, org: str, factcheck_id: str) -> FactCheck:
        found = self.get_factchecks(org, [factcheck_id])
        if factcheck_id not in found:
            raise NotFound(f"fact-check '{factcheck_id}' not found")
        return found[factcheck_id]

    def get_factchecks(self, org: str, ids: Sequence[str]) -> dict[str, FactCheck]:
        return self._get_docs("factchecks", org, ids, FactCheck)

    def _get_docs(self, table: str, org: str, ids: Sequence[str], model: Any) -> dict[str, Any]:
        # each part parsed after its read: the read time limit is the query's, not the parsing's
        # (300,000 fact-checks' models take ~4 s to parse, past the limit on a loaded machine),
        # and only one part's text is held beside the models
        out: dict[str, Any] = {}
        for part, marks in _id_parts(ids):
            for row in self._read(_fetch_all(f"SELECT id, doc FROM {table} WHERE org=? AND id IN ({marks})", (org, *part))):
                out[row[0]] = model.model_validate_json(row[1])
        return out

    def iter_factchecks(self, org: str, batch_size: int = 1000) -> Iterator[FactCheck]:
        yield from self._iter_docs("factchecks", org, batch_size, FactCheck)

    def _iter_docs(self, table: str, org: str, batch_size: int, model: Any) -> Iterator[Any]:
        for rows in self._pages(table, org, "doc", (), batch_size):
            yield from (model.model_validate_json(row[1]) for row in rows)

    def _pages(self, table: str, org: str, value: str, value_params: tuple[Any, ...], batch_size: int) -> Iterator[list[Any]]:
        """An organisation's rows of `table` as (id, `value`) pages of `batch_size`, in id order
        (keyset pagination: each read well inside the time limit); `value_params` bind `value`'s marks."""
        sql = f"SELECT id, {value} FROM {table} WHERE org=? AND id>? ORDER BY id LIMIT ?"
        last = ""
        while rows := self._read(_fetch_all(sql, (*value_params, org, last, batch_size))):
            yield rows
            last = rows[-1][0]

    def factcheck_fields(self, org: str, fields: Sequence[str], ids: Sequence[str] | None = None) -> dict[str, list[Any]]:
        paths = ["$." + ".".join(f'"{key}"' for key in path) for path in field_paths(fields)]
        # json_extract of two paths or more answers a JSON array (of one, a bare SQL value)
        extract = "json_extract(doc, " + ", ".join("?" * max(2, len(paths))) + ")"
        given = (paths + paths)[: max(2, len(paths))]
        out: dict[str, list[Any]] = {}
        if ids is not None:
            for part, marks in _id_parts(ids):
                rows = self._read(_fetch_all(f"SELECT id, {extract} FROM factchecks WHERE org=? AND id IN ({marks})", (*given, org, *part)))
                out.update((row[0], _loads(row[1])[: len(paths)]) for row in rows)
            return out
        for rows in self._pages("factchecks", org, extract, tuple(given), 10_000):
            out.update((row[0], _loads(row[1])[: len(paths)]) for row in rows)
        return out

    def factcheck_shas(self, org: str) -> dict[str, str]:
        out: dict[str, str] = {}
        for rows in self._pages("factchecks", org, "sha", (), 50_000):
            out.update(rows)
        return out

    def factcheck_stamp(self, org: str) -> str:
        # as vector_stamp: fact-checks are never deleted, each write numbers its rows above all
        sql = "SELECT coalesce(max(changed), 0) FROM factchecks WHERE org=?"
        return f"changed:{int(self._read(lambda c: c.execute(sql, (org,)).fetchone()[0]))}"

    def factchecks_changed(self, org: str, stamp: str) -> list[str] | None:
        after = _changed_number(stamp)
        if after is None:
            return None
        return [r[0] for r in self._read(_fetch_all("SELECT id FROM factchecks WHERE org=? AND changed>?", (org, after)))]

    def count_factchecks(self, org: str) -> int:
        return int(self._read(lambda c: c.execute("SELECT count(*) FROM factchecks WHERE org=?", (org,)).fetchone()[0]))

    # -- posts ---------------------------------------------------------------
    def upsert_posts(self, org: str, posts: Sequence[Post], quarantined: Sequence[Quarantined] = ()) -> UpsertResult:
        def run(conn: sqlite3.Connection) -> UpsertResult:
            result = UpsertResult()
            now = _now()
            changed = int(conn.execute("SELECT coalesce(max(changed), 0) + 1 FROM posts WHERE org=?", (org,)).fetchone()[0])
            # One read of the stored hashes and one statement per kind of write, not a read and
            # a write per post. A post given twice in the batch is stored (and reported) once,
            # as its last copy, like PostgreSQL's one-statement upsert does; the inserts run in
            # the batch's order (the same rowids).
            unique = last_per_id(posts)
            stored = self._stored_shas(conn, "posts", org, [p.id for p in unique])
            inserts: list[tuple[Any, ...]] = []
            updates: list[tuple[Any, ...]] = []
            for post in unique:
                doc = post.model_dump(mode="json")
                sha = content_sha(doc)
                known = stored.get(post.id)
                if known == sha:
                    result.unchanged.append(post.id)
                    continue
                stored[post.id] = sha
                args = (_iso(post.created_at), post.language, post.author, post.tokens, _dumps(doc), sha)
                if known is not None:
                    updates.append((*args, now, changed, org, post.id))
                    result.updated.append(post.id)
                else:
                    inserts.append((org, post.id, *args, now, now, changed))
                    result.inserted.append(post.id)
            conn.executemany(
                "INSERT INTO posts (org, id, created_at, language, author, tokens, doc, sha, ingested_at, updated_at, changed)"
                " VALUES (?,?,?,?,?,?,?,?,?,?,?)", inserts,
            )
            conn.executemany(
                "UPDATE posts SET created_at=?, language=?, author=?, tokens=?, doc=?, sha=?, updated_at=?, changed=? WHERE org=? AND id=?",
                updates,
            )
            self._insert_quarantine(conn, org, quarantined)
            return result

        return self._write(run)

    @staticmethod
    def _stored_shas(conn: sqlite3.Connection, table: str, org: str, ids: Sequence[str]) -> dict[str, str]:
        """id -> stored content hash of those of `ids` that `table` holds."""
        out: dict[str, str] = {}
        for part, marks in _id_parts(ids):
            out.update((r[0], r[1]) for r in conn.execute(f"SELECT id, sha FROM {table} WHERE org=? AND id IN ({marks})", (org, *part)))
        return out

    def get_post(self, org: str, post_id: str) -> Post:
        found = self.get_posts(org, [post_id])
        if post_id not in found:
            raise NotFound(f"post '{post_id}' not found")
        return found[post_id]

    def get_posts(self, org: str, ids: Sequence[str]) -> dict[str, Post]:
        return self._get_docs("posts", org, ids, Post)

    def post_times(self, org: str, ids: Sequence[str]) -> dict[str, datetime | None]:
        out: dict[str, datetime | None] = {}
        for part, marks in _id_parts(ids):
            rows = self._read(_fetch_all(f"SELECT id, created_at FROM posts WHERE org=? AND id IN ({marks})", (org, *part)))
            out.update((r[0], datetime.fromisoformat(r[1]) if r[1] else None) for r in rows)
        return out

    def list_posts(self, org: str, limit: int = 100, offset: int = 0) -> list[Post]:
        rows = self._read(
            lambda c: c.execute(
                "SELECT doc FROM posts WHERE org=? ORDER BY created_at DESC, id LIMIT ? OFFSET ?", (org, limit, offset)
            ).fetchall()
        )
        return [Post.model_validate_json(r[0]) for r in rows]

    def iter_posts(self, org: str, batch_size: int = 1000) -> Iterator[Post]:
        yield from self._iter_docs("posts", org, batch_size, Post)

    def count_posts(self, org: str) -> int:
        return int(self._read(lambda c: c.execute("SELECT count(*) FROM posts WHERE org=?", (org,)).fetchone()[0]))

    def changed_posts(self, org: str, cursor: str = "") -> tuple[list[Post], str]:
        after = int(cursor) if cursor else -1  # rows from before migration 4 hold 0
        rows = self._read(_fetch_all("SELECT changed, doc FROM posts WHERE org=? AND changed>? ORDER BY changed", (org, after)))
        return [Post.model_validate_json(r[1]) for r in rows], str(rows[-1][0] if rows else after)

    # -- quarantine --------------------------------------------------------
    @staticmethod
    def _insert_quarantine(conn: sqlite3.Connection, org: str, rows: Sequence[Quarantined]) -> None:
        now = _now()
        conn.executemany(
            "INSERT INTO quarantine(org, kind, source, line, field, reason, raw, created_at) VALUES (?,?,?,?,?,?,?,?)",
            [(org, q.kind, q.source, q.line, q.field, q.reason, q.raw, now) for q in rows],
        )

    def add_quarantine(self, org: str, rows: Sequence[Quarantined]) -> None:
        self._write(lambda c: self._insert_quarantine(c, org, rows))

    def list_quarantine(self, org: str, limit: int = 100) -> list[Quarantined]:
        rows = self._read(
            lambda c: c.execute(
                "SELECT kind, source, line, field, reason, raw FROM quarantine WHERE org=? ORDER BY seq DESC LIMIT ?",
                (org, limit),
            ).fetchall()
        )
        return [Quarantined(kind=r[0], source=r[1], line=r[2], field=r[3], reason=r[4], raw=r[5] or "") for r in rows]

    # -- vectors -------------------------------------------------------------
    def put_vectors(self, org: str, kind: str, embedder_id: str, rows: Sequence[tuple[str, str, np.ndarray]]) -> None:
        if not rows:
            return
        dim = int(np.asarray(rows[0][2]).shape[-1])

        def run(conn: sqlite3.Connection) -> None:
            known = conn.execute("SELECT dim FROM embedders WHERE id=?", (embedder_id,)).fetchone()
            if known is None:
                conn.execute("INSERT INTO embedders VALUES (?,?,?)", (embedder_id, dim, _now()))
            elif int(known[0]) != dim:
                raise EmbedderMismatch(f"embedder '{embedder_id}' was stored with dim {known[0]}, got {dim}")
            for item_id, _sha, vec in rows:
                if np.asarray(vec).shape[-1] != dim:
                    raise EmbedderMismatch(f"vector for '{item_id}' has dim {np.asarray(vec).shape[-1]}, expected {dim}")
            changed = int(conn.execute("SELECT coalesce(max(changed), 0) + 1 FROM vectors WHERE org=? AND kind=? AND embedder=?",
                                       (org, kind, embedder_id)).fetchone()[0])
            conn.executemany(
                "INSERT OR REPLACE INTO vectors (org, kind, item_id, embedder, text_sha, vec, changed) VALUES (?,?,?,?,?,?,?)",
                [(org, kind, item_id, embedder_id, sha, to_blob(vec), changed) for item_id, sha, vec in rows],
            )

        self._write(run)

    def vector_stamp(self, org: str, kind: str, embedder_id: str) -> str:
        # every write numbers its rows above all earlier ones and vectors are never deleted:
        # the highest number moves with every write (one look-up in vectors_changed)
        sql = "SELECT coalesce(max(changed), 0) FROM vectors WHERE org=? AND kind=? AND embedder=?"
        return f"changed:{int(self._read(lambda c: c.execute(sql, (org, kind, embedder_id)).fetchone()[0]))}"

    def vectors_changed(self, org: str, kind: str, embedder_id: str, stamp: str) -> list[str] | None:
        after = _changed_number(stamp)
        if after is None:
            return None
        sql = "SELECT item_id FROM vectors WHERE org=? AND kind=? AND embedder=? AND changed>?"
        return [r[0] for r in self._read(_fetch_all(sql, (org, kind, embedder_id, after)))]

    def load_vectors(self, org: str, kind: str, embedder_id: str, ids: Sequence[str] | None = None) -> tuple[list[str], np.ndarray]:
        def run(conn: sqlite3.Connection) -> tuple[list[str], np.ndarray]:
            known = conn.execute("SELECT dim FROM embedders WHERE id=?", (embedder_id,)).fetchone()
            if known is None:
                return [], np.zeros((0, 0), dtype=np.float32)
            dim = int(known[0])
            if ids is None:
                rows = conn.execute(
                    "SELECT item_id, vec FROM vectors WHERE org=? AND kind=? AND embedder=? ORDER BY item_id",
                    (org, kind, embedder_id),
                ).fetchall()
            else:
                rows = []
                for part, marks in _id_parts(ids):
                    rows += conn.execute(
                        f"SELECT item_id, vec FROM vectors WHERE org=? AND kind=? AND embedder=? AND item_id IN ({marks})",
                        (org, kind, embedder_id, *part),
                    ).fetchall()
                rows.sort(key=lambda r: r[0])  # code-point order = SQLite's BINARY order of UTF-8 text
            matrix = np.zeros((len(rows), dim), dtype=np.float32)
            for i, row in enumerate(rows):
                matrix[i] = from_blob(row[1], dim)
            return [r[0] for r in rows], matrix

        return self._read(run)

    def vector_shas(self, org: str, kind: str, embedder_id: str, ids: Sequence[str] | None = None,
                    shas: Sequence[str] | None = None) -> dict[str, str]:
        sql = "SELECT item_id, text_sha FROM vectors WHERE org=? AND kind=? AND embedder=?"
        if ids is None and shas is None:
            return {r[0]: r[1] for r in self._read(_fetch_all(sql, (org, kind, embedder_id)))}
        column, values = ("item_id", ids) if ids is not None else ("text_sha", shas)
        out: dict[str, str] = {}
        for part, marks in _id_parts(values or ()):
            rows = self._read(_fetch_all(f"{sql} AND {column} IN ({marks})", (org, kind, embedder_id, *part)))
            out.update((r[0], r[1]) for r in rows)
        if ids is not None and shas is not None:
            wanted = set(shas)
            out = {k: v for k, v in out.items() if v in wanted}
        return out

    def embedders(self) -> dict[str, int]:
        return {r[0]: int(r[1]) for r in self._read(lambda c: c.execute("SELECT id, dim FROM embedders").fetchall())}

    # -- matches -------------------------------------------------------------
    def replace_matches(self, org: str, post_id: str, candidates: Sequence[MatchCandidate]) -> None:
        def run(conn: sqlite3.Connection) -> None:
            conn.execute("DELETE FROM matches WHERE org=? AND post_id=?", (org, post_id))
            now = _now()
            conn.executemany(
                "INSERT INTO matches VALUES (?,?,?,?,?,?,?,?,?)",
                [
                    (org, post_id, c.factcheck_id, c.rank, c.fused_score, c.decision, c.decided_by,
                     c.model_dump_json(exclude={"factcheck"}), now)
                    for c in candidates
                ],
            )

        self._write(run)

    def matches_for_post(self, org: str, post_id: str) -> list[MatchCandidate]:
        rows = self._read(
            lambda c: c.execute("SELECT doc FROM matches WHERE org=? AND post_id=? ORDER BY rank", (org, post_id)).fetchall()
        )
        return [MatchCandidate.model_validate_json(r[0]) for r in rows]

    def matches_for_posts(self, org: str, post_ids: Sequence[str]) -> dict[str, list[MatchCandidate]]:
        wanted = list(dict.fromkeys(post_ids))

        def run(conn: sqlite3.Connection) -> list[Any]:
            rows: list[Any] = []
            for part, marks in _id_parts(wanted):
                rows += conn.execute(f"SELECT post_id, doc FROM matches WHERE org=? AND post_id IN ({marks}) ORDER BY post_id, rank", (org, *part)).fetchall()
            return rows

        out: dict[str, list[MatchCandidate]] = {}
        for post_id, doc in self._read(run) if wanted else []:
            out.setdefault(post_id, []).append(MatchCandidate.model_validate_json(doc))
        return out

    def matches_for_factcheck(self, org: str, factcheck_id: str) -> list[tuple[str, MatchCandidate]]:
        rows = self._read(
            lambda c: c.execute(
                "SELECT post_id, doc FROM matches WHERE org=? AND factcheck_id=? ORDER BY fused_score DESC",
                (org, factcheck_id),
            ).fetchall()
        )
        return [(r[0], MatchCandidate.model_validate_json(r[1])) for r in rows]

    # -- documents -------------------------------------------------------------
    _DOC_ORDERS = {
        "sort_desc": "sort_key DESC NULLS LAST, id",
        "sort_asc": "sort_key ASC NULLS LAST, id",
        "updated_desc": "updated_at DESC, id",
        "created_asc": "created_at ASC, id",
        "id": "id",
    }

    def put_docs(self, org: str, collection: str, rows: Sequence[tuple[str, dict[str, Any], float | None]]) -> None:
        self.put_docs_batch(org, [(collection, rows)])

    def put_docs_batch(self, org: str, writes: Sequence[tuple[str, Rows]], *, expect: Sequence[Expect] = (),
                       other_orgs: Sequence[tuple[str, str, Rows]] = ()) -> None:
        def run(conn: sqlite3.Connection) -> None:  # one transaction (BEGIN IMMEDIATE): checks and rows inside it
            for cond in expect:
                row = conn.execute("SELECT doc FROM docs WHERE org=? AND collection=? AND id=?",
                                   (cond.org or org, cond.collection, cond.doc_id)).fetchone()
                if not cond.holds(_loads(row[0]) if row else None):
                    raise cond.failed(org)
            now = _now()
            for scope, collection, rows in [*((org, c, r) for c, r in writes), *other_orgs]:
                conn.executemany(
                    "INSERT INTO docs VALUES (?,?,?,?,?,?,?) ON CONFLICT(org, collection, id) DO UPDATE SET"
                    " sort_key=excluded.sort_key, doc=excluded.doc, updated_at=excluded.updated_at",
                    [(scope, collection, doc_id, sort_key, _dumps(doc), now, now) for doc_id, doc, sort_key in rows],
                )

        self._write(run)

    def get_docs(self, org: str, collection: str, ids: Sequence[str]) -> dict[str, dict[str, Any]]:
        out: dict[str, dict[str, Any]] = {}
        for part, marks in _id_parts(ids):  # each part parsed after its read (as `_get_docs`)
            sql = f"SELECT id, doc FROM docs WHERE org=? AND collection=? AND id IN ({marks})"
            out.update((row[0], _loads(row[1])) for row in self._read(_fetch_all(sql, (org, collection, *part))))
        return out

    def list_docs(self, org: str, collection: str, limit: int = 100, offset: int = 0, order: str = "sort_desc",
                  after: str | None = None) -> list[tuple[str, dict[str, Any]]]:
        if order not in self._DOC_ORDERS:
            raise ValueError(f"unknown order '{order}'")
        docs_cursor_checked(order, after)
        since, args = ("AND id > ?", (after,)) if after is not None else ("", ())
        rows = self._read(
            lambda c: c.execute(
                f"SELECT id, doc FROM docs WHERE org=? AND collection=? {since} ORDER BY {self._DOC_ORDERS[order]} LIMIT ? OFFSET ?",
                (org, collection, *args, limit, offset),
            ).fetchall()
        )
        return [(r[0], _loads(r[1])) for r in rows]

    def list_docs_keyed(self, org: str, collection: str, limit: int = 1000, order: str = "sort_desc",
                        after: tuple[float, str] | None = None) -> list[tuple[str, float, dict[str, Any]]]:
        desc = keyed_descending(order)
        # a range on the sort key (the index seeks to it), less the ties already read
        since, args = (f"AND sort_key {'<=' if desc else '>='} ? AND NOT (sort_key = ? AND id <= ?)", (after[0], after[0], after[1])) if after else ("", ())
        rows = self._read(
            lambda c: c.execute(
                f"SELECT id, sort_key, doc FROM docs WHERE org=? AND collection=? AND sort_key IS NOT NULL {since}"
                f" ORDER BY sort_key {'DESC' if desc else 'ASC'}, id LIMIT ?",
                (org, collection, *args, limit),
            ).fetchall()
        )
        return [(r[0], float(r[1]), _loads(r[2])) for r in rows]

    def count_docs(self, org: str, collection: str) -> int:
        return int(self._read(lambda c: c.execute("SELECT count(*) FROM docs WHERE org=? AND collection=?", (org, collection)).fetchone()[0]))
