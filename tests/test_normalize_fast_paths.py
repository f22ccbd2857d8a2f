"""`normalize_text`'s shortcuts give what the long way gave: the invisible characters' table
only where one of them is, and white space collapsed by `str.split` instead of `\\s+`."""

from __future__ import annotations

import random
import re
import sys
import unicodedata

import pytest

from factbridge.bench.feed import MIXES, generated_posts
from factbridge.text import normalize
from factbridge.text.normalize import normalize_text

_SPACES = re.compile(r"\s+")


def _normalize_the_long_way(text: str) -> str:
    """`normalize_text` as it was written before."""
    text = unicodedata.normalize("NFC", text).translate(normalize._INVISIBLE)
    text = normalize._vietnamese_tones(text)
    return _SPACES.sub(" ", text).strip()


def test_split_splits_where_the_pattern_does() -> None:
    """Every code point: `\\s` matches it exactly when `str.isspace` (what `split` and `strip` use)."""
    spaces = [chr(c) for c in range(sys.maxunicode + 1) if _SPACES.fullmatch(chr(c))]
    assert spaces == [chr(c) for c in range(sys.maxunicode + 1) if chr(c).isspace()]
    assert len(spaces) > 20


def test_invisible_pattern_covers_the_table() -> None:
    assert {ord(c) for c in normalize._HAS_INVISIBLE.findall("".join(map(chr, normalize._INVISIBLE)))} == set(normalize._INVISIBLE)


TEXTS = [
    "", " ", "\u200b", "a\u200bb", "  Hòa  bình\t\n ", "thuỷ\u00a0điện\u2028x", "a\u200d\u0301", "e\u00ad\u0301 x",
    "\u202eevil\u202c", "Khmer ព័ត៌មាន\u200bក្លែងក្លាយ", "hoà\u3000hoạ\x1c\x1d\x1e\x1f\x85end", "o\u0300a\u200ca",
    "\ufeffstart", "tab\tand\u2066iso\u2069 ", "quý thuỷ hoà khoẻ", "\u2000\u2001\u200a\u202f\u205f",
]


@pytest.mark.parametrize("text", TEXTS)
def test_normalize_text_is_the_long_way(text: str) -> None:
    assert normalize_text(text) == _normalize_the_long_way(text)


def test_normalize_text_on_generated_and_random_texts() -> None:
    texts = [p.text for mix in MIXES for p in generated_posts(150, mix, 0.2, 9)]
    rng = random.Random(3)
    pieces = [*TEXTS, "a", "o", "u", "y", "e", "\u0300", "\u0301", "\u0309", "\u0323", "à", "ý", "ẻ", "Q", "\u200c", "\u00ad", "\n", "  ", ".", "1"]
    texts += ["".join(rng.choice(pieces) for _ in range(rng.randint(1, 15))) for _ in range(5_000)]
    assert sum(1 for t in texts if normalize._HAS_INVISIBLE.search(t)) > 500
    assert [normalize_text(t) for t in texts] == [_normalize_the_long_way(t) for t in texts]
