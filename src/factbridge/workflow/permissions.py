"""Who may do what: one table of named actions and the least role each needs.

Roles are ordered (viewer < analyst < editor < admin); each holds the actions of
the roles below it. Every check in the workflow, the API and the pages names an
action of this table (`Actor.check("case.approve")`), so what a role may do is
read here, in one place, and `docs/security.md` lists it.
"""

from __future__ import annotations

ROLES = ("viewer", "analyst", "editor", "admin")

PERMISSIONS: dict[str, tuple[str, str]] = {
    # action: (least role, what it is, for the refusal message)
    "case.open": ("analyst", "opening a case"),
    "case.assign": ("analyst", "assigning a case"),
    "case.evidence": ("analyst", "adding evidence"),
    "case.verdict": ("analyst", "drafting a verdict"),
    "case.version": ("analyst", "adding a language version of a verdict"),
    "match.review": ("analyst", "deciding whether a post repeats a fact-checked claim"),
    "case.approve": ("editor", "approving a verdict"),
    "case.return": ("editor", "returning a verdict"),
    "case.close": ("editor", "closing a case"),
    "case.publish": ("editor", "publishing"),
    "case.correct": ("editor", "correcting a published verdict"),
    "case.correction.approve": ("editor", "approving a correction of the rating"),
    "case.withdraw": ("editor", "proposing to withdraw a published fact-check"),
    "case.withdrawal.approve": ("editor", "approving a withdrawal"),
    "appeal.read": ("editor", "reading appeals"),
    "appeal.decide": ("editor", "deciding an appeal"),
    "audit.read": ("admin", "reading the audit log"),
    "users.manage": ("admin", "managing users"),
    "posts.ingest": ("analyst", "ingesting posts"),
    "factchecks.import": ("editor", "importing fact-checks"),
}


def role_rank(role: str) -> int:
    return ROLES.index(role) if role in ROLES else -1


def allowed(role: str, action: str) -> bool:
    """Whether `role` may do `action` (an unknown action is allowed to nobody)."""
    needed = PERMISSIONS.get(action)
    return needed is not None and role_rank(role) >= role_rank(needed[0])
