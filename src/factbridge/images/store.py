"""Image bytes kept content-addressed (sha256) under the data folder, with limits.

An image is only ever decoded, never executed or rendered by a browser from its
own bytes: the format is sniffed from the first bytes (PNG, JPEG, GIF, WebP;
nothing else, SVG included, is accepted), the byte size is limited before
anything is read, and the pixel count is checked from the header before the
pixels are decoded — a decompression bomb (a small file that expands to
gigapixels) is refused with a clear error, and Pillow's own MAX_IMAGE_PIXELS
guard is raised to an error too. Stored files are named by their sha256, so
storing the same image twice is a no-op and a path never comes from input.
"""

from __future__ import annotations

import hashlib
import io
import os
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from factbridge.errors import DependencyMissing, InputError

if TYPE_CHECKING:
    from PIL.Image import Image

MAGIC: tuple[tuple[bytes, int, str], ...] = (
    (b"\x89PNG\r\n\x1a\n", 0, "png"),
    (b"\xff\xd8\xff", 0, "jpeg"),
    (b"GIF87a", 0, "gif"),
    (b"GIF89a", 0, "gif"),
    (b"WEBP", 8, "webp"),
)
PIL_FORMATS = {"png": "PNG", "jpeg": "JPEG", "gif": "GIF", "webp": "WEBP"}


@dataclass(frozen=True)
class ImageLimits:
    max_bytes: int = 10_000_000
    max_pixels: int = 40_000_000


@dataclass(frozen=True)
class StoredImage:
    sha256: str
    format: str
    width: int
    height: int
    size: int
    path: Path


def sniff_format(data: bytes) -> str | None:
    for magic, offset, name in MAGIC:
        if data[offset:offset + len(magic)] == magic and (name != "webp" or data[:4] == b"RIFF"):
            return name
    return None


def decode(data: bytes, limits: ImageLimits, source: str = "") -> Image:
    """Decode image bytes within the limits, or raise InputError saying why not."""
    try:
        from PIL import Image as PILImage
    except ImportError as exc:
        raise DependencyMissing("pillow", "images") from exc
    if len(data) > limits.max_bytes:
        raise InputError(f"image of {len(data)} bytes is over the limit of {limits.max_bytes}", source=source)
    fmt = sniff_format(data)
    if fmt is None:
        raise InputError("not a PNG, JPEG, GIF or WebP image", source=source)
    with warnings.catch_warnings():
        warnings.simplefilter("error", PILImage.DecompressionBombWarning)
        PILImage.MAX_IMAGE_PIXELS = limits.max_pixels
        try:
            img = PILImage.open(io.BytesIO(data), formats=[PIL_FORMATS[fmt]])
            width, height = img.size
            if width * height > limits.max_pixels:  # checked from the header, before decoding
                raise InputError(f"image of {width}x{height} pixels is over the limit of {limits.max_pixels} (decompression bomb?)", source=source)
            img.load()
        except (PILImage.DecompressionBombError, PILImage.DecompressionBombWarning) as exc:
            raise InputError(f"image refused as a decompression bomb: {exc}", source=source) from exc
        except (OSError, SyntaxError, ValueError) as exc:
            raise InputError(f"unreadable {fmt} image: {exc}", source=source) from exc
    return img


class ImageStore:
    """Files at data_dir/images/ab/abcdef....ext, named by the sha256 of their bytes."""

    def __init__(self, root: str | Path, limits: ImageLimits | None = None) -> None:
        self.root = Path(root)
        self.limits = limits or ImageLimits()

    def path_for(self, sha256: str, fmt: str) -> Path:
        return self.root / sha256[:2] / f"{sha256}.{'jpg' if fmt == 'jpeg' else fmt}"

    def put(self, data: bytes, source: str = "") -> tuple[StoredImage, Image]:
        img = decode(data, self.limits, source)
        fmt = sniff_format(data) or ""
        sha = hashlib.sha256(data).hexdigest()
        path = self.path_for(sha, fmt)
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
            try:
                with os.fdopen(fd, "wb") as handle:
                    handle.write(data)
                os.replace(tmp, path)  # atomic: a reader never sees half a file
            except BaseException:
                Path(tmp).unlink(missing_ok=True)
                raise
        return StoredImage(sha, fmt, img.width, img.height, len(data), path), img

    def get(self, sha256: str) -> Path | None:
        if len(sha256) != 64 or any(c not in "0123456789abcdef" for c in sha256):
            return None
        for fmt in ("png", "jpg", "gif", "webp"):
            path = self.root / sha256[:2] / f"{sha256}.{fmt}"
            if path.exists():
                return path
        return None


def check_file(path: Path, max_bytes: int, source: str, what: str = "image") -> None:
    """A local file that exists and is within the size limit, checked before anything reads it."""
    try:
        size = path.stat().st_size
    except OSError as exc:
        raise InputError(f"{what} file not found: {path}", source=source) from exc
    if not path.is_file():
        raise InputError(f"not a file: {path}", source=source)
    if size > max_bytes:
        raise InputError(f"{what} file of {size} bytes is over the limit of {max_bytes}", source=source)


def read_local(path: Path, limits: ImageLimits, source: str) -> bytes:
    """Bytes of a local image file, refusing anything over the size limit before reading it."""
    check_file(path, limits.max_bytes, source)
    return path.read_bytes()
