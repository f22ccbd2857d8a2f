"""One permission table (issue 11): every check in the code names an action of
workflow/permissions.py, no role is compared by hand, and docs/security.md lists the table."""

from __future__ import annotations

import re
from pathlib import Path

from factbridge.workflow.accounts import Actor
from factbridge.workflow.permissions import PERMISSIONS, ROLES, allowed

SRC = Path(__file__).resolve().parent.parent / "src" / "factbridge"


def test_every_check_names_an_action_of_the_table() -> None:
    used: set[str] = set()
    for path in SRC.rglob("*.py"):
        text = path.read_text(encoding="utf-8")
        used |= set(re.findall(r"\.check\(\"([a-z.]+)\"\)", text))
        assert not re.search(r"\.require\(\"(viewer|analyst|editor|admin)\"", text), f"{path}: a role check outside the table"
    assert used and used <= set(PERMISSIONS), sorted(used - set(PERMISSIONS))


def test_roles_hold_the_actions_of_the_roles_below() -> None:
    for action, (least, _) in PERMISSIONS.items():
        assert least in ROLES
        assert [allowed(role, action) for role in ROLES] == [ROLES.index(role) >= ROLES.index(least) for role in ROLES]
    assert not allowed("admin", "no.such.action") and not allowed("root", "case.open")
    assert Actor("x", "o", "editor").may("case.approve") and not Actor("x", "o", "analyst").may("case.approve")


def test_the_table_is_documented() -> None:
    doc = (SRC.parent.parent / "docs" / "security.md").read_text(encoding="utf-8")
    for action, (least, _) in PERMISSIONS.items():
        assert re.search(rf"`{re.escape(action)}`\s*\|\s*{least}", doc), f"docs/security.md does not list {action} ({least})"
