"""Language identification tuned for short social posts.

py3langid alone confuses Vietnamese written without tone marks with Malay or
Indonesian, and restricting it to our four languages makes every Spanish post
"French". So we decide in layers, each recorded in `method`:

1. script: Khmer letters mean Khmer; a non-Latin script goes to the full model;
2. Vietnamese letters (ơ ư ă đ and the tone-marked vowels) mean Vietnamese;
3. unaccented Vietnamese: most words are common Vietnamese syllables;
4. otherwise the full py3langid model; when it is unsure, the model restricted to
   the preferred languages decides.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from functools import lru_cache

from factbridge.text.normalize import fold_diacritics

LANGID_VERSION = "layered-1"

_VI_LETTERS = set("ăâđêôơưĂÂĐÊÔƠƯ")
_VI_TONED = set(
    "ạảấầẩẫậắằẳẵặẹẻẽếềểễệỉịọỏốồổỗộớờởỡợụủứừửữựỳỵỷỹ"
    "ẠẢẤẦẨẪẬẮẰẲẴẶẸẺẼẾỀỂỄỆỈỊỌỎỐỒỔỖỘỚỜỞỠỢỤỦỨỪỬỮỰỲỴỶỸ"
)
# Frequent Vietnamese syllables once tone marks are stripped. Chosen so that few
# are also common English or French words ("co", "la", "the" are left out).
_VI_SYLLABLES = frozenset(
    """
    khong nguoi duoc nhung trong cua nay mot cac voi cho nhu khi cung chi tai
    nhieu hon viec phai sau truoc dang roi moi nuoc chinh phu ngay nam thang
    tien bao tin thong benh vien tre em dan toan quoc gia dinh biet noi ban minh
    chung toi chua het lam gi vay thi ma nen neu thuc su that gia mat nhat dieu
    tieu chuan sang chieu toi hom qua nua duong pho xa huyen tinh thanh nguoi
    dung sai tu ve ra vao len xuong day den tren duoi giua hay rat qua lai
    anh chi ong ba chu bac mien nam trung uong cong canh sat hoc sinh
    giao vien bac si thuoc vac xin tiem phong dich covid cach ly tu vong
    nhan dan viet canh bao lua dao chuyen khoan ngan hang tai khoan mat khau
    chia se lan truyen mang xa hoi facebook zalo thong tin sai su that
    duoc biet theo cho biet cho thay dang ky nhan tien ho tro mien phi
    """.split()
)
_WORD = re.compile(r"[^\W\d_]+", re.UNICODE)


@dataclass(frozen=True)
class LanguageGuess:
    language: str
    confidence: float
    method: str


def _script_counts(text: str) -> tuple[int, int, int]:
    khmer = latin = other = 0
    for ch in text:
        if not ch.isalpha():
            continue
        if "\u1780" <= ch <= "\u17ff" or "\u19e0" <= ch <= "\u19ff":
            khmer += 1
        elif "LATIN" in unicodedata.name(ch, ""):
            latin += 1
        else:
            other += 1
    return khmer, latin, other


@lru_cache(maxsize=4)
def _identifier(languages: tuple[str, ...] | None):  # type: ignore[no-untyped-def]
    from py3langid.langid import MODEL_DIR, MODEL_FILE, LanguageIdentifier

    ident = LanguageIdentifier.from_modelpath(MODEL_DIR / MODEL_FILE, norm_probs=True)
    if languages:
        ident.set_languages(list(languages))
    return ident


def detect_language(text: str, preferred: tuple[str, ...] = ("vi", "km", "fr", "en")) -> LanguageGuess:
    khmer, latin, other = _script_counts(text)
    letters = khmer + latin + other
    if letters == 0:
        return LanguageGuess("und", 0.0, "no-letters")
    if khmer / letters >= 0.3:
        return LanguageGuess("km", round(khmer / letters, 3), "script")
    if latin / letters >= 0.5:
        vi_marks = sum(1 for ch in text if ch in _VI_LETTERS or ch in _VI_TONED)
        if vi_marks >= 2 or (vi_marks and vi_marks / max(latin, 1) > 0.05):
            return LanguageGuess("vi", 0.99, "vietnamese-letters")
        words = [w.lower() for w in _WORD.findall(fold_diacritics(text))]
        if words:
            share = sum(w in _VI_SYLLABLES for w in words) / len(words)
            if share >= 0.4 and len(words) >= 3:
                return LanguageGuess("vi", round(min(0.95, 0.5 + share / 2), 3), "vietnamese-syllables")
    full_lang, full_p = _identifier(None).classify(text)
    if full_p >= 0.7 or not preferred or full_lang in preferred:
        return LanguageGuess(str(full_lang), round(float(full_p), 3), "py3langid")
    lang, p = _identifier(tuple(sorted(preferred))).classify(text)
    return LanguageGuess(str(lang), round(float(p) * 0.9, 3), "py3langid-restricted")
