"""Training and evaluation of the check-worthiness model on the shared sets.

Protocol (honest by construction):

* training data: CheckThat! 2022 1A train (6 languages), CheckThat! 2024
  English train and ClaimBuster; any training text that also occurs in an
  evaluation set (or a fixture) is dropped first;
* evaluation data: CheckThat! 2022 1A dev (this copy has no labelled
  dev_test, so dev is never looked at while training) and CheckThat! 2024
  English dev;
* every training text gets its e5 query vector (from the embedding cache, or
  computed once with a progress bar and cached);
* level 0 (TF-IDF logistic regression, and the network on the vector) is
  fitted k times on k-1 folds, so every training text has out-of-fold
  logits; the level-1 heads learn from those, and their own out-of-fold
  scores (same folds) choose each language's threshold. No evaluation set
  takes part in any choice.
"""

from __future__ import annotations

import hashlib
import json
import platform
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from factbridge.backends.embedders.base import Embedder, embedder_family
from factbridge.backends.embedders.cache import text_sha
from factbridge.errors import ModelError
from factbridge.eval.checkworthiness_data import (
    Example,
    iter_available,
    load_set,
    read_claimbuster,
    read_jsonl,
    shared_sets,
)
from factbridge.eval.metrics import BinaryScores
from factbridge.pipeline.checkworthiness import (
    CheckworthinessModel,
    HashedTfidf,
    Head,
    VectorNet,
    fit_logistic,
    sigmoid,
    unseen_language_inputs,
)
from factbridge.pipeline.claimfeatures import FEATURE_NAMES, FEATURES_VERSION

MODEL_VERSION = "3"
TRAIN_LANGUAGES = ["en", "ar", "bg", "nl", "es", "tr"]
EVAL_SETS = [f"clef2022_1a/{code}/dev" for code in TRAIN_LANGUAGES] + ["clef2024/en/dev"]
TRAIN_SETS = [f"clef2022_1a/{code}/train" for code in TRAIN_LANGUAGES] + ["clef2024/en/train"]
LICENCES = {
    "clef2022_1a": "CheckThat! 2022 task 1A (gitlab.com/checkthat_lab/clef2022-checkthat-lab): no licence stated; released by the CheckThat! lab to the research community",
    "clef2024": "CheckThat! 2024 task 1 (gitlab.com/checkthat_lab/clef2024-checkthat-lab, via github.com/iai-group/clef2024-checkthat): no licence file; provided by the CheckThat! organisers for research",
    "claimbuster": "ClaimBuster / ClaimSpotter two-class train.json (github.com/utaresearch/claimbuster-spotter): GPL-3.0",
}
Progress = Callable[[int], None]
# A language gets its own threshold only with this many positive training examples.
MIN_THRESHOLD_POSITIVES = 20


def _bucket(key: str, salt: str, k: int) -> int:
    return int(hashlib.sha256(f"{salt}:{key}".encode()).hexdigest()[:8], 16) % k


# --------------------------------------------------------------------------- metrics


def best_threshold(gold: np.ndarray, probs: np.ndarray) -> float:
    """Threshold with the best F1 on held-out scores (ties: the one nearest 0.5)."""
    grid = np.round(np.arange(0.05, 0.951, 0.01), 3)
    scored = [(BinaryScores.of(gold, probs >= t).f1, -abs(t - 0.5), float(t)) for t in grid]
    return max(scored)[2]


# --------------------------------------------------------------------------- data


@dataclass
class TrainingData:
    train: list[Example]
    evaluation: dict[str, list[Example]]
    dropped_overlap: int
    dropped_duplicates: int
    published: dict[str, list[Example]] = field(default_factory=dict)  # training sets before filtering


def load_training_data(root: str | Path, fixtures: Sequence[str | Path] = ()) -> TrainingData:
    root = Path(root)
    specs = {s.name: s for s in shared_sets()}
    evaluation = {name: load_set(root, specs[name]) for name in EVAL_SETS}
    for path in fixtures:
        evaluation[f"fixture/{Path(path).stem}"] = read_jsonl(path)
    held_out = {e.text.lower() for examples in evaluation.values() for e in examples}
    train: list[Example] = []
    seen: set[str] = set()
    overlap = duplicates = 0
    published = {name: load_set(root, specs[name]) for name in TRAIN_SETS}
    sources = list(published.values())
    claimbuster = root / "claimbuster" / "train.json"
    if claimbuster.exists():
        sources.append(read_claimbuster(claimbuster))
    for examples in sources:
        for example in examples:
            key = example.text.lower()
            if key in held_out:
                overlap += 1
            elif key in seen:
                duplicates += 1
            else:
                seen.add(key)
                train.append(example)
    return TrainingData(train, evaluation, overlap, duplicates, published)


# --------------------------------------------------------------------------- training


@dataclass
class TrainReport:
    model: CheckworthinessModel
    validation: dict[str, dict[str, Any]] = field(default_factory=dict)


def _standardise(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    mean = x.mean(axis=0)
    scale = x.std(axis=0)
    scale[scale < 1e-6] = 1.0
    return mean.astype(np.float32), scale.astype(np.float32)


def _thresholds(gold: np.ndarray, probs: np.ndarray, languages: np.ndarray) -> dict[str, float]:
    """Best-F1 threshold per language on out-of-fold scores; "*" (any other language) from all rows pooled."""
    out = {"*": best_threshold(gold, probs)}
    for lang in sorted(set(languages.tolist())):
        rows = languages == lang
        if gold[rows].sum() >= MIN_THRESHOLD_POSITIVES:
            out[lang] = best_threshold(gold[rows], probs[rows])
    return out


def _oof_summary(gold: np.ndarray, probs: np.ndarray, languages: np.ndarray, thresholds: dict[str, float]) -> dict[str, Any]:
    predicted = np.array([p >= thresholds.get(lang, thresholds["*"]) for p, lang in zip(probs, languages, strict=True)])
    per_lang = {lang: round(BinaryScores.of(gold[languages == lang], predicted[languages == lang]).f1, 4) for lang in sorted(set(languages.tolist()))}
    return {"out_of_fold_f1_per_language": per_lang, "out_of_fold_f1": round(BinaryScores.of(gold, predicted).f1, 4)}


def _fit_head(columns: list[str], x: np.ndarray, y: np.ndarray, languages: np.ndarray, fold_of: np.ndarray, c: float) -> tuple[Head, dict[str, Any]]:
    """A level-1 head on all rows; its thresholds from its own out-of-fold scores. The "*"
    threshold (languages without training data) is chosen on the same rows scored the way
    such a language is scored (`unseen_language_inputs`), whose scores run lower."""
    mean, scale = _standardise(x)
    head = Head(columns, np.zeros(len(columns), np.float32), 0.0, mean, scale, {})
    z = (x - mean) / scale
    z_unseen = (unseen_language_inputs(head, x) - mean) / scale
    oof, oof_unseen = np.zeros(len(y)), np.zeros(len(y))
    for fold in np.unique(fold_of):
        fit_rows, held = fold_of != fold, fold_of == fold
        w, b = fit_logistic(z[fit_rows], y[fit_rows], c=c, balanced=True)
        oof[held] = sigmoid(z[held] @ w + b)
        oof_unseen[held] = sigmoid(z_unseen[held] @ w + b)
    head.weights, head.bias = fit_logistic(z, y, c=c, balanced=True)
    head.thresholds = {**_thresholds(y, oof, languages), "*": best_threshold(y, oof_unseen)}
    summary = _oof_summary(y, oof, languages, head.thresholds)
    summary["out_of_fold_f1_scored_as_an_unseen_language"] = round(BinaryScores.of(y, oof_unseen >= head.thresholds["*"]).f1, 4)
    return head, summary


def _fit_net(x: np.ndarray, y: np.ndarray, hidden: int, alpha: float, seed: int) -> VectorNet:
    """The vector network, trained by scikit-learn (the `train` extra); numpy reads it."""
    try:
        from sklearn.neural_network import MLPClassifier
    except ImportError as exc:  # pragma: no cover - the extra is part of the test install
        raise ModelError("training the check-worthiness model needs scikit-learn: pip install 'factbridge[train]'") from exc
    net = MLPClassifier((hidden,), activation="relu", alpha=alpha, early_stopping=True, random_state=seed, max_iter=200)
    net.fit(x, y)
    return VectorNet(net.coefs_[0].astype(np.float32), net.intercepts_[0].astype(np.float32), net.coefs_[1][:, 0].astype(np.float32), float(net.intercepts_[1][0]))


def train_model(
    data: TrainingData,
    embedder: Embedder,
    seed: int = 13,
    folds: int = 5,
    tfidf_c: float = 4.0,
    net_hidden: int = 512,
    net_alpha: float = 0.01,
    head_c: float = 1.0,
    progress: Callable[[str, int], Progress] | None = None,
    work_dir: str | Path | None = None,
) -> TrainReport:
    """Train level 0 (TF-IDF, vector network) out of fold, then the level-1 heads.

    `work_dir` keeps the level-0 results (keyed by data, vectors and settings),
    so changing only a level-1 setting refits in seconds."""
    texts = [e.text for e in data.train]
    labels = np.array([e.label for e in data.train])
    languages = np.array([e.language for e in data.train])
    fold_of = np.array([_bucket(text_sha(t), f"{seed}:fold", folds) for t in texts])

    embed_tick = progress("e5 vectors (training texts)", len(texts)) if progress else None
    vectors = np.asarray(embedder.encode_queries(texts, embed_tick), dtype=np.float32)

    config = [MODEL_VERSION, seed, folds, tfidf_c, net_hidden, net_alpha, HashedTfidf().config, FEATURES_VERSION, embedder.id]
    digest = hashlib.sha256(json.dumps(config).encode())
    digest.update("\n".join(f"{e.label}\t{e.language}\t{e.text}" for e in data.train).encode())
    digest.update(np.ascontiguousarray(vectors.astype(np.float16)).tobytes())
    saved = Path(work_dir) / f"level0-{digest.hexdigest()[:16]}.npz" if work_dir else None

    tfidf = HashedTfidf()
    if saved is not None and saved.exists():
        level0 = np.load(saved)
        tfidf.idf = level0["idf"]
        tfidf_oof, tfidf_w, tfidf_b = level0["tfidf_oof"], level0["tfidf_weights"], float(level0["tfidf_bias"])
        net_oof = level0["net_oof"]
        net = VectorNet(level0["net_hidden_weights"], level0["net_hidden_bias"], level0["net_out_weights"], float(level0["net_out_bias"]))
    else:
        tick = progress("level 0: TF-IDF and vector network, per fold", 2 * (folds + 1)) if progress else None
        tfidf.fit(texts)
        matrix = tfidf.transform(texts)
        tfidf_oof, net_oof = np.zeros(len(texts)), np.zeros(len(texts))
        for fold in range(folds):
            fit_rows, held = np.nonzero(fold_of != fold)[0], np.nonzero(fold_of == fold)[0]
            w, b = fit_logistic(matrix[fit_rows], labels[fit_rows], c=tfidf_c)
            tfidf_oof[held] = np.asarray(matrix[held] @ w).ravel() + b
            if tick:
                tick(1)
            net_oof[held] = _fit_net(vectors[fit_rows], labels[fit_rows], net_hidden, net_alpha, seed).logits(vectors[held])
            if tick:
                tick(1)
        tfidf_w, tfidf_b = fit_logistic(matrix, labels, c=tfidf_c)
        if tick:
            tick(1)
        net = _fit_net(vectors, labels, net_hidden, net_alpha, seed)
        if tick:
            tick(1)
        if saved is not None:
            saved.parent.mkdir(parents=True, exist_ok=True)
            np.savez(saved, idf=np.asarray(tfidf.idf), tfidf_oof=tfidf_oof, tfidf_weights=tfidf_w, tfidf_bias=tfidf_b, net_oof=net_oof,
                     net_hidden_weights=net.hidden_weights, net_hidden_bias=net.hidden_bias, net_out_weights=net.out_weights, net_out_bias=net.out_bias)

    model = CheckworthinessModel(MODEL_VERSION, embedder.id, TRAIN_LANGUAGES, tfidf, tfidf_w, tfidf_b, {}, net)
    text_x = model.text_inputs(texts, list(languages), tfidf_oof)
    report = TrainReport(model)
    head_tick = progress("level-1 heads", 2) if progress else None
    for name, columns, x in (
        ("text", model.text_columns(), text_x),
        ("e5", model.vector_columns(), np.hstack([text_x, net_oof[:, None].astype(np.float32)])),
    ):
        model.heads[name], report.validation[name] = _fit_head(columns, x, labels, languages, fold_of, head_c)
        if head_tick:
            head_tick(1)
    report.validation["level0"] = {
        "tfidf": _oof_summary(labels, sigmoid(tfidf_oof), languages, _thresholds(labels, sigmoid(tfidf_oof), languages)),
        "vector_network": _oof_summary(labels, sigmoid(net_oof), languages, _thresholds(labels, sigmoid(net_oof), languages)),
    }

    by_set: dict[str, int] = {}
    for example in data.train:
        by_set[example.set_name] = by_set.get(example.set_name, 0) + 1
    model.card = {
        "name": "checkworthiness-stack",
        "version": MODEL_VERSION,
        "trained_at": datetime.now(UTC).strftime("%Y-%m-%d"),
        "seed": seed,
        "embedder_id": embedder.id,
        "features_version": FEATURES_VERSION,
        "features": list(FEATURE_NAMES),
        "intended_use": "rank social posts for human fact-checkers; a recommendation with its evidence, never a verdict",
        "training_data": {
            "sets": {name: {"examples": n} for name, n in sorted(by_set.items())},
            "licences": {k: v for k, v in LICENCES.items() if any(s.startswith(k) for s in by_set)},
            "dropped_overlapping_evaluation_texts": data.dropped_overlap,
            "dropped_duplicates": data.dropped_duplicates,
            "validation": f"{folds}-fold out-of-fold scores on the training data (sha256 folds with the seed); no evaluation set is used",
        },
        "hyperparameters": {"tfidf": tfidf.config, "tfidf_c": tfidf_c, "folds": folds, "net_hidden": net_hidden, "net_alpha": net_alpha, "net_trainer": "scikit-learn MLPClassifier (adam, early stopping)", "head_c": head_c},
        "validation": report.validation,
        "thresholds": {name: head.thresholds for name, head in model.heads.items()},
        "languages_without_training_data": "vi, km, fr and any other: scored with no language indicator and, with the vector, without the TF-IDF (it has seen no text in them); threshold '*' is chosen on training rows scored that way; see metrics.fixtures",
        "environment": {"python": platform.python_version(), "numpy": np.__version__},
    }
    return report


# --------------------------------------------------------------------------- evaluation


@dataclass
class SetResult:
    name: str
    head: str
    model: BinaryScores
    baseline: BinaryScores | None
    per_language: dict[str, BinaryScores] = field(default_factory=dict)
    baseline_config: str = ""

    def as_dict(self) -> dict[str, Any]:
        return {
            "set": self.name,
            "head": self.head,
            "model": self.model.as_dict(),
            "baseline": self.baseline.as_dict() if self.baseline else None,
            "baseline_config": self.baseline_config or None,
            "per_language": {k: v.as_dict() for k, v in self.per_language.items()},
        }


def baseline_scores(train: Sequence[Example], test: Sequence[Example], progress: Progress | None = None) -> tuple[BinaryScores, str]:
    """The tuned TF-IDF + LR baseline (`factbridge.eval.baseline`) trained on `train`, scored on `test`."""
    from factbridge.eval.baseline import TfidfBaseline

    baseline = TfidfBaseline.train([e.text for e in train], [e.label for e in train], progress=progress)
    return BinaryScores.of([e.label for e in test], baseline.predict([e.text for e in test])), baseline.description


def evaluate(
    model: CheckworthinessModel,
    root: str | Path | None,
    embedder: Embedder | None,
    fixtures: Sequence[str | Path] = (),
    sets: Sequence[str] | None = None,
    with_baseline: bool = True,
    progress: Callable[[str, int], Progress] | None = None,
    cached_only: bool = False,
) -> list[SetResult]:
    """Scores per evaluation set; the baseline is trained on the same set's train split.

    With `cached_only`, a set whose vectors are not all in the embedding cache is
    scored by the text head (the result says which head) instead of embedding it."""
    specs = {s.name: s for s in shared_sets()}
    results: list[SetResult] = []
    wanted = list(EVAL_SETS if sets is None else sets) if root is not None else []
    use_vectors = embedder is not None and embedder_family(embedder.id) == embedder_family(model.embedder_id)
    def vectors_for(examples: list[Example]) -> Embedder | None:
        if not use_vectors:
            return None
        if cached_only and not _all_cached(embedder, [e.text for e in examples]):
            return None
        return embedder

    for name in wanted:
        examples = load_set(root, specs[name])  # type: ignore[arg-type]
        results.append(_evaluate_set(model, name, examples, vectors_for(examples), progress))
        if with_baseline:
            train_name = name.rsplit("/", 1)[0] + "/train"
            tick = progress(f"baseline {train_name} (5-fold tuning)", 6) if progress else None
            results[-1].baseline, results[-1].baseline_config = baseline_scores(load_set(root, specs[train_name]), examples, tick)  # type: ignore[arg-type]
    for path in fixtures:
        examples = read_jsonl(path)
        result = _evaluate_set(model, f"fixture/{Path(path).name}", examples, vectors_for(examples), progress)
        results.append(result)
    return results


def _all_cached(embedder: Any, texts: Sequence[str]) -> bool:
    cache = getattr(embedder, "cache", None)
    if cache is None:
        return False
    shas = list({text_sha(t) for t in texts})
    return len(cache.get_many(embedder.id, "query", shas)) == len(shas)


def _evaluate_set(model: CheckworthinessModel, name: str, examples: list[Example], embedder: Embedder | None, progress: Callable[[str, int], Progress] | None) -> SetResult:
    texts = [e.text for e in examples]
    vectors: list[np.ndarray | None] = [None] * len(texts)
    if embedder is not None:
        tick = progress(f"e5 vectors {name}", len(texts)) if progress else None
        vectors = list(embedder.encode_queries(texts, tick))
    scores = model.score(texts, [e.language for e in examples], vectors)
    predicted = np.array([s.label == "claim" for s in scores], dtype=int)
    gold = np.array([e.label for e in examples])
    per_language = {}
    for lang in sorted({e.language for e in examples}):
        rows = np.array([e.language == lang for e in examples])
        per_language[lang] = BinaryScores.of(gold[rows], predicted[rows])
    heads = sorted({s.head for s in scores})
    return SetResult(name, "+".join(heads), BinaryScores.of(gold, predicted), None, per_language)


def write_card_metrics(model: CheckworthinessModel, results: Sequence[SetResult], folder: str | Path) -> None:
    model.card["metrics"] = {r.name: r.as_dict() for r in results}
    Path(folder, "card.json").write_text(json.dumps(model.card, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    Path(folder, "MODEL_CARD.md").write_text(render_card(model.card), encoding="utf-8")


__all__ = ["EVAL_SETS", "BinaryScores", "SetResult", "TrainingData", "evaluate", "iter_available", "load_training_data", "train_model"]


def render_card(card: dict[str, Any]) -> str:
    """The model card as Markdown (MODEL_CARD.md beside the weights)."""
    lines = [
        f"# {card.get('name')} {card.get('version')}",
        "",
        f"Trained {card.get('trained_at')} with seed {card.get('seed')} on embedder `{card.get('embedder_id')}` "
        f"and features `{card.get('features_version')}`. Intended use: {card.get('intended_use')}.",
        "",
        "Reproduce: `make train-checkworthiness` (= `factbridge train checkworthiness --data ../shared/data/checkworthiness "
        "--fixture tests/fixtures/checkworthiness_posts.jsonl --fixture tests/fixtures/checkworthiness_multilingual.jsonl`). "
        "Vectors missing from the embedding cache are computed once (about 37k texts: 15-25 min on 2 cores), then cached.",
        "",
        "## Training data and licences",
        "",
        "| set | examples |",
        "|---|---:|",
    ]
    data = card.get("training_data", {})
    for name, info in data.get("sets", {}).items():
        lines.append(f"| {name} | {info['examples']} |")
    lines += ["", *(f"- {k}: {v}" for k, v in data.get("licences", {}).items())]
    lines += ["", f"Texts also found in an evaluation set or fixture were dropped: {data.get('dropped_overlapping_evaluation_texts')}; duplicates dropped: {data.get('dropped_duplicates')}.", ""]
    lines += ["## Metrics (positive class)", "", "| set | head | n | P | R | F1 | accuracy | baseline F1 |", "|---|---|---:|---:|---:|---:|---:|---:|"]
    for name, m in card.get("metrics", {}).items():
        base = m.get("baseline") or {}
        model = m["model"]
        lines.append(f"| {name} | {m['head']} | {model['n']} | {model['precision']:.3f} | {model['recall']:.3f} | {model['f1']:.3f} | {model['accuracy']:.3f} | {base.get('f1', '')} |")
        if name.startswith("fixture/"):
            for lang, s in m.get("per_language", {}).items():
                lines.append(f"| {name} [{lang}] | {m['head']} | {s['n']} | {s['precision']:.3f} | {s['recall']:.3f} | {s['f1']:.3f} | {s['accuracy']:.3f} | |")
    lines += ["", "Baseline (`factbridge.eval.baseline`): TF-IDF of word 1-2-grams (sublinear tf, the same computation as scikit-learn's "
              "TfidfVectorizer) + logistic regression, C and class weighting chosen by 5-fold CV F1 on the same set's train split, threshold 0.5.", ""]
    configs = {name: m.get("baseline_config") for name, m in card.get("metrics", {}).items() if m.get("baseline_config")}
    lines += [f"- {name}: {config}" for name, config in configs.items()]
    lines += [""] if configs else []
    lines += ["## Thresholds", "", "```", json.dumps(card.get("thresholds", {}), indent=1), "```", ""]
    lines += ["## Caveats", "", "- " + str(card.get("languages_without_training_data")), "- CheckThat! 2022 1A has no labelled dev_test in the shared copy: its dev split is the held-out test here and was never used for training or model selection.", "- Check-worthiness is a recommendation for a person, never a verdict on truth.", ""]
    return "\n".join(lines)
