"""Perceptual hashes: PDQ (256 bits, Meta's `pdqhash`), a 64-bit DCT pHash and a 256-bit dHash (`imagehash`).

PDQ is the hash platforms and partners exchange for near-duplicate images; it
reports a quality (0-100: a flat image has a low one and its hash says little).
The pHash is the cheap classic. Both are kept and shown with every decision.

The decision itself is taken on the 256-bit difference hash (gradients of a
17x16 reduction), because screenshots are what circulates here, and measured
on the tune split of tests/fixtures/images, screenshots that share a layout but
not a text are as close in pHash (2-4 bits of 64) as a re-compressed copy, and
PDQ puts a 10 % crop (up to 78 bits) beyond unrelated screenshots (34 bits);
the dHash keeps them apart (copies <= 34 bits, other screenshots >= 36) — see
docs/images.md for the figures.

Crops move content relative to the frame, which every global hash feels. So the
stored side (fact-checked images, and earlier posts' images in narratives) also
keeps the hashes of inner crops (5 % off any combination of sides, and 2.5 % off
all four); a cropped copy meets one of them. The image compared is hashed whole.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from importlib.metadata import PackageNotFoundError, version
from typing import TYPE_CHECKING

import numpy as np

from factbridge.errors import DependencyMissing

if TYPE_CHECKING:
    from PIL.Image import Image

HASH_VERSION = "pdq+phash64+dhash256-1"
# inner crops hashed on the library side: (left, top, right, bottom) fractions removed
CROPS: tuple[tuple[float, float, float, float], ...] = (
    *((left, t, r, b) for left in (0.0, 0.05) for t in (0.0, 0.05) for r in (0.0, 0.05) for b in (0.0, 0.05) if (left, t, r, b) != (0.0, 0.0, 0.0, 0.0)),
    (0.025, 0.025, 0.025, 0.025),
)
# Hash input is shrunk to this many pixels on its long side first: PDQ and pHash both work
# on a 64x64 (resp. 32x32) reduction, so a larger input only costs time.
HASH_SIDE = 512
CROP_SIDE = 128


def _require() -> tuple[object, object]:
    try:
        import imagehash
        import pdqhash
    except ImportError as exc:
        raise DependencyMissing("pdqhash and imagehash", "images") from exc
    return pdqhash, imagehash


def library_versions() -> str:
    out = []
    for name in ("pdqhash", "imagehash", "pillow"):
        try:
            out.append(f"{name} {version(name)}")
        except PackageNotFoundError:
            out.append(f"{name} missing")
    return ", ".join(out)


@dataclass(frozen=True)
class ImageHashes:
    pdq: str  # 64 hex digits
    pdq_quality: int
    phash: str  # 16 hex digits
    dhash: str  # 64 hex digits
    crop_dhash: tuple[str, ...] = field(default=())  # dHashes of the inner crops (with_crops=True)

    def as_dict(self) -> dict[str, object]:
        return {"pdq": self.pdq, "pdq_quality": self.pdq_quality, "phash": self.phash, "dhash": self.dhash, "crop_dhash": list(self.crop_dhash)}


def _bits_to_hex(bits: np.ndarray) -> str:
    return np.packbits(np.asarray(bits, dtype=np.uint8)).tobytes().hex()


def _prepare(img: Image) -> Image:
    from PIL import Image as PILImage

    img = img.convert("RGB")
    if max(img.size) > HASH_SIDE:
        img = img.copy()
        img.thumbnail((HASH_SIDE, HASH_SIDE), PILImage.Resampling.BILINEAR)
    return img


def pdq_hash(img: Image) -> tuple[str, int]:
    pdqhash, _ = _require()
    bits, quality = pdqhash.compute(np.asarray(_prepare(img)))  # type: ignore[attr-defined]
    return _bits_to_hex(bits), int(quality)


def phash(img: Image) -> str:
    _, imagehash = _require()
    return str(imagehash.phash(_prepare(img)))  # type: ignore[attr-defined]


def dhash(img: Image) -> str:
    _, imagehash = _require()
    return str(imagehash.dhash(_prepare(img), hash_size=16))  # type: ignore[attr-defined]


def crop(img: Image, box: tuple[float, float, float, float]) -> Image:
    w, h = img.size
    left, top, right, bottom = box
    return img.crop((round(w * left), round(h * top), round(w * (1 - right)), round(h * (1 - bottom))))


def image_hashes(img: Image, with_crops: bool = False) -> ImageHashes:
    from PIL import Image as PILImage

    small = _prepare(img)
    pdq, quality = pdq_hash(small)
    crops: tuple[str, ...] = ()
    if with_crops:
        # the crops' dHashes (17x16 each) come from a 128 px copy: the same hashes for the
        # matching (figures in docs/images.md), at a fraction of the resampling cost
        thumb = small.convert("L")
        thumb.thumbnail((CROP_SIDE, CROP_SIDE), PILImage.Resampling.BILINEAR)
        crops = tuple(dhash(crop(thumb, box)) for box in CROPS)
    return ImageHashes(pdq=pdq, pdq_quality=quality, phash=phash(small), dhash=dhash(small), crop_dhash=crops)


def hex_to_bits(hashes: list[str], nbits: int) -> np.ndarray:
    """(n, nbits/8) uint8 rows, for vectorised Hamming distances."""
    if not hashes:
        return np.zeros((0, nbits // 8), dtype=np.uint8)
    return np.frombuffer(b"".join(bytes.fromhex(h) for h in hashes), dtype=np.uint8).reshape(len(hashes), nbits // 8)


_POPCOUNT = np.array([bin(i).count("1") for i in range(256)], dtype=np.uint16)


def hamming_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Hamming distances between every row of `a` and every row of `b` (packed uint8 bits)."""
    if a.shape[0] == 0 or b.shape[0] == 0:
        return np.zeros((a.shape[0], b.shape[0]), dtype=np.int64)
    return _POPCOUNT[a[:, None, :] ^ b[None, :, :]].sum(axis=2, dtype=np.int64)


def hamming(a: str, b: str) -> int:
    return int.bit_count(int(a, 16) ^ int(b, 16))
