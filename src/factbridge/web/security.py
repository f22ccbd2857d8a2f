"""Sign-in state, CSRF protection, rate limits and response headers.

* Browser sessions: a random token in an HttpOnly, SameSite=Lax cookie; the
  server keeps only its SHA-256 (see workflow.accounts).
* CSRF: every state-changing form carries `csrf_token`. Signed-in users get a
  token bound to their session; visitors (sign-in, public report and appeal
  forms) get a random token in a cookie that the form must repeat
  (double submit). Checked by `check_csrf` on every POST route of the pages.
* The API takes only `Authorization: Bearer <token>`: browsers never send
  that on their own, so the API needs no CSRF token.
* Rate limits count per client address, which is only kept (salted and
  hashed) in memory for the length of the window.
"""

from __future__ import annotations

import hashlib
import secrets
import threading
import time
from collections import defaultdict, deque
from typing import Any

from fastapi import Request

from factbridge.errors import ConfigError, NotAuthenticated, PermissionDenied, RateLimited
from factbridge.workflow.accounts import Actor, Session, constant_time_equal

SESSION_COOKIE = "fb_session"
CSRF_COOKIE = "fb_csrf"
CSRF_FIELD = "csrf_token"

SECURITY_HEADERS = {
    # No inline scripts or styles anywhere; JSON-LD blocks are data, not script.
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'self'"
    ),
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
}


def parse_limit(text: str, name: str) -> tuple[int, float]:
    count, sep, seconds = text.partition("/")
    try:
        if not sep:
            raise ValueError(text)
        return int(count), float(seconds)
    except ValueError as exc:
        raise ConfigError(f"setting '{name}' must look like COUNT/SECONDS, got {text!r}") from exc


class RateLimiter:
    """Sliding-window counter per key (in memory, one process)."""

    def __init__(self, limit: int, window_s: float, what: str) -> None:
        self.limit = limit
        self.window_s = window_s
        self.what = what
        self._hits: defaultdict[str, deque[float]] = defaultdict(deque)
        self._lock = threading.Lock()

    def _trim(self, key: str, now: float) -> deque[float]:
        hits = self._hits[key]
        while hits and hits[0] <= now - self.window_s:
            hits.popleft()
        return hits

    def check(self, *keys: str) -> None:
        now = time.monotonic()
        with self._lock:
            for key in keys:
                hits = self._trim(key, now)
                if len(hits) >= self.limit:
                    retry = int(hits[0] + self.window_s - now) + 1
                    raise RateLimited(f"too many {self.what}; try again in {retry} s", retry)

    def hit(self, *keys: str) -> None:
        now = time.monotonic()
        with self._lock:
            for key in keys:
                self._trim(key, now).append(now)

    def take(self, *keys: str) -> None:
        """Check and count in one step (public forms)."""
        self.check(*keys)
        self.hit(*keys)

    def reset(self, *keys: str) -> None:
        with self._lock:
            for key in keys:
                self._hits.pop(key, None)


_CLIENT_SALT = secrets.token_bytes(16)


def client_key(request: Request) -> str:
    host = request.client.host if request.client else "unknown"
    return "client:" + hashlib.sha256(_CLIENT_SALT + host.encode()).hexdigest()[:24]


def session_from_cookie(request: Request) -> Session | None:
    """The signed-in session, or None (cached on the request)."""
    if hasattr(request.state, "session"):
        return request.state.session
    token = request.cookies.get(SESSION_COOKIE)
    session: Session | None = None
    if token:
        try:
            session = request.app.state.web.accounts.session(token)
        except NotAuthenticated:
            session = None
    request.state.session = session
    return session


def require_session(request: Request) -> Session:
    session = session_from_cookie(request)
    if session is None:
        raise NotAuthenticated("please sign in")
    return session


def page_actor(request: Request) -> Actor:
    return require_session(request).actor


def csrf_token_for(request: Request) -> str:
    session = session_from_cookie(request)
    if session is not None:
        return session.csrf
    token = request.cookies.get(CSRF_COOKIE) or getattr(request.state, "new_csrf", None)
    if not token:
        token = secrets.token_urlsafe(32)
        request.state.new_csrf = token  # set as a cookie on the way out
    return token


async def check_csrf(request: Request) -> None:
    """Dependency for every state-changing page route."""
    form = await request.form()
    sent = form.get(CSRF_FIELD)
    session = session_from_cookie(request)
    expected = session.csrf if session is not None else request.cookies.get(CSRF_COOKIE)
    if not isinstance(sent, str) or not expected or not constant_time_equal(sent, expected):
        raise PermissionDenied("the form's security token is missing or out of date; reload the page and try again")


def safe_next(target: str | None) -> str:
    """Only same-site relative paths: no open redirects."""
    if target and target.startswith("/") and not target.startswith("//") and "\\" not in target:
        return target
    return "/"


def cookie_flags(request: Request) -> dict[str, Any]:
    return {"httponly": True, "samesite": "lax", "secure": request.url.scheme == "https", "path": "/"}
