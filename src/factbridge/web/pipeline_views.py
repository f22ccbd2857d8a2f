"""Read what the pipeline stores, for pages and the API.

The later stages (check-worthiness, narratives, link risk, alerts, the triage
queue) store typed records (`factbridge.pipeline.records`); this module reads them
through their accessors and shapes them for templates and JSON. A collection that is
absent or empty gives an empty list. `raw` carries the whole record, so nothing the
stage recorded as evidence is hidden from the reviewer.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import asdict
from datetime import date, datetime, timedelta
from typing import Any

from factbridge.backends.storage.base import Storage
from factbridge.errors import NotFound
from factbridge.models import FactCheck, MatchCandidate, Post
from factbridge.pipeline import records
from factbridge.pipeline.records import (
    Alert,
    Alerts,
    CheckworthinessScores,
    LinkRisks,
    NarrativeCoordinations,
    NarrativeMembers,
    NarrativeRecord,
    Narratives,
    QueueEntry,
    TopicRecord,
    TriageQueue,
)
from factbridge.text.dates import parse_date_lenient

QUEUE = records.QUEUE
ALERTS = records.ALERTS
NARRATIVES = (records.NARRATIVES, records.TOPICS)
NARRATIVE_MEMBERS = records.MEMBERS
CHECKWORTHINESS = records.CHECKWORTHINESS
LINKRISK = records.LINKRISK


def _decided_text(value: str | dict[str, str]) -> str:
    """decided_by is a string, or (triage) a mapping of stage -> model/rule version."""
    if isinstance(value, dict):
        return "; ".join(f"{k}: {v}" for k, v in value.items() if v)
    return value


def _components(entry: QueueEntry) -> dict[str, dict[str, Any]]:
    """Queue components as {name: {value, weight, contribution, evidence}}."""
    return {name: c.to_doc() for name, c in entry.components.items()}


def _queue_row(entry: QueueEntry) -> dict[str, Any]:
    return {
        "id": entry.id,
        "kind": entry.kind,
        "post_id": entry.post_id,
        "narrative_id": entry.narrative_id,
        "href": f"/narratives/{entry.narrative_id}" if entry.kind == "narrative" else f"/posts/{entry.post_id}",
        "title": entry.title or entry.text,
        "priority": entry.priority,
        "gated": entry.gated,
        "gate_reason": entry.gate_reason or "",
        "components": _components(entry),
        "decided_by": _decided_text(entry.decided_by),
        "raw": entry.to_doc(),
    }


def queue_entries(storage: Storage, org: str, limit: int = 50) -> list[dict[str, Any]]:
    """Triage queue, highest priority first: posts (with the stored post) and narratives."""
    entries = [_queue_row(e) for e in TriageQueue(storage).top(org, limit)]
    posts = storage.get_posts(org, [e["post_id"] for e in entries if e["post_id"]])
    for e in entries:
        e["post"] = posts.get(e["post_id"]) if e["post_id"] else None
    return entries


def queue_entry_of_post(storage: Storage, org: str, post_id: str) -> dict[str, Any] | None:
    """The post's own triage entry (priority, components with their evidence), when queued."""
    entry = TriageQueue(storage).get(org, [post_id]).get(post_id)
    if entry is None:
        return None
    return {"priority": entry.priority, "gated": entry.gated, "gate_reason": entry.gate_reason or "",
            "components": _components(entry), "decided_by": _decided_text(entry.decided_by)}


def recent_posts_as_queue(storage: Storage, org: str, limit: int = 20) -> list[dict[str, Any]]:
    """Without triage scores yet, the newest posts stand in for the queue (labelled as such)."""
    return [
        {"id": p.id, "kind": "post", "post_id": p.id, "narrative_id": None, "href": f"/posts/{p.id}", "title": p.text, "priority": None,
         "gated": False, "gate_reason": "", "components": {}, "decided_by": "", "raw": {}, "post": p}
        for p in storage.list_posts(org, limit=limit)
    ]


def _alert_row(alert: Alert) -> dict[str, Any]:
    return {
        "id": alert.id,
        "kind": alert.kind,
        "title": alert.summary or " · ".join(alert.top_terms[:5]) or alert.id,
        "status": alert.status,
        "at": alert.updated_at or alert.raised_at,
        "narrative_id": alert.narrative_id,
        "post_ids": alert.post_ids[:20],
        "decided_by": alert.decided_by,
        "raw": alert.to_doc(),
    }


def alerts(storage: Storage, org: str, limit: int = 20) -> list[dict[str, Any]]:
    return [_alert_row(a) for a in Alerts(storage).recent(org, limit)]


def _narrative(record: NarrativeRecord | TopicRecord, collection: str) -> dict[str, Any]:
    if isinstance(record, NarrativeRecord):
        label = claim_sentence(record.representative_text) or " · ".join(record.top_terms[:5]) or record.id
        representatives = [record.representative_post_id] if record.representative_post_id else []
        post_ids, factcheck_ids, timeline = record.post_ids, record.factcheck_ids, record.counts_daily
    else:  # a topic: its label is its key words
        label = record.label or " · ".join(record.top_terms[:5]) or record.id
        representatives, post_ids, factcheck_ids, timeline = [], [], [], {}
    return {
        "id": record.id,
        "collection": collection,
        "label": label,
        "size": record.size,
        "growth": None,  # no stage records a growth figure: the heat (a decayed count) orders them
        "heat": record.heat_log2,
        "first_seen": record.first_seen or None,
        "last_seen": record.last_seen or None,
        "languages": record.languages,
        "top_terms": record.top_terms,
        "post_ids": post_ids,
        "representatives": representatives,
        "factcheck_ids": factcheck_ids,
        "accounts": [],
        "timeline": timeline or None,
        "decided_by": record.decided_by,
        "raw": asdict(record),
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
    """Narratives growing now first: the stage's sort key (a decayed count) orders them."""
    accessor = Narratives(storage)
    items = [_narrative(n, records.NARRATIVES) for n in accessor.hottest(org, max(limit, 200))]
    if not items:  # topics without narratives: older stores
        items = [_narrative(t, records.TOPICS) for t in accessor.hottest_topics(org, max(limit, 200))]
    # A single post is not yet a narrative worth a desk's attention: shown only when
    # nothing has repeated yet.
    repeated = [n for n in items if n["size"] >= 2]
    return (repeated or items)[:limit]


def narrative(storage: Storage, org: str, narrative_id: str) -> dict[str, Any]:
    accessor = Narratives(storage)
    found: NarrativeRecord | TopicRecord | None = accessor.get(org, [narrative_id]).get(narrative_id)
    collection = records.NARRATIVES
    if found is None:
        found, collection = accessor.topics(org, [narrative_id]).get(narrative_id), records.TOPICS
    if found is None:
        raise NotFound(f"narrative '{narrative_id}' not found")
    item = _narrative(found, collection)
    # Coordinated accounts, when the coordination stage (or `coordination --store`) linked some.
    linked = NarrativeCoordinations(storage).get(org, [narrative_id]).get(narrative_id)
    if linked and linked.accounts:
        item["accounts"] = [a.to_doc() for a in linked.accounts]
        item["coordination"] = linked.to_doc()
    return item


def narrative_of_post(storage: Storage, org: str, post_id: str) -> dict[str, Any] | None:
    membership = NarrativeMembers(storage).get(org, [post_id]).get(post_id)
    if membership is None:
        return None
    try:
        item = narrative(storage, org, membership.narrative_id)
    except NotFound:
        return None
    item["membership"] = asdict(membership)  # how the post joined: method, similarity, neighbour
    return item


def daily_counts(posts: Iterable[Post]) -> list[tuple[date, int]]:
    days = Counter(p.created_at.date() for p in posts if p.created_at)
    return sorted(days.items())


def narrative_timeline_hourly(item: dict[str, Any]) -> list[tuple[datetime, int]]:
    """Posts per hour from the stage's `counts_hourly` ({"2026-11-12T08": n}), when stored."""
    hourly = item["raw"].get("counts_hourly") or {}
    points = []
    for hour, count in hourly.items():
        parsed = parse_date_lenient(hour if len(hour) > 13 else f"{hour}:00:00+00:00")
        if parsed is not None:
            points.append((parsed.replace(tzinfo=None, minute=0, second=0, microsecond=0), int(count)))
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
    """Posts per day: the stage's own daily counts when it stored them, else counted from member posts."""
    points: list[tuple[date, int]] = []
    for day, count in (item.get("timeline") or {}).items():
        parsed = parse_date_lenient(day)
        if parsed is not None:
            points.append((parsed.date(), int(count)))
    if points:
        return sorted(points)
    return daily_counts(storage.get_posts(org, item["post_ids"][:5000]).values())


def checkworthiness(storage: Storage, org: str, post_id: str) -> dict[str, Any] | None:
    record = CheckworthinessScores(storage).get(org, [post_id]).get(post_id)
    if record is None:
        return None
    return {
        "score": record.score,
        "label": record.label,
        "reasons": record.contributions,  # per-feature contributions to the score
        "decided_by": record.decided_by,
        "raw": record.to_doc(),
    }


def _reason_text(reason: dict[str, Any]) -> str:
    weight = reason.get("weight")
    detail = reason.get("detail") or ""
    return f"{reason.get('code', '')}{f' ({weight:.2f})' if isinstance(weight, int | float) else ''}: {detail}".strip(": ")


def link_risks(storage: Storage, org: str, post: Post) -> list[dict[str, Any]]:
    """Scored links of the post, riskiest first: score, level, reasons, feed hits, decided_by."""
    record = LinkRisks(storage).get(org, [post.id]).get(post.id)
    if record is None:
        return []
    return [
        {
            "url": link.url,
            "risk": link.level,
            "score": link.score,
            "reasons": [_reason_text(r) for r in link.reasons]
            + [f"feed {h.get('feed', '')}: {h.get('threat') or h.get('kind', '')}" for h in link.feed_hits],
            "official": link.official,
            "decided_by": link.decided_by or record.decided_by,
            "raw": link.to_doc(),
        }
        for link in record.urls
    ]


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
    from factbridge.workflow.reports import Reports

    found = Reports(storage).newest(org, limit)
    posts = storage.get_posts(org, [r.post_id for r in found])
    return [r.to_doc() | {"post": posts.get(r.post_id)} for r in found]
