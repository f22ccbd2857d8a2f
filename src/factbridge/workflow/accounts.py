"""Organisations, users, roles, web sessions and API tokens.

Accounts live in the reserved "_system" scope of the document store (users
sign in before anyone knows their organisation); everything they do is then
scoped to their own organisation. Passwords are hashed with Argon2id; session
and API tokens are random 256-bit secrets of which only the SHA-256 is stored,
so a copy of the database does not let anyone sign in.
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
from factbridge.workflow.audit import AuditLog

SYSTEM_ORG = "_system"
ROLES = ("viewer", "analyst", "editor", "admin")
MIN_PASSWORD = 10
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
        if len(password) < MIN_PASSWORD:
            raise InputError(f"password must have at least {MIN_PASSWORD} characters", field="password")
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
        if len(password) < MIN_PASSWORD:
            raise InputError(f"password must have at least {MIN_PASSWORD} characters", field="password")
        doc = self._user_doc(username)
        # A new password ends every open session of the user (their epoch no longer matches).
        changed = doc | {"password_hash": self.hasher.hash(password), "session_epoch": int(doc.get("session_epoch", 0)) + 1}
        self.storage.put_docs(SYSTEM_ORG, "users", [(doc["username"], changed, None)])
        self.audit.append(doc["org"], actor, "user.password", "users", doc["username"], None, {"username": doc["username"]})

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
        token = secrets.token_urlsafe(32)
        csrf = secrets.token_urlsafe(32)
        sha = token_sha(token)
        now = _now()
        doc = {
            "username": actor.username,
            "csrf": csrf,
            "created_at": now.isoformat(),
            "expires_at": (now + timedelta(hours=self.session_hours)).isoformat(),
            "epoch": epoch,
            "revoked": False,
        }
        self.storage.put_docs(SYSTEM_ORG, "sessions", [(sha, doc, None)])
        # Named by a short prefix of the token's hash; the token and CSRF secret never enter the log.
        self.audit.append(actor.org, actor.username, "session.start", "sessions", sha[:12], None,
                          {"username": actor.username, "expires_at": doc["expires_at"]})
        return token, Session(actor=actor, csrf=csrf, token_sha=sha)

    def session(self, token: str) -> Session:
        sha = token_sha(token)
        doc = self.storage.get_docs(SYSTEM_ORG, "sessions", [sha]).get(sha)
        if doc is None or doc.get("revoked") or datetime.fromisoformat(doc["expires_at"]) < _now():
            raise NotAuthenticated("please sign in")
        user = self.storage.get_docs(SYSTEM_ORG, "users", [doc["username"]]).get(doc["username"])
        if user is None or user.get("disabled") or int(user.get("session_epoch", 0)) != int(doc.get("epoch", 0)):
            raise NotAuthenticated("please sign in")
        return Session(actor=_actor(user), csrf=doc["csrf"], token_sha=sha)

    def end_session(self, token: str) -> None:
        sha = token_sha(token)
        doc = self.storage.get_docs(SYSTEM_ORG, "sessions", [sha]).get(sha)
        if doc is not None and not doc.get("revoked"):
            self.storage.put_docs(SYSTEM_ORG, "sessions", [(sha, doc | {"revoked": True}, None)])
            user = self.storage.get_docs(SYSTEM_ORG, "users", [doc["username"]]).get(doc["username"])
            if user is not None:
                self.audit.append(user["org"], doc["username"], "session.end", "sessions", sha[:12], {"revoked": False}, {"revoked": True})

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
