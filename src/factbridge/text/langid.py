"""Language identification tuned for short social posts.

py3langid alone confuses Vietnamese written without tone marks with Malay or
Indonesian, and restricting it to our four languages makes every Spanish post
"French". So we decide in layers, each recorded in `method`:

1. script: Khmer letters mean Khmer; a non-Latin script goes to the full model;
2. Vietnamese letters (ơ ư ă đ and the tone-marked vowels) mean Vietnamese, when
   enough of the words carry them: "I'm so tired, về nhà ngủ thôi" is English with
   a Vietnamese tail. â ê ô alone prove nothing: French writes them too (côte, fête);
3. unaccented Vietnamese and teencode: most words are common Vietnamese syllables
   or chat abbreviations ("ko bit j het");
4. otherwise the full py3langid model; when it is unsure between languages that
   include a preferred one, the model restricted to the preferred languages
   decides. When the full model gives the preferred languages next to nothing
   (Spanish, Bulgarian, Indonesian...), its own answer stands: restricting it
   would call Bulgarian "Khmer".
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from functools import lru_cache

from factbridge.text.normalize import fold_diacritics

LANGID_VERSION = "layered-2"

# Letters only Vietnamese writes among the Latin-script languages we meet;
# â ê ô (shared with French) and à á è é ... (shared with many) are left out.
_VI_LETTERS = set("ăđơưĂĐƠƯ")
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
    xe cai hoi mua quan dau dien tong vua cau yeu ket tiep thit nong tich
    doan luat trieu truc giam hien nha vuot vung ubnd tp hcm
    """.split()
)
# Chat abbreviations ("teencode"): ko = không, j = gì, dc = được, wa = quá ...
# Left out: those that are also frequent English or French words ("bit", "t", "a").
_VI_TEENCODE = frozenset(
    """
    ko k hok hem khum kh j dc hc lm ns wa thui nhiu lun iu ck vk hnay mn mik mk
    bn cx ak z ng trc ntn ib
    """.split()
)
# Share of words that must carry a Vietnamese diacritic before the letters alone
# decide; toned Vietnamese marks most syllables, a quoted phrase marks few.
_VI_MARKED_WORDS = 0.35
# The full model's best preferred language must reach this fraction of its top
# answer for the restricted model to be consulted.
_PREFERRED_PLAUSIBLE = 0.1
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
def _identifier(languages: tuple[str, ...] | None):
    from py3langid.langid import MODEL_DIR, MODEL_FILE, LanguageIdentifier

    ident = LanguageIdentifier.from_modelpath(MODEL_DIR / MODEL_FILE, norm_probs=True)
    if languages:
        ident.set_languages(list(languages))
    return ident


def load_models(preferred: tuple[str, ...] = ("vi", "km", "fr", "en")) -> None:
    """Load both identifiers now (a few seconds), so that no answer waits for them later."""
    _identifier(None)
    _identifier(tuple(sorted(preferred)))


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
            raw_words = _WORD.findall(text)
            marked = sum(1 for w in raw_words if not w.isascii())
            if marked / len(raw_words) >= _VI_MARKED_WORDS:
                return LanguageGuess("vi", 0.99, "vietnamese-letters")
        words = [w.lower() for w in _WORD.findall(fold_diacritics(text))]
        if words:
            share = sum(w in _VI_SYLLABLES or w in _VI_TEENCODE for w in words) / len(words)
            if share >= 0.4 and len(words) >= 3:
                return LanguageGuess("vi", round(min(0.95, 0.5 + share / 2), 3), "vietnamese-syllables")
    ranked = _identifier(None).rank(text)
    full_lang, full_p = ranked[0]
    if full_p >= 0.7 or not preferred or full_lang in preferred:
        return LanguageGuess(str(full_lang), round(float(full_p), 3), "py3langid")
    best_preferred = max((p for lang, p in ranked if lang in preferred), default=0.0)
    if best_preferred < _PREFERRED_PLAUSIBLE * full_p:
        return LanguageGuess(str(full_lang), round(float(full_p), 3), "py3langid-other")
    lang, p = _identifier(tuple(sorted(preferred))).classify(text)
    return LanguageGuess(str(lang), round(float(p) * 0.9, 3), "py3langid-restricted")
