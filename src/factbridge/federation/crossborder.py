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

from datetime import UTC, datetime
from typing import Any

from factbridge.backends.storage.base import Storage, iter_docs
from factbridge.federation.identity import now_iso
from factbridge.pipeline import records
from factbridge.pipeline.alerts import store_alerts
from factbridge.pipeline.records import Alert

NARRATIVES = "narratives"  # pipeline.narratives stores them here
ALERTS = records.ALERTS  # pipeline.bursts stores alerts here; ours sit beside them with kind "cross-border"
PARTNER_NARRATIVES = "federation_narratives"
DECIDED_BY = "federation-cross-border-1"
MAX_NARRATIVES = 2000  # the most recently active narratives compared with a partner's


def published_cases(storage: Storage, org: str) -> dict[str, str]:
    """Our published verdicts: public URL (their library id) -> case id."""
    return {str(doc.get("url")): str(doc.get("case_id")) for _, doc in iter_docs(storage, org, "published")}


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


def narrative_payload(storage: Storage, org: str, doc: dict[str, Any], partner_orgs: dict[str, str],
                      published: dict[str, str]) -> dict[str, Any]:
    representative = doc.get("representative") or {}
    return {
        "narrative_id": doc["id"],
        "label": " · ".join(doc.get("top_terms", [])[:5]),
        "top_terms": list(doc.get("top_terms", []))[:12],
        "size": int(doc.get("size", 0)),
        "languages": dict(doc.get("languages") or {}),
        "first_seen": doc.get("first_seen"),
        "last_seen": doc.get("last_seen"),
        "representative_text": str(representative.get("text", ""))[:280],
        "claims": claim_refs(storage, org, [f["factcheck_id"] for f in doc.get("factchecks", []) if f.get("decision") in ("match", "possible")],
                             partner_orgs, published),
        "decided_by": doc.get("decided_by", ""),
    }


def narratives_to_share(storage: Storage, org: str, min_posts: int, sent: dict[str, dict[str, Any]],
                        partner_orgs: dict[str, str]) -> list[dict[str, Any]]:
    """Payloads of the narratives due to be shared (new, doubled, or repeating other claims)."""
    due = []
    published = published_cases(storage, org)
    for _, doc in storage.list_docs(org, NARRATIVES, limit=MAX_NARRATIVES, order="updated_desc"):
        if int(doc.get("size", 0)) < min_posts:
            continue
        payload = narrative_payload(storage, org, doc, partner_orgs, published)
        before = sent.get(f"narrative:{doc['id']}")
        if before is None or payload["size"] >= 2 * int(before.get("size", 0)) or payload["claims"] != before.get("claims"):
            due.append(payload)
    return due


def partner_orgs(storage: Storage, org: str) -> dict[str, str]:
    """Partner name -> its organisation id (from the registry in federation.partners)."""
    return {doc["name"]: doc["org"] for _, doc in iter_docs(storage, org, "federation_partners")}


def detect_cross_border(services: Any, org: str) -> list[dict[str, Any]]:
    """Raise (or bring up to date) a "cross-border" alert for every pair of a partner's narrative and
    one of ours that repeat the same claim. Returns the alerts that are new."""
    storage = services.storage
    theirs = [doc for _, doc in iter_docs(storage, org, PARTNER_NARRATIVES)]
    if not theirs:
        return []
    orgs = partner_orgs(storage, org)
    published = published_cases(storage, org)
    ours = []
    for _, doc in storage.list_docs(org, NARRATIVES, limit=MAX_NARRATIVES, order="updated_desc"):
        ids = [f["factcheck_id"] for f in doc.get("factchecks", []) if f.get("decision") in ("match", "possible")]
        if ids:
            ours.append((doc, {_key(r): r for r in claim_refs(storage, org, ids, orgs, published)}))
    rows: list[tuple[str, dict[str, Any], float | None]] = []
    new: list[dict[str, Any]] = []
    now = now_iso()
    for partner_doc in theirs:
        their_refs = {_key(r): r for r in partner_doc.get("claims", [])}
        for doc, refs in ours:
            shared = [refs[k] for k in sorted(set(refs) & set(their_refs))]
            if not shared:
                continue
            alert_id = f"xb-{partner_doc['partner']}-{partner_doc['narrative_id']}-{doc['id']}"
            existing = storage.get_docs(org, ALERTS, [alert_id]).get(alert_id)
            alert = Alert(
                id=alert_id,
                kind="cross-border",
                narrative_id=doc["id"],
                status=(existing or {}).get("status", "new"),
                raised_at=(existing or {}).get("raised_at") or now,
                updated_at=now,
                summary=f"Also spreading at {partner_doc.get('desk') or partner_doc['partner']}: "
                        f"{partner_doc.get('representative_text') or partner_doc.get('label', '')}"[:280],
                top_terms=doc.get("top_terms", []),
                evidence={
                    "partner": partner_doc["partner"],
                    "partner_desk": partner_doc.get("desk") or partner_doc["partner"],
                    "partner_narrative": {k: partner_doc.get(k) for k in ("narrative_id", "label", "size", "languages", "first_seen", "last_seen")},
                    "our_narrative": {"id": doc["id"], "size": doc.get("size"), "languages": doc.get("languages")},
                    "shared_claims": shared,
                },
                decided_by=DECIDED_BY,
            ).to_doc()
            if existing and {k: v for k, v in existing.items() if k != "updated_at"} == {k: v for k, v in alert.items() if k != "updated_at"}:
                continue
            rows.append((alert_id, alert, datetime.now(UTC).timestamp()))
            if existing is None:
                new.append(alert)
    if rows:  # stored and delivered the way every alert is (pipeline.alerts.store_alerts)
        store_alerts(storage, services.alert_dispatcher, org, [(Alert.from_doc(i, a), sort) for i, a, sort in rows],
                     deliver=[Alert.from_doc(a["id"], a) for a in new])
    return new


# -- our burst alerts, and a partner's -------------------------------------------------

SHARED_ALERT_KINDS = ("burst", "resurfacing")


def alerts_to_share(storage: Storage, org: str, sent: dict[str, dict[str, Any]], partner_orgs: dict[str, str]) -> list[dict[str, Any]]:
    """Payloads of our burst and resurfacing alerts not yet shared in their current kind: what
    spiked, when and how much, and the debunked claims it repeats (no post, no account)."""
    due = []
    published: dict[str, str] | None = None
    for _, alert in storage.list_docs(org, ALERTS, limit=500, order="updated_desc"):
        if alert.get("kind") not in SHARED_ALERT_KINDS:
            continue
        before = sent.get(f"alert:{alert['id']}")
        if before is not None and before.get("kind") == alert["kind"]:
            continue
        if published is None:
            published = published_cases(storage, org)
        evidence = alert.get("evidence") or {}
        debunks = [str(d["factcheck_id"]) for d in evidence.get("debunks", []) if d.get("factcheck_id")]
        due.append({
            "alert_id": alert["id"],
            "kind": alert["kind"],
            "raised_at": alert.get("raised_at"),
            "summary": str(alert.get("summary", ""))[:280],
            "top_terms": list(alert.get("top_terms", []))[:12],
            "narrative_id": alert.get("narrative_id"),
            "burst": {k: evidence.get(k) for k in ("burst_start", "burst_end", "posts_in_burst", "narrative_size", "quiet_hours_before")},
            "claims": claim_refs(storage, org, debunks, partner_orgs, published),
            "decided_by": alert.get("decided_by", ""),
        })
    return due


def partner_alert(payload: dict[str, Any], partner: str, desk: str, received_at: str) -> tuple[str, dict[str, Any]]:
    """A partner's alert as an alert of ours (kind "partner-burst" / "partner-resurfacing"), offered
    beside our own: it names the partner and keeps its evidence; it never touches our alerts."""
    alert_id = f"partner-{partner}-{payload['alert_id']}"
    return alert_id, {
        "id": alert_id,
        "kind": f"partner-{payload['kind']}",
        "narrative_id": None,  # the partner's narrative is not one of ours (it is in the evidence)
        "status": "new",
        "raised_at": received_at,
        "updated_at": received_at,
        "summary": f"At {desk}: {payload.get('summary', '')}"[:280],
        "top_terms": payload.get("top_terms", []),
        "evidence": {"partner": partner, "partner_desk": desk, "partner_alert": payload},
        "decided_by": f"{DECIDED_BY} ({desk}: {payload.get('decided_by', '')})",
    }
