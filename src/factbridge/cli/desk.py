"""Desk measurements: do narratives join one story told in several languages?"""

from __future__ import annotations

import json
import sys
from collections import Counter, defaultdict
from dataclasses import replace
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from factbridge.cli.app import _state, eval_app
from factbridge.console import console, progress_bar
from factbridge.errors import InputError


def crosslingual_join(posts: list[Any], groups: dict[str, str], narrative_of: dict[str, Any]) -> dict[str, float]:
    """Per story (group): the share of its posts in its largest narrative, and whether that
    narrative holds two or more / all of its languages."""
    members: dict[str, list[Any]] = defaultdict(list)
    for p in posts:
        members[groups[p.id]].append(p)
    shares, two, all_ = [], 0, 0
    for story in members.values():
        biggest, count = Counter(narrative_of[p.id] for p in story).most_common(1)[0]
        shares.append(count / len(story))
        langs = {p.language for p in story if narrative_of[p.id] == biggest}
        two += len(langs) >= 2
        all_ += len(langs) == len({p.language for p in story})
    n = len(members) or 1
    return {"stories": len(members), "largest_share": sum(shares) / n, "joined_2plus_languages": two / n, "joined_all_languages": all_ / n}


@eval_app.command("narratives-crosslingual")
def eval_narratives_crosslingual(
    ctx: typer.Context,
    posts_file: Annotated[Path, typer.Option("--posts", help="JSONL with id, group (the story), language, text, split (tune/report).")] =
    Path("tests/fixtures/crosslingual_blind/posts.jsonl"),
    split: Annotated[str, typer.Option(help="tune, report or all.")] = "report",
    crosslingual: Annotated[str, typer.Option(help="Comma-separated other-language join thresholds to compare (empty: the calibrated one).")] = "",
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Group one story's en/vi/km/fr posts with the narratives stage: purity and ARI against the
    stories, and how many stories end up in one narrative across languages."""
    from factbridge.cli.narratives import narrative_vectors
    from factbridge.eval.narratives import evaluate_grouping
    from factbridge.models import Post
    from factbridge.pipeline.prepare import prepare_post

    rows = [json.loads(line) for line in posts_file.read_text(encoding="utf-8").splitlines() if line.strip()]
    rows = [r for r in rows if split == "all" or r.get("split") == split]
    if not rows:
        raise InputError(f"{posts_file}: no posts in split '{split}'", field="split")
    services = _state(ctx).services()
    posts = [prepare_post(Post(id=r["id"], text=r["text"], language=r.get("language")), services.languages) for r in rows]
    groups = {r["id"]: r["group"] for r in rows}
    vectors, base = narrative_vectors(services, posts, "embedding posts (cached)")
    values = [float(x) for x in crosslingual.split(",") if x.strip()] or [base.crosslingual]
    results: dict[str, dict[str, Any]] = {}
    for value in values:
        params = replace(base, crosslingual_threshold=value)
        with progress_bar(f"grouping (other language: cosine>={value:g})", len(posts)) as advance:
            report = evaluate_grouping(posts, [groups[p.id] for p in posts], vectors, params, progress=advance, keep_assignment=True)
        joined = crosslingual_join(posts, groups, report.pop("narrative_of"))
        results[f"{value:g}"] = {"narratives": report["levels"]["narratives"], **joined, "methods": report["methods"], "decided_by": report["decided_by"]}
    if as_json:
        sys.stdout.write(json.dumps(results, ensure_ascii=False, indent=2) + "\n")
        return
    table = Table(title=f"{posts_file.name} ({split}): {len(posts)} posts, {len(set(groups.values()))} stories")
    for col in ("other-language threshold", "narratives", "purity", "ARI", "largest share", "joined 2+ langs", "joined all"):
        table.add_column(col, justify="right")
    for label, r in results.items():
        n = r["narratives"]
        table.add_row(label, str(n["groups"]), f"{n['purity']:.3f}", f"{n['ari']:.3f}", f"{r['largest_share']:.3f}",
                      f"{r['joined_2plus_languages']:.3f}", f"{r['joined_all_languages']:.3f}")
    console.print(table)
    console.print(f"[dim]{next(iter(results.values()))['decided_by']}[/]")
