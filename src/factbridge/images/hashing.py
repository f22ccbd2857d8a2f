"""Perceptual hashes: PDQ (256 bits, Meta's `pdqhash`) and a 64-bit DCT pHash (`imagehash`).

PDQ is the hash platforms exchange for near-duplicate images; it survives
re-compression, resizing and recolouring, and reports a quality (0-100: a blank
or flat image has a low one and its hash says little). The pHash is cheap and
independent of PDQ: a match must be close in both (see `matching`), which keeps
screenshots that share a layout but not a text apart.

Crops move content relative to the frame, which both hashes feel. So besides
the whole image, `crop_hashes` gives the PDQ hashes of a few inner crops; the
library side stores those, and a cropped copy meets one of them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from importlib.metadata import PackageNotFoundError, version
from typing import TYPE_CHECKING

import numpy as np

from factbridge.errors import DependencyMissing

if TYPE_CHECKING:
    from PIL.Image import Image

HASH_VERSION = "pdq+phash-1"
# inner crops hashed on the library side: (left, top, right, bottom) fractions removed
CROPS: tuple[tuple[float, float, float, float], ...] = (
    (0.05, 0.05, 0.0, 0.0),
    (0.0, 0.0, 0.05, 0.05),
    (0.05, 0.0, 0.0, 0.05),
    (0.0, 0.05, 0.05, 0.0),
    (0.025, 0.025, 0.025, 0.025),
)
# Hash input is shrunk to this many pixels on its long side first: PDQ and pHash both work
# on a 64x64 (resp. 32x32) reduction, so a larger input only costs time.
HASH_SIDE = 512


def _require() -> tuple[object, object]:
    try:
        import imagehash
        import pdqhash
    except ImportError as exc:
        raise DependencyMissing("image hashing needs the images extra: pip install 'factbridge[images]'") from exc
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
    crops: tuple[str, ...] = field(default=())  # PDQ hashes of the inner crops (library side only)


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


def crop(img: Image, box: tuple[float, float, float, float]) -> Image:
    w, h = img.size
    left, top, right, bottom = box
    return img.crop((round(w * left), round(h * top), round(w * (1 - right)), round(h * (1 - bottom))))


def image_hashes(img: Image, with_crops: bool = False) -> ImageHashes:
    small = _prepare(img)
    pdq, quality = pdq_hash(small)
    crops = tuple(pdq_hash(crop(small, box))[0] for box in CROPS) if with_crops else ()
    return ImageHashes(pdq=pdq, pdq_quality=quality, phash=phash(small), crops=crops)


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
