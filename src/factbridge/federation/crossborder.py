"""Narratives that cross the border: what we share of our narratives, and the "cross-border" alert.

A narrative is shared (kind "narrative") once it has `federation_narrative_min_posts` posts, and
again each time it doubles or the fact-checks it repeats change. What is shared is what a partner
needs to recognise the story, nothing about accounts: label and top terms, size, languages,
first/last seen, the text of its representative post (a public post, without id or author), and
the claims it repeats as *claim references* both desks can compute:

    {"org": "<desk's org>", "item_id": "<case id>"}   a verdict published by a desk of the network
    {"url": "<ClaimReview url>"}                      any other fact-check

Our own published verdict (library id = its public URL) is referred to by our org and case id;
a partner's (`partner/<name>/<case id>`) by the partner's org and case id; so a Vietnamese
narrative repeating the Khmer desk's debunk and the Khmer narrative repeating it meet on the
same reference. When a partner's narrative and one of ours share a claim reference, a
"cross-border" alert is raised on our side (the partner raises its own when it reads ours).
"""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

from factbridge.backends.storage.base import Storage
from factbridge.federation.identity import now_iso
from factbridge.federation.records import PARTNER_NARRATIVES as PARTNER_NARRATIVES
from factbridge.federation.records import OutboxMark, PartnerNarratives, PartnerRecords
from factbridge.pipeline import records
from factbridge.pipeline.alerts import store_alerts
from factbridge.pipeline.records import Alert, Alerts, NarrativeRecord, Narratives
from factbridge.workflow.records import PublishedPages

ALERTS = records.ALERTS  # pipeline.bursts stores alerts here; ours sit beside them with kind "cross-border"
DECIDED_BY = "federation-cross-border-1"
MAX_NARRATIVES = 2000  # the most recently active narratives compared with a partner's


def published_cases(storage: Storage, org: str) -> dict[str, str]:
    """Our published verdicts: public URL (their library id) -> case id."""
    return {page.url: page.case_id for page in PublishedPages(storage).all_oldest_first(org)}


def claim_refs(storage: Storage, org: str, factcheck_ids: list[str], partner_orgs: dict[str, str],
               published: dict[str, str]) -> list[dict[str, str]]:
    """Claim references of library fact-checks (see the module docstring), in a stable order."""
    fcs = storage.get_factchecks(org, factcheck_ids)
    refs: list[dict[str, str]] = []
    for fc_id in factcheck_ids:
        fc = fcs.get(fc_id)
        if fc_id.startswith("partner/"):
            _, name, case_id = fc_id.split("/", 2)
            refs.append({"org": partner_orgs.get(name, name), "item_id": case_id})
        elif fc is not None and fc.source_format == "factbridge" and published.get(fc.url):
            refs.append({"org": org, "item_id": str(published[fc.url])})
        elif fc is not None and fc.url:
            refs.append({"url": fc.url})
    return sorted({tuple(sorted(r.items())): r for r in refs}.values(), key=lambda r: sorted(r.items()))


def _key(ref: dict[str, str]) -> tuple[tuple[str, str], ...]:
    return tuple(sorted(ref.items()))


def narrative_payload(storage: Storage, org: str, narrative: NarrativeRecord, partner_orgs: dict[str, str],
                      published: dict[str, str]) -> dict[str, Any]:
    return {
        "narrative_id": narrative.id,
        "label": " · ".join(narrative.top_terms[:5]),
        "top_terms": narrative.top_terms[:12],
        "size": narrative.size,
        "languages": dict(narrative.languages),
        "first_seen": narrative.first_seen or None,
        "last_seen": narrative.last_seen or None,
        "representative_text": narrative.representative_text[:280],
        "claims": claim_refs(storage, org, _matched(narrative), partner_orgs, published),
        "decided_by": narrative.decided_by,
    }


def _matched(narrative: NarrativeRecord) -> list[str]:
    """The fact-checks the narrative repeats (matched, or possibly)."""
    return [str(f["factcheck_id"]) for f in narrative.factchecks if f.get("factcheck_id") and f.get("decision") in ("match", "possible")]


def narratives_to_share(storage: Storage, org: str, min_posts: int, sent: dict[str, OutboxMark],
                        partner_orgs: dict[str, str]) -> list[dict[str, Any]]:
    """Payloads of the narratives due to be shared (new, doubled, or repeating other claims)."""
    due = []
    published = published_cases(storage, org)
    for narrative in Narratives(storage).recently_updated(org, MAX_NARRATIVES):
        if narrative.size < min_posts:
            continue
        payload = narrative_payload(storage, org, narrative, partner_orgs, published)
        before = sent.get(f"narrative:{narrative.id}")
        if before is None or payload["size"] >= 2 * (before.size or 0) or payload["claims"] != before.claims:
            due.append(payload)
    return due


def partner_orgs(storage: Storage, org: str) -> dict[str, str]:
    """Partner name -> its organisation id (from the registry in federation.partners)."""
    return {p.name: p.org for p in PartnerRecords(storage).iter(org)}


def detect_cross_border(services: Any, org: str) -> list[dict[str, Any]]:
    """Raise (or bring up to date) a "cross-border" alert for every pair of a partner's narrative and
    one of ours that repeat the same claim. Returns the alerts that are new."""
    storage = services.storage
    theirs = list(PartnerNarratives(storage).iter(org))
    if not theirs:
        return []
    orgs = partner_orgs(storage, org)
    published = published_cases(storage, org)
    alerts = Alerts(storage)
    ours = []
    for narrative in Narratives(storage).recently_updated(org, MAX_NARRATIVES):
        ids = _matched(narrative)
        if ids:
            ours.append((narrative, {_key(r): r for r in claim_refs(storage, org, ids, orgs, published)}))
    changed: list[tuple[Alert, float | None]] = []
    new: list[Alert] = []
    now = now_iso()
    for partner_narrative in theirs:
        their_refs = {_key(r): r for r in partner_narrative.claims}
        desk = partner_narrative.desk or partner_narrative.partner
        for narrative, refs in ours:
            shared = [refs[k] for k in sorted(set(refs) & set(their_refs))]
            if not shared:
                continue
            alert_id = f"xb-{partner_narrative.partner}-{partner_narrative.narrative_id}-{narrative.id}"
            existing = alerts.get(org, [alert_id]).get(alert_id)
            alert = Alert(
                id=alert_id,
                kind="cross-border",
                narrative_id=narrative.id,
                status=existing.status if existing else "new",
                raised_at=(existing.raised_at if existing else "") or now,
                updated_at=now,
                summary=f"Also spreading at {desk}: {partner_narrative.representative_text or partner_narrative.label}"[:280],
                top_terms=narrative.top_terms,
                evidence={
                    "partner": partner_narrative.partner,
                    "partner_desk": desk,
                    "partner_narrative": partner_narrative.summary(),
                    "our_narrative": {"id": narrative.id, "size": narrative.size, "languages": narrative.languages},
                    "shared_claims": shared,
                },
                decided_by=DECIDED_BY,
            )
            if existing and replace(existing, updated_at="") == replace(alert, updated_at=""):
                continue
            changed.append((alert, datetime.now(UTC).timestamp()))
            if existing is None:
                new.append(alert)
    if changed:  # stored and delivered the way every alert is (pipeline.alerts.store_alerts)
        store_alerts(storage, services.alert_dispatcher, org, changed, deliver=new)
    return [a.to_doc() for a in new]


# -- our burst alerts, and a partner's -------------------------------------------------

SHARED_ALERT_KINDS = ("burst", "resurfacing")


def alerts_to_share(storage: Storage, org: str, sent: dict[str, OutboxMark], partner_orgs: dict[str, str]) -> list[dict[str, Any]]:
    """Payloads of our burst and resurfacing alerts not yet shared in their current kind: what
    spiked, when and how much, and the debunked claims it repeats (no post, no account)."""
    due = []
    published: dict[str, str] | None = None
    for alert in Alerts(storage).recent(org, limit=500):
        if alert.kind not in SHARED_ALERT_KINDS:
            continue
        before = sent.get(f"alert:{alert.id}")
        if before is not None and before.kind == alert.kind:
            continue
        if published is None:
            published = published_cases(storage, org)
        evidence = alert.evidence
        debunks = [str(d["factcheck_id"]) for d in evidence.get("debunks", []) if d.get("factcheck_id")]
        due.append({
            "alert_id": alert.id,
            "kind": alert.kind,
            "raised_at": alert.raised_at or None,
            "summary": alert.summary[:280],
            "top_terms": alert.top_terms[:12],
            "narrative_id": alert.narrative_id,
            "burst": {k: evidence.get(k) for k in ("burst_start", "burst_end", "posts_in_burst", "narrative_size", "quiet_hours_before")},
            "claims": claim_refs(storage, org, debunks, partner_orgs, published),
            "decided_by": alert.decided_by,
        })
    return due


def partner_alert(payload: dict[str, Any], partner: str, desk: str, received_at: str) -> Alert:
    """A partner's alert as an alert of ours (kind "partner-burst" / "partner-resurfacing"), offered
    beside our own: it names the partner and keeps its evidence; it never touches our alerts."""
    top_terms = payload.get("top_terms")
    return Alert(
        id=f"partner-{partner}-{payload['alert_id']}",
        kind=f"partner-{payload['kind']}",
        narrative_id=None,  # the partner's narrative is not one of ours (it is in the evidence)
        status="new",
        raised_at=received_at,
        updated_at=received_at,
        summary=f"At {desk}: {payload.get('summary', '')}"[:280],
        top_terms=[str(t) for t in top_terms] if isinstance(top_terms, list) else [],
        evidence={"partner": partner, "partner_desk": desk, "partner_alert": payload},
        decided_by=f"{DECIDED_BY} ({desk}: {payload.get('decided_by', '')})",
    )
