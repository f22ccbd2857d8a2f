"""A post's image against the fact-checked images: near-duplicates, each decision with its pair and distances.

The rule (`RULE_VERSION`): the distance is the smallest dHash-256 Hamming distance
between the post's image and the library image or one of its inner crops;
at most `DHASH_MATCH` bits is a match, at most `DHASH_POSSIBLE` a possible match
for a reviewer to look at. Both thresholds were chosen on the tune split of
tests/fixtures/images (`factbridge eval images --split tune --json` prints the
sweep): recall is 1.0 with precision >= 0.98 from 28 to 42 bits there, and the
match threshold is the middle of that range (35); "possible" starts where precision
on tune falls below 0.98. The PDQ and pHash
distances of the pair are computed and shown too, never used to decide.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from factbridge.images.hashing import HASH_VERSION, hamming, hex_to_bits

RULE_VERSION = "image-match-1"
DHASH_MATCH = 35
DHASH_POSSIBLE = 44


def decided_by(match_threshold: int = DHASH_MATCH, possible_threshold: int = DHASH_POSSIBLE) -> str:
    from factbridge.images.hashing import library_versions

    return f"{RULE_VERSION} (dHash-256 over library crops: match <= {match_threshold} bits, possible <= {possible_threshold}; {HASH_VERSION}; {library_versions()})"


@dataclass(frozen=True)
class LibraryImage:
    key: str  # whatever the caller needs back: a fact-check id, an eval image id
    sha256: str
    pdq: str
    phash: str
    dhash: str
    crop_dhash: tuple[str, ...]
    source: str = ""


@dataclass
class ImageMatch:
    key: str
    library_sha256: str
    library_source: str
    distance: int  # dHash bits, the one that decides
    pdq_distance: int
    phash_distance: int
    decision: str  # match | possible
    decided_by: str

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass
class ImageIndex:
    """Library images, their whole-image and crop dHashes packed for vectorised distances."""

    images: list[LibraryImage] = field(default_factory=list)
    match_threshold: int = DHASH_MATCH
    possible_threshold: int = DHASH_POSSIBLE

    def __post_init__(self) -> None:
        self._rebuild()

    def _rebuild(self) -> None:
        rows: list[str] = []
        owner: list[int] = []
        for i, img in enumerate(self.images):
            for h in (img.dhash, *img.crop_dhash):
                rows.append(h)
                owner.append(i)
        self._bits = hex_to_bits(rows, 256)
        self._owner = np.asarray(owner, dtype=np.int64)
        self._decided_by = decided_by(self.match_threshold, self.possible_threshold)

    def add(self, images: Sequence[LibraryImage]) -> None:
        self.images.extend(images)
        self._rebuild()

    def __len__(self) -> int:
        return len(self.images)

    def distances(self, dhash: str) -> np.ndarray:
        """Smallest dHash distance to each library image (its crops included)."""
        if not self.images:
            return np.zeros(0, dtype=np.int64)
        q = hex_to_bits([dhash], 256)
        from factbridge.images.hashing import _POPCOUNT

        per_row = _POPCOUNT[self._bits ^ q].sum(axis=1, dtype=np.int64)
        best = np.full(len(self.images), 1 << 30, dtype=np.int64)
        np.minimum.at(best, self._owner, per_row)
        return best

    def match(self, dhash: str, pdq: str, phash: str, limit: int = 5) -> list[ImageMatch]:
        """Library images within the possible threshold, nearest first ("match" ones before "possible")."""
        dist = self.distances(dhash)
        order = np.argsort(dist, kind="stable")
        out: list[ImageMatch] = []
        for i in order[:limit]:
            d = int(dist[i])
            if d > self.possible_threshold:
                break
            lib = self.images[int(i)]
            out.append(ImageMatch(
                key=lib.key, library_sha256=lib.sha256, library_source=lib.source, distance=d,
                pdq_distance=hamming(pdq, lib.pdq), phash_distance=hamming(phash, lib.phash),
                decision="match" if d <= self.match_threshold else "possible", decided_by=self._decided_by,
            ))
        return out


def near_duplicate_groups(dhashes: Sequence[str], threshold: int = DHASH_MATCH, block: int = 1024) -> list[int]:
    """Group images whose dHashes are within `threshold` bits (single linkage); returns each
    image's group, numbered by the group's first image. Blocks of `block` rows keep memory flat."""
    from factbridge.images.hashing import _POPCOUNT

    n = len(dhashes)
    parent = list(range(n))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    bits = hex_to_bits(list(dhashes), 256)
    for start in range(0, n, block):
        part = bits[start : start + block]
        dist = _POPCOUNT[part[:, None, :] ^ bits[None, :, :]].sum(axis=2, dtype=np.int64)
        rows, cols = np.nonzero(dist <= threshold)
        for r, c in zip((rows + start).tolist(), cols.tolist(), strict=True):
            if c > r:
                a, b = find(r), find(c)
                if a != b:
                    parent[max(a, b)] = min(a, b)
    return [find(i) for i in range(n)]
