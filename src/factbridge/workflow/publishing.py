"""Published verdicts as schema.org ClaimReview: one node per page, and a feed.

Built on `to_claimreview()` so that what we publish is exactly what
`factbridge factchecks import` reads back (the round trip is tested).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from factbridge.models import FactCheck
from factbridge.text.dates import parse_date_lenient
from factbridge.workflow.cases import published_factcheck
from factbridge.workflow.claimreview import to_claimreview
from factbridge.workflow.ratings import rating_label
from factbridge.workflow.records import PublishedPage


def on_published(storage: Any, org: str, case: dict[str, Any], factcheck: FactCheck) -> None:
    """Called once when a verdict is published: tiplines answer the citizens who asked
    about it (a case opened on a tipline question; other pending questions are re-matched
    by the running tipline's follow-up pass)."""
    from factbridge.tiplines.desk import notify_published

    notify_published(storage, org, case, factcheck)


def claimreview_node(page: PublishedPage | Mapping[str, Any]) -> dict[str, Any]:
    """The ClaimReview of a published page (ours, or a partner's snapshot as received)."""
    snapshot = page.to_doc() if isinstance(page, PublishedPage) else dict(page)
    fc = published_factcheck(snapshot)
    node = to_claimreview(fc, url=snapshot["url"], org_name=snapshot["org_name"], published=parse_date_lenient(snapshot["published_at"]))
    node["reviewBody"] = snapshot["explanation"]
    # The rating named in the fact-check's own language ("Sai" beside inLanguage "vi").
    node["reviewRating"]["alternateName"] = rating_label(snapshot["rating"], snapshot.get("language"))
    others = [url for url in (snapshot.get("versions") or {}).values() if url != snapshot["url"]]
    if others:  # one verdict in several languages: a group of ClaimReviews linked to each other
        node["workTranslation"] = [{"@id": url} for url in others]
    modified = parse_date_lenient(snapshot.get("modified_at"))
    if modified:
        node["dateModified"] = modified.date().isoformat()
    withdrawn = snapshot.get("withdrawn")
    if withdrawn:  # withdrawn by us: still served, saying so (and why), never removed
        node["creativeWorkStatus"] = "Withdrawn"
        node["correction"] = {"@type": "CorrectionComment", "text": f"Withdrawn: {withdrawn['reason']}", "datePublished": withdrawn["at"]}
    return node


def claimreview_feed(snapshots: Sequence[PublishedPage | Mapping[str, Any]], org_name: str, feed_url: str) -> dict[str, Any]:
    """A JSON-LD document with every published ClaimReview of one organisation in `@graph`."""
    return {
        "@context": "https://schema.org",
        "@id": feed_url,
        "name": f"{org_name} fact-checks",
        "@graph": [claimreview_node(s) for s in snapshots],
    }


def jsonld_script_text(node: dict[str, Any]) -> str:
    """JSON for a <script type="application/ld+json"> block: '<', '>' and '&' escaped so no
    text inside (a claim quoting "</script>") can end the block early."""
    text = json.dumps(node, ensure_ascii=False, indent=2)
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
