"""`text.minhash.canonical` skips the link/mention pass when nothing can match it and turns
non-text characters into spaces with a translation table: the same text as the regex form."""

from __future__ import annotations

import unicodedata

import pytest

from factbridge.bench.feed import generated_posts
from factbridge.pipeline.prepare import embedding_text, prepare_post
from factbridge.text import minhash


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
            assert "@" in text or "//" in text or minhash._DROP_HINT.search(text), text
