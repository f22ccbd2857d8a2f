"""The images of posts and fact-checks at ingest: fetched or read, stored, hashed, read (OCR).

`ImageProcessor.process_posts` runs before the normalise stage, so the text read
from an image joins the post's text (prepare.prepare_post) for matching,
check-worthiness and narratives. A post whose image cannot be used (missing
file, over the limits, a decompression bomb, not an image) is quarantined with
the field (`images[i]`) and the reason; nothing of it is stored. A URL is
fetched only when `images_fetch` is on (SSRF-guarded, see `fetch`); when it is
off the URL is kept with a note, and an image-only post with nothing readable
is quarantined.

`images_stage` compares the images of new posts with the fact-checked images
of the organisation and stores each near-duplicate with both images and the
distances (collection `image_matches`).
"""

from __future__ import annotations

import contextlib
import logging
import subprocess
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from factbridge.console import progress_bar
from factbridge.errors import DependencyMissing, InputError
from factbridge.images.records import IMAGE_MATCHES as MATCH_COLLECTION
from factbridge.images.records import ImageMatch, ImageMatches, PostImageMatches
from factbridge.models import FactCheck, ImageRecord, Post, Quarantined

log = logging.getLogger(__name__)
VIDEO_SUFFIXES = {".mp4", ".webm", ".mov", ".mkv", ".m4v", ".avi"}


@dataclass
class ImageProcessor:
    data_dir: Path
    max_bytes: int = 10_000_000
    max_pixels: int = 40_000_000
    fetch_urls: bool = False
    fetch_timeout: float = 10.0
    ocr: bool = True
    max_keyframes: int = 8
    max_video_bytes: int = 200_000_000
    show_progress: bool = False  # a progress bar on stderr (the CLI)
    _bars: contextlib.ExitStack = field(default_factory=contextlib.ExitStack, init=False, repr=False)
    _advance: Callable[[int], None] | None = field(default=None, init=False, repr=False)

    @classmethod
    def from_settings(cls, settings: Any, show_progress: bool = False) -> ImageProcessor:
        return cls(
            data_dir=Path(settings.data_dir), max_bytes=settings.images_max_bytes, max_pixels=settings.images_max_pixels,
            fetch_urls=settings.images_fetch, ocr=settings.images_ocr, show_progress=show_progress,
        )

    @property
    def store(self):
        from factbridge.images.store import ImageLimits, ImageStore

        return ImageStore(self.data_dir / "images", ImageLimits(self.max_bytes, self.max_pixels))

    def _bytes(self, source: str, base: Path, where: str) -> bytes | None:
        from factbridge.images.store import read_local

        if source.startswith(("http://", "https://")):
            if not self.fetch_urls:
                return None
            from factbridge.images.fetch import fetch_image

            return fetch_image(source, self.max_bytes, self.fetch_timeout, where)
        return read_local(self._local(source, base, where), self.store.limits, where)

    @staticmethod
    def _local(source: str, base: Path, where: str) -> Path:
        """A local image path: relative to the file that names it, and inside that file's folder
        (after following links): a posts file, or a post forwarded from elsewhere, never reaches
        the rest of the disk."""
        root = base.resolve()
        path = (root / source).resolve()
        if not path.is_relative_to(root):
            raise InputError(f"image path outside the folder of the file that names it: {source}", source=where)
        return path

    def describe(self, record: ImageRecord, base: Path, where: str) -> list[ImageRecord]:
        """The record filled in (several for a video: one per keyframe). Raises InputError when unusable."""
        from factbridge.images.hashing import HASH_VERSION, image_hashes

        if Path(record.source).suffix.lower() in VIDEO_SUFFIXES and not record.source.startswith(("http://", "https://")):
            return self._keyframes(record, base, where)
        data = self._bytes(record.source, base, where)
        if data is None:
            return [record.model_copy(update={"note": "URL not fetched (images_fetch is off)"})]
        stored, img = self.store.put(data, where)
        hashes = image_hashes(img, with_crops=True)
        update: dict[str, Any] = {
            "sha256": stored.sha256, "format": stored.format, "width": stored.width, "height": stored.height,
            "pdq": hashes.pdq, "pdq_quality": hashes.pdq_quality, "phash": hashes.phash, "dhash": hashes.dhash,
            "crop_dhash": list(hashes.crop_dhash), "decided_by": HASH_VERSION,
        }
        if self.ocr and record.kind == "image":
            from factbridge.images.ocr import read_text

            result = read_text(img)
            update.update(ocr_text=result.text, ocr_language=result.language, ocr_confidence=round(result.confidence, 1),
                          decided_by=f"{HASH_VERSION}; {result.decided_by}")
        return [record.model_copy(update=update)]

    def _keyframes(self, record: ImageRecord, base: Path, where: str) -> list[ImageRecord]:
        from factbridge.images.store import check_file
        from factbridge.images.video import keyframes

        path = self._local(record.source, base, where)
        check_file(path, self.max_video_bytes, where, "video")
        out = []
        for n, frame in enumerate(keyframes(path, self.max_keyframes, where)):
            frame_record = ImageRecord(source=f"{record.source}#keyframe={n}", kind="video_keyframe")
            out.extend(self._describe_bytes(frame_record, frame, where))
        return out

    def _describe_bytes(self, record: ImageRecord, data: bytes, where: str) -> list[ImageRecord]:
        from factbridge.images.hashing import HASH_VERSION, image_hashes

        stored, img = self.store.put(data, where)
        hashes = image_hashes(img, with_crops=True)
        return [record.model_copy(update={
            "sha256": stored.sha256, "format": stored.format, "width": stored.width, "height": stored.height,
            "pdq": hashes.pdq, "pdq_quality": hashes.pdq_quality, "phash": hashes.phash, "dhash": hashes.dhash,
            "crop_dhash": list(hashes.crop_dhash), "decided_by": HASH_VERSION,
        })]

    def process_posts(self, items: Sequence[Post | Quarantined], source: str) -> list[Post | Quarantined]:
        """Posts with their images described; a post with an unusable image becomes a quarantined row."""
        try:
            return [self.process_post(item, source) for item in items]
        finally:
            self.close()

    def process_post(self, item: Post | Quarantined, source: str) -> Post | Quarantined:
        """One post as it is read (ingest streams a file): with `show_progress`, a bar on stderr
        starts at the first image and ends at `close()`."""
        if isinstance(item, Quarantined) or not item.images:
            return item
        if self.show_progress and self._advance is None:
            self._advance = self._bars.enter_context(progress_bar(f"images of {Path(source).name} (store, hash, read)", None))
        out = self._process_post(item, Path(source).parent, source)
        if self._advance is not None:
            self._advance(len(item.images))
        return out

    def close(self) -> None:
        self._bars.close()
        self._advance = None

    def _process_post(self, item: Post | Quarantined, base: Path, source: str) -> Post | Quarantined:
        if isinstance(item, Quarantined) or not item.images:
            return item
        try:
            records: list[ImageRecord] = []
            for n, record in enumerate(item.images):
                records.extend(self.describe(record, base, source + f" (post {item.id}, images[{n}])"))
            if not item.text.strip() and not any(r.sha256 for r in records):
                raise InputError("image-only post with no image that could be read", field="images")
            return item.model_copy(update={"images": records})
        except InputError as exc:
            return Quarantined(kind="post", source=source, field=exc.field or "images", reason=f"post {item.id}: {exc.reason}",
                               raw=item.model_dump_json(include={"id", "text", "images"})[:2000])
        except DependencyMissing as exc:
            return Quarantined(kind="post", source=source, field="images", reason=f"post {item.id}: {exc}", raw=item.id)

    def process_factchecks(self, fcs: Sequence[FactCheck], source: str) -> list[FactCheck | Quarantined]:
        """Fact-checks with their images (ClaimReview `image`, `itemReviewed.appearance.image`, an
        `image`/`images` column) described with the crop hashes matching needs."""
        base = Path(source).parent
        out: list[FactCheck | Quarantined] = []
        for fc in fcs:
            sources = factcheck_image_sources(fc)
            if not sources:
                out.append(fc)
                continue
            try:
                records: list[ImageRecord] = []
                for n, src in enumerate(sources):
                    records.extend(self.describe(ImageRecord(source=src), base, source + f" (fact-check {fc.id}, image {n})"))
                out.append(fc.model_copy(update={"images": records}))
            except (InputError, DependencyMissing) as exc:
                reason = exc.reason if isinstance(exc, InputError) else str(exc)
                out.append(Quarantined(kind="factcheck", source=source, field="image", reason=f"fact-check {fc.id}: {reason}", raw=fc.id))
        return out


def _image_values(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value] if value.strip() else []
    if isinstance(value, dict):
        for key in ("contentUrl", "url", "@id"):
            if isinstance(value.get(key), str) and value[key].strip():
                return [value[key]]
        return []
    if isinstance(value, list):
        return [v for x in value for v in _image_values(x)]
    return []


def factcheck_image_sources(fc: FactCheck) -> list[str]:
    raw = fc.raw
    found = _image_values(raw.get("image")) + _image_values(raw.get("images"))
    item = raw.get("itemReviewed")
    if isinstance(item, dict):
        found += _image_values(item.get("image"))
        for key in ("appearance", "firstAppearance"):
            appearances = item.get(key)
            for appearance in appearances if isinstance(appearances, list) else [appearances]:
                if isinstance(appearance, dict):
                    found += _image_values(appearance.get("image"))
                    if str(appearance.get("@type", "")).lower() in {"imageobject", "videoobject"}:
                        found += _image_values(appearance.get("contentUrl"))
    return list(dict.fromkeys(found))


def load_library_index(storage: Any, org: str):
    """The organisation's fact-checked images, ready to match."""
    from factbridge.images.matching import ImageIndex, LibraryImage

    images = [
        LibraryImage(key=fc.id, sha256=img.sha256, pdq=img.pdq, phash=img.phash, dhash=img.dhash, crop_dhash=tuple(img.crop_dhash), source=img.source)
        for fc in storage.iter_factchecks(org) for img in fc.images if img.dhash
    ]
    return ImageIndex(images)


def match_post_images(index: Any, post: Post) -> list[ImageMatch]:
    """Each near-duplicate of one of the post's images: both images (source, sha256), the distances, the rule."""
    out = []
    for n, img in enumerate(post.images):
        if not img.dhash:
            continue
        for m in index.match(img.dhash, img.pdq, img.phash):
            out.append(ImageMatch(post_image=n, post_image_source=img.source, post_image_sha256=img.sha256, factcheck_id=m.key,
                                  factcheck_image_source=m.library_source, factcheck_image_sha256=m.library_sha256,
                                  distance=m.distance, pdq_distance=m.pdq_distance, phash_distance=m.phash_distance,
                                  decision=m.decision, decided_by=m.decided_by))
    return out


def images_stage(services: Any, org: str, posts: Sequence[Post]) -> dict[str, Any]:
    """Stage: the images of new posts against the fact-checked images (stored in `image_matches`)."""
    with_images = [p for p in posts if any(i.dhash for i in p.images)]
    if not with_images:
        return {"posts_with_images": 0}
    index = load_library_index(services.storage, org)
    entries = []
    matched = 0
    for post in with_images:
        found = match_post_images(index, post) if len(index) else []
        matched += any(m.decision == "match" for m in found)
        entries.append(PostImageMatches(post_id=post.id, matches=found))
    ImageMatches(services.storage).put(org, entries)
    return {"posts_with_images": len(with_images), "library_images": len(index), "matched_posts": matched}


def _stage() -> Any:
    from factbridge.images.matching import RULE_VERSION
    from factbridge.pipeline.stages import FunctionStage

    return FunctionStage(
        "images", f"images-stage-1 ({RULE_VERSION})", images_stage, writes=(MATCH_COLLECTION,),
        doc="the images of posts against the fact-checked images (pair, distances, rule)",
    )


STAGE = _stage()


def ffmpeg_available() -> bool:
    try:
        subprocess.run(["ffmpeg", "-version"], capture_output=True, timeout=10, check=True)
    except (OSError, subprocess.SubprocessError):
        return False
    return True
