"""Ranking metrics as the CheckThat! lab computes them."""

from __future__ import annotations

from collections.abc import Mapping, Sequence


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
