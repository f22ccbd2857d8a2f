"""Sign-in state, CSRF protection, rate limits and response headers.

* Browser sessions: a random token in an HttpOnly, SameSite=Lax cookie; the
  server keeps only its SHA-256 (see workflow.accounts).
* CSRF: every state-changing form carries `csrf_token`. Signed-in users get a
  token bound to their session; visitors (sign-in, public report and appeal
  forms) get a random token in a cookie that the form must repeat
  (double submit). Checked by `check_csrf` on every POST route of the pages.
* The API takes only `Authorization: Bearer <token>`: browsers never send
  that on their own, so the API needs no CSRF token.
* Rate limits count in storage (see RateLimiter), so a restart does not reset
  them and every process over one database shares them; addresses and names
  are kept only salted and hashed, and only for the length of the window.
  The counters are `RateBucket` records of the "_system" scope's `rate_limits` collection,
  read and written only through `RateBuckets` (conditional writes on the bucket's version);
  the salt lives in `secrets`, through `SystemSecrets`.
  Sign-in failures count per (account, client) pair with exponential backoff,
  and per client across accounts: whoever guesses a password slows down only
  themselves, never the account's owner signing in from elsewhere.
* The client address is the peer's, or, when the peer is one of the
  configured `trusted_proxies`, the nearest X-Forwarded-For address that is
  not a trusted proxy: a forged header from anyone else changes nothing.
"""

from __future__ import annotations

import hashlib
import ipaddress
import secrets
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from fastapi import Request

from factbridge.backends.storage.base import Expect, Storage
from factbridge.errors import (
    ConfigError,
    NotAuthenticated,
    PermissionDenied,
    PreconditionFailed,
    RateLimited,
)
from factbridge.workflow.accounts import SYSTEM_ORG, Actor, Session, constant_time_equal

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


RATE_LIMITS = "rate_limits"
SECRETS = "secrets"
# Counters are spread over this many documents per limiter: a bounded number of records
# (the storage contract cannot delete), and keys that share a document are still counted apart.
RATE_BUCKETS = 64
# How often a counter update is redone when another process wrote its bucket meanwhile.
UPDATE_ATTEMPTS = 50


@dataclass(frozen=True)
class RateBucket:
    """One bucket of a limiter's counters: the recent hit times of each hashed key, and the
    version ("_v") its conditional writes check."""

    id: str
    hits: dict[str, list[float]] = field(default_factory=dict)
    version: int | None = None  # None: a document without one

    def trimmed(self, now: float, window_s: float) -> dict[str, list[float]]:
        """The hits inside the window (keys left without any dropped)."""
        out: dict[str, list[float]] = {}
        for hashed, times in self.hits.items():
            recent = [t for t in times if t > now - window_s]
            if recent:
                out[hashed] = recent
        return out

    def to_doc(self) -> dict[str, Any]:
        doc: dict[str, Any] = {k: list(v) for k, v in self.hits.items()}
        if self.version is not None:
            doc["_v"] = self.version
        return doc

    @classmethod
    def from_doc(cls, bucket: str, doc: Mapping[str, Any]) -> RateBucket:
        version = doc.get("_v")
        return cls(bucket, {str(k): [float(t) for t in v] for k, v in doc.items() if not str(k).startswith("_") and isinstance(v, list)},
                   int(version) if isinstance(version, int | float) else None)


class RateBuckets:
    """The one accessor of `rate_limits` (scope "_system")."""

    def __init__(self, storage: Storage) -> None:
        self.storage = storage

    def get(self, buckets: Sequence[str]) -> dict[str, RateBucket]:
        docs = self.storage.get_docs(SYSTEM_ORG, RATE_LIMITS, list(buckets)) if buckets else {}
        return {b: RateBucket.from_doc(b, d) for b, d in docs.items()}

    def write(self, changes: dict[str, tuple[RateBucket | None, dict[str, list[float]]]]) -> None:
        """Write buckets (bucket -> (as read, new hits)), each only if it is still as read
        (else PreconditionFailed, and nothing is written)."""
        rows: list[tuple[str, dict[str, Any], float | None]] = []
        expect: list[Expect] = []
        for bucket, (read, hits) in changes.items():
            expect.append(Expect(RATE_LIMITS, bucket, "_v", read.version) if read is not None else Expect(RATE_LIMITS, bucket))
            rows.append((bucket, RateBucket(bucket, hits, int((read.version if read else None) or 0) + 1).to_doc(), None))
        self.storage.put_docs_batch(SYSTEM_ORG, [(RATE_LIMITS, rows)], expect=expect)


class SystemSecrets:
    """The one accessor of `secrets` (scope "_system"): installation-wide random values."""

    def __init__(self, storage: Storage) -> None:
        self.storage = storage

    def get_or_make(self, name: str) -> bytes:
        """Made on first use; if two processes make one at once, the stored one wins."""
        found = self.storage.get_docs(SYSTEM_ORG, SECRETS, [name]).get(name)
        if found is None:
            self.storage.put_docs(SYSTEM_ORG, SECRETS, [(name, {"hex": secrets.token_hex(16)}, None)])
            found = self.storage.get_docs(SYSTEM_ORG, SECRETS, [name])[name]
        return bytes.fromhex(str(found["hex"]))


class RateLimiter:
    """Sliding-window counter per key, kept in storage so that it survives restarts and is
    shared by every process of the workspace over the same database.

    The counters of one limiter live in RATE_BUCKETS documents of the "_system" scope; a key
    (salted and hashed: no address or user name is stored) goes to one bucket, which holds
    the recent hit times of each of its keys. Every write of a bucket drops the hits older
    than the window and the keys left without hits, so a bucket holds only the current
    window's keys. Updates are read-modify-write made safe across processes by a conditional
    write: each bucket carries a version ("_v") and is written only if it still has the
    version that was read (else the update is redone on the fresh bucket), so two processes
    counting at the same instant never lose each other's hits.
    """

    def __init__(self, storage: Storage, name: str, limit: int, window_s: float, what: str, salt: bytes,
                 clock: Callable[[], float] = time.time, *, backoff: bool = False) -> None:
        """`backoff`: instead of refusing every try once `limit` hits are in the window, each
        further try waits after the latest hit, from window/32 doubling up to the window."""
        self.backoff = backoff
        self.storage = storage
        self.name = name
        self.limit = limit
        self.window_s = window_s
        self.what = what
        self.salt = salt
        self.clock = clock

    def _hashed(self, key: str) -> tuple[str, str]:
        digest = hashlib.sha256(self.salt + self.name.encode() + b"\0" + key.encode()).hexdigest()
        return f"{self.name}-{int(digest[:8], 16) % RATE_BUCKETS:02d}", digest[:24]

    def _update(self, keys: tuple[str, ...], *, enforce: bool, count: bool = False, clear: bool = False) -> None:
        """Read the keys' buckets; refuse (enforce) a key at its limit before anything is written;
        then add a hit to each key (count) or forget them (clear) and write the trimmed buckets."""
        now = self.clock()
        by_bucket: dict[str, list[str]] = {}
        for key in keys:
            bucket, hashed = self._hashed(key)
            by_bucket.setdefault(bucket, []).append(hashed)
        store = RateBuckets(self.storage)
        for _ in range(UPDATE_ATTEMPTS):
            read = store.get(sorted(by_bucket))
            buckets = {bucket: read[bucket].trimmed(now, self.window_s) if bucket in read else {} for bucket in by_bucket}
            if enforce:
                for bucket, hashed_keys in by_bucket.items():
                    for hashed in hashed_keys:
                        own = buckets[bucket].get(hashed, [])
                        if len(own) >= self.limit:
                            if self.backoff:
                                wait = min(self.window_s, self.window_s / 32 * 2 ** (len(own) - self.limit))
                                if now - own[-1] >= wait:
                                    continue
                                retry = int(own[-1] + wait - now) + 1
                            else:
                                retry = int(own[-self.limit] + self.window_s - now) + 1
                            raise RateLimited(f"too many {self.what}; try again in {retry} s", retry)
            if not (count or clear):
                return
            for bucket, hashed_keys in by_bucket.items():
                for hashed in hashed_keys:
                    if clear:
                        buckets[bucket].pop(hashed, None)
                    else:
                        buckets[bucket].setdefault(hashed, []).append(now)
            try:
                store.write({bucket: (read.get(bucket), hits) for bucket, hits in buckets.items()})
            except PreconditionFailed:
                continue  # another process wrote one of these buckets meanwhile: count again on it
            return
        raise RateLimited(f"too many {self.what} at once; try again", 1)

    def check(self, *keys: str) -> None:
        self._update(keys, enforce=True)

    def hit(self, *keys: str) -> None:
        self._update(keys, enforce=False, count=True)

    def take(self, *keys: str) -> None:
        """Check and count in one step, under one lock (public forms)."""
        self._update(keys, enforce=True, count=True)

    def reset(self, *keys: str) -> None:
        self._update(keys, enforce=False, clear=True)


def sweep_rate_limits(storage: Storage, window_s: dict[str, float], now: float | None = None) -> int:
    """Drop expired hits from every bucket of the named limiters (housekeeping for
    `users purge-sessions`); returns how many client or account keys were dropped."""
    now = time.time() if now is None else now
    dropped = 0
    store = RateBuckets(storage)
    for name, window in window_s.items():
        buckets = [f"{name}-{i:02d}" for i in range(RATE_BUCKETS)]
        for _ in range(UPDATE_ATTEMPTS):
            read = store.get(buckets)
            changes: dict[str, tuple[RateBucket | None, dict[str, list[float]]]] = {}
            gone = 0
            for bucket, record in read.items():
                hits = record.trimmed(0.0, float("inf"))
                kept = record.trimmed(now, window)
                if len(kept) != len(hits) or any(len(kept[k]) != len(hits[k]) for k in kept):
                    gone += len(hits) - len(kept)
                    changes[bucket] = (record, kept)
            try:
                if changes:
                    store.write(changes)
            except PreconditionFailed:
                continue  # counted meanwhile: sweep the fresh buckets
            dropped += gone
            break
    return dropped


def client_salt(storage: Storage) -> bytes:
    """The salt of hashed client addresses and rate-limit keys, the same for every process over
    one database (made on first use; if two processes make one at once, the stored one wins)."""
    return SystemSecrets(storage).get_or_make("client_salt")


Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def parse_networks(text: str, name: str = "trusted_proxies") -> tuple[Network, ...]:
    try:
        return tuple(ipaddress.ip_network(part.strip(), strict=False) for part in text.split(",") if part.strip())
    except ValueError as exc:
        raise ConfigError(f"setting '{name}': {exc}") from exc


def _trusted(address: str, proxies: Sequence[Network]) -> bool:
    try:
        ip = ipaddress.ip_address(address.strip().strip("[]"))
    except ValueError:
        return False
    return any(ip in net for net in proxies)


def client_address(peer: str | None, forwarded_for: str | None, proxies: Sequence[Network]) -> str:
    """The client: the peer, unless the peer is a trusted proxy; then walk X-Forwarded-For from
    the right (the hop nearest us) past trusted proxies to the first other address. Anything
    left of that is whatever the client claimed, and is never believed."""
    address = peer or "unknown"
    if not forwarded_for or not _trusted(address, proxies):
        return address
    for hop in reversed([h.strip() for h in forwarded_for.split(",") if h.strip()]):
        try:
            ipaddress.ip_address(hop.strip("[]"))
        except ValueError:
            return address  # a malformed hop: keep the last address we can vouch for
        address = hop.strip("[]")
        if not _trusted(address, proxies):
            return address
    return address


def client_key(request: Request) -> str:
    # The limiter hashes every key with the stored salt before it is kept anywhere.
    proxies = getattr(request.app.state.web, "trusted_proxies", ())
    peer = request.client.host if request.client else None
    return "client:" + client_address(peer, request.headers.get("x-forwarded-for"), proxies)


def login_key(username: str, request: Request) -> str:
    """The (account, client) pair that sign-in failures count against."""
    return f"login:{username.strip().lower()}|{client_key(request)}"


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
