"""Read what the pipeline stores, for pages and the API.

The later stages (check-worthiness, narratives, link risk, alerts, the triage
queue) store their records as documents in collections of those names. This
module reads them tolerantly: a collection that is absent or empty gives an
empty list, and fields are looked up under the names those stages document
(with a few alternatives), so pages keep working while stages evolve. The
original document always travels along (`raw`) so nothing the stage recorded
as evidence is hidden from the reviewer.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Sequence
from datetime import date, datetime, timedelta
from typing import Any

from factbridge.backends.storage.base import Storage
from factbridge.errors import NotFound
from factbridge.models import FactCheck, MatchCandidate, Post
from factbridge.pipeline.records import QueueEntry
from factbridge.text.dates import parse_date_lenient

QUEUE = "queue"
ALERTS = "alerts"
NARRATIVES = ("narratives", "topics")
NARRATIVE_MEMBERS = "narrative_members"
NARRATIVE_COORDINATION = "narrative_coordination"  # pipeline.coordination.NARRATIVE_COORDINATION
CHECKWORTHINESS = "checkworthiness"
LINKRISK = "linkrisk"


def first(doc: dict[str, Any], *keys: str, default: Any = None) -> Any:
    for key in keys:
        value = doc.get(key)
        if value not in (None, "", [], {}):
            return value
    return default


def _float(value: Any) -> float | None:
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def _decided_text(value: Any) -> str:
    """decided_by is a string, or (triage) a mapping of stage -> model/rule version."""
    if isinstance(value, dict):
        return "; ".join(f"{k}: {v}" for k, v in value.items() if v)
    return str(value or "")


def _components(value: Any) -> dict[str, dict[str, Any]]:
    """Queue components as {name: {value, weight, contribution, evidence}} (plain numbers accepted)."""
    out: dict[str, dict[str, Any]] = {}
    if isinstance(value, dict):
        for name, item in value.items():
            if isinstance(item, dict):
                out[name] = {"value": _float(item.get("value")), "weight": _float(item.get("weight")),
                             "contribution": _float(item.get("contribution")), "evidence": item.get("evidence") or {}}
            else:
                out[name] = {"value": _float(item), "weight": None, "contribution": None, "evidence": {}}
    return out


def queue_entries(storage: Storage, org: str, limit: int = 50) -> list[dict[str, Any]]:
    """Triage queue, highest priority first: posts (with the stored post) and narratives."""
    rows = storage.list_docs(org, QUEUE, limit=limit, order="sort_desc")
    entries = []
    for doc_id, doc in rows:
        kind = "narrative" if doc.get("kind") == "narrative" or doc_id.startswith("narrative:") else "post"
        narrative_id = str(first(doc, "narrative_id", default=doc_id.removeprefix("narrative:"))) if kind == "narrative" else None
        post_id = None if kind == "narrative" else str(first(doc, "post_id", "id", default=doc_id))
        entries.append({
            "id": doc_id,
            "kind": kind,
            "post_id": post_id,
            "narrative_id": narrative_id,
            "href": f"/narratives/{narrative_id}" if kind == "narrative" else f"/posts/{post_id}",
            "title": str(first(doc, "title", "text", default="")),
            "priority": QueueEntry.from_doc(doc_id, doc).priority,
            "gated": bool(doc.get("gated")),
            "gate_reason": doc.get("gate_reason") or "",
            "components": _components(first(doc, "components", "factors", default={})),
            "reason": first(doc, "reason", "explanation", "why", default=""),
            "decided_by": _decided_text(doc.get("decided_by")),
            "raw": doc,
        })
    posts = storage.get_posts(org, [e["post_id"] for e in entries if e["post_id"]])
    for e in entries:
        e["post"] = posts.get(e["post_id"]) if e["post_id"] else None
    return entries


def queue_entry_of_post(storage: Storage, org: str, post_id: str) -> dict[str, Any] | None:
    """The post's own triage entry (priority, components with their evidence), when queued."""
    doc = storage.get_docs(org, QUEUE, [post_id]).get(post_id)
    if doc is None:
        return None
    return {"priority": QueueEntry.from_doc(post_id, doc).priority, "gated": bool(doc.get("gated")), "gate_reason": doc.get("gate_reason") or "",
            "components": _components(first(doc, "components", "factors", default={})), "decided_by": _decided_text(doc.get("decided_by"))}


def recent_posts_as_queue(storage: Storage, org: str, limit: int = 20) -> list[dict[str, Any]]:
    """Without triage scores yet, the newest posts stand in for the queue (labelled as such)."""
    return [
        {"id": p.id, "kind": "post", "post_id": p.id, "narrative_id": None, "href": f"/posts/{p.id}", "title": p.text, "priority": None,
         "gated": False, "gate_reason": "", "components": {}, "reason": "", "decided_by": "", "raw": {}, "post": p}
        for p in storage.list_posts(org, limit=limit)
    ]


def alerts(storage: Storage, org: str, limit: int = 20) -> list[dict[str, Any]]:
    out = []
    for doc_id, doc in storage.list_docs(org, ALERTS, limit=limit, order="updated_desc"):
        out.append({
            "id": doc_id,
            "kind": first(doc, "kind", "type", "signal", default="alert"),
            "title": first(doc, "title", "summary", "message", "description", default=" · ".join(doc.get("top_terms", [])[:5]) or doc_id),
            "severity": first(doc, "severity", "level", "score", default=""),
            "status": first(doc, "status", default=""),
            "at": first(doc, "updated_at", "raised_at", "created_at", "at", "detected_at", default=""),
            "narrative_id": first(doc, "narrative_id", "cluster_id", default=None),
            "post_ids": list(first(doc, "post_ids", "posts", default=[]))[:20],
            "decided_by": first(doc, "decided_by", default=""),
            "raw": doc,
        })
    return out


def _narrative(doc_id: str, doc: dict[str, Any], collection: str) -> dict[str, Any]:
    members = first(doc, "post_ids", "posts", "members", default=[])
    if not members and isinstance(doc.get("recent_posts"), list):  # [(post id, time, method, similarity), ...]
        members = [m[0] if isinstance(m, list | tuple) else m for m in doc["recent_posts"]]
    if members and isinstance(members[0], dict):
        members = [m.get("id") or m.get("post_id") for m in members]
    representative: dict[str, Any] = doc["representative"] if isinstance(doc.get("representative"), dict) else {}
    label = first(doc, "label", "title", "name", "summary", default=None)
    if label is None:  # a real sentence of the story, as its author spelled it; key words only without one
        terms = doc.get("top_terms") or []
        label = claim_sentence(str(representative.get("text", ""))) or " · ".join(map(str, terms[:5])) or doc_id
    factchecks = first(doc, "factcheck_ids", "matched_factchecks", "factchecks", default=[])
    return {
        "id": doc_id,
        "collection": collection,
        "label": label,
        "size": int(first(doc, "size", "post_count", "count", default=len(members)) or 0),
        "growth": _float(first(doc, "growth", "velocity", "growth_rate", "recent_posts_count")),
        "heat": _float(doc.get("heat_log2")),
        "first_seen": doc.get("first_seen"),
        "last_seen": doc.get("last_seen"),
        "languages": first(doc, "languages", "language_counts", default={}),
        "top_terms": doc.get("top_terms") or [],
        "post_ids": [str(m) for m in members if m],
        "representatives": [str(representative["post_id"])] if representative.get("post_id") else
        [str(m) for m in first(doc, "representative_post_ids", "representatives", "examples", default=[]) if isinstance(m, str)],
        "factcheck_ids": [str(f.get("factcheck_id")) if isinstance(f, dict) else str(f) for f in factchecks if f],
        "accounts": first(doc, "coordinated_accounts", "accounts", default=[]),
        "timeline": first(doc, "timeline", "counts_daily", "counts_by_day", "daily_counts", default=None),
        "decided_by": _decided_text(doc.get("decided_by")),
        "raw": doc,
    }


_URLISH = re.compile(r"https?://\S+|www\.\S+|(?<!\w)[@#]\w+")
_SENTENCE_END = re.compile(r"(?<=[.!?។៕…])\s+|\n+")
_EDGE = re.compile(r"^[^\w\u1780-\u17ff]+|[\s,;:·\-–—]+$")


def claim_sentence(text: str, limit: int = 140) -> str:
    """The first sentence of a post that says something (links, mentions, hashtags and leading
    emoji dropped), in its own spelling: a narrative's title."""
    cleaned = _URLISH.sub(" ", text)
    for part in _SENTENCE_END.split(cleaned):
        sentence = _EDGE.sub("", " ".join(part.split()))
        if len(sentence.split()) >= 4 or (sentence and len(sentence) >= 20):
            if len(sentence) > limit:
                cut = sentence[:limit].rsplit(" ", 1)[0] if " " in sentence[:limit] else sentence[:limit]
                sentence = cut.rstrip(",;: ") + "…"
            return sentence
    return _EDGE.sub("", " ".join(cleaned.split()))[:limit]


def narratives(storage: Storage, org: str, limit: int = 20) -> list[dict[str, Any]]:
    """Narratives growing now first: the stage's sort key (a decayed count) orders them;
    an explicit `growth` figure, when a stage records one, goes first."""
    for collection in NARRATIVES:
        rows = storage.list_docs(org, collection, limit=max(limit, 200), order="sort_desc")
        if rows:
            items = [_narrative(i, d, collection) for i, d in rows if not d.get("merged_into")]
            if any(n["growth"] is not None for n in items):
                items.sort(key=lambda n: -(n["growth"] or 0.0))
            # A single post is not yet a narrative worth a desk's attention: shown only when
            # nothing has repeated yet.
            repeated = [n for n in items if n["size"] >= 2]
            return (repeated or items)[:limit]
    return []


def narrative(storage: Storage, org: str, narrative_id: str) -> dict[str, Any]:
    for collection in NARRATIVES:
        found = storage.get_docs(org, collection, [narrative_id])
        if narrative_id in found:
            item = _narrative(narrative_id, found[narrative_id], collection)
            item["accounts"] = [a if isinstance(a, dict) else {"account": str(a)} for a in item["accounts"]]
            # Coordinated accounts, when the coordination stage (or `coordination --store`) linked some.
            linked = storage.get_docs(org, NARRATIVE_COORDINATION, [narrative_id]).get(narrative_id)
            if linked and linked.get("accounts"):
                item["accounts"] = linked["accounts"]
                item["coordination"] = linked
            return item
    raise NotFound(f"narrative '{narrative_id}' not found")


def narrative_of_post(storage: Storage, org: str, post_id: str) -> dict[str, Any] | None:
    membership = storage.get_docs(org, NARRATIVE_MEMBERS, [post_id]).get(post_id)
    if membership and membership.get("narrative_id"):
        try:
            item = narrative(storage, org, str(membership["narrative_id"]))
        except NotFound:
            item = None
        if item is not None:
            item["membership"] = membership  # how the post joined: method, similarity, neighbour
            return item
    for item in narratives(storage, org, limit=500):
        if post_id in item["post_ids"]:
            return item
    return None


def daily_counts(posts: Iterable[Post]) -> list[tuple[date, int]]:
    days = Counter(p.created_at.date() for p in posts if p.created_at)
    return sorted(days.items())


def narrative_timeline_hourly(item: dict[str, Any]) -> list[tuple[datetime, int]]:
    """Posts per hour from the stage's `counts_hourly` ({"2026-11-12T08:00:00+00:00": n}), when stored."""
    hourly = item["raw"].get("counts_hourly")
    points = []
    if isinstance(hourly, dict):
        for hour, count in hourly.items():
            parsed = parse_date_lenient(hour)
            if parsed is not None:
                points.append((parsed.replace(tzinfo=None, minute=0, second=0, microsecond=0), int(count or 0)))
    return sorted(points)


def chart_series(storage: Storage, org: str, items: Sequence[dict[str, Any]]) -> tuple[dict[str, list[tuple[Any, int]]], timedelta]:
    """Posts per day for each narrative; per hour instead when they all fit in two days and
    the stage stored hourly counts (a story that broke this morning is a point per day)."""
    daily = {str(n["label"])[:60]: narrative_timeline(storage, org, n) for n in items}
    days = {d for points in daily.values() for d, _ in points}
    if days and (max(days) - min(days)).days < 2:
        hourly = {str(n["label"])[:60]: narrative_timeline_hourly(n) for n in items}
        if all(hourly.values()):
            return hourly, timedelta(hours=1)
    return daily, timedelta(days=1)


def narrative_timeline(storage: Storage, org: str, item: dict[str, Any]) -> list[tuple[date, int]]:
    """Posts per day: the stage's own timeline when it stored one, else counted from member posts."""
    timeline = item.get("timeline")
    points: list[tuple[date, int]] = []
    if isinstance(timeline, dict):
        timeline = list(timeline.items())
    if isinstance(timeline, list):
        for point in timeline:
            if isinstance(point, dict):
                day, count = first(point, "date", "day", "t", "bucket"), first(point, "count", "n", "posts", default=0)
            elif isinstance(point, list | tuple) and len(point) == 2:
                day, count = point
            else:
                continue
            parsed = parse_date_lenient(day)
            if parsed is not None:
                points.append((parsed.date(), int(count or 0)))
    if points:
        return sorted(points)
    return daily_counts(storage.get_posts(org, item["post_ids"][:5000]).values())


def checkworthiness(storage: Storage, org: str, post_id: str) -> dict[str, Any] | None:
    doc = storage.get_docs(org, CHECKWORTHINESS, [post_id]).get(post_id)
    if doc is None:
        return None
    return {
        "score": _float(first(doc, "score", "checkworthiness", "probability")),
        "label": first(doc, "label", "decision", default=""),
        "reasons": first(doc, "reasons", "contributions", "evidence", "features", "why", default=[]),
        "decided_by": first(doc, "decided_by", default=""),
        "raw": doc,
    }


def _reason_text(reason: Any) -> str:
    if isinstance(reason, dict):
        code = first(reason, "code", "category", default="")
        weight = _float(reason.get("weight"))
        detail = first(reason, "detail", "message", default="")
        return f"{code}{f' ({weight:.2f})' if weight is not None else ''}: {detail}".strip(": ")
    return str(reason)


def link_risks(storage: Storage, org: str, post: Post) -> list[dict[str, Any]]:
    """Scored links of the post: the linkrisk stage stores one document per post
    (`urls`: riskiest first, each with score, level, reasons, feed hits, decided_by)."""
    doc = storage.get_docs(org, LINKRISK, [post.id]).get(post.id)
    if doc is None:
        return []
    links: list[Any] = next((doc[k] for k in ("urls", "links") if isinstance(doc.get(k), list)), [])
    out = []
    for link in links:
        if not isinstance(link, dict):
            continue
        out.append({
            "url": first(link, "url", "normalized", "host", default=""),
            "risk": first(link, "level", "risk", default=""),
            "score": _float(link.get("score")),
            "reasons": [_reason_text(r) for r in first(link, "reasons", default=[])]
            + [f"feed {h.get('feed', '')}: {h.get('threat') or h.get('kind', '')}" for h in first(link, "feed_hits", default=[]) if isinstance(h, dict)],
            "official": link.get("official"),
            "decided_by": first(link, "decided_by", default=doc.get("decided_by", "")),
            "raw": link,
        })
    return out


def matches_with_factchecks(storage: Storage, org: str, post_id: str) -> list[tuple[MatchCandidate, FactCheck | None]]:
    matches = storage.matches_for_post(org, post_id)
    fcs = storage.get_factchecks(org, [m.factcheck_id for m in matches])
    return [(m, fcs.get(m.factcheck_id)) for m in matches]


def posts_by_ids(storage: Storage, org: str, ids: Sequence[str]) -> list[Post]:
    found = storage.get_posts(org, list(ids))
    return [found[i] for i in ids if i in found]


def day_key(value: datetime | None) -> str:
    return value.date().isoformat() if value else ""


def public_reports(storage: Storage, org: str, limit: int = 10) -> list[dict[str, Any]]:
    """Posts the public reported, newest first, with the stored post."""
    rows = [doc for _, doc in storage.list_docs(org, "reports", limit=limit, order="sort_desc")]
    posts = storage.get_posts(org, [r["post_id"] for r in rows])
    return [r | {"post": posts.get(r["post_id"])} for r in rows]
