"""The TF-IDF + logistic-regression baseline is the textbook one: the same
computation as scikit-learn's TfidfVectorizer + LogisticRegression, and tuned
by cross-validation on the training split only."""

from __future__ import annotations

import numpy as np
import pytest

from factbridge.eval.baseline import C_GRID, TfidfBaseline, WordTfidf
from factbridge.pipeline.checkworthiness import fit_logistic

TEXTS = [
    "Unemployment rose 12 percent in March, the ministry said.",
    "Good morning everyone, have a great day!",
    "The vaccine contains a microchip, a doctor claims.",
    "I love this song so much",
    "Prices of rice doubled in 2023 according to the statistics office.",
    "lol what a game last night",
    "The president said crime fell by 30% since 2019.",
    "Happy birthday to my best friend!!",
    "5G towers cause the coronavirus, study shows",
    "Can't wait for the weekend",
] * 3
LABELS = [1, 0] * 15


def test_vectoriser_matches_scikit_learn() -> None:
    sklearn_text = pytest.importorskip("sklearn.feature_extraction.text")
    ours = WordTfidf().fit(TEXTS[:10])
    theirs = sklearn_text.TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True).fit(TEXTS[:10])
    assert ours.vocabulary == theirs.vocabulary_
    probe = ["Rice prices rose 12 percent, the ministry said", "good morning"]
    assert np.allclose(ours.transform(probe).toarray(), theirs.transform(probe).toarray(), atol=1e-9)


def test_logistic_regression_matches_scikit_learn() -> None:
    linear = pytest.importorskip("sklearn.linear_model")
    x = WordTfidf().fit(TEXTS).transform(TEXTS)
    w, b = fit_logistic(x, np.array(LABELS), c=3.0, max_iter=1000)
    reference = linear.LogisticRegression(C=3.0, max_iter=1000, tol=1e-8).fit(x, LABELS)
    assert np.allclose(w, reference.coef_[0], atol=1e-3) and b == pytest.approx(reference.intercept_[0], abs=1e-3)


def test_tuning_uses_the_training_split_only() -> None:
    baseline = TfidfBaseline.train(TEXTS, LABELS)
    assert len(baseline.cv_f1) == 2 * len(C_GRID)
    assert baseline.c in C_GRID
    assert list(baseline.predict(["The minister said exports fell 8 percent in 2022.", "good morning friends"])) == [1, 0]
    assert "C=" in baseline.description and "threshold 0.5" in baseline.description
