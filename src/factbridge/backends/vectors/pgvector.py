"""Vector search inside PostgreSQL with pgvector, over the vectors the storage holds.

One index is one organisation's vectors of one kind ("factcheck" or "post") made by
one embedder: the organisation and the embedder are in every query, so another
partner's vectors never come back, and vectors or queries of another embedder (or
dimension) are refused with EmbedderMismatch.

Exact search (default) scans that slice in the database; `hnsw=True` builds a
pgvector HNSW index for the embedder and kind (a partial index on `vec::vector(dim)`,
since one table holds every embedder's vectors of every kind: a fact-check search
must not walk through millions of post vectors) for the millions-of-posts case. `halfvec=True` indexes `vec::halfvec(dim)` instead (half
the index's size; scores returned are still computed on the float vectors). `m` and
`ef_construction` shape a new HNSW index; `ef_search` is set per query.

Post vectors are searched in `post_vectors`, their copies partitioned by the period of the
post's time (storage migration 8): the HNSW index there is one graph per period, and a search
of a span (triage's window) walks only the graphs of the periods it covers, and that of the
posts of no known time. A search of every post (a recheck) merges every period's graph.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import numpy as np

from factbridge.backends.storage.postgres import PostgresStorage, _scalar, _text, post_period
from factbridge.backends.vectors.base import STAMP_UNIT, Span, check_vectors
from factbridge.backends.vectors.hnsw import NARROW_K, RERANK_FACTOR
from factbridge.errors import EmbedderMismatch

PGVECTOR_INDEX_VERSION = "pgvector-1"
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _time(stamp: int) -> datetime:
    """A `time_stamp` (whole microseconds since the epoch) as the aware time it was made from."""
    return _EPOCH + stamp * STAMP_UNIT


class PgVectorIndex:
    def __init__(
        self,
        storage: PostgresStorage,
        org: str,
        kind: str,
        embedder_id: str,
        dim: int,
        *,
        hnsw: bool = False,
        ef_search: int = 100,
        m: int = 16,
        ef_construction: int = 64,
        halfvec: bool = False,
    ) -> None:
        self.storage = storage
        self.org = org
        self.kind = kind
        self.embedder_id = embedder_id
        self.dim = dim
        self.hnsw = hnsw
        self.ef_search = ef_search
        self.halfvec = halfvec
        known = storage.embedders().get(embedder_id)
        if known is not None and known != dim:
            raise EmbedderMismatch(f"embedder '{embedder_id}' has dimension {known} in storage, index asked for {dim}")
        if hnsw:
            self._ensure_hnsw(m, ef_construction)

    @property
    def hnsw_index_name(self) -> str:
        half = "/halfvec" if self.halfvec else ""  # another expression: another index
        return "vectors_hnsw_" + hashlib.sha1(f"{self.embedder_id}/{self.dim}/{self.kind}{half}".encode()).hexdigest()[:16]

    @property
    def _indexed_type(self) -> str:
        return "halfvec" if self.halfvec else "vector"

    @property
    def _by_period(self) -> bool:
        return self.kind == "post"  # post vectors are searched in their copies by period

    def _table(self) -> Any:
        from psycopg import sql

        return sql.SQL("post_vectors AS vectors" if self._by_period else "vectors")

    def _slice(self) -> Any:
        """The condition that picks this index's rows (the one its partial HNSW index has)."""
        from psycopg import sql

        if self._by_period:
            return sql.SQL("embedder = {embedder}").format(embedder=sql.Literal(self.embedder_id))
        return sql.SQL("embedder = {embedder} AND kind = {kind}").format(embedder=sql.Literal(self.embedder_id), kind=sql.Literal(self.kind))

    def hnsw_statement(self, m: int, ef_construction: int) -> Any:
        """The CREATE INDEX of this index's HNSW graph (a bulk load runs it itself, without the
        write time limit, after the rows are in). On `post_vectors` it is a partitioned index:
        a graph per period, made with each new period's partition."""
        from psycopg import sql

        return sql.SQL(
            "CREATE INDEX IF NOT EXISTS {name} ON {table} USING hnsw ((vec::{type}({dim})) {ops})"
            " WITH (m = {m}, ef_construction = {efc}) WHERE {slice}"
        ).format(
            name=sql.Identifier(self.hnsw_index_name), dim=sql.Literal(int(self.dim)), type=sql.SQL(self._indexed_type),
            ops=sql.SQL(f"{self._indexed_type}_ip_ops"), m=sql.Literal(int(m)), efc=sql.Literal(int(ef_construction)),
            table=sql.Identifier("post_vectors" if self._by_period else "vectors"), slice=self._slice(),
        )

    def _ensure_hnsw(self, m: int, ef_construction: int) -> None:
        """Make the HNSW index unless the catalog has it. CREATE INDEX IF NOT EXISTS would lock
        the table (and, on `post_vectors`, every period's partition) against writes before it
        found the index there, and an index is made for every batch's search."""
        name = self.hnsw_index_name
        known = self.storage.known_indexes
        if name in known:
            return
        if self.storage._read(lambda c: _scalar(c, "SELECT to_regclass(%s)", (name,))) is None:
            statement = self.hnsw_statement(m, ef_construction)
            self.storage._write(lambda c: c.execute(statement))
        known.add(name)

    def _check(self, embedder_id: str, dim: int) -> None:
        check_vectors(self, embedder_id, dim)

    def add(self, ids: Sequence[str], vectors: np.ndarray, embedder_id: str) -> None:
        self._check(embedder_id, self.dim)
        if not len(ids):
            return
        vectors = np.asarray(vectors, dtype=np.float32).reshape(len(ids), -1)
        self._check(embedder_id, vectors.shape[1])
        rows = {_text(item_id): vec for item_id, vec in zip(ids, vectors, strict=True)}

        def run(cur: Any) -> None:
            self.storage._register_embedder(cur, self.embedder_id, self.dim)
            # the text hash is unknown here: a new row gets '' (so the pipeline re-embeds it
            # from its text when it next looks), an existing row keeps the hash it had
            cur.executemany(
                "INSERT INTO vectors VALUES (%s, %s, %s, %s, '', %b) ON CONFLICT (org, kind, embedder, item_id)"
                " DO UPDATE SET vec = excluded.vec, changed_xid = pg_current_xact_id()",  # as the store's own writes: `vector_stamp`
                [(self.org, self.kind, item_id, self.embedder_id, vec) for item_id, vec in rows.items()],
            )
            if self._by_period:
                self.storage._put_post_copies(cur, self.org, self.embedder_id, list(rows.items()))

        self.storage._write_with_periods(run)

    def search(self, query: np.ndarray, k: int, embedder_id: str) -> list[tuple[str, float]]:
        return self._search(query, k, embedder_id, None)

    def search_many(self, queries: np.ndarray, k: int, embedder_id: str, min_score: float | None = None,
                    within: Span | None = None) -> list[list[tuple[str, float]]]:
        """`search` of each row, less the hits scoring under `min_score`. `within` (a post
        index): only the posts created in that span, or of no known time, are searched for: the
        database leaves the others out while it walks the index (joined to `posts` on their
        creation time), so a text posted hundreds of times long ago does not fill the `k`
        nearest and crowd out its copies of the window (the embedded index leaves out whole
        segments of other times instead)."""
        queries, span = self._rows(queries), self._span(within)
        return [[(i, s) for i, s in self._search(q, k, embedder_id, span) if min_score is None or s >= min_score] for q in queries]

    def search_above(self, queries: np.ndarray, k: int, embedder_id: str, min_score: float, within: Span | None = None,
                     held: Sequence[str] | None = None) -> list[list[tuple[str, float]]]:
        """Each row's hits scoring at least `min_score` (at most `k`, best first): the `NARROW_K`
        nearest first, and the `k` nearest only for the rows whose every one of those reaches it
        (as `HnswIndex.search_above`). Most posts have few near-copies, and a walk for `k` of a
        span costs by how many posts of other times it passes (docs/performance.md §5, "Eleventh
        round"). `held` is for the embedded index (a row that lost its way); the database's
        walk is not asked again."""
        queries, span = self._rows(queries), self._span(within)
        narrow = min(k, NARROW_K)
        out: list[list[tuple[str, float]]] = []
        for q in queries:
            hits = self._search(q, narrow, embedder_id, span, candidates=narrow)  # a threshold's test: no re-rank's extra candidates
            if narrow < k and len(hits) == narrow and all(s >= min_score for _, s in hits):
                hits = self._search(q, k, embedder_id, span)
            out.append([(i, s) for i, s in hits if s >= min_score])
        return out

    def _rows(self, queries: np.ndarray) -> np.ndarray:
        queries = np.asarray(queries, dtype=np.float32)
        return queries.reshape(len(queries), -1) if len(queries) else queries.reshape(0, self.dim)

    def _span(self, within: Span | None) -> Span | None:
        return within if self.kind == "post" else None  # only posts carry a time

    def _search(self, query: np.ndarray, k: int, embedder_id: str, within: Span | None, candidates: int | None = None) -> list[tuple[str, float]]:
        query = np.asarray(query, dtype=np.float32).reshape(-1)
        self._check(embedder_id, query.shape[0])
        if k <= 0:
            return []
        statement, params, settings = self.query(query, k, within, candidates)
        rows = self.storage._read(lambda c: c.execute(statement, params).fetchall(), local_settings=settings or None)
        return [(r[0], float(r[1])) for r in rows]

    def query(self, query: np.ndarray, k: int, within: Span | None = None, candidates: int | None = None) -> tuple[Any, tuple[Any, ...], dict[str, str]]:
        """The statement of a search, its parameters and the settings it runs under. `candidates`:
        how many the HNSW index orders before the re-rank by the float vectors (by default a few
        times `k` with halfvec, `k` otherwise)."""
        from psycopg import sql

        # a span: the periods it covers (and that of no known time), and each vector's post joined
        # for its time (none stored, or none given: kept, as unknown)
        source: sql.Composable = self._table()
        when: sql.Composable = sql.SQL("")
        times: tuple[Any, ...] = ()
        if within is not None:
            source = sql.SQL("{table} LEFT JOIN posts ON posts.org = vectors.org AND posts.id = vectors.item_id").format(table=source)
            when = sql.SQL(" AND (posts.created_at IS NULL OR posts.created_at BETWEEN %s AND %s)")
            times = (_time(within[0]), _time(within[1]))
            if self._by_period:
                span = self.storage.post_period_s()
                # the bounds go in as literals: the planner leaves out the other periods' graphs
                when = sql.SQL(" AND (vectors.period < 0 OR vectors.period BETWEEN {lo} AND {hi})").format(
                    lo=sql.Literal(post_period(times[0], span)), hi=sql.Literal(post_period(times[1], span))) + when
        statement: sql.Composable
        settings: dict[str, str]
        if self.hnsw:
            # the expression and the embedder literal must match the partial index to use it. With
            # halfvec the index orders a few times k candidates, re-ranked by the float inner product.
            statement = sql.SQL(
                "SELECT item_id, score FROM (SELECT item_id, -((vec::vector({dim})) <#> %b::vector({dim})) AS score FROM {source}"
                " WHERE {slice} AND vectors.org = %s{when}"
                " ORDER BY (vec::{type}({dim})) <#> %b::vector({dim})::{type}({dim}) LIMIT %s) AS candidates"
                ' ORDER BY score DESC, item_id COLLATE "C" LIMIT %s'
            ).format(
                dim=sql.Literal(int(self.dim)), slice=self._slice(), type=sql.SQL(self._indexed_type), source=source, when=when,
            )
            wanted = candidates if candidates is not None else max(k * RERANK_FACTOR, k + 32) if self.halfvec else k
            # pgvector's ef_search tops out at 1000; the iterative scan goes on past it for a larger k
            # (and past the posts of other times: the walk goes on until `wanted` of the span are found)
            settings = {"hnsw.ef_search": str(min(1000, max(self.ef_search, wanted))), "hnsw.iterative_scan": "strict_order"}
            params: tuple[Any, ...] = (query, self.org, *times, query, wanted, k)
        else:
            statement = sql.SQL(
                "SELECT item_id, -(vec <#> %b::vector) FROM {source} WHERE {slice} AND vectors.org = %s{when}"
                ' ORDER BY vec <#> %b::vector, item_id COLLATE "C" LIMIT %s'
            ).format(source=source, when=when, slice=self._slice())
            settings = {}
            params = (query, self.org, *times, query, k)
        return statement, params, settings

    def __len__(self) -> int:
        return int(
            self.storage._read(
                lambda c: _scalar(
                    c, "SELECT count(*) FROM vectors WHERE org = %s AND kind = %s AND embedder = %s",  # the vectors of record
                    (self.org, self.kind, self.embedder_id),
                )
            )
        )
