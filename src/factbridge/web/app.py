"""The web application: `create_app(services)` builds it; nothing is global.

Routers: `api` (JSON under /api/v1, bearer tokens), `pages` (the signed-in
workspace), `public` (published fact-checks, feed, report and appeal forms).
Errors from the project's exception tree become HTTP responses in exactly one
handler, `handle_error`: JSON under /api, an HTML page elsewhere.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from jinja2 import Environment, PackageLoader, select_autoescape

from factbridge import __version__
from factbridge.errors import (
    Conflict,
    FactBridgeError,
    InputError,
    NotAuthenticated,
    NotFound,
    PermissionDenied,
    RateLimited,
    StorageError,
)
from factbridge.services import Services
from factbridge.web import api_docs, i18n
from factbridge.web.limits import RequestLimits
from factbridge.web.security import (
    CSRF_COOKIE,
    SECURITY_HEADERS,
    SESSION_COOKIE,
    Network,
    RateLimiter,
    client_salt,
    cookie_flags,
    csrf_token_for,
    parse_limit,
    parse_networks,
    session_from_cookie,
)
from factbridge.web.templating import template_globals
from factbridge.workflow.accounts import Accounts
from factbridge.workflow.appeals import Appeals
from factbridge.workflow.audit import AuditLog
from factbridge.workflow.cases import CaseBook, RatingScale

# Signed-in pages and anything with secrets (the one-time password of a new user) are never cached.
NO_STORE_PREFIXES = ("/api/", "/cases", "/posts", "/narratives", "/appeals", "/audit", "/admin", "/account", "/login", "/dashboard")

STATUS_FOR: list[tuple[type[Exception], int]] = [
    (NotAuthenticated, 401),
    (PermissionDenied, 403),
    (NotFound, 404),
    (Conflict, 409),
    (InputError, 422),
    (RateLimited, 429),
    (StorageError, 503),
]


@dataclass
class WebState:
    services: Services
    audit: AuditLog
    accounts: Accounts
    cases: CaseBook
    appeals: Appeals
    login_limiter: RateLimiter
    public_limiter: RateLimiter
    templates: Environment
    login_client_limiter: RateLimiter | None = None
    trusted_proxies: tuple[Network, ...] = ()

    @property
    def upload_dir(self) -> Path:
        return Path(self.services.settings.data_dir) / "uploads"


def accounts_for(services: Services) -> Accounts:
    s = services.settings
    return Accounts(services.storage, AuditLog.in_data_dir(services.storage, s.data_dir), s.session_hours,
                    hash_time_cost=s.password_hash_time_cost, hash_memory_kib=s.password_hash_memory_kib, token_days=s.api_token_days)


def rate_windows(services: Services) -> dict[str, float]:
    """Each stored limiter's name and window, for sweeping expired counters."""
    return {limiter.name: limiter.window_s for limiter in rate_limiters(services)}


def rate_limiters(services: Services) -> tuple[RateLimiter, RateLimiter, RateLimiter]:
    """The sign-in (per account and client, with backoff), the public-form and the sign-in per
    client limiters, counting in storage (shared by processes)."""
    settings = services.settings
    salt = client_salt(services.storage)
    login = RateLimiter(services.storage, "login", *parse_limit(settings.login_rate_limit, "login_rate_limit"),
                        what="sign-in attempts", salt=salt, backoff=True)
    public = RateLimiter(services.storage, "public", *parse_limit(settings.public_rate_limit, "public_rate_limit"),
                         what="submissions from your address", salt=salt)
    login_client = RateLimiter(services.storage, "login-client", *parse_limit(settings.login_client_rate_limit, "login_client_rate_limit"),
                               what="failed sign-ins from your address", salt=salt)
    return login, public, login_client


def build_state(services: Services) -> WebState:
    settings = services.settings
    storage = services.storage
    audit = AuditLog.in_data_dir(storage, settings.data_dir)
    cases = CaseBook(storage, audit, RatingScale.parse(settings.rating_scale))
    login_limiter, public_limiter, login_client_limiter = rate_limiters(services)
    env = Environment(loader=PackageLoader("factbridge.web", "templates"), autoescape=select_autoescape(default=True, default_for_string=True))
    env.filters["web_link"] = web_link
    env.globals.update(template_globals())
    return WebState(
        services=services,
        audit=audit,
        accounts=accounts_for(services),
        cases=cases,
        appeals=Appeals(storage, audit, cases),
        login_limiter=login_limiter,
        public_limiter=public_limiter,
        templates=env,
        login_client_limiter=login_client_limiter,
        trusted_proxies=parse_networks(settings.trusted_proxies),
    )


def status_for(exc: Exception) -> int:
    for cls, code in STATUS_FOR:
        if isinstance(exc, cls):
            return code
    return 500


def wants_json(request: Request) -> bool:
    return request.url.path.startswith(("/api/", "/federation/")) or request.url.path.endswith(".json")


async def handle_error(request: Request, exc: Exception) -> Response:
    """The one place where errors become HTTP responses."""
    if isinstance(exc, RequestValidationError):
        fields = [".".join(str(p) for p in e.get("loc", ()) if p not in ("body", "query", "path")) for e in exc.errors()]
        detail = "; ".join(f"{f}: {e.get('msg')}" if f else str(e.get("msg")) for f, e in zip(fields, exc.errors(), strict=True))
        exc = InputError(detail or "invalid request")
    status = status_for(exc)
    headers = {"Retry-After": str(exc.retry_after_s)} if isinstance(exc, RateLimited) else {}
    if wants_json(request):
        if isinstance(exc, NotAuthenticated):
            headers["WWW-Authenticate"] = "Bearer"
        body: dict[str, Any] = {"error": type(exc).__name__, "detail": str(exc)}
        if isinstance(exc, Conflict) and exc.current:
            body["current"] = exc.current  # e.g. the case's current version, to reload and retry with
        return JSONResponse(body, status_code=status, headers=headers)
    if isinstance(exc, NotAuthenticated) and request.method == "GET":
        return RedirectResponse(f"/login?next={request.url.path}", status_code=303)
    return render(request, "error.html", {"status": status, "message": str(exc), "field": getattr(exc, "field", None)}, status=status, headers=headers)


def render(request: Request, template: str, context: dict[str, Any] | None = None, *, status: int = 200,
           headers: dict[str, str] | None = None) -> HTMLResponse:
    web: WebState = request.app.state.web
    lang = i18n.pick_language(request.query_params.get("lang"), request.cookies.get(i18n.LANG_COOKIE), request.headers.get("accept-language"))
    session = session_from_cookie(request)
    csrf = csrf_token_for(request)
    # The shared names win over a page's own: a page cannot shadow the translator or the CSRF token.
    ctx = {
        **(context or {}),
        "request": request,
        "t": i18n.translator(lang),
        "lang": lang,
        "languages": i18n.LANGUAGES,
        "actor": session.actor if session else None,
        "csrf_token": csrf,
        "version": __version__,
        "path": request.url.path,
    }
    html = web.templates.get_template(template).render(ctx)
    response = HTMLResponse(html, status_code=status, headers=headers)
    if getattr(request.state, "new_csrf", None):
        response.set_cookie(CSRF_COOKIE, request.state.new_csrf, **cookie_flags(request))
    if request.query_params.get("lang") in i18n.LANGUAGES:
        response.set_cookie(i18n.LANG_COOKIE, lang, max_age=365 * 86400, **cookie_flags(request))
    return response


def create_app(services: Services) -> FastAPI:
    from starlette.exceptions import HTTPException

    from factbridge.web import api, desk, federation, pages, public, sources_api
    from factbridge.web import images as web_images

    app = FastAPI(
        title="FactBridge",
        version=__version__,
        description="Fact-checker workspace API: posts, matches, fact-checks, narratives, alerts, triage queue, "
        "cases, verdicts and published ClaimReviews. Authenticate with `Authorization: Bearer <token>` "
        "(create one with `factbridge users token NAME`; tokens expire, see `api_token_days`). Writes to a case "
        "take the `version` you read: a stale write, or one that races another write to the same case, gets "
        "409 with `current` (the case's current version) in the body: reload and retry with it.",
        docs_url=None,  # served by web/api_docs.py from local assets (no CDN, no inline script)
        redoc_url=None,
        openapi_url="/api/v1/openapi.json",
    )
    app.state.web = build_state(services)
    if services.queue.in_process:
        # no workers: this server is the queue's consumer, in a thread, never in a request
        from factbridge.pipeline.process import BackgroundProcessor

        app.state.processor = BackgroundProcessor(services).start()
        services._closers.append(app.state.processor)
    app.add_exception_handler(FactBridgeError, handle_error)
    app.add_exception_handler(RequestValidationError, handle_error)
    app.add_exception_handler(HTTPException, desk.http_error)  # unknown pages: a translated page, not JSON

    # Authenticate, then count the body on the stream (web/limits.py). Added before the headers
    # middleware, so it runs inside it: its BodyTooLarge reaches the body parser unwrapped.
    web: WebState = app.state.web
    app.add_middleware(RequestLimits, request_max_bytes=services.settings.request_max_bytes,
                       upload_max_bytes=services.settings.upload_max_bytes, check_token=web.accounts.token_actor,
                       check_session=web.accounts.session, session_cookie=SESSION_COOKIE)

    @app.middleware("http")
    async def security_headers(request: Request, call_next: Any) -> Response:
        response: Response = await call_next(request)
        for key, value in SECURITY_HEADERS.items():
            response.headers.setdefault(key, value)
        if request.url.path.startswith(NO_STORE_PREFIXES) or request.url.path == "/":
            response.headers.setdefault("Cache-Control", "no-store")
        return response

    api_docs.mount(app)

    app.mount("/static", StaticFiles(directory=str(files("factbridge.web") / "static")), name="static")
    app.include_router(api.router)
    app.include_router(sources_api.router)
    app.include_router(pages.router)
    app.include_router(desk.router)
    app.include_router(public.router)
    app.include_router(federation.router)
    app.include_router(web_images.router)
    return app


def web_link(url: object) -> str:
    """The URL if it may be a link (http or https), else "": text from imported fact-checks or
    feeds never becomes a `javascript:`, `data:` or other link in a page."""
    text = str(url or "").strip()
    scheme = text.split(":", 1)[0].lower() if ":" in text else ""
    return text if scheme in ("http", "https") and text[len(scheme):].startswith("://") else ""


def public_base_url(services: Services) -> str:
    """The base of permanent public URLs: the `public_url` setting, else the address `serve`
    listens on; never the Host header of a request (anyone can send any Host)."""
    settings = services.settings
    return (settings.public_url or f"http://{settings.host}:{settings.port}").rstrip("/")


def file_sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()
