"""YouTube comments from an export: YouTube Data API `commentThreads` responses (JSON, one
response or a list, or JSON Lines of responses or of threads) or a CSV in the
YouTube Data Tools layout (id, text, authorChannelId, likeCount, replyCount,
publishedAt, videoId...).

Options: `path`; `video_id` when the export does not name it. Reach: likes,
replies (comments); the commenter's channel becomes a pseudonym. Replies
included in a thread are posts too (raw `reply_to`). The cursor is the newest
publishedAt read.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

from factbridge.backends.connectors.cursors import TimeCursor
from factbridge.backends.connectors.files import post_from_mapping
from factbridge.errors import InputError
from factbridge.models import Post, Quarantined
from factbridge.text.dates import parse_date


def _comments(data: Any) -> Iterator[tuple[dict[str, Any], str | None]]:
    """(comment resource, parent comment id) from responses, threads or comments."""
    if isinstance(data, list):
        for value in data:
            yield from _comments(value)
        return
    if not isinstance(data, dict):
        return
    if isinstance(data.get("items"), list):
        yield from _comments(data["items"])
        return
    snippet = data.get("snippet") or {}
    if "topLevelComment" in snippet:  # a commentThread
        top = dict(snippet["topLevelComment"])
        top.setdefault("snippet", {}).setdefault("videoId", snippet.get("videoId"))
        top["snippet"].setdefault("totalReplyCount", snippet.get("totalReplyCount"))
        yield top, None
        for reply in (data.get("replies") or {}).get("comments", []):
            yield reply, top.get("id")
    elif "textOriginal" in snippet or "textDisplay" in snippet:
        yield data, snippet.get("parentId")


class YouTubeCommentsConnector:
    name = "youtube-comments"

    def __init__(self, path: str, video_id: str = "", pseudonymize: Callable[[str, str], str] | None = None) -> None:
        self.path, self.video_id = Path(path), video_id
        self.pseudonymize = pseudonymize or (lambda p, v: f"{p}:{v}")

    def _rows(self, source: str) -> Iterator[tuple[int | None, Mapping[str, Any] | Quarantined]]:
        text = self.path.read_text(encoding="utf-8-sig")
        if self.path.suffix.lower() == ".csv":
            reader = csv.DictReader(io.StringIO(text))
            for row in reader:
                yield reader.line_num, {
                    "id": row.get("id"), "text": row.get("text") or row.get("textOriginal"), "author": row.get("authorChannelId") or row.get("authorName"),
                    "created_at": row.get("publishedAt"), "likes": row.get("likeCount"), "comments": row.get("replyCount"),
                    "video": row.get("videoId") or self.video_id, "parent": row.get("isReplyTo") or None,
                }
            return
        try:
            documents: list[tuple[int | None, Any]] = [(None, json.loads(text))]
        except json.JSONDecodeError:
            documents = []
            for n, line in enumerate(text.splitlines(), start=1):
                if not line.strip():
                    continue
                try:
                    documents.append((n, json.loads(line)))
                except json.JSONDecodeError as exc:
                    yield n, Quarantined(source=source, line=n, reason=f"invalid JSON: {exc.msg}", raw=line[:2000])
        for lineno, data in documents:
            for comment, parent in _comments(data):
                s = comment.get("snippet") or {}
                yield lineno, {
                    "id": comment.get("id"), "text": s.get("textOriginal") or s.get("textDisplay"),
                    "author": (s.get("authorChannelId") or {}).get("value") if isinstance(s.get("authorChannelId"), dict) else s.get("authorChannelId"),
                    "created_at": s.get("publishedAt"), "likes": s.get("likeCount"), "comments": s.get("totalReplyCount"),
                    "video": s.get("videoId") or self.video_id, "parent": parent,
                }

    def fetch(self, cursor: str | None = None) -> tuple[list[Post | Quarantined], str | None]:
        source = str(self.path)
        if not self.path.is_file():
            raise InputError("no such file", source=source)
        items: list[Post | Quarantined] = []
        position = TimeCursor(cursor)
        try:
            rows = list(self._rows(source))
        except UnicodeDecodeError as exc:
            raise InputError(f"not UTF-8 text (byte {exc.start})", source=source) from exc
        for line, row in rows:
            if isinstance(row, Quarantined):
                items.append(row)
                continue
            try:
                created = parse_date(row.get("created_at"))
            except ValueError as exc:
                items.append(Quarantined(source=source, line=line, field="publishedAt", reason=str(exc), raw=json.dumps(row, ensure_ascii=False)[:2000]))
                continue
            stamp = created.isoformat() if created else None
            if position.seen(stamp, str(row.get("id") or "")):
                continue
            position.advance(stamp, str(row.get("id") or ""))
            raw: dict[str, Any] = {"video_id": row.get("video") or ""}
            if row.get("parent"):
                raw["reply_to"] = f"youtube:{row['parent']}"
            mapped = {"id": f"youtube:{row['id']}" if row.get("id") else None, "text": row.get("text"), "created_at": row.get("created_at"),
                      "author": self.pseudonymize("youtube", str(row["author"])) if row.get("author") else "",
                      "likes": row.get("likes"), "comments": row.get("comments"),
                      "urls": [f"https://www.youtube.com/watch?v={row['video']}"] if row.get("video") else None}
            try:
                post = post_from_mapping({k: v for k, v in mapped.items() if v is not None}, source, line or 0, "youtube")
            except InputError as exc:
                items.append(Quarantined(source=source, line=line, field=exc.field, reason=exc.reason, raw=json.dumps(row, ensure_ascii=False)[:2000]))
                continue
            items.append(post.model_copy(update={"raw": {**post.raw, **raw}}))
        return items, position.dump()
