"""Commands of the workspace: `serve`, `audit verify`, `users ...`, `orgs ...`."""

from __future__ import annotations

import contextlib
import json
import secrets
import sys
from typing import Annotated

import typer
from rich.table import Table

from factbridge.cli.app import _state, app
from factbridge.console import cells, console, err_console, esc, plain
from factbridge.errors import Conflict, InputError
from factbridge.services import Services
from factbridge.workflow.accounts import ROLES, SYSTEM_ORG, Accounts
from factbridge.workflow.audit import AuditLog

audit_app = typer.Typer(help="The hash-chained audit log.", no_args_is_help=True)
users_app = typer.Typer(help="Workspace users, roles and API tokens.", no_args_is_help=True)
orgs_app = typer.Typer(help="Organisations.", no_args_is_help=True)
app.add_typer(audit_app, name="audit")
app.add_typer(users_app, name="users")
app.add_typer(orgs_app, name="orgs")


def _accounts(services: Services) -> Accounts:
    from factbridge.web.app import accounts_for

    return accounts_for(services)


def ensure_org(accounts: Accounts, org: str, name: str = "") -> None:
    with contextlib.suppress(Conflict):  # already there: nothing to do
        accounts.add_org(org, name or org)


@app.command()
def serve(
    ctx: typer.Context,
    host: Annotated[str | None, typer.Option(help="Listen address (setting host).")] = None,
    port: Annotated[int | None, typer.Option(help="Port (setting port).")] = None,
) -> None:
    """Start the workspace and API (uvicorn) on the configured address."""
    services = _state(ctx).services(**{k: v for k, v in {"host": host, "port": port}.items() if v is not None})
    ensure_org(_accounts(services), services.settings.org)
    if not services.queue.in_process:
        # workers consume the shared queue; posts a crash left without stages are queued again
        # (with the in-process queue the server's own background consumer sweeps at start)
        from factbridge.pipeline.process import sweep

        sweep(services, only_if_idle=True)
    run_server(services)


def run_server(services: Services) -> None:
    import uvicorn

    from factbridge.web.app import create_app

    settings = services.settings
    console.print(f"FactBridge workspace on [bold]http://{settings.host}:{settings.port}/[/] (Ctrl+C stops)")
    # proxy_headers=False: uvicorn would otherwise take X-Forwarded-For from any loopback peer;
    # the app believes it only from `trusted_proxies` (web/security.py).
    uvicorn.run(create_app(services), host=settings.host, port=settings.port, log_level=settings.log_level.lower(), workers=1,
                proxy_headers=False)


@audit_app.command("verify")
def audit_verify(
    ctx: typer.Context,
    all_orgs: Annotated[bool, typer.Option("--all/--org-only", help="Every organisation, or only the --org one.")] = True,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Recompute the hash chain of the audit log, check every audited record against it and the
    chain against its signed checkpoint; exit 1 naming every problem."""
    services = _state(ctx).services()
    audit = AuditLog.in_data_dir(services.storage, services.settings.data_dir)
    orgs = [services.settings.org]
    if all_orgs:
        orgs = sorted({*(o.id for o in _accounts(services).orgs.iter()), services.settings.org})
    reports = [audit.verify(org) for org in orgs]
    if as_json:
        sys.stdout.write(json.dumps([{"org": r.org, "entries": r.entries, "ok": r.ok, "problems": r.problems} for r in reports], indent=2) + "\n")
    else:
        table = Table(title="Audit log")
        for col in ("org", "entries", "status"):
            table.add_column(col)
        for r in reports:
            table.add_row(*cells(r.org, r.entries, plain("intact", "green") if r.ok else plain(f"{len(r.problems)} problem(s)", "red")))
        console.print(table)
        for r in reports:
            for problem in r.problems:
                err_console.print(f"[red]tampered:[/] {esc(problem)}")
    if not all(r.ok for r in reports):
        raise typer.Exit(1)


@orgs_app.command("add")
def orgs_add(ctx: typer.Context, org_id: str, name: Annotated[str, typer.Option(help="Display name.")] = "") -> None:
    """Create an organisation."""
    accounts = _accounts(_state(ctx).services())
    accounts.add_org(org_id, name or org_id)
    org = accounts.org(org_id)
    console.print(esc(f"organisation {org.id} ({org.name}) created"))


@orgs_app.command("list")
def orgs_list(ctx: typer.Context) -> None:
    """List organisations."""
    table = Table(title="Organisations")
    for col in ("id", "name", "created"):
        table.add_column(col)
    for org in _accounts(_state(ctx).services()).orgs.iter():
        table.add_row(*cells(org.id, org.name, org.created_at))
    console.print(table)


@users_app.command("add")
def users_add(
    ctx: typer.Context,
    username: str,
    role: Annotated[str, typer.Option(help=f"One of: {', '.join(ROLES)}.")] = "analyst",
    name: Annotated[str, typer.Option(help="Display name.")] = "",
    password_stdin: Annotated[bool, typer.Option(help="Read the password from standard input (else one is generated and printed).")] = False,
) -> None:
    """Add a user to the --org organisation (created if missing)."""
    services = _state(ctx).services()
    org = services.settings.org
    if org == SYSTEM_ORG:
        raise InputError("choose an organisation with --org", field="org")
    accounts = _accounts(services)
    ensure_org(accounts, org)
    password = sys.stdin.readline().rstrip("\n") if password_stdin else secrets.token_urlsafe(12)
    actor = accounts.add_user(username, password, org, role, name)
    console.print(esc(f"user {actor.username} ({actor.role}) added to {actor.org}"))
    if not password_stdin:
        console.print(f"password: {esc(password)}")


@users_app.command("role")
def users_role(ctx: typer.Context, username: str, role: str) -> None:
    """Change a user's role."""
    actor = _accounts(_state(ctx).services()).set_role(username, role)
    console.print(esc(f"user {actor.username} is now {actor.role}"))


@users_app.command("password")
def users_password(
    ctx: typer.Context,
    username: str,
    password_stdin: Annotated[bool, typer.Option(help="Read the new password from standard input (else one is generated and printed).")] = False,
) -> None:
    """Set a new password for a user."""
    password = sys.stdin.readline().rstrip("\n") if password_stdin else secrets.token_urlsafe(12)
    change = _accounts(_state(ctx).services()).set_password(username, password)
    console.print(esc(f"password of {change.username} changed" + ("" if password_stdin else f": {password}")), soft_wrap=True)
    console.print(f"{change.sessions_revoked} session(s) ended, {change.tokens_revoked} API token(s) revoked")


@users_app.command("token")
def users_token(ctx: typer.Context, username: str, name: Annotated[str, typer.Option(help="What the token is for.")] = "api",
                expires: Annotated[str | None, typer.Option(help="30d, 12h, a date (2027-01-31) or never; default: setting api_token_days.")] = None) -> None:
    """Create an API token for a user (shown once; only its hash is stored)."""
    token = _accounts(_state(ctx).services()).create_token(username, name, expires=expires if expires is not None else "default")
    console.print(token, soft_wrap=True, markup=False, highlight=False)


@users_app.command("purge-sessions")
def users_purge_sessions(ctx: typer.Context, as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """Purge ended, expired and password-revoked web sessions (every organisation), and expired
    rate-limit counters. Sign-in purges a few of the oldest each time; this sweeps them all."""
    from factbridge.web.app import rate_windows
    from factbridge.web.security import sweep_rate_limits

    services = _state(ctx).services()
    report = _accounts(services).purge_sessions()
    counters = sweep_rate_limits(services.storage, rate_windows(services))
    result = {"scanned": report.scanned, "purged": report.purged, "live": report.live, "free_slots": report.free,
              "rate_limit_keys_dropped": counters}
    if as_json:
        sys.stdout.write(json.dumps(result) + "\n")
        return
    table = Table(title="Web sessions")
    for col in result:
        table.add_column(col.replace("_", " "))
    table.add_row(*(str(v) for v in result.values()))
    console.print(table)


@users_app.command("list")
def users_list(ctx: typer.Context) -> None:
    """List the users of the --org organisation."""
    services = _state(ctx).services()
    table = Table(title=f"Users of {services.settings.org}")
    for col in ("user", "name", "role"):
        table.add_column(col)
    for actor in _accounts(services).list_users(services.settings.org):
        table.add_row(*cells(actor.username, actor.display_name, actor.role))
    console.print(table)


DEMO_USERS = (("editor", "editor", "Demo Editor"), ("reviewer", "editor", "Second Editor"), ("analyst", "analyst", "Demo Analyst"), ("admin", "admin", "Demo Admin"))


def seed_demo_accounts(services: Services) -> str:
    """Demo organisation and users sharing one fresh random password (printed by the demo)."""
    accounts = _accounts(services)
    org = services.settings.org
    ensure_org(accounts, org, "FactBridge Demo Desk")
    password = secrets.token_urlsafe(9)
    for username, role, display in DEMO_USERS:
        try:
            accounts.add_user(username, password, org, role, display)
        except Conflict:
            accounts.set_password(username, password, actor="demo")
    return password
