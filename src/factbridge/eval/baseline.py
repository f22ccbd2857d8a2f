"""The TF-IDF + logistic-regression baseline the check-worthiness model is compared with.

It is the textbook baseline, written to be the same computation as
scikit-learn's `TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True)` and
`LogisticRegression` (L2, unpenalised intercept), so its figures can be
compared with figures others measured that way, without the dependency:

* tokens: lowercased, `(?u)\\b\\w\\w+\\b` (words of two characters or more);
* features: word unigrams and bigrams seen in the training split, tf
  `1 + log(count)`, smoothed idf `log((1 + n) / (1 + df)) + 1`, rows L2-normalised;
* the regularisation C and the class weighting (none or balanced) are chosen
  by 5-fold cross-validated F1 on the training split only; threshold 0.5.

It is tuned as fairly as our own model: a baseline left at defaults would be
easy to beat (on CheckThat! 2022 1A English and Turkish it then predicts no
positive at all).
"""

from __future__ import annotations

import hashlib
import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import scipy.sparse as sp

from factbridge.eval.metrics import BinaryScores
from factbridge.pipeline.checkworthiness import fit_logistic, sigmoid

_WORD = re.compile(r"(?u)\b\w\w+\b")
C_GRID = (0.3, 1.0, 3.0, 10.0, 30.0)
FOLDS = 5


def _grams(text: str) -> list[str]:
    words = _WORD.findall(text.lower())
    return words + [f"{a} {b}" for a, b in zip(words, words[1:], strict=False)]


class WordTfidf:
    """Word 1-2-gram TF-IDF with a vocabulary learnt from the training texts."""

    def __init__(self) -> None:
        self.vocabulary: dict[str, int] = {}
        self.idf = np.zeros(0, np.float64)

    def fit(self, texts: Sequence[str]) -> WordTfidf:
        df: dict[str, int] = {}
        for text in texts:
            for gram in set(_grams(text)):
                df[gram] = df.get(gram, 0) + 1
        self.vocabulary = {gram: i for i, gram in enumerate(sorted(df))}
        counts = np.array([df[g] for g in sorted(df)], dtype=np.float64)
        self.idf = np.log((1 + len(texts)) / (1 + counts)) + 1.0
        return self

    def transform(self, texts: Sequence[str]) -> sp.csr_matrix:
        indptr, indices, values = [0], [], []
        for text in texts:
            row: dict[int, int] = {}
            for gram in _grams(text):
                j = self.vocabulary.get(gram)
                if j is not None:
                    row[j] = row.get(j, 0) + 1
            weights = {j: (1.0 + math.log(c)) * self.idf[j] for j, c in row.items()}
            norm = math.sqrt(sum(w * w for w in weights.values())) or 1.0
            for j in sorted(weights):
                indices.append(j)
                values.append(weights[j] / norm)
            indptr.append(len(indices))
        return sp.csr_matrix((np.asarray(values, np.float64), np.asarray(indices, np.int64), np.asarray(indptr, np.int64)), shape=(len(texts), len(self.vocabulary)))


def _fold(text: str, k: int) -> int:
    return int(hashlib.sha256(text.encode("utf-8")).hexdigest()[:8], 16) % k


@dataclass
class TfidfBaseline:
    c: float = 1.0
    balanced: bool = False
    vectoriser: WordTfidf = field(default_factory=WordTfidf)
    weights: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float32))
    bias: float = 0.0
    cv_f1: dict[str, float] = field(default_factory=dict)  # "C=…,balanced=…" -> mean F1 over folds

    @classmethod
    def train(cls, texts: Sequence[str], labels: Sequence[int], tune: bool = True, progress: Callable[[int], None] | None = None) -> TfidfBaseline:
        """Fit on the training split; with `tune`, C and class weighting by 5-fold CV F1 first.
        `progress` is called once per fold and once for the final fit."""
        y = np.asarray(labels, dtype=int)
        best = cls()
        if tune:
            folds = np.array([_fold(t, FOLDS) for t in texts])
            scores: dict[tuple[float, bool], float] = {}
            for k in range(FOLDS):
                fit_rows, held = np.nonzero(folds != k)[0], np.nonzero(folds == k)[0]
                fit_texts, held_texts = [texts[int(i)] for i in fit_rows], [texts[int(i)] for i in held]
                vec = WordTfidf().fit(fit_texts)
                x_fit, x_held = vec.transform(fit_texts), vec.transform(held_texts)
                for c in C_GRID:
                    for balanced in (False, True):
                        w, b = fit_logistic(x_fit, y[fit_rows], c=c, balanced=balanced, max_iter=1000)
                        predicted = (np.asarray(x_held @ w).ravel() + b >= 0).astype(int)
                        scores[(c, balanced)] = scores.get((c, balanced), 0.0) + BinaryScores.of(y[held], predicted).f1 / FOLDS
                if progress:
                    progress(1)
            (c, balanced), _ = max(scores.items(), key=lambda kv: (kv[1], -kv[0][0]))
            best = cls(c=c, balanced=balanced, cv_f1={f"C={k[0]:g},balanced={k[1]}": round(v, 4) for k, v in scores.items()})
        best.vectoriser.fit(texts)
        best.weights, best.bias = fit_logistic(best.vectoriser.transform(texts), y, c=best.c, balanced=best.balanced, max_iter=1000)
        if progress:
            progress(1)
        return best

    def probabilities(self, texts: Sequence[str]) -> np.ndarray:
        return sigmoid(np.asarray(self.vectoriser.transform(texts) @ self.weights).ravel() + self.bias)

    def predict(self, texts: Sequence[str]) -> np.ndarray:
        return (self.probabilities(texts) >= 0.5).astype(int)

    @property
    def description(self) -> str:
        weighting = "balanced" if self.balanced else "unweighted"
        return f"TF-IDF word 1-2-grams (sublinear) + logistic regression, C={self.c:g}, {weighting}, threshold 0.5"
