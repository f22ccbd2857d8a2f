"""Commands for narratives, topics, alerts and coordinated sharing, with their eval and bench."""

from __future__ import annotations

import json
import resource
import sys
import time
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.table import Table

from factbridge.cli.app import _state, app, bench_app, eval_app
from factbridge.console import cells, console, esc, progress_bar
from factbridge.errors import InputError, NotFound

if TYPE_CHECKING:
    import numpy as np

    from factbridge.models import Post
    from factbridge.services import Services
    from factbridge.settings import NarrativeSettings

narratives_app = typer.Typer(help="Narratives (one story, many posts) and the topics they roll up into.", invoke_without_command=True)
alerts_app = typer.Typer(help="Alerts raised by bursts and resurfacing debunked stories.", invoke_without_command=True)
app.add_typer(narratives_app, name="narratives")
app.add_typer(alerts_app, name="alerts")


def _dump(payload: Any) -> None:
    sys.stdout.write(json.dumps(payload, ensure_ascii=False, indent=2, default=str) + "\n")


def _short(text: str, n: int = 90) -> str:
    text = " ".join(text.split())
    return text if len(text) <= n else text[: n - 1] + "…"


# -- narratives ---------------------------------------------------------------------------


@narratives_app.callback()
def narratives_list(
    ctx: typer.Context,
    limit: Annotated[int, typer.Option(help="Narratives to show.")] = 20,
    topic: Annotated[str | None, typer.Option(help="Only the narratives of this topic.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Narratives growing now (decayed post count), with size, languages, terms and fact-checks."""
    if ctx.invoked_subcommand is not None:
        return
    from factbridge.pipeline.records import Narratives

    services = _state(ctx).services()
    storage, org = services.storage, services.settings.org
    book = Narratives(storage)
    if topic:
        found = book.topics(org, [topic]).get(topic)
        if found is None:
            raise NotFound(f"no topic '{topic}' in organisation '{org}'")
        records = sorted(book.get(org, found.narratives).values(), key=lambda n: -(n.heat_log2 or 0))[:limit]
    else:
        records = book.hottest(org, limit)
    if as_json:
        _dump([n.to_doc() for n in records])
        return
    table = Table(title=f"Narratives growing now ({book.count(org)} in all)")
    for col in ("narrative", "topic", "posts", "last seen", "languages", "fact-checks", "top terms", "representative post"):
        table.add_column(col, overflow="fold")
    for n in records:
        table.add_row(*cells(
            n.id, n.topic_id, n.size, n.last_seen[:16], ",".join(n.languages), len(n.factchecks),
            ", ".join(n.top_terms[:6]), _short(n.representative_text),
        ))
    console.print(table)


@narratives_app.command("show")
def narratives_show(
    ctx: typer.Context,
    narrative_id: Annotated[str, typer.Argument(help="Narrative id.")],
    posts: Annotated[int, typer.Option(help="Recent member posts to list.")] = 20,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """One narrative: counts over time, fact-checks, and each member post with its evidence."""
    from factbridge.pipeline.records import NarrativeMembers, Narratives

    services = _state(ctx).services()
    storage, org = services.storage, services.settings.org
    n = Narratives(storage).get(org, [narrative_id]).get(narrative_id)
    if n is None:
        raise NotFound(f"no narrative '{narrative_id}' in organisation '{org}'")
    recent = n.post_ids[-posts:]
    members = NarrativeMembers(storage).get(org, recent)
    texts = storage.get_posts(org, recent)
    if as_json:
        _dump({"narrative": n.to_doc(), "members": [members[p].to_doc() for p in recent if p in members]})
        return
    console.print(f"[bold]{esc(n.id)}[/] in topic {esc(n.topic_id)}: {n.size} posts, {esc(n.first_seen)} .. {esc(n.last_seen)}")
    console.print(esc(f"languages {n.languages}; methods {n.methods}; terms: {', '.join(n.top_terms)}"))
    console.print(f"representative: {esc(_short(n.representative_text, 200))}")
    console.print(esc("posts per day: " + ", ".join(f"{d} {c}" for d, c in n.counts_daily.items())))
    for fc in n.factchecks:
        console.print(esc(f"  fact-check {fc['factcheck_id']}: {fc['decision']} for {fc['posts']} posts (best {fc['fused_score']})"))
    table = Table(title="Recent member posts and why they joined")
    for col in ("post", "time", "method", "similarity", "compared with", "text"):
        table.add_column(col, overflow="fold")
    for pid in reversed(recent):
        m = members.get(pid)
        table.add_row(*cells(
            pid, m.time[:16] if m else "", m.method if m else "", m.similarity if m and m.similarity is not None else "",
            (m.neighbour or "") if m else "", _short(texts[pid].text if pid in texts else "", 70),
        ))
    console.print(table)
    console.print(f"[dim]decided_by: {esc(n.decided_by)}[/]")


@narratives_app.command("topics")
def narratives_topics(
    ctx: typer.Context,
    limit: Annotated[int, typer.Option(help="Topics to show.")] = 20,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Topics growing now: stories that hold several narratives."""
    from factbridge.pipeline.records import Narratives

    services = _state(ctx).services()
    found = Narratives(services.storage).hottest_topics(services.settings.org, limit)
    if as_json:
        _dump([t.to_doc() for t in found])
        return
    table = Table(title="Topics growing now")
    for col in ("topic", "narratives", "posts", "first seen", "last seen", "languages", "label"):
        table.add_column(col, overflow="fold")
    for t in found:
        table.add_row(*cells(t.id, len(t.narratives), t.size, t.first_seen[:16], t.last_seen[:16], ",".join(t.languages), t.label))
    console.print(table)


# -- alerts -------------------------------------------------------------------------------------


@alerts_app.callback()
def alerts_list(
    ctx: typer.Context,
    limit: Annotated[int, typer.Option(help="Alerts to show.")] = 20,
    kind: Annotated[str | None, typer.Option(help="Only this kind: burst or resurfacing.")] = None,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Alerts, newest burst first, with their evidence and delivery state."""
    if ctx.invoked_subcommand is not None:
        return
    from factbridge.pipeline.alerts import delivery_id, event_key
    from factbridge.pipeline.records import AlertDeliveries, Alerts

    services = _state(ctx).services()
    storage, org = services.storage, services.settings.org
    alerts = Alerts(storage)
    found = [a for a in alerts.newest(org, limit * (5 if kind else 1)) if not kind or a.kind == kind][:limit]
    if as_json:
        _dump([a.to_doc() for a in found])
        return
    urls = [u.strip() for u in services.settings.alert_webhooks.split(",") if u.strip()]
    keys = {a.id: event_key(a) for a in found}
    deliveries = AlertDeliveries(storage).get(org, [delivery_id(keys[a.id], u) for a in found for u in urls])
    table = Table(title=f"Alerts ({alerts.count(org)} in all)")
    for col in ("alert", "kind", "narrative", "burst", "posts", "baseline/bin", "delivery", "summary"):
        table.add_column(col, overflow="fold")
    for a in found:
        ev = a.evidence
        states = [d.state if (d := deliveries.get(delivery_id(keys[a.id], u))) else "-" for u in urls]
        table.add_row(*cells(
            # cross-border and partner alerts (federation) have no burst of ours: their columns stay empty
            a.id, a.kind, a.narrative_id or "", f"{ev['burst_start'][:16]} .. {ev['burst_end'][11:16]}" if "burst_end" in ev else "",
            ev.get("posts_in_burst", ""), ev.get("baseline_per_bin", ""), ",".join(states) or "no webhook", _short(a.summary, 60),
        ))
    console.print(table)


@alerts_app.command("show")
def alerts_show(ctx: typer.Context, alert_id: Annotated[str, typer.Argument()]) -> None:
    """One alert with all its evidence and delivery attempts (JSON)."""
    from factbridge.pipeline.alerts import delivery_id, event_keys
    from factbridge.pipeline.records import AlertDeliveries, Alerts

    services = _state(ctx).services()
    storage, org = services.storage, services.settings.org
    alert = Alerts(storage).get(org, [alert_id]).get(alert_id)
    if alert is None:
        raise NotFound(f"no alert '{alert_id}' in organisation '{org}'")
    urls = [u.strip() for u in services.settings.alert_webhooks.split(",") if u.strip()]
    wanted = [delivery_id(key, u) for key in event_keys(alert) for u in urls]
    found = AlertDeliveries(storage).get(org, wanted)
    _dump({"alert": alert.to_doc(), "deliveries": [found[w].to_doc() for w in wanted if w in found]})


@alerts_app.command("redeliver")
def alerts_redeliver(
    ctx: typer.Context,
    wait: Annotated[float, typer.Option(help="Seconds to wait for deliveries before exiting.")] = 30.0,
) -> None:
    """Send again the alerts whose webhook delivery is pending or failed."""
    from factbridge.pipeline.alerts import undelivered
    from factbridge.pipeline.records import Alerts

    services = _state(ctx).services()
    storage, org = services.storage, services.settings.org
    dispatcher = services.alert_dispatcher
    if dispatcher is None:
        raise InputError("no webhook configured (setting alert_webhooks)")
    todo = {d.alert_id for d in undelivered(storage, org)}
    for alert in Alerts(storage).get(org, sorted(todo)).values():
        dispatcher.submit(org, alert)
    done = dispatcher.wait_idle(wait)
    console.print(f"re-sent {len(todo)} alerts; {'all attempts finished' if done else 'some still retrying (recorded as pending)'}")


# -- coordination ---------------------------------------------------------------------------


@app.command()
def coordination(
    ctx: typer.Context,
    input_: Annotated[Path | None, typer.Option("--input", help="CSV of share records (account, time, object columns); default: the stored posts.")] = None,
    window: Annotated[float | None, typer.Option(help="Coordination window in seconds.")] = None,
    min_participation: Annotated[int | None, typer.Option(help="Distinct co-shared objects an account (and a link) needs.")] = None,
    edge_percentile: Annotated[float | None, typer.Option(help="Keep links at or above this weight percentile.")] = None,
    objects: Annotated[str | None, typer.Option(help="Object types: object,url,hashtag,image,text,domain.")] = None,
    limit: Annotated[int, typer.Option(help="Networks to print.")] = 10,
    store: Annotated[bool, typer.Option("--store", help="Stored posts only: link the networks to the narratives their accounts posted in, for the narrative pages (what the ingest stage does for smaller stores).")] = False,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Coordinated sharing networks (CooRnet / CooRTweet method): who shared the same objects within seconds, repeatedly."""
    from factbridge.pipeline.coordination import (
        detect_coordination,
        link_to_narratives,
        read_shares,
        shares_from_posts,
        store_narrative_links,
    )

    if store and input_ is not None:
        raise typer.BadParameter("--store links networks of the stored posts to their narratives; it cannot be used with --input", param_hint="--store")

    overrides = {
        "coordination_window_s": window, "coordination_min_participation": min_participation,
        "coordination_edge_percentile": edge_percentile, "coordination_objects": objects,
    }
    services = _state(ctx).services(**{k: v for k, v in overrides.items() if v is not None})
    params = services.settings.coordination
    import pandas  # noqa: F401 - library loading is not part of the measured time
    import scipy.sparse.csgraph  # noqa: F401

    t0 = time.perf_counter()
    stored: list[Any] = []
    if input_ is not None:
        table = read_shares(input_, params.object_types)
        source = str(input_)
    else:
        org = services.settings.org
        stored = list(services.storage.iter_posts(org))
        table = shares_from_posts(stored, params.object_types)
        source = f"stored posts of '{org}'"
    t1 = time.perf_counter()
    result = detect_coordination(table, params)
    t2 = time.perf_counter()
    linked = None
    if store:
        org = services.settings.org
        linked = store_narrative_links(services.storage, org, link_to_narratives(services.storage, org, stored, result), result.decided_by)
    if as_json:
        _dump({"source": source, "read_s": t1 - t0, "detect_s": t2 - t1, **result.as_dict(limit), **({"narratives_linked": linked} if store else {})})
        return
    for line, fld, reason in table.skipped:
        console.print(f"[yellow]skipped[/] {esc(source)}:{line} field '{esc(fld)}': {esc(reason)}")
    if table.skipped_count > len(table.skipped):
        console.print(f"[yellow]... {table.skipped_count - len(table.skipped)} more rows skipped[/]")
    console.print(
        f"{esc(source)}: {table.rows_read:,} rows -> {result.shares:,} shares of {result.objects:,} objects by {result.accounts:,} accounts; "
        f"{result.pairs:,} co-shares within {params.window_s:g} s ({result.capped_shares:,} shares capped at {params.max_partners} partners)"
    )
    console.print(
        f"{len(result.networks)} networks, {result.coordinated_accounts} accounts, {result.edges_kept} links "
        f"(weight >= {result.weight_threshold:g} distinct objects)"
    )
    table_out = Table(title="Coordinated networks (largest first)")
    for col in ("network", "accounts", "links", "total weight", "first .. last share (UTC)", "top shared objects (accounts)", "strongest links"):
        table_out.add_column(col, overflow="fold")
    for net in result.networks[:limit]:
        span = f"{datetime.fromtimestamp(net.first_share, UTC):%Y-%m-%d %H:%M} .. {datetime.fromtimestamp(net.last_share, UTC):%Y-%m-%d %H:%M}"
        table_out.add_row(*cells(
            net.id, len(net.accounts), net.edge_count, net.total_weight, span,
            ", ".join(f"{o['object']} ({o['accounts']})" for o in net.objects[:4]),
            ", ".join(f"{e['a']}–{e['b']} ×{e['weight']}" for e in net.edges[:2]),
        ))
    console.print(table_out)
    console.print(f"time taken: read {t1 - t0:.2f} s + detect {t2 - t1:.2f} s = {t2 - t0:.2f} s (libraries loaded before timing)")
    if linked is not None:
        console.print(f"linked to narratives: {linked} narrative(s) have at least two accounts of one network among their posts")
    console.print(f"[dim]decided_by: {esc(result.decided_by)}[/]")


def narrative_vectors(services: Services, posts: list[Post], label: str) -> tuple[np.ndarray, NarrativeSettings]:
    """The posts' query vectors as the narratives stage sees them (centred where the embedder has
    a centering) and the stage's thresholds for this embedder: what the narrative evals group."""
    from factbridge.pipeline.narratives import resolve_thresholds
    from factbridge.pipeline.prepare import embedding_text

    with progress_bar(label, len(posts)) as advance:
        vectors = services.embedder.encode_queries([embedding_text(p) for p in posts], advance)
    section = services.settings.narratives
    centering = services.centering(wanted=section.centering)
    params = resolve_thresholds(section, services.embedder.id, centering)
    if centering is not None:
        vectors = centering.apply(vectors, [p.language for p in posts], "query")
    return vectors, params


# -- eval and bench -----------------------------------------------------------------------------


@eval_app.command("narratives")
def eval_narratives(
    ctx: typer.Context,
    data: Annotated[Path, typer.Option(help="PHEME folder (<event>-all-rnr-threads.*.json).")],
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Group PHEME source tweets without labels; purity and ARI of narratives and topics against the 9 events."""
    from factbridge.eval.narratives import evaluate_grouping, load_pheme
    from factbridge.pipeline.prepare import prepare_post

    services = _state(ctx).services()
    posts, events = load_pheme(data)
    posts = [prepare_post(p, services.languages) for p in posts]
    vectors, params = narrative_vectors(services, posts, "embedding tweets (cached)")
    runs = {"time-aware topics": params, "meaning only (no time limits)": replace(params, topic_max_gap_hours=float("inf"), semantic_max_gap_hours=float("inf"))}
    reports = {}
    for name, p in runs.items():
        with progress_bar(f"grouping ({name})", len(posts)) as advance:
            reports[name] = evaluate_grouping(posts, events, vectors, p, progress=advance)
    if as_json:
        _dump(reports)
        return
    first = next(iter(reports.values()))
    table = Table(title=f"PHEME: {first['posts']} source tweets, {first['events']} events (labels unseen)")
    for col in ("run", "level", "groups", "purity", "ARI"):
        table.add_column(col, justify="right" if col in {"groups", "purity", "ARI"} else "left")
    for name, r in reports.items():
        for level, m in r["levels"].items():
            table.add_row(name, level, str(m["groups"]), f"{m['purity']:.4f}", f"{m['ari']:.4f}")
    console.print(table)
    console.print(f"memberships by method: {first['methods']}; assignment {first['posts_per_s']:.0f} posts/s (stored vectors)")
    console.print("targets: topics ARI >= 0.70, narratives purity >= 0.95 (time-aware run is the product setting)")
    console.print(f"[dim]embedder {services.embedder.id}; decided_by: {first['decided_by']}[/]")


@bench_app.command("narratives")
def bench_narratives(
    ctx: typer.Context,
    posts: Annotated[int, typer.Option(min=1, help="Synthetic posts to assign.")] = 20_000,
    batch: Annotated[int, typer.Option(help="Posts per ingest batch.")] = 1_000,
    workers: Annotated[int, typer.Option(min=1, max=8, help="Engines over one store taking batches in turn, as queue workers do (each behind the others' writes).")] = 1,
    distinct: Annotated[bool, typer.Option("--distinct", help="Every post a story of its own (random vector and words): a narrative and a topic per post, the most memory a post can cost.")] = False,
    memory_days: Annotated[float, typer.Option(help="narrative_memory_days of the engines (0: keep everything).")] = 0.0,
    spacing: Annotated[float, typer.Option(min=0.001, help="Seconds between generated posts: 30 is a desk's feed over weeks; 0.00864 is 10 M posts a day, "
                                           "where every post made in the last 72 hours is active (what each batch is compared with).")] = 30.0,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Narrative assignment throughput once vectors exist (near-duplicates, centroids, topics, storage writes).

    With --workers N the batches go to N engines over one on-disk store in turn: before each
    batch a worker's engine is brought up to the others' writes (caught up from their change
    entries), timed beside a whole load of the store at the end; and the memory a loaded engine
    holds per member."""
    import statistics
    import tempfile
    import tracemalloc

    import numpy as np

    from factbridge.backends.storage.sqlite import SQLiteStorage
    from factbridge.bench.synthetic_posts import synthetic_posts
    from factbridge.pipeline import narratives as narr
    from factbridge.pipeline.records import Narratives
    from factbridge.settings import Settings

    t0 = time.perf_counter()
    items, vectors = synthetic_posts(posts, spacing=spacing)
    if distinct:
        from factbridge.pipeline.prepare import prepare_post

        rng = np.random.default_rng(5)
        vocabulary = np.asarray([f"w{i}" for i in range(50_000)])  # (an array: a list is converted at every draw)
        vectors = rng.normal(size=vectors.shape).astype(np.float32)
        vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
        items = [prepare_post(p.model_copy(update={"text": " ".join(rng.choice(vocabulary, 20))})) for p in items]
    gen_s = time.perf_counter() - t0
    params = Settings(narrative_threshold=0.8, topic_threshold=0.6, narrative_memory_days=memory_days).narratives  # synthetic vectors: their own thresholds
    dim = int(vectors.shape[1])
    with tempfile.TemporaryDirectory(prefix="fb-bench-narratives-") as tmp:
        url = f"sqlite:///{Path(tmp) / 'narratives.sqlite'}"  # (on disk whatever the workers: the same writes to compare)
        stores = [SQLiteStorage(url) for _ in range(workers)]
        stores[0].migrate()
        current: list[float] = []  # seconds to bring a worker's engine up to the others' writes
        rates: list[float] = []  # each batch's posts/s
        most = 0  # the most members an engine held after a batch
        try:
            stores[0].upsert_posts("bench", items)
            elapsed = 0.0
            with progress_bar("assigning", len(items)) as advance:
                for k, start in enumerate(range(0, len(items), batch)):
                    storage = stores[k % workers]
                    t = time.perf_counter()
                    if workers > 1 and k >= workers:
                        narr.engine_for(storage, "bench", params, dim)
                        current.append(time.perf_counter() - t)
                    summary = narr.assign_posts(storage, "bench", items[start : start + batch], vectors[start : start + batch], params)
                    took = time.perf_counter() - t
                    elapsed += took
                    rates.append(len(items[start : start + batch]) / took)
                    engine = narr._ENGINES[storage]["bench"]
                    most = max(most, len(engine._post_ids))
                    advance(summary["assigned"])
            # the narratives a batch's posts were compared with at the end: those active within the semantic gap
            last_seen = engine._last_seen[: len(engine._order)]  # (the last batch's engine: --posts is at least 1)
            active = int(np.count_nonzero(last_seen >= last_seen.max() - params.semantic_max_gap_hours * 3600.0))
            book = Narratives(stores[0])
            narratives, topics = book.count("bench"), book.count_topics("bench")
            t = time.perf_counter()
            loaded = narr.NarrativeEngine(params, dim)
            loaded.load(stores[0], "bench")
            load_s = time.perf_counter() - t
            tracemalloc.start()
            again = narr.NarrativeEngine(params, dim)
            again.load(stores[0], "bench")
            held = tracemalloc.get_traced_memory()[0]
            tracemalloc.stop()
            members, engine_narratives = len(again._post_ids), len(again.narratives)
            del again, loaded
        finally:
            for storage in stores:
                storage.close()
    result = {
        "posts": len(items), "batch": batch, "workers": workers, "spacing_s": spacing, "assign_s": round(elapsed, 3), "posts_per_s": round(len(items) / elapsed, 1),
        # the rate at the end, where the batches are compared with the most active narratives (the median of the last tenth of them)
        "end_posts_per_s": round(statistics.median(rates[-max(1, len(rates) // 10) :]), 1), "active_narratives_at_end": active,
        "narratives": narratives, "topics": topics, "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
        "catch_up_p50_s": round(statistics.median(current), 4) if current else None, "catch_up_mean_s": round(statistics.fmean(current), 4) if current else None,
        "catch_up_max_s": round(max(current), 4) if current else None,
        "catch_ups": len(current), "load_s": round(load_s, 4), "memory_days": memory_days, "most_members_held": most,
        "members": members, "engine_narratives": engine_narratives, "engine_mb": round(held / 1e6, 1),
        "engine_bytes_per_member": round(held / max(members, 1)),
    }
    if as_json:
        _dump(result)
        return
    console.print(f"generated {len(items):,} posts with {dim}-d vectors in {gen_s:.1f} s (not timed)")
    console.print(f"assigned {len(items):,} posts in {elapsed:.2f} s: {len(items) / elapsed:,.0f} posts/s (batches of {batch}, {workers} worker(s), storage writes included)")
    console.print(f"at the end (the last tenth of the batches, median): {result['end_posts_per_s']:,.0f} posts/s, each batch compared with the "
                  f"{active:,} narratives active within {params.semantic_max_gap_hours:g} h (posts {spacing:g} s apart)")
    console.print(f"{narratives:,} narratives, {topics:,} topics; peak RSS {result['peak_rss_mb']:,} MB")
    if current:
        console.print(f"a worker's engine brought up to the others' {workers - 1} write(s) before its batch: p50 {statistics.median(current):.3f} s, "
                      f"mean {statistics.fmean(current):.3f} s, max {max(current):.3f} s ({len(current)} batches)")
    console.print(f"a whole load of the store at the end: {load_s:.3f} s")
    if memory_days:
        console.print(f"narrative_memory_days {memory_days:g}: an engine held at most {most:,} of the {len(items):,} members after a batch")
    console.print(f"a loaded engine holds {held / 1e6:,.1f} MB for {members:,} members and {engine_narratives:,} narratives: "
                  f"{result['engine_bytes_per_member']:,} B a member (tracemalloc)")


@bench_app.command("coordination")
def bench_coordination(
    ctx: typer.Context,
    rows: Annotated[int, typer.Option(help="Share records to generate.")] = 10_000_000,
    seed: int = 7,
) -> None:
    """Coordinated-sharing detection on a generated set shaped like the German election data."""
    from factbridge.bench.synthetic import generate_shares, planted_precision_recall
    from factbridge.pipeline.coordination import (
        detect_coordination,
        shares_from_frame,
    )

    services = _state(ctx).services()
    params = services.settings.coordination
    t0 = time.perf_counter()
    synthetic = generate_shares(rows, seed=seed)
    t1 = time.perf_counter()
    console.print(f"generated {len(synthetic.frame):,} share records ({len(synthetic.groups)} planted groups, {len(synthetic.planted_accounts)} accounts) in {t1 - t0:.1f} s (not timed)")
    table = shares_from_frame(synthetic.frame, "generated", params.object_types)
    t2 = time.perf_counter()
    result = detect_coordination(table, params)
    t3 = time.perf_counter()
    found = {a for n in result.networks for a in n.accounts}
    precision, recall = planted_precision_recall(synthetic.planted_accounts, found)
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    console.print(f"{result.shares:,} shares, {result.pairs:,} co-shares ({result.capped_shares:,} shares capped), {len(result.networks)} networks")
    console.print(f"time: table {t2 - t1:.1f} s + detection {t3 - t2:.1f} s = {t3 - t1:.1f} s; " + ", ".join(f"{k} {v:.1f}" for k, v in result.timings.items()))
    console.print(f"peak RSS {rss:,.0f} MB (generation included)")
    console.print(f"planted accounts: precision {precision:.3f}, recall {recall:.3f}")
    console.print(f"[dim]decided_by: {esc(result.decided_by)}[/]")
