"""BM25 over the script-aware tokens, in memory, with SciPy sparse matrices.

The same ranking whatever the storage backend (SQLite FTS5 and PostgreSQL full
text score differently), and fast: one sparse column lookup per query term.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence

import numpy as np
from scipy import sparse

LEXICAL_VERSION = "bm25-okapi-1"


class BM25Index:
    def __init__(self, k1: float = 1.2, b: float = 0.75) -> None:
        self.k1 = k1
        self.b = b
        self.ids: list[str] = []
        self._vocab: dict[str, int] = {}
        self._weights: sparse.csc_matrix | None = None

    def build(self, ids: Sequence[str], docs: Sequence[Sequence[str]]) -> BM25Index:
        self.ids = list(ids)
        rows: list[int] = []
        cols: list[int] = []
        tfs: list[float] = []
        lengths = np.array([len(d) for d in docs], dtype=np.float32)
        avg = float(lengths.mean()) if len(docs) else 1.0
        df: Counter[int] = Counter()
        for row, doc in enumerate(docs):
            counts = Counter(doc)
            for term, tf in counts.items():
                col = self._vocab.setdefault(term, len(self._vocab))
                rows.append(row)
                cols.append(col)
                tfs.append(tf)
                df[col] += 1
        n = len(docs)
        idf = np.zeros(len(self._vocab), dtype=np.float32)
        for col, freq in df.items():
            idf[col] = math.log(1 + (n - freq + 0.5) / (freq + 0.5))
        tf_arr = np.asarray(tfs, dtype=np.float32)
        norm = self.k1 * (1 - self.b + self.b * lengths[np.asarray(rows, dtype=np.int64)] / max(avg, 1e-9)) if rows else 0
        weights = idf[np.asarray(cols, dtype=np.int64)] * tf_arr * (self.k1 + 1) / (tf_arr + norm) if rows else tf_arr
        self._weights = sparse.csc_matrix((weights, (rows, cols)), shape=(n, len(self._vocab)), dtype=np.float32)
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
