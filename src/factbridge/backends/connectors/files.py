"""Posts from JSON Lines and CSV files.

Accepted fields (aliases in brackets): id [post_id, tweet_id], platform, author
[author_id, user, account], created_at [time, timestamp, date], text [content,
message, body], urls (list or space-separated), likes, shares [retweets,
reposts], comments [replies], views, followers, language [lang], or a nested
`engagement` object, images [image, media, image_urls] (list, or space-separated:
file paths relative to the posts file, or URLs). A post with images may have no
text. Author identifiers are kept as given: pass pseudonyms.

Files are read as a stream with bounded rows (`reading.InputLimits`, the
`ingest_max_*` settings); every row that cannot be used becomes a `Quarantined`
row naming file, line, field and reason, and the rest of the file goes in.
Ids are strings or integers only; a second row with an id already read in the
file is quarantined, the first one kept.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from factbridge.backends.connectors.reading import (
    DEFAULT_LIMITS,
    InputLimits,
    RowError,
    check_value,
    iter_csv_records,
    iter_json_lines,
    open_binary,
)
from factbridge.errors import InputError
from factbridge.models import Engagement, ImageRecord, Post, Quarantined
from factbridge.text.dates import parse_date

ALIASES: dict[str, tuple[str, ...]] = {
    "id": ("id", "post_id", "tweet_id", "status_id"),
    "platform": ("platform", "source_platform", "network"),
    "author": ("author", "author_id", "user", "account", "user_id"),
    "created_at": ("created_at", "time", "timestamp", "date", "published_at"),
    "text": ("text", "content", "message", "body", "full_text"),
    "urls": ("urls", "links", "url"),
    "language": ("language", "lang"),
    "images": ("images", "image", "media", "image_urls"),
}
ENGAGEMENT_ALIASES: dict[str, tuple[str, ...]] = {
    "likes": ("likes", "like_count", "favorite_count", "reactions"),
    "shares": ("shares", "share_count", "retweets", "retweet_count", "reposts"),
    "comments": ("comments", "comment_count", "replies", "reply_count"),
    "views": ("views", "view_count", "impressions"),
    "followers": ("followers", "follower_count", "audience"),
}

MAX_ID_CHARS = 1000
MAX_COUNT = 10**15  # more than any platform's audience; larger is a corrupt cell


def _pick(row: Mapping[str, Any], names: tuple[str, ...]) -> tuple[str | None, Any]:
    for name in names:
        if name in row and row[name] not in (None, ""):
            return name, row[name]
    return None, None


def _count(value: Any, field: str, source: str, line: int) -> int:
    if value in (None, ""):
        return 0
    if isinstance(value, bool | Mapping | list):
        raise InputError(f"not a count: {str(value)[:50]!r}", source=source, line=line, field=field)
    try:
        number = int(float(str(value).replace(",", "").strip()))
    except (ValueError, OverflowError) as exc:
        raise InputError(f"not a count: {str(value)[:50]!r}", source=source, line=line, field=field) from exc
    if number > MAX_COUNT:
        raise InputError(f"count out of range: {str(value)[:50]!r}", source=source, line=line, field=field)
    if number < 0:
        raise InputError(f"negative count: {value!r}", source=source, line=line, field=field)
    return number


def post_id_text(value: Any, source: str, line: int | None, field: str, max_chars: int = MAX_ID_CHARS) -> str:
    """An id as text. Only strings and integers are ids: an object, a list, a number with a
    fraction or a boolean would be stringified into something nobody wrote."""
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise InputError(f"an id must be a string or an integer, not {_json_kind(value)}", source=source, line=line, field=field)
    text = str(value).strip()
    if not text:
        raise InputError("empty id", source=source, line=line, field=field)
    if len(text) > max_chars:
        raise InputError(f"id longer than {max_chars} characters", source=source, line=line, field=field)
    return text


def _json_kind(value: Any) -> str:
    if isinstance(value, Mapping):
        return "an object"
    if isinstance(value, list | tuple):
        return "a list"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, float):
        return "a number with a fraction"
    return type(value).__name__


def post_from_mapping(row: Mapping[str, Any], source: str, line: int, platform: str = "", limits: InputLimits = DEFAULT_LIMITS) -> Post:
    if not isinstance(row, Mapping):
        raise InputError("a post must be a JSON object", source=source, line=line)
    found = check_value(row, limits)
    if found is not None:
        raise InputError(found[1], source=source, line=line, field=found[0])
    id_field, raw_id = _pick(row, ALIASES["id"])
    if raw_id is None:
        raise InputError("missing id", source=source, line=line, field="id")
    post_id = post_id_text(raw_id, source, line, id_field or "id")
    text_field, text = _pick(row, ALIASES["text"])
    images_field, images = _pick(row, ALIASES["images"])
    images = images.split() if isinstance(images, str) else images
    if images is not None and not (isinstance(images, list) and all(isinstance(i, str) and i.strip() for i in images)):
        raise InputError("images must be a list of file paths or URLs", source=source, line=line, field=images_field)
    if (text is None or not str(text).strip()) and images:
        text = ""  # an image-only post: its text is what OCR reads from the images
    elif text is None or not str(text).strip():
        raise InputError("missing or empty text (and no images)", source=source, line=line, field=text_field or "text")
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
            id=post_id,
            platform=str(platform_value or platform or "unknown"),
            author=str(author or ""),
            created_at=created,
            text=text,
            urls=list(urls or []),
            engagement=Engagement(**counts),
            language=str(language).lower() if language else None,
            source=source,
            raw={k: v for k, v in row.items() if k not in known},
            images=[ImageRecord(source=i.strip()) for i in images or []],
        )
    except ValidationError as exc:
        err = exc.errors()[0]
        raise InputError(err["msg"], source=source, line=line, field=".".join(map(str, err["loc"]))) from exc


def _quarantine(exc: InputError, raw: str) -> Quarantined:
    return Quarantined(kind="post", source=exc.source or "", line=exc.line, field=exc.field, reason=exc.reason, raw=raw[:2000])


def _row_error(source: str, exc: RowError, raw: str = "") -> Quarantined:
    return Quarantined(kind="post", source=source, line=exc.line, field=exc.field, reason=exc.reason, raw=raw[:2000])


Located = tuple[int | None, Post | Quarantined]


def _jsonl_located(path: str | Path, platform: str, limits: InputLimits) -> Iterator[Located]:
    source = str(path)
    with open_binary(path) as handle:
        for n, value, raw in iter_json_lines(handle, limits):
            if isinstance(value, RowError):
                yield value.line, _row_error(source, value, raw)
                continue
            try:
                yield n, post_from_mapping(value, source, n, platform, limits)
            except InputError as exc:
                yield n, _quarantine(exc, raw)


def _csv_located(path: str | Path, platform: str, delimiter: str, limits: InputLimits) -> Iterator[Located]:
    source = str(path)
    header: list[str] | None = None
    with open_binary(path) as handle:
        for record in iter_csv_records(handle, limits, delimiter):
            if isinstance(record, RowError):
                yield record.line, _row_error(source, record)
                continue
            if header is None:
                header = [c.strip() for c in record.cells]
                continue
            if len(record.cells) > len(header):
                reason = f"{len(record.cells) - len(header)} more cells than header columns"
                yield record.line, Quarantined(kind="post", source=source, line=record.line, reason=reason, raw=record.raw[:2000])
                continue
            row: dict[str, Any] = dict(zip(header, record.cells, strict=False))
            try:
                yield record.line, post_from_mapping(row, source, record.line, platform, limits)
            except InputError as exc:
                yield record.line, _quarantine(exc, record.raw)


def read_jsonl(path: str | Path, platform: str = "", limits: InputLimits = DEFAULT_LIMITS) -> Iterator[Post | Quarantined]:
    for _, item in _jsonl_located(path, platform, limits):
        yield item


def read_csv(path: str | Path, platform: str = "", delimiter: str = ",", limits: InputLimits = DEFAULT_LIMITS) -> Iterator[Post | Quarantined]:
    for _, item in _csv_located(path, platform, delimiter, limits):
        yield item


def connector_for(path: str | Path) -> str:
    """The file connector for a file name: csv for .csv and .tsv, jsonl for the rest."""
    return "csv" if Path(path).suffix.lower() in {".csv", ".tsv"} else "jsonl"


def read_posts(
    path: str | Path, platform: str = "", limits: InputLimits = DEFAULT_LIMITS, fmt: str | None = None,
) -> Iterator[Post | Quarantined]:
    """Posts and quarantined rows of a JSONL, CSV or TSV file (`fmt` "jsonl" or "csv"; by default
    from the file name), read as a stream. A row whose id was already read is quarantined (the
    first one stays): never a silent overwrite."""
    path = Path(path)
    if not path.is_file():
        raise InputError("no such file", source=str(path))
    if (fmt or connector_for(path)) == "csv":
        located = _csv_located(path, platform, "\t" if path.suffix.lower() == ".tsv" else ",", limits)
    else:
        located = _jsonl_located(path, platform, limits)
    first_line: dict[str, int | None] = {}
    for line, item in located:
        if isinstance(item, Post):
            if item.id in first_line:
                reason = f"duplicate id '{item.id}' in the same file (first on line {first_line[item.id]})"
                yield Quarantined(kind="post", source=str(path), line=line, field="id", reason=reason, raw=item.text[:500])
                continue
            first_line[item.id] = line
        yield item


class JSONLConnector:
    """Posts from a JSON Lines file (`factbridge ingest --connector jsonl FILE`). Files are read
    whole in one fetch: the next cursor is always None."""

    name = "jsonl"

    def __init__(self, path: str | Path, platform: str = "", limits: InputLimits = DEFAULT_LIMITS) -> None:
        self.path = Path(path)
        self.platform = platform
        self.limits = limits

    def fetch(self, cursor: str | None = None) -> tuple[list[Post | Quarantined], str | None]:
        return list(read_posts(self.path, self.platform, self.limits, fmt=self.name)), None


class CSVConnector(JSONLConnector):
    """Posts from a CSV file, or TSV by its .tsv name (`factbridge ingest --connector csv FILE`)."""

    name = "csv"
