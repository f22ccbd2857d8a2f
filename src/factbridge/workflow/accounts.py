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

Every change of an account record (organisation, user, token, session slot) is
written together with its audit entry in one conditional transaction
(`AuditLog.append(system_records=..., expect=...)`), so `audit verify` can tell
a record edited in the database from one changed here. An admin can disable a
user, list and revoke tokens and reset a password; disabling and resetting end
every session of the user and revoke every token. API tokens expire
(`api_token_days`, or `--expires` when made).
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import re
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from factbridge.backends.storage.base import Expect, Rows, Storage
from factbridge.errors import (
    Conflict,
    InputError,
    NotAuthenticated,
    NotFound,
    PermissionDenied,
    PreconditionFailed,
)
from factbridge.workflow.audit import AuditLog
from factbridge.workflow.permissions import PERMISSIONS, ROLES, allowed, role_rank

SYSTEM_ORG = "_system"
API_TOKENS = "api_tokens"
# The public id of an API token: a prefix of its hash (the token itself is never stored).
TOKEN_ID_LENGTH = 12
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
        """At least `role` (pages use it to show or hide whole sections)."""
        return role_rank(self.role) >= role_rank(role)

    def may(self, action: str) -> bool:
        """Whether the permission table (workflow/permissions.py) lets this role do `action`."""
        return allowed(self.role, action)

    def check(self, action: str) -> None:
        if not self.may(action):
            role, doing = PERMISSIONS.get(action, ("nobody", action))
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


@dataclass(frozen=True)
class TokenInfo:
    """An API token as an admin sees it: never the token, only its public id."""

    id: str
    username: str
    name: str
    created_at: str
    expires_at: str | None
    revoked: bool
    expired: bool

    @property
    def active(self) -> bool:
        return not (self.revoked or self.expired)


def parse_expiry(text: str, now: datetime | None = None) -> datetime | None:
    """`--expires`: "30d", "12h", "never", or a date / ISO time (UTC unless it says)."""
    now = now or _now()
    value = text.strip().lower()
    if value in ("never", "none", "0"):
        return None
    match = re.fullmatch(r"(\d{1,5})\s*([dh])", value)
    if match:
        amount = int(match.group(1))
        return now + (timedelta(days=amount) if match.group(2) == "d" else timedelta(hours=amount))
    try:
        when = datetime.fromisoformat(text.strip())
    except ValueError as exc:
        raise InputError("expiry must look like 30d, 12h, 2027-01-31 or never", field="expires") from exc
    when = when if when.tzinfo else when.replace(tzinfo=UTC)
    if when <= now:
        raise InputError("the expiry is in the past", field="expires")
    return when


class Accounts:
    def __init__(self, storage: Storage, audit: AuditLog, session_hours: float = 12.0, *, hash_time_cost: int = 3,
                 hash_memory_kib: int = 65536, token_days: float = 90.0) -> None:
        self.storage = storage
        self.audit = audit
        self.session_hours = session_hours
        self.token_days = token_days
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
        try:
            self.audit.append(org_id, actor, "org.create", "orgs", org_id, None, doc, system_records=[("orgs", [(org_id, doc, None)])],
                              expect=[Expect("orgs", org_id, org=SYSTEM_ORG)])
        except PreconditionFailed as exc:
            raise Conflict(f"organisation '{org_id}' already exists") from exc
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
        # User names are global (people sign in before their organisation is known), but whose a
        # taken name is stays unsaid: the refusal is the same whichever organisation holds it.
        taken = Conflict("that user name cannot be used; choose another")
        if self.storage.get_docs(SYSTEM_ORG, "users", [username]):
            raise taken
        doc = {
            "username": username,
            "org": org,
            "role": role,
            "display_name": display_name.strip() or username,
            "password_hash": self.hasher.hash(password),
            "disabled": False,
            "created_at": _now().isoformat(),
        }
        try:
            self.audit.append(org, actor, "user.create", "users", username, None, _public_user(doc),
                              system_records=[("users", [(username, doc, None)])], expect=[Expect("users", username, org=SYSTEM_ORG)])
        except PreconditionFailed as exc:
            raise taken from exc
        return _actor(doc)

    def _user_in_org(self, username: str, by: Actor | None) -> dict[str, Any]:
        """The user record an admin (`by`, None for the CLI) may manage: another organisation's
        user is "not found", exactly like a name nobody has."""
        if by is not None:
            by.check("users.manage")
        doc = self._user_doc(username)
        if by is not None and by.org != doc["org"]:
            raise NotFound(f"user '{username}' not found")
        return doc

    def set_role(self, username: str, role: str, by: Actor | None = None) -> Actor:
        if role not in ROLES:
            raise InputError(f"role must be one of {', '.join(ROLES)}", field="role")
        doc = self._user_in_org(username, by)
        # Compared on the stored (canonical, lowercase) name: "A-Admin" is still oneself.
        if by is not None and doc["username"] == by.username:
            raise InputError("ask another admin to change your own role", field="role")
        after = doc | {"role": role}
        self._save_user(doc, after, by.username if by else "cli", "user.role", expect_field="role")
        return _actor(after)

    def _save_user(self, doc: dict[str, Any], after: dict[str, Any], actor: str, action: str, *, expect_field: str,
                   extra: dict[str, Any] | None = None, also: Sequence[tuple[str, Rows]] = ()) -> None:
        """Write a changed user record (and `also`: its sessions and tokens) with its audit entry,
        only if `expect_field` is still what it was when the record was read."""
        name = doc["username"]
        try:
            self.audit.append(doc["org"], actor, action, "users", name, _public_user(doc), _public_user(after) | (extra or {}),
                              system_records=[("users", [(name, after, None)]), *also],
                              expect=[Expect("users", name, expect_field, doc.get(expect_field), org=SYSTEM_ORG)])
        except PreconditionFailed as exc:
            if exc.key == (SYSTEM_ORG, "users", name):
                raise Conflict(f"user '{name}' was changed by someone else meanwhile; try again") from exc
            raise

    def _end_everything(self, name: str, keep_session: str | None = None, keep_token_sha: str | None = None,
                        epoch: int = 0) -> tuple[list[tuple[str, dict[str, Any], float | None]], int, list[tuple[str, dict[str, Any], float | None]]]:
        """The session slots and token records that end every session and token of a user
        (but the kept ones): (session rows, sessions ended, revoked token rows)."""
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
        revoked_at = _now().isoformat()
        revoked: list[tuple[str, dict[str, Any], float | None]] = [
            (sha, token | {"revoked": True, "revoked_at": revoked_at}, None)
            for sha, token in self.storage.list_docs(SYSTEM_ORG, API_TOKENS, limit=1_000_000, order="id")
            if token.get("username") == name and not token.get("revoked") and sha != keep_token_sha]
        return sessions, freed, revoked

    def set_password(self, username: str, password: str, actor: str = "cli", by: Actor | None = None) -> PasswordChange:
        """An administrator's reset: the new password, and every session of the user ends and
        every API token of theirs is revoked (whoever had them no longer gets in), in one
        transaction with its audit entry."""
        doc = self._user_in_org(username, by)
        name = doc["username"]
        check_password(password, name)
        epoch = int(doc.get("session_epoch", 0)) + 1
        sessions, freed, revoked = self._end_everything(name, epoch=epoch)
        after = doc | {"password_hash": self.hasher.hash(password), "session_epoch": epoch}
        change = PasswordChange(username=name, sessions_revoked=freed, tokens_revoked=len(revoked))
        self._save_user(doc, after, by.username if by else actor, "user.password", expect_field="password_hash",
                        extra={"by": "admin", "sessions_revoked": freed, "tokens_revoked": len(revoked),
                               "api_tokens": sorted(sha[:TOKEN_ID_LENGTH] for sha, _, _ in revoked)},
                        also=[(SESSIONS, sessions), (API_TOKENS, revoked)])
        return change

    def set_disabled(self, username: str, disabled: bool, actor: str = "cli", by: Actor | None = None) -> PasswordChange:
        """Disable (or enable again) a user. Disabling ends every session and revokes every token:
        an account enabled again starts with fresh credentials. One cannot disable oneself."""
        doc = self._user_in_org(username, by)
        name = doc["username"]
        if by is not None and name == by.username:
            raise InputError("ask another admin to disable your own account", field="username")
        epoch = int(doc.get("session_epoch", 0)) + (1 if disabled else 0)
        sessions, freed, revoked = self._end_everything(name, epoch=epoch) if disabled else ([], 0, [])
        after = doc | {"disabled": disabled, "session_epoch": epoch}
        self._save_user(doc, after, by.username if by else actor, "user.disable" if disabled else "user.enable", expect_field="disabled",
                        extra={"sessions_revoked": freed, "tokens_revoked": len(revoked)},
                        also=[(SESSIONS, sessions), (API_TOKENS, revoked)])
        return PasswordChange(username=name, sessions_revoked=freed, tokens_revoked=len(revoked))

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
        sessions, freed, revoked = self._end_everything(name, keep_session, keep_token_sha, epoch)
        change = PasswordChange(username=name, sessions_revoked=freed, tokens_revoked=len(revoked))
        after = doc | {"password_hash": self.hasher.hash(new), "session_epoch": epoch}
        self._save_user(doc, after, name, "user.password", expect_field="password_hash",
                        extra={"by": "self", "sessions_revoked": freed, "tokens_revoked": len(revoked),
                               "api_tokens": sorted(sha[:TOKEN_ID_LENGTH] for sha, _, _ in revoked)},
                        also=[(SESSIONS, sessions), (API_TOKENS, revoked)])
        return change

    def get_user(self, username: str) -> Actor:
        return _actor(self._user_doc(username))

    def is_disabled(self, username: str) -> bool:
        return bool(self._user_doc(username).get("disabled"))

    def list_users(self, org: str) -> list[Actor]:
        rows = self.storage.list_docs(SYSTEM_ORG, "users", limit=100_000, order="id")
        return [_actor(doc) for _, doc in rows if doc.get("org") == org]

    def list_user_records(self, org: str) -> list[dict[str, Any]]:
        """The organisation's users with their state (no password hash), for the admin page."""
        rows = self.storage.list_docs(SYSTEM_ORG, "users", limit=100_000, order="id")
        return [_public_user(doc) for _, doc in rows if doc.get("org") == org]

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
            # Same password, stronger hash parameters: recorded like every change of the record;
            # if the record changed meanwhile (a new password), that change stands.
            with contextlib.suppress(Conflict):
                self._save_user(doc, doc | {"password_hash": self.hasher.hash(password)}, key, "user.rehash", expect_field="password_hash")
        return _actor(doc)

    # -- web sessions --------------------------------------------------------
    def start_session(self, actor: Actor) -> tuple[str, Session]:
        user = self._user_doc(actor.username)
        if user.get("disabled"):
            raise NotAuthenticated("unknown user name or wrong password")
        epoch = int(user.get("session_epoch", 0))
        now = _now()
        # Sign-in is when old sessions are purged: a bounded batch of the oldest slots (free ones
        # first, then the earliest expiry), one of which, if any is free, the new session reuses.
        # Taking a slot is a conditional write (the slot must still be free, or a new one must
        # not exist yet) in the transaction of its audit entry: of two sign-ins, in any
        # processes, that pick the same free slot, the second takes another.
        free = self._purge_batch(SIGN_IN_PURGE_BATCH, now)
        for attempt in range(8):
            reuse = bool(free) and attempt < 4
            slot = secrets.choice(free) if reuse else "s" + secrets.token_hex(8)
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
            taken = Expect(SESSIONS, slot, "free", True, org=SYSTEM_ORG) if reuse else Expect(SESSIONS, slot, org=SYSTEM_ORG)
            try:
                # Named by its slot; the token and CSRF secret never enter the log.
                self.audit.append(actor.org, actor.username, "session.start", SESSIONS, slot, None,
                                  {"username": actor.username, "expires_at": doc["expires_at"]},
                                  system_records=[(SESSIONS, [(slot, doc, _expiry_key(doc))])], expect=[taken])
            except PreconditionFailed as exc:
                if exc.key == (SYSTEM_ORG, SESSIONS, slot):
                    if reuse:
                        free.remove(slot)
                    continue
                raise
            return token, Session(actor=actor, csrf=csrf, token_sha=sha, slot=slot)
        raise Conflict("could not open a session; try again")

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
        user = self.storage.get_docs(SYSTEM_ORG, "users", [doc["username"]]).get(doc["username"])
        if user is None:
            self.storage.put_docs(SYSTEM_ORG, SESSIONS, [(slot, FREE_SLOT, 0.0)])
            return
        try:
            self.audit.append(user["org"], doc["username"], "session.end", SESSIONS, slot, {"revoked": bool(doc.get("revoked"))},
                              {"revoked": True}, system_records=[(SESSIONS, [(slot, FREE_SLOT, 0.0)])],
                              expect=[Expect(SESSIONS, slot, "sha", doc["sha"], org=SYSTEM_ORG)])
        except PreconditionFailed as exc:
            if exc.key != (SYSTEM_ORG, SESSIONS, slot):
                raise  # else the slot was purged or reused meanwhile: this session is over anyway

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
        """Free every dead slot among `rows`; the ids of all free slots among them. (Freeing is not
        audited: a free slot holds nothing and grants nothing, and `audit verify` skips it.)"""
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
    def create_token(self, username: str, name: str = "api", actor: str = "cli", *, expires: datetime | None | str = "default",
                     by: Actor | None = None) -> str:
        """A new API token (returned once; only its hash is stored). `expires`: a time, None for
        never, or "default" for `api_token_days` from now (0 days: never)."""
        user = self._user_in_org(username, by) if by is not None else self._user_doc(username)
        if user.get("disabled"):
            raise Conflict(f"user '{user['username']}' is disabled")
        now = _now()
        if expires == "default":
            expires = now + timedelta(days=self.token_days) if self.token_days > 0 else None
        elif isinstance(expires, str):
            expires = parse_expiry(expires, now)
        token = "fb_" + secrets.token_urlsafe(32)
        sha = token_sha(token)
        doc = {"id": sha[:TOKEN_ID_LENGTH], "username": user["username"], "org": user["org"], "name": name.strip()[:100] or "api",
               "created_at": now.isoformat(), "expires_at": expires.isoformat() if expires else None, "revoked": False}
        # The audit entry names the token by a short prefix of its hash, never the token.
        self.audit.append(user["org"], by.username if by else actor, "token.create", API_TOKENS, sha[:TOKEN_ID_LENGTH], None,
                          {"username": user["username"], "name": doc["name"], "expires_at": doc["expires_at"]},
                          system_records=[(API_TOKENS, [(sha, doc, None)])], expect=[Expect(API_TOKENS, sha, org=SYSTEM_ORG)])
        return token

    def token_actor(self, token: str) -> Actor:
        sha = token_sha(token)
        doc = self.storage.get_docs(SYSTEM_ORG, API_TOKENS, [sha]).get(sha)
        if doc is None or doc.get("revoked") or _expired(doc, _now()):
            raise NotAuthenticated("unknown, expired or revoked API token")
        user = self.storage.get_docs(SYSTEM_ORG, "users", [doc["username"]]).get(doc["username"])
        if user is None or user.get("disabled"):
            raise NotAuthenticated("unknown, expired or revoked API token")
        return _actor(user)

    def _token_rows(self, org: str, username: str | None = None) -> list[tuple[str, dict[str, Any]]]:
        members = {a.username for a in self.list_users(org)}
        wanted = {username.strip().lower()} & members if username else members
        return [(sha, doc) for sha, doc in self.storage.list_docs(SYSTEM_ORG, API_TOKENS, limit=1_000_000, order="id")
                if doc.get("username") in wanted]

    def list_tokens(self, org: str, username: str | None = None) -> list[TokenInfo]:
        """The organisation's tokens (of one user, if named), newest first."""
        now = _now()
        items = [TokenInfo(id=sha[:TOKEN_ID_LENGTH], username=doc["username"], name=str(doc.get("name", "")),
                           created_at=str(doc.get("created_at", "")), expires_at=doc.get("expires_at"),
                           revoked=bool(doc.get("revoked")), expired=_expired(doc, now))
                 for sha, doc in self._token_rows(org, username)]
        return sorted(items, key=lambda t: t.created_at, reverse=True)

    def revoke_token(self, org: str, token_id: str, actor: str = "cli", by: Actor | None = None) -> TokenInfo:
        """Revoke one token of the organisation by its public id (a prefix of its hash, at least
        8 characters; ambiguous prefixes are refused)."""
        if by is not None:
            by.check("users.manage")
            org = by.org
        prefix = token_id.strip().lower()
        if not re.fullmatch(r"[0-9a-f]{8,64}", prefix):
            raise InputError("a token id is 8 to 64 hexadecimal characters (see `users tokens list`)", field="token_id")
        hits = [(sha, doc) for sha, doc in self._token_rows(org) if sha.startswith(prefix)]
        if not hits:
            raise NotFound(f"token '{token_id}' not found")
        if len(hits) > 1:
            raise InputError(f"token id '{token_id}' is ambiguous; give more characters", field="token_id")
        sha, doc = hits[0]
        user = self._user_doc(doc["username"])
        if not doc.get("revoked"):
            after = doc | {"revoked": True, "revoked_at": _now().isoformat()}
            try:
                self.audit.append(user["org"], by.username if by else actor, "token.revoke", API_TOKENS, sha[:TOKEN_ID_LENGTH],
                                  {"revoked": False}, {"revoked": True, "username": doc["username"]},
                                  system_records=[(API_TOKENS, [(sha, after, None)])],
                                  expect=[Expect(API_TOKENS, sha, "revoked", doc.get("revoked", False), org=SYSTEM_ORG)])
            except PreconditionFailed as exc:
                if exc.key != (SYSTEM_ORG, API_TOKENS, sha):
                    raise  # else revoked meanwhile by someone else: it is revoked either way
            doc = after
        return TokenInfo(id=sha[:TOKEN_ID_LENGTH], username=doc["username"], name=str(doc.get("name", "")),
                         created_at=str(doc.get("created_at", "")), expires_at=doc.get("expires_at"), revoked=True,
                         expired=_expired(doc, _now()))


def _expired(doc: dict[str, Any], now: datetime) -> bool:
    expires = doc.get("expires_at")
    return bool(expires) and datetime.fromisoformat(str(expires)) <= now


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
