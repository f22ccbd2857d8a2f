"""Link-risk verdicts across the border: the links we flagged, as a blocklist feed at the partner.

Sending (kind "linkrisk", partners only): every link our link-risk stage flagged in a stored post
becomes one item, once: the normalised URL, its host and registered domain, score (per mille),
level, the reasons (code, category, detail) and decided_by. Links a partner's feed lists are not
sent on (no echo between desks).

Receiving: the accepted verdicts of a partner are kept in "federation_links" and make up one
link-risk feed of ours, `partner-<name>` (format "federation"), rebuilt from the verdicts signed by
keys we still trust; when it changes, our stored posts are scored again (linkrisk.stage), so a
phishing link flagged in Phnom Penh is flagged in Hanoi too, with the partner named as the feed.
"""

from __future__ import annotations

import hashlib
from typing import Any

from factbridge.backends.storage.base import Storage
from factbridge.federation.identity import KeyRing, now_iso
from factbridge.federation.records import PARTNER_LINKS as PARTNER_LINKS
from factbridge.federation.records import OutboxMark, Partner, PartnerLinks
from factbridge.pipeline.records import LinkRisks, LinkRiskUrl

FEED_PREFIX = "partner-"
MAX_POSTS = 20_000  # the riskiest stored posts looked at per refresh


def link_item_id(normalized: str) -> str:
    return "url-" + hashlib.sha256(normalized.encode("utf-8")).hexdigest()[:20]


def _echo(url: LinkRiskUrl) -> bool:
    """A partner's feed lists it already: that partner knows, and its other partners hear it from it."""
    return any(str((r.get("evidence") or {}).get("feed", "")).startswith(FEED_PREFIX) for r in url.reasons)


def links_to_share(storage: Storage, org: str, sent: dict[str, OutboxMark]) -> list[dict[str, Any]]:
    due: dict[str, dict[str, Any]] = {}
    for record in LinkRisks(storage).riskiest(org, MAX_POSTS):
        if not record.flagged_urls:
            if record.max_score <= 0.0:
                break  # sorted by score: the rest have none
            continue
        for url in record.urls:
            if not url.flagged or _echo(url):
                continue
            item_id = link_item_id(url.normalized)
            if f"linkrisk:{item_id}" in sent or item_id in due:
                continue
            due[item_id] = {
                "link_id": item_id,
                "url": url.normalized,
                "host": url.host,
                "registered_domain": url.registered_domain,
                "score": round(url.score * 1000),  # per mille: signed items carry integers
                "level": url.level,
                "reasons": [{k: r.get(k) for k in ("code", "category", "detail")} for r in url.reasons],
                "decided_by": url.decided_by,
            }
    return list(due.values())


def rebuild_partner_feed(services: Any, org: str, partner: Partner, ring: KeyRing) -> dict[str, Any]:
    """Store the partner's verdicts (from keys we trust) as our feed `partner-<name>`; if it changed,
    score our stored posts again. Returns {"feed", "status", "entries", "rescored"}."""
    from factbridge.linkrisk.feeds import FeedEntry, ParsedFeed, store_feed, url_key
    from factbridge.linkrisk.stage import rescore_posts

    name = partner.name
    entries = []
    for link in PartnerLinks(services.storage).iter(org):
        if link.partner != name or not ring.trusted(link.key_id):
            continue
        try:
            key = url_key(link.url)
        except ValueError:
            continue
        reasons = "; ".join(str(r.get("detail") or r.get("code")) for r in link.reasons)[:300]
        entries.append(FeedEntry("url", key, (link.received_at or now_iso())[:10], f"{link.desk or name}: {reasons}"))
    feed = ParsedFeed(name=f"{FEED_PREFIX}{name}", format="federation", source=partner.url, entries=entries, quarantined=[],
                      feed_date=now_iso()[:10], date_source="federation sync")
    update = store_feed(services.storage, org, feed)
    rescored: dict[str, Any] = {}
    if update.status != "unchanged" and services.storage.count_posts(org):
        rescored = rescore_posts(services, org)
    return {"feed": feed.name, "status": update.status, "entries": len(entries), "rescored": rescored}
