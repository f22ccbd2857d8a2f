"""`factbridge partners ...`: our federation identity, partner desks, key rotation, sync and status
(see docs/federation.md)."""

from __future__ import annotations

import json
import sys
import time
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from factbridge.cli.app import _state, app, bench_app
from factbridge.console import console, err_console, progress_bar
from factbridge.federation.feed import KINDS, Outbox
from factbridge.federation.identity import Identity
from factbridge.federation.partners import Partners, parse_kinds
from factbridge.federation.push import push_to_partners
from factbridge.federation.records import KEYS
from factbridge.services import Services
from factbridge.workflow.audit import AuditLog

partners_app = typer.Typer(help="Partner desks: signed sharing of fact-checks, corrections, withdrawals, narratives, alerts and link verdicts (docs/federation.md).", no_args_is_help=True)
app.add_typer(partners_app, name="partners")

ALL_KINDS = ",".join(KINDS)


def _identity(services: Services) -> Identity:
    return Identity(services.settings.data_dir)


def _outbox(services: Services) -> Outbox:
    from factbridge.federation.schedule import outbox_for

    return outbox_for(services, services.settings.org, _identity(services))


def _out_json(value: Any) -> None:
    sys.stdout.write(json.dumps(value, indent=2, ensure_ascii=False, default=str) + "\n")


@partners_app.command("identity")
def identity(ctx: typer.Context, as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """Our organisation id and public key: what a partner passes to `partners add ... --key`."""
    services = _state(ctx).services()
    key = _identity(services).active()
    info = {"org": services.settings.org, "key_id": key.key_id, "public_key": key.public_text}
    if as_json:
        _out_json(info)
        return
    console.print(f"organisation: [bold]{escape(info['org'])}[/]\nkey id: {key.key_id}\npublic key: {key.public_text}")


@partners_app.command("add")
def add(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="Our name for the partner desk.")],
    url: Annotated[str, typer.Argument(help="Base URL of the partner's FactBridge (http://host:port).")],
    key: Annotated[str, typer.Option(help="The partner's public key (ed25519:..., from its `partners identity`).")],
    remote_org: Annotated[str, typer.Option("--remote-org", help="The partner's organisation id on its deployment (default: NAME).")] = "",
    send: Annotated[str, typer.Option(help=f"Kinds of item we send it (of {ALL_KINDS}).")] = ALL_KINDS,
    accept: Annotated[str, typer.Option(help=f"Kinds of item we accept from it (of {ALL_KINDS}).")] = ALL_KINDS,
    push: Annotated[bool, typer.Option(help="Tell it at once when our feed has new items (a signed POST; it then pulls).")] = False,
) -> None:
    """Add (or re-activate) a partner desk, pinning its key."""
    services = _state(ctx).services()
    doc = Partners(services.storage, services.settings.org).add("cli", name, url, key, remote_org, parse_kinds(send, "send"),
                                                                parse_kinds(accept, "accept"), push)
    console.print(f"partner {escape(doc.name)} ({escape(doc.org)} at {escape(doc.url)}) added; key {', '.join(doc.keys)} pinned; "
                  f"send: {', '.join(doc.send) or 'nothing'}; accept: {', '.join(doc.accept) or 'nothing'}")


@partners_app.command("list")
def list_(ctx: typer.Context, as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """Partner desks, their keys and scopes."""
    services = _state(ctx).services()
    docs = Partners(services.storage, services.settings.org).all()
    if as_json:
        _out_json([d.to_doc() for d in docs])
        return
    table = Table(title=f"Partners of {escape(services.settings.org)}")
    for col in ("name", "org", "url", "active", "keys", "send", "accept"):
        table.add_column(col, overflow="fold")
    for d in docs:
        keys = ", ".join(f"{k} ({v['status']})" for k, v in d.keys.items())
        table.add_row(escape(d.name), escape(d.org), escape(d.url), "yes" if d.active else f"removed {d.removed_at}",
                      keys, ", ".join(d.send), ", ".join(d.accept))
    console.print(table)


@partners_app.command("remove")
def remove(ctx: typer.Context, name: str) -> None:
    """Deactivate a partner: nothing more is sent or pulled; its history and items stay."""
    services = _state(ctx).services()
    doc = Partners(services.storage, services.settings.org).remove("cli", name)
    console.print(f"partner {escape(doc.name)} deactivated (history kept)")


@partners_app.command("rotate-key")
def rotate_key(ctx: typer.Context) -> None:
    """Make a new signing key, endorsed by the current one (partners follow it on their next sync)."""
    services = _state(ctx).services()
    identity = _identity(services)
    old = identity.active().key_id
    new = identity.rotate()
    AuditLog(services.storage).append(services.settings.org, "cli", "federation.key.rotate", KEYS, new.key_id,
                                      {"key_id": old}, {"key_id": new.key_id, "public_key": new.public_text})
    console.print(f"new signing key {new.key_id} (endorsed by {old}); public key {new.public_text}")


@partners_app.command("revoke-key")
def revoke_key(
    ctx: typer.Context,
    key_id: Annotated[str, typer.Argument(help="The key id to revoke.")],
    partner: Annotated[str, typer.Option(help="Revoke a key of this partner (ours otherwise).")] = "",
    reason: Annotated[str, typer.Option(help="Why (shown to partners and in status).")] = "",
) -> None:
    """Revoke one of our keys (partners refuse its items and flag those they hold), or a partner's key on our side."""
    services = _state(ctx).services()
    org = services.settings.org
    if partner:
        Partners(services.storage, org).revoke_key("cli", partner, key_id, reason)
        console.print(f"key {escape(key_id)} of partner {escape(partner)} revoked on our side")
        return
    statement = _identity(services).revoke(key_id, reason)
    AuditLog(services.storage).append(org, "cli", "federation.key.revoke", KEYS, key_id, None, statement)
    console.print(f"key {key_id} revoked ({escape(statement['reason'])}); signing key now {_identity(services).active().key_id}")


@partners_app.command("sync")
def sync(
    ctx: typer.Context,
    name: Annotated[str | None, typer.Argument(help="Only this partner (default: every active partner).")] = None,
    every: Annotated[float, typer.Option(help="Repeat every this many seconds until stopped (0: once).")] = 0.0,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Pull the partners' feeds: verify each item, accept or refuse it (with the reason), re-check our posts."""
    from factbridge.federation.sync import Syncer

    services = _state(ctx).services()
    org = services.settings.org
    syncer = Syncer(services, org, _identity(services))
    try:
        while True:
            outbox = _outbox(services)
            if outbox.refresh():  # our own feed is up to date for partners pulling from us
                for pushed in push_to_partners(services.storage, org, _identity(services), outbox.head(), syncer.client):
                    if pushed.error:
                        err_console.print(f"push to {escape(pushed.partner)} failed: {escape(pushed.error)}")
            names = [name] if name else [p.name for p in Partners(services.storage, org).all(active_only=True)]
            reports = []
            with progress_bar("syncing partners", len(names)) as advance:
                for n in names:
                    reports.append(syncer.sync(n))
                    advance()
            _print_reports(reports, as_json)
            if every <= 0:
                break
            time.sleep(every)
    finally:
        syncer.close()
    if any(not r.ok for r in reports):
        raise typer.Exit(1)


def _print_reports(reports: list[Any], as_json: bool) -> None:
    if as_json:
        _out_json([r.__dict__ for r in reports])
        return
    for r in reports:
        line = (f"{escape(r.partner)}: {len(r.accepted)} fact-checks, {len(r.narratives)} narratives, {len(r.partner_alerts)} alerts and "
                f"{len(r.links)} link verdicts accepted, "
                f"{len(r.refused)} refused, {r.replayed} replays ignored, "
                f"{r.stale} stale ignored; {len(r.rematched)} of our posts re-matched")
        console.print(line)
        for change in r.key_changes:
            console.print(f"  keys: {escape(change)}")
        for fc_id in r.withdrawn:
            console.print(f"  [yellow]withdrawn[/] by the partner: {escape(fc_id)} (kept, marked; no longer matched)")
        for fc_id in r.flagged:
            console.print(f"  [yellow]flagged[/] {escape(fc_id)}: signed by a key since revoked")
        for mark in r.consensus:
            word = "[green]cross-border consensus[/]" if mark["agree"] else "[yellow]verdicts differ[/]"
            console.print(f"  {word}: {escape(mark['partner_factcheck'])} ({escape(str(mark['partner_rating']))}) and "
                          f"{escape(mark['other_factcheck'])} of {escape(mark['other_desk'])} ({escape(str(mark['other_rating']))})")
        if r.linkrisk.get("status") not in (None, "unchanged"):
            console.print(f"  link-risk feed {escape(r.linkrisk['feed'])}: {r.linkrisk['entries']} links; "
                          f"{r.linkrisk['rescored'].get('flagged_posts', 0)} of our posts flagged after re-scoring")
        for alert in r.alerts:
            ev = alert["evidence"]
            console.print(f"  [bold red]cross-border[/]: our narrative {escape(ev['our_narrative']['id'])} and {escape(ev['partner_desk'])}'s "
                          f"{escape(str(ev['partner_narrative']['narrative_id']))} repeat the same claim(s): {escape(json.dumps(ev['shared_claims']))}")
        for refusal in r.refused:
            err_console.print(f"  [red]refused[/] item {refusal['seq']} ({escape(str(refusal['item_id']))}): {escape(str(refusal['reason']))}")
        if r.error:
            err_console.print(f"  [red]error:[/] {escape(r.error)}")


@partners_app.command("status")
def status(ctx: typer.Context, as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """Per partner: last sync, items accepted and refused (and why), replays, keys; and our own feed."""
    from factbridge.federation.sync import Syncer

    services = _state(ctx).services()
    org = services.settings.org
    partners = Partners(services.storage, org).all()
    syncer = Syncer(services, org, _identity(services))
    try:
        rows = [(p, syncer.state(p.name)) for p in partners]
    finally:
        syncer.close()
    ours = {"org": org, "key_id": _identity(services).active().key_id, "feed_head": _outbox(services).head()}
    if as_json:
        _out_json({"ours": ours, "partners": [p.to_doc() | {"sync": s.to_doc()} for p, s in rows]})
        return
    console.print(f"our feed: org {escape(org)}, {ours['feed_head']} items, signing key {ours['key_id']}")
    table = Table(title="Partners")
    for col in ("name", "active", "last sync", "last attempt", "accepted", "refused", "replays", "stale", "cursor", "keys", "error"):
        table.add_column(col, overflow="fold")
    for p, s in rows:
        c = s.counts
        keys = ", ".join(f"{k} {v['status']}" for k, v in p.keys.items())
        table.add_row(escape(p.name), "yes" if p.active else "no", str(s.last_sync or "never"), str(s.last_attempt or "never"),
                      str(c.accepted), str(c.refused), str(c.replayed), str(c.stale), str(s.cursor), keys, escape(s.last_error or ""))
    console.print(table)
    for p, s in rows:
        for refusal in s.refusals[-10:]:
            console.print(f"{escape(p.name)}: refused item {escape(str(refusal.seq))} ({escape(refusal.item_id)}) at {refusal.at}: "
                          f"{escape(refusal.reason)}")


@bench_app.command("federation")
def bench_federation(
    items: Annotated[int, typer.Option(help="Published cases to exchange.")] = 200,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Sign N published verdicts into a feed and pull, verify and accept them at a partner (in process)."""
    from factbridge.federation.bench import bench_exchange

    with progress_bar("publishing cases", items) as advance:
        result = bench_exchange(items, advance)
    if as_json:
        _out_json(result)
        return
    table = Table(title=f"Federation: {items} verdicts, desk to partner")
    for col in result:
        table.add_column(col.replace("_", " "), justify="right")
    table.add_row(*(str(v) for v in result.values()))
    console.print(table)
