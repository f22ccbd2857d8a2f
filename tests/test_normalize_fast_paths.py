"""Normalise's shortcuts give what the long way gave: `normalize_text` uses the invisible
characters' table only where one of them is and collapses white space with `str.split` instead
of `\\s+`; a text's links are found once (`text.urls._url_spans`) for `extract_urls`,
`strip_urls` and `tokenize`."""

from __future__ import annotations

import importlib
import random
import re
import sys
import unicodedata

import pytest

from factbridge.bench.feed import MIXES, generated_posts
from factbridge.text import normalize
from factbridge.text import urls as text_urls
from factbridge.text.normalize import normalize_text
from factbridge.text.tokenize import tokenize

_SPACES = re.compile(r"\s+")
tokenize_module = importlib.import_module("factbridge.text.tokenize")  # the package exports its function under this name


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


# ----------------------------------------------------------------------------- links, scanned once

def _extract_urls_the_long_way(text: str) -> list[str]:
    seen: dict[str, None] = {}
    for match in text_urls.URL_PATTERN.finditer(text):
        url = match.group(0).rstrip(text_urls._TRAILING)
        seen.setdefault("http://" + url if url.lower().startswith("www.") else url, None)
    return list(seen)


def _tokenize_the_long_way(text: str) -> list[str]:
    """`tokenize` as it was written before (its own `URL_PATTERN.sub`)."""
    text = unicodedata.normalize("NFC", text)
    if text_urls.may_hold_url(text):
        text = text_urls.URL_PATTERN.sub(" ", text)
    if "@" in text:
        text = tokenize_module._MENTION.sub(" ", text)
    tokens: list[str] = []
    for run in tokenize_module._RUN.findall(text):
        tokens += tokenize_module._tokens_of_run(run)
    return tokens


LINKED = [
    "", "see http://a.b/c. and www.x.vn, then https://y.z/?q=1)", "pic.twitter.com/abc x PIC.TWITTER.COM/Z", "HTTP://A.B WWW.C.D",
    "a http://x.y b http://x.y c", "http://x.y", "xhttps://a.b\u3000next", "www.", "//www.a.b", "ព័ត៌មាន https://a.kh/ក ១២",
    "Tin giả: https://vnexpress.net/x-123.html?utm_source=fb …", "@user http://a.b @other", "http://a.b\nhttp://c.d\t",
]


def test_links_scanned_once_give_what_the_pattern_gave() -> None:
    texts = [*LINKED, *TEXTS, *(normalize_text(p.text) for mix in MIXES for p in generated_posts(200, mix, 0.2, 12))]
    rng = random.Random(5)
    pieces = [*LINKED, " ", "\u3000", "http://", "www.", "a.b", "/x", "'", "<", ")", ".", "Hòa", "ក្លែង", "@u", "pic.twitter.com/", "x"]
    texts += ["".join(rng.choice(pieces) for _ in range(rng.randint(1, 10))) for _ in range(3_000)]
    assert sum(1 for t in texts if text_urls.URL_PATTERN.search(t)) > 1000
    for text in texts:
        assert text_urls.blank_urls(text) == text_urls.URL_PATTERN.sub(" ", text)
        assert text_urls.extract_urls(text) == _extract_urls_the_long_way(text)
        assert text_urls.strip_urls(text) == " ".join(text_urls.URL_PATTERN.sub(" ", text).split())
        assert tokenize(text) == _tokenize_the_long_way(text)
    text_urls._url_spans.cache_clear()  # and computed afresh in another order
    assert [text_urls.extract_urls(t) for t in reversed(texts)] == [_extract_urls_the_long_way(t) for t in reversed(texts)]
