"""Faster paths of near-duplicate text, each the same as what it replaced: `text.minhash.canonical`
skips the link/mention pass when nothing can match it and turns non-text characters into spaces
with a translation table; signatures shift after the minimum; `text.urls.strip_urls` skips the
link pass when nothing can match it and collapses white space with `str.split`."""

from __future__ import annotations

import re
import sys
import unicodedata

import numpy as np
import pytest

from factbridge.bench.feed import generated_posts
from factbridge.pipeline.prepare import embedding_text, prepare_post
from factbridge.text import minhash, urls
from factbridge.text.urls import URL_PATTERN, may_hold_url


def _canonical_reference(text: str) -> str:
    """`canonical` as it was written before (every pass on every text)."""
    text = minhash._DROP.sub(" ", text)
    text = unicodedata.normalize("NFD", minhash._fold_extra(text.lower()))
    text = unicodedata.normalize("NFC", minhash._LATIN_MARKS.sub("", text))
    return " ".join(minhash._NOT_TEXT.sub(" ", text).split())


EDGE_CASES = [
    "", " ", "a", "RT @someone: Hello world", "  rt @x hi", "mail me @ home", "@user_name: nope",
    "see http://example.com/x?y=1 now", "HTTPS://EXAMPLE.COM", "go to WWW.Example.com!", "wWw.x.vn",
    "pic.twitter.com/abc123 wow", "PIC.TWITTER.COM/XYZ", "httpſ://example.com", "ẉww.example.com",
    "pıc.twitter.com/abc", "file://nothing", "a//b", "snake_case__words and __dunder__",
    "Tin giả: Đức đã ĐÓNG cửa biên giới!!! ... 100%", "ប្រទេសកម្ពុជា ១២៣ ព័ត៌មាន!", "ΣΟΦΟΣ σοφός",
    "æsop œuvre straße øre łódź", "tabs\tand\nnewlines\r\n and \u00a0nbsp \u3000 ideographic",
    "emoji 😀🔥 and ZWJ 👩\u200d💻 text", "math 𝐀𝐁𝐂 and combining a\u0301e\u0300", "ग्राम हिन्दी ๆ ไทย ລາວ မြန်မာ",
    "Kelvin \u212a and the long s \u017f", "under_score_", "___", "-- !! ??",
]


@pytest.mark.parametrize("text", EDGE_CASES)
def test_canonical_matches_the_regex_form(text: str) -> None:
    assert minhash.canonical(text) == _canonical_reference(text)


def test_canonical_matches_the_regex_form_on_generated_posts() -> None:
    posts = [prepare_post(p, ("vi", "km", "fr", "en")) for p in generated_posts(150, "mixed", duplicates=0.3, seed=11)]
    texts = [t for p in posts for t in (p.text, p.norm_text, embedding_text(p))]
    assert [minhash.canonical(t) for t in texts] == [_canonical_reference(t) for t in texts]


def test_drop_hint_finds_every_text_drop_changes() -> None:
    """The precheck is never false where `_DROP` would match (it is what lets `canonical` skip it)."""
    samples = [*EDGE_CASES, *(f"x {w} y" for w in ("WwW.a.b", "Pic.Twitter.com/q", "rt @a", "https://q", "@b"))]
    for text in samples:
        if minhash._DROP.search(text):
            assert "@" in text or may_hold_url(text), text


def test_url_hint_finds_every_text_the_url_pattern_matches() -> None:
    """`may_hold_url` is never false where `URL_PATTERN` matches (strip_urls, tokenize and
    canonical skip the pattern on it)."""
    samples = [*EDGE_CASES, *(f"x {w} y" for w in ("WwW.a.b", "Pic.Twitter.com/q", "HTTPS://q", "http://a", "www.x"))]
    for text in samples:
        if URL_PATTERN.search(text):
            assert may_hold_url(text), text


def _signature_reference(text: str) -> np.ndarray | None:
    """One text's signature the plain way: every shingle's hash, every permutation, shifted, least."""
    canon = minhash.canonical(text)
    if len(canon) < minhash.SHINGLE:
        return None
    cp = [ord(c) for c in canon]
    mask = (1 << 64) - 1
    hashes = []
    for i in range(len(cp) - minhash.SHINGLE + 1):
        h = 0
        for c in cp[i : i + minhash.SHINGLE]:
            h = (h * 1_000_003 + c) & mask
        hashes.append(h)
    mixed = minhash._mix(np.array(hashes, dtype=np.uint64))
    return np.array(
        [min(((int(a) * int(x) + int(b)) & mask) >> 32 for x in mixed) for a, b in zip(minhash._PERM_A, minhash._PERM_B, strict=True)],
        dtype=np.uint32,
    )


def test_signatures_are_the_plain_computation() -> None:
    posts = [prepare_post(p, ("vi", "km", "fr", "en")) for p in generated_posts(12, "mixed", seed=2)]
    texts = ["", "abc", *(embedding_text(p) for p in posts[:6]), "!!!", "abcd", "abcde", *(p.text for p in posts[6:])]
    for chunk in (512, 5):
        sigs, valid = minhash._compute_signatures(texts, chunk)
        for i, text in enumerate(texts):
            ref = _signature_reference(text)
            assert valid[i] == (ref is not None), text
            if ref is not None:
                assert np.array_equal(sigs[i], ref), text


def _strip_urls_reference(text: str) -> str:
    return re.sub(r"\s+", " ", urls.URL_PATTERN.sub(" ", text)).strip()


SPACES = "".join(chr(c) for c in range(sys.maxunicode + 1) if chr(c).isspace() or re.match(r"\s", chr(c)))


@pytest.mark.parametrize("text", [
    *EDGE_CASES, f"a{SPACES}b{SPACES}", f"{SPACES}x http://e.com/{SPACES}y", "WWW.x.com/a b", "a //b", "pic.twitter.com/a1 b",
])
def test_strip_urls_matches_the_regex_form(text: str) -> None:
    assert urls.strip_urls(text) == _strip_urls_reference(text)


def test_strip_urls_on_generated_posts() -> None:
    posts = [prepare_post(p, ("vi", "km", "fr", "en")) for p in generated_posts(150, "mixed", seed=12)]
    texts = [t for p in posts for t in (p.text, p.norm_text)]
    assert [urls.strip_urls(t) for t in texts] == [_strip_urls_reference(t) for t in texts]
