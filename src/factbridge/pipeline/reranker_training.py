"""Train the matcher's re-ranker on CheckThat! train splits; tune thresholds on dev.

`factbridge train matcher` runs this. Only train splits are used to fit; the dev
split only picks the decision thresholds; dev-test stays untouched for eval.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

import numpy as np

from factbridge.backends.embedders.base import Embedder
from factbridge.models import Post
from factbridge.pipeline.matching import MATCHER_VERSION, Matcher
from factbridge.pipeline.prepare import embedding_text
from factbridge.pipeline.reranker import (
    CROSS_LANGUAGE_FEATURES,
    SAME_LANGUAGE_FEATURES,
    Reranker,
    fit_logistic,
)


@dataclass
class TrainingSet:
    name: str
    matcher: Matcher
    queries: list[Post]
    qrels: dict[str, set[str]]


def _rows(ts: TrainingSet, embedder: Embedder, progress=None) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:  # type: ignore[no-untyped-def]
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


def train_reranker(
    train: Sequence[TrainingSet], dev: TrainingSet | None, embedder: Embedder, version: str, l2: float = 1.0, progress=None  # type: ignore[no-untyped-def]
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
        d_same, _, d_labels, d_groups = _rows(dev, embedder, progress)
        scores = same_head.score(d_same)
        # Decide on each query's best candidate, as the desk sees it.
        best_scores, best_labels = [], []
        for g in np.unique(d_groups):
            idx = np.nonzero(d_groups == g)[0]
            top = idx[np.argmax(scores[idx])]
            best_scores.append(scores[top])
            best_labels.append(d_labels[top])
        bs, bl = np.array(best_scores), np.array(best_labels)
        thresholds = {"match": round(_threshold(bs, bl, 0.95), 4), "possible": round(_threshold(scores, d_labels, 0.5), 4)}
        thresholds["possible"] = min(thresholds["possible"], thresholds["match"])
    card = {
        "trained_at": datetime.now(UTC).date().isoformat(),
        "matcher_version": MATCHER_VERSION,
        "train_sets": [f"{ts.name} ({len(ts.queries)} queries)" for ts in train],
        "dev_set": f"{dev.name} ({len(dev.queries)} queries)" if dev else None,
        "threshold_rule": "match: lowest score at which the dev top-1 precision is >= 0.95; possible: candidate precision >= 0.5",
        "rows": int(len(labels)),
        "positives": int(labels.sum()),
        "licence_note": "CheckThat! lab data, research use; only the fitted weights ship",
    }
    return Reranker(version=version, embedder_id=embedder.id, same_language=same_head, cross_language=cross_head, thresholds=thresholds, card=card)
