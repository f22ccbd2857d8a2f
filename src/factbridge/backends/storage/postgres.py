"""PostgreSQL storage (+pgvector): the scale-out backend.

Same contract as the SQLite store (both pass `factbridge.testing.storage_conformance`):
documents as JSONB, vectors in pgvector `vector` columns, and the same versioned
migrations recorded in a `meta` table (the schema version numbers agree with
sqlite.py). Connections come from a small pool; every connection runs in
autocommit mode and each write is one explicit transaction, so a batch (a file's
posts and its quarantined rows) commits or rolls back as a whole.

psycopg is imported lazily: the extra is optional (`pip install 'factbridge[postgres]'`).
"""

from __future__ import annotations

import json
import logging
import math
import struct
import threading
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np
import orjson

from factbridge.backends.storage.base import (
    SCHEMA_VERSION,
    Expect,
    Rows,
    UpsertResult,
    content_sha,
    docs_cursor_checked,
    field_paths,
    keyed_descending,
    last_per_id,
)
from factbridge.errors import DependencyMissing, EmbedderMismatch, NotFound, StorageError
from factbridge.models import FactCheck, MatchCandidate, Post, Quarantined

if TYPE_CHECKING:
    import psycopg

T = TypeVar("T")
_log = logging.getLogger(__name__)

# Advisory lock key for migrations: two processes starting at once must not both migrate.
_MIGRATION_LOCK = 0x46424D49  # "FBMI"
# Advisory lock class for making a period's partition of `post_vectors` (with the period as key).
_PERIOD_LOCK = 0x46425056  # "FBPV"
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def post_period(at: datetime | None, span_s: int) -> int:
    """The period of `post_vectors` a post of this time falls in (as SQL's `factbridge_period`):
    whole spans since the epoch, 0 for anything before it, -1 for no known time."""
    if at is None:
        return -1
    at = at.replace(tzinfo=UTC) if at.tzinfo is None else at
    return max(0, (at - _EPOCH) // timedelta(seconds=span_s))


class _PeriodsMissing(Exception):
    """A write needs partitions of `post_vectors` that are not there yet (made outside it)."""

    def __init__(self, periods: set[int]) -> None:
        super().__init__(sorted(periods))
        self.periods = periods


MIGRATIONS: list[str] = [
    # 1: the first schema (mirrors sqlite.py migration 1). Ids compare byte-wise
    # (COLLATE "C"), as in SQLite: the same order everywhere, and keyset pagination
    # in that order can walk the primary key instead of sorting the table per page.
    """
    CREATE EXTENSION IF NOT EXISTS vector;
    CREATE TABLE IF NOT EXISTS factchecks (
        org TEXT NOT NULL, id TEXT COLLATE "C" NOT NULL, language TEXT, published_at TIMESTAMPTZ,
        tokens TEXT NOT NULL DEFAULT '', doc JSONB NOT NULL, sha TEXT NOT NULL,
        created_at TIMESTAMPTZ NOT NULL, updated_at TIMESTAMPTZ NOT NULL, PRIMARY KEY (org, id));
    CREATE TABLE IF NOT EXISTS posts (
        org TEXT NOT NULL, id TEXT COLLATE "C" NOT NULL, created_at TIMESTAMPTZ, language TEXT, author TEXT,
        tokens TEXT NOT NULL DEFAULT '', doc JSONB NOT NULL, sha TEXT NOT NULL,
        ingested_at TIMESTAMPTZ NOT NULL, updated_at TIMESTAMPTZ NOT NULL, PRIMARY KEY (org, id));
    CREATE INDEX IF NOT EXISTS posts_time ON posts(org, created_at);
    CREATE TABLE IF NOT EXISTS quarantine (
        seq BIGSERIAL PRIMARY KEY, org TEXT NOT NULL, kind TEXT NOT NULL,
        source TEXT NOT NULL, line INTEGER, field TEXT, reason TEXT NOT NULL, raw TEXT,
        created_at TIMESTAMPTZ NOT NULL);
    CREATE INDEX IF NOT EXISTS quarantine_org ON quarantine(org, seq);
    CREATE TABLE IF NOT EXISTS embedders (id TEXT PRIMARY KEY, dim INTEGER NOT NULL, first_seen TIMESTAMPTZ NOT NULL);
    CREATE TABLE IF NOT EXISTS vectors (
        org TEXT NOT NULL, kind TEXT NOT NULL, item_id TEXT COLLATE "C" NOT NULL, embedder TEXT NOT NULL
            REFERENCES embedders(id), text_sha TEXT NOT NULL, vec vector NOT NULL,
        PRIMARY KEY (org, kind, embedder, item_id));
    CREATE TABLE IF NOT EXISTS matches (
        org TEXT NOT NULL, post_id TEXT COLLATE "C" NOT NULL, factcheck_id TEXT NOT NULL, rank INTEGER NOT NULL,
        fused_score DOUBLE PRECISION NOT NULL, decision TEXT NOT NULL, decided_by TEXT NOT NULL,
        doc JSONB NOT NULL, created_at TIMESTAMPTZ NOT NULL, PRIMARY KEY (org, post_id, factcheck_id));
    CREATE INDEX IF NOT EXISTS matches_fc ON matches(org, factcheck_id);
    CREATE TABLE IF NOT EXISTS docs (
        org TEXT NOT NULL, collection TEXT NOT NULL, id TEXT COLLATE "C" NOT NULL, sort_key DOUBLE PRECISION,
        doc JSONB NOT NULL, created_at TIMESTAMPTZ NOT NULL, updated_at TIMESTAMPTZ NOT NULL,
        PRIMARY KEY (org, collection, id));
    CREATE INDEX IF NOT EXISTS docs_sort ON docs(org, collection, sort_key);
    CREATE TABLE IF NOT EXISTS text_index (
        org TEXT NOT NULL, kind TEXT NOT NULL, item_id TEXT COLLATE "C" NOT NULL, tsv TSVECTOR NOT NULL,
        PRIMARY KEY (org, kind, item_id));
    CREATE INDEX IF NOT EXISTS text_index_tsv ON text_index USING gin(tsv);
    """,
    # 2: SQLite's map from items to FTS rows; text_index is keyed by item already
    "SELECT 1",
    # 3: no full-text index (as sqlite.py 3): the matcher's own BM25 ranks lexically
    "DROP TABLE IF EXISTS text_index",
    # 4: the transaction that last wrote each post (`changed_posts`, as sqlite.py 4): a reader
    # catches up from the oldest transaction still running at its last read, so a slow
    # writer's rows are never skipped.
    """
    ALTER TABLE posts ADD COLUMN IF NOT EXISTS changed_xid xid8 NOT NULL DEFAULT pg_current_xact_id();
    CREATE INDEX IF NOT EXISTS posts_changed ON posts(org, changed_xid);
    """,
    # 5: vectors found by the hash of their text (as sqlite.py 5)
    "CREATE INDEX IF NOT EXISTS vectors_sha ON vectors(org, kind, embedder, text_sha)",
    # 6: the transaction that last wrote each vector (as posts in 4), so `vector_stamp` is one
    # index look-up: the newest writer's id, unless a writer older than it may still commit
    """
    ALTER TABLE vectors ADD COLUMN IF NOT EXISTS changed_xid xid8 NOT NULL DEFAULT pg_current_xact_id();
    CREATE INDEX IF NOT EXISTS vectors_changed ON vectors(org, kind, embedder, changed_xid);
    """,
    # 7: the same for fact-checks (`factcheck_stamp`)
    """
    ALTER TABLE factchecks ADD COLUMN IF NOT EXISTS changed_xid xid8 NOT NULL DEFAULT pg_current_xact_id();
    CREATE INDEX IF NOT EXISTS factchecks_changed ON factchecks(org, changed_xid);
    """,
    # 8: the post vectors the vector index searches, also kept by period of the posts' time
    # (`post_vectors`, partitioned by `factbridge_period`: a week by default, fixed per store in
    # `meta`), so that a search of triage's window walks only the graphs of its periods and not
    # one graph of every post ever stored (docs/scale-out.md). The copies of the posts already
    # stored are made here, and the graphs over every post are dropped (the index makes its own
    # on `post_vectors`). A post of no known time has period -1, searched with every window.
    """
    CREATE OR REPLACE FUNCTION factbridge_period(at TIMESTAMPTZ, span_s BIGINT) RETURNS INTEGER
        LANGUAGE sql IMMUTABLE PARALLEL SAFE
        AS $$ SELECT CASE WHEN at IS NULL THEN -1 ELSE greatest(0, floor(extract(epoch FROM at) / span_s))::INTEGER END $$;
    CREATE TABLE IF NOT EXISTS post_vectors (
        org TEXT NOT NULL, embedder TEXT NOT NULL, item_id TEXT COLLATE "C" NOT NULL, period INTEGER NOT NULL,
        vec vector NOT NULL, PRIMARY KEY (org, item_id, embedder, period)) PARTITION BY RANGE (period);
    CREATE TABLE IF NOT EXISTS post_vectors_unknown PARTITION OF post_vectors FOR VALUES FROM (MINVALUE) TO (0);
    INSERT INTO meta VALUES ('post_vector_period_s', '604800') ON CONFLICT (key) DO NOTHING;
    DO $$
    DECLARE
        span BIGINT := (SELECT value::BIGINT FROM meta WHERE key = 'post_vector_period_s');
        p INTEGER;
        old TEXT;
    BEGIN
        FOR p IN SELECT DISTINCT factbridge_period(posts.created_at, span) FROM vectors
                 JOIN posts ON posts.org = vectors.org AND posts.id = vectors.item_id
                 WHERE vectors.kind = 'post' AND posts.created_at IS NOT NULL LOOP
            EXECUTE format('CREATE TABLE IF NOT EXISTS %I PARTITION OF post_vectors FOR VALUES FROM (%s) TO (%s)',
                           'post_vectors_' || p, p, p + 1);
        END LOOP;
        INSERT INTO post_vectors (org, embedder, item_id, period, vec)
            SELECT v.org, v.embedder, v.item_id, factbridge_period(posts.created_at, span), v.vec
            FROM vectors v LEFT JOIN posts ON posts.org = v.org AND posts.id = v.item_id WHERE v.kind = 'post'
            ON CONFLICT DO NOTHING;
        FOR old IN SELECT indexname FROM pg_indexes WHERE schemaname = current_schema() AND tablename = 'vectors'
                   AND indexdef LIKE '%USING hnsw%' AND indexdef LIKE '%kind = ''post''%' LOOP
            EXECUTE format('DROP INDEX %I', old);
        END LOOP;
    END $$;
    """,
]
assert len(MIGRATIONS) == SCHEMA_VERSION

def _psycopg() -> Any:
    try:
        import psycopg
    except ImportError as exc:
        raise DependencyMissing("psycopg", "postgres") from exc
    return psycopg


def _scalar(cur: Any, sql: str, params: Sequence[Any] = ()) -> Any:
    row = cur.execute(sql, params).fetchone()
    return None if row is None else row[0]


def _xid_floor(stamp: str) -> int | None:
    """The lowest transaction id whose rows a reader of `_xid_stamp`'s `stamp` may not have
    seen: past the newest writer's, or the oldest writer still running at the read ("pending");
    every row when nothing was written. None: not such a stamp."""
    parts = stamp.split(":")
    if parts[0] != "xid" or len(parts) < 2:
        return None
    if parts[1] == "none" and len(parts) == 2:
        return 0
    numbers = [p for p in parts[1:4] if p.isascii() and p.isdigit()]
    if len(parts) == 2 and len(numbers) == 1:
        return int(parts[1]) + 1
    if len(parts) == 5 and parts[2] == "pending" and len(numbers) == 2:
        return int(parts[3])
    return None


def _fetch_all(sql: str, params: tuple[Any, ...]) -> Callable[[Any], list[Any]]:
    """A read of all rows with its parameters bound now (not when the loop variable moves on)."""
    return lambda c: c.execute(sql, params).fetchall()


def _now() -> datetime:
    return datetime.now(UTC)


def _utc(value: datetime | None) -> datetime | None:
    """Naive datetimes are taken as UTC, the same rule as the SQLite store."""
    if value is None:
        return None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _text(value: str | None) -> str | None:
    # PostgreSQL text and JSONB cannot hold U+0000; a stray NUL in a scraped post
    # must not fail its whole batch, so it becomes U+FFFD (the doc's sha is
    # computed before this, so re-ingesting the same row stays "unchanged").
    return value.replace("\x00", "\ufffd") if value and "\x00" in value else value


def _json(model_json: str) -> str:
    return model_json.replace("\\u0000", "\\ufffd")


def _finite(value: Any) -> Any:
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value


def _doc_json(doc: dict[str, Any]) -> str:
    """JSON for a JSONB column. JSONB has no NaN or Infinity: they become null, as
    pydantic writes them, rather than failing the batch."""
    try:
        return json.dumps(doc, ensure_ascii=False, default=str, allow_nan=False)
    except ValueError:
        return json.dumps(_finite(doc), ensure_ascii=False, default=str, allow_nan=False)


def vector_from_binary(data: bytes | memoryview, dim: int, item_id: str = "") -> np.ndarray:
    """pgvector's binary form: int16 dim, int16 unused, then dim float4 big-endian."""
    stored = struct.unpack_from(">H", data, 0)[0]
    if stored != dim:
        raise StorageError(f"stored vector for '{item_id}' has {stored} values, expected {dim}")
    return np.frombuffer(bytes(data), dtype=">f4", count=dim, offset=4).astype(np.float32)


def _vector_dumper() -> type:
    """Binary pgvector input for NumPy arrays (the binary form read back by `vector_from_binary`)."""
    from psycopg.adapt import Dumper
    from psycopg.pq import Format

    class VectorDumper(Dumper):
        format = Format.BINARY
        oid = 0  # the server infers `vector` from the column or operator

        def dump(self, obj: Any) -> bytes:
            arr = np.asarray(obj, dtype=">f4").reshape(-1)
            return struct.pack(">HH", arr.shape[0], 0) + arr.tobytes()

    return VectorDumper


class _Pool:
    """A small thread-safe pool: at most `size` connections, opened on demand, reused LIFO."""

    def __init__(self, connect: Callable[[], Any], size: int, wait_s: float = 30.0) -> None:
        self._connect = connect
        self._idle: list[Any] = []
        self._all: list[Any] = []
        self._lock = threading.Lock()
        self._slots = threading.BoundedSemaphore(size)
        self._wait_s = wait_s
        self.closed = False

    @contextmanager
    def connection(self) -> Iterator[Any]:
        if self.closed:
            raise StorageError("storage is closed")
        if not self._slots.acquire(timeout=self._wait_s):
            raise StorageError(f"no free database connection after {self._wait_s:.0f} s")
        try:
            with self._lock:
                conn = self._idle.pop() if self._idle else None
            if conn is None:
                conn = self._connect()
                with self._lock:
                    self._all.append(conn)
            try:
                yield conn
            finally:
                self._give_back(conn)
        finally:
            self._slots.release()

    def _give_back(self, conn: Any) -> None:
        from psycopg.pq import TransactionStatus

        healthy = not conn.closed and not conn.broken
        if healthy and conn.info.transaction_status != TransactionStatus.IDLE:
            try:
                conn.rollback()
            except Exception:  # a connection we cannot reset is dropped, never reused
                healthy = False
        with self._lock:
            if healthy and not self.closed:
                self._idle.append(conn)
                return
            if conn in self._all:
                self._all.remove(conn)
        conn.close()

    def close(self) -> None:
        with self._lock:
            self.closed = True
            conns, self._all, self._idle = self._all, [], []
        for conn in conns:
            conn.close()


class PostgresStorage:
    read_time_limit_s = 10.0
    write_time_limit_s = 300.0

    def __init__(self, url: str, pool_size: int = 4) -> None:
        self.url = url
        self._psycopg = _psycopg()
        self._conninfo = "postgresql" + url[len("postgres") :] if url.startswith("postgres://") else url
        self._dumper = _vector_dumper()
        self._pool = _Pool(self._open, pool_size)
        self._period_span: int | None = None  # post_period_s(), read once
        self._periods: set[int] | None = None  # post_periods(), read once and kept up to date
        self.known_indexes: set[str] = set()  # vector indexes seen in the catalog (pgvector.PgVectorIndex)

    # -- connections -------------------------------------------------------
    def _open(self) -> psycopg.Connection[Any]:
        try:
            conn: psycopg.Connection[Any] = self._psycopg.connect(self._conninfo, autocommit=True, connect_timeout=10)
        except self._psycopg.Error as exc:
            raise StorageError(f"cannot connect to {self._redacted()}: {exc}") from exc
        conn.execute("SET TIME ZONE 'UTC'")
        conn.adapters.register_dumper(np.ndarray, self._dumper)
        return conn

    def _redacted(self) -> str:
        # never print a password from the URL in an error message
        head, sep, tail = self.url.partition("@")
        if sep and ":" in head.split("//", 1)[-1]:
            scheme, _, creds = head.partition("//")
            return f"{scheme}//{creds.split(':', 1)[0]}:***@{tail}"
        return self.url

    def _translate(self, exc: Exception, limit_s: float) -> StorageError:
        if isinstance(exc, self._psycopg.errors.QueryCanceled):
            return StorageError(f"query took longer than {limit_s:g} s")
        return StorageError(f"{type(exc).__name__}: {str(exc).strip()}")

    def _read(self, fn: Callable[[psycopg.Cursor[Any]], T], binary: bool = False, local_settings: dict[str, str] | None = None) -> T:
        """Run a read under the read time limit. `local_settings` (planner knobs such as
        hnsw.ef_search) apply to this read only, inside its own transaction."""
        limit_ms = int(self.read_time_limit_s * 1000)
        with self._pool.connection() as conn:
            try:
                # reads run outside transactions under a session-wide time limit (one round trip)
                if getattr(conn, "_factbridge_read_limit", None) != limit_ms:
                    conn.execute(f"SET statement_timeout = {limit_ms}")
                    conn._factbridge_read_limit = limit_ms
                if not local_settings:
                    with conn.cursor(binary=binary) as cur:
                        return fn(cur)
                with conn.transaction(), conn.cursor(binary=binary) as cur:
                    for name, value in local_settings.items():
                        cur.execute("SELECT set_config(%s, %s, true)", (name, value))
                    return fn(cur)
            except self._psycopg.Error as exc:
                raise self._translate(exc, self.read_time_limit_s) from exc

    def _write(self, fn: Callable[[psycopg.Cursor[Any]], T]) -> T:
        with self._pool.connection() as conn:
            try:
                with conn.transaction(), conn.cursor() as cur:
                    cur.execute(f"SET LOCAL statement_timeout = {int(self.write_time_limit_s * 1000)}")
                    return fn(cur)
            except self._psycopg.Error as exc:
                raise self._translate(exc, self.write_time_limit_s) from exc

    def close(self) -> None:
        self._pool.close()

    # -- schema ------------------------------------------------------------
    def migrate(self) -> None:
        def run(cur: psycopg.Cursor[Any]) -> None:
            # a migration's copy of a large store (8: every post vector) may take longer than a write
            cur.execute("SET LOCAL statement_timeout = 0")
            cur.execute("SELECT pg_advisory_xact_lock(%s)", (_MIGRATION_LOCK,))
            cur.execute("CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
            row = cur.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
            current = int(row[0]) if row else 0
            if current > SCHEMA_VERSION:
                raise StorageError(f"{self._redacted()}: schema version {current} is newer than this FactBridge ({SCHEMA_VERSION})")
            for version in range(current + 1, SCHEMA_VERSION + 1):
                try:
                    cur.execute(MIGRATIONS[version - 1])
                except self._psycopg.errors.InsufficientPrivilege as exc:
                    raise StorageError(
                        f"migration {version} needs privileges this database user lacks ({exc}); "
                        "a superuser must run: CREATE EXTENSION vector"
                    ) from exc
                cur.execute(
                    "INSERT INTO meta VALUES ('schema_version', %s) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                    (str(version),),
                )

        self._write(run)

    def schema_version(self) -> int:
        def run(cur: psycopg.Cursor[Any]) -> int:
            if _scalar(cur, "SELECT to_regclass('meta')") is None:
                return 0
            row = cur.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
            return int(row[0]) if row else 0

        return self._read(run)

    # -- shared helpers ------------------------------------------------------
    def _upsert(
        self, cur: psycopg.Cursor[Any], table: str, org: str, columns: Sequence[str], rows: list[tuple[Any, ...]], types: Sequence[str]
    ) -> tuple[set[str], set[str]]:
        """Insert or update rows whose sha changed; return (inserted ids, updated ids).

        `rows` hold (id, *columns, doc, sha); `xmax = 0` tells a fresh insert from an update.
        """
        if not rows:
            return set(), set()
        names = ["id", *columns, "doc", "sha"]
        arrays = [list(col) for col in zip(*rows, strict=True)]
        # arrays go in binary: psycopg's text form escapes every element with a regex
        casts = ", ".join(f"%b::{t}[]" for t in ["text", *types, "jsonb", "text"])
        sets = ", ".join(f"{n} = excluded.{n}" for n in [*columns, "doc", "sha", "updated_at"])
        if table in ("posts", "factchecks"):  # inserts take the column's default
            sets += ", changed_xid = pg_current_xact_id()"
        created = "ingested_at" if table == "posts" else "created_at"
        now = _now()
        found = cur.execute(
            f"INSERT INTO {table} AS t (org, {', '.join(names)}, {created}, updated_at)"
            f" SELECT %s, u.*, %s, %s FROM unnest({casts}) AS u({', '.join(names)})"
            f" ON CONFLICT (org, id) DO UPDATE SET {sets} WHERE t.sha <> excluded.sha"
            " RETURNING t.id, (t.xmax = 0) AS inserted",
            (org, now, now, *arrays),
        ).fetchall()
        return {r[0] for r in found if r[1]}, {r[0] for r in found if not r[1]}

    @staticmethod
    def _report(ids: Sequence[str], inserted: set[str], updated: set[str]) -> UpsertResult:
        result = UpsertResult()
        for item_id in ids:
            key = _text(item_id)
            if key in inserted:
                result.inserted.append(item_id)
            elif key in updated:
                result.updated.append(item_id)
            else:
                result.unchanged.append(item_id)
        return result

    # -- fact-checks -------------------------------------------------------
    def upsert_factchecks(self, org: str, items: Sequence[FactCheck]) -> UpsertResult:
        unique = last_per_id(items)
        rows = []
        for fc in unique:
            doc = fc.model_dump(mode="json")
            rows.append((_text(fc.id), _text(fc.language), _utc(fc.published_at), _text(fc.tokens), _json(fc.model_dump_json()), content_sha(doc)))

        def run(cur: psycopg.Cursor[Any]) -> UpsertResult:
            inserted, updated = self._upsert(cur, "factchecks", org, ["language", "published_at", "tokens"], rows, ["text", "timestamptz", "text"])
            return self._report([fc.id for fc in unique], inserted, updated)

        return self._write(run)

    def get_factcheck(self, org: str, factcheck_id: str) -> FactCheck:
        found = self.get_factchecks(org, [factcheck_id])
        if factcheck_id not in found:
            raise NotFound(f"fact-check '{factcheck_id}' not found")
        return found[factcheck_id]

    def get_factchecks(self, org: str, ids: Sequence[str]) -> dict[str, FactCheck]:
        return self._get_models("factchecks", org, ids, FactCheck)

    def _get_models(self, table: str, org: str, ids: Sequence[str], model: Any) -> dict[str, Any]:
        wanted = {_text(i): i for i in ids}
        if not wanted:
            return {}
        rows = self._read(
            lambda c: c.execute(f"SELECT id, doc::text FROM {table} WHERE org=%s AND id = ANY(%s)", (org, list(wanted))).fetchall()
        )
        return {wanted.get(r[0], r[0]): model.model_validate_json(r[1]) for r in rows}

    def iter_factchecks(self, org: str, batch_size: int = 1000) -> Iterator[FactCheck]:
        yield from self._iter_models("factchecks", org, batch_size, FactCheck)

    def _iter_models(self, table: str, org: str, batch_size: int, model: Any) -> Iterator[Any]:
        for rows in self._pages(table, org, "doc::text", (), batch_size):
            yield from (model.model_validate_json(row[1]) for row in rows)

    def _pages(self, table: str, org: str, value: str, value_params: tuple[Any, ...], batch_size: int) -> Iterator[list[Any]]:
        """An organisation's rows of `table` as (id, `value`) pages of `batch_size`: keyset
        pagination in byte order, the same order as SQLite's; `value_params` bind `value`'s marks."""
        sql = f'SELECT id, {value} FROM {table} WHERE org=%s AND id COLLATE "C" > %s ORDER BY id COLLATE "C" LIMIT %s'
        last = ""
        while rows := self._read(_fetch_all(sql, (*value_params, org, last, batch_size))):
            yield rows
            last = rows[-1][0]

    def count_factchecks(self, org: str) -> int:
        return int(self._read(lambda c: _scalar(c, "SELECT count(*) FROM factchecks WHERE org=%s", (org,))))

    # -- posts ---------------------------------------------------------------
    def upsert_posts(self, org: str, posts: Sequence[Post], quarantined: Sequence[Quarantined] = ()) -> UpsertResult:
        unique = last_per_id(posts)
        rows = []
        for post in unique:
            doc = post.model_dump(mode="json")
            rows.append(
                (_text(post.id), _utc(post.created_at), _text(post.language), _text(post.author), _text(post.tokens),
                 _json(post.model_dump_json()), content_sha(doc))
            )
        quarantine_rows = self._quarantine_rows(org, quarantined)
        span = self.post_period_s()
        periods = {_text(p.id): post_period(p.created_at, span) for p in unique}
        # the periods of these posts' vectors are made now, off the embedding stage's writes
        self.ensure_post_periods(set(periods.values()))

        def run(cur: psycopg.Cursor[Any]) -> UpsertResult:
            before = {r[0]: post_period(r[1], span) for r in cur.execute(
                "SELECT id, created_at FROM posts WHERE org = %s AND id = ANY(%s)", (org, list(periods))).fetchall()}
            inserted, updated = self._upsert(
                cur, "posts", org, ["created_at", "language", "author", "tokens"], rows, ["timestamptz", "text", "text", "text"]
            )
            # A post whose time moved to another period takes its vectors' copies along; so does a
            # new post with a time whose vector was stored before it (in the period of no time).
            # Only the periods they were in are read (a look-up by id in the others' partitions
            # would cost by how many periods there are).
            moved = [i for i in updated if before.get(i, -1) != periods[i]] + [i for i in inserted if periods[i] >= 0]
            if moved:
                cur.execute(
                    "WITH moved AS (DELETE FROM post_vectors v USING posts p WHERE v.org = %s AND v.item_id = ANY(%s)"
                    " AND v.period = ANY(%s) AND p.org = v.org AND p.id = v.item_id AND v.period <> factbridge_period(p.created_at, %s)"
                    " RETURNING v.org, v.item_id, v.embedder, factbridge_period(p.created_at, %s) AS period, v.vec)"
                    " INSERT INTO post_vectors (org, item_id, embedder, period, vec) SELECT * FROM moved"
                    " ON CONFLICT (org, item_id, embedder, period) DO UPDATE SET vec = excluded.vec",
                    (org, moved, sorted({before.get(i, -1) for i in moved}), span, span),
                )
            self._insert_quarantine(cur, quarantine_rows)
            return self._report([p.id for p in unique], inserted, updated)

        return self._write(run)

    def get_post(self, org: str, post_id: str) -> Post:
        found = self.get_posts(org, [post_id])
        if post_id not in found:
            raise NotFound(f"post '{post_id}' not found")
        return found[post_id]

    def get_posts(self, org: str, ids: Sequence[str]) -> dict[str, Post]:
        return self._get_models("posts", org, ids, Post)

    def list_posts(self, org: str, limit: int = 100, offset: int = 0) -> list[Post]:
        rows = self._read(
            lambda c: c.execute(
                'SELECT doc::text FROM posts WHERE org=%s ORDER BY created_at DESC NULLS LAST, id COLLATE "C" LIMIT %s OFFSET %s',
                (org, limit, offset),
            ).fetchall()
        )
        return [Post.model_validate_json(r[0]) for r in rows]

    def iter_posts(self, org: str, batch_size: int = 1000) -> Iterator[Post]:
        yield from self._iter_models("posts", org, batch_size, Post)

    def count_posts(self, org: str) -> int:
        return int(self._read(lambda c: _scalar(c, "SELECT count(*) FROM posts WHERE org=%s", (org,))))

    def changed_posts(self, org: str, cursor: str = "") -> tuple[list[Post], str]:
        def run(cur: psycopg.Cursor[Any]) -> tuple[list[str], str]:
            # Every transaction below the snapshot's xmin has ended before this read, so its rows
            # are read now (or were before): the next read starts there. Those at or above it may
            # still commit, and are read again next time.
            token = str(_scalar(cur, "SELECT pg_snapshot_xmin(pg_current_snapshot())::text"))
            rows = cur.execute("SELECT doc::text FROM posts WHERE org=%s AND changed_xid >= %s::xid8", (org, cursor or "0")).fetchall()
            return [r[0] for r in rows], token

        docs, token = self._read(run)
        return [Post.model_validate_json(d) for d in docs], token

    # -- quarantine --------------------------------------------------------
    @staticmethod
    def _quarantine_rows(org: str, rows: Sequence[Quarantined]) -> list[tuple[Any, ...]]:
        now = _now()
        return [(org, _text(q.kind), _text(q.source), q.line, _text(q.field), _text(q.reason), _text(q.raw), now) for q in rows]

    @staticmethod
    def _insert_quarantine(cur: psycopg.Cursor[Any], rows: list[tuple[Any, ...]]) -> None:
        if rows:
            cur.executemany(
                "INSERT INTO quarantine (org, kind, source, line, field, reason, raw, created_at) VALUES (%s,%s,%s,%s,%s,%s,%s,%s)",
                rows,
            )

    def add_quarantine(self, org: str, rows: Sequence[Quarantined]) -> None:
        prepared = self._quarantine_rows(org, rows)
        self._write(lambda c: self._insert_quarantine(c, prepared))

    def list_quarantine(self, org: str, limit: int = 100) -> list[Quarantined]:
        rows = self._read(
            lambda c: c.execute(
                "SELECT kind, source, line, field, reason, raw FROM quarantine WHERE org=%s ORDER BY seq DESC LIMIT %s",
                (org, limit),
            ).fetchall()
        )
        return [Quarantined(kind=r[0], source=r[1], line=r[2], field=r[3], reason=r[4], raw=r[5] or "") for r in rows]

    # -- vectors -------------------------------------------------------------
    @staticmethod
    def _register_embedder(cur: psycopg.Cursor[Any], embedder_id: str, dim: int) -> None:
        cur.execute(
            "INSERT INTO embedders VALUES (%s, %s, %s) ON CONFLICT (id) DO NOTHING", (embedder_id, dim, _now())
        )
        known = int(_scalar(cur, "SELECT dim FROM embedders WHERE id=%s", (embedder_id,)))
        if known != dim:
            raise EmbedderMismatch(f"embedder '{embedder_id}' was stored with dim {known}, got {dim}")

    def put_vectors(self, org: str, kind: str, embedder_id: str, rows: Sequence[tuple[str, str, np.ndarray]]) -> None:
        if not rows:
            return
        dim = int(np.asarray(rows[0][2]).shape[-1])
        for item_id, _sha, vec in rows:
            if np.asarray(vec).shape[-1] != dim:
                raise EmbedderMismatch(f"vector for '{item_id}' has dim {np.asarray(vec).shape[-1]}, expected {dim}")
        last = {_text(item_id): (sha, np.asarray(vec, dtype=np.float32)) for item_id, sha, vec in rows}

        def run(cur: psycopg.Cursor[Any]) -> None:
            self._register_embedder(cur, embedder_id, dim)
            cur.executemany(
                "INSERT INTO vectors VALUES (%s, %s, %s, %s, %s, %b) ON CONFLICT (org, kind, embedder, item_id)"
                " DO UPDATE SET text_sha = excluded.text_sha, vec = excluded.vec, changed_xid = pg_current_xact_id()",
                [(org, kind, item_id, embedder_id, sha, vec) for item_id, (sha, vec) in last.items()],
            )
            if kind == "post":
                self._put_post_copies(cur, org, embedder_id, [(item_id, vec) for item_id, (_sha, vec) in last.items()])

        self._write_with_periods(run)

    # -- post vectors by period (migration 8) ----------------------------------
    def post_period_s(self) -> int:
        """The span of one period of `post_vectors`, in seconds: the store's, fixed when it was made."""
        if self._period_span is None:
            value = self._read(lambda c: _scalar(c, "SELECT value FROM meta WHERE key = 'post_vector_period_s'"))
            if value is None:
                raise StorageError(f"{self._redacted()}: no post vector period in meta: the schema is not migrated to version 8")
            self._period_span = int(value)
        return self._period_span

    def fix_post_period(self, span_s: int) -> int:
        """Make `span_s` the store's period of post vectors, unless it holds post vectors already
        (their partitions are numbered in its own period: then it keeps it, and says so). Returns
        the store's period."""
        if span_s < 60:
            raise StorageError(f"a period of post vectors of {span_s} s: at least a minute")
        self._period_span = None
        if self.post_period_s() == span_s:  # the common case: a read (a read-only database user opens the store too)
            return span_s

        def run(cur: psycopg.Cursor[Any]) -> int:
            stored = int(_scalar(cur, "SELECT value FROM meta WHERE key = 'post_vector_period_s' FOR UPDATE"))
            if stored == span_s:
                return stored
            if cur.execute("SELECT 1 FROM post_vectors LIMIT 1").fetchone() is not None or self._period_partitions(cur):
                _log.warning("%s keeps its post vectors by periods of %g h (vector_period_hours=%g applies to a new store)",
                             self._redacted(), stored / 3600, span_s / 3600)
                return stored
            cur.execute("UPDATE meta SET value = %s WHERE key = 'post_vector_period_s'", (str(span_s),))
            return span_s

        self._period_span = self._write(run)
        return self._period_span

    @staticmethod
    def _partition_period(name: str) -> int:
        """The period a partition of `post_vectors` holds, from its name (`post_vectors_<n>`; -1: `post_vectors_unknown`)."""
        suffix = name.rsplit("_", 1)[1]
        return int(suffix) if suffix.isdigit() else -1

    @classmethod
    def _period_partitions(cls, cur: psycopg.Cursor[Any]) -> set[int]:
        rows = cur.execute("SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid"
                           " WHERE i.inhparent = 'post_vectors'::regclass").fetchall()
        return {period for r in rows if (period := cls._partition_period(r[0])) >= 0}

    def post_periods(self) -> set[int]:
        """The periods that have a partition of `post_vectors` (as far as this process knows: one
        made by another process is found again when a write needs it)."""
        known = self._periods
        if known is None:
            known = self._periods = self._read(self._period_partitions)
        return known

    def post_period_sizes(self) -> list[dict[str, Any]]:
        """Each period's partition of `post_vectors`: its span (UTC), its rows (the planner's
        estimate: counting would read them all), and its table's and indexes' (the period's HNSW
        graphs) bytes on disk, oldest first; the partition of posts of no known time as period -1."""
        span = self.post_period_s()
        rows = self._read(_fetch_all(
            "SELECT c.relname, greatest(c.reltuples, 0)::bigint, pg_table_size(c.oid), pg_indexes_size(c.oid)"
            " FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid WHERE i.inhparent = 'post_vectors'::regclass", ()))
        out = []
        for name, estimate, table_bytes, index_bytes in rows:
            period = self._partition_period(str(name))
            start = _EPOCH + timedelta(seconds=period * span) if period >= 0 else None
            out.append({"period": period, "table": name, "from": start.isoformat() if start else None,
                        "to": (start + timedelta(seconds=span)).isoformat() if start else None,
                        "rows_estimate": int(estimate), "table_bytes": int(table_bytes), "index_bytes": int(index_bytes)})
        return sorted(out, key=lambda r: int(r["period"]))

    def ensure_post_periods(self, periods: Iterable[int]) -> None:
        """Make the partitions of `post_vectors` these periods need, each in a short transaction of
        its own: a new table attached to the parent (a lock that reads and writes of the other
        periods do not wait for), under an advisory lock so that two workers make it once."""
        from psycopg import sql

        known = self.post_periods()
        for period in sorted({int(p) for p in periods if p >= 0} - known):
            name = f"post_vectors_{period}"

            def run(cur: psycopg.Cursor[Any], period: int = period, name: str = name) -> None:
                cur.execute("SELECT pg_advisory_xact_lock(%s, %s)", (_PERIOD_LOCK, period))
                if _scalar(cur, "SELECT to_regclass(%s)", (name,)) is not None:
                    if _scalar(cur, "SELECT 1 FROM pg_inherits WHERE inhrelid = %s::regclass AND inhparent = 'post_vectors'::regclass", (name,)) is None:
                        raise StorageError(f"{self._redacted()}: table {name} is not a partition of post_vectors (detached?):"
                                           f" attach it again (FOR VALUES FROM ({period}) TO ({period + 1})) or rename it")
                    return
                cur.execute(sql.SQL("CREATE TABLE {} (LIKE post_vectors)").format(sql.Identifier(name)))
                cur.execute(sql.SQL("ALTER TABLE post_vectors ATTACH PARTITION {} FOR VALUES FROM ({}) TO ({})").format(
                    sql.Identifier(name), sql.Literal(period), sql.Literal(period + 1)))

            self._write(run)
            known.add(period)

    def _write_with_periods(self, fn: Callable[[psycopg.Cursor[Any]], T]) -> T:
        """`_write`, making the partitions of `post_vectors` it found missing and running it again."""
        wanted: set[int] = set()
        for _ in range(3):
            try:
                return self._write(fn)
            except _PeriodsMissing as missing:
                self._periods = None  # another process may have made some: read the catalog again
                self.ensure_post_periods(missing.periods)
                wanted = missing.periods
            except StorageError as exc:
                if 'no partition of relation "post_vectors"' not in str(exc):
                    raise
                self._periods = None  # one this process knew of is gone (detached): the check finds it
        raise StorageError(f"{self._redacted()}: the post vectors' partitions of periods {sorted(wanted)} are still missing after making them")

    def _put_post_copies(self, cur: psycopg.Cursor[Any], org: str, embedder_id: str, rows: Sequence[tuple[str | None, np.ndarray]]) -> None:
        """Each post vector's copy in `post_vectors`, in the period of its post's time (-1 where
        the post is not stored or has no time). Raises _PeriodsMissing before writing when a
        period has no partition yet."""
        span = self.post_period_s()
        ids = [item_id for item_id, _vec in rows]
        needed = {int(r[0]) for r in cur.execute(
            'SELECT DISTINCT COALESCE(factbridge_period(p.created_at, %s), -1) FROM unnest(%s::text[]) AS i(id)'
            ' LEFT JOIN posts p ON p.org = %s AND p.id = i.id COLLATE "C"', (span, ids, org)).fetchall()}
        missing = {p for p in needed if p >= 0} - self.post_periods()
        if missing:
            raise _PeriodsMissing(missing)
        cur.executemany(
            "INSERT INTO post_vectors (org, embedder, item_id, period, vec) VALUES (%s, %s, %s,"
            " COALESCE((SELECT factbridge_period(created_at, %s) FROM posts WHERE org = %s AND id = %s), -1), %b)"
            " ON CONFLICT (org, item_id, embedder, period) DO UPDATE SET vec = excluded.vec",
            [(org, embedder_id, item_id, span, org, item_id, vec) for item_id, vec in rows],
        )

    def load_vectors(self, org: str, kind: str, embedder_id: str, ids: Sequence[str] | None = None) -> tuple[list[str], np.ndarray]:
        wanted = None if ids is None else {_text(i): i for i in ids}
        if wanted is not None and not wanted:
            return [], np.zeros((0, 0), dtype=np.float32)

        def run(cur: psycopg.Cursor[Any]) -> tuple[list[str], np.ndarray]:
            known = cur.execute("SELECT dim FROM embedders WHERE id=%s", (embedder_id,)).fetchone()
            if known is None:
                return [], np.zeros((0, 0), dtype=np.float32)
            dim = int(known[0])
            if wanted is None:
                rows = cur.execute(
                    'SELECT item_id, vec FROM vectors WHERE org=%s AND kind=%s AND embedder=%s ORDER BY item_id COLLATE "C"',
                    (org, kind, embedder_id),
                ).fetchall()
            else:
                rows = cur.execute(
                    "SELECT item_id, vec FROM vectors WHERE org=%s AND kind=%s AND embedder=%s AND item_id = ANY(%s)"
                    ' ORDER BY item_id COLLATE "C"',
                    (org, kind, embedder_id, list(wanted)),
                ).fetchall()
            matrix = np.zeros((len(rows), dim), dtype=np.float32)
            for i, row in enumerate(rows):
                matrix[i] = vector_from_binary(row[1], dim, row[0])
            # Asked-for ids come back as asked (a NUL the database could not hold was replaced on write).
            return [r[0] if wanted is None else wanted.get(r[0], r[0]) for r in rows], matrix

        return self._read(run, binary=True)

    def post_times(self, org: str, ids: Sequence[str]) -> dict[str, datetime | None]:
        wanted = {_text(i): i for i in ids}  # asked-for ids come back as asked
        if not wanted:
            return {}
        rows = self._read(_fetch_all("SELECT id, created_at FROM posts WHERE org=%s AND id = ANY(%s)", (org, list(wanted))))
        return {wanted.get(r[0], r[0]): (r[1].astimezone(UTC) if r[1] is not None else None) for r in rows}

    def vector_shas(self, org: str, kind: str, embedder_id: str, ids: Sequence[str] | None = None,
                    shas: Sequence[str] | None = None) -> dict[str, str]:
        sql = "SELECT item_id, text_sha FROM vectors WHERE org=%s AND kind=%s AND embedder=%s"
        params: list[Any] = [org, kind, embedder_id]
        wanted = None if ids is None else {_text(i): i for i in ids}  # asked-for ids come back as asked
        if wanted is not None:
            sql += " AND item_id = ANY(%s)"
            params.append(list(wanted))
        if shas is not None:
            sql += " AND text_sha = ANY(%s)"
            params.append(list(dict.fromkeys(shas)))
        rows = self._read(_fetch_all(sql, tuple(params)))
        return {(r[0] if wanted is None else wanted.get(r[0], r[0])): r[1] for r in rows}

    def factcheck_fields(self, org: str, fields: Sequence[str], ids: Sequence[str] | None = None) -> dict[str, list[Any]]:
        paths = field_paths(fields)
        values = "jsonb_build_array(" + ", ".join("doc #> %s" for _ in paths) + ")::text"
        if ids is not None:
            wanted = {_text(i): i for i in ids}
            if not wanted:
                return {}
            rows = self._read(_fetch_all(f"SELECT id, {values} FROM factchecks WHERE org=%s AND id = ANY(%s)", (*paths, org, list(wanted))))
            return {wanted.get(r[0], r[0]): orjson.loads(r[1]) for r in rows}
        out: dict[str, list[Any]] = {}
        for rows in self._pages("factchecks", org, values, tuple(paths), 10_000):
            out.update((r[0], orjson.loads(r[1])) for r in rows)
        return out

    def factcheck_shas(self, org: str) -> dict[str, str]:
        out: dict[str, str] = {}
        for rows in self._pages("factchecks", org, "sha", (), 50_000):
            out.update(rows)
        return out

    def factcheck_stamp(self, org: str) -> str:
        return self._xid_stamp("SELECT changed_xid FROM factchecks WHERE org=%s ORDER BY changed_xid DESC LIMIT 1", (org,))

    def factchecks_changed(self, org: str, stamp: str) -> list[str] | None:
        floor = _xid_floor(stamp)
        if floor is None:
            return None
        return [r[0] for r in self._read(_fetch_all("SELECT id FROM factchecks WHERE org=%s AND changed_xid >= %s::xid8", (org, str(floor))))]

    def vector_stamp(self, org: str, kind: str, embedder_id: str) -> str:
        sql = "SELECT changed_xid FROM vectors WHERE org=%s AND kind=%s AND embedder=%s ORDER BY changed_xid DESC LIMIT 1"
        return self._xid_stamp(sql, (org, kind, embedder_id))

    def vectors_changed(self, org: str, kind: str, embedder_id: str, stamp: str) -> list[str] | None:
        floor = _xid_floor(stamp)
        if floor is None:
            return None
        sql = "SELECT item_id FROM vectors WHERE org=%s AND kind=%s AND embedder=%s AND changed_xid >= %s::xid8"
        return [r[0] for r in self._read(_fetch_all(sql, (org, kind, embedder_id, str(floor))))]

    def _xid_stamp(self, newest: str, params: tuple[Any, ...]) -> str:
        """A stamp from the newest writer's transaction id (`newest`: one index look-up). Rows are
        never deleted and every write sets its transaction's id, so a write committed after this
        read under a newer id moves the stamp. A transaction older than the newest writer that is
        still running at the read may yet commit rows under its older id, which the newest id
        would not show: then the stamp is one of a kind (a reader reloads, and again once that
        transaction is over). The id and the oldest running transaction come from one statement,
        so from one snapshot. The stamp also says from which id on a row may be new to whoever
        read it (`_xid_floor`): above the newest writer, or from the oldest running one."""
        row = self._read(lambda c: c.execute(f"SELECT ({newest})::text, pg_snapshot_xmin(pg_current_snapshot())::text", params).fetchone())
        assert row is not None  # a SELECT without FROM returns a row
        newest_xid, oldest_running = row
        if newest_xid is None:
            return "xid:none"
        if int(oldest_running) <= int(newest_xid):  # a writer older than the newest may still commit
            return f"xid:{newest_xid}:pending:{oldest_running}:{uuid.uuid4().hex}"
        return f"xid:{newest_xid}"

    def embedders(self) -> dict[str, int]:
        return {r[0]: int(r[1]) for r in self._read(lambda c: c.execute("SELECT id, dim FROM embedders").fetchall())}

    # -- matches -------------------------------------------------------------
    def replace_matches(self, org: str, post_id: str, candidates: Sequence[MatchCandidate]) -> None:
        now = _now()
        rows = [
            (org, _text(post_id), _text(c.factcheck_id), c.rank, c.fused_score, c.decision, c.decided_by,
             _json(c.model_dump_json(exclude={"factcheck"})), now)
            for c in candidates
        ]

        def run(cur: psycopg.Cursor[Any]) -> None:
            cur.execute("DELETE FROM matches WHERE org=%s AND post_id=%s", (org, _text(post_id)))
            if rows:
                cur.executemany("INSERT INTO matches VALUES (%s,%s,%s,%s,%s,%s,%s,%s,%s)", rows)

        self._write(run)

    def matches_for_post(self, org: str, post_id: str) -> list[MatchCandidate]:
        rows = self._read(
            lambda c: c.execute(
                "SELECT doc::text FROM matches WHERE org=%s AND post_id=%s ORDER BY rank", (org, _text(post_id))
            ).fetchall()
        )
        return [MatchCandidate.model_validate_json(r[0]) for r in rows]

    def matches_for_posts(self, org: str, post_ids: Sequence[str]) -> dict[str, list[MatchCandidate]]:
        wanted = {_text(i): i for i in post_ids}
        out: dict[str, list[MatchCandidate]] = {}
        if not wanted:
            return out
        rows = self._read(
            lambda c: c.execute(
                "SELECT post_id, doc::text FROM matches WHERE org=%s AND post_id = ANY(%s) ORDER BY post_id, rank", (org, list(wanted))
            ).fetchall()
        )
        for post_id, doc in rows:
            out.setdefault(wanted.get(post_id, post_id), []).append(MatchCandidate.model_validate_json(doc))
        return out

    def matches_for_factcheck(self, org: str, factcheck_id: str) -> list[tuple[str, MatchCandidate]]:
        rows = self._read(
            lambda c: c.execute(
                'SELECT post_id, doc::text FROM matches WHERE org=%s AND factcheck_id=%s ORDER BY fused_score DESC, post_id COLLATE "C"',
                (org, _text(factcheck_id)),
            ).fetchall()
        )
        return [(r[0], MatchCandidate.model_validate_json(r[1])) for r in rows]

    # -- documents -------------------------------------------------------------
    _DOC_ORDERS = {
        "sort_desc": 'sort_key DESC NULLS LAST, id COLLATE "C"',
        "sort_asc": 'sort_key ASC NULLS LAST, id COLLATE "C"',
        "updated_desc": 'updated_at DESC, id COLLATE "C"',
        "created_asc": 'created_at ASC, id COLLATE "C"',
        "id": 'id COLLATE "C"',
    }

    def put_docs(self, org: str, collection: str, rows: Sequence[tuple[str, dict[str, Any], float | None]]) -> None:
        self.put_docs_batch(org, [(collection, rows)])

    def put_docs_batch(self, org: str, writes: Sequence[tuple[str, Rows]], *, expect: Sequence[Expect] = (),
                       other_orgs: Sequence[tuple[str, str, Rows]] = ()) -> None:
        now = _now()

        def run(c: Any) -> None:  # one transaction: checks and rows inside it
            # A transaction-scoped advisory lock per expected key serialises the conditional
            # writers of that key (an absent row cannot be locked FOR UPDATE); the read after it
            # sees whatever the previous holder committed.
            for cond in sorted(expect, key=lambda e: (e.org or org, e.collection, e.doc_id)):
                scope = cond.org or org
                c.execute("SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))", (f"{scope}\x1f{cond.collection}\x1f{cond.doc_id}",))
                row = c.execute("SELECT doc::text FROM docs WHERE org=%s AND collection=%s AND id=%s",
                                (scope, cond.collection, _text(cond.doc_id))).fetchone()
                if not cond.holds(json.loads(row[0]) if row else None):
                    raise cond.failed(org)
            for scope, collection, rows in [*((org, c_, r) for c_, r in writes), *other_orgs]:
                last = {doc_id: (doc, sort_key) for doc_id, doc, sort_key in rows}
                if not last:
                    continue
                ids = [_text(doc_id) for doc_id in last]
                docs = [_json(_doc_json(doc)) for doc, _ in last.values()]
                keys = [None if key is None else float(key) for _, key in last.values()]
                c.execute(
                    "INSERT INTO docs (org, collection, id, sort_key, doc, created_at, updated_at)"
                    " SELECT %s, %s, u.id, u.sort_key, u.doc, %s, %s"
                    " FROM unnest(%b::text[], %b::float8[], %b::jsonb[]) AS u(id, sort_key, doc)"
                    " ON CONFLICT (org, collection, id) DO UPDATE SET"
                    " sort_key = excluded.sort_key, doc = excluded.doc, updated_at = excluded.updated_at",
                    (scope, collection, now, now, ids, keys, docs),
                )

        self._write(run)

    def get_docs(self, org: str, collection: str, ids: Sequence[str]) -> dict[str, dict[str, Any]]:
        wanted = {_text(i): i for i in ids}
        if not wanted:
            return {}
        rows = self._read(
            lambda c: c.execute(
                "SELECT id, doc::text FROM docs WHERE org=%s AND collection=%s AND id = ANY(%s)", (org, collection, list(wanted))
            ).fetchall()
        )
        return {wanted.get(r[0], r[0]): json.loads(r[1]) for r in rows}

    def list_docs(self, org: str, collection: str, limit: int = 100, offset: int = 0, order: str = "sort_desc",
                  after: str | None = None) -> list[tuple[str, dict[str, Any]]]:
        if order not in self._DOC_ORDERS:
            raise ValueError(f"unknown order '{order}'")
        docs_cursor_checked(order, after)
        since, args = ("AND id > %s", (_text(after),)) if after is not None else ("", ())
        rows = self._read(
            lambda c: c.execute(
                f"SELECT id, doc::text FROM docs WHERE org=%s AND collection=%s {since} ORDER BY {self._DOC_ORDERS[order]} LIMIT %s OFFSET %s",
                (org, collection, *args, limit, offset),
            ).fetchall()
        )
        return [(r[0], json.loads(r[1])) for r in rows]

    def list_docs_keyed(self, org: str, collection: str, limit: int = 1000, order: str = "sort_desc",
                        after: tuple[float, str] | None = None) -> list[tuple[str, float, dict[str, Any]]]:
        desc = keyed_descending(order)
        # a range on the sort key (an index scan from it), less the ties already read; no NULLs,
        # so DESC's default NULLS FIRST is the backward scan of the ascending index
        since, args = (f'AND sort_key {"<=" if desc else ">="} %s AND NOT (sort_key = %s AND id <= %s COLLATE "C")',
                       (after[0], after[0], _text(after[1]))) if after else ("", ())
        rows = self._read(
            lambda c: c.execute(
                f"SELECT id, sort_key, doc::text FROM docs WHERE org=%s AND collection=%s AND sort_key IS NOT NULL {since}"
                f' ORDER BY sort_key {"DESC" if desc else "ASC"}, id COLLATE "C" LIMIT %s',
                (org, collection, *args, limit),
            ).fetchall()
        )
        return [(r[0], float(r[1]), json.loads(r[2])) for r in rows]

    def count_docs(self, org: str, collection: str) -> int:
        return int(
            self._read(lambda c: _scalar(c, "SELECT count(*) FROM docs WHERE org=%s AND collection=%s", (org, collection)))
        )
