"""schema.org ClaimReview in and out.

Reads ClaimReview JSON-LD as a single object, a list, an `@graph`, or embedded
in saved HTML pages (`<script type="application/ld+json">`), and the Google
Fact Check Tools `claims:search` response. Writes ClaimReview JSON-LD for
publication.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterator
from datetime import datetime
from html.parser import HTMLParser
from typing import Any

from factbridge.errors import InputError
from factbridge.models import FactCheck
from factbridge.text.dates import parse_date_lenient as parse_date


class _LdJsonExtractor(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.blocks: list[tuple[int, str]] = []
        self._inside = False
        self._buf: list[str] = []
        self._line = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "script" and any(k == "type" and (v or "").strip().lower() == "application/ld+json" for k, v in attrs):
            self._inside = True
            self._buf = []
            self._line = self.getpos()[0]

    def handle_endtag(self, tag: str) -> None:
        if tag == "script" and self._inside:
            self.blocks.append((self._line, "".join(self._buf)))
            self._inside = False

    def handle_data(self, data: str) -> None:
        if self._inside:
            self._buf.append(data)


def jsonld_blocks_from_html(html: str) -> list[tuple[int, str]]:
    parser = _LdJsonExtractor()
    parser.feed(html)
    return parser.blocks


def _types(node: dict[str, Any]) -> set[str]:
    t = node.get("@type", [])
    values = t if isinstance(t, list) else [t]
    return {str(v).split("/")[-1].split(":")[-1] for v in values}


def iter_claimreview_nodes(data: Any) -> Iterator[dict[str, Any]]:
    if isinstance(data, list):
        for item in data:
            yield from iter_claimreview_nodes(item)
    elif isinstance(data, dict):
        if "ClaimReview" in _types(data):
            yield data
        for key in ("@graph", "mainEntity", "hasPart", "review", "itemListElement"):
            if key in data:
                yield from iter_claimreview_nodes(data[key])
        if "item" in data and isinstance(data["item"], dict | list):
            yield from iter_claimreview_nodes(data["item"])


def _name(value: Any) -> str:
    if isinstance(value, dict):
        return str(value.get("name") or value.get("url") or "")
    if isinstance(value, list) and value:
        return _name(value[0])
    return str(value or "")


def _lang(value: Any) -> str | None:
    if isinstance(value, dict):
        value = value.get("alternateName") or value.get("name")
    if not value:
        return None
    return str(value).split("-")[0].lower()[:8]


def stable_id(*parts: str) -> str:
    return "fc-" + hashlib.sha256("\x1f".join(parts).encode("utf-8")).hexdigest()[:16]


def _url(node: dict[str, Any], keys: tuple[str, ...], source: str, line: int | None) -> str:
    """The first of `keys` that is set, as the fact-check's URL (and id): text only, never an
    object or a list stringified into an id nobody wrote."""
    for key in keys:
        value = node.get(key)
        if value in (None, ""):
            continue
        if not isinstance(value, str):
            raise InputError(f"'{key}' must be a string, not {type(value).__name__}", source=source, line=line, field=key)
        return value
    return ""


def factcheck_from_claimreview(node: dict[str, Any], source: str, line: int | None = None) -> FactCheck:
    claim = str(node.get("claimReviewed") or "").strip()
    item: dict[str, Any] = node["itemReviewed"] if isinstance(node.get("itemReviewed"), dict) else {}
    if not claim and item:
        claim = str(item.get("name") or item.get("text") or "").strip()
    if not claim:
        raise InputError("ClaimReview has no claimReviewed", source=source, line=line, field="claimReviewed")
    rating: dict[str, Any] = node["reviewRating"] if isinstance(node.get("reviewRating"), dict) else {}
    url = _url(node, ("url", "@id"), source, line)
    rating_value: float | None = None
    try:
        if rating.get("ratingValue") not in (None, ""):
            rating_value = float(rating["ratingValue"])
    except (TypeError, ValueError):
        rating_value = None
    appearance = item.get("appearance") or item.get("firstAppearance") or {}
    return FactCheck(
        id=url or stable_id(claim, _name(node.get("author"))),
        claim=claim,
        title=str(node.get("headline") or node.get("name") or ""),
        rating=str(rating.get("alternateName") or rating.get("name") or ""),
        rating_value=rating_value,
        publisher=_name(node.get("author") or node.get("publisher")),
        url=url,
        language=_lang(node.get("inLanguage")),
        claim_date=parse_date(item.get("datePublished") or (appearance.get("datePublished") if isinstance(appearance, dict) else None)),
        published_at=parse_date(node.get("datePublished")),
        claimant=_name(item.get("author")),
        source_format="claimreview",
        raw=node | _withdrawal(node),
    )


def _withdrawal(node: dict[str, Any]) -> dict[str, Any]:
    """A ClaimReview its publisher withdrew (`creativeWorkStatus` "Withdrawn", as ours say) is
    marked so (pipeline/withdrawals.py): it stays in the library and is not matched."""
    if str(node.get("creativeWorkStatus") or "").strip().lower() != "withdrawn":
        return {}
    note: dict[str, Any] = node["correction"] if isinstance(node.get("correction"), dict) else {}
    return {"withdrawn": {"at": str(note.get("datePublished") or node.get("dateModified") or ""), "reason": str(note.get("text") or "")}}


def factchecks_from_google(data: dict[str, Any], source: str) -> Iterator[FactCheck]:
    """The Fact Check Tools API `claims:search` response: one FactCheck per review."""
    for n, claim in enumerate(data.get("claims", []), start=1):
        text = str(claim.get("text") or "").strip()
        if not text:
            raise InputError("claim without text", source=source, field=f"claims[{n - 1}].text")
        for review in claim.get("claimReview", []):
            url = _url(review, ("url",), source, None)
            publisher = review.get("publisher") or {}
            yield FactCheck(
                id=url or stable_id(text, str(publisher.get("name", ""))),
                claim=text,
                title=str(review.get("title") or ""),
                rating=str(review.get("textualRating") or ""),
                publisher=str(publisher.get("name") or publisher.get("site") or ""),
                url=url,
                language=_lang(review.get("languageCode")),
                claim_date=parse_date(claim.get("claimDate")),
                published_at=parse_date(review.get("reviewDate")),
                claimant=str(claim.get("claimant") or ""),
                source_format="google-factcheck",
                raw={"claim": {k: v for k, v in claim.items() if k != "claimReview"}, "review": review},
            )


def to_claimreview(fc: FactCheck, *, url: str | None = None, org_name: str | None = None, published: datetime | None = None) -> dict[str, Any]:
    """ClaimReview JSON-LD for a fact-check, as search engines and partners read it."""
    node: dict[str, Any] = {
        "@context": "https://schema.org",
        "@type": "ClaimReview",
        "url": url or fc.url,
        "claimReviewed": fc.claim,
        "author": {"@type": "Organization", "name": org_name or fc.publisher},
        "reviewRating": {"@type": "Rating", "alternateName": fc.rating},
    }
    if fc.title:
        node["headline"] = fc.title
    if fc.language:
        node["inLanguage"] = fc.language
    when = published or fc.published_at
    if when:
        node["datePublished"] = when.date().isoformat()
    if fc.rating_value is not None:
        node["reviewRating"].update({"ratingValue": fc.rating_value, "bestRating": 5, "worstRating": 1})
    item: dict[str, Any] = {"@type": "Claim"}
    if fc.claimant:
        item["author"] = {"@type": "Person" if " " in fc.claimant else "Organization", "name": fc.claimant}
    if fc.claim_date:
        item["datePublished"] = fc.claim_date.date().isoformat()
    node["itemReviewed"] = item
    return node


def parse_json_text(text: str, source: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise InputError(f"invalid JSON: {exc.msg}", source=source, line=exc.lineno) from exc


_HTML_HINT = re.compile(r"^\s*(<!doctype|<html|<head|<body|<script|<meta)", re.IGNORECASE)


def looks_like_html(text: str) -> bool:
    return bool(_HTML_HINT.match(text[:2000]))
