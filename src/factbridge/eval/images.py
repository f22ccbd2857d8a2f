"""`factbridge eval images` and `factbridge bench images` on the shipped set (tests/fixtures/images).

The set (made by tests/fixtures/images/make_images.py) has a tune split and a
report split, by screenshot. In each split the library holds the fact-checked
screenshots; the queries are their altered copies (jpeg, resize, crop,
recolour, caption); the distractors are screenshots that are not in the
library and their copies, which must match nothing.

Matching: each query and distractor gets the library image the rule decides
"match" for, if any. Precision is the share of those decisions that name the
right screenshot; recall the share of queries matched to theirs. The headline
figure is over the copies the target speaks of (re-compression, resize, crop
of at most 10 %, `CORE_TRANSFORMS`) with every distractor; the other
transforms are reported beside it.

OCR: images whose text is exactly the screenshot's (originals, jpeg, resize)
are read; the character error rate (Levenshtein / reference length, whitespace
collapsed, removed for Khmer) is averaged per language.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from factbridge.errors import InputError

CORE_TRANSFORMS = ("jpeg", "resize", "crop")
ALL_TRANSFORMS = ("jpeg", "resize", "crop", "recolour", "caption")
TARGET_PRECISION = 0.98


def default_set() -> Path:
    return Path("tests/fixtures/images")


def load_manifest(root: Path, split: str) -> list[dict[str, Any]]:
    path = root / "manifest.jsonl"
    if not path.is_file():
        raise InputError("no manifest.jsonl (make it with tests/fixtures/images/make_images.py)", source=str(root))
    rows = []
    with open(path, encoding="utf-8") as handle:
        for n, line in enumerate(handle, start=1):
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise InputError(f"invalid JSON: {exc.msg}", source=str(path), line=n) from exc
            if split == "all" or row.get("split") == split:
                rows.append(row)
    if not rows:
        raise InputError(f"no image in split '{split}' (tune, report or all)", source=str(path))
    return rows


def _open(root: Path, row: dict[str, Any]):
    from factbridge.images.store import ImageLimits, decode, read_local

    path = root / row["file"]
    return decode(read_local(path, ImageLimits(), str(path)), ImageLimits(), str(path))


@dataclass
class MatchFigures:
    threshold: int
    precision: float
    recall: float
    matched: int
    wrong: int
    queries: int
    distractors: int
    distractors_matched: int
    recall_by_transform: dict[str, float] = field(default_factory=dict)


@dataclass
class MatchReport:
    split: str
    core: MatchFigures
    everything: MatchFigures
    sweep: list[tuple[int, float, float]]  # (threshold, precision, recall) on the core copies
    best_threshold: int | None  # largest threshold with precision >= target on this split
    hashed: int
    hash_seconds: float


def _figures(decisions: list[tuple[dict[str, Any], str | None, int]], threshold: int, transforms: Sequence[str]) -> MatchFigures:
    matched = wrong = queries = distractors = distractors_matched = 0
    per: dict[str, list[int]] = {t: [0, 0] for t in transforms}
    for row, key, dist in decisions:
        hit = key if dist <= threshold else None
        if row["role"] == "query":
            if row["transform"] not in transforms:
                continue
            queries += 1
            per[row["transform"]][1] += 1
            if hit == row["original"]:
                matched += 1
                per[row["transform"]][0] += 1
            elif hit is not None:
                wrong += 1
        else:
            distractors += 1
            if hit is not None:
                distractors_matched += 1
                wrong += 1
    decided = matched + wrong
    return MatchFigures(
        threshold=threshold, precision=matched / decided if decided else 1.0, recall=matched / queries if queries else 0.0,
        matched=matched, wrong=wrong, queries=queries, distractors=distractors, distractors_matched=distractors_matched,
        recall_by_transform={t: (a / b if b else 0.0) for t, (a, b) in per.items()},
    )


def evaluate_matching(root: Path, split: str, threshold: int | None = None, progress: Callable[[int], None] | None = None) -> MatchReport:
    from factbridge.images.hashing import image_hashes
    from factbridge.images.matching import DHASH_MATCH, ImageIndex, LibraryImage

    rows = load_manifest(root, split)
    start = time.perf_counter()
    hashes = {}
    for row in rows:
        hashes[row["id"]] = image_hashes(_open(root, row), with_crops=row["role"] == "library")
        if progress:
            progress(1)
    seconds = time.perf_counter() - start
    library = [LibraryImage(key=r["original"], sha256=r["id"], pdq=hashes[r["id"]].pdq, phash=hashes[r["id"]].phash,
                            dhash=hashes[r["id"]].dhash, crop_dhash=hashes[r["id"]].crop_dhash) for r in rows if r["role"] == "library"]
    index = ImageIndex(library)
    decisions: list[tuple[dict[str, Any], str | None, int]] = []
    for row in rows:
        if row["role"] == "library":
            continue
        dist = index.distances(hashes[row["id"]].dhash)
        best = int(dist.argmin())
        decisions.append((row, library[best].key, int(dist[best])))
    sweep = []
    for t in range(10, 61, 2):
        f = _figures(decisions, t, CORE_TRANSFORMS)
        sweep.append((t, f.precision, f.recall))
    good = [t for t, p, _ in sweep if p >= TARGET_PRECISION]
    chosen = DHASH_MATCH if threshold is None else threshold
    return MatchReport(
        split=split, core=_figures(decisions, chosen, CORE_TRANSFORMS), everything=_figures(decisions, chosen, ALL_TRANSFORMS),
        sweep=sweep, best_threshold=max(good) if good else None, hashed=len(rows), hash_seconds=seconds,
    )


@dataclass
class OcrReport:
    split: str
    cer: dict[str, float]  # language -> mean CER
    cer_by_transform: dict[str, dict[str, float]]
    images: dict[str, int]
    detected: dict[str, dict[str, int]]  # language -> detected language -> count
    worst: list[tuple[str, float, str]]  # (image id, CER, text read)
    seconds: float
    workers: int


def _ocr_one(args: tuple[str, str]) -> tuple[str, str, str]:
    from factbridge.images.ocr import read_text
    from factbridge.images.store import ImageLimits, decode, read_local

    image_id, path = args
    img = decode(read_local(Path(path), ImageLimits(), path), ImageLimits(), path)
    result = read_text(img)
    return image_id, result.text, result.language


def run_ocr(items: Sequence[tuple[str, str]], workers: int, progress: Callable[[int], None] | None = None) -> list[tuple[str, str, str]]:
    """(id, text, language) for each (id, path), one tesseract process per worker."""
    os.environ.setdefault("OMP_THREAD_LIMIT", "1")
    out: list[tuple[str, str, str]] = []
    if workers <= 1:
        for item in items:
            out.append(_ocr_one(item))
            if progress:
                progress(1)
        return out
    with ProcessPoolExecutor(max_workers=workers) as pool:
        for result in pool.map(_ocr_one, items):
            out.append(result)
            if progress:
                progress(1)
    return out


def evaluate_ocr(root: Path, split: str, workers: int = 2, languages: Sequence[str] = ("vi", "km", "fr", "en"),
                 limit: int | None = None, progress: Callable[[int], None] | None = None,
                 transforms: Sequence[str] = ("original", "jpeg", "resize")) -> OcrReport:
    from factbridge.images.ocr import character_error_rate

    rows = [r for r in load_manifest(root, split) if r.get("text") and r["language"] in languages and r["transform"] in transforms]
    if limit is not None:
        rows = rows[:limit]
    start = time.perf_counter()
    results = run_ocr([(r["id"], str(root / r["file"])) for r in rows], workers, progress)
    seconds = time.perf_counter() - start
    by_id = {i: (text, lang) for i, text, lang in results}
    per_lang: dict[str, list[float]] = {}
    per_transform: dict[str, dict[str, list[float]]] = {}
    detected: dict[str, dict[str, int]] = {}
    scored = []
    for r in rows:
        text, lang = by_id[r["id"]]
        cer = character_error_rate(r["text"], text, r["language"])
        per_lang.setdefault(r["language"], []).append(cer)
        per_transform.setdefault(r["language"], {}).setdefault(r["transform"], []).append(cer)
        counts = detected.setdefault(r["language"], {})
        counts[lang or "none"] = counts.get(lang or "none", 0) + 1
        scored.append((r["id"], cer, text))
    scored.sort(key=lambda x: -x[1])
    return OcrReport(
        split=split, cer={k: sum(v) / len(v) for k, v in per_lang.items()},
        cer_by_transform={k: {t: sum(v) / len(v) for t, v in d.items()} for k, d in per_transform.items()},
        images={k: len(v) for k, v in per_lang.items()}, detected=detected, worst=scored[:5], seconds=seconds, workers=workers,
    )
