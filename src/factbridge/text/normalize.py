"""Unicode normalisation for social posts.

* NFC, so composed and decomposed Vietnamese compare equal;
* zero-width and bidi control characters removed (they split words invisibly);
* Vietnamese tone marks moved to one canonical place ("hoà" and "hòa" are the
  same word written with the old and new rules; we keep the classic placement);
* whitespace collapsed.
"""

from __future__ import annotations

import re
import unicodedata

_INVISIBLE = dict.fromkeys(
    map(ord, "\u200b\u200c\u200d\u2060\ufeff\u00ad\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069"),
    None,
)
_HAS_INVISIBLE = re.compile("[" + "".join(map(chr, _INVISIBLE)) + "]")

# Tone marks as combining characters (NFD).
_TONES = "\u0300\u0301\u0303\u0309\u0323"

# In an open syllable ending in oa, oe or uy the "new" rule writes the tone on the
# second vowel (hoà, thuỷ) and the classic rule on the first (hòa, thủy). We
# normalise to the classic placement, but only when the pair ends the syllable:
# in "hoàng" the tone belongs on the a under both rules.
_NEW_STYLE = re.compile(
    r"([qQ]?)([oO]|[uU])([aAeEyY])([" + _TONES + r"])(?![^\W\d_])"
)


def _classic_tone(match: re.Match[str]) -> str:
    q, first, second, tone = match.groups()
    if q and first in "uU":  # "quý": u is part of the consonant, tone stays on y
        return match.group(0)
    pair = (first + second).lower()
    if pair not in {"oa", "oe", "uy"}:
        return match.group(0)
    return q + first + tone + second


# In NFC text, where _NEW_STYLE can match after NFD: o/u followed by a precomposed letter
# whose decomposition is a, e or y then a tone mark (à, ậ, ẻ, ý...). Text without such a pair
# needs no decomposing: NFD, no substitution, NFC gives NFC(text) back.
_TONED_AEY = "".join(
    chr(c) for c in range(0x00C0, 0x2000)
    if (d := unicodedata.normalize("NFD", chr(c)))[0] in "aAeEyY" and len(d) > 1 and d[1] in _TONES
)
_MAYBE_NEW_STYLE = re.compile("[oOuU][" + _TONED_AEY + "]")


def _vietnamese_tones(text: str) -> str:
    text = unicodedata.normalize("NFC", text)
    if not _MAYBE_NEW_STYLE.search(text):
        return text
    decomposed = unicodedata.normalize("NFD", text)
    # NFD puts the tone after the base vowel and any vowel modifier; our pairs have none.
    fixed = _NEW_STYLE.sub(_classic_tone, decomposed)
    return unicodedata.normalize("NFC", fixed)


def normalize_text(text: str) -> str:
    """The canonical form of a post's text: what we store, index and embed."""
    text = unicodedata.normalize("NFC", text)
    if _HAS_INVISIBLE.search(text):  # a table look-up per character, only where it deletes one
        text = text.translate(_INVISIBLE)
    text = _vietnamese_tones(text)
    # `_SPACES.sub(" ", text).strip()`: `\s` and `str.split` both split at `str.isspace` characters
    return " ".join(text.split())


_FOLD_EXTRA = str.maketrans({"đ": "d", "Đ": "D", "ø": "o", "Ø": "O", "ł": "l", "Ł": "L", "ß": "ss", "æ": "ae", "œ": "oe"})


def fold_diacritics(text: str) -> str:
    """Remove Latin diacritics (Vietnamese tones included): 'Không phải' -> 'Khong phai'.

    Only Latin letters are folded: Khmer and other scripts keep their combining signs,
    which are letters of their own there.
    """
    if text.isascii():
        return text
    out: list[str] = []
    for ch in unicodedata.normalize("NFD", text.translate(_FOLD_EXTRA)):
        if unicodedata.combining(ch) and out and "LATIN" in unicodedata.name(out[-1], ""):
            continue
        out.append(ch)
    return unicodedata.normalize("NFC", "".join(out))
