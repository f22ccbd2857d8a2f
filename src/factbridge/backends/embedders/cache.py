"""A content-addressed embedding cache: never embed the same text twice.

Keyed by (embedder id, role, sha256 of the exact text); vectors kept as
float16 (384 values -> 768 bytes), which moves cosine scores by < 1e-3.
The file is plain SQLite, safe to delete, shareable between runs. `factbridge serve`
and a CLI command may have it open at once: writes wait for the other's lock
(busy timeout, then retries with backoff), and closing leaves the file in WAL mode
when someone else still has it open.
"""

from __future__ import annotations

import hashlib
import logging
import sqlite3
import threading
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from factbridge.backends.embedders.base import (
    ClipsQueries,
    Embedder,
    EncodesAhead,
    Progress,
    normalize_rows,
)
from factbridge.backends.sqlite_busy import CONNECT_TIMEOUT_S, is_busy, retry_busy

log = logging.getLogger(__name__)


def text_sha(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


class EmbeddingCache:
    def __init__(self, path: str | Path, readonly_paths: Sequence[str | Path] = ()) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(str(self.path), check_same_thread=False, timeout=CONNECT_TIMEOUT_S)

        def setup() -> None:
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute(
                "CREATE TABLE IF NOT EXISTS embeddings(embedder TEXT, role TEXT, sha TEXT, vec BLOB,"
                " PRIMARY KEY(embedder, role, sha))"
            )

        retry_busy(setup, f"embedding cache {self.path}", on_retry=self._rollback)
        self._readonly = [
            sqlite3.connect(f"file:{p}?mode=ro&immutable=1", uri=True, check_same_thread=False)
            for p in readonly_paths
            if Path(p).exists()
        ]

    def get_many(self, embedder: str, role: str, shas: Sequence[str]) -> dict[str, np.ndarray]:
        """Vectors found in this cache or its read-only seeds. Seed hits are copied into
        this cache, so a cache built from seeds holds exactly the texts that were asked for."""
        found: dict[str, np.ndarray] = {}
        promoted: list[tuple[str, bytes]] = []
        with self._lock:
            for n, db in enumerate([self._db, *self._readonly]):
                missing = [s for s in shas if s not in found]
                for i in range(0, len(missing), 500):
                    part = missing[i : i + 500]
                    marks = ",".join("?" * len(part))
                    rows = db.execute(
                        f"SELECT sha, vec FROM embeddings WHERE embedder=? AND role=? AND sha IN ({marks})",
                        (embedder, role, *part),
                    )
                    for sha, blob in rows:
                        found[sha] = np.frombuffer(blob, dtype=np.float16).astype(np.float32)
                        if n > 0:
                            promoted.append((sha, blob))
            if promoted:
                self._write([(embedder, role, sha, blob) for sha, blob in promoted])
        return found

    def put_many(self, embedder: str, role: str, items: Sequence[tuple[str, np.ndarray]]) -> None:
        with self._lock:
            self._write([(embedder, role, sha, vec.astype(np.float16).tobytes()) for sha, vec in items])

    def _rollback(self) -> None:
        if self._db.in_transaction:
            self._db.rollback()

    def _write(self, rows: list[tuple[str, str, str, bytes]]) -> None:
        def run() -> None:
            self._db.executemany("INSERT OR REPLACE INTO embeddings VALUES (?,?,?,?)", rows)
            self._db.commit()

        retry_busy(run, f"embedding cache {self.path}", on_retry=self._rollback)

    def close(self) -> None:
        # Leave a single self-contained file behind (no -wal/-shm), fit to commit or copy,
        # unless another process (`factbridge serve`) still has it open: switching the
        # journal mode needs the file to ourselves, and the last one to close cleans up.
        try:
            self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            self._db.execute("PRAGMA journal_mode=DELETE")
        except sqlite3.OperationalError as exc:
            if not is_busy(exc):
                raise
            log.debug("embedding cache %s is open elsewhere: left in WAL mode", self.path)
        for db in [self._db, *self._readonly]:
            db.close()


class CachedEmbedder:
    """Wraps an embedder; looks each text up by hash first, embeds only the misses."""

    def __init__(self, inner: Embedder, cache: EmbeddingCache) -> None:
        self.inner = inner
        self.cache = cache
        self.id = inner.id
        self.dim = inner.dim

    def _encode(self, texts: Sequence[str], role: str, progress: Progress | None) -> np.ndarray:
        if role == "query" and isinstance(self.inner, ClipsQueries):
            texts = self.inner.clip_queries(texts)  # the key is what the encoder reads
        shas = [text_sha(t) for t in texts]
        found = self.cache.get_many(self.id, role, list(dict.fromkeys(shas)))
        if progress and found:
            progress(sum(1 for s in shas if s in found))
        todo: dict[str, str] = {}
        for sha, text in zip(shas, texts, strict=True):
            if sha not in found:
                todo.setdefault(sha, text)
        if todo:
            encode = self.inner.encode_queries if role == "query" else self.inner.encode_documents
            vecs = encode(list(todo.values()), progress)
            fresh = list(zip(todo.keys(), vecs, strict=True))
            self.cache.put_many(self.id, role, fresh)
            found.update(fresh)
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        return normalize_rows(np.stack([found[s] for s in shas]))

    def encode_queries(self, texts: Sequence[str], progress: Progress | None = None) -> np.ndarray:
        return self._encode(texts, "query", progress)

    def prefetch_queries(self, texts: Sequence[str]) -> None:
        """Hand the texts the cache does not hold to the encoder to encode ahead (when it can)."""
        if not isinstance(self.inner, EncodesAhead):
            return
        if isinstance(self.inner, ClipsQueries):
            texts = self.inner.clip_queries(texts)
        todo = {text_sha(t): t for t in texts}
        found = self.cache.get_many(self.id, "query", list(todo))
        missing = [t for sha, t in todo.items() if sha not in found]
        if missing:
            self.inner.prefetch_queries(missing)

    def settle(self) -> None:
        if isinstance(self.inner, EncodesAhead):
            self.inner.settle()

    def encode_documents(self, texts: Sequence[str], progress: Progress | None = None) -> np.ndarray:
        return self._encode(texts, "passage", progress)
