"""Organisations, users, roles, web sessions and API tokens.

Accounts live in the reserved "_system" scope of the document store (users
sign in before anyone knows their organisation); everything they do is then
scoped to their own organisation. Passwords are hashed with Argon2id; session
and API tokens are random 256-bit secrets of which only the SHA-256 is stored,
so a copy of the database does not let anyone sign in.

Sessions live in reusable slots. The storage contract has no delete, so a
session record cannot be removed; instead a session cookie is
`<slot>.<secret>`, the "sessions" document of the slot holds the secret's
hash, and an ended, expired or password-revoked session is purged by
overwriting its slot with a bare `{"free": true}` (no user name, no dates, no
hashes). A new sign-in takes a free slot before it creates one, so the number
of session records stays at the peak number of sessions open at once instead
of growing with every sign-in. The slot's sort key is its expiry time (0 when
free), so free and expired slots list first with `order="sort_asc"`.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from factbridge.backends.storage.base import Storage
from factbridge.errors import Conflict, InputError, NotAuthenticated, NotFound, PermissionDenied
from factbridge.workflow.audit import AuditLog, named_lock

SYSTEM_ORG = "_system"
ROLES = ("viewer", "analyst", "editor", "admin")
MIN_PASSWORD = 10
# Argon2 hashes any length, but hashing megabytes on request is a denial of service; forms cap at this too.
MAX_PASSWORD = 1000
# Why a password is refused; the web pages translate the code, the CLI and API show the text.
PASSWORD_RULES = {
    "too_short": f"password must have at least {MIN_PASSWORD} characters",
    "too_long": f"password must have at most {MAX_PASSWORD} characters",
    "is_username": "password must differ from the user name",
    "unchanged": "the new password must differ from the current one",
}
SESSIONS = "sessions"
# How many of the oldest slots a sign-in looks at to purge and reuse: bounded work per request.
SIGN_IN_PURGE_BATCH = 32
_ORG_ID = re.compile(r"^[a-z0-9][a-z0-9-]{1,39}$")
_USERNAME = re.compile(r"^[a-z0-9][a-z0-9._-]{1,39}$")


@dataclass(frozen=True)
class Actor:
    """Who is acting: a signed-in user (their organisation and role)."""

    username: str
    org: str
    role: str
    display_name: str = ""

    def can(self, role: str) -> bool:
        return ROLES.index(self.role) >= ROLES.index(role)

    def require(self, role: str, doing: str) -> None:
        if not self.can(role):
            raise PermissionDenied(f"{doing} needs the {role} role (you are {self.role})")


@dataclass(frozen=True)
class Session:
    actor: Actor
    csrf: str
    token_sha: str
    slot: str = ""


@dataclass(frozen=True)
class PasswordChange:
    """What a self-service password change ended besides the password."""

    username: str
    sessions_revoked: int
    tokens_revoked: int


@dataclass(frozen=True)
class PurgeReport:
    scanned: int
    purged: int
    live: int
    free: int


def password_problem(password: str, username: str, current: str | None = None) -> str | None:
    """The first rule (a PASSWORD_RULES code) the password breaks, or None. Used by every way a
    password is set: CLI, admin page, self-service page and API."""
    if len(password) < MIN_PASSWORD:
        return "too_short"
    if len(password) > MAX_PASSWORD:
        return "too_long"
    if password.strip().lower() == username.strip().lower():
        return "is_username"
    if current is not None and password == current:
        return "unchanged"
    return None


def check_password(password: str, username: str, current: str | None = None, field: str = "password") -> None:
    problem = password_problem(password, username, current)
    if problem:
        raise InputError(PASSWORD_RULES[problem], field=field)


def token_sha(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def _now() -> datetime:
    return datetime.now(UTC)


class Accounts:
    def __init__(self, storage: Storage, audit: AuditLog, session_hours: float = 12.0, *, hash_time_cost: int = 3,
                 hash_memory_kib: int = 65536) -> None:
        self.storage = storage
        self.audit = audit
        self.session_hours = session_hours
        self.hasher = PasswordHasher(time_cost=hash_time_cost, memory_cost=hash_memory_kib)
        # Verifying against this keeps a sign-in with an unknown name as slow as a wrong password.
        self._dummy_hash = self.hasher.hash(secrets.token_hex(8))

    # -- organisations ---------------------------------------------------
    def add_org(self, org_id: str, name: str, actor: str = "cli") -> dict[str, Any]:
        if not _ORG_ID.match(org_id):
            raise InputError("organisation id must be 2-40 lowercase letters, digits or '-'", field="org")
        if self.storage.get_docs(SYSTEM_ORG, "orgs", [org_id]):
            raise Conflict(f"organisation '{org_id}' already exists")
        doc = {"id": org_id, "name": name.strip() or org_id, "created_at": _now().isoformat()}
        self.storage.put_docs(SYSTEM_ORG, "orgs", [(org_id, doc, None)])
        self.audit.append(org_id, actor, "org.create", "orgs", org_id, None, doc)
        return doc

    def get_org(self, org_id: str) -> dict[str, Any]:
        found = self.storage.get_docs(SYSTEM_ORG, "orgs", [org_id])
        if org_id not in found:
            raise NotFound(f"organisation '{org_id}' not found")
        return found[org_id]

    def list_orgs(self) -> list[dict[str, Any]]:
        return [doc for _, doc in self.storage.list_docs(SYSTEM_ORG, "orgs", limit=10_000, order="id")]

    # -- users -------------------------------------------------------------
    def add_user(self, username: str, password: str, org: str, role: str, display_name: str = "", actor: str = "cli") -> Actor:
        username = username.strip().lower()
        if not _USERNAME.match(username):
            raise InputError("user name must be 2-40 lowercase letters, digits, '.', '_' or '-'", field="username")
        if role not in ROLES:
            raise InputError(f"role must be one of {', '.join(ROLES)}", field="role")
        check_password(password, username)
        self.get_org(org)
        if self.storage.get_docs(SYSTEM_ORG, "users", [username]):
            raise Conflict(f"user '{username}' already exists")
        doc = {
            "username": username,
            "org": org,
            "role": role,
            "display_name": display_name.strip() or username,
            "password_hash": self.hasher.hash(password),
            "disabled": False,
            "created_at": _now().isoformat(),
        }
        self.storage.put_docs(SYSTEM_ORG, "users", [(username, doc, None)])
        self.audit.append(org, actor, "user.create", "users", username, None, _public_user(doc))
        return _actor(doc)

    def set_role(self, username: str, role: str, by: Actor | None = None) -> Actor:
        if role not in ROLES:
            raise InputError(f"role must be one of {', '.join(ROLES)}", field="role")
        if by is not None:
            by.require("admin", "changing roles")
        doc = self._user_doc(username)
        if by is not None and by.org != doc["org"]:
            raise NotFound(f"user '{username}' not found")
        after = doc | {"role": role}
        self.storage.put_docs(SYSTEM_ORG, "users", [(doc["username"], after, None)])
        self.audit.append(doc["org"], by.username if by else "cli", "user.role", "users", doc["username"], _public_user(doc), _public_user(after))
        return _actor(after)

    def set_password(self, username: str, password: str, actor: str = "cli") -> None:
        doc = self._user_doc(username)
        check_password(password, doc["username"])
        # A new password ends every open session of the user (their epoch no longer matches).
        changed = doc | {"password_hash": self.hasher.hash(password), "session_epoch": int(doc.get("session_epoch", 0)) + 1}
        self.storage.put_docs(SYSTEM_ORG, "users", [(doc["username"], changed, None)])
        self.audit.append(doc["org"], actor, "user.password", "users", doc["username"], None, {"username": doc["username"]})

    def change_password(self, username: str, current: str, new: str, *, keep_session: str | None = None,
                        keep_token_sha: str | None = None) -> PasswordChange:
        """Self-service change: the current password is required. Every other session of the user
        ends and every other API token is revoked; the session (slot) or token the change came
        through keeps working, so the user is not thrown out of the page they are on."""
        doc = self._user_doc(username)
        name = doc["username"]
        if not _verify(self.hasher, doc["password_hash"], current):
            raise InputError("the current password is wrong", field="current_password")
        check_password(new, name, current, field="new_password")
        epoch = int(doc.get("session_epoch", 0)) + 1
        # The epoch bump ends every session at once, even one being opened right now elsewhere;
        # the other slots are purged and the kept session moves to the new epoch. The password,
        # the sessions and the tokens change in one transaction: all of it or nothing.
        sessions: list[tuple[str, dict[str, Any], float | None]] = []
        freed = 0
        for slot, session in self._all_slots():
            if session.get("free") or session.get("username") != name:
                continue
            if slot == keep_session and not session.get("revoked"):
                sessions.append((slot, session | {"epoch": epoch}, _expiry_key(session)))
            else:
                sessions.append((slot, FREE_SLOT, 0.0))
                freed += 1
        revoked = [(sha, token | {"revoked": True, "revoked_at": _now().isoformat()}, None)
                   for sha, token in self.storage.list_docs(SYSTEM_ORG, "api_tokens", limit=1_000_000, order="id")
                   if token.get("username") == name and not token.get("revoked") and sha != keep_token_sha]
        self.storage.put_docs_batch(SYSTEM_ORG, [
            ("users", [(name, doc | {"password_hash": self.hasher.hash(new), "session_epoch": epoch}, None)]),
            (SESSIONS, sessions),
            ("api_tokens", revoked),
        ])
        change = PasswordChange(username=name, sessions_revoked=freed, tokens_revoked=len(revoked))
        self.audit.append(doc["org"], name, "user.password", "users", name, None,
                          {"username": name, "by": "self", "sessions_revoked": change.sessions_revoked,
                           "tokens_revoked": change.tokens_revoked, "api_tokens": sorted(sha[:12] for sha, _, _ in revoked)})
        return change

    def get_user(self, username: str) -> Actor:
        return _actor(self._user_doc(username))

    def list_users(self, org: str) -> list[Actor]:
        rows = self.storage.list_docs(SYSTEM_ORG, "users", limit=100_000, order="id")
        return [_actor(doc) for _, doc in rows if doc.get("org") == org]

    def _user_doc(self, username: str) -> dict[str, Any]:
        key = username.strip().lower()
        found = self.storage.get_docs(SYSTEM_ORG, "users", [key])
        if key not in found:
            raise NotFound(f"user '{username}' not found")
        return found[key]

    def authenticate(self, username: str, password: str) -> Actor:
        key = username.strip().lower()
        doc = self.storage.get_docs(SYSTEM_ORG, "users", [key]).get(key) if key else None
        if doc is None or doc.get("disabled"):
            _verify(self.hasher, self._dummy_hash, password)
            raise NotAuthenticated("unknown user name or wrong password")
        if not _verify(self.hasher, doc["password_hash"], password):
            raise NotAuthenticated("unknown user name or wrong password")
        if self.hasher.check_needs_rehash(doc["password_hash"]):
            self.storage.put_docs(SYSTEM_ORG, "users", [(key, doc | {"password_hash": self.hasher.hash(password)}, None)])
        return _actor(doc)

    # -- web sessions --------------------------------------------------------
    def start_session(self, actor: Actor) -> tuple[str, Session]:
        epoch = int(self._user_doc(actor.username).get("session_epoch", 0))
        now = _now()
        token = csrf = sha = ""
        doc: dict[str, Any] = {}
        # Sign-in is when old sessions are purged: a bounded batch of the oldest slots (free ones
        # first, then the earliest expiry), one of which, if any is free, the new session reuses.
        # Threads of this process take slots one at a time. Another process could pick the same
        # free slot in the same instant: the read-back sees that and the later sign-in takes a
        # brand-new slot; only a write landing after the read-back would be lost (that user signs
        # in again), never mixed up, since a slot answers only to its own secret's hash.
        with named_lock("accounts.sessions"):
            free = self._purge_batch(SIGN_IN_PURGE_BATCH, now)
            for attempt in range(2):
                slot = secrets.choice(free) if free and attempt == 0 else "s" + secrets.token_hex(8)
                token = f"{slot}.{secrets.token_urlsafe(32)}"
                csrf = secrets.token_urlsafe(32)
                sha = token_sha(token)
                doc = {
                    "username": actor.username,
                    "sha": sha,
                    "csrf": csrf,
                    "created_at": now.isoformat(),
                    "expires_at": (now + timedelta(hours=self.session_hours)).isoformat(),
                    "epoch": epoch,
                    "revoked": False,
                }
                self.storage.put_docs(SYSTEM_ORG, SESSIONS, [(slot, doc, _expiry_key(doc))])
                if self.storage.get_docs(SYSTEM_ORG, SESSIONS, [slot]).get(slot, {}).get("sha") == sha:
                    break
        # Named by a short prefix of the token's hash; the token and CSRF secret never enter the log.
        self.audit.append(actor.org, actor.username, "session.start", "sessions", sha[:12], None,
                          {"username": actor.username, "expires_at": doc["expires_at"]})
        return token, Session(actor=actor, csrf=csrf, token_sha=sha, slot=slot)

    def _slot_of(self, token: str) -> tuple[str, dict[str, Any]] | None:
        """The slot and its live record for a session token, or None (no constant-time leak:
        the slot id is not secret, the secret is compared by hash in constant time)."""
        slot, sep, secret = token.partition(".")
        if not sep or not slot or not secret:
            return None
        doc = self.storage.get_docs(SYSTEM_ORG, SESSIONS, [slot]).get(slot)
        if doc is None or doc.get("free") or not constant_time_equal(str(doc.get("sha", "")), token_sha(token)):
            return None
        return slot, doc

    def session(self, token: str) -> Session:
        found = self._slot_of(token)
        if found is None:
            raise NotAuthenticated("please sign in")
        slot, doc = found
        if doc.get("revoked") or datetime.fromisoformat(doc["expires_at"]) < _now():
            raise NotAuthenticated("please sign in")
        user = self.storage.get_docs(SYSTEM_ORG, "users", [doc["username"]]).get(doc["username"])
        if user is None or user.get("disabled") or int(user.get("session_epoch", 0)) != int(doc.get("epoch", 0)):
            raise NotAuthenticated("please sign in")
        return Session(actor=_actor(user), csrf=doc["csrf"], token_sha=doc["sha"], slot=slot)

    def end_session(self, token: str) -> None:
        found = self._slot_of(token)
        if found is None:
            return
        slot, doc = found
        # Signing out purges the slot at once: nothing of the session is kept.
        self.storage.put_docs(SYSTEM_ORG, SESSIONS, [(slot, FREE_SLOT, 0.0)])
        if not doc.get("revoked"):
            user = self.storage.get_docs(SYSTEM_ORG, "users", [doc["username"]]).get(doc["username"])
            if user is not None:
                self.audit.append(user["org"], doc["username"], "session.end", "sessions", doc["sha"][:12], {"revoked": False}, {"revoked": True})

    def _all_slots(self) -> list[tuple[str, dict[str, Any]]]:
        return self.storage.list_docs(SYSTEM_ORG, SESSIONS, limit=10_000_000, order="id")

    def _dead(self, doc: dict[str, Any], users: dict[str, dict[str, Any]], now: datetime) -> bool:
        """Ended, expired, from an old password (epoch), of a removed or disabled user, or a record
        from before slots (keyed by token hash, no "sha" field)."""
        if doc.get("revoked") or "sha" not in doc or "expires_at" not in doc:
            return True
        if datetime.fromisoformat(doc["expires_at"]) < now:
            return True
        user = users.get(doc.get("username", ""))
        return user is None or bool(user.get("disabled")) or int(user.get("session_epoch", 0)) != int(doc.get("epoch", 0))

    def _purge(self, rows: list[tuple[str, dict[str, Any]]], now: datetime) -> list[str]:
        """Free every dead slot among `rows`; the ids of all free slots among them."""
        names = {d["username"] for _, d in rows if not d.get("free") and isinstance(d.get("username"), str)}
        users = self.storage.get_docs(SYSTEM_ORG, "users", sorted(names)) if names else {}
        free: list[str] = []
        purge: list[tuple[str, dict[str, Any], float | None]] = []
        for slot, doc in rows:
            if doc.get("free"):
                free.append(slot)
            elif self._dead(doc, users, now):
                purge.append((slot, FREE_SLOT, 0.0))
                free.append(slot)
        self.storage.put_docs(SYSTEM_ORG, SESSIONS, purge)
        return free

    def _purge_batch(self, limit: int, now: datetime) -> list[str]:
        return self._purge(self.storage.list_docs(SYSTEM_ORG, SESSIONS, limit=limit, order="sort_asc"), now)

    def purge_sessions(self) -> PurgeReport:
        """Purge every dead session slot (the `users purge-sessions` command; sign-in does a batch)."""
        rows = self._all_slots()
        already = sum(1 for _, d in rows if d.get("free"))
        free = self._purge(rows, _now())
        return PurgeReport(scanned=len(rows), purged=len(free) - already, live=len(rows) - len(free), free=len(free))

    # -- API tokens ----------------------------------------------------------
    def create_token(self, username: str, name: str = "api", actor: str = "cli") -> str:
        user = self._user_doc(username)
        token = "fb_" + secrets.token_urlsafe(32)
        sha = token_sha(token)
        doc = {"username": user["username"], "name": name, "created_at": _now().isoformat(), "revoked": False}
        self.storage.put_docs(SYSTEM_ORG, "api_tokens", [(sha, doc, None)])
        # The audit entry names the token by a short prefix of its hash, never the token.
        self.audit.append(user["org"], actor, "token.create", "api_tokens", sha[:12], None, {"username": user["username"], "name": name})
        return token

    def token_actor(self, token: str) -> Actor:
        sha = token_sha(token)
        doc = self.storage.get_docs(SYSTEM_ORG, "api_tokens", [sha]).get(sha)
        if doc is None or doc.get("revoked"):
            raise NotAuthenticated("unknown or revoked API token")
        user = self.storage.get_docs(SYSTEM_ORG, "users", [doc["username"]]).get(doc["username"])
        if user is None or user.get("disabled"):
            raise NotAuthenticated("unknown or revoked API token")
        return _actor(user)


FREE_SLOT: dict[str, Any] = {"free": True}


def _expiry_key(doc: dict[str, Any]) -> float:
    return datetime.fromisoformat(doc["expires_at"]).timestamp()


def _verify(hasher: PasswordHasher, stored: str, password: str) -> bool:
    try:
        return hasher.verify(stored, password)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


def _actor(doc: dict[str, Any]) -> Actor:
    return Actor(username=doc["username"], org=doc["org"], role=doc["role"], display_name=doc.get("display_name", ""))


def _public_user(doc: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in doc.items() if k != "password_hash"}


def constant_time_equal(a: str, b: str) -> bool:
    return hmac.compare_digest(a.encode("utf-8"), b.encode("utf-8"))
