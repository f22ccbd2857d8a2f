"""Train the matcher's re-ranker on CheckThat! train splits; tune thresholds on dev.

`factbridge train matcher` runs this. Only train splits are used to fit; the dev
split only picks the decision thresholds; dev-test stays untouched for eval.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

import numpy as np

from factbridge.backends.embedders.base import Embedder, Progress
from factbridge.models import Post
from factbridge.pipeline.matching import MATCHER_VERSION, Matcher
from factbridge.pipeline.prepare import embedding_text
from factbridge.pipeline.reranker import (
    CROSS_LANGUAGE_FEATURES,
    SAME_LANGUAGE_FEATURES,
    LogisticHead,
    Reranker,
    fit_logistic,
)


@dataclass
class TrainingSet:
    name: str
    matcher: Matcher
    queries: list[Post]
    qrels: dict[str, set[str]]


def _rows(ts: TrainingSet, embedder: Embedder, progress: Progress | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    vectors = embedder.encode_queries([embedding_text(q) for q in ts.queries], progress)
    same, cross, labels, groups = [], [], [], []
    for qi, (q, v) in enumerate(zip(ts.queries, vectors, strict=True)):
        ids, feats, _ = ts.matcher.feature_rows(q, v)
        gold = ts.qrels.get(q.id, set())
        same.append(np.column_stack([feats[k] for k in SAME_LANGUAGE_FEATURES]))
        cross.append(np.column_stack([feats[k] for k in CROSS_LANGUAGE_FEATURES]))
        labels.append(np.array([1.0 if i in gold else 0.0 for i in ids]))
        groups.append(np.full(len(ids), qi))
    return np.vstack(same), np.vstack(cross), np.concatenate(labels), np.concatenate(groups)


def _threshold(scores: np.ndarray, labels: np.ndarray, precision: float) -> float:
    order = np.argsort(-scores)
    s, y = scores[order], labels[order]
    hits = np.cumsum(y)
    prec = hits / np.arange(1, len(y) + 1)
    ok = np.nonzero(prec >= precision)[0]
    return float(s[ok[-1]]) if len(ok) else float(s[0])


def tune_thresholds(dev: TrainingSet, embedder: Embedder, head: LogisticHead, progress: Progress | None = None) -> dict[str, float]:
    """Decision thresholds that hold when many posts repeat no checked claim at all.

    CheckThat! dev queries all have a fact-check in the library, so on their own
    they teach nothing about "none". We score each query twice: as it is (its best
    candidate is right or wrong) and with its gold fact-checks hidden (its best
    candidate is then necessarily wrong)."""
    vectors = embedder.encode_queries([embedding_text(q) for q in dev.queries], progress)
    scores, labels = [], []
    for q, v in zip(dev.queries, vectors, strict=True):
        gold = dev.qrels.get(q.id, set())
        for absent in (None, gold):
            ids, feats, _ = dev.matcher.feature_rows(q, v, absent=absent)
            s = head.score(np.column_stack([feats[k] for k in head.features]))
            top = int(np.argmax(s))
            scores.append(float(s[top]))
            labels.append(1.0 if ids[top] in gold else 0.0)
    sc, lb = np.array(scores), np.array(labels)
    match = _threshold(sc, lb, 0.9)
    possible = min(_threshold(sc, lb, 0.75), match)
    return {"match": round(match, 4), "possible": round(possible, 4)}


def train_reranker(
    train: Sequence[TrainingSet], dev: TrainingSet | None, embedder: Embedder, version: str, l2: float = 1.0, progress: Progress | None = None
) -> Reranker:
    same_parts, cross_parts, label_parts = [], [], []
    for ts in train:
        same, cross, labels, _ = _rows(ts, embedder, progress)
        same_parts.append(same)
        cross_parts.append(cross)
        label_parts.append(labels)
    same = np.vstack(same_parts)
    cross = np.vstack(cross_parts)
    labels = np.concatenate(label_parts)
    same_head = fit_logistic(same, labels, SAME_LANGUAGE_FEATURES, l2=l2)
    cross_head = fit_logistic(cross, labels, CROSS_LANGUAGE_FEATURES, l2=l2)
    thresholds = {"match": 0.5, "possible": 0.2}
    if dev is not None:
        thresholds = tune_thresholds(dev, embedder, same_head, progress)
    card = {
        "trained_at": datetime.now(UTC).date().isoformat(),
        "matcher_version": MATCHER_VERSION,
        "train_sets": [f"{ts.name} ({len(ts.queries)} queries)" for ts in train],
        "dev_set": f"{dev.name} ({len(dev.queries)} queries)" if dev else None,
        "threshold_rule": (
            "open world on dev: each query's best candidate is scored with its fact-check in the library"
            " (right or wrong) and with it hidden (always wrong); match = lowest score with precision >= 0.9,"
            " possible = lowest score with precision >= 0.75"
        ),
        "rows": int(len(labels)),
        "positives": int(labels.sum()),
        "licence_note": "CheckThat! lab data, research use; only the fitted weights ship",
    }
    return Reranker(version=version, embedder_id=embedder.id, same_language=same_head, cross_language=cross_head, thresholds=thresholds, card=card)
