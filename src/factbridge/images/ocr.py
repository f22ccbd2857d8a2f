"""Text read from an image, with Debian's Tesseract (tesseract-ocr + the vie, khm, fra, eng packs).

The language pack is chosen from the script: Tesseract's own script detection
(OSD) takes Khmer for Latin, so the detection is the first pass itself, with
the Vietnamese model (the Latin alphabet with Vietnamese marks). Read with
confidence and with letters only Vietnamese writes (ă, đ, ơ, ư, the
tone-marked vowels) it is Vietnamese; read with confidence without them it is
French or English, read again with fra or eng (the language identifier
tells which from the first reading); read without confidence it is
tried as Khmer, kept when the Khmer model reads mostly Khmer letters. Each
result says which passes ran (`decided_by`).

Tesseract runs single-threaded per image (OMP_THREAD_LIMIT=1): on small
screenshots its OpenMP threads cost more than they give, and the bench runs
one image per core instead.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import unicodedata
from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING

from factbridge.errors import DependencyMissing

if TYPE_CHECKING:
    from PIL.Image import Image

OCR_VERSION = "ocr-script-1"
NEEDED_PACKS = ("vie", "khm", "fra", "eng")
# A Vietnamese first pass read with less confidence than this is not Latin text
# (tuned on the tune split of tests/fixtures/images); a Khmer pass is then kept if
# most of its letters are Khmer.
LATIN_MIN_CONFIDENCE = 70.0
KHMER_MIN_SHARE = 0.6
# Share of letters only Vietnamese writes above which a Latin text is read as Vietnamese.
VIETNAMESE_MIN_SHARE = 0.03
# Tesseract reads best with x-heights of 20-30 px; smaller images are scaled up first.
MIN_WIDTH = 700
# words read with less confidence, or with fewer letters, digits and marks than this share, are dropped
MIN_WORD_CONFIDENCE = 45.0
MIN_TEXT_SHARE = 0.5
PSM = "6"  # a single uniform block of text: what a screenshot of a post is
_VI_ONLY = set("ăâđêôơưĂÂĐÊÔƠƯ")
_TONED = {unicodedata.normalize("NFC", base + mark) for base in "aăâeêioôơuưyAĂÂEÊIOÔƠUƯY" for mark in "\u0300\u0301\u0303\u0309\u0323"}
_VI_ONLY |= {c for c in _TONED if len(c) == 1 and c not in set("àáèéìíòóùúýÀÁÈÉÌÍÒÓÙÚÝãõÃÕ")}


@dataclass(frozen=True)
class OcrResult:
    text: str
    language: str  # vi, km, fr, en, or "" when nothing was read
    confidence: float  # mean word confidence of the kept pass, 0-100
    passes: tuple[str, ...]  # tesseract language packs run, in order

    @property
    def decided_by(self) -> str:
        return f"{OCR_VERSION} (tesseract {tesseract_version()}, passes {'>'.join(self.passes)})"


def _pytesseract():
    try:
        import pytesseract
    except ImportError as exc:
        raise DependencyMissing("pytesseract", "images") from exc
    return pytesseract


@lru_cache(maxsize=1)
def tesseract_version() -> str:
    return str(_pytesseract().get_tesseract_version())


def tesseract_problem() -> str | None:
    """Why OCR cannot run here (no tesseract binary, a missing language pack), or None."""
    if shutil.which("tesseract") is None:
        return "the tesseract binary is not installed (Debian: apt-get install tesseract-ocr tesseract-ocr-vie tesseract-ocr-khm tesseract-ocr-fra)"
    try:
        out = subprocess.run(["tesseract", "--list-langs"], capture_output=True, text=True, timeout=30, check=True).stdout
    except (OSError, subprocess.SubprocessError) as exc:
        return f"tesseract --list-langs failed: {exc}"
    have = {line.strip() for line in out.splitlines()[1:]}
    missing = [p for p in NEEDED_PACKS if p not in have]
    if missing:
        return f"tesseract language pack(s) missing: {', '.join(missing)} (Debian: tesseract-ocr-{missing[0]})"
    return None


def _prepare(img: Image) -> Image:
    from PIL import Image as PILImage

    grey = img.convert("L")
    if grey.width < MIN_WIDTH:
        factor = MIN_WIDTH / grey.width
        grey = grey.resize((MIN_WIDTH, max(1, round(grey.height * factor))), PILImage.Resampling.LANCZOS)
    return grey


def _read(img: Image, lang: str, timeout: float) -> tuple[str, float]:
    """Text (lines kept) and mean word confidence of one tesseract pass (every word it read)."""
    pytesseract = _pytesseract()
    os.environ.setdefault("OMP_THREAD_LIMIT", "1")
    data = pytesseract.image_to_data(img, lang=lang, config=f"--psm {PSM}", output_type=pytesseract.Output.DICT, timeout=timeout)
    lines: dict[tuple[int, int, int], list[tuple[str, float]]] = {}
    every = [float(c) for w, c in zip(data["text"], data["conf"], strict=True) if str(w).strip()]
    for word, conf, block, par, line in zip(data["text"], data["conf"], data["block_num"], data["par_num"], data["line_num"], strict=True):
        word = str(word).strip()
        # graphics (bars, icons, rules) are read as dashes and stray letters, with little confidence
        if word and float(conf) >= MIN_WORD_CONFIDENCE and sum(_is_text(c) for c in word) / len(word) >= MIN_TEXT_SHARE:
            lines.setdefault((block, par, line), []).append((word, float(conf)))
    kept = [words for _, words in sorted(lines.items())]
    text = "\n".join(" ".join(w for w, _ in words) for words in kept)
    # the confidence of the whole pass, dropped words included: it tells whether the script fits
    return unicodedata.normalize("NFC", text), (sum(every) / len(every) if every else 0.0)


def _is_text(c: str) -> bool:
    # letters, digits and marks: Khmer vowel signs and subscripts are marks, not letters
    return unicodedata.category(c)[0] in "LMN"


def _share(text: str, test) -> float:
    letters = [c for c in text if _is_text(c)]
    return sum(1 for c in letters if test(c)) / len(letters) if letters else 0.0


def _looks_english(text: str) -> bool:
    from factbridge.text.langid import detect_language

    return detect_language(text, ("fr", "en")).language == "en"


def is_khmer(c: str) -> bool:
    return "\u1780" <= c <= "\u17ff" or "\u19e0" <= c <= "\u19ff"


def read_text(img: Image, timeout: float = 30.0) -> OcrResult:
    """Read the text of an image in the language its script says (see the module docstring)."""
    prepared = _prepare(img)
    vi_text, vi_conf = _read(prepared, "vie", timeout)
    if vi_conf >= LATIN_MIN_CONFIDENCE:
        if _share(vi_text, lambda c: c in _VI_ONLY) >= VIETNAMESE_MIN_SHARE:
            return OcrResult(vi_text, "vi", vi_conf, ("vie",))
        # one pack per pass: fra+eng together reads no better and takes three times as long
        pack = "eng" if _looks_english(vi_text) else "fra"
        latin_text, latin_conf = _read(prepared, pack, timeout)
        return OcrResult(latin_text, {"eng": "en", "fra": "fr"}[pack], latin_conf, ("vie", pack))
    khmer_text, khmer_conf = _read(prepared, "khm", timeout)
    if _share(khmer_text, is_khmer) >= KHMER_MIN_SHARE and khmer_conf >= vi_conf:
        return OcrResult(khmer_text, "km", khmer_conf, ("vie", "khm"))
    if not vi_text.strip():
        return OcrResult("", "", 0.0, ("vie", "khm"))
    return OcrResult(vi_text, "vi", vi_conf, ("vie", "khm"))


def character_error_rate(reference: str, hypothesis: str, language: str) -> float:
    """Levenshtein distance over the reference length, on NFC text with whitespace collapsed
    (removed for Khmer, which does not separate words; Tesseract's spaces there are not errors)."""
    from rapidfuzz.distance import Levenshtein

    def norm(s: str) -> str:
        s = unicodedata.normalize("NFC", s)
        return "".join(s.split()) if language == "km" else " ".join(s.split())

    ref, hyp = norm(reference), norm(hypothesis)
    return Levenshtein.distance(ref, hyp) / max(1, len(ref))
