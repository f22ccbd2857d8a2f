"""The link-risk stage's shortcuts give what the long way gave: `refang` translates with one
merged table only when one of its characters is there, `extract_urls` stops when the refanged
text has neither "." nor "://", and `score_post` scores the link it normalised already."""

from __future__ import annotations

import re
import unicodedata

import pytest

from factbridge.bench.feed import generated_posts
from factbridge.linkrisk import urls
from factbridge.linkrisk.feeds import FeedIndex
from factbridge.linkrisk.lookalike import LookalikeDetector
from factbridge.linkrisk.scoring import LinkRiskScorer
from factbridge.linkrisk.stage import post_links, score_post
from factbridge.models import Post
from factbridge.pipeline.prepare import prepare_post

TEXTS = [
    "", "no links here at all", "hxxp://evil[.]com/login", "vietcombank-uudai . com/dang-nhap", "ｅｘａｍｐｌｅ．ｃｏｍ/ｘ",
    "ví dụ\u3002com test", "a\u200bb\u00ad.com", "site\uff61vn and x\u2024org", "example (dot) com", "example[.]vn",
    "http://localhost", "go http://a.b.c:99999/", "readme.md file", "https://www.vietcombank.com.vn/?utm_source=x&fbclid=1",
    "Khmer ព័ត៌មាន example.com.kh ១២៣", "time 10:30 and ratio 3:1", "ftp://files", "http\uff1a//x\uff0fy.com",
    "mail x@y.com and @user", "meow://danger[.]xyz", "…", "dots... everywhere... but no tld",
]


def _refang_two_passes(text: str) -> str:
    """`refang` as it was written before (both tables, on every non-ASCII text)."""
    if not text.isascii():
        text = unicodedata.normalize("NFKC", text).translate(urls._CHAR_MAP).translate(urls._INVISIBLE)
    elif not urls._FANG_HINT.search(text) and (text.startswith(("http://", "https://")) or not urls._SCHEME_HINT.search(text)):
        return text
    if urls._SCHEME_HINT.search(text):
        text = urls._SCHEME_FANGS.sub(lambda m: "http" + m.group(1), text)
    if any(c in text for c in "[({<\\"):
        text = urls._COLON_FANG.sub(":", text)
        text = urls._SEPARATOR_FANG.sub("://", text)
        text = urls._DOT_FANG.sub(".", text)
        text = urls._SLASH_FANG.sub("/", text)
    if " " in text or "\t" in text:
        text = urls._SPACED_DOT.sub(lambda m: "." if m.group(1) in urls._SPACED_TLDS else m.group(0), text)
    return text


@pytest.mark.parametrize("text", TEXTS)
def test_refang_is_the_two_table_form(text: str) -> None:
    assert urls.refang(text) == _refang_two_passes(text)


def test_no_dot_no_scheme_no_link() -> None:
    """Every alternative of the link pattern holds a "." or "://": the early return loses nothing."""
    for text in TEXTS:
        clean = urls.refang(text)
        if "." not in clean and "://" not in clean:
            assert not urls._URL_PATTERN.search(clean), text
    assert urls.extract_urls("http://localhost") == ["http://localhost"]
    assert urls.extract_urls("no links, only words: here") == []


def _posts() -> list[Post]:
    posts = [prepare_post(p, ("vi", "km", "fr", "en")) for p in generated_posts(200, "mixed", duplicates=0.2, seed=4)]
    posts += [Post(id=f"t{i}", text=t, urls=["https://bit.ly/zz", "bit.ly/zz"] if i % 3 == 0 else []) for i, t in enumerate(TEXTS)]
    return posts


def test_score_post_scores_each_written_link_as_before() -> None:
    """Each record is what scoring the written links (`post_links`) one by one gives."""
    scorer = LinkRiskScorer(FeedIndex(), LookalikeDetector.from_setting(""), 0.5, None)
    posts = _posts()
    assert sum(bool(post_links(p)[0]) for p in posts) > 50
    for post in posts:
        record = score_post(scorer, post)
        links, unparsed = post_links(post)
        expected = sorted((scorer.score(raw).as_dict() for raw in links), key=lambda u: -float(u["score"]))
        assert [u.to_doc() for u in record.urls] == expected
        assert record.unparsed == unparsed
        assert [u.url for u in record.urls] == [d["url"] for d in expected]


def test_refang_pattern_covers_the_table() -> None:
    assert {ord(c) for c in re.findall(urls._REFANG_CHARS, "".join(map(chr, urls._REFANG_MAP)))} == set(urls._REFANG_MAP)
