"""Narrative grouping measured on PHEME: nine news events, source tweets only.

The loader turns each tweet into a `Post` (text HTML-unescaped, author replaced
by a pseudonym, time kept: stories are local in time). The event name is the
label; the grouping never sees it. Purity and the adjusted Rand index compare
each level (narratives, topics) with the events.
"""

from __future__ import annotations

import hashlib
import html
import json
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from factbridge.errors import InputError
from factbridge.models import Engagement, Post
from factbridge.text.dates import parse_date


def pseudonym(platform: str, account: str) -> str:
    """A stable pseudonymous account id: the same account always maps to the same id."""
    return f"{platform}:{hashlib.sha256(f'{platform}:{account}'.encode()).hexdigest()[:16]}"


def load_pheme(folder: str | Path) -> tuple[list[Post], list[str]]:
    """Posts and their event labels, in file order. Files: <event>-all-rnr-threads.*.json."""
    folder = Path(folder)
    files = sorted(folder.glob("*-all-rnr-threads.*.json"))
    if not files:
        raise InputError("no PHEME files (<event>-all-rnr-threads.*.json) found", source=str(folder))
    posts: list[Post] = []
    events: list[str] = []
    seen: set[str] = set()
    for path in files:
        event = path.name.split("-all-rnr-threads")[0]
        try:
            tweets = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as exc:
            raise InputError(f"not JSON: {exc.msg}", source=str(path), line=exc.lineno) from exc
        if not isinstance(tweets, list):
            raise InputError("expected a JSON list of tweets", source=str(path))
        for n, tweet in enumerate(tweets, start=1):
            for key in ("id_str", "text", "created_at"):
                if not tweet.get(key):
                    raise InputError("missing value", source=str(path), line=n, field=key)
            if tweet["id_str"] in seen:
                continue
            seen.add(tweet["id_str"])
            try:
                created = parse_date(tweet["created_at"])
            except ValueError as exc:
                raise InputError(str(exc), source=str(path), line=n, field="created_at") from exc
            user = tweet.get("user") or {}
            urls = [u.get("expanded_url") or u.get("url") for u in (tweet.get("entities") or {}).get("urls", [])]
            posts.append(
                Post(
                    id=f"pheme:{tweet['id_str']}",
                    platform="twitter",
                    author=pseudonym("twitter", str(user.get("id_str", ""))),
                    created_at=created,
                    text=html.unescape(tweet["text"]),
                    urls=[u for u in urls if u],
                    language=tweet.get("lang") or None,
                    engagement=Engagement(shares=int(tweet.get("retweet_count") or 0), likes=int(tweet.get("favorite_count") or 0)),
                    source=path.name,
                )
            )
            events.append(event)
    return posts, events


def purity(labels: Sequence[str], groups: Sequence[str]) -> float:
    """Share of items whose group's majority label is their own label."""
    by_group: dict[str, Counter[str]] = {}
    for label, group in zip(labels, groups, strict=True):
        by_group.setdefault(group, Counter())[label] += 1
    return sum(c.most_common(1)[0][1] for c in by_group.values()) / max(1, len(labels))


def adjusted_rand_index(labels: Sequence[str], groups: Sequence[str]) -> float:
    """Hubert & Arabie's ARI from the contingency table (same as scikit-learn's)."""
    _, li = np.unique(np.asarray(labels, dtype=object).astype(str), return_inverse=True)
    _, gi = np.unique(np.asarray(groups, dtype=object).astype(str), return_inverse=True)
    table = np.zeros((li.max() + 1, gi.max() + 1), dtype=np.int64)
    np.add.at(table, (li, gi), 1)

    def pairs(x: np.ndarray) -> float:
        return float((x * (x - 1) // 2).sum())

    n = len(labels)
    index = pairs(table)
    rows, cols = pairs(table.sum(axis=1)), pairs(table.sum(axis=0))
    total = n * (n - 1) / 2
    expected = rows * cols / total if total else 0.0
    maximum = (rows + cols) / 2
    if maximum == expected:
        return 1.0
    return (index - expected) / (maximum - expected)


def evaluate_grouping(
    posts: Sequence[Post],
    events: Sequence[str],
    vectors: np.ndarray,
    params: Any,
    batch_size: int = 500,
    progress: Any = None,
    keep_assignment: bool = False,
) -> dict[str, Any]:
    """Stream the posts (by time, in batches) through the narrative stage on an in-memory store
    and score both levels against the events. Returns figures per level and the timings."""
    import time

    from factbridge.backends.storage.sqlite import SQLiteStorage
    from factbridge.pipeline.narratives import assign_posts
    from factbridge.pipeline.narratives import decided_by as narrative_decided_by
    from factbridge.pipeline.records import NarrativeMembers, Narratives

    org = "eval"
    storage = SQLiteStorage("sqlite:///:memory:")
    storage.migrate()
    try:
        storage.upsert_posts(org, list(posts))
        order = sorted(range(len(posts)), key=lambda i: (posts[i].created_at is None, posts[i].created_at, posts[i].id))
        t0 = time.perf_counter()
        for start in range(0, len(order), batch_size):
            chunk = order[start : start + batch_size]
            assign_posts(storage, org, [posts[i] for i in chunk], vectors[chunk], params)
            if progress:
                progress(len(chunk))
        elapsed = time.perf_counter() - t0
        # what the store holds (an engine with `memory_days` keeps only its last days)
        members = NarrativeMembers(storage).all(org)
        narrative_of = {m.post_id: m.narrative_id for m in members}
        narratives = [narrative_of[p.id] for p in posts]
        topic_of = {nid: n.topic_id for nid, n in Narratives(storage).get(org, sorted(set(narratives))).items()}
        topics = [topic_of[n] for n in narratives]
        methods = Counter(m.method for m in members)
    finally:
        storage.close()
    levels = {}
    for name, groups in (("narratives", narratives), ("topics", topics)):
        levels[name] = {
            "groups": len(set(groups)),
            "purity": purity(events, groups),
            "ari": adjusted_rand_index(events, groups),
        }
    return {
        "posts": len(posts), "events": len(set(events)), "levels": levels, "methods": dict(methods),
        "seconds": elapsed, "posts_per_s": len(posts) / elapsed if elapsed else 0.0, "decided_by": narrative_decided_by(params),
        **({"narrative_of": dict(zip((p.id for p in posts), narratives, strict=True))} if keep_assignment else {}),
    }
