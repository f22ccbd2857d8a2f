"""Request bodies: authenticate first, then count the bytes as they stream in.

A limit that reads only Content-Length misses chunked bodies (no length) and a
route that parses JSON or a form reads the whole body into memory before any
dependency (authentication included) runs. This ASGI middleware sits in front
of the app:

* a declared Content-Length over the limit is refused at once (413);
* a request with a body to an authenticated route is authenticated *before*
  one byte of the body is read: the API by its bearer token, the workspace
  pages by their session cookie (401 otherwise; the sign-in form, sign-out and
  the public forms are the only bodies anyone may send, and partners' signed
  federation pushes);
* the body is counted on the stream, chunk by chunk: the chunk that crosses the
  limit raises `BodyTooLarge` (an HTTPException, so FastAPI's body parsing
  passes it through untouched) and the client gets 413; nothing past the limit
  is ever buffered.

The limit is `request_max_bytes` for every route but the evidence upload,
which may carry `upload_max_bytes` (plus room for the form around the file).
"""

from __future__ import annotations

import json
import re
from collections.abc import Awaitable, Callable
from typing import Any

import anyio
from fastapi import HTTPException
from starlette.datastructures import Headers
from starlette.requests import cookie_parser
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from factbridge.errors import NotAuthenticated
from factbridge.web.templating import signed_out_page

UPLOAD_ROUTE = re.compile(r"^/cases/[^/]+/evidence$")
# Routes that take a body without a session: signing in and out, the public forms, and the
# federation endpoints (a partner's push is authenticated by its Ed25519 signature, in the
# route, once the size-limited body is read).
OPEN_PAGE_POSTS = re.compile(r"^/(login|logout)$|^/public/|^/federation/")
# Signed webhooks of partners' systems: the HMAC of the (size-limited) body is their credential.
OPEN_API_POSTS = re.compile(r"^/api/v1/hooks/")
BODY_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
FORM_OVERHEAD = 256 * 1024

class BodyTooLarge(HTTPException):
    def __init__(self, limit: int) -> None:
        super().__init__(status_code=413, detail=f"request body larger than {limit} bytes")


class RequestLimits:
    """The ASGI middleware (see the module docstring). `check_token` and `check_session` are
    blocking lookups (run in a worker thread) that raise NotAuthenticated."""

    def __init__(self, app: ASGIApp, *, request_max_bytes: int, upload_max_bytes: int,
                 check_token: Callable[[str], Any], check_session: Callable[[str], Any], session_cookie: str) -> None:
        self.app = app
        self.request_max_bytes = request_max_bytes
        self.upload_max_bytes = upload_max_bytes + FORM_OVERHEAD
        self.check_token = check_token
        self.check_session = check_session
        self.session_cookie = session_cookie

    def limit_for(self, path: str) -> int:
        return self.upload_max_bytes if UPLOAD_ROUTE.match(path) else self.request_max_bytes

    async def _authenticated(self, path: str, headers: Headers) -> bool | None:
        """True/False for a route that needs a caller, None for one that does not."""
        if OPEN_API_POSTS.match(path):
            return None
        if path.startswith("/api/"):
            scheme, _, token = headers.get("authorization", "").partition(" ")
            if scheme.lower() != "bearer" or not token.strip():
                return False
            return await _passes(self.check_token, token.strip())
        if OPEN_PAGE_POSTS.match(path):
            return None
        cookie = cookie_parser(headers.get("cookie", "")).get(self.session_cookie)
        return cookie is not None and bool(cookie) and await _passes(self.check_session, cookie)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] not in BODY_METHODS:
            await self.app(scope, receive, send)
            return
        path: str = scope["path"]
        headers = Headers(scope=scope)
        limit = self.limit_for(path)
        length = headers.get("content-length", "")
        if length.isdigit() and int(length) > limit:
            await _respond(send, 413, "InputError", f"request body larger than {limit} bytes")
            return
        if await self._authenticated(path, headers) is False:
            if not path.startswith("/api/"):  # a workspace form whose session ended: a page to sign in again from
                await _respond_page(send, 401, signed_out_page(headers))
                return
            await _respond(send, 401, "NotAuthenticated", "sign in (pages) or send an API token: Authorization: Bearer <token>",
                           {"www-authenticate": "Bearer"})
            return
        received = 0
        started = False

        async def counted() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise BodyTooLarge(limit)
            return message

        async def watched(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counted, watched)
        except BodyTooLarge:
            if started:
                raise
            await _respond(send, 413, "InputError", f"request body larger than {limit} bytes")


async def _passes(check: Callable[[str], Any], secret: str) -> bool:
    try:
        await anyio.to_thread.run_sync(check, secret)
    except NotAuthenticated:
        return False
    return True


async def _respond(send: Callable[[Message], Awaitable[None]], status: int, error: str, detail: str,
                   extra: dict[str, str] | None = None, html: str | None = None) -> None:
    body = html.encode("utf-8") if html is not None else json.dumps({"error": error, "detail": detail}).encode("utf-8")
    kind = b"text/html; charset=utf-8" if html is not None else b"application/json"
    headers = [(b"content-type", kind), (b"content-length", str(len(body)).encode()), (b"connection", b"close"),
               *((k.encode(), v.encode()) for k, v in (extra or {}).items())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def _respond_page(send: Callable[[Message], Awaitable[None]], status: int, body: bytes) -> None:
    headers = [(b"content-type", b"text/html; charset=utf-8"), (b"content-length", str(len(body)).encode()), (b"connection", b"close"),
               (b"cache-control", b"no-store")]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
