"""Synthetic posts with vectors for the narrative throughput bench (no embedding needed).

Stories are random sentences in English, Vietnamese and Khmer words; each post
is a story's sentence copied, edited (a few words swapped) or rewritten
(mostly other words), with a vector near its story's direction. This exercises
every path of assignment: near-duplicates, semantic joins and new narratives.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np

from factbridge.models import Post
from factbridge.pipeline.prepare import prepare_post

_WORDS = (
    "vaccine government minister police video shows claim false water flood election votes border army "
    "hospital virus cure bank money price rice oil school children fire bridge storm khong phai that su "
    "bo y te canh bao tin gia nguoi dan thanh pho lu lut gia xang gao ក្រសួង សុខាភិបាល វ៉ាក់សាំង ព័ត៌មាន "
    "ក្លែងក្លាយ ទឹកជំនន់ ប្រជាជន រដ្ឋាភិបាល"
).split()


def synthetic_posts(n: int, stories: int | None = None, dim: int = 384, seed: int = 11, spacing: float = 30.0) -> tuple[list[Post], np.ndarray]:
    """`n` posts of `stories` stories (popularity by Zipf), `spacing` seconds apart on average
    (each up to 20 spacings late), with vectors around each story's direction."""
    rng = np.random.default_rng(seed)
    stories = stories or max(10, n // 40)
    base_text = [" ".join(rng.choice(_WORDS, size=int(rng.integers(12, 25)))) for _ in range(stories)]
    centers = rng.normal(size=(stories, dim)).astype(np.float32)
    centers /= np.linalg.norm(centers, axis=1, keepdims=True)
    popularity = rng.zipf(1.6, size=n) % stories
    start = datetime(2026, 1, 1, tzinfo=UTC)
    posts: list[Post] = []
    vectors = np.zeros((n, dim), dtype=np.float32)
    for i in range(n):
        s = int(popularity[i])
        words = base_text[s].split()
        mode = rng.random()
        if mode < 0.4:
            text = " ".join(words)
        elif mode < 0.8:
            for _ in range(2):
                words[int(rng.integers(len(words)))] = str(rng.choice(_WORDS))
            text = " ".join(words)
        else:
            text = " ".join(rng.choice(_WORDS, size=len(words)))
        noise = rng.normal(size=dim).astype(np.float32)
        vec = centers[s] + 0.35 * noise / np.linalg.norm(noise)
        vectors[i] = vec / np.linalg.norm(vec)
        created = start + timedelta(seconds=float(i) * spacing + float(rng.integers(0, 600)) * spacing / 30.0)
        posts.append(prepare_post(Post(id=f"syn-{i}", author=f"acct-{int(rng.integers(n // 5 + 1))}", created_at=created, text=text, language="en")))
    return posts, vectors
