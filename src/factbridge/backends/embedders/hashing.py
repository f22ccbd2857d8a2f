"""A deterministic, model-free embedder for tests and for trying the pipeline fast.

Signed feature hashing of script-aware tokens and their bigrams. It has no
cross-lingual ability: never the default.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import numpy as np

from factbridge.backends.embedders.base import Progress, normalize_rows
from factbridge.text.tokenize import tokenize


class HashingEmbedder:
    def __init__(self, dim: int = 256, **_: object) -> None:
        self.dim = dim
        self.id = f"hashing-v1-{dim}"

    def _vector(self, text: str) -> np.ndarray:
        vec = np.zeros(self.dim, dtype=np.float32)
        tokens = tokenize(text)
        features = tokens + [a + " " + b for a, b in zip(tokens, tokens[1:], strict=False)]
        for feat in features:
            digest = hashlib.blake2b(feat.encode("utf-8"), digest_size=8).digest()
            h = int.from_bytes(digest, "little")
            vec[h % self.dim] += 1.0 if (h >> 63) & 1 else -1.0
        return vec

    def _encode(self, texts: Sequence[str], progress: Progress | None) -> np.ndarray:
        out = np.stack([self._vector(t) for t in texts]) if texts else np.zeros((0, self.dim), np.float32)
        if progress:
            progress(len(texts))
        return normalize_rows(out)

    def encode_queries(self, texts: Sequence[str], progress: Progress | None = None) -> np.ndarray:
        return self._encode(texts, progress)

    def encode_documents(self, texts: Sequence[str], progress: Progress | None = None) -> np.ndarray:
        return self._encode(texts, progress)
