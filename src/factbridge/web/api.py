"""JSON API under /api/v1. Every route takes a bearer token and reads or writes
only the token owner's organisation.

Writes to a case take the `version` the client last saw. Without one, a write
still cannot silently undo a concurrent one: each write is a compare-and-set on
the version read inside the storage transaction, so of two writers racing (two
API clients adding evidence to one case at once) the second gets 409. Every 409
body carries `current` (the case's id, current version and status): GET the
case, then retry with that version.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, BackgroundTasks, Depends, Query, Request, Security
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, ConfigDict, Field

from factbridge.errors import InputError, NotAuthenticated
from factbridge.web import pipeline_views as pv
from factbridge.web.app import WebState, public_base_url
from factbridge.web.deps import WebDep
from factbridge.web.desk import decide_match
from factbridge.web.images import image_matches
from factbridge.web.security import client_key, login_key
from factbridge.workflow.accounts import MAX_PASSWORD, MIN_PASSWORD, Actor, token_sha
from factbridge.workflow.publishing import claimreview_feed, claimreview_node
from factbridge.workflow.records import Case

bearer = HTTPBearer(auto_error=False, description="API token from `factbridge users token NAME`.")


def api_actor(request: Request, credentials: Annotated[HTTPAuthorizationCredentials | None, Security(bearer)]) -> Actor:
    if credentials is None or credentials.scheme.lower() != "bearer" or not credentials.credentials:
        raise NotAuthenticated("send an API token: Authorization: Bearer <token>")
    web: WebState = request.app.state.web
    return web.accounts.token_actor(credentials.credentials)


ActorDep = Annotated[Actor, Depends(api_actor)]
Limit = Annotated[int, Query(ge=1, le=500)]
Offset = Annotated[int, Query(ge=0, le=1_000_000)]

router = APIRouter(prefix="/api/v1", tags=["api"])


class Body(BaseModel):
    model_config = ConfigDict(extra="forbid")
    version: int | None = Field(default=None, description="The case version you saw; a stale one gets 409 whose body's "
                                "`current.version` is the version to reload and retry with. Without it, a write that "
                                "races another write to the same case also gets that 409.")


class OpenCase(BaseModel):
    model_config = ConfigDict(extra="forbid")
    claim: str = Field(max_length=2000)
    title: str = Field(default="", max_length=300)
    source_kind: Literal["post", "narrative", "manual"] = "manual"
    source_id: str = Field(default="", max_length=300)
    language: str | None = Field(default=None, max_length=8)


class Assign(Body):
    assignee: str = Field(max_length=40)


class Evidence(Body):
    kind: Literal["link", "note"]
    url: str = Field(default="", max_length=2000)
    text: str = Field(default="", max_length=20_000)


class Verdict(Body):
    rating: str = Field(max_length=100)
    explanation: str = Field(max_length=20_000)
    headline: str = Field(default="", max_length=300)
    language: str | None = Field(default=None, max_length=8)


class Note(Body):
    note: str = Field(max_length=5000)


class Correction(Body):
    text: str = Field(max_length=5000)
    new_rating: str = Field(default="", max_length=100)


class Decision(Body):
    outcome: Literal["upheld", "corrected", "dismissed"]
    note: str = Field(max_length=5000)


def post_detail(web: WebState, org: str, post_id: str) -> dict[str, Any]:
    storage = web.services.storage
    post = storage.get_post(org, post_id)
    narrative = pv.narrative_of_post(storage, org, post_id)
    return {
        "post": post.model_dump(mode="json", exclude={"raw"}),
        "matches": [
            m.model_dump(mode="json") | {"factcheck": fc.model_dump(mode="json", exclude={"raw"}) if fc else None,
                                         "provenance": fc.raw.get("federation") if fc else None}
            for m, fc in pv.matches_with_factchecks(storage, org, post_id)
        ],
        "checkworthiness": pv.checkworthiness(storage, org, post_id),
        "triage": pv.queue_entry_of_post(storage, org, post_id),
        "links": pv.link_risks(storage, org, post),
        "image_text": post.image_text,  # the text read from the post's images (OCR), also in post.images[].ocr_text
        "image_matches": [m.to_doc() for m in image_matches(storage, org, post_id)],
        "narrative": {k: narrative[k] for k in ("id", "label", "size", "decided_by")} if narrative else None,
        "cases": [c.id for c in web.cases.cases_for(org, "post", post_id)],
    }


@router.get("/me")
def me(actor: ActorDep) -> dict[str, Any]:
    return {"username": actor.username, "org": actor.org, "role": actor.role}


class PasswordChangeBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    current_password: str = Field(max_length=MAX_PASSWORD)
    new_password: str = Field(max_length=MAX_PASSWORD, description=f"At least {MIN_PASSWORD} characters, not the user name, not the current password.")


class PasswordChanged(BaseModel):
    username: str
    sessions_revoked: int = Field(description="Other web sessions of the user that were ended.")
    tokens_revoked: int = Field(description="Other API tokens of the user that were revoked; the token of this request keeps working.")


@router.post("/me/password", response_model=PasswordChanged)
def change_my_password(body: PasswordChangeBody, request: Request, actor: ActorDep, web: WebDep,
                       credentials: Annotated[HTTPAuthorizationCredentials | None, Security(bearer)]) -> PasswordChanged:
    """Change the token owner's password (the current one is required). Wrong guesses count
    against the sign-in limit of the account and the client."""
    pair, client = login_key(actor.username, request), client_key(request)
    web.login_limiter.check(pair)
    try:
        change = web.accounts.change_password(actor.username, body.current_password, body.new_password,
                                              keep_token_sha=token_sha(credentials.credentials) if credentials else None)
    except InputError as exc:
        if exc.field == "current_password":
            web.login_limiter.hit(pair)
            if web.login_client_limiter is not None:
                web.login_client_limiter.hit(client)
        raise
    return PasswordChanged(username=change.username, sessions_revoked=change.sessions_revoked, tokens_revoked=change.tokens_revoked)


@router.get("/posts")
def list_posts(actor: ActorDep, web: WebDep, limit: Limit = 50, offset: Offset = 0) -> dict[str, Any]:
    storage = web.services.storage
    posts = storage.list_posts(actor.org, limit=limit, offset=offset)
    return {"total": storage.count_posts(actor.org), "items": [p.model_dump(mode="json", exclude={"raw"}) for p in posts]}


@router.get("/posts/{post_id}")
def get_post(post_id: str, actor: ActorDep, web: WebDep) -> dict[str, Any]:
    return post_detail(web, actor.org, post_id)


@router.get("/posts/{post_id}/matches")
def get_post_matches(post_id: str, actor: ActorDep, web: WebDep) -> list[dict[str, Any]]:
    web.services.storage.get_post(actor.org, post_id)
    return post_detail(web, actor.org, post_id)["matches"]


class MatchDecision(BaseModel):
    model_config = ConfigDict(extra="forbid")
    factcheck_id: str = Field(max_length=2000, description="The fact-check of one of the post's match candidates (`GET .../matches`).")
    same: bool = Field(description="true: the post repeats the fact-checked claim; false: it is not the same claim.")
    note: str = Field(default="", max_length=2000)


class MatchReviewOut(BaseModel):
    post_id: str
    factcheck_id: str
    same: bool
    by: str
    at: str
    note: str
    matcher_decision: str = Field(description="What the matcher had decided before any reviewer (kept through later reviews).")
    matcher_decided_by: str
    fused_score: float
    decided_by: str


@router.post("/posts/{post_id}/review", response_model=MatchReviewOut)
def review_match(post_id: str, body: MatchDecision, actor: ActorDep, web: WebDep) -> MatchReviewOut:
    """Decide whether the post repeats a match candidate's fact-checked claim (as the post page's
    "Same claim" / "Not the same claim"; action `match.review`, analysts and above). The decision
    is audited, overrides the matcher's wherever matches are read, and updates the post's queue
    entry and narrative at once; deciding again replaces it."""
    review = decide_match(web, actor, post_id, body.factcheck_id, body.same, body.note)
    return MatchReviewOut(**review.to_doc())


@router.get("/factchecks")
def list_factchecks(actor: ActorDep, web: WebDep, limit: Limit = 50, offset: Offset = 0) -> dict[str, Any]:
    storage = web.services.storage
    items: list[dict[str, Any]] = []
    for n, fc in enumerate(storage.iter_factchecks(actor.org, batch_size=min(limit + offset, 1000))):
        if n < offset:
            continue
        if len(items) >= limit:
            break
        items.append(fc.model_dump(mode="json", exclude={"raw"}))
    return {"total": storage.count_factchecks(actor.org), "items": items}


@router.get("/factchecks/{factcheck_id:path}")
def get_factcheck(factcheck_id: str, actor: ActorDep, web: WebDep) -> dict[str, Any]:
    storage = web.services.storage
    fc = storage.get_factcheck(actor.org, factcheck_id)
    return fc.model_dump(mode="json", exclude={"raw"}) | {
        "matched_posts": [{"post_id": pid, "decision": m.decision, "fused_score": m.fused_score} for pid, m in storage.matches_for_factcheck(actor.org, factcheck_id)[:100]]
    }


@router.get("/narratives")
def list_narratives(actor: ActorDep, web: WebDep, limit: Limit = 50) -> list[dict[str, Any]]:
    return pv.narratives(web.services.storage, actor.org, limit)


@router.get("/narratives/{narrative_id}")
def get_narrative(narrative_id: str, actor: ActorDep, web: WebDep) -> dict[str, Any]:
    storage = web.services.storage
    item = pv.narrative(storage, actor.org, narrative_id)
    return item | {"posts_per_day": [(d.isoformat(), c) for d, c in pv.narrative_timeline(storage, actor.org, item)]}


@router.get("/alerts")
def list_alerts(actor: ActorDep, web: WebDep, limit: Limit = 50) -> list[dict[str, Any]]:
    return pv.alerts(web.services.storage, actor.org, limit)


@router.get("/queue")
def list_queue(actor: ActorDep, web: WebDep, limit: Limit = 50) -> list[dict[str, Any]]:
    entries = pv.queue_entries(web.services.storage, actor.org, limit)
    return [e | {"post": e["post"].model_dump(mode="json", exclude={"raw"}) if e["post"] else None} for e in entries]


@router.get("/ratings")
def ratings(actor: ActorDep, web: WebDep) -> list[dict[str, Any]]:
    return [{"rating": r, "rating_value": web.cases.scale.value(r)} for r in web.cases.scale.names]


@router.get("/cases")
def list_cases(actor: ActorDep, web: WebDep, status: Literal["open", "in_review", "approved", "published", "closed"] | None = None,
               limit: Limit = 100) -> list[dict[str, Any]]:
    return [c.to_doc() for c in web.cases.find(actor.org, status, limit)]


@router.post("/cases", status_code=201)
def open_case(body: OpenCase, actor: ActorDep, web: WebDep) -> dict[str, Any]:
    return open_case_from_source(web, actor, body.source_kind, body.source_id, body.claim, body.title, body.language).to_doc()


def open_case_from_source(web: WebState, actor: Actor, kind: str, source_id: str, claim: str, title: str, language: str | None) -> Case:
    storage = web.services.storage
    claim_date = None
    if kind == "post":
        post = storage.get_post(actor.org, source_id)
        claim = claim or post.text
        language = language or post.language
        claim_date = post.created_at.isoformat() if post.created_at else None
    elif kind == "narrative":
        item = pv.narrative(storage, actor.org, source_id)
        claim = claim or str(item["label"])
    # The claimant stays empty: the platform a post appeared on is not who made the claim.
    return web.cases.open(actor.org, actor, claim, title=title, source_kind=kind, source_id=source_id, language=language,
                          claim_date=claim_date)


@router.get("/cases/{case_id}")
def get_case(case_id: str, actor: ActorDep, web: WebDep) -> dict[str, Any]:
    return web.cases.get(actor.org, case_id).to_doc()


@router.post("/cases/{case_id}/assign")
def assign_case(case_id: str, body: Assign, actor: ActorDep, web: WebDep) -> dict[str, Any]:
    if body.assignee.strip().lower() not in {u.username for u in web.accounts.list_users(actor.org)}:
        raise InputError(f"no user '{body.assignee}' in your organisation", field="assignee")
    return web.cases.assign(actor.org, actor, case_id, body.assignee, body.version).to_doc()


@router.post("/cases/{case_id}/evidence")
def add_evidence(case_id: str, body: Evidence, actor: ActorDep, web: WebDep) -> dict[str, Any]:
    return web.cases.add_evidence(actor.org, actor, case_id, body.kind, url=body.url, text=body.text, version=body.version).to_doc()


@router.post("/cases/{case_id}/verdict")
def draft_verdict(case_id: str, body: Verdict, actor: ActorDep, web: WebDep) -> dict[str, Any]:
    return web.cases.draft_verdict(actor.org, actor, case_id, body.rating, body.explanation, headline=body.headline,
                                   language=body.language, version=body.version).to_doc()


@router.post("/cases/{case_id}/approve")
def approve_verdict(case_id: str, body: Body, actor: ActorDep, web: WebDep) -> dict[str, Any]:
    return web.cases.approve(actor.org, actor, case_id, body.version).to_doc()


@router.post("/cases/{case_id}/return")
def return_verdict(case_id: str, body: Note, actor: ActorDep, web: WebDep) -> dict[str, Any]:
    return web.cases.return_for_changes(actor.org, actor, case_id, body.note, body.version).to_doc()


@router.post("/cases/{case_id}/close")
def close_case(case_id: str, body: Note, actor: ActorDep, web: WebDep) -> dict[str, Any]:
    return web.cases.close(actor.org, actor, case_id, body.note, body.version).to_doc()


@router.post("/cases/{case_id}/publish")
def publish_case(case_id: str, body: Body, request: Request, background: BackgroundTasks, actor: ActorDep, web: WebDep) -> dict[str, Any]:
    return publish(web, actor, case_id, body.version, request, background).to_doc()


def publish(web: WebState, actor: Actor, case_id: str, version: int | None, request: Request, background: BackgroundTasks) -> Case:
    base = public_base_url(web.services)  # never the request's Host header: the URL is permanent
    org_name = web.accounts.org(actor.org).name
    case = web.cases.publish(actor.org, actor, case_id, base, org_name, version)
    background.add_task(index_library, web, actor.org)
    return case


def index_library(web: WebState, org: str) -> None:
    """Embed newly published fact-checks so that later posts repeating the claim match them."""
    from factbridge.pipeline.matching import index_factchecks

    index_factchecks(web.services.storage, web.services.embedder, org)


@router.post("/cases/{case_id}/corrections")
def correct_case(case_id: str, body: Correction, background: BackgroundTasks, actor: ActorDep, web: WebDep) -> dict[str, Any]:
    """A correction; one that changes the rating waits for a second editor (`.../corrections/decide`)."""
    case = web.cases.correct(actor.org, actor, case_id, body.text, body.new_rating, body.version)
    background.add_task(index_library, web, actor.org)
    return case.to_doc()


class CorrectionDecision(Body):
    approve: bool = Field(description="true: a second editor approves the change of rating (it becomes public); false: reject it.")


@router.post("/cases/{case_id}/corrections/decide")
def decide_correction(case_id: str, body: CorrectionDecision, background: BackgroundTasks, actor: ActorDep, web: WebDep) -> dict[str, Any]:
    case = web.cases.decide_correction(actor.org, actor, case_id, body.approve, body.version)
    background.add_task(index_library, web, actor.org)
    return case.to_doc()


class Withdrawal(Body):
    reason: str = Field(max_length=5000, description="Why the fact-check is withdrawn: shown on its public page and in its ClaimReview.")


class WithdrawalDecision(Body):
    approve: bool = Field(description="true: a second editor approves the withdrawal (it becomes public); false: reject it.")


@router.post("/cases/{case_id}/withdraw")
def withdraw_case(case_id: str, body: Withdrawal, actor: ActorDep, web: WebDep) -> dict[str, Any]:
    """Propose to withdraw a published fact-check; it waits for a second editor (`.../withdraw/decide`)."""
    return web.cases.withdraw(actor.org, actor, case_id, body.reason, body.version).to_doc()


@router.post("/cases/{case_id}/withdraw/decide")
def decide_withdrawal(case_id: str, body: WithdrawalDecision, background: BackgroundTasks, actor: ActorDep, web: WebDep) -> dict[str, Any]:
    case = web.cases.decide_withdrawal(actor.org, actor, case_id, body.approve, body.version)
    if case.status == "withdrawn":
        background.add_task(recheck_withdrawn, web, actor.org, case)
    return case.to_doc()


def recheck_withdrawn(web: WebState, org: str, case: Case) -> None:
    """The posts that matched a withdrawn fact-check (each of its language pages) are matched
    again without it; their narratives and queue entries follow (pipeline/recheck.py)."""
    from factbridge.pipeline.recheck import recheck_factchecks

    index_library(web, org)
    recheck_factchecks(web.services, org, case.library_ids())


@router.get("/reviews")
def published_reviews(request: Request, actor: ActorDep, web: WebDep, limit: Limit = 100, offset: Offset = 0) -> dict[str, Any]:
    org_name = web.accounts.org(actor.org).name
    feed_url = f"{public_base_url(web.services)}/public/{actor.org}/claimreview.json"
    return claimreview_feed(web.cases.list_published(actor.org, limit, offset), org_name, feed_url)


@router.get("/reviews/{case_id}")
def published_review(case_id: str, actor: ActorDep, web: WebDep) -> dict[str, Any]:
    return claimreview_node(web.cases.published(actor.org, case_id))


@router.get("/appeals")
def list_appeals(actor: ActorDep, web: WebDep, status: Literal["received", "decided"] | None = None, limit: Limit = 100) -> list[dict[str, Any]]:
    actor.check("appeal.read")
    return [a.to_doc() for a in web.appeals.find(actor.org, status=status, limit=limit)]


@router.post("/appeals/{appeal_id}/decide")
def decide_appeal(appeal_id: str, body: Decision, actor: ActorDep, web: WebDep) -> dict[str, Any]:
    return web.appeals.decide(actor.org, actor, appeal_id, body.outcome, body.note, body.version).to_doc()


@router.get("/audit")
def audit_log(actor: ActorDep, web: WebDep, limit: Limit = 100, offset: Offset = 0) -> list[dict[str, Any]]:
    actor.check("audit.read")
    return web.audit.entries(actor.org, limit, offset)
