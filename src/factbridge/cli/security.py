"""Commands that keep the workspace's accounts and audit trail sound: `users disable` /
`users enable`, `users tokens list` / `users tokens revoke`, `audit checkpoint`.

Everything they change is written with its audit entry (workflow/accounts.py). User names,
token names and other stored text are escaped before rich renders them."""

from __future__ import annotations

import json
import sys
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from factbridge.cli.app import _state
from factbridge.cli.web import _accounts, audit_app, users_app
from factbridge.console import console
from factbridge.workflow.audit import AuditLog

tokens_app = typer.Typer(help="API tokens: list, revoke.", no_args_is_help=True)
users_app.add_typer(tokens_app, name="tokens")


@users_app.command("disable")
def users_disable(ctx: typer.Context, username: str) -> None:
    """Disable a user: no sign-in, no API access; every session ends and every token is revoked."""
    change = _accounts(_state(ctx).services()).set_disabled(username, True)
    console.print(f"user {escape(change.username)} disabled: {change.sessions_revoked} session(s) ended, "
                  f"{change.tokens_revoked} API token(s) revoked")


@users_app.command("enable")
def users_enable(ctx: typer.Context, username: str) -> None:
    """Enable a disabled user again (they sign in with their password; old tokens stay revoked)."""
    change = _accounts(_state(ctx).services()).set_disabled(username, False)
    console.print(f"user {escape(change.username)} enabled")


@tokens_app.command("list")
def tokens_list(
    ctx: typer.Context,
    username: Annotated[str | None, typer.Argument(help="Only this user's tokens.")] = None,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """The API tokens of the --org organisation (never the tokens themselves: their ids)."""
    services = _state(ctx).services()
    tokens = _accounts(services).list_tokens(services.settings.org, username)
    if as_json:
        sys.stdout.write(json.dumps([{"id": t.id, "username": t.username, "name": t.name, "created_at": t.created_at,
                                      "expires_at": t.expires_at, "revoked": t.revoked, "expired": t.expired} for t in tokens]) + "\n")
        return
    table = Table(title=f"API tokens of {escape(services.settings.org)}")
    for col in ("id", "user", "name", "created", "expires", "state"):
        table.add_column(col)
    for t in tokens:
        state = "revoked" if t.revoked else "expired" if t.expired else "active"
        table.add_row(t.id, escape(t.username), escape(t.name), t.created_at[:16], (t.expires_at or "never")[:16], state)
    console.print(table)


@tokens_app.command("revoke")
def tokens_revoke(ctx: typer.Context, token_id: Annotated[str, typer.Argument(help="The id `users tokens list` shows (a prefix of 8+ characters will do).")]) -> None:
    """Revoke an API token of the --org organisation: it stops working at once."""
    services = _state(ctx).services()
    info = _accounts(services).revoke_token(services.settings.org, token_id)
    console.print(f"token {info.id} of {escape(info.username)} revoked")


@audit_app.command("checkpoint")
def audit_checkpoint(
    ctx: typer.Context,
    all_orgs: Annotated[bool, typer.Option("--all/--org-only", help="Every organisation, or only the --org one.")] = True,
) -> None:
    """Sign the current head of the audit chain with the workspace key (made in the data folder on
    first use) and store it as the latest checkpoint; `audit verify` checks the chain against it."""
    services = _state(ctx).services()
    audit = AuditLog.in_data_dir(services.storage, services.settings.data_dir)
    orgs = [services.settings.org]
    if all_orgs:
        orgs = sorted({*(o.id for o in _accounts(services).orgs.iter()), services.settings.org})
    for org in orgs:
        body = audit.checkpoint(org)
        console.print(f"{escape(org)}: entry {body['seq']} {str(body['hash'])[:16]}... signed at {body['at']}")
