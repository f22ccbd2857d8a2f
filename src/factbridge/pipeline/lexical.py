"""BM25 over the script-aware tokens, in memory, with SciPy sparse matrices.

The same ranking whatever the storage backend (SQLite FTS5 and PostgreSQL full
text score differently), and fast: one sparse column lookup per query term.
"""

from __future__ import annotations

import math
from array import array
from collections.abc import Iterable, Sequence

import numpy as np
from scipy import sparse

LEXICAL_VERSION = "bm25-okapi-1"
BUILD_PART = 16_384  # documents counted at a time by `BM25Index.build`


class BM25Index:
    def __init__(self, k1: float = 1.2, b: float = 0.75) -> None:
        self.k1 = k1
        self.b = b
        self.ids: list[str] = []
        self._vocab: dict[str, int] = {}
        self._weights: sparse.csc_matrix | None = None

    def build(self, ids: Sequence[str], docs: Iterable[Sequence[str]]) -> BM25Index:
        """Each document's terms numbered in order of first appearance (the columns), then
        the (row, column) pairs counted by NumPy, `BUILD_PART` documents at a time: one Python
        step per token, where a Counter per document cost ~15 s of a 300,000-entry library's
        load. `docs` is read once, one document at a time (a generator of token lists holds
        one list at a time, where a list of them all held ~1 GB at 300,000), and a part's
        counting arrays are dropped before the next (counting all pairs at once took ~0.8 GB
        at 300,000)."""
        self.ids = list(ids)
        vocab = self._vocab
        number = vocab.setdefault
        sizes = array("q")
        found: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []  # per part: rows, columns, counts
        part_sizes, part_terms = array("q"), array("q")

        def count_part() -> None:
            width = max(len(vocab), 1)
            local = np.repeat(np.arange(len(part_sizes), dtype=np.int64), np.frombuffer(part_sizes, dtype=np.int64))
            # one key per (row, column); np.unique sorts them: rows in order, columns ascending
            keys, counts = np.unique(local * width + np.frombuffer(part_terms, dtype=np.int64), return_counts=True)
            rows, cols = np.divmod(keys, width)
            found.append(((rows + (len(sizes) - len(part_sizes))).astype(np.int32), cols.astype(np.int32), counts.astype(np.int32)))

        for doc in docs:
            columns = [number(term, len(vocab)) for term in doc]
            sizes.append(len(columns))
            part_sizes.append(len(columns))
            part_terms.extend(columns)
            if len(part_sizes) == BUILD_PART:
                count_part()
                part_sizes, part_terms = array("q"), array("q")
        if part_terms:
            count_part()
        n = len(sizes)
        lengths = np.frombuffer(sizes, dtype=np.int64).astype(np.float32) if n else np.zeros(0, dtype=np.float32)
        avg = float(lengths.mean()) if n else 1.0
        rows, cols, tf_counts = (np.concatenate(parts) for parts in zip(*found, strict=True)) if found else (np.zeros(0, dtype=np.int32),) * 3
        found.clear()
        freq = np.bincount(cols, minlength=len(vocab))  # documents holding each term
        idf = np.zeros(len(vocab), dtype=np.float32)
        for col, f in enumerate(freq.tolist()):  # math.log per term, as before: the same float32 values
            idf[col] = math.log(1 + (n - f + 0.5) / (f + 0.5))
        tf_arr = tf_counts.astype(np.float32)
        has = len(rows) > 0
        norm = self.k1 * (1 - self.b + self.b * lengths[rows] / max(avg, 1e-9)) if has else 0
        weights = idf[cols] * tf_arr * (self.k1 + 1) / (tf_arr + norm) if has else tf_arr
        self._weights = sparse.csc_matrix((weights, (rows, cols)), shape=(n, len(vocab)), dtype=np.float32)
        return self

    def scores(self, query_tokens: Sequence[str]) -> np.ndarray:
        if self._weights is None:
            return np.zeros(0, dtype=np.float32)
        cols = [self._vocab[t] for t in set(query_tokens) if t in self._vocab]
        if not cols:
            return np.zeros(len(self.ids), dtype=np.float32)
        return np.asarray(self._weights[:, cols].sum(axis=1)).ravel()

    def search(self, query_tokens: Sequence[str], k: int) -> list[tuple[str, float]]:
        scores = self.scores(query_tokens)
        if not len(scores):
            return []
        k = min(k, len(scores))
        top = np.argpartition(-scores, k - 1)[:k]
        top = top[np.argsort(-scores[top], kind="stable")]
        return [(self.ids[i], float(scores[i])) for i in top if scores[i] > 0]

    def __len__(self) -> int:
        return len(self.ids)
