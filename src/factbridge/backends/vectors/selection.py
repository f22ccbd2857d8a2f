"""Which vector index serves the stored vectors of one organisation, kind and embedder.

The `vector_index` setting chooses:
  hnsw (default)  PostgreSQL: pgvector HNSW inside the database (nothing loaded into the
                  process). SQLite: an HNSW index (usearch) kept in memory, persisted in
                  `data_dir/indexes/` and brought up to date incrementally.
  exact           PostgreSQL: pgvector exact scan. SQLite: exact NumPy search in memory.

A SQLite-side index is kept per (storage, org, kind, embedder) for the life of the
process. Each use adds the vectors of the items the caller names (the batch it is
working on: what it just stored); every `resync_s` seconds, and when it is first
opened, it compares the stored text hashes with its own and adds whatever another
process stored or changed (unless the store's `vector_stamp` says nothing was written
since the last time: a fact-check library's index reads no hashes while it is unchanged). It is saved when a process first brings it up to date, and
then once SAVE_AFTER vectors (or a quarter of its newest segment, if more) were added
since: a save writes the newest segment's graph again whole, and a restart adds what
the file lacks from the store (its text hashes), so saving is only a head start.

`VectorIndexTuning` (from the vector_* settings) sets how a new graph is built (links,
construction effort, vectors per usearch segment, f32/f16/i8 storage: a quantised usearch index re-ranks its
candidates with the float vectors the storage holds; f16 on PostgreSQL indexes halfvec)
and how far a search explores.
"""

from __future__ import annotations

import hashlib
import threading
import time
import weakref
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from factbridge.backends.vectors.base import VectorIndex, time_stamp
from factbridge.backends.vectors.hnsw import HnswIndex
from factbridge.backends.vectors.numpy_index import NumpyIndex
from factbridge.errors import ConfigError

VECTOR_INDEXES = ("hnsw", "exact")
# Vectors added since the last save before the next. A save writes the newest segment again
# (up to `vector_segment_size` vectors: ~1.7 KB each at f32 with the graph, 425 MB for a full
# one); saved once a minute, a desk adding a post every few seconds rewrote it ~1,400 times a
# day. What a restart finds missing it adds from the store: 10,000 tweets' vectors cost ~3 s.
SAVE_AFTER = 10_000


# The effort of a build and of a search when `vector_ef_construction` / `vector_ef_search` are
# not set: the least that reaches recall@10 0.98 at a million vectors (docs/performance.md §2,
# "Twelfth round"). usearch builds segments of 250,000 (0.997 at 64 / 256); pgvector builds one
# graph of the whole index, which a build at 64 leaves too sparse for any search effort (0.880
# at 256, 0.916 at 1,000) and one at 128 does not (0.973 at 256, 0.995 at 600).
EF_CONSTRUCTION = {"usearch": 64, "pgvector": 128}
EF_SEARCH = {"usearch": 256, "pgvector": 600}


@dataclass(frozen=True)
class VectorIndexTuning:
    m: int = 16
    ef_construction: int | None = None  # None: EF_CONSTRUCTION of the index's kind
    ef_search: int | None = None  # None: EF_SEARCH of the index's kind
    dtype: str = "f32"
    segment_size: int = 250_000

    def __post_init__(self) -> None:
        if self.dtype not in ("f32", "f16", "i8"):
            raise ConfigError(f"vector_dtype: unknown type '{self.dtype}' (f32, f16 or i8)")
        if min([self.m, *(v for v in (self.ef_construction, self.ef_search) if v is not None)]) < 2:
            raise ConfigError("vector_m, vector_ef_construction and vector_ef_search must be at least 2")
        if self.segment_size < 1:
            raise ConfigError("vector_segment_size must be positive")

    def usearch_options(self) -> dict[str, Any]:
        """A new embedded (usearch) index's options from these settings (without `rerank`, which
        reads the store)."""
        return {"connectivity": self.m, "expansion_add": self.build_effort("usearch"), "expansion_search": self.search_effort("usearch"),
                "dtype": self.dtype, "segment_size": self.segment_size}

    def build_effort(self, index: str) -> int:
        """The `ef_construction` of a new index of this kind ("usearch" or "pgvector")."""
        return self.ef_construction if self.ef_construction is not None else EF_CONSTRUCTION[index]

    def search_effort(self, index: str) -> int:
        """The `ef_search` of an index of this kind ("usearch" or "pgvector")."""
        return self.ef_search if self.ef_search is not None else EF_SEARCH[index]

    @classmethod
    def from_settings(cls, settings: Any) -> VectorIndexTuning:
        return cls(settings.vector_m, settings.vector_ef_construction, settings.vector_ef_search, settings.vector_dtype, settings.vector_segment_size)


@dataclass
class _Kept:
    index: HnswIndex | NumpyIndex
    own_shas: dict[str, str] = field(default_factory=dict)  # the text hashes of an index that keeps none (NumPy)
    synced: float = 0.0
    stamp: str | None = None  # the store's `vector_stamp` at the last resync
    saved: bool = False  # saved by this process (its first use saves)
    unsaved: int = 0  # vectors added since the last save
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def shas(self) -> dict[str, str]:
        """Per id, the text hash its vector here was made from: the HNSW index's own (a copy here
        held a second map of every id, 31 MB a million posts), else kept beside the index."""
        return self.index.text_shas if isinstance(self.index, HnswIndex) else self.own_shas


_KEPT: weakref.WeakKeyDictionary[Any, dict[tuple[str, str, str], _Kept]] = weakref.WeakKeyDictionary()


def _is_postgres(storage: Any) -> bool:
    return type(storage).__name__ == "PostgresStorage"


def index_path(data_dir: str | Path, org: str, kind: str, embedder_id: str) -> Path:
    digest = hashlib.sha1(f"{org}\x1f{kind}\x1f{embedder_id}".encode()).hexdigest()[:16]
    return Path(data_dir) / "indexes" / f"{kind}-{digest}"


def stored_vector_index(
    storage: Any, org: str, kind: str, embedder_id: str, dim: int, *, choice: str = "hnsw", data_dir: str | Path | None = None,
    fresh_ids: Sequence[str] = (), resync_s: float = 300.0, tuning: VectorIndexTuning | None = None,
    fresh_vectors: np.ndarray | None = None, fresh_stamps: Sequence[int | None] | None = None,
    fresh_shas: Sequence[str] | None = None, known_shas: tuple[str, dict[str, str]] | None = None,
) -> VectorIndex:
    """The index over `storage`'s vectors of (org, kind, embedder). `fresh_ids`: items just
    stored, added before the index answers. `fresh_vectors`: their stored vectors, one row per
    id in order, when the caller has just read them (they are then not read again),
    `fresh_stamps` their posts' times (`base.time_stamp`; read from the store when not given)
    and `fresh_shas` their text hashes as stored, read before the vectors (without them, each
    is read again and added again at the next resync: the hash it was made from is unknown).
    `data_dir` None: kept in memory only. `known_shas`: the store's `vector_stamp` and every hash read
    after it, which the caller has read already: a first resync takes them instead of reading.

    A post index keeps each post's time (`post_times`) beside its vector, so that a search
    `within` a span of time skips the usearch segments that hold none of it."""
    if choice not in VECTOR_INDEXES:
        raise ConfigError(f"vector_index: unknown index '{choice}' ({', '.join(VECTOR_INDEXES)})")
    if fresh_vectors is not None and len(fresh_vectors) != len(fresh_ids):
        raise ValueError(f"fresh_vectors has {len(fresh_vectors)} rows for {len(fresh_ids)} fresh_ids: one row per id")
    tuning = tuning or VectorIndexTuning()
    if _is_postgres(storage):
        from factbridge.backends.vectors.pgvector import PgVectorIndex

        if tuning.dtype == "i8":
            raise ConfigError("vector_dtype: i8 is for the embedded (usearch) index; PostgreSQL takes f32 (vector) or f16 (halfvec)")
        return PgVectorIndex(
            storage, org, kind, embedder_id, dim, hnsw=choice == "hnsw", m=tuning.m, ef_construction=tuning.build_effort("pgvector"),
            ef_search=tuning.search_effort("pgvector"), halfvec=tuning.dtype == "f16",
        )
    per_storage = _KEPT.setdefault(storage, {})
    key = (org, kind, embedder_id)
    kept = per_storage.get(key)
    path = index_path(data_dir, org, kind, embedder_id) if data_dir is not None else None
    if kept is None:
        if choice == "hnsw":
            options: dict[str, Any] = {**tuning.usearch_options(), "rerank": _stored_floats(storage, org, kind, embedder_id, dim)}
            index: HnswIndex | NumpyIndex = HnswIndex.open(path, embedder_id, dim, **options) if path else HnswIndex(embedder_id, dim, **options)
        else:
            index = NumpyIndex(embedder_id, dim)
        kept = per_storage.setdefault(key, _Kept(index))
    with kept.lock:
        now = time.monotonic()
        added: set[str] = set()  # read from the store just now
        if not kept.synced or now - kept.synced >= resync_s:
            # the stamp before the hashes: a write between the two reads moves the stamp the
            # next resync reads, so that one reads the hashes again
            first = known_shas if kept.stamp is None else None  # read by the caller, in this order
            stamp = first[0] if first else storage.vector_stamp(org, kind, embedder_id)
            if stamp != kept.stamp:  # something was written since the last resync (a library: rarely)
                # what was written since the last resync's stamp; the first resync (the saved
                # file may be older than the store) or a store that cannot tell reads every hash
                since = storage.vectors_changed(org, kind, embedder_id, kept.stamp) if kept.stamp is not None else None
                if first:
                    shas = first[1]
                else:
                    shas = storage.vector_shas(org, kind, embedder_id) if since is None else storage.vector_shas(org, kind, embedder_id, ids=since)
                stale = sorted(i for i, sha in shas.items() if kept.shas.get(i) != sha)
                _add(storage, kept, org, kind, embedder_id, stale, shas)
                added = set(stale)
            kept.synced, kept.stamp = now, stamp
        # the fresh items not read just now are added all the same (a post whose time changed, not
        # its text, is stale by its time, not by its hash)
        if fresh_ids and fresh_vectors is not None:
            row = {item: n for n, item in enumerate(fresh_ids)}  # a repeated id: its last row, as the index keeps
            ids = sorted(i for i in row if i not in added)  # the order `_add` reads them in: the same keys, the same graph
            stamps = [fresh_stamps[row[i]] for i in ids] if fresh_stamps is not None else _stamps(storage, kept, org, kind, ids)
            known = [fresh_shas[row[i]] for i in ids] if fresh_shas is not None else ["" for _ in ids]
            _add_rows(kept, embedder_id, ids, np.asarray(fresh_vectors, dtype=np.float32)[[row[i] for i in ids]], known, stamps)
        elif fresh_ids:
            _add(storage, kept, org, kind, embedder_id, sorted(set(fresh_ids) - added), None)
        if path is not None and isinstance(kept.index, HnswIndex) and _save_due(kept, kept.index):
            kept.index.save(path)
            kept.saved, kept.unsaved = True, 0
    return kept.index


def _save_due(kept: _Kept, index: HnswIndex) -> bool:
    """Whether to save now: the process's first use (the graph as built or brought up to date),
    then once enough was added since (SAVE_AFTER, or a quarter of the newest segment)."""
    if not kept.saved:
        return True
    return kept.unsaved >= max(SAVE_AFTER, index.newest_size // 4)


def _add(storage: Any, kept: _Kept, org: str, kind: str, embedder_id: str, ids: list[str], shas: dict[str, str] | None) -> None:
    for start in range(0, len(ids), 50_000):  # bounded memory while (re)building
        part = ids[start : start + 50_000]
        # the hashes before the vectors: a vector changed between the two reads is newer than the
        # hash kept for it, so the next resync finds the hash changed and reads it again (the
        # other order could keep an old vector under its new hash for good)
        known = shas if shas is not None else storage.vector_shas(org, kind, embedder_id, ids=part)
        got, matrix = storage.load_vectors(org, kind, embedder_id, ids=part)
        if not got:
            continue
        _add_rows(kept, embedder_id, got, matrix, [known.get(i, "") for i in got], _stamps(storage, kept, org, kind, got))


def _stamps(storage: Any, kept: _Kept, org: str, kind: str, ids: list[str]) -> list[int | None] | None:
    """The stored times of these posts, for an HNSW post index (None: not a post index)."""
    if kind != "post" or not isinstance(kept.index, HnswIndex) or not ids:
        return None
    times = storage.post_times(org, ids)
    return [time_stamp(times.get(i)) for i in ids]


def _add_rows(kept: _Kept, embedder_id: str, ids: list[str], matrix: np.ndarray, known: list[str],
              stamps: Sequence[int | None] | None = None) -> None:
    if not ids:
        return
    if isinstance(kept.index, HnswIndex):
        kept.index.add(ids, matrix, embedder_id, shas=known, stamps=stamps)
    else:
        kept.index.add(ids, matrix, embedder_id)
        kept.own_shas.update(zip(ids, known, strict=True))
    kept.unsaved += len(ids)


def _stored_floats(storage: Any, org: str, kind: str, embedder_id: str, dim: int) -> Any:
    """The re-rank source of a quantised index: the float vectors the storage holds (only the
    few candidates of one search are read)."""

    def rerank(ids: Sequence[str]) -> np.ndarray:
        got, matrix = storage.load_vectors(org, kind, embedder_id, ids=list(ids))
        row = {item: n for n, item in enumerate(got)}
        out = np.zeros((len(ids), dim), dtype=np.float32)  # an item deleted meanwhile scores 0: last
        for n, item in enumerate(ids):
            if item in row:
                out[n] = matrix[row[item]]
        return out

    return rerank


def forget_indexes(storage: Any) -> None:
    """Drop the indexes kept for a storage (tests; a storage being closed)."""
    _KEPT.pop(storage, None)
