"""BM25 over the script-aware tokens, in memory, with SciPy sparse matrices.

The same ranking whatever the storage backend (SQLite FTS5 and PostgreSQL full
text score differently), and fast: one sparse column lookup per query term.
"""

from __future__ import annotations

import math
from array import array
from collections.abc import Iterable, Sequence
from typing import TypeVar

import numpy as np
from scipy import sparse

LEXICAL_VERSION = "bm25-okapi-1"
T = TypeVar("T")
BUILD_PART = 16_384  # documents counted at a time by `BM25Index.build`


class BM25Index:
    """BM25 weights of a library's documents, built once (`build`) and then changed by parts
    (`updated`): the raw term counts are kept (one CSR row per document), so a library that
    gains or changes a few documents is weighed again in NumPy, not tokenised again."""

    def __init__(self, k1: float = 1.2, b: float = 0.75) -> None:
        self.k1 = k1
        self.b = b
        self.ids: list[str] = []
        self._vocab: dict[str, int] = {}
        self._counts: sparse.csr_matrix | None = None  # documents x terms, how often each term is in each document
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
        self._counts = self._count(docs, len(self.ids))
        self._weights = self._weigh(self._counts)
        return self

    @classmethod
    def of(cls, ids: Sequence[str], vocabulary: Sequence[str], counts: sparse.csr_matrix, k1: float = 1.2, b: float = 0.75) -> BM25Index:
        """An index from its parts as `counts` and `vocabulary` read them back (a saved matcher:
        pipeline/snapshot.py): one row per id, the columns the vocabulary's terms in order."""
        if counts.shape != (len(ids), len(vocabulary)):
            raise ValueError(f"BM25: counts of shape {counts.shape} for {len(ids)} ids and {len(vocabulary)} terms")
        out = cls(k1, b)
        out.ids = list(ids)
        out._vocab = {term: n for n, term in enumerate(vocabulary)}
        if len(out._vocab) != len(vocabulary):
            raise ValueError("BM25: a term listed twice in the vocabulary")
        out._counts = counts
        out._weights = out._weigh(counts)
        return out

    @property
    def vocabulary(self) -> list[str]:
        """The terms in column order (numbered in order of first appearance)."""
        return list(self._vocab)

    @property
    def counts(self) -> sparse.csr_matrix | None:
        return self._counts

    def _count(self, docs: Iterable[Sequence[str]], n: int) -> sparse.csr_matrix:
        """The term counts of `docs` (`n` of them), new terms numbered after the vocabulary's."""
        vocab = self._vocab
        number = vocab.setdefault
        found: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []  # per part: rows, columns, counts
        done = 0
        part_sizes, part_terms = array("q"), array("q")

        def count_part() -> None:
            width = max(len(vocab), 1)
            local = np.repeat(np.arange(len(part_sizes), dtype=np.int64), np.frombuffer(part_sizes, dtype=np.int64))
            # one key per (row, column); np.unique sorts them: rows in order, columns ascending
            keys, counts = np.unique(local * width + np.frombuffer(part_terms, dtype=np.int64), return_counts=True)
            rows, cols = np.divmod(keys, width)
            found.append(((rows + done).astype(np.int32), cols.astype(np.int32), counts.astype(np.int32)))

        for doc in docs:
            part_sizes.append(len(doc))
            part_terms.extend([number(term, len(vocab)) for term in doc])
            if len(part_sizes) == BUILD_PART:
                count_part()
                done += len(part_sizes)
                part_sizes, part_terms = array("q"), array("q")
        if part_sizes:
            count_part()
            done += len(part_sizes)
        if done != n:
            raise ValueError(f"BM25: {n} ids but {done} documents")
        rows, cols, tf_counts = (np.concatenate(parts) for parts in zip(*found, strict=True)) if found else (np.zeros(0, dtype=np.int32),) * 3
        found.clear()
        # (row, column) pairs come sorted by row then column: the CSR arrays directly
        indptr = np.zeros(n + 1, dtype=np.int64)
        np.cumsum(np.bincount(rows, minlength=n), out=indptr[1:])
        return sparse.csr_matrix((tf_counts, cols, indptr), shape=(n, len(vocab)), dtype=np.int32)

    def _weigh(self, counts: sparse.csr_matrix) -> sparse.csc_matrix:
        """Every (document, term) pair's BM25 weight, from the counts alone: the library's size,
        each term's document frequency and each document's length are read off them."""
        n, width = counts.shape[0], len(self._vocab)
        tf_arr = counts.data.astype(np.float32)
        per_doc = np.diff(counts.indptr)
        total = np.concatenate([np.zeros(1, dtype=np.int64), np.cumsum(counts.data, dtype=np.int64)])
        lengths = (total[counts.indptr[1:]] - total[counts.indptr[:-1]]).astype(np.float32)  # each document's tokens
        avg = float(lengths.mean()) if n else 1.0
        freq = np.bincount(counts.indices, minlength=width)  # documents holding each term
        # math.log once per distinct document frequency (a few thousand values for a vocabulary of
        # millions, most terms in one or two documents): the same float32 values as once per term
        distinct, which = np.unique(freq, return_inverse=True)
        idf = np.asarray([math.log(1 + (n - f + 0.5) / (f + 0.5)) for f in distinct.tolist()], dtype=np.float32)[which]
        has = len(tf_arr) > 0
        # each document's length term, then one per pair: the same float32 operations per pair
        norm = np.repeat(self.k1 * (1 - self.b + self.b * lengths / max(avg, 1e-9)), per_doc) if has else 0
        weights = idf[counts.indices] * tf_arr * (self.k1 + 1) / (tf_arr + norm) if has else tf_arr
        return sparse.csr_matrix((weights, counts.indices, counts.indptr), shape=(n, width), dtype=np.float32).tocsc()

    def updated(self, keep: np.ndarray, ids: Sequence[str], docs: Iterable[Sequence[str]], order: np.ndarray) -> BM25Index:
        """A new index (this one is left as it is, for whoever still reads it): the documents
        at rows `keep` of this one, then `docs` (of `ids`), rearranged so that row i of the new
        one is row `order[i]` of that list. Weighed again over the whole library (its size and
        average length move every weight), the same weights a `build` in that order gives."""
        out = BM25Index(self.k1, self.b)
        out._vocab = dict(self._vocab)  # new terms numbered after this index's; a dead term's column stays, empty
        fresh = out._count(docs, len(ids))
        assert self._counts is not None
        kept = self._counts[keep]
        kept = sparse.csr_matrix((kept.data, kept.indices, kept.indptr), shape=(kept.shape[0], len(out._vocab)))
        stacked = sparse.vstack([kept, fresh], format="csr", dtype=np.int32)
        out._counts = stacked[order]
        out._counts.sort_indices()
        out.ids = rearranged(self.ids, keep, ids, order)
        out._weights = out._weigh(out._counts)
        return out

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


def rearranged(old: Sequence[T], keep: np.ndarray, fresh: Sequence[T], order: np.ndarray) -> list[T]:
    """`old`'s items at `keep`, then `fresh`, taken in `order` (what `BM25Index.updated` does to rows)."""
    stacked = [old[i] for i in keep.tolist()]
    stacked.extend(fresh)
    return [stacked[j] for j in order.tolist()]
