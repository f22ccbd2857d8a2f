"""A small learned re-ranker: logistic regression over explainable features.

Two heads share one file: `same_language` (dense + lexical + metadata features)
and `cross_language` (dense + metadata only). A candidate in another language
than the post is scored by the second head, so lexical overlap — meaningless
across languages — can never push a wrong same-language claim over a right
translated one. Both heads are calibrated probabilities of "this fact-check
covers this post's claim", so they rank together.

Trained only on the shared *train* splits; the decision thresholds are tuned on
the *dev* split. The JSON file records data, date, metrics and embedder id.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from scipy.optimize import minimize

from factbridge.backends.embedders.base import embedder_family
from factbridge.errors import EmbedderMismatch, ModelError

# Tried and left out (no gain on dev, worse on 2020 dev): dense z-score within the top 50,
# BM25 over titles alone, overlap of capitalised names, listwise (softmax) training.
SAME_LANGUAGE_FEATURES = (
    "dense", "dense_gap", "dense_rrf", "lexical", "lexical_gap", "lexical_rrf",
    "title_overlap", "number_overlap", "date_known", "date_close", "date_log_days",
)
CROSS_LANGUAGE_FEATURES = ("dense", "dense_gap", "dense_rrf", "number_overlap", "date_known", "date_close", "date_log_days")


@dataclass
class LogisticHead:
    features: tuple[str, ...]
    weights: np.ndarray
    bias: float
    mean: np.ndarray
    scale: np.ndarray

    def score(self, rows: np.ndarray) -> np.ndarray:
        z = ((rows - self.mean) / self.scale) @ self.weights + self.bias
        return np.asarray(1.0 / (1.0 + np.exp(-z)))

    def contributions(self, row: np.ndarray) -> dict[str, float]:
        """Each feature's share of the logit: what a reviewer sees as 'why'."""
        parts = ((row - self.mean) / self.scale) * self.weights
        return {f: round(float(v), 4) for f, v in zip(self.features, parts, strict=True)}

    def to_json(self) -> dict[str, Any]:
        return {
            "features": list(self.features),
            "weights": [round(float(w), 6) for w in self.weights],
            "bias": round(float(self.bias), 6),
            "mean": [round(float(v), 6) for v in self.mean],
            "scale": [round(float(v), 6) for v in self.scale],
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> LogisticHead:
        return cls(
            features=tuple(data["features"]),
            weights=np.asarray(data["weights"], dtype=np.float64),
            bias=float(data["bias"]),
            mean=np.asarray(data["mean"], dtype=np.float64),
            scale=np.asarray(data["scale"], dtype=np.float64),
        )


def fit_logistic(
    rows: np.ndarray, labels: np.ndarray, features: Sequence[str], l2: float = 1.0, positive_weight: float = 1.0
) -> LogisticHead:
    mean = rows.mean(axis=0)
    scale = rows.std(axis=0)
    scale[scale < 1e-9] = 1.0
    x = (rows - mean) / scale
    y = labels.astype(np.float64)
    w_sample = np.where(y > 0, positive_weight, 1.0)

    def loss(params: np.ndarray) -> tuple[float, np.ndarray]:
        w, b = params[:-1], params[-1]
        z = x @ w + b
        p = 1.0 / (1.0 + np.exp(-z))
        eps = 1e-12
        nll = -np.sum(w_sample * (y * np.log(p + eps) + (1 - y) * np.log(1 - p + eps)))
        grad_z = w_sample * (p - y)
        grad = np.concatenate([x.T @ grad_z + l2 * w, [grad_z.sum()]])
        return float(nll + 0.5 * l2 * w @ w), grad

    result = minimize(loss, np.zeros(x.shape[1] + 1), jac=True, method="L-BFGS-B")
    return LogisticHead(tuple(features), result.x[:-1], float(result.x[-1]), mean, scale)


@dataclass
class Reranker:
    version: str
    embedder_id: str
    same_language: LogisticHead
    cross_language: LogisticHead
    thresholds: dict[str, float]
    card: dict[str, Any] = field(default_factory=dict)

    @property
    def decided_by(self) -> str:
        return f"reranker:{self.version}"

    def check_embedder(self, embedder_id: str) -> None:
        if embedder_family(embedder_id) != embedder_family(self.embedder_id):  # one model, any engine
            raise EmbedderMismatch(
                f"re-ranker {self.version} was trained on '{self.embedder_id}' scores, not '{embedder_id}'"
            )

    def save(self, path: str | Path) -> None:
        data = {
            "version": self.version,
            "embedder_id": self.embedder_id,
            "same_language": self.same_language.to_json(),
            "cross_language": self.cross_language.to_json(),
            "thresholds": self.thresholds,
            "card": self.card,
        }
        Path(path).write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")

    @classmethod
    def load(cls, path: str | Path) -> Reranker:
        try:
            data = json.loads(Path(path).read_text(encoding="utf-8"))
            return cls(
                version=data["version"],
                embedder_id=data["embedder_id"],
                same_language=LogisticHead.from_json(data["same_language"]),
                cross_language=LogisticHead.from_json(data["cross_language"]),
                thresholds={k: float(v) for k, v in data["thresholds"].items()},
                card=data.get("card", {}),
            )
        except (OSError, KeyError, ValueError) as exc:
            raise ModelError(f"{path}: not a FactBridge re-ranker file: {exc}") from exc
