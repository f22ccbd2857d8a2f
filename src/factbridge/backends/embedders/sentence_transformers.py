"""Any sentence-transformers model from a local path (never downloaded)."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from factbridge.backends.embedders.base import Progress, normalize_rows
from factbridge.errors import ConfigError, DependencyMissing


class SentenceTransformersEmbedder:
    def __init__(self, model_path: str = "", batch_size: int = 16, query_prefix: str = "", document_prefix: str = "", **_: object) -> None:
        if not model_path or not Path(model_path).is_dir():
            raise ConfigError(f"embedder_path: '{model_path}' is not a local model folder")
        try:
            from sentence_transformers import SentenceTransformer
        except ImportError as exc:
            raise DependencyMissing("sentence-transformers", "sentence-transformers") from exc
        self._model = SentenceTransformer(model_path, device="cpu", local_files_only=True)
        self.dim = int(self._model.get_sentence_embedding_dimension() or 0)
        config = Path(model_path) / "config.json"
        digest = hashlib.sha256(config.read_bytes()).hexdigest()[:12] if config.exists() else "noconfig"
        self.id = f"st:{Path(model_path).name}@{digest}"
        self.batch_size = batch_size
        self.query_prefix = query_prefix
        self.document_prefix = document_prefix

    def _encode(self, texts: Sequence[str], prefix: str, progress: Progress | None) -> np.ndarray:
        vecs = self._model.encode([prefix + t for t in texts], batch_size=self.batch_size, convert_to_numpy=True)
        if progress:
            progress(len(texts))
        return normalize_rows(vecs)

    def encode_queries(self, texts: Sequence[str], progress: Progress | None = None) -> np.ndarray:
        return self._encode(texts, self.query_prefix, progress)

    def encode_documents(self, texts: Sequence[str], progress: Progress | None = None) -> np.ndarray:
        return self._encode(texts, self.document_prefix, progress)
