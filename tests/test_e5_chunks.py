"""The ONNX engine's batches of windows: similar lengths together, the longest batch first (two
threads taking batches in turn then finish together: the last one taken is the shortest)."""

from __future__ import annotations

import random
from types import SimpleNamespace

from factbridge.backends.embedders.e5 import ONNX_BATCH, E5Embedder


def test_batches_group_similar_lengths_longest_first() -> None:
    rng = random.Random(5)
    windows = [(i, [0] * rng.randint(3, 200)) for i in range(77)]
    chunks = E5Embedder._onnx_chunks(SimpleNamespace(batch_size=16), windows)  # type: ignore[arg-type]
    assert sorted(w for c in chunks for w in c) == list(range(77))  # every window once
    assert [len(c) for c in chunks] == [77 % ONNX_BATCH] + [ONNX_BATCH] * (77 // ONNX_BATCH)  # the remainder (the longest windows) first
    lengths = [[len(windows[w][1]) for w in c] for c in chunks]
    for longer, shorter in zip(lengths[:-1], lengths[1:], strict=True):
        assert min(longer) >= max(shorter)  # no batch mixes lengths another batch sits between
    assert max(lengths[0]) == max(len(ids) for _, ids in windows)
