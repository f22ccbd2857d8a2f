"""Public pages: published fact-checks (with ClaimReview JSON-LD), their feed,
search, and the no-account forms (report a suspicious post, appeal a verdict).

Only the "published" snapshot of a case is ever read here: internal notes,
files, drafts and appeal contacts never reach a public page.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response
from markupsafe import Markup

from factbridge.web.app import public_base_url, render
from factbridge.web.deps import Csrf, WebDep
from factbridge.web.desk import instant_answer, search_terms, text_matches
from factbridge.web.i18n import page_language
from factbridge.web.security import client_key
from factbridge.workflow.appeals import report_post
from factbridge.workflow.publishing import claimreview_feed, claimreview_node, jsonld_script_text
from factbridge.workflow.records import PublishedPage

router = APIRouter(prefix="/public", tags=["public"])




def _matches(page: PublishedPage, terms: list[str]) -> bool:
    return text_matches(terms, page.claim, page.headline, page.explanation, page.rating)


@router.get("/{org}", response_class=HTMLResponse, include_in_schema=False)
def search(org: str, request: Request, web: WebDep, q: str = "") -> HTMLResponse:
    org_doc = web.accounts.org(org)
    terms = search_terms(q)  # the matcher's folding: unaccented Vietnamese, unspaced Khmer
    items = [s for s in web.cases.list_published(org, limit=5000) if _matches(s, terms)][:100]
    return render(request, "public/search.html", {"org": org_doc, "items": items, "q": q[:200]})


@router.get("/{org}/claimreview.json", name="claimreview_feed")
def feed(org: str, request: Request, web: WebDep) -> JSONResponse:
    """Every published ClaimReview of the organisation (JSON-LD, `@graph`), newest first."""
    org_doc = web.accounts.org(org)
    feed_url = f"{public_base_url(web.services)}/public/{org}/claimreview.json"  # not the Host header
    body = claimreview_feed(web.cases.list_published(org, limit=10_000), org_doc.name, feed_url)
    return JSONResponse(body, media_type="application/ld+json")


@router.get("/{org}/factchecks/{case_id}", response_class=HTMLResponse, include_in_schema=False)
def factcheck_page(org: str, case_id: str, request: Request, web: WebDep) -> HTMLResponse:
    org_doc = web.accounts.org(org)
    snapshot = web.cases.published(org, case_id)
    return render(request, "public/factcheck.html", {
        "org": org_doc,
        "item": snapshot,
        "jsonld": Markup(jsonld_script_text(claimreview_node(snapshot))),  # noqa: S704 - escaped by jsonld_script_text
        "appeals": web.appeals.public_outcomes(org, snapshot.case_id),  # a language version shares its case's appeals
        "filed": request.query_params.get("appeal") == "filed",
    })


@router.post("/{org}/factchecks/{case_id}/appeal", dependencies=[Csrf], include_in_schema=False)
def appeal(org: str, case_id: str, request: Request, web: WebDep, reason: Annotated[str, Form(max_length=5000)],
           contact: Annotated[str, Form(max_length=200)] = "") -> Response:
    web.accounts.org(org)
    web.cases.published(org, case_id)
    web.public_limiter.take(client_key(request))
    web.appeals.file(org, case_id, reason, contact)
    return render(request, "public/thanks.html", {"org": web.accounts.org(org), "kind": "appeal",
                                                  "back": f"/public/{org}/factchecks/{case_id}?appeal=filed"})


@router.get("/{org}/report", response_class=HTMLResponse, include_in_schema=False)
def report_form(org: str, request: Request, web: WebDep) -> HTMLResponse:
    return render(request, "public/report.html", {"org": web.accounts.org(org)})


@router.post("/{org}/report", dependencies=[Csrf], include_in_schema=False)
def report(org: str, request: Request, web: WebDep, text: Annotated[str, Form(max_length=5000)],
           url: Annotated[str, Form(max_length=2000)] = "", platform: Annotated[str, Form(max_length=40)] = "") -> Response:
    org_doc = web.accounts.org(org)
    web.public_limiter.take(client_key(request))
    post = report_post(web.services, org, text, url, platform)  # queued: the stages run off the request
    answer = instant_answer(web, org, post, page_language(request))  # the matcher alone, at once
    return render(request, "public/thanks.html", {"org": org_doc, "kind": "report", "back": f"/public/{org}", "answer": answer})
