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


# `refang`'s scheme hint as it was first written (`_SCHEME_HINT` is the same, written to scan faster).
_OLD_SCHEME_HINT = re.compile(r"h(?:xx|\*\*|__|\[tt\])p|meow", re.IGNORECASE)


def _refang_two_passes(text: str) -> str:
    """`refang` as it was written before (both tables, on every non-ASCII text; the scheme hint's
    first form; the spaced-dot pass on every text with a space or tab, without `_SPACED_TLD_HINT`)."""
    if not text.isascii():
        text = unicodedata.normalize("NFKC", text).translate(urls._CHAR_MAP).translate(urls._INVISIBLE)
    elif not urls._FANG_HINT.search(text) and (text.startswith(("http://", "https://")) or not _OLD_SCHEME_HINT.search(text)):
        return text
    if _OLD_SCHEME_HINT.search(text):
        text = urls._SCHEME_FANGS.sub(lambda m: "http" + m.group(1), text)
    if any(c in text for c in "[({<\\"):
        text = urls._COLON_FANG.sub(":", text)
        text = urls._SEPARATOR_FANG.sub("://", text)
        text = urls._DOT_FANG.sub(".", text)
        text = urls._SLASH_FANG.sub("/", text)
    if " " in text or "\t" in text:
        text = urls._SPACED_DOT.sub(lambda m: "." if m.group(1) in urls._SPACED_TLDS else m.group(0), text)
    return text


SPACED = [
    "example dot com", "example DOT com", "example .com", "example . com", "example. com", "example .  vn/x",
    "a\u3000.\u3000net", "x\n.\norg", "x\t.\tinfo/", "home. It was", "to me. me", "gov-vn . com.vn", "x .comx", "x . com2",
    "x . com_", "x .\u00a0kh", "shop dot  shop", "x .coM", "x dot\u2028biz", "ví dụ . vn ở đây", "a .. com", "a. .com",
    "HXXP://a[.]b", "hXxP://a.b", "h**p://x", "H__P://x", "h[TT]p://x", "MeOw://x", "hxp://x", "mxow", "hhxxp", "hmeow",
]


@pytest.mark.parametrize("text", [*TEXTS, *SPACED])
def test_refang_is_the_two_table_form(text: str) -> None:
    assert urls.refang(text) == _refang_two_passes(text)


def _spaced_dot(text: str) -> str:
    return urls._SPACED_DOT.sub(lambda m: "." if m.group(1) in urls._SPACED_TLDS else m.group(0), text)


def _random_texts(n: int, seed: int) -> list[str]:
    """Texts made of the pieces the spaced-dot and scheme patterns look at."""
    import random

    rng = random.Random(seed)
    pieces = [" ", "  ", "\t", "\n", "\u3000", "\u00a0", ".", "..", "dot", "DOT", "Dot", "-", "_", "é", "2", "x", "ab", "Q",
              *sorted(urls._SPACED_TLDS), "coms", "vnx", "h", "H", "xx", "XX", "**", "__", "[tt]", "[TT]", "p", "P", "meow", "MEOW", "m", "eow"]
    spaces = [" ", "  ", "\t", "\n", "\u3000", "\u00a0", "\u2028", ""]
    words = ["example", "x", "é", "-", "2", "_", "ab", "Q", ""]
    tlds = [*sorted(urls._SPACED_TLDS), "coms", "vnx", "Com", "c", "abcdefghi"]
    tails = ["", "/x", "x", "2", "_", ".", " ", "é", "-", "!"]

    def domain_like() -> str:  # a word, a separator of spaces and a dot or "dot", a TLD-like word
        sep = rng.choice(spaces) + rng.choice([".", "dot", "DOT", "", ".."]) + rng.choice(spaces)
        return rng.choice(words) + sep + rng.choice(tlds) + rng.choice(tails)

    return ["".join(rng.choice(pieces) if rng.random() < 0.5 else domain_like() for _ in range(rng.randint(1, 6))) for _ in range(n)]


def test_spaced_tld_hint_finds_every_text_the_spaced_dot_pass_changes() -> None:
    """`refang` runs `_SPACED_DOT` only where `_SPACED_TLD_HINT` matches: a text that pass
    changes always has a match (hand-made texts, generated posts, 20,000 random texts)."""
    texts = [*TEXTS, *SPACED, *(p.text for p in _posts()), *_random_texts(20_000, 7)]
    changed = [t for t in texts if _spaced_dot(t) != t]
    assert len(changed) > 500
    assert all(urls._SPACED_TLD_HINT.search(t) for t in changed)
    assert [urls.refang(t) for t in texts] == [_refang_two_passes(t) for t in texts]


def test_scheme_hint_is_its_first_form() -> None:
    texts = [*TEXTS, *SPACED, *(p.text for p in _posts()), *_random_texts(20_000, 8)]
    assert sum(1 for t in texts if _OLD_SCHEME_HINT.search(t)) > 1000
    assert [bool(urls._SCHEME_HINT.search(t)) for t in texts] == [bool(_OLD_SCHEME_HINT.search(t)) for t in texts]


def _extract_the_long_way(text: str) -> list[str]:
    """`extract_urls` without its early return."""
    clean = urls.refang(text)
    found: dict[str, None] = {}
    for match in urls._URL_PATTERN.finditer(clean):
        url = urls._trim(match.group(0))
        lower = url.lower()
        if not lower.startswith(("http://", "https://", "ftp://", "www")):
            host = lower.split("/", 1)[0].split(":", 1)[0]
            tld = host.rsplit(".", 1)[-1]
            if not urls._is_known_tld(tld, urls.known_tlds()) or (tld in urls._FILE_LIKE_TLDS and "/" not in url):
                continue
        found.setdefault(url, None)
    return list(found)


HINTLESS = [
    "A sentence. Another one. And a third.", "ratio 3 : 1, time 10 : 30", "x.\u2028com and y.\u1680net", "end.\u00a0com",
    "Tin giả. Đừng chia sẻ. ", "ព័ត៌មាន។ ក្លែងក្លាយ។", "quote.\" and brace.{ and pipe.| caret.^ back.\\", "www. example com",
]


@pytest.mark.parametrize("text", [*TEXTS, *HINTLESS])
def test_extract_urls_early_return_loses_nothing(text: str) -> None:
    assert urls.extract_urls(text) == _extract_the_long_way(text)


def test_extract_urls_on_generated_posts() -> None:
    texts = [p.text for p in _posts()]
    assert [urls.extract_urls(t) for t in texts] == [_extract_the_long_way(t) for t in texts]
    assert sum(1 for t in texts if "://" not in urls.refang(t) and not urls._LINK_HINT.search(urls.refang(t))) > 20
    assert urls.extract_urls("http://localhost") == ["http://localhost"]
    assert urls.extract_urls("no links. only words: here") == []


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


def test_score_post_takes_the_batch_time() -> None:
    scorer = LinkRiskScorer(FeedIndex(), LookalikeDetector.from_setting(""), 0.5, None)
    post = Post(id="p", text="see example.com")
    assert score_post(scorer, post, "2026-01-02T03:04:05Z").scored_at == "2026-01-02T03:04:05Z"
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", score_post(scorer, post).scored_at)


def test_refang_pattern_covers_the_table() -> None:
    assert {ord(c) for c in re.findall(urls._REFANG_CHARS, "".join(map(chr, urls._REFANG_MAP)))} == set(urls._REFANG_MAP)
