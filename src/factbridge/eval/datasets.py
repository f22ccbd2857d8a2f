"""Loaders for claim-retrieval evaluation sets.

* CheckThat! 2022 task 2A: queries TSV (iclaim_id, iclaim), qrels "qid 0 vclaim_id 1";
* CheckThat! 2020 task 2: tweets.queries.tsv (id, tweet_content), same qrels;
* our own JSONL: {"id", "text", "language", "gold": [fact-check ids]} (qrels inline).

Tweets in these sets end with the embed signature "— Name (@handle) Month D, YYYY":
that is metadata (author, date), so it is moved out of the text.
"""

from __future__ import annotations

import csv
import json
import re
from collections import defaultdict
from pathlib import Path

from factbridge.errors import InputError
from factbridge.models import Post
from factbridge.text.dates import parse_date_lenient

csv.field_size_limit(10 * 1024 * 1024)

_SIGNATURE = re.compile(
    r"\s*[\u2014\u2013]\s*(?P<name>[^\n]*?)\s*\(@(?P<handle>\w+)\)\s*(?P<date>[A-Z][a-z]+ \d{1,2}, \d{4})\s*\"?\s*$"
)


def split_tweet_signature(text: str) -> tuple[str, str, str | None]:
    """(text, author handle, date). The date leaves the text; the author's name stays,
    since claims often name who said them ("Trump tweeted that ...")."""
    match = _SIGNATURE.search(text)
    if not match:
        return text.strip().strip('"'), "", None
    body = text[: match.start()].strip().strip('"')
    name = match.group("name").strip()
    return (f"{body} — {name}" if name else body), match.group("handle"), match.group("date")


def load_queries(path: str | Path) -> list[Post]:
    path = Path(path)
    if not path.exists():
        raise InputError("no such file", source=str(path))
    posts: list[Post] = []
    if path.suffix == ".jsonl":
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
                raw = {"gold": row.get("gold", [])} | {k: str(row[k]) for k in ("split", "group") if row.get(k)}
                posts.append(Post(id=str(row["id"]), text=row["text"], language=row.get("language"), raw=raw))
            except (json.JSONDecodeError, KeyError) as exc:
                raise InputError(f"bad query row: {exc}", source=str(path), line=n) from exc
        return posts
    with path.open(encoding="utf-8", newline="") as handle:
        reader = csv.reader(handle, delimiter="\t")
        next(reader, None)
        for n, row in enumerate(reader, start=2):
            if len(row) < 2:
                raise InputError("expected id<TAB>text", source=str(path), line=n)
            text, handle_name, date = split_tweet_signature(row[1])
            posts.append(Post(id=row[0].strip(), platform="twitter", author=handle_name, text=text, created_at=parse_date_lenient(date)))
    return posts


def load_qrels(path: str | Path | None, queries: list[Post] | None = None) -> dict[str, set[str]]:
    qrels: dict[str, set[str]] = defaultdict(set)
    if path is None:
        for q in queries or []:
            for gold in q.raw.get("gold", []):
                qrels[q.id].add(str(gold))
        return dict(qrels)
    for n, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), start=1):
        parts = line.split()
        if not parts:
            continue
        if len(parts) != 4:
            raise InputError("expected 'query 0 claim relevance'", source=str(path), line=n)
        if parts[3] != "0":
            qrels[parts[0]].add(parts[2])
    return dict(qrels)
