"""Ranking metrics as the CheckThat! lab computes them, and the positive-class
scores of a binary classifier (check-worthiness)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np


def average_precision_at_k(ranked: Sequence[str], gold: set[str], k: int) -> float:
    if not gold:
        return 0.0
    hits = 0
    total = 0.0
    for i, item in enumerate(ranked[:k], start=1):
        if item in gold:
            hits += 1
            total += hits / i
    return total / len(gold)


def reciprocal_rank(ranked: Sequence[str], gold: set[str]) -> float:
    for i, item in enumerate(ranked, start=1):
        if item in gold:
            return 1.0 / i
    return 0.0


def success_at_k(ranked: Sequence[str], gold: set[str], k: int) -> float:
    return 1.0 if any(item in gold for item in ranked[:k]) else 0.0


def recall_at_k(ranked: Sequence[str], gold: set[str], k: int) -> float:
    return len(gold & set(ranked[:k])) / len(gold) if gold else 0.0


def retrieval_metrics(rankings: Mapping[str, Sequence[str]], qrels: Mapping[str, set[str]]) -> dict[str, float]:
    """MAP@1/3/5/10, MRR, S@10 and Recall@10 over the queries that have gold labels."""
    queries = [q for q in qrels if qrels[q]]
    n = len(queries) or 1
    out: dict[str, float] = {}
    for k in (1, 3, 5, 10):
        out[f"MAP@{k}"] = sum(average_precision_at_k(rankings.get(q, []), qrels[q], k) for q in queries) / n
    out["MRR"] = sum(reciprocal_rank(rankings.get(q, []), qrels[q]) for q in queries) / n
    out["S@10"] = sum(success_at_k(rankings.get(q, []), qrels[q], 10) for q in queries) / n
    out["Recall@10"] = sum(recall_at_k(rankings.get(q, []), qrels[q], 10) for q in queries) / n
    out["queries"] = float(len(queries))
    return out


@dataclass
class BinaryScores:
    n: int
    positives: int
    precision: float
    recall: float
    f1: float
    accuracy: float

    @classmethod
    def of(cls, gold: Sequence[int] | np.ndarray, predicted: Sequence[int] | np.ndarray) -> BinaryScores:
        y = np.asarray(gold, dtype=int)
        p = np.asarray(predicted, dtype=int)
        tp = int(((p == 1) & (y == 1)).sum())
        fp = int(((p == 1) & (y == 0)).sum())
        fn = int(((p == 0) & (y == 1)).sum())
        precision = tp / (tp + fp) if tp + fp else 0.0
        recall = tp / (tp + fn) if tp + fn else 0.0
        f1 = 2 * tp / (2 * tp + fp + fn) if tp else 0.0
        accuracy = float((y == p).mean()) if len(y) else 0.0
        return cls(len(y), int(y.sum()), precision, recall, f1, accuracy)

    def as_dict(self) -> dict[str, float | int]:
        return {"n": self.n, "positives": self.positives, "precision": round(self.precision, 4), "recall": round(self.recall, 4), "f1": round(self.f1, 4), "accuracy": round(self.accuracy, 4)}
