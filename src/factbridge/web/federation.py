"""Federation routes: our key statements, each organisation's signed feed, and its ClaimReview view.

    GET /federation/v1/keys                          key statements (rotation, revocation)
    GET /federation/v1/{org}/feed?after=N&limit=M    signed items after N; a signed request from a
                                                     partner gets the kinds we send it, anyone else
                                                     the public kinds; `Accept: application/ld+json`
                                                     gets the ClaimReview view instead
    GET /federation/v1/{org}/claimreview.jsonld      the latest version of every public item as
                                                     plain ClaimReview JSON-LD (no signatures)
    POST /federation/v1/{org}/inbox                  a partner's signed push: we pull its feed now

Reading the feed first puts newly published verdicts and corrections into it (signed).
Every delivery to a partner is audited ("federation.send").
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, BackgroundTasks, Query, Request
from fastapi.responses import JSONResponse

from factbridge.errors import NotAuthenticated
from factbridge.federation.auth import request_partner
from factbridge.federation.feed import FORMAT, PUBLIC_KINDS, Outbox
from factbridge.federation.identity import Identity
from factbridge.federation.partners import Partners
from factbridge.federation.records import SENT
from factbridge.web.app import WebState
from factbridge.web.deps import WebDep
from factbridge.workflow.publishing import claimreview_feed

router = APIRouter(prefix="/federation/v1", tags=["federation"])




def outbox_for(web: WebState, org: str) -> Outbox:
    settings = web.services.settings
    roles = {u.username: u.role for u in web.accounts.list_users(org)}
    return Outbox(web.services.storage, Identity(settings.data_dir), org, settings.federation_licence, roles,
                  org_name=web.accounts.org(org).name, narrative_min_posts=settings.federation_narrative_min_posts)


def _claimreview(web: WebState, org: str, outbox: Outbox, url: str) -> JSONResponse:
    org_doc = web.accounts.org(org)
    outbox.refresh()
    return JSONResponse(claimreview_feed(outbox.latest_snapshots(PUBLIC_KINDS), org_doc.name, url), media_type="application/ld+json")


@router.get("/keys")
def keys(web: WebDep) -> dict[str, Any]:
    identity = Identity(web.services.settings.data_dir)
    identity.ensure()
    return {"format": FORMAT, "statements": identity.statements()}


@router.get("/{org}/feed")
def feed(org: str, request: Request, web: WebDep, after: Annotated[int, Query(ge=0)] = 0,
         limit: Annotated[int, Query(ge=1, le=500)] = 100) -> JSONResponse:
    web.accounts.org(org)
    outbox = outbox_for(web, org)
    if "application/ld+json" in request.headers.get("accept", ""):
        return _claimreview(web, org, outbox, str(request.url))
    partner = request_partner(Partners(web.services.storage, org), request.headers, "GET", request.url.path, request.url.query)
    kinds = tuple(partner.send) if partner else PUBLIC_KINDS
    outbox.refresh()
    page = outbox.read(after, kinds, limit)
    if partner and page.items:
        seqs = [int(i["seq"]) for i in page.items]
        web.audit.append(org, "federation", "federation.send", SENT, f"{partner.name}/{seqs[-1]:012d}", None,
                         {"partner": partner.name, "seqs": seqs, "kinds": sorted({str(i["kind"]) for i in page.items})})
    return JSONResponse({"format": FORMAT, "org": org, "partner": partner.name if partner else None,
                         "kinds": list(kinds), "items": page.items, "head": page.head, "more": page.more})


@router.post("/{org}/inbox", status_code=202)
def inbox(org: str, request: Request, background: BackgroundTasks, web: WebDep) -> dict[str, Any]:
    """A partner's push: "my feed has new items". Only a signed request from an active partner
    counts; it carries no item, we pull (and verify) the partner's feed in the background."""
    web.accounts.org(org)
    partner = request_partner(Partners(web.services.storage, org), request.headers, "POST", request.url.path, request.url.query)
    if partner is None:
        raise NotAuthenticated("a push must be a signed request from a partner (see docs/federation.md)")
    background.add_task(pull_partner, web, org, partner.name)
    return {"accepted": True, "partner": partner.name}


def pull_partner(web: WebState, org: str, name: str) -> None:
    from factbridge.federation.sync import Syncer

    syncer = Syncer(web.services, org, Identity(web.services.settings.data_dir))
    try:
        syncer.sync(name)
    finally:
        syncer.close()


@router.get("/{org}/claimreview.jsonld")
def claimreview(org: str, request: Request, web: WebDep) -> JSONResponse:
    return _claimreview(web, org, outbox_for(web, org), str(request.url))
