"""Check-worthiness: is this post a verifiable factual claim worth checking?

A small stacked model, numpy-only at inference:

* level 0, text: logistic regression on hashed TF-IDF of character 3-5-grams
  and word 1-2-grams (script-agnostic: works for Khmer without segmentation);
* level 0, vector: a one-hidden-layer network (ReLU) reading the post's
  stored e5 query vector; the multilingual vector is what carries what was
  learnt in one language over to another (vi, km, fr have no training data);
* level 1: logistic regression over the level-0 logits, the cheap claim
  features (numbers, dates, quantities, capitalised names, claim verbs,
  greeting/opinion/joke markers, ...) and a language indicator. The "e5"
  head uses both logits; the "text" head (no vector) is used for posts whose
  vector from the model's embedder is not stored (another embedder
  configured, or matching skipped). The head used is part of `decided_by`,
  and every score carries each input's contribution to the logit.

The e5 vector is never computed here: the matching stage stores it, and this
stage reads it (`storage.load_vectors(org, "post", embedder.id)`).
Decision thresholds are per language, chosen on out-of-fold training scores.
"""

from __future__ import annotations

import json
import re
import time
import zlib
from array import array
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cached_property, lru_cache
from importlib.resources import files
from pathlib import Path
from typing import Any

import numpy as np
import scipy.optimize
import scipy.sparse as sp

from factbridge.backends.embedders.base import embedder_family
from factbridge.errors import EmbedderMismatch, ModelError
from factbridge.models import Post
from factbridge.pipeline import records
from factbridge.pipeline.claimfeatures import (
    CLAIM_EVIDENCE,
    FEATURE_NAMES,
    FEATURES_VERSION,
    NOT_CLAIM_MARKERS,
    feature_vector,
)
from factbridge.pipeline.prepare import embedding_text
from factbridge.pipeline.records import CheckworthinessRecord, CheckworthinessScores
from factbridge.pipeline.stages import FunctionStage, StageContext, StageSummary

MODEL_NAME = "checkworthiness-stack"
# Fractions of the decision threshold below which a "no" is confident (see _explain).
CONFIDENT_NO = 0.5
CONFIDENT_NO_UNSEEN_LANGUAGE = 0.05
COLLECTION = records.CHECKWORTHINESS
_TOKEN = re.compile(r"\w+", re.UNICODE)
_DIGIT = re.compile(r"\d")


def default_model_dir() -> Path:
    return Path(str(files("factbridge") / "data" / "checkworthiness"))


# --------------------------------------------------------------------------- level 0


@lru_cache(maxsize=200_000)
def _char_grams(word: str, lo: int, hi: int, mask: int) -> tuple[int, ...]:
    """Hashed character n-grams of one word; words repeat, so this is cached."""
    padded = f" {word} "
    return tuple(
        zlib.crc32(padded[i : i + n].encode("utf-8")) & mask
        for n in range(lo, hi + 1)
        for i in range(0, max(1, len(padded) - n + 1))
    )


@lru_cache(maxsize=200_000)
def _word_hash(key: str, mask: int) -> int:
    return zlib.crc32(key.encode("utf-8")) & mask


_BIGRAM_START = zlib.crc32(b"b:")


@lru_cache(maxsize=200_000)
def _bigram_state(word: str) -> int:
    """crc32 of "b:{word} ", the start of every word bigram that begins with `word`:
    crc32(a + b) == crc32(b, crc32(a)), so a bigram's hash is crc32(next word, this)."""
    return zlib.crc32(b" ", zlib.crc32(word.encode("utf-8"), _BIGRAM_START))


class HashedTfidf:
    """TF-IDF over hashed character 3-5-grams (inside words) and word 1-2-grams.

    Hashing (crc32, stable across processes) keeps the shipped model small and
    needs no vocabulary; sublinear tf, smoothed idf, L2-normalised rows.
    """

    def __init__(self, bits: int = 18, char_range: tuple[int, int] | None = (3, 5), word_bigrams: bool = True, idf: np.ndarray | None = None) -> None:
        self.bits = bits
        self.size = 1 << bits
        self.char_range = char_range
        self.word_bigrams = word_bigrams
        self.idf = idf
        # A word's hashed character grams and word hash, cached per vectoriser (one
        # argument: the cache's fast path; words repeat across posts).
        self._word_columns = lru_cache(maxsize=200_000)(self._grams_of_word)

    def _grams_of_word(self, word: str) -> bytes:
        """A word's hashed character grams (in `_indices` order) and its word hash, as
        native int64 bytes: a text's columns are then one `bytes.join`."""
        mask = self.size - 1
        grams = _char_grams(word, *self.char_range, mask) if self.char_range else ()
        return array("q", (*grams, _word_hash("w:" + word, mask))).tobytes()

    @property
    def config(self) -> dict[str, Any]:
        return {"bits": self.bits, "char_range": list(self.char_range) if self.char_range else None, "word_bigrams": self.word_bigrams}

    def _indices(self, text: str) -> list[int]:
        """Hashed gram indices of a text, repeats included (counted in `counts`)."""
        mask = self.size - 1
        out: list[int] = []
        words = _TOKEN.findall(_DIGIT.sub("0", text.lower()))
        if self.char_range:
            lo, hi = self.char_range
            for word in words:
                out.extend(_char_grams(word, lo, hi, mask))
        previous = ""
        for word in words:
            out.append(_word_hash("w:" + word, mask))
            if previous and self.word_bigrams:
                out.append(zlib.crc32(("b:" + previous + " " + word).encode("utf-8")) & mask)
            previous = word
        return out

    def _columns(self, text: str) -> bytes:
        """`_indices(text)` as native int64 bytes, in another order (`counts` sums them per
        column, so the order changes nothing), with no Python step per word: each word's
        cached grams and word hash, then each bigram's crc32 from its first word's cached
        start (`_bigram_state`)."""
        words = _TOKEN.findall(_DIGIT.sub("0", text.lower()))
        grams = b"".join(map(self._word_columns, words))
        if not self.word_bigrams or len(words) < 2:
            return grams
        hashes = map(zlib.crc32, map(str.encode, words[1:]), map(_bigram_state, words[:-1]))
        bigrams = np.fromiter(hashes, np.int64, len(words) - 1) & (self.size - 1)
        return grams + bigrams.tobytes()

    def counts(self, texts: Sequence[str]) -> sp.csr_matrix:
        """Sublinear term frequencies (1 + log count), one row per text, in canonical form
        (sorted columns, no repeats): each (row, column) is one int64 key, and `np.unique`
        sorts and counts the keys of the whole batch at once."""
        columns = [self._columns(text) for text in texts]
        rows = np.arange(len(texts), dtype=np.int64) * self.size
        keys = np.repeat(rows, [len(c) // 8 for c in columns]) + np.frombuffer(b"".join(columns), dtype=np.int64)
        unique, counts = np.unique(keys, return_counts=True)
        indptr = np.searchsorted(unique, np.append(rows, len(texts) * self.size))
        data = 1.0 + np.log(counts.astype(np.float32))
        return sp.csr_matrix((data, unique % self.size, indptr), shape=(len(texts), self.size))

    def fit(self, texts: Sequence[str]) -> HashedTfidf:
        counts = self.counts(texts)
        df = np.bincount(counts.indices, minlength=self.size).astype(np.float64)
        self.idf = (np.log((1 + len(texts)) / (1 + df)) + 1.0).astype(np.float32)
        return self

    def transform(self, texts: Sequence[str]) -> sp.csr_matrix:
        if self.idf is None:
            raise ModelError("the TF-IDF vectoriser is not fitted")
        matrix = self.counts(texts)  # canonical: summed duplicates, sorted columns
        matrix.data *= self.idf[matrix.indices]  # the products of matrix.multiply(idf[None, :]), without a dense row
        norms = np.sqrt(np.asarray(matrix.multiply(matrix).sum(axis=1)).ravel())
        norms[norms == 0] = 1.0
        return _scale_rows(matrix, 1.0 / norms)


def _scale_rows(matrix: sp.csr_matrix, scale: np.ndarray) -> sp.csr_matrix:
    """`sp.csr_matrix(sp.diags(scale) @ matrix, dtype=np.float32)` without scipy's sparse product,
    which clears two column-sized (2**18) work arrays per call: each entry times its row's
    scale (one float32 product, as there), and each row's entries in reverse column order,
    the order that product leaves them in. The logits sum a row in its stored order, so
    keeping the order keeps them the same to the bit."""
    lengths = np.diff(matrix.indptr)
    order = np.repeat(matrix.indptr[:-1] + matrix.indptr[1:] - 1, lengths) - np.arange(matrix.nnz)
    data = (matrix.data * np.repeat(scale.astype(np.float32), lengths))[order]
    return sp.csr_matrix((data, matrix.indices[order], matrix.indptr.copy()), shape=matrix.shape)


def fit_logistic(
    x: np.ndarray | sp.spmatrix, y: np.ndarray, c: float = 1.0, balanced: bool = False, max_iter: int = 500,
) -> tuple[np.ndarray, float]:
    """L2-regularised logistic regression (0.5·|w|² + C·Σ loss), bias unpenalised, by L-BFGS
    (the objective of scikit-learn's LogisticRegression)."""
    y = np.asarray(y, dtype=np.float64)
    n, dim = x.shape
    weight = np.ones(n)
    if balanced:
        pos = max(1.0, y.sum())
        neg = max(1.0, n - y.sum())
        weight = np.where(y == 1, n / (2 * pos), n / (2 * neg))
    sign = 2 * y - 1

    def objective(params: np.ndarray) -> tuple[float, np.ndarray]:
        w, b = params[:dim], params[dim]
        z = np.asarray(x @ w).ravel() + b
        margin = sign * z
        loss = np.logaddexp(0.0, -margin)
        grad_z = -sign * weight * np.exp(-np.logaddexp(0.0, margin))  # d loss / d z
        grad_w = np.asarray(x.T @ grad_z).ravel() * c + w
        value = 0.5 * float(w @ w) + c * float(weight @ loss)
        return value, np.concatenate([grad_w, [c * grad_z.sum()]])

    result = scipy.optimize.minimize(objective, np.zeros(dim + 1), jac=True, method="L-BFGS-B", options={"maxiter": max_iter})
    return result.x[:dim].astype(np.float32), float(result.x[dim])


def sigmoid(z: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * z))


# --------------------------------------------------------------------------- level 1


@dataclass
class Head:
    """A standardised logistic regression over named input columns."""

    columns: list[str]
    weights: np.ndarray
    bias: float
    mean: np.ndarray
    scale: np.ndarray
    thresholds: dict[str, float]  # per language; "*" for any other

    def logits(self, inputs: np.ndarray) -> np.ndarray:
        return np.asarray(((inputs - self.mean) / self.scale) @ self.weights + self.bias)

    def contributions(self, row: np.ndarray) -> np.ndarray:
        return np.asarray(((row - self.mean) / self.scale) * self.weights)

    def threshold(self, language: str | None) -> float:
        return self.thresholds.get(language or "", self.thresholds["*"])

    @cached_property
    def groups(self) -> list[str]:
        """Per column, the name its contribution is reported under (a language's one-hot
        columns together as "language")."""
        return ["language" if c.startswith("lang:") else c.replace("feature:", "") for c in self.columns]

    @cached_property
    def _group_columns(self) -> list[tuple[str, list[int]]]:
        """Each reported name ("bias" first, then in column order) with its columns."""
        names = dict.fromkeys(["bias", *self.groups])
        return [(name, [j for j, g in enumerate(self.groups) if g == name]) for name in names]

    def top_contributions(self, x: np.ndarray, top: int = 8) -> list[dict[str, float]]:
        """Per row of inputs, the `top` largest contributions to the logit by absolute value,
        grouped (`groups`) and with the bias. The same floats in the same order as summing each
        row's `contributions(row).tolist()` in Python (a group's columns in column order onto
        0.0, the bias onto `bias`; float64 sums of the float32 contributions) and ranking them
        with a stable sort on -abs: column by column over the batch, one numpy sort."""
        contrib = self.contributions(x).astype(np.float64)
        sums = np.empty((len(contrib), len(self._group_columns)))
        for g, (name, columns) in enumerate(self._group_columns):
            total = np.full(len(contrib), self.bias if name == "bias" else 0.0)
            for j in columns:
                total = total + contrib[:, j]
            sums[:, g] = total
        order = np.argsort(-np.abs(sums), axis=1, kind="stable")[:, :top].tolist()
        names = [name for name, _ in self._group_columns]
        return [{names[g]: row[g] for g in ranked} for row, ranked in zip(sums.tolist(), order, strict=True)]

    @cached_property
    def feature_columns(self) -> list[tuple[str, int]]:
        """(feature name, column) of each claim feature."""
        return [(name, self.columns.index(f"feature:{name}")) for name in FEATURE_NAMES]


@dataclass
class VectorNet:
    """Logit of "check-worthy" from an embedding: one ReLU hidden layer."""

    hidden_weights: np.ndarray  # (dim, hidden)
    hidden_bias: np.ndarray  # (hidden,)
    out_weights: np.ndarray  # (hidden,)
    out_bias: float

    @property
    def dim(self) -> int:
        return int(self.hidden_weights.shape[0])

    def logits(self, vectors: np.ndarray) -> np.ndarray:
        hidden = np.maximum(vectors @ self.hidden_weights + self.hidden_bias, 0.0)
        return np.asarray(hidden @ self.out_weights + self.out_bias)


def unseen_language_inputs(head: Head, x: np.ndarray) -> np.ndarray:
    """Inputs as a post in a language without training data (vi, km, fr, ...) is scored: no
    language indicator and, in the head that has the vector, the TF-IDF abstaining (its input
    at its training mean: contribution 0) — that model has seen no text in the language, so
    its logit there is noise, and the multilingual vector speaks instead. The text head keeps
    the TF-IDF logit: it has nothing else to go on. Training chooses the "*" threshold on
    training rows put through this same function."""
    out = np.array(x, dtype=np.float32, copy=True)
    for j, column in enumerate(head.columns):
        if column.startswith("lang:"):
            out[:, j] = 0.0
    if "embedding" in head.columns:
        tfidf = head.columns.index("tfidf")
        out[:, tfidf] = head.mean[tfidf]
    return out


@dataclass
class CheckworthinessScore:
    score: float
    label: str  # "claim" | "not_claim"
    threshold: float
    head: str
    clearly_not_claim: bool
    markers: list[str]
    features: dict[str, float]
    contributions: dict[str, float]
    decided_by: str

    def record(self, post_id: str) -> CheckworthinessRecord:
        return CheckworthinessRecord(
            post_id=post_id, score=self.score, label=self.label, threshold=self.threshold, head=self.head, decided_by=self.decided_by,
            clearly_not_claim=self.clearly_not_claim, not_claim_markers=list(self.markers), features=dict(self.features),
            contributions=dict(self.contributions),
        )

    def to_doc(self, post_id: str) -> dict[str, Any]:
        return self.record(post_id).to_doc()


@dataclass
class CheckworthinessModel:
    version: str
    embedder_id: str
    languages: list[str]
    tfidf: HashedTfidf
    tfidf_weights: np.ndarray
    tfidf_bias: float
    heads: dict[str, Head]
    net: VectorNet | None = None  # reads the e5 vector; the "e5" head needs it
    card: dict[str, Any] = field(default_factory=dict)

    # ------------------------------------------------------------------ inputs
    def tfidf_logits(self, texts: Sequence[str]) -> np.ndarray:
        return np.asarray(self.tfidf.transform(texts) @ self.tfidf_weights).ravel() + self.tfidf_bias

    def text_columns(self) -> list[str]:
        return [*(f"feature:{n}" for n in FEATURE_NAMES), "tfidf", *(f"lang:{code}" for code in self.languages)]

    def vector_columns(self) -> list[str]:
        return [*self.text_columns(), "embedding"]

    def text_inputs(self, texts: Sequence[str], languages: Sequence[str | None], tfidf_logits: np.ndarray | None = None) -> np.ndarray:
        feats = np.array([feature_vector(t, lang) for t, lang in zip(texts, languages, strict=True)], dtype=np.float32).reshape(len(texts), len(FEATURE_NAMES))
        logits = self.tfidf_logits(texts) if tfidf_logits is None else tfidf_logits
        onehot = np.array([[1.0 if lang == code else 0.0 for code in self.languages] for lang in languages], dtype=np.float32).reshape(len(texts), len(self.languages))
        return np.hstack([feats, logits[:, None].astype(np.float32), onehot])

    @property
    def vector_dim(self) -> int:
        """Dimension of the embedder vectors the "e5" head reads (0 without that head)."""
        return self.net.dim if self.net is not None and "e5" in self.heads else 0

    @property
    def decided_by_base(self) -> str:
        return f"{MODEL_NAME}-{self.version}"

    # ------------------------------------------------------------------ scoring
    def score(
        self,
        texts: Sequence[str],
        languages: Sequence[str | None],
        vectors: Sequence[np.ndarray | None] | None = None,
    ) -> list[CheckworthinessScore]:
        """Scores; `vectors[i]` is the stored e5 query vector of texts[i] or None."""
        n = len(texts)
        if n == 0:
            return []
        langs = [(lang or "").lower() or None for lang in languages]
        text_x = self.text_inputs(texts, langs)
        vectors = list(vectors) if vectors is not None else [None] * n
        out: list[CheckworthinessScore | None] = [None] * n
        with_vec = [i for i, v in enumerate(vectors) if v is not None] if self.vector_dim else []
        taken = set(with_vec)
        without = [i for i in range(n) if i not in taken]
        for head_name, rows in (("e5", with_vec), ("text", without)):
            if not rows:
                continue
            head = self.heads[head_name]
            x = text_x[rows]
            if head_name == "e5":
                assert self.net is not None
                stacked = np.stack([np.asarray(vectors[i], np.float32) for i in rows])
                if stacked.shape[1] != self.vector_dim:
                    raise EmbedderMismatch(f"the check-worthiness model reads {self.vector_dim}-d vectors of {self.embedder_id}, got {stacked.shape[1]}-d")
                x = np.hstack([x, self.net.logits(stacked)[:, None].astype(np.float32)])
            unseen = [k for k, i in enumerate(rows) if langs[i] not in self.languages]
            if unseen:
                x[unseen] = unseen_language_inputs(head, x[unseen])
            probs = sigmoid(head.logits(x))
            tops = head.top_contributions(x)
            values = x.tolist()
            for k, i in enumerate(rows):
                out[i] = self._explain(head_name, head, values[k], tops[k], float(probs[k]), langs[i])
        return [s for s in out if s is not None]

    def _explain(self, head_name: str, head: Head, row: list[float], top: dict[str, float], prob: float,
                 language: str | None) -> CheckworthinessScore:
        features = {name: row[j] for name, j in head.feature_columns}
        markers = [m for m in NOT_CLAIM_MARKERS if features[m] > 0]
        evidence = any(features[e] > 0 for e in CLAIM_EVIDENCE)
        threshold = self.heads[head_name].threshold(language)
        label = "claim" if prob >= threshold else "not_claim"
        # "Clearly not a claim" (the triage gate) needs no claim evidence (number,
        # quantity, year, claim verb) and either a greeting/opinion/joke marker or a
        # confident "no". Languages without training data (vi, km, fr...) score low
        # even for claims, so a "no" counts as confident there only far lower.
        confident_no = prob < (CONFIDENT_NO if language in self.languages else CONFIDENT_NO_UNSEEN_LANGUAGE) * threshold
        clearly = label == "not_claim" and not evidence and (bool(markers) or confident_no)
        return CheckworthinessScore(
            score=prob,
            label=label,
            threshold=threshold,
            head=head_name,
            clearly_not_claim=clearly,
            markers=markers,
            features=features,
            contributions=top,
            decided_by=f"{self.decided_by_base}({head_name}; {FEATURES_VERSION})",
        )

    # ------------------------------------------------------------------ files
    def save(self, folder: str | Path) -> None:
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        arrays: dict[str, np.ndarray] = {
            "tfidf_idf": np.asarray(self.tfidf.idf, np.float16),
            "tfidf_weights": np.asarray(self.tfidf_weights, np.float16),
        }
        meta_heads = {}
        for name, head in self.heads.items():
            arrays[f"{name}_weights"] = head.weights.astype(np.float32)
            arrays[f"{name}_mean"] = head.mean.astype(np.float32)
            arrays[f"{name}_scale"] = head.scale.astype(np.float32)
            meta_heads[name] = {"columns": head.columns, "bias": head.bias, "thresholds": head.thresholds}
        if self.net is not None:
            arrays["net_hidden_weights"] = self.net.hidden_weights.astype(np.float16)
            arrays["net_hidden_bias"] = self.net.hidden_bias.astype(np.float32)
            arrays["net_out_weights"] = self.net.out_weights.astype(np.float32)
        np.savez_compressed(folder / "model.npz", **arrays)  # type: ignore[arg-type]
        meta = {
            "name": MODEL_NAME,
            "version": self.version,
            "embedder_id": self.embedder_id,
            "languages": self.languages,
            "tfidf": {**self.tfidf.config, "bias": self.tfidf_bias},
            "heads": meta_heads,
            "net": {"out_bias": self.net.out_bias, "dim": self.net.dim} if self.net is not None else None,
            "features_version": FEATURES_VERSION,
        }
        (folder / "model.json").write_text(json.dumps(meta, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
        (folder / "card.json").write_text(json.dumps(self.card, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")

    @classmethod
    def load(cls, folder: str | Path | None = None) -> CheckworthinessModel:
        folder = Path(folder) if folder else default_model_dir()
        try:
            meta = json.loads((folder / "model.json").read_text(encoding="utf-8"))
            arrays = np.load(folder / "model.npz")
        except (OSError, ValueError) as exc:
            raise ModelError(f"cannot load the check-worthiness model from {folder}: {exc}") from exc
        if meta.get("features_version") != FEATURES_VERSION:
            raise ModelError(f"{folder}: model built with {meta.get('features_version')}, code has {FEATURES_VERSION}; retrain it")
        card_path = folder / "card.json"
        card = json.loads(card_path.read_text(encoding="utf-8")) if card_path.exists() else {}
        tf = meta["tfidf"]
        char_range = (int(tf["char_range"][0]), int(tf["char_range"][1])) if tf.get("char_range") else None
        tfidf = HashedTfidf(bits=tf["bits"], char_range=char_range, word_bigrams=tf["word_bigrams"], idf=arrays["tfidf_idf"].astype(np.float32))
        heads = {
            name: Head(
                columns=h["columns"],
                weights=arrays[f"{name}_weights"],
                bias=float(h["bias"]),
                mean=arrays[f"{name}_mean"],
                scale=arrays[f"{name}_scale"],
                thresholds={k: float(v) for k, v in h["thresholds"].items()},
            )
            for name, h in meta["heads"].items()
        }
        net = None
        if meta.get("net"):
            net = VectorNet(
                arrays["net_hidden_weights"].astype(np.float32),
                arrays["net_hidden_bias"].astype(np.float32),
                arrays["net_out_weights"].astype(np.float32),
                float(meta["net"]["out_bias"]),
            )
        if "e5" in heads and net is None:
            raise ModelError(f"{folder}: the e5 head needs the vector network (net_* arrays), which is missing")
        return cls(meta["version"], meta["embedder_id"], meta["languages"], tfidf, arrays["tfidf_weights"].astype(np.float32), float(tf["bias"]), heads, net, card)


# --------------------------------------------------------------------------- the stage

_MODELS: dict[str, CheckworthinessModel] = {}


def load_model(path: str = "") -> CheckworthinessModel:
    """The model named by the `checkworthiness_model` setting (empty: shipped), loaded once per process."""
    key = path or "<bundled>"
    if key not in _MODELS:
        _MODELS[key] = CheckworthinessModel.load(path or None)
    return _MODELS[key]


def stored_post_vectors(storage: Any, org: str, embedder_id: str, post_ids: Sequence[str]) -> dict[str, np.ndarray]:
    """The query vectors the matching stage stored for these posts (nothing is embedded here)."""
    ids, matrix = storage.load_vectors(org, "post", embedder_id, ids=post_ids)
    return dict(zip(ids, matrix, strict=True))


def score_posts(model: CheckworthinessModel, posts: Sequence[Post], vectors: dict[str, np.ndarray]) -> list[CheckworthinessScore]:
    return model.score(
        [embedding_text(p) for p in posts],
        [p.language for p in posts],
        [vectors.get(p.id) for p in posts],
    )


def checkworthiness_stage(services: StageContext, org: str, posts: Sequence[Post]) -> StageSummary:
    """Stage: score each post and store the result (collection "checkworthiness")."""
    if not posts:
        return {"scored": 0}
    started = time.perf_counter()
    model = load_model(services.settings.checkworthiness.model)
    embedder_id = services.embedder.id
    vectors = stored_post_vectors(services.storage, org, embedder_id, [p.id for p in posts]) if embedder_family(embedder_id) == embedder_family(model.embedder_id) else {}
    scores = score_posts(model, posts, vectors)
    CheckworthinessScores(services.storage).put(org, [s.record(p.id) for p, s in zip(posts, scores, strict=True)])
    elapsed = time.perf_counter() - started
    return {
        "scored": len(scores),
        "claims": sum(1 for s in scores if s.label == "claim"),
        "with_embedding": sum(1 for s in scores if s.head == "e5"),
        "posts_per_s": round(len(scores) / elapsed, 1) if elapsed > 0 else None,
    }


STAGE = FunctionStage(
    "checkworthiness", "checkworthiness-1", checkworthiness_stage, needs=("embedding",), writes=(COLLECTION,),
    doc="is the post a check-worthy claim: score, label and evidence per post",
)
