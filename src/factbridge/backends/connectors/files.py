"""Posts from JSON Lines and CSV files.

Accepted fields (aliases in brackets): id [post_id, tweet_id], platform, author
[author_id, user, account], created_at [time, timestamp, date], text [content,
message, body], urls (list or space-separated), likes, shares [retweets,
reposts], comments [replies], views, followers, language [lang], or a nested
`engagement` object. Author identifiers are kept as given: pass pseudonyms.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from factbridge.errors import InputError
from factbridge.models import Engagement, Post, Quarantined
from factbridge.text.dates import parse_date

ALIASES: dict[str, tuple[str, ...]] = {
    "id": ("id", "post_id", "tweet_id", "status_id"),
    "platform": ("platform", "source_platform", "network"),
    "author": ("author", "author_id", "user", "account", "user_id"),
    "created_at": ("created_at", "time", "timestamp", "date", "published_at"),
    "text": ("text", "content", "message", "body", "full_text"),
    "urls": ("urls", "links", "url"),
    "language": ("language", "lang"),
}
ENGAGEMENT_ALIASES: dict[str, tuple[str, ...]] = {
    "likes": ("likes", "like_count", "favorite_count", "reactions"),
    "shares": ("shares", "share_count", "retweets", "retweet_count", "reposts"),
    "comments": ("comments", "comment_count", "replies", "reply_count"),
    "views": ("views", "view_count", "impressions"),
    "followers": ("followers", "follower_count", "audience"),
}

csv.field_size_limit(10 * 1024 * 1024)


def _pick(row: Mapping[str, Any], names: tuple[str, ...]) -> tuple[str | None, Any]:
    for name in names:
        if name in row and row[name] not in (None, ""):
            return name, row[name]
    return None, None


def _count(value: Any, field: str, source: str, line: int) -> int:
    if value in (None, ""):
        return 0
    try:
        number = int(float(str(value).replace(",", "").strip()))
    except ValueError as exc:
        raise InputError(f"not a count: {value!r}", source=source, line=line, field=field) from exc
    if number < 0:
        raise InputError(f"negative count: {value!r}", source=source, line=line, field=field)
    return number


def post_from_mapping(row: Mapping[str, Any], source: str, line: int, platform: str = "") -> Post:
    if not isinstance(row, Mapping):
        raise InputError("a post must be a JSON object", source=source, line=line)
    _, post_id = _pick(row, ALIASES["id"])
    if post_id is None:
        raise InputError("missing id", source=source, line=line, field="id")
    text_field, text = _pick(row, ALIASES["text"])
    if text is None or not str(text).strip():
        raise InputError("missing or empty text", source=source, line=line, field=text_field or "text")
    if not isinstance(text, str):
        raise InputError("text must be a string", source=source, line=line, field=text_field)
    date_field, date_value = _pick(row, ALIASES["created_at"])
    try:
        created = parse_date(date_value)
    except ValueError as exc:
        raise InputError(str(exc), source=source, line=line, field=date_field) from exc
    url_field, urls = _pick(row, ALIASES["urls"])
    if isinstance(urls, str):
        urls = urls.replace(",", " ").split()
    if urls is not None and not (isinstance(urls, list) and all(isinstance(u, str) for u in urls)):
        raise InputError("urls must be a list of strings", source=source, line=line, field=url_field)
    nested: Mapping[str, Any] = row["engagement"] if isinstance(row.get("engagement"), Mapping) else {}
    counts = {}
    for key, names in ENGAGEMENT_ALIASES.items():
        name, value = _pick({**row, **nested}, names)
        counts[key] = _count(value, name or key, source, line)
    _, platform_value = _pick(row, ALIASES["platform"])
    _, author = _pick(row, ALIASES["author"])
    _, language = _pick(row, ALIASES["language"])
    known = {n for names in (*ALIASES.values(), *ENGAGEMENT_ALIASES.values()) for n in names} | {"engagement"}
    try:
        return Post(
            id=str(post_id),
            platform=str(platform_value or platform or "unknown"),
            author=str(author or ""),
            created_at=created,
            text=text,
            urls=list(urls or []),
            engagement=Engagement(**counts),
            language=str(language).lower() if language else None,
            source=source,
            raw={k: v for k, v in row.items() if k not in known},
        )
    except ValidationError as exc:
        err = exc.errors()[0]
        raise InputError(err["msg"], source=source, line=line, field=".".join(map(str, err["loc"]))) from exc


def _quarantine(exc: InputError, raw: str) -> Quarantined:
    return Quarantined(kind="post", source=exc.source or "", line=exc.line, field=exc.field, reason=exc.reason, raw=raw[:2000])


def read_jsonl(path: str | Path, platform: str = "") -> Iterator[Post | Quarantined]:
    source = str(path)
    with open(path, encoding="utf-8-sig", errors="strict") as handle:
        for n, raw in enumerate(handle, start=1):
            if not raw.strip():
                continue
            try:
                data = json.loads(raw)
            except json.JSONDecodeError as exc:
                yield Quarantined(kind="post", source=source, line=n, reason=f"invalid JSON: {exc.msg} (column {exc.colno})", raw=raw[:2000])
                continue
            try:
                yield post_from_mapping(data, source, n, platform)
            except InputError as exc:
                yield _quarantine(exc, raw)


def read_csv(path: str | Path, platform: str = "", delimiter: str = ",") -> Iterator[Post | Quarantined]:
    source = str(path)
    text = Path(path).read_text(encoding="utf-8-sig")
    reader = csv.DictReader(io.StringIO(text), delimiter=delimiter)
    for row in reader:
        line = reader.line_num
        if None in row:
            yield Quarantined(kind="post", source=source, line=line, reason=f"{len(row[None])} more cells than header columns", raw=json.dumps(row, ensure_ascii=False, default=str)[:2000])
            continue
        try:
            yield post_from_mapping(row, source, line, platform)
        except InputError as exc:
            yield _quarantine(exc, json.dumps(row, ensure_ascii=False))


def read_posts(path: str | Path, platform: str = "") -> Iterator[Post | Quarantined]:
    path = Path(path)
    if not path.is_file():
        raise InputError("no such file", source=str(path))
    try:
        if path.suffix.lower() in {".csv", ".tsv"}:
            yield from read_csv(path, platform, "\t" if path.suffix.lower() == ".tsv" else ",")
        else:
            yield from read_jsonl(path, platform)
    except UnicodeDecodeError as exc:
        raise InputError(f"not UTF-8 text (byte {exc.start})", source=str(path)) from exc


class JSONLConnector:
    name = "jsonl"

    def __init__(self, path: str | Path, platform: str = "") -> None:
        self.path = Path(path)
        self.platform = platform

    def fetch(self, cursor: str | None = None) -> tuple[list[Post | Quarantined], str | None]:
        return list(read_jsonl(self.path, self.platform)), None


class CSVConnector(JSONLConnector):
    name = "csv"

    def fetch(self, cursor: str | None = None) -> tuple[list[Post | Quarantined], str | None]:
        return list(read_csv(self.path, self.platform)), None
