"""tokenize works out each run's tokens once (`_cached_tokens_of_run`): the cached path must give
what the run's own rules give, for every kind of run, and the text around runs (links, mentions,
e-mail addresses) must be handled as before."""

from __future__ import annotations

import khmercut

from factbridge.bench.feed import generated_posts
from factbridge.text.normalize import fold_diacritics, normalize_text
from factbridge.text.tokenize import (
    _RUN,
    _cached_tokens_of_run,
    _segment_khmer,
    _tokens_of_run,
    tokenize,
)

LONG = "Zz" * 25  # a 50-letter run: its tokens are not cached


def _expected(text: str) -> list[str]:
    """The tokens by the rules written out: Khmer words from khmercut less lone signs, pairs of Thai, folded words."""
    out: list[str] = []
    for run in _RUN.findall(text):
        if "\u1780" <= run[0] <= "\u17ff":
            out += [w for w in khmercut.tokenize(run) if any(c.isalpha() for c in w)]
        elif "\u0e00" <= run[0] <= "\u0e7f":
            out += [run[i : i + 2] for i in range(max(1, len(run) - 1))]
        else:
            out.append(fold_diacritics(run.lower()))
    return out


def test_every_kind_of_run() -> None:
    text = f"Không phải TIN giả ក្រសួងសុខាភិបាល ព្រមាន ១២៣ ภาษาไทย ก {LONG} x2"
    assert tokenize(text) == _expected(text)
    assert tokenize(text) == ["khong", "phai", "tin", "gia", *tokenize("ក្រសួងសុខាភិបាល ព្រមាន ១២៣"), "ภา", "าษ", "ษา", "าไ", "ไท", "ทย", "ก", LONG.lower(), "x2"]


def test_links_mentions_and_addresses() -> None:
    assert tokenize("@bao_moi viết: xem https://vnexpress.net/tin-gia-123.html nhé") == ["viet", "xem", "nhe"]
    # an @ after a letter is no mention: both sides of an e-mail address stay words
    assert tokenize("mail tin@factbridge.org @admin") == ["mail", "tin", "factbridge", "org"]
    assert tokenize("không có ký tự a") == ["khong", "co", "ky", "tu", "a"]


def test_cached_runs_give_their_rules_tokens() -> None:
    _cached_tokens_of_run.cache_clear()
    texts = [normalize_text(p.text) for mix in ("tweet", "550") for p in generated_posts(80, mix, 0.0, 3)]
    first = [tokenize(t) for t in texts]
    assert _cached_tokens_of_run.cache_info().hits > 0
    _segment_khmer.cache_clear()
    assert [tokenize(t) for t in texts] == first  # again, from the cache
    runs = {run for t in texts for run in _RUN.findall(t)}
    assert any("\u1780" <= r[0] <= "\u17ff" and len(r) > 40 for r in runs)  # long Khmer runs are cached too
    for run in runs:
        assert _cached_tokens_of_run(run) == _tokens_of_run(run), run


def test_long_latin_runs_are_not_cached() -> None:
    _cached_tokens_of_run.cache_clear()
    assert tokenize(f"{LONG} {LONG}") == [LONG.lower(), LONG.lower()]
    assert _cached_tokens_of_run.cache_info().currsize == 0
