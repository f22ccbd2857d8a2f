"""Script-aware tokens for lexical search.

Khmer is written without spaces between words: we segment it with khmercut's
CRF model. Latin-script words (Vietnamese syllables included) are lower-cased and
folded (tones and accents removed) so a post typed without tone marks still
meets its fact-check. Scripts without word spaces that we have no segmenter for
(Thai, Lao, Myanmar, CJK) fall back to character bigrams. URLs, mentions and
emoji are not words; hashtags give their word.
"""

from __future__ import annotations

import re
import threading
import unicodedata
from functools import lru_cache

from factbridge.text.normalize import fold_diacritics
from factbridge.text.urls import URL_PATTERN

TOKENIZER_VERSION = "script-aware-1"

_MENTION = re.compile(r"(?<!\w)@\w+")
_RUN = re.compile(r"[\u1780-\u17ff\u19e0-\u19ff]+|[^\W_]+", re.UNICODE)
_BIGRAM_SCRIPTS = ("THAI", "LAO", "MYANMAR", "CJK", "HIRAGANA", "KATAKANA", "HANGUL")


# khmercut keeps one CRF tagger in a module global, created and opened lazily without a lock:
# two threads segmenting at once could see it created but not yet opened ("The tagger is not
# opened"), and the tagger is not documented as safe to share. Segmentation holds this lock.
_KHMER_LOCK = threading.Lock()


@lru_cache(maxsize=1)
def _khmer_tokenize():
    from khmercut import tokenize as khmer_tokenize

    return khmer_tokenize


@lru_cache(maxsize=65_536)
def _segment_khmer(run: str) -> tuple[str, ...]:
    """khmercut's words of one Khmer run (the CRF sees only the run: the same run always
    gives the same words, so repeated phrases are segmented once per process)."""
    with _KHMER_LOCK:
        return tuple(_khmer_tokenize()(run))


def _khmer_segmenter():
    def segment(run: str) -> list[str]:
        return list(_segment_khmer(run))

    return segment


@lru_cache(maxsize=262_144)
def _folded_word(run: str) -> str:
    """A spaced-script word lower-cased and folded (a vocabulary: cached, not redone per post)."""
    return fold_diacritics(run.lower())


def _is_khmer(run: str) -> bool:
    return "\u1780" <= run[0] <= "\u17ff" or "\u19e0" <= run[0] <= "\u19ff"


def _needs_bigrams(run: str) -> bool:
    if ord(run[0]) < 0x0E00:  # Latin, Greek, Cyrillic, Arabic, Indic...: spaced scripts
        return False
    name = unicodedata.name(run[0], "")
    return any(s in name for s in _BIGRAM_SCRIPTS)


def tokenize(text: str) -> list[str]:
    # Decomposed input would split words at every combining tone mark ("va", "c");
    # NFC leaves already-normalised text, and so stored tokens, unchanged.
    text = unicodedata.normalize("NFC", text)
    text = URL_PATTERN.sub(" ", text)
    text = _MENTION.sub(" ", text)
    tokens: list[str] = []
    for run in _RUN.findall(text):
        if _is_khmer(run):
            tokens.extend(t for t in _khmer_segmenter()(run) if t.strip() and any(c.isalpha() for c in t))
        elif _needs_bigrams(run):
            tokens.extend(run[i : i + 2] for i in range(max(1, len(run) - 1)))
        else:
            tokens.append(_folded_word(run) if len(run) <= 40 else fold_diacritics(run.lower()))
    return tokens
