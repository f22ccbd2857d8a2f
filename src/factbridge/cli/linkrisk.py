"""`factbridge linkrisk ...`, `factbridge eval linkrisk`, `factbridge bench linkrisk`."""

from __future__ import annotations

import contextlib
import json
import multiprocessing
import os
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table
from rich.text import Text

from factbridge.cli.app import _print_quarantine, _state, app, bench_app, eval_app
from factbridge.console import cells, console, esc, plain, progress_bar
from factbridge.errors import InputError

linkrisk_app = typer.Typer(help="Dangerous links in posts: blocklist feeds, look-alike domains, risk scores.", no_args_is_help=True)
app.add_typer(linkrisk_app, name="linkrisk")

_LEVEL_STYLE = {"high": "bold red", "medium": "yellow", "low": "cyan", "none": "dim"}


@linkrisk_app.command("update")
def linkrisk_update(
    ctx: typer.Context,
    feed: Annotated[list[Path], typer.Option("--feed", help="Feed file (repeat for several).")],
    name: Annotated[str | None, typer.Option(help="Feed name (default: file name without extension; one --feed only).")] = None,
    fmt: Annotated[str, typer.Option("--format", help="auto, urlhaus-csv, list, openphish, domains, abp, hosts, phishtank-json, phishtank-csv.")] = "auto",
    date: Annotated[str | None, typer.Option(help="Feed date (ISO) when the file does not carry one.")] = None,
    rescore: Annotated[bool, typer.Option(help="Score the stored posts again when a feed changed.")] = True,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Import blocklist feeds into this organisation's store (idempotent; bad lines quarantined)."""
    from factbridge.linkrisk.feeds import parse_feed, store_feed
    from factbridge.linkrisk.stage import rescore_posts

    if name and len(feed) > 1:
        raise InputError("--name applies to one --feed only")
    services = _state(ctx).services()
    org = services.settings.org
    updates = []
    for path in feed:
        parsed = parse_feed(path, name, fmt, date)
        updates.append(store_feed(services.storage, org, parsed))
    rescored: dict[str, Any] | None = None
    stored_posts = services.storage.count_posts(org)
    if rescore and stored_posts and any(u.status != "unchanged" for u in updates):
        with progress_bar("re-scoring stored posts", stored_posts) as advance:
            rescored = rescore_posts(services, org, progress=advance)
    if as_json:
        sys.stdout.write(json.dumps([{**u.__dict__, "quarantined": len(u.quarantined), "rescored": rescored} for u in updates], indent=2) + "\n")
        return
    table = Table(title="Link-risk feeds")
    for col in ("feed", "format", "status", "entries", "urls", "hosts", "quarantined", "date", "date from"):
        table.add_column(col)
    for u in updates:
        table.add_row(*cells(u.name, u.format, u.status, u.entries, u.counts.get("url", 0), u.counts.get("host", 0), len(u.quarantined), u.feed_date, u.date_source))
    console.print(table)
    if rescored:
        console.print(f"re-scored {rescored['posts']} stored posts: {rescored['flagged_posts']} with a flagged link ({rescored['flagged_links']} links)")
    _print_quarantine([q for u in updates for q in u.quarantined])


@linkrisk_app.command("rescore")
def linkrisk_rescore(ctx: typer.Context) -> None:
    """Score every stored post again with the current feeds and protected list."""
    from factbridge.linkrisk.stage import rescore_posts

    services = _state(ctx).services()
    org = services.settings.org
    with progress_bar("re-scoring stored posts", services.storage.count_posts(org)) as advance:
        summary = rescore_posts(services, org, progress=advance)
    console.print(", ".join(f"{k} {v}" for k, v in summary.items()))


@linkrisk_app.command("feeds")
def linkrisk_feeds(ctx: typer.Context) -> None:
    """List the stored feeds with their dates and sizes."""
    from factbridge.linkrisk.feeds import list_feeds

    services = _state(ctx).services()
    table = Table(title="Stored link-risk feeds")
    for col in ("feed", "format", "entries", "date", "imported", "sha256"):
        table.add_column(col)
    for f in list_feeds(services.storage, services.settings.org):
        table.add_row(*cells(f.name, f.format, f.entries, f.feed_date, f.imported_at, f.sha256[:12]))
    console.print(table)


def _risk_table(risks: list[Any], title: str) -> None:
    table = Table(title=title, title_justify="left")
    for col in ("score", "level", "link", "reasons"):
        table.add_column(col, overflow="fold")
    for r in risks:
        style = _LEVEL_STYLE[r.level]
        reasons = "\n".join(f"[{x.weight:.2f}] {x.detail}" for x in r.reasons) or ("official: " + r.official if r.official else "-")
        host = r.unicode_host if r.unicode_host != r.host else r.host
        link = Text("\n").join([plain(r.normalized), plain(host, "dim")])
        table.add_row(*cells(plain(f"{r.score:.2f}", style), plain(r.level, style), link, reasons))
    console.print(table)


@linkrisk_app.command("check")
def linkrisk_check(
    ctx: typer.Context,
    urls: Annotated[list[str], typer.Argument(help="Links (any form: defanged, scheme-less, IDN...) or post text with --text.")],
    text: Annotated[bool, typer.Option("--text", help="Treat the arguments as post text and score the links found in it.")] = False,
    resolve: Annotated[bool | None, typer.Option("--resolve/--no-resolve", help="Follow shortened links (default: the linkrisk_resolve setting, off).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Score links and explain why (with the stored feeds and the protected-domain list)."""
    from factbridge.linkrisk.urls import extract_urls

    services = _state(ctx).services()
    scorer = services.link_scorer(resolve=resolve)
    targets = [u for t in urls for u in extract_urls(t)] if text else list(urls)
    if text and not targets:
        raise InputError("no link found in the text")
    results = scorer.score_many(targets)
    if as_json:
        payload = [r.as_dict() if not isinstance(r, InputError) else {"url": t, "error": r.reason} for t, r in zip(targets, results, strict=True)]
        sys.stdout.write(json.dumps(payload, ensure_ascii=False, indent=2) + "\n")
        return
    good = [r for r in results if not isinstance(r, InputError)]
    _risk_table(good, f"Link risk ({len(good)} links)")
    for r in good:
        if r.resolution:
            hops = " -> ".join(f"{h['url']} ({h['status'] or h['error']})" for h in r.resolution["hops"])
            console.print(f"followed {esc(r.normalized)}: {esc(hops)}" + (f" [yellow]stopped: {esc(r.resolution['error'])}[/]" if r.resolution["error"] else ""))
    for t, r in zip(targets, results, strict=True):
        if isinstance(r, InputError):
            console.print(f"[yellow]not scored[/] {esc(t)}: {esc(r.reason)}")
    console.print(f"[dim]decided_by: {esc(scorer.decided_by)}[/]")


@linkrisk_app.command("posts")
def linkrisk_posts(
    ctx: typer.Context,
    limit: Annotated[int, typer.Option(help="Posts to list.")] = 20,
    flagged_only: Annotated[bool, typer.Option("--flagged-only", help="Only posts with a flagged link.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """The posts with the riskiest links, riskiest first."""
    from factbridge.linkrisk.stage import riskiest_posts
    from factbridge.pipeline.records import LinkRisks

    services = _state(ctx).services()
    org = services.settings.org
    found = [r for r in riskiest_posts(services.storage, org, limit) if r.flagged_urls or not flagged_only]
    if as_json:
        sys.stdout.write(json.dumps([r.to_doc() for r in found], ensure_ascii=False, indent=2) + "\n")
        return
    posts = services.storage.get_posts(org, [r.post_id for r in found])
    table = Table(title=f"Riskiest posts ({LinkRisks(services.storage).count(org)} scored)")
    for col in ("post", "max", "level", "links", "top link", "why", "text"):
        table.add_column(col, overflow="fold")
    for r in found:
        top = r.urls[0] if r.urls else None
        style = _LEVEL_STYLE[r.level]
        post = posts.get(r.post_id)
        table.add_row(*cells(
            r.post_id, plain(f"{r.max_score:.2f}", style), plain(r.level, style), len(r.urls),
            top.normalized if top else "-", "; ".join(str(x.get("detail", "")) for x in top.reasons[:2]) if top else "-",
            (post.text[:80] if post else ""),
        ))
    console.print(table)


# ---------------------------------------------------------------------------
# eval


@eval_app.command("linkrisk")
def eval_linkrisk(
    ctx: typer.Context,
    data: Annotated[Path, typer.Option(help="Blocklist file or folder (e.g. ../shared/data/urls/urlhaus_filter).")],
    benign_from: Annotated[Path | None, typer.Option(help="Shared data folder to gather benign links from (default: two levels above --data).")] = None,
    lookalikes: Annotated[Path, typer.Option(help="Look-alike fixture (JSONL: domain, label lookalike|legit, target).")] = Path("tests/fixtures/lookalike_domains.jsonl"),
    per_domain_cap: Annotated[int, typer.Option(help="Most benign links kept per registered domain (0: no cap).")] = 200,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Known-malicious recall (held-out and lookup), benign false-positive rate, look-alike P/R."""
    report = run_eval(ctx, data, benign_from, lookalikes, per_domain_cap)
    if as_json:
        sys.stdout.write(json.dumps(report, ensure_ascii=False, indent=2) + "\n")
        return
    print_eval(report)


def run_eval(ctx: typer.Context, data: Path, benign_from: Path | None, lookalikes: Path, per_domain_cap: int) -> dict[str, Any]:
    from factbridge.linkrisk.evaluation import (
        benign_false_positives,
        blocklist_recall,
        gather_benign_urls,
        load_lists,
        lookalike_quality,
        read_lookalike_fixture,
    )
    from factbridge.linkrisk.lookalike import LookalikeDetector
    from factbridge.linkrisk.scoring import RULES_VERSION, LinkRiskScorer

    settings = _state(ctx).services().settings
    detector = LookalikeDetector.from_setting(settings.linkrisk_protected_domains)
    threshold = settings.linkrisk_flag_threshold
    feeds = load_lists(data)
    with progress_bar("scoring blocklist entries", sum(len(f.entries) for f in feeds)) as advance:
        recalls = blocklist_recall(feeds, detector, threshold, advance)
    shared = benign_from or (data.parent.parent if data.is_dir() else data.parent.parent.parent)
    benign = gather_benign_urls(shared, per_domain_cap)
    with progress_bar("scoring benign links", len(benign.urls)) as advance:
        fp = benign_false_positives(benign.urls, LinkRiskScorer(None, detector, threshold), advance)
    look = lookalike_quality(read_lookalike_fixture(lookalikes), detector, threshold)
    return {
        "rules": f"linkrisk-rules v{RULES_VERSION}", "protected": detector.version, "threshold": threshold,
        "held_out_note": "held-out: no list of this data set is loaded (they all derive from URLhaus), so only the other signals can flag an entry; lookup: the list itself is loaded.",
        "blocklists": [
            {"list": r.name, "entries": r.entries, "held_out_recall": round(r.held_out_recall, 4), "lookup_recall": round(r.lookup_recall, 4),
             "held_out_flagged": r.held_out_flagged, "by_kind": r.by_kind, "held_out_reasons": r.reasons, "unscorable": r.unscorable}
            for r in recalls
        ],
        "benign": {"how": benign.how, "sources": benign.sources, "dropped": benign.dropped, "urls": fp.urls, "flagged": fp.flagged,
                   "fpr": round(fp.fpr, 5), "hosts": fp.hosts, "flagged_hosts": fp.flagged_hosts, "host_fpr": round(fp.host_fpr, 5),
                   "reasons": fp.reasons, "examples": fp.examples},
        "lookalike": {"fixture": str(lookalikes), "lookalikes": look.lookalikes, "legit": look.legit, "precision": round(look.precision, 4),
                      "recall": round(look.recall, 4), "f1": round(look.f1, 4), "tp": look.true_positive, "fp": look.false_positive,
                      "fn": look.false_negative, "target_correct": look.target_correct, "by_rule": look.by_rule, "errors": look.errors},
    }


def print_eval(report: dict[str, Any]) -> None:
    table = Table(title=f"Known-malicious recall ({report['rules']}, threshold {report['threshold']})")
    for col in ("list", "entries", "held-out recall", "lookup recall", "held-out by kind (flagged/entries)"):
        table.add_column(col)
    for r in report["blocklists"]:
        kinds = ", ".join(f"{k} {v['held_out_flagged']}/{v['entries']}" for k, v in sorted(r["by_kind"].items()))
        table.add_row(r["list"], str(r["entries"]), f"{r['held_out_recall']:.4f}", f"{r['lookup_recall']:.4f}", kinds)
    console.print(table)
    console.print(f"[dim]{report['held_out_note']}[/]")
    for r in sorted(report["blocklists"], key=lambda x: -x["entries"])[:1]:
        console.print("held-out reasons (" + r["list"] + "): " + ", ".join(f"{k} {v}" for k, v in list(r["held_out_reasons"].items())[:10]))
    b = report["benign"]
    console.print(f"\n[bold]Benign links[/]: {b['urls']} links on {b['hosts']} hosts -> flagged {b['flagged']} (FPR {b['fpr']:.4f}); hosts flagged {b['flagged_hosts']} (host FPR {b['host_fpr']:.4f})")
    console.print(f"[dim]gathered: {b['how']}[/]")
    console.print("[dim]per source: " + ", ".join(f"{k}: {v}" for k, v in b["sources"].items()) + "[/]")
    for ex in b["examples"][:10]:
        console.print(f"  false positive {ex['score']:.2f} {ex['url']} ({', '.join(ex['reasons'])})")
    look = report["lookalike"]
    console.print(
        f"\n[bold]Look-alike detection[/] on {look['fixture']} ({look['lookalikes']} look-alikes, {look['legit']} legitimate): "
        f"precision {look['precision']:.4f}, recall {look['recall']:.4f}, F1 {look['f1']:.4f} (tp {look['tp']}, fp {look['fp']}, fn {look['fn']}); "
        f"by rule: " + ", ".join(f"{k} {v}" for k, v in look["by_rule"].items())
    )
    for err in look["errors"]:
        console.print(f"  miss: {err}")


# ---------------------------------------------------------------------------
# bench

_BENCH_STATE: dict[str, Any] = {}


def _bench_worker(shard: list[str]) -> tuple[int, float, float, float, int]:
    """Score a shard twice (cold caches, then warm).
    Returns (n, cold wall s, cold CPU s, warm wall s, flagged)."""
    scorer = _BENCH_STATE["scorer_factory"]()
    t0, c0 = time.perf_counter(), time.process_time()
    flagged = 0
    for url in shard:
        with contextlib.suppress(InputError):
            flagged += scorer.score(url).flagged
    cold, cold_cpu = time.perf_counter() - t0, time.process_time() - c0
    t1 = time.perf_counter()
    for url in shard:
        with contextlib.suppress(InputError):
            scorer.score(url)
    return len(shard), cold, cold_cpu, time.perf_counter() - t1, flagged


@bench_app.command("linkrisk")
def bench_linkrisk(
    ctx: typer.Context,
    data: Annotated[Path, typer.Option(help="Blocklist file or folder: its entries (as links) are the malicious part of the corpus and the loaded feeds.")],
    benign_from: Annotated[Path | None, typer.Option(help="Shared data folder for the benign part of the corpus (default: two levels above --data).")] = None,
    workers: Annotated[int, typer.Option(help="Processes (one per core).")] = 2,
) -> None:
    """URLs scored per second without resolution: every feed loaded, unique links, cold caches."""
    from factbridge.linkrisk.evaluation import entry_url, gather_benign_urls, load_lists
    from factbridge.linkrisk.feeds import index_from_parsed
    from factbridge.linkrisk.lookalike import LookalikeDetector
    from factbridge.linkrisk.scoring import LinkRiskScorer

    settings = _state(ctx).services().settings
    feeds = load_lists(data)
    shared = benign_from or (data.parent.parent if data.is_dir() else data.parent.parent.parent)
    benign = gather_benign_urls(shared).urls
    malicious = list(dict.fromkeys(entry_url(e) for f in feeds for e in f.entries))
    corpus = malicious + benign
    index = index_from_parsed(feeds)

    def factory() -> LinkRiskScorer:
        return LinkRiskScorer(index, LookalikeDetector.from_setting(settings.linkrisk_protected_domains), settings.linkrisk_flag_threshold)

    _BENCH_STATE["scorer_factory"] = factory
    # Interleave so each worker gets the same mix; fork shares the loaded index.
    shards = [corpus[i::workers] for i in range(workers)]
    load_before = os.getloadavg()
    started = time.perf_counter()
    if workers == 1:
        results = [_bench_worker(shards[0])]
    else:
        with multiprocessing.get_context("fork").Pool(workers) as pool:
            results = pool.map(_bench_worker, shards)
    wall = time.perf_counter() - started
    load_after = os.getloadavg()
    n = sum(r[0] for r in results)
    cold = max(r[1] for r in results)
    cold_cpu = max(r[2] for r in results)
    warm = max(r[3] for r in results)
    flagged = sum(r[4] for r in results)
    console.print(f"corpus: {len(malicious)} blocklist links + {len(benign)} benign links = {n} unique links ({flagged} flagged); {len(index)} feed entries loaded; resolution off")
    console.print(f"[bold]{n / cold:,.0f} URLs/s[/] scored on {workers} worker process(es), first pass (cold caches, every link new), wall clock")
    console.print(f"{n / cold_cpu:,.0f} URLs/s from CPU time ({workers} dedicated cores; what the wall-clock figure is when no one else uses the machine)")
    console.print(f"{n / warm:,.0f} URLs/s on a second pass over the same links (warm host caches, as in a stream where hosts repeat)")
    per_worker = ", ".join(f"{r[0] / r[1]:,.0f}" for r in results)
    console.print(f"per worker (cold, wall): {per_worker} URLs/s; wall time incl. process start and both passes {wall:.1f} s")
    console.print(f"load average before {load_before[0]:.2f}, after {load_after[0]:.2f} on {os.cpu_count()} CPUs ({datetime.now(UTC):%Y-%m-%d %H:%M} UTC)")
