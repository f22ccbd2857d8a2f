"""Per-language centering of embeddings.

multilingual-e5 places texts of one language close to each other whatever
they mean: in a pooled index a Khmer post finds Khmer texts before the
French fact-check that says the same thing. Subtracting each language's mean
vector (estimated from a few dozen texts per language, separately for query
and passage encodings) and re-normalising removes that shared direction and
leaves the meaning (DEPENDENCIES.md: rank-1 3/10 -> 40/40 on Khmer).

Languages without an estimate use the mean over all estimated languages.
The means ship in the package with the texts' provenance; `factbridge train
centering` rebuilds them.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from importlib.resources import files
from pathlib import Path
from typing import Any

import numpy as np

from factbridge.backends.embedders.base import Embedder, embedder_family, normalize_rows
from factbridge.errors import EmbedderMismatch, ModelError


def default_centering_path() -> Path:
    return Path(str(files("factbridge") / "data" / "centering-e5.npz"))


@dataclass
class LanguageCentering:
    version: str
    embedder_id: str
    means: dict[str, dict[str, np.ndarray]]  # role -> language -> mean vector
    card: dict[str, object] = field(default_factory=dict)

    def apply(self, vectors: np.ndarray, languages: Sequence[str | None], role: str) -> np.ndarray:
        vectors = np.asarray(vectors, dtype=np.float32)
        if vectors.ndim == 1:
            return np.asarray(self.apply(vectors[None, :], languages, role)[0])
        by_lang = self.means[role]
        fallback = by_lang["*"]
        centred = vectors - np.stack([by_lang.get(lang or "", fallback) for lang in languages]) if len(vectors) else vectors
        return normalize_rows(centred)

    def check_embedder(self, embedder_id: str) -> None:
        if embedder_family(embedder_id) != embedder_family(self.embedder_id):  # one model, any engine
            raise EmbedderMismatch(f"centering {self.version} was estimated on '{self.embedder_id}', not '{embedder_id}'")

    def save(self, path: str | Path) -> None:
        arrays: dict[str, Any] = {f"{role}/{lang}": vec for role, langs in self.means.items() for lang, vec in langs.items()}
        meta = {"version": self.version, "embedder_id": self.embedder_id, "card": self.card}
        np.savez_compressed(path, __meta__=np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8), **arrays)

    @classmethod
    def load(cls, path: str | Path) -> LanguageCentering:
        try:
            data = np.load(path)
            meta = json.loads(bytes(data["__meta__"]).decode())
        except (OSError, KeyError, ValueError) as exc:
            raise ModelError(f"{path}: not a FactBridge centering file: {exc}") from exc
        means: dict[str, dict[str, np.ndarray]] = {}
        for key in data.files:
            if key == "__meta__":
                continue
            role, lang = key.split("/", 1)
            means.setdefault(role, {})[lang] = data[key].astype(np.float32)
        return cls(version=meta["version"], embedder_id=meta["embedder_id"], means=means, card=meta.get("card", {}))


def estimate_centering(embedder: Embedder, texts_by_language: dict[str, list[str]], version: str, sources: list[str]) -> LanguageCentering:
    means: dict[str, dict[str, np.ndarray]] = {"query": {}, "passage": {}}
    for lang, texts in sorted(texts_by_language.items()):
        means["query"][lang] = embedder.encode_queries(texts).mean(axis=0)
        means["passage"][lang] = embedder.encode_documents(texts).mean(axis=0)
    for role in means:
        means[role]["*"] = np.mean([v for k, v in means[role].items()], axis=0)
    card: dict[str, object] = {"texts_per_language": {k: len(v) for k, v in texts_by_language.items()}, "sources": sources}
    return LanguageCentering(version=version, embedder_id=embedder.id, means=means, card=card)


def shipped_centering(embedder_id: str) -> LanguageCentering | None:
    """The per-language means shipped with the package, when they were estimated on this embedder."""
    path = default_centering_path()
    if not path.exists():
        return None
    stat = path.stat()
    centering = _load_shipped(str(path), stat.st_mtime_ns, stat.st_size)
    return centering if embedder_family(centering.embedder_id) == embedder_family(embedder_id) else None


@functools.lru_cache(maxsize=2)
def _load_shipped(path: str, mtime_ns: int, size: int) -> LanguageCentering:
    """The shipped file, decompressed once per process (stages ask for it every batch); a
    changed file (another mtime or size) is read again. Callers only read the means."""
    return LanguageCentering.load(path)
