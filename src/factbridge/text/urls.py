"""URLs, mentions, hashtags and emoji in post text."""

from __future__ import annotations

import re
from functools import lru_cache

URL_PATTERN = re.compile(
    r"(?:https?://|www\.)[^\s<>\"'\u3000]+|\bpic\.twitter\.com/\w+", re.IGNORECASE
)
HASHTAG = re.compile(r"(?<!\w)#(\w+)", re.UNICODE)
MENTION = re.compile(r"(?<!\w)@(\w+)", re.UNICODE)
_TRAILING = ".,;:!?)]}\u2026'\""
EMOJI = re.compile(
    "[\U0001f000-\U0001faff\u2600-\u27bf\u2b00-\u2bff\ufe0f\u200d]+", re.UNICODE
)


def extract_urls(text: str) -> list[str]:
    """URLs in the order they appear, without trailing punctuation, each once."""
    seen: dict[str, None] = {}
    for start, end in _url_spans(text):
        url = text[start:end].rstrip(_TRAILING)
        if url.lower().startswith("www."):
            url = "http://" + url
        seen.setdefault(url, None)
    return list(seen)


def extract_hashtags(text: str) -> list[str]:
    return [h.lower() for h in HASHTAG.findall(text)]


# Every match of `URL_PATTERN` holds one of these (same flag, so the same letters match).
_URL_HINT = re.compile(r"//|www\.|pic\.twitter", re.IGNORECASE)


def may_hold_url(text: str) -> bool:
    """False when `URL_PATTERN` cannot match in `text`: a literal scan, far cheaper than the
    pattern's, to skip it on the many posts without a link."""
    return _URL_HINT.search(text) is not None


@lru_cache(maxsize=4096)
def _url_spans(text: str) -> tuple[tuple[int, int], ...]:
    """Where `URL_PATTERN` matches in `text`, in order. Normalise asks for the same text's links
    (`extract_urls`), its words without them (`tokenize`) and its text without them (language
    ID; the embedding stage's `strip_urls` too): the text is scanned once while it is recent."""
    if not may_hold_url(text):
        return ()
    return tuple(match.span() for match in URL_PATTERN.finditer(text))


def blank_urls(text: str) -> str:
    """`URL_PATTERN.sub(" ", text)`: each link replaced by one space."""
    spans = _url_spans(text)
    if not spans:
        return text
    kept: list[str] = []
    last = 0
    for start, end in spans:
        kept.append(text[last:start])
        last = end
    kept.append(text[last:])
    return " ".join(kept)


def strip_urls(text: str) -> str:
    """`text` without links, each run of white space one space, none at the ends (`str.split`
    splits at the characters `\\s` matches)."""
    return " ".join(blank_urls(text).split())
