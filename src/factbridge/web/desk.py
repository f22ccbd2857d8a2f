"""The desk's review tools: deciding match candidates, inboxes, list pages for
alerts and narratives, search that folds Vietnamese tones and segments Khmer,
and the instant answer a public reporter gets.

Reads go through `pipeline_views` (what the stages store); decisions go through
`workflow.match_reviews` (audited, fed back into queue, narratives and training).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import lru_cache
from typing import Annotated, Any

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response

from factbridge.backends.storage.base import Storage
from factbridge.errors import InputError
from factbridge.models import FactCheck, MatchCandidate, Post
from factbridge.pipeline.records import NarrativeMembers, NarrativeMembership, Narratives
from factbridge.text.tokenize import tokenize
from factbridge.web import pipeline_views as pv
from factbridge.web.app import WebState, render
from factbridge.web.deps import Csrf, WebDep
from factbridge.web.deps import PageActorDep as ActorDep
from factbridge.workflow.accounts import Actor
from factbridge.workflow.match_reviews import MatchReviews, rejected_factchecks
from factbridge.workflow.records import MatchReview
from factbridge.workflow.reports import Reports

router = APIRouter(include_in_schema=False)




# -- search: the matcher's folding for every search box ----------------------------------
def search_terms(query: str) -> list[str]:
    """Query words as the matcher's lexical index sees them: Vietnamese tones folded
    ("lá chùm ngây" and "la chum ngay" are the same words), Khmer segmented into words."""
    return tokenize(query[:200])


def text_matches(terms: Sequence[str], *texts: str) -> bool:
    """Every query word occurs in the texts, as a word or inside the run of words (a Khmer
    segmenter may cut a short query differently from a long text)."""
    if not terms:
        return True
    words, joined = _indexed(" ".join(t for t in texts if t))
    return all(t in words or t in joined for t in terms)


@lru_cache(maxsize=20_000)
def _indexed(text: str) -> tuple[frozenset[str], str]:
    """A published text's words, segmented once (Khmer segmentation is the costly part)."""
    tokens = tokenize(text)
    return frozenset(tokens), "".join(tokens)


# -- match candidates in plain language ---------------------------------------------------
def match_reasons(m: MatchCandidate, post: Post, fc: FactCheck | None, t: Callable[..., str]) -> list[str]:
    """Why the matcher proposed this fact-check, in the reader's language, without raw numbers."""
    reasons: list[str] = []
    dense = m.dense.score
    if dense is not None:
        key = "match.meaning_high" if dense >= 0.85 else "match.meaning_mid" if dense >= 0.7 else "match.meaning_low"
        reasons.append(t(key))
    if fc is not None:
        shared = [w for w in dict.fromkeys(tokenize(post.text)) if len(w) > 2 and w in set(tokenize(f"{fc.title} {fc.claim}"))]
        if shared:
            reasons.append(t("match.shared_words", words=", ".join(shared[:6])))
        elif m.lexical.score is None:
            reasons.append(t("match.no_shared_words"))
        if post.language and fc.language and post.language != fc.language:
            reasons.append(t("match.other_language", post=post.language, fc=fc.language))
    if m.features.get("number_overlap", 0.0) > 0:
        reasons.append(t("match.same_numbers"))
    if m.features.get("date_close", 0.0) > 0:
        reasons.append(t("match.close_in_time"))
    return reasons


def factcheck_versions(storage: Storage, org: str, fc: FactCheck) -> list[FactCheck]:
    """Other-language versions of a fact-check: the schema.org links a publisher puts in its
    ClaimReview (`workTranslation`, `translationOfWork`) and our own published groups (`group`)."""
    links: list[str] = []
    for key in ("workTranslation", "translationOfWork", "sameAs"):
        value = fc.raw.get(key)
        for item in value if isinstance(value, list) else [value]:
            if isinstance(item, dict):
                item = item.get("@id") or item.get("url")
            if isinstance(item, str) and item:
                links.append(item)
    found = storage.get_factchecks(org, links) if links else {}
    return [v for v in found.values() if v.id != fc.id]


def review_rows(web: WebState, actor: Actor, post: Post, t: Callable[..., str]) -> list[dict[str, Any]]:
    storage = web.services.storage
    pairs = pv.matches_with_factchecks(storage, actor.org, post.id)
    reviews = MatchReviews(storage, web.audit).for_post(actor.org, post.id, [m.factcheck_id for m, _ in pairs])
    return [{
        "match": m,
        "fc": fc,
        "reasons": match_reasons(m, post, fc, t),
        "review": reviews.get(m.factcheck_id),
        "versions": factcheck_versions(storage, actor.org, fc) if fc else [],
    } for m, fc in pairs]


@router.post("/posts/{post_id}/review", dependencies=[Csrf])
def review_match(post_id: str, actor: ActorDep, web: WebDep, factcheck_id: Annotated[str, Form(max_length=2000)],
                 same: Annotated[str, Form(max_length=3)], note: Annotated[str, Form(max_length=2000)] = "") -> Response:
    if same not in ("yes", "no"):
        raise InputError("same must be yes or no", field="same")
    decide_match(web, actor, post_id, factcheck_id, same == "yes", note)
    return RedirectResponse(f"/posts/{post_id}#matches", status_code=303)


def decide_match(web: WebState, actor: Actor, post_id: str, factcheck_id: str, same: bool, note: str = "") -> MatchReview:
    """A reviewer's decision on one match candidate (the page's and the API's): stored, audited,
    and at once reflected in the post's narrative and queue entry."""
    services = web.services
    review = MatchReviews(services.storage, web.audit).decide(actor.org, actor, post_id, factcheck_id, same, note)
    from factbridge.pipeline.narratives import refresh_factchecks
    from factbridge.pipeline.triage import triage_posts

    refresh_factchecks(services.storage, actor.org, [post_id])  # the post's narrative lists only fact-checks its posts repeat
    triage_posts(services, actor.org, [services.storage.get_post(actor.org, post_id)])  # the queue forgets a rejected debunk now
    return review


def narrative_factchecks(storage: Storage, org: str, member_ids: Sequence[str], factcheck_ids: Sequence[str]) -> list[str]:
    """The narrative's fact-checks, less those reviewers rejected for its posts."""
    rejected = rejected_factchecks(storage, org, member_ids, factcheck_ids)
    return [f for f in factcheck_ids if f not in rejected]


# -- inboxes and list pages ----------------------------------------------------------------
@router.get("/inbox", response_class=HTMLResponse)
def inbox(request: Request, actor: ActorDep, web: WebDep) -> HTMLResponse:
    cases = web.cases.find(actor.org, limit=1000)
    awaiting = [c for c in cases if c.status == "in_review" and actor.can("editor")
                and (c.verdict.drafted_by if c.verdict is not None else None) != actor.username]
    assigned = [c for c in cases if c.assignee == actor.username and c.status in ("open", "in_review", "approved")]
    return render(request, "inbox.html", {"awaiting": awaiting, "assigned": assigned,
                                          "reports": grouped_reports(web.services.storage, actor.org, 50)})


@router.get("/alerts", response_class=HTMLResponse)
def alerts_page(request: Request, actor: ActorDep, web: WebDep, lang: str = "") -> HTMLResponse:
    return render(request, "alerts.html", {"alerts": pv.alerts(web.services.storage, actor.org, 200)})


@router.get("/narratives", response_class=HTMLResponse)
def narratives_page(request: Request, actor: ActorDep, web: WebDep, language: str = "") -> HTMLResponse:
    items = pv.narratives(web.services.storage, actor.org, 200)
    if language:
        items = [n for n in items if language in (n["languages"] or {})]
    return render(request, "narratives.html", {"narratives": items, "language": language})


def grouped_reports(storage: Storage, org: str, limit: int = 50) -> list[dict[str, Any]]:
    """Public reports, one row per claim: repeated reports of the same words are counted, not listed."""
    groups: dict[str, dict[str, Any]] = {}
    for r in pv.public_reports(storage, org, limit * 10):
        post = r.get("post")
        key = r.get("claim_key") or (" ".join(sorted(set(tokenize(post.text))))[:300] if post else r["post_id"])
        group = groups.get(key)
        if group is None:
            groups[key] = r | {"count": 1, "post_ids": [r["post_id"]]}
        else:
            group["count"] += 1
            group["post_ids"].append(r["post_id"])
    return list(groups.values())[:limit]


# -- the public reporter's instant answer --------------------------------------------------
def instant_answer(web: WebState, org: str, post: Post, lang: str) -> dict[str, Any]:
    """Match the reported text now (the matcher alone: cheap; the other stages run later),
    name the published fact-check it repeats, in the reporter's language when a version
    exists, warn about risky links, and count earlier reports of the same claim."""
    services = web.services
    storage = services.storage
    result = services.matcher(org).match_posts([post], with_factchecks=True)[0]
    best = next((c for c in result.candidates if c.decision in ("match", "possible") and c.factcheck is not None), None)
    factcheck = None
    if best is not None and best.factcheck is not None:
        versions = [best.factcheck, *factcheck_versions(storage, org, best.factcheck)]
        factcheck = next((v for v in versions if v.language == lang), versions[0])
    risky = []
    if post.urls:
        for risk in services.link_scorer(org, resolve=False).score_many(post.urls):
            if not isinstance(risk, InputError) and risk.flagged:
                risky.append({"url": risk.url, "level": risk.level})
    claim_key = f"fc:{best.factcheck_id}" if best is not None and best.decision == "match" else " ".join(sorted(set(tokenize(post.text))))[:300]
    # the latest 5,000 reports' claim keys (their posts are not needed to count them)
    earlier = sum(1 for r in Reports(storage).newest(org, 5000) if r.claim_key == claim_key and r.post_id != post.id)
    Reports(storage).grouped_under(org, post.id, claim_key)
    return {
        "decision": best.decision if best else "none",
        "factcheck": factcheck,
        "decided_by": best.decided_by if best else result.decided_by,
        "links": risky,
        "earlier_reports": earlier,
    }


async def http_error(request: Request, exc: Exception) -> Response:
    """Starlette's own errors (no such page, wrong method): JSON under /api, else the translated error page."""
    from starlette.exceptions import HTTPException

    from factbridge.web.app import wants_json

    status = exc.status_code if isinstance(exc, HTTPException) else 500
    if wants_json(request):
        return JSONResponse({"error": "NotFound" if status == 404 else "HTTPError", "detail": str(getattr(exc, "detail", ""))}, status_code=status)
    return render(request, "error.html", {"status": status, "message": ""}, status=status)


# -- appeals: "corrected" leads to the correction form -------------------------------------
def correction_needed(web: WebState, actor: Actor, appeal_id: str) -> bool:
    """True when the appeal's case has no correction made since the appeal arrived."""
    appeal = web.appeals.get(actor.org, appeal_id)
    if appeal.status != "received":
        return False
    case = web.cases.get(actor.org, appeal.case_id)
    return not any(c.at >= appeal.received_at for c in case.corrections)


def appeal_to_correct(web: WebState, actor: Actor, case_id: str, appeal_id: str) -> str:
    """The appeal id from `?correct_for=` when it is an open appeal on this case, else ""."""
    if not appeal_id or not actor.can("editor"):
        return ""
    found = [a for a in web.appeals.find(actor.org, case_id=case_id) if a.id == appeal_id and a.status == "received"]
    return appeal_id if found else ""


# -- the queue, grouped by claim ------------------------------------------------------------
def _queue_key(entry: dict[str, Any], members: dict[str, NarrativeMembership]) -> str:
    """Entries of one claim share a key: the narrative, else the fact-check the post repeats, else its words."""
    if entry["kind"] == "narrative":
        return f"narrative:{entry['narrative_id']}"
    membership = members.get(entry["post_id"] or "")
    if membership is not None:
        return f"narrative:{membership.narrative_id}"
    debunk = (entry["components"].get("debunked") or {}).get("evidence") or {}
    if debunk.get("decision") == "match" and debunk.get("factcheck_id"):
        return f"fc:{debunk['factcheck_id']}"
    post = entry.get("post")
    text = post.text if post is not None else entry["title"]
    return "words:" + " ".join(sorted(set(tokenize(text)[:40])))


def lead_sentence(entry: dict[str, Any], factchecks: dict[str, FactCheck], t: Callable[..., str], lang: str) -> str:
    """One plain sentence that says why the row is in the queue."""
    from factbridge.workflow.ratings import rating_label

    if entry["priority"] is None:
        return t("dash.lead_new")
    comps = entry["components"]
    parts = []
    debunk = (comps.get("debunked") or {}).get("evidence") or {}
    fc = factchecks.get(str(debunk.get("factcheck_id") or ""))
    if fc is not None and (comps.get("debunked") or {}).get("value"):
        parts.append(t("dash.lead_debunked", who=fc.publisher or fc.url, rating=rating_label(fc.rating, lang)))
    if ((comps.get("risk") or {}).get("value") or 0.0) >= 0.5:
        parts.append(t("dash.lead_link"))
    if ((comps.get("reach") or {}).get("value") or 0.0) >= 0.6:
        parts.append(t("dash.lead_reach"))
    return " ".join(parts[:2]) or t("dash.lead_claim")


def grouped_queue(storage: Storage, org: str, entries: list[dict[str, Any]], t: Callable[..., str], lang: str,
                  language: str = "", limit: int = 25) -> list[dict[str, Any]]:
    """Queue rows, one per claim: the highest-priority entry leads, the others are counted ("+11 copies")."""
    post_ids = [e["post_id"] for e in entries if e["post_id"]]
    members = NarrativeMembers(storage).get(org, post_ids)
    narrative_ids = [e["narrative_id"] for e in entries if e["narrative_id"]]
    narratives = Narratives(storage).get(org, narrative_ids) if language and narrative_ids else {}
    groups: dict[str, dict[str, Any]] = {}
    for e in entries:
        if language:
            if e.get("post") is not None:
                langs = {e["post"].language}
            else:
                found = narratives.get(e["narrative_id"] or "")
                langs = set((found.languages if found is not None else None) or e["raw"].get("languages") or {})
            if language not in langs:
                continue
        key = _queue_key(e, members)
        group = groups.get(key)
        narrative_href = f"/narratives/{key.removeprefix('narrative:')}" if key.startswith("narrative:") else None
        if group is None:
            groups[key] = e | {"copies": 0, "copy_ids": [], "narrative_href": narrative_href}
        elif e["kind"] == "narrative":
            group["copies"] += max(0, int(e["raw"].get("size") or len(e["raw"].get("post_ids") or [])) - 1 - group["copies"])
        else:
            group["copies"] += 1
            group["copy_ids"].append(e["post_id"] or e["id"])
    rows = list(groups.values())[:limit]
    wanted = [str(((r["components"].get("debunked") or {}).get("evidence") or {}).get("factcheck_id") or "") for r in rows]
    factchecks = storage.get_factchecks(org, [w for w in wanted if w])
    for r in rows:
        r["lead"] = lead_sentence(r, factchecks, t, lang)
    return rows


# -- one verdict, several languages ----------------------------------------------------------
@router.post("/cases/{case_id}/versions", dependencies=[Csrf])
def add_version(case_id: str, actor: ActorDep, web: WebDep, language: Annotated[str, Form(max_length=8)],
                claim: Annotated[str, Form(max_length=2000)], headline: Annotated[str, Form(max_length=300)],
                explanation: Annotated[str, Form(max_length=20_000)], version: Annotated[int | None, Form()] = None) -> Response:
    web.cases.add_version(actor.org, actor, case_id, language, claim, headline, explanation, version)
    return RedirectResponse(f"/cases/{case_id}#versions", status_code=303)
