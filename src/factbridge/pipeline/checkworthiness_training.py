"""Training and evaluation of the check-worthiness model on the shared sets.

Protocol (honest by construction):

* training data: CheckThat! 2022 1A train (6 languages), CheckThat! 2024
  English train and ClaimBuster; any training text that also occurs in an
  evaluation set (or a fixture) is dropped first;
* evaluation data: CheckThat! 2022 1A dev (this copy has no labelled
  dev_test, so dev is never looked at while training) and CheckThat! 2024
  English dev;
* e5 vectors are costly on 2 cores, so only a fixed, seed-free subset of each
  training set is embedded: its unique texts ordered by sha256, first N
  (`EMBED_CAPS`); the same subset is found in any embedding cache;
* level 0 (TF-IDF logistic regression) sees all training data; the level-1
  heads learn from the embedded subset, with level-0 logits computed out of
  fold (k folds over the subset), so the stack never sees its own training
  labels twice; model selection (C) and per-language thresholds use a
  validation slice (1/5 of the embedded subset), never an evaluation set.
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

from factbridge.backends.embedders.base import Embedder
from factbridge.backends.embedders.cache import text_sha
from factbridge.eval.checkworthiness_data import (
    Example,
    iter_available,
    load_set,
    read_claimbuster,
    read_jsonl,
    shared_sets,
)
from factbridge.pipeline.checkworthiness import (
    CheckworthinessModel,
    HashedTfidf,
    Head,
    fit_logistic,
    sigmoid,
)
from factbridge.pipeline.claimfeatures import FEATURE_NAMES, FEATURES_VERSION

MODEL_VERSION = "2"
TRAIN_LANGUAGES = ["en", "ar", "bg", "nl", "es", "tr"]
# Unique texts per training set that get e5 vectors (sha256 order, first N).
EMBED_CAPS: dict[str, int] = {
    "clef2022_1a/en/train": 800,
    "clef2022_1a/nl/train": 800,
    "clef2022_1a/bg/train": 800,
    "clef2022_1a/tr/train": 800,
    "clef2022_1a/ar/train": 800,
    "clef2022_1a/es/train": 800,
    "clef2024/en/train": 12000,
}
EVAL_SETS = [f"clef2022_1a/{code}/dev" for code in TRAIN_LANGUAGES] + ["clef2024/en/dev"]
TRAIN_SETS = [f"clef2022_1a/{code}/train" for code in TRAIN_LANGUAGES] + ["clef2024/en/train"]
LICENCES = {
    "clef2022_1a": "CheckThat! 2022 task 1A (gitlab.com/checkthat_lab/clef2022-checkthat-lab): no licence stated; released by the CheckThat! lab to the research community",
    "clef2024": "CheckThat! 2024 task 1 (gitlab.com/checkthat_lab/clef2024-checkthat-lab, via github.com/iai-group/clef2024-checkthat): no licence file; provided by the CheckThat! organisers for research",
    "claimbuster": "ClaimBuster / ClaimSpotter two-class train.json (github.com/utaresearch/claimbuster-spotter): GPL-3.0",
}
Progress = Callable[[int], None]
# A language gets its own threshold only with this many positive validation examples.
MIN_THRESHOLD_POSITIVES = 20


def _bucket(key: str, salt: str, k: int) -> int:
    return int(hashlib.sha256(f"{salt}:{key}".encode()).hexdigest()[:8], 16) % k


def embedded_subset(examples: Sequence[Example], cap: int) -> set[str]:
    """The texts of a set that carry e5 vectors: unique texts by sha256 order, first `cap`."""
    unique = sorted({e.text for e in examples}, key=text_sha)
    return set(unique[:cap])


# --------------------------------------------------------------------------- metrics


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


def best_threshold(gold: np.ndarray, probs: np.ndarray) -> float:
    """Threshold with the best F1 on held-out data (ties: the one nearest 0.5)."""
    grid = np.round(np.arange(0.10, 0.91, 0.025), 3)
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
    chosen_c: dict[str, float] = field(default_factory=dict)


def _standardise(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    mean = x.mean(axis=0)
    scale = x.std(axis=0)
    scale[scale < 1e-6] = 1.0
    return mean.astype(np.float32), scale.astype(np.float32)


def _fit_head(columns: list[str], x: np.ndarray, y: np.ndarray, val_x: np.ndarray, val_y: np.ndarray, val_lang: list[str], grid: Sequence[float]) -> tuple[Head, float, dict[str, Any]]:
    mean, scale = _standardise(x)
    best: tuple[float, float, Head, dict[str, Any]] | None = None
    for c in grid:
        w, b = fit_logistic((x - mean) / scale, y, c=c, balanced=True)
        head = Head(columns, w, b, mean, scale, {"*": 0.5})
        probs = sigmoid(head.logits(val_x))
        thresholds = {"*": best_threshold(val_y, probs)}
        for lang in sorted(set(val_lang)):
            rows = np.array([lg == lang for lg in val_lang])
            if val_y[rows].sum() >= MIN_THRESHOLD_POSITIVES:
                thresholds[lang] = best_threshold(val_y[rows], probs[rows])
        head.thresholds = thresholds
        predicted = np.array([probs[i] >= head.threshold(val_lang[i]) for i in range(len(val_y))])
        per_lang = {lang: BinaryScores.of(val_y[np.array([lg == lang for lg in val_lang])], predicted[np.array([lg == lang for lg in val_lang])]).f1 for lang in set(val_lang)}
        macro = float(np.mean(list(per_lang.values())))
        if best is None or macro > best[0]:
            best = (macro, c, head, {"macro_f1": round(macro, 4), "f1_per_language": {k: round(v, 4) for k, v in sorted(per_lang.items())}})
    assert best is not None
    return best[2], best[1], best[3]


def _fit_residual(
    base: Head, x_fit: np.ndarray, text_fit: np.ndarray, y_fit: np.ndarray,
    x_val: np.ndarray, text_val: np.ndarray, y_val: np.ndarray, val_lang: list[str], grid: Sequence[float],
) -> tuple[Head, float, dict[str, Any]]:
    """A correction of `base` from the vectors, C chosen by macro F1 on validation (C=0: no correction).

    Note: choosing C and thresholds on the same slice is optimistic on that slice;
    the evaluation sets are never used."""
    mean, scale = _standardise(x_fit)
    offset_fit, offset_val = base.logits(text_fit), base.logits(text_val)
    langs = sorted(set(val_lang))
    best: tuple[float, float, Head, dict[str, Any]] | None = None
    for c in (0.0, *grid):
        if c == 0.0:
            w, b = np.zeros(x_fit.shape[1], np.float32), 0.0
        else:
            w, b = fit_logistic((x_fit - mean) / scale, y_fit, c=c, balanced=True, offset=offset_fit)
        head = Head([f"e5:{i}" for i in range(x_fit.shape[1])], w, b, mean, scale, dict(base.thresholds), base="text")
        probs = sigmoid(offset_val + head.logits(x_val))
        for lang in langs:  # own threshold where validation is large enough, else the text head's
            rows = np.array([lg == lang for lg in val_lang])
            if y_val[rows].sum() >= MIN_THRESHOLD_POSITIVES:
                head.thresholds[lang] = best_threshold(y_val[rows], probs[rows])
        predicted = np.array([probs[i] >= head.threshold(val_lang[i]) for i in range(len(y_val))])
        per_lang = {}
        for lang in langs:
            rows = np.array([lg == lang for lg in val_lang])
            per_lang[lang] = BinaryScores.of(y_val[rows], predicted[rows]).f1
        macro = float(np.mean(list(per_lang.values())))
        if best is None or macro > best[0] + 1e-9:
            best = (macro, c, head, {"macro_f1": round(macro, 4), "f1_per_language": {k: round(v, 4) for k, v in per_lang.items()}})
    assert best is not None
    return best[2], best[1], best[3]


def train_model(
    data: TrainingData,
    embedder: Embedder,
    seed: int = 13,
    caps: dict[str, int] | None = None,
    folds: int = 2,
    tfidf_c: float = 4.0,
    head_grid: Sequence[float] = (0.01, 0.03, 0.1, 0.3),
    residual_grid: Sequence[float] = (0.03, 0.1, 0.3, 1.0, 3.0),
    progress: Callable[[str, int], Progress] | None = None,
    work_dir: str | Path | None = None,
) -> TrainReport:
    """Train both heads. `work_dir` keeps the level-0 results (keyed by data and
    settings), so a rerun with more e5 vectors refits only the cheap heads."""
    caps = dict(EMBED_CAPS if caps is None else caps)
    by_set: dict[str, list[Example]] = {}
    for example in data.train:
        by_set.setdefault(example.set_name, []).append(example)
    chosen: set[str] = set()
    for name, cap in caps.items():
        # The subset is defined on the set as published (before overlap removal) so that
        # it is the same subset a shared embedding cache holds.
        chosen |= embedded_subset(data.published.get(name, []), cap)
    embedded = [e for e in data.train if e.text in chosen]

    def in_val(e: Example) -> bool:
        return _bucket(text_sha(e.text), f"{seed}:val", 5) == 0

    # Level 0: TF-IDF logistic regression, with out-of-fold logits for every training text.
    texts = [e.text for e in data.train]
    labels = np.array([e.label for e in data.train])
    tfidf = HashedTfidf()
    key = hashlib.sha256(json.dumps([seed, folds, tfidf_c, tfidf.config, FEATURES_VERSION]).encode() + "\n".join(f"{e.label}\t{e.language}\t{e.text}" for e in data.train).encode()).hexdigest()[:16]
    saved = Path(work_dir) / f"level0-{key}.npz" if work_dir else None
    if saved is not None and saved.exists():
        level0 = np.load(saved)
        tfidf.idf = level0["idf"]
        oof_logits, tfidf_w, tfidf_b = level0["oof"], level0["weights"], float(level0["bias"])
        text_features: np.ndarray | None = level0["features"]
    else:
        tfidf.fit(texts)
        matrix = tfidf.transform(texts)
        fold_of = np.array([_bucket(text_sha(t), f"{seed}:fold", folds) for t in texts])
        oof_logits = np.zeros(len(texts))
        tick = progress("level-0 TF-IDF folds", folds + 1) if progress else None
        for fold in range(folds):
            train_rows, held_rows = np.nonzero(fold_of != fold)[0], np.nonzero(fold_of == fold)[0]
            w, b = fit_logistic(matrix[train_rows], labels[train_rows], c=tfidf_c)
            oof_logits[held_rows] = np.asarray(matrix[held_rows] @ w).ravel() + b
            if tick:
                tick(1)
        tfidf_w, tfidf_b = fit_logistic(matrix, labels, c=tfidf_c)
        if tick:
            tick(1)
        text_features = None
    oof = {t: float(z) for t, z in zip(texts, oof_logits, strict=True)}

    model = CheckworthinessModel(MODEL_VERSION, embedder.id, TRAIN_LANGUAGES, tfidf, tfidf_w, tfidf_b, {})

    def inputs(rows: list[Example]) -> np.ndarray:
        return model.text_inputs([e.text for e in rows], [e.language for e in rows], np.array([oof[e.text] for e in rows]))

    # Level 1 "text" head: every training text; "e5" head: the embedded subset, whose
    # vectors come from the cache (or are computed now). Validation: a fixed 1/5 slice.
    embed_tick = progress("e5 vectors (training subset)", len(embedded)) if progress else None
    vectors = embedder.encode_queries([e.text for e in embedded], embed_tick)
    vector_of = {e.text: vectors[i] for i, e in enumerate(embedded)}
    text_columns = model.text_columns()
    # Features saved with level 0 carry the out-of-fold logit column already.
    all_inputs = inputs(data.train) if text_features is None else text_features
    if saved is not None and not saved.exists():
        saved.parent.mkdir(parents=True, exist_ok=True)
        np.savez(saved, idf=np.asarray(tfidf.idf), oof=oof_logits, weights=tfidf_w, bias=tfidf_b, features=all_inputs)
    row_of = {e.text: i for i, e in enumerate(data.train)}
    report = TrainReport(model)
    head_tick = progress("level-1 heads", 2) if progress else None
    # The text head learns from every training text.
    fit_rows = [e for e in data.train if not in_val(e)]
    val = [e for e in data.train if in_val(e)]
    text_head, c, summary = _fit_head(text_columns, all_inputs[[row_of[e.text] for e in fit_rows]], np.array([e.label for e in fit_rows]),
                                      all_inputs[[row_of[e.text] for e in val]], np.array([e.label for e in val]), [e.language for e in val], head_grid)
    summary["fit_rows"], summary["validation_rows"] = len(fit_rows), len(val)
    model.heads["text"], report.chosen_c["text"], report.validation["text"] = text_head, c, summary
    if head_tick:
        head_tick(1)
    # The e5 head is a residual: the text head's logit plus a correction learnt from
    # the vector on the embedded subset (few thousand rows: a raw 384-d head trained
    # on them alone was worse than the text head). It keeps the text head's thresholds.
    fit_rows = [e for e in embedded if not in_val(e)]
    val = [e for e in embedded if in_val(e)]
    e5_head, c, summary = _fit_residual(
        text_head,
        np.stack([vector_of[e.text] for e in fit_rows]), all_inputs[[row_of[e.text] for e in fit_rows]], np.array([e.label for e in fit_rows]),
        np.stack([vector_of[e.text] for e in val]), all_inputs[[row_of[e.text] for e in val]], np.array([e.label for e in val]), [e.language for e in val],
        residual_grid,
    )
    summary["fit_rows"], summary["validation_rows"] = len(fit_rows), len(val)
    model.heads["e5"], report.chosen_c["e5"], report.validation["e5"] = e5_head, c, summary
    if head_tick:
        head_tick(1)

    sets = sorted({e.set_name for e in data.train})
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
            "sets": {name: {"examples": len(by_set.get(name, [])), "embedded": sum(1 for e in embedded if e.set_name == name)} for name in sets},
            "licences": {k: v for k, v in LICENCES.items() if any(s.startswith(k) for s in sets)},
            "dropped_overlapping_evaluation_texts": data.dropped_overlap,
            "dropped_duplicates": data.dropped_duplicates,
            "embed_caps": caps,
            "validation": "a fixed 1/5 of each head's rows (sha256 bucket with the seed)",
        },
        "hyperparameters": {"tfidf": tfidf.config, "tfidf_c": tfidf_c, "folds": folds, "head_c": report.chosen_c, "head_grid": list(head_grid), "residual_grid": list(residual_grid)},
        "validation": report.validation,
        "thresholds": {name: head.thresholds for name, head in model.heads.items()},
        "languages_without_training_data": "vi, km, fr and any other: the language-neutral threshold '*' applies; see metrics.fixtures",
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

    def as_dict(self) -> dict[str, Any]:
        return {
            "set": self.name,
            "head": self.head,
            "model": self.model.as_dict(),
            "baseline": self.baseline.as_dict() if self.baseline else None,
            "per_language": {k: v.as_dict() for k, v in self.per_language.items()},
        }


def baseline_scores(train: Sequence[Example], test: Sequence[Example]) -> BinaryScores:
    """TF-IDF (word unigrams) + logistic regression (C=1, threshold 0.5) trained on `train`."""
    vectoriser = HashedTfidf(bits=18, char_range=None, word_bigrams=False).fit([e.text for e in train])
    w, b = fit_logistic(vectoriser.transform([e.text for e in train]), np.array([e.label for e in train]), c=1.0)
    probs = sigmoid(np.asarray(vectoriser.transform([e.text for e in test]) @ w).ravel() + b)
    return BinaryScores.of([e.label for e in test], probs >= 0.5)


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
    use_vectors = embedder is not None and embedder.id == model.embedder_id
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
            results[-1].baseline = baseline_scores(load_set(root, specs[train_name]), examples)  # type: ignore[arg-type]
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


__all__ = ["EMBED_CAPS", "EVAL_SETS", "BinaryScores", "SetResult", "TrainingData", "evaluate", "iter_available", "load_training_data", "train_model"]


def render_card(card: dict[str, Any]) -> str:
    """The model card as Markdown (MODEL_CARD.md beside the weights)."""
    lines = [
        f"# {card.get('name')} {card.get('version')}",
        "",
        f"Trained {card.get('trained_at')} with seed {card.get('seed')} on embedder `{card.get('embedder_id')}` "
        f"and features `{card.get('features_version')}`. Intended use: {card.get('intended_use')}.",
        "",
        "Reproduce: `factbridge --embed-cache /tmp/fb/cw-cache.sqlite train checkworthiness --data ../shared/data/checkworthiness "
        "--fixture tests/fixtures/checkworthiness_posts.jsonl` (vectors missing from the cache are computed).",
        "",
        "## Training data and licences",
        "",
        "| set | examples | with e5 vectors |",
        "|---|---:|---:|",
    ]
    data = card.get("training_data", {})
    for name, info in data.get("sets", {}).items():
        lines.append(f"| {name} | {info['examples']} | {info['embedded']} |")
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
    lines += ["", "Baseline: TF-IDF of word unigrams + logistic regression (C=1, threshold 0.5) trained on the same set's train split.", ""]
    lines += ["## Thresholds", "", "```", json.dumps(card.get("thresholds", {}), indent=1), "```", ""]
    lines += ["## Caveats", "", "- " + str(card.get("languages_without_training_data")), "- CheckThat! 2022 1A has no labelled dev_test in the shared copy: its dev split is the held-out test here and was never used for training or model selection.", "- Check-worthiness is a recommendation for a person, never a verdict on truth.", ""]
    return "\n".join(lines)
