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
from dataclasses import dataclass, replace
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
from factbridge.workflow.records import API_TOKENS as API_TOKENS
from factbridge.workflow.records import (
    ORGS,
    USERS,
    ApiTokens,
    OrgRecord,
    Orgs,
    SessionSlot,
    SessionSlots,
    TokenRecord,
    UserRecord,
    Users,
)
from factbridge.workflow.records import SESSIONS as SESSIONS
from factbridge.workflow.records import SYSTEM_ORG as SYSTEM_ORG

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
        self.users = Users(storage)
        self.orgs = Orgs(storage)
        self.tokens = ApiTokens(storage)
        self.sessions = SessionSlots(storage)
        # Verifying against this keeps a sign-in with an unknown name as slow as a wrong password.
        self._dummy_hash = self.hasher.hash(secrets.token_hex(8))

    # -- organisations ---------------------------------------------------
    def add_org(self, org_id: str, name: str, actor: str = "cli") -> dict[str, Any]:
        if not _ORG_ID.match(org_id):
            raise InputError("organisation id must be 2-40 lowercase letters, digits or '-'", field="org")
        if self.orgs.get([org_id]):
            raise Conflict(f"organisation '{org_id}' already exists")
        record = OrgRecord(org_id, name.strip() or org_id, _now().isoformat())
        doc = record.to_doc()
        try:
            self.audit.append(org_id, actor, "org.create", ORGS, org_id, None, doc, system_records=[(ORGS, Orgs.rows([record]))],
                              expect=[Expect(ORGS, org_id, org=SYSTEM_ORG)])
        except PreconditionFailed as exc:
            raise Conflict(f"organisation '{org_id}' already exists") from exc
        return doc

    def org(self, org_id: str) -> OrgRecord:
        found = self.orgs.get([org_id])
        if org_id not in found:
            raise NotFound(f"organisation '{org_id}' not found")
        return found[org_id]

    # -- users -------------------------------------------------------------
    def add_user(self, username: str, password: str, org: str, role: str, display_name: str = "", actor: str = "cli") -> Actor:
        username = username.strip().lower()
        if not _USERNAME.match(username):
            raise InputError("user name must be 2-40 lowercase letters, digits, '.', '_' or '-'", field="username")
        if role not in ROLES:
            raise InputError(f"role must be one of {', '.join(ROLES)}", field="role")
        check_password(password, username)
        self.org(org)
        # User names are global (people sign in before their organisation is known), but whose a
        # taken name is stays unsaid: the refusal is the same whichever organisation holds it.
        taken = Conflict("that user name cannot be used; choose another")
        if self.users.get([username]):
            raise taken
        user = UserRecord(username=username, org=org, role=role, display_name=display_name.strip() or username,
                          password_hash=self.hasher.hash(password), disabled=False, created_at=_now().isoformat())
        try:
            self.audit.append(org, actor, "user.create", USERS, username, None, user.public(),
                              system_records=[(USERS, self.users.rows([user]))], expect=[Expect(USERS, username, org=SYSTEM_ORG)])
        except PreconditionFailed as exc:
            raise taken from exc
        return _actor(user)

    def _user_in_org(self, username: str, by: Actor | None) -> UserRecord:
        """The user record an admin (`by`, None for the CLI) may manage: another organisation's
        user is "not found", exactly like a name nobody has."""
        if by is not None:
            by.check("users.manage")
        user = self._user(username)
        if by is not None and by.org != user.org:
            raise NotFound(f"user '{username}' not found")
        return user

    def set_role(self, username: str, role: str, by: Actor | None = None) -> Actor:
        if role not in ROLES:
            raise InputError(f"role must be one of {', '.join(ROLES)}", field="role")
        user = self._user_in_org(username, by)
        # Compared on the stored (canonical, lowercase) name: "A-Admin" is still oneself.
        if by is not None and user.username == by.username:
            raise InputError("ask another admin to change your own role", field="role")
        after = replace(user, role=role)
        self._save_user(user, after, by.username if by else "cli", "user.role", expect_field="role")
        return _actor(after)

    def _save_user(self, user: UserRecord, after: UserRecord, actor: str, action: str, *, expect_field: str,
                   extra: dict[str, Any] | None = None, also: Sequence[tuple[str, Rows]] = ()) -> None:
        """Write a changed user record (and `also`: its sessions and tokens) with its audit entry,
        only if `expect_field` is still what it was when the record was read."""
        name = user.username
        try:
            self.audit.append(user.org, actor, action, USERS, name, user.public(), after.public() | (extra or {}),
                              system_records=[(USERS, self.users.rows([after])), *also],
                              expect=[Expect(USERS, name, expect_field, user.to_doc().get(expect_field), org=SYSTEM_ORG)])
        except PreconditionFailed as exc:
            if exc.key == (SYSTEM_ORG, USERS, name):
                raise Conflict(f"user '{name}' was changed by someone else meanwhile; try again") from exc
            raise

    def _end_everything(self, name: str, keep_session: str | None = None, keep_token_sha: str | None = None,
                        epoch: int = 0) -> tuple[Rows, int, list[TokenRecord]]:
        """The session slots and token records that end every session and token of a user
        (but the kept ones): (session rows, sessions ended, revoked tokens)."""
        sessions: list[SessionSlot] = []
        freed = 0
        for session in self.sessions.iter():
            if session.free or session.username != name:
                continue
            if session.slot == keep_session and not session.revoked:
                sessions.append(replace(session, epoch=epoch))
            else:
                sessions.append(SessionSlot(session.slot, free=True))
                freed += 1
        revoked_at = _now().isoformat()
        revoked = [replace(token, revoked=True, revoked_at=revoked_at)
                   for token in self.tokens.iter() if token.username == name and not token.revoked and token.sha != keep_token_sha]
        return self.sessions.rows(sessions), freed, revoked

    def set_password(self, username: str, password: str, actor: str = "cli", by: Actor | None = None) -> PasswordChange:
        """An administrator's reset: the new password, and every session of the user ends and
        every API token of theirs is revoked (whoever had them no longer gets in), in one
        transaction with its audit entry."""
        user = self._user_in_org(username, by)
        name = user.username
        check_password(password, name)
        epoch = user.epoch + 1
        sessions, freed, revoked = self._end_everything(name, epoch=epoch)
        after = replace(user, password_hash=self.hasher.hash(password), session_epoch=epoch)
        change = PasswordChange(username=name, sessions_revoked=freed, tokens_revoked=len(revoked))
        self._save_user(user, after, by.username if by else actor, "user.password", expect_field="password_hash",
                        extra={"by": "admin", "sessions_revoked": freed, "tokens_revoked": len(revoked),
                               "api_tokens": sorted(t.sha[:TOKEN_ID_LENGTH] for t in revoked)},
                        also=[(SESSIONS, sessions), (API_TOKENS, self.tokens.rows(revoked))])
        return change

    def set_disabled(self, username: str, disabled: bool, actor: str = "cli", by: Actor | None = None) -> PasswordChange:
        """Disable (or enable again) a user. Disabling ends every session and revokes every token:
        an account enabled again starts with fresh credentials. One cannot disable oneself."""
        user = self._user_in_org(username, by)
        name = user.username
        if by is not None and name == by.username:
            raise InputError("ask another admin to disable your own account", field="username")
        epoch = user.epoch + (1 if disabled else 0)
        sessions, freed, revoked = self._end_everything(name, epoch=epoch) if disabled else ([], 0, [])
        after = replace(user, disabled=disabled, session_epoch=epoch)
        self._save_user(user, after, by.username if by else actor, "user.disable" if disabled else "user.enable", expect_field="disabled",
                        extra={"sessions_revoked": freed, "tokens_revoked": len(revoked)},
                        also=[(SESSIONS, sessions), (API_TOKENS, self.tokens.rows(revoked))])
        return PasswordChange(username=name, sessions_revoked=freed, tokens_revoked=len(revoked))

    def change_password(self, username: str, current: str, new: str, *, keep_session: str | None = None,
                        keep_token_sha: str | None = None) -> PasswordChange:
        """Self-service change: the current password is required. Every other session of the user
        ends and every other API token is revoked; the session (slot) or token the change came
        through keeps working, so the user is not thrown out of the page they are on."""
        user = self._user(username)
        name = user.username
        if not _verify(self.hasher, user.password_hash, current):
            raise InputError("the current password is wrong", field="current_password")
        check_password(new, name, current, field="new_password")
        epoch = user.epoch + 1
        # The epoch bump ends every session at once, even one being opened right now elsewhere;
        # the other slots are purged and the kept session moves to the new epoch. The password,
        # the sessions and the tokens change in one transaction: all of it or nothing.
        sessions, freed, revoked = self._end_everything(name, keep_session, keep_token_sha, epoch)
        change = PasswordChange(username=name, sessions_revoked=freed, tokens_revoked=len(revoked))
        after = replace(user, password_hash=self.hasher.hash(new), session_epoch=epoch)
        self._save_user(user, after, name, "user.password", expect_field="password_hash",
                        extra={"by": "self", "sessions_revoked": freed, "tokens_revoked": len(revoked),
                               "api_tokens": sorted(t.sha[:TOKEN_ID_LENGTH] for t in revoked)},
                        also=[(SESSIONS, sessions), (API_TOKENS, self.tokens.rows(revoked))])
        return change

    def get_user(self, username: str) -> Actor:
        return _actor(self._user(username))

    def is_disabled(self, username: str) -> bool:
        return self._user(username).disabled

    def list_users(self, org: str) -> list[Actor]:
        return [_actor(user) for user in self.users.iter(org)]

    def list_user_records(self, org: str) -> list[dict[str, Any]]:
        """The organisation's users with their state (no password hash), for the admin page."""
        return [user.public() for user in self.users.iter(org)]

    def _user(self, username: str) -> UserRecord:
        key = username.strip().lower()
        found = self.users.get([key])
        if key not in found:
            raise NotFound(f"user '{username}' not found")
        return found[key]

    def authenticate(self, username: str, password: str) -> Actor:
        key = username.strip().lower()
        user = self.users.get([key]).get(key) if key else None
        if user is None or user.disabled:
            _verify(self.hasher, self._dummy_hash, password)
            raise NotAuthenticated("unknown user name or wrong password")
        if not _verify(self.hasher, user.password_hash, password):
            raise NotAuthenticated("unknown user name or wrong password")
        if self.hasher.check_needs_rehash(user.password_hash):
            # Same password, stronger hash parameters: recorded like every change of the record;
            # if the record changed meanwhile (a new password), that change stands.
            with contextlib.suppress(Conflict):
                self._save_user(user, replace(user, password_hash=self.hasher.hash(password)), key, "user.rehash", expect_field="password_hash")
        return _actor(user)

    # -- web sessions --------------------------------------------------------
    def start_session(self, actor: Actor) -> tuple[str, Session]:
        user = self._user(actor.username)
        if user.disabled:
            raise NotAuthenticated("unknown user name or wrong password")
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
            session = SessionSlot(slot=slot, username=actor.username, sha=sha, csrf=csrf, created_at=now.isoformat(),
                                  expires_at=(now + timedelta(hours=self.session_hours)).isoformat(), epoch=user.epoch, revoked=False)
            taken = Expect(SESSIONS, slot, "free", True, org=SYSTEM_ORG) if reuse else Expect(SESSIONS, slot, org=SYSTEM_ORG)
            try:
                # Named by its slot; the token and CSRF secret never enter the log.
                self.audit.append(actor.org, actor.username, "session.start", SESSIONS, slot, None,
                                  {"username": actor.username, "expires_at": session.expires_at},
                                  system_records=[(SESSIONS, self.sessions.rows([session]))], expect=[taken])
            except PreconditionFailed as exc:
                if exc.key == (SYSTEM_ORG, SESSIONS, slot):
                    if reuse:
                        free.remove(slot)
                    continue
                raise
            return token, Session(actor=actor, csrf=csrf, token_sha=sha, slot=slot)
        raise Conflict("could not open a session; try again")

    def _slot_of(self, token: str) -> SessionSlot | None:
        """The live slot of a session token, or None (no constant-time leak: the slot id is not
        secret, the secret is compared by hash in constant time)."""
        slot, sep, secret = token.partition(".")
        if not sep or not slot or not secret:
            return None
        session = self.sessions.get([slot]).get(slot)
        if session is None or session.free or not constant_time_equal(session.sha, token_sha(token)):
            return None
        return session

    def session(self, token: str) -> Session:
        session = self._slot_of(token)
        if session is None:
            raise NotAuthenticated("please sign in")
        if session.revoked or datetime.fromisoformat(session.expires_at) < _now():
            raise NotAuthenticated("please sign in")
        user = self.users.get([session.username]).get(session.username)
        if user is None or user.disabled or user.epoch != session.epoch:
            raise NotAuthenticated("please sign in")
        return Session(actor=_actor(user), csrf=session.csrf, token_sha=session.sha, slot=session.slot)

    def end_session(self, token: str) -> None:
        session = self._slot_of(token)
        if session is None:
            return
        slot = session.slot
        freed = self.sessions.rows([SessionSlot(slot, free=True)])
        # Signing out purges the slot at once: nothing of the session is kept.
        user = self.users.get([session.username]).get(session.username)
        if user is None:
            self.storage.put_docs(SYSTEM_ORG, SESSIONS, freed)
            return
        try:
            self.audit.append(user.org, session.username, "session.end", SESSIONS, slot, {"revoked": session.revoked},
                              {"revoked": True}, system_records=[(SESSIONS, freed)],
                              expect=[Expect(SESSIONS, slot, "sha", session.sha, org=SYSTEM_ORG)])
        except PreconditionFailed as exc:
            if exc.key != (SYSTEM_ORG, SESSIONS, slot):
                raise  # else the slot was purged or reused meanwhile: this session is over anyway

    def _dead(self, session: SessionSlot, users: dict[str, UserRecord], now: datetime) -> bool:
        """Ended, expired, from an old password (epoch), of a removed or disabled user, or a record
        from before slots (keyed by token hash, no "sha" field)."""
        if session.revoked or not session.sha or not session.expires_at:
            return True
        if datetime.fromisoformat(session.expires_at) < now:
            return True
        user = users.get(session.username)
        return user is None or user.disabled or user.epoch != session.epoch

    def _purge(self, slots: list[SessionSlot], now: datetime) -> list[str]:
        """Free every dead slot among `slots`; the ids of all free slots among them. (Freeing is not
        audited: a free slot holds nothing and grants nothing, and `audit verify` skips it.)"""
        users = self.users.get(sorted({s.username for s in slots if not s.free and s.username}))
        free: list[str] = []
        purge: list[SessionSlot] = []
        for session in slots:
            if session.free:
                free.append(session.slot)
            elif self._dead(session, users, now):
                purge.append(SessionSlot(session.slot, free=True))
                free.append(session.slot)
        self.storage.put_docs(SYSTEM_ORG, SESSIONS, self.sessions.rows(purge))
        return free

    def _purge_batch(self, limit: int, now: datetime) -> list[str]:
        return self._purge(list(self.sessions.iter(limit=limit, order="sort_asc")), now)

    def purge_sessions(self) -> PurgeReport:
        """Purge every dead session slot (the `users purge-sessions` command; sign-in does a batch)."""
        slots = list(self.sessions.iter())
        already = sum(1 for s in slots if s.free)
        free = self._purge(slots, _now())
        return PurgeReport(scanned=len(slots), purged=len(free) - already, live=len(slots) - len(free), free=len(free))

    # -- API tokens ----------------------------------------------------------
    def create_token(self, username: str, name: str = "api", actor: str = "cli", *, expires: datetime | None | str = "default",
                     by: Actor | None = None) -> str:
        """A new API token (returned once; only its hash is stored). `expires`: a time, None for
        never, or "default" for `api_token_days` from now (0 days: never)."""
        user = self._user_in_org(username, by) if by is not None else self._user(username)
        if user.disabled:
            raise Conflict(f"user '{user.username}' is disabled")
        now = _now()
        if expires == "default":
            expires = now + timedelta(days=self.token_days) if self.token_days > 0 else None
        elif isinstance(expires, str):
            expires = parse_expiry(expires, now)
        token = "fb_" + secrets.token_urlsafe(32)
        sha = token_sha(token)
        record = TokenRecord(sha=sha, id=sha[:TOKEN_ID_LENGTH], username=user.username, org=user.org, name=name.strip()[:100] or "api",
                             created_at=now.isoformat(), expires_at=expires.isoformat() if expires else None, revoked=False)
        # The audit entry names the token by a short prefix of its hash, never the token.
        self.audit.append(user.org, by.username if by else actor, "token.create", API_TOKENS, sha[:TOKEN_ID_LENGTH], None,
                          {"username": user.username, "name": record.name, "expires_at": record.expires_at},
                          system_records=[(API_TOKENS, self.tokens.rows([record]))], expect=[Expect(API_TOKENS, sha, org=SYSTEM_ORG)])
        return token

    def token_actor(self, token: str) -> Actor:
        sha = token_sha(token)
        record = self.tokens.get([sha]).get(sha)
        if record is None or record.revoked or record.expired(_now()):
            raise NotAuthenticated("unknown, expired or revoked API token")
        user = self.users.get([record.username]).get(record.username)
        if user is None or user.disabled:
            raise NotAuthenticated("unknown, expired or revoked API token")
        return _actor(user)

    def _token_records(self, org: str, username: str | None = None) -> list[TokenRecord]:
        members = {a.username for a in self.list_users(org)}
        wanted = {username.strip().lower()} & members if username else members
        return [t for t in self.tokens.iter() if t.username in wanted]

    def list_tokens(self, org: str, username: str | None = None) -> list[TokenInfo]:
        """The organisation's tokens (of one user, if named), newest first."""
        now = _now()
        items = [_token_info(t, now) for t in self._token_records(org, username)]
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
        hits = [t for t in self._token_records(org) if t.sha.startswith(prefix)]
        if not hits:
            raise NotFound(f"token '{token_id}' not found")
        if len(hits) > 1:
            raise InputError(f"token id '{token_id}' is ambiguous; give more characters", field="token_id")
        record = hits[0]
        sha = record.sha
        user = self._user(record.username)
        if not record.revoked:
            after = replace(record, revoked=True, revoked_at=_now().isoformat())
            try:
                self.audit.append(user.org, by.username if by else actor, "token.revoke", API_TOKENS, sha[:TOKEN_ID_LENGTH],
                                  {"revoked": False}, {"revoked": True, "username": record.username},
                                  system_records=[(API_TOKENS, self.tokens.rows([after]))],
                                  expect=[Expect(API_TOKENS, sha, "revoked", record.revoked, org=SYSTEM_ORG)])
            except PreconditionFailed as exc:
                if exc.key != (SYSTEM_ORG, API_TOKENS, sha):
                    raise  # else revoked meanwhile by someone else: it is revoked either way
            record = after
        return replace(_token_info(record, _now()), revoked=True)


def _token_info(record: TokenRecord, now: datetime) -> TokenInfo:
    return TokenInfo(id=record.sha[:TOKEN_ID_LENGTH], username=record.username, name=record.name, created_at=record.created_at,
                     expires_at=record.expires_at, revoked=record.revoked, expired=record.expired(now))


FREE_SLOT: dict[str, Any] = SessionSlot("", free=True).to_doc()


def _verify(hasher: PasswordHasher, stored: str, password: str) -> bool:
    try:
        return hasher.verify(stored, password)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


def _actor(user: UserRecord) -> Actor:
    return Actor(username=user.username, org=user.org, role=user.role, display_name=user.display_name)


def constant_time_equal(a: str, b: str) -> bool:
    return hmac.compare_digest(a.encode("utf-8"), b.encode("utf-8"))
