"""The signed-in workspace: dashboard, posts, narratives, cases, appeals, audit.

Every page reads only the signed-in user's organisation (`actor.org`), never
an organisation named in the request. Every POST route depends on
`check_csrf`.
"""

from __future__ import annotations

import re
import secrets
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, BackgroundTasks, File, Form, Query, Request, UploadFile
from fastapi.responses import FileResponse, HTMLResponse, RedirectResponse, Response

from factbridge.errors import InputError, NotAuthenticated, NotFound
from factbridge.tiplines.desk import tipline_stats
from factbridge.web import desk, i18n
from factbridge.web import pipeline_views as pv
from factbridge.web.api import index_library, open_case_from_source, publish, recheck_withdrawn
from factbridge.web.app import WebState, file_sha, render
from factbridge.web.charts import line_chart
from factbridge.web.deps import Csrf, WebDep
from factbridge.web.deps import PageActorDep as ActorDep
from factbridge.web.images import image_matches
from factbridge.web.security import (
    SESSION_COOKIE,
    client_key,
    cookie_flags,
    login_key,
    require_session,
    safe_next,
)
from factbridge.workflow.accounts import MAX_PASSWORD, MIN_PASSWORD, ROLES, Actor, password_problem

router = APIRouter(include_in_schema=False)


Version = Annotated[int | None, Form()]


def to_case(case_id: str, anchor: str = "") -> RedirectResponse:
    return RedirectResponse(f"/cases/{case_id}{anchor}", status_code=303)


# -- signing in ------------------------------------------------------------------
@router.get("/login", response_class=HTMLResponse)
def login_form(request: Request, next: str = "/") -> HTMLResponse:
    return render(request, "login.html", {"next": safe_next(next), "error": None})


@router.post("/login", dependencies=[Csrf])
def login(request: Request, web: WebDep, username: Annotated[str, Form(max_length=100)], password: Annotated[str, Form(max_length=1000)],
          next: Annotated[str, Form(max_length=500)] = "/") -> Response:
    # Failures count per (account, client) with backoff, and per client across accounts:
    # someone guessing from elsewhere never locks the account's owner out.
    pair, client = login_key(username, request), client_key(request)
    web.login_limiter.check(pair)
    if web.login_client_limiter is not None:
        web.login_client_limiter.check(client)
    try:
        actor = web.accounts.authenticate(username, password)
    except NotAuthenticated:
        web.login_limiter.hit(pair)
        if web.login_client_limiter is not None:
            web.login_client_limiter.hit(client)
        return render(request, "login.html", {"next": safe_next(next), "error": "login.failed"}, status=401)
    web.login_limiter.reset(pair)
    old = request.cookies.get(SESSION_COOKIE)
    if old:
        web.accounts.end_session(old)
    token, _ = web.accounts.start_session(actor)
    response = RedirectResponse(safe_next(next), status_code=303)
    response.set_cookie(SESSION_COOKIE, token, max_age=int(web.services.settings.session_hours * 3600), **cookie_flags(request))
    return response


@router.post("/logout", dependencies=[Csrf])
def logout(request: Request, web: WebDep) -> Response:
    token = request.cookies.get(SESSION_COOKIE)
    if token:
        web.accounts.end_session(token)
    response = RedirectResponse("/login", status_code=303)
    response.delete_cookie(SESSION_COOKIE, path="/")
    return response


# -- own account -------------------------------------------------------------------------
@router.get("/account", response_class=HTMLResponse)
def account_page(request: Request, actor: ActorDep) -> HTMLResponse:
    return render(request, "account.html", {"min_length": MIN_PASSWORD, "error": None, "changed": None})


@router.post("/account/password", dependencies=[Csrf])
def change_password(request: Request, actor: ActorDep, web: WebDep, current_password: Annotated[str, Form(max_length=MAX_PASSWORD)],
                    new_password: Annotated[str, Form(max_length=MAX_PASSWORD)],
                    confirm_password: Annotated[str, Form(max_length=MAX_PASSWORD)]) -> HTMLResponse:
    """Change one's own password. Guessing the current password here counts against the same
    per-account limit as sign-in, so a stolen session cannot be used to find it."""
    def refused(error: str) -> HTMLResponse:
        return render(request, "account.html", {"min_length": MIN_PASSWORD, "error": error, "changed": None}, status=422)

    pair = login_key(actor.username, request)
    web.login_limiter.check(pair)
    if new_password != confirm_password:
        return refused("account.mismatch")
    problem = password_problem(new_password, actor.username, current_password)
    if problem:
        return refused("account.rule_" + problem)
    try:
        change = web.accounts.change_password(actor.username, current_password, new_password,
                                              keep_session=require_session(request).slot)
    except InputError as exc:
        if exc.field != "current_password":
            raise
        web.login_limiter.hit(pair)
        if web.login_client_limiter is not None:
            web.login_client_limiter.hit(client_key(request))
        return refused("account.wrong_current")
    return render(request, "account.html", {"min_length": MIN_PASSWORD, "error": None, "changed": change})


# -- dashboard -------------------------------------------------------------------------

@router.get("/", response_class=HTMLResponse)
def dashboard(request: Request, actor: ActorDep, web: WebDep, language: str = "") -> HTMLResponse:
    storage = web.services.storage
    org = actor.org
    queue = pv.queue_entries(storage, org, 300)
    queue_is_fallback = not queue
    if queue_is_fallback:
        queue = pv.recent_posts_as_queue(storage, org, 100)
    lang = i18n.page_language(request)
    queue = desk.grouped_queue(storage, org, queue, i18n.translator(lang), lang, language if language in i18n.LANGUAGES else "")
    narratives = pv.narratives(storage, org, 10)
    series, step = pv.chart_series(storage, org, narratives[:6])
    chart = line_chart(series, title="posts over time per narrative", empty_text="—", step=step)
    return render(request, "dashboard.html", {
        "queue": queue,
        "queue_is_fallback": queue_is_fallback,
        "alerts": pv.alerts(storage, org, 10),
        "reports": desk.grouped_reports(storage, org, 8),  # one row per claim, repeats counted
        "narratives": narratives,
        "chart": chart,
        "cases": web.cases.find(org, limit=10),
        "counts": {"posts": storage.count_posts(org), "factchecks": storage.count_factchecks(org)},
        "language": language,
        "tipline": tipline_stats(storage, org, days=7),
    })


@router.get("/dashboard/alerts", response_class=HTMLResponse)
def alerts_fragment(request: Request, actor: ActorDep, web: WebDep) -> HTMLResponse:
    """The live-alerts card alone: the dashboard's script swaps it in every 30 s."""
    return render(request, "alerts_card.html", {"alerts": pv.alerts(web.services.storage, actor.org, 10)})


# -- posts and narratives ------------------------------------------------------------
@router.get("/posts/{post_id}", response_class=HTMLResponse)
def post_page(post_id: str, request: Request, actor: ActorDep, web: WebDep) -> HTMLResponse:
    storage = web.services.storage
    post = storage.get_post(actor.org, post_id)
    return render(request, "post.html", {
        "post": post,
        "reviews": desk.review_rows(web, actor, post, i18n.translator(i18n.page_language(request))),
        "checkworthiness": pv.checkworthiness(storage, actor.org, post_id),
        "triage": pv.queue_entry_of_post(storage, actor.org, post_id),
        "links": pv.link_risks(storage, actor.org, post),
        "narrative": pv.narrative_of_post(storage, actor.org, post_id),
        "cases": web.cases.cases_for(actor.org, "post", post_id),
        "image_matches": image_matches(storage, actor.org, post_id),
    })


@router.get("/narratives/{narrative_id}", response_class=HTMLResponse)
def narrative_page(narrative_id: str, request: Request, actor: ActorDep, web: WebDep) -> HTMLResponse:
    storage = web.services.storage
    item = pv.narrative(storage, actor.org, narrative_id)
    series, step = pv.chart_series(storage, actor.org, [item])
    members = pv.posts_by_ids(storage, actor.org, item["post_ids"][:2000])
    post_languages = dict(item["languages"] or {})
    if not post_languages:
        for p in members:
            post_languages[p.language or "?"] = post_languages.get(p.language or "?", 0) + 1
    chosen = pv.posts_by_ids(storage, actor.org, item["representatives"][:10])
    representatives = chosen + [p for p in members if p.id not in {c.id for c in chosen}][: 10 - len(chosen)]
    matched: dict[str, Any] = {}
    for fc_id in item["factcheck_ids"]:
        matched[fc_id] = None
    for p in members[:200]:
        for m in storage.matches_for_post(actor.org, p.id):
            if m.decision in ("match", "possible"):
                matched.setdefault(m.factcheck_id, None)
    fcs = storage.get_factchecks(actor.org, desk.narrative_factchecks(storage, actor.org, item["post_ids"][:200], list(matched)[:50]))
    return render(request, "narrative.html", {
        "item": item,
        "chart": line_chart(series, title="posts over time", empty_text="—", step=step),
        "post_languages": post_languages,
        "representatives": representatives,
        "factchecks": list(fcs.values()),
        "cases": web.cases.cases_for(actor.org, "narrative", narrative_id),
    })


# -- cases ----------------------------------------------------------------------------
@router.get("/cases", response_class=HTMLResponse)
def cases_page(request: Request, actor: ActorDep, web: WebDep, status: str | None = None) -> HTMLResponse:
    return render(request, "cases.html", {"cases": web.cases.find(actor.org, status or None), "status": status})


@router.post("/cases", dependencies=[Csrf])
def open_case(actor: ActorDep, web: WebDep, source_kind: Annotated[str, Form(max_length=20)] = "manual",
              source_id: Annotated[str, Form(max_length=300)] = "", claim: Annotated[str, Form(max_length=2000)] = "",
              title: Annotated[str, Form(max_length=300)] = "") -> Response:
    if source_kind not in ("post", "narrative", "manual"):
        raise InputError("source must be post, narrative or manual", field="source_kind")
    case = open_case_from_source(web, actor, source_kind, source_id, claim, title, None)
    return to_case(case.id)


@router.get("/cases/{case_id}", response_class=HTMLResponse)
def case_page(case_id: str, request: Request, actor: ActorDep, web: WebDep) -> HTMLResponse:
    case = web.cases.get(actor.org, case_id)
    source_post = None
    if case.source.kind == "post":
        source_post = web.services.storage.get_posts(actor.org, [case.source.id]).get(case.source.id)
    return render(request, "case.html", {
        "case": case,
        "source_post": source_post,
        "scale": web.cases.scale.names,
        "users": web.accounts.list_users(actor.org),
        "appeals": web.appeals.find(actor.org, case_id=case_id) if actor.can("editor") else [],
        "history": web.audit.history(actor.org, "cases", case_id),
        "max_upload": web.services.settings.upload_max_bytes,
        "correct_for": desk.appeal_to_correct(web, actor, case_id, request.query_params.get("correct_for", "")),
        "correct_note": request.query_params.get("note", "")[:1500],
    })


@router.post("/cases/{case_id}/assign", dependencies=[Csrf])
def assign(case_id: str, actor: ActorDep, web: WebDep, assignee: Annotated[str, Form(max_length=40)], version: Version = None) -> Response:
    if assignee.strip().lower() not in {u.username for u in web.accounts.list_users(actor.org)}:
        raise InputError(f"no user '{assignee}' in your organisation", field="assignee")
    web.cases.assign(actor.org, actor, case_id, assignee, version)
    return to_case(case_id)


# Content sniffing by magic number: the declared type is the sender's claim, not a fact.
_MAGIC: list[tuple[bytes, int, str]] = [
    (b"\x89PNG\r\n\x1a\n", 0, "image/png"),
    (b"\xff\xd8\xff", 0, "image/jpeg"),
    (b"GIF87a", 0, "image/gif"),
    (b"GIF89a", 0, "image/gif"),
    (b"%PDF-", 0, "application/pdf"),
    (b"WEBP", 8, "image/webp"),
]


def sniff_type(data: bytes) -> str:
    for magic, offset, kind in _MAGIC:
        if data[offset : offset + len(magic)] == magic:
            return kind
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        text = None
    if text is not None and "\x00" not in text:
        return "text/plain"
    raise InputError("only PNG, JPEG, GIF, WebP, PDF and plain-text files are accepted", field="file")


def _safe_name(name: str) -> str:
    base = Path(name or "file").name
    return re.sub(r"[^\w.\- ]+", "_", base)[:120] or "file"


@router.post("/cases/{case_id}/evidence", dependencies=[Csrf])
async def add_evidence(case_id: str, actor: ActorDep, web: WebDep, kind: Annotated[str, Form(max_length=10)],
                       url: Annotated[str, Form(max_length=2000)] = "", text: Annotated[str, Form(max_length=20_000)] = "",
                       file: Annotated[UploadFile | None, File()] = None, version: Version = None) -> Response:
    stored = None
    if kind == "file":
        web.cases.get(actor.org, case_id)  # fail before storing anything for a case that is not ours
        if file is None or not file.filename:
            raise InputError("choose a file to upload", field="file")
        limit = web.services.settings.upload_max_bytes
        data = await file.read(limit + 1)
        if len(data) > limit:
            raise InputError(f"the file is larger than {limit} bytes", field="file")
        if not data:
            raise InputError("the file is empty", field="file")
        content_type = sniff_type(data)
        sha = file_sha(data)
        folder = web.upload_dir / actor.org
        folder.mkdir(parents=True, exist_ok=True)
        (folder / sha).write_bytes(data)
        stored = {"name": _safe_name(file.filename), "sha256": sha, "size": len(data), "content_type": content_type}
    web.cases.add_evidence(actor.org, actor, case_id, kind, url=url, text=text, file=stored, version=version)
    return to_case(case_id, "#evidence")


@router.get("/cases/{case_id}/files/{evidence_id}")
def evidence_file(case_id: str, evidence_id: str, actor: ActorDep, web: WebDep) -> Response:
    case = web.cases.get(actor.org, case_id)
    for item in case.evidence:
        if item.id == evidence_id and item.kind == "file" and item.file is not None:
            meta = item.file
            path = web.upload_dir / actor.org / meta.sha256
            if not path.is_file():
                raise NotFound("the stored file is missing")
            # Always a download, never rendered inline: uploads are untrusted.
            return FileResponse(path, media_type=meta.content_type or "application/octet-stream", filename=meta.name,
                                content_disposition_type="attachment")
    raise NotFound(f"evidence '{evidence_id}' not found")


@router.post("/cases/{case_id}/verdict", dependencies=[Csrf])
def draft_verdict(case_id: str, actor: ActorDep, web: WebDep, rating: Annotated[str, Form(max_length=100)],
                  explanation: Annotated[str, Form(max_length=20_000)], headline: Annotated[str, Form(max_length=300)] = "",
                  language: Annotated[str, Form(max_length=8)] = "", version: Version = None) -> Response:
    web.cases.draft_verdict(actor.org, actor, case_id, rating, explanation, headline=headline, language=language or None, version=version)
    return to_case(case_id, "#verdict")


@router.post("/cases/{case_id}/approve", dependencies=[Csrf])
def approve(case_id: str, actor: ActorDep, web: WebDep, version: Version = None) -> Response:
    web.cases.approve(actor.org, actor, case_id, version)
    return to_case(case_id, "#verdict")


@router.post("/cases/{case_id}/return", dependencies=[Csrf])
def return_for_changes(case_id: str, actor: ActorDep, web: WebDep, note: Annotated[str, Form(max_length=5000)], version: Version = None) -> Response:
    web.cases.return_for_changes(actor.org, actor, case_id, note, version)
    return to_case(case_id, "#verdict")


@router.post("/cases/{case_id}/close", dependencies=[Csrf])
def close(case_id: str, actor: ActorDep, web: WebDep, reason: Annotated[str, Form(max_length=5000)], version: Version = None) -> Response:
    web.cases.close(actor.org, actor, case_id, reason, version)
    return to_case(case_id)


@router.post("/cases/{case_id}/publish", dependencies=[Csrf])
def publish_case(case_id: str, request: Request, background: BackgroundTasks, actor: ActorDep, web: WebDep, version: Version = None) -> Response:
    publish(web, actor, case_id, version, request, background)
    return to_case(case_id, "#publication")


@router.post("/cases/{case_id}/correction/decide", dependencies=[Csrf])
def decide_correction(case_id: str, background: BackgroundTasks, actor: ActorDep, web: WebDep,
                      decision: Annotated[str, Form(max_length=10)], version: Version = None) -> Response:
    if decision not in ("approve", "reject"):
        raise InputError("decision must be approve or reject", field="decision")
    web.cases.decide_correction(actor.org, actor, case_id, decision == "approve", version)
    background.add_task(index_library, web, actor.org)
    return to_case(case_id, "#publication")


@router.post("/cases/{case_id}/withdraw", dependencies=[Csrf])
def withdraw(case_id: str, actor: ActorDep, web: WebDep, reason: Annotated[str, Form(max_length=5000)], version: Version = None) -> Response:
    web.cases.withdraw(actor.org, actor, case_id, reason, version)
    return to_case(case_id, "#publication")


@router.post("/cases/{case_id}/withdrawal/decide", dependencies=[Csrf])
def decide_withdrawal(case_id: str, background: BackgroundTasks, actor: ActorDep, web: WebDep,
                      decision: Annotated[str, Form(max_length=10)], version: Version = None) -> Response:
    if decision not in ("approve", "reject"):
        raise InputError("decision must be approve or reject", field="decision")
    case = web.cases.decide_withdrawal(actor.org, actor, case_id, decision == "approve", version)
    if case.status == "withdrawn":
        background.add_task(recheck_withdrawn, web, actor.org, case)
    return to_case(case_id, "#publication")


@router.post("/cases/{case_id}/correct", dependencies=[Csrf])
def correct(case_id: str, background: BackgroundTasks, actor: ActorDep, web: WebDep, text: Annotated[str, Form(max_length=5000)],
            new_rating: Annotated[str, Form(max_length=100)] = "", version: Version = None,
            appeal_id: Annotated[str, Form(max_length=100)] = "", appeal_note: Annotated[str, Form(max_length=5000)] = "") -> Response:
    web.cases.correct(actor.org, actor, case_id, text, new_rating, version)
    background.add_task(index_library, web, actor.org)
    if appeal_id:  # the correction an appeal asked for: the appeal is decided "corrected" with it
        web.appeals.decide(actor.org, actor, appeal_id, "corrected", appeal_note.strip() or text)
    return to_case(case_id, "#publication")


# -- appeals and audit --------------------------------------------------------------------
@router.get("/appeals", response_class=HTMLResponse)
def appeals_page(request: Request, actor: ActorDep, web: WebDep) -> HTMLResponse:
    actor.check("appeal.read")
    appeals = web.appeals.find(actor.org)
    published = web.cases.published_pages(actor.org, list({a.case_id for a in appeals}))
    return render(request, "appeals.html", {"appeals": appeals, "published": published})


@router.post("/appeals/{appeal_id}/decide", dependencies=[Csrf])
def decide_appeal(appeal_id: str, actor: ActorDep, web: WebDep, outcome: Annotated[str, Form(max_length=20)],
                  note: Annotated[str, Form(max_length=5000)], version: Version = None) -> Response:
    if outcome == "corrected" and desk.correction_needed(web, actor, appeal_id):
        # "Corrected" needs the correction first: go and write it; saving it decides the appeal.
        appeal = web.appeals.get(actor.org, appeal_id)
        return RedirectResponse(f"/cases/{appeal.case_id}?{urlencode({'correct_for': appeal_id, 'note': note[:1500]})}#correct", status_code=303)
    web.appeals.decide(actor.org, actor, appeal_id, outcome, note, version)
    return RedirectResponse("/appeals", status_code=303)


# -- organisation administration --------------------------------------------------------
def _users_page(request: Request, actor: Actor, web: WebState, created: dict[str, str] | None = None,
                done: dict[str, Any] | None = None) -> HTMLResponse:
    return render(request, "users.html", {"users": web.accounts.list_user_records(actor.org), "roles": ROLES, "created": created,
                                          "tokens": web.accounts.list_tokens(actor.org), "done": done})


@router.get("/admin/users", response_class=HTMLResponse)
def users_page(request: Request, actor: ActorDep, web: WebDep) -> HTMLResponse:
    actor.check("users.manage")
    return _users_page(request, actor, web)


@router.post("/admin/users", dependencies=[Csrf])
def add_user(request: Request, actor: ActorDep, web: WebDep, username: Annotated[str, Form(max_length=40)],
             role: Annotated[str, Form(max_length=20)], display_name: Annotated[str, Form(max_length=100)] = "") -> HTMLResponse:
    actor.check("users.manage")
    # A one-time password shown once to the admin, who hands it over; never stored in clear
    # (the page is sent with Cache-Control: no-store).
    password = secrets.token_urlsafe(12)
    user = web.accounts.add_user(username, password, actor.org, role, display_name, actor=actor.username)
    return _users_page(request, actor, web, created={"username": user.username, "password": password})


@router.post("/admin/users/{username}/role", dependencies=[Csrf])
def change_role(username: str, actor: ActorDep, web: WebDep, role: Annotated[str, Form(max_length=20)]) -> Response:
    web.accounts.set_role(username, role, by=actor)  # refuses one's own role, whatever the letter case
    return RedirectResponse("/admin/users", status_code=303)


@router.post("/admin/users/{username}/disable", dependencies=[Csrf])
def disable_user(username: str, actor: ActorDep, web: WebDep, disabled: Annotated[str, Form(max_length=5)] = "true") -> Response:
    web.accounts.set_disabled(username, disabled != "false", by=actor)
    return RedirectResponse("/admin/users", status_code=303)


@router.post("/admin/users/{username}/password", dependencies=[Csrf])
def reset_password(username: str, request: Request, actor: ActorDep, web: WebDep) -> HTMLResponse:
    """A new one-time password; every session of the user ends and every token is revoked."""
    password = secrets.token_urlsafe(12)
    change = web.accounts.set_password(username, password, by=actor)
    return _users_page(request, actor, web, created={"username": change.username, "password": password, "reset": "1"},
                       done={"sessions": change.sessions_revoked, "tokens": change.tokens_revoked})


@router.post("/admin/tokens/{token_id}/revoke", dependencies=[Csrf])
def revoke_token(token_id: str, actor: ActorDep, web: WebDep) -> Response:
    web.accounts.revoke_token(actor.org, token_id, by=actor)
    return RedirectResponse("/admin/users#tokens", status_code=303)


@router.get("/audit", response_class=HTMLResponse)
def audit_page(request: Request, actor: ActorDep, web: WebDep, offset: Annotated[int, Query(ge=0, le=1_000_000_000)] = 0) -> HTMLResponse:
    actor.check("audit.read")  # an offset past what storage can count is refused as bad input, not a 500
    return render(request, "audit.html", {"entries": web.audit.entries(actor.org, 100, offset), "offset": offset})
