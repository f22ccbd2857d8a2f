"""Facebook and Instagram posts exported from Meta Content Library (CSV).

Options: `path`; `platform` (facebook, instagram; default: guessed from the
columns). Content Library names nested fields with dots
(`post_owner.id`, `statistics.reaction_count`, `statistics.share_count`,
`statistics.comment_count`, `statistics.views`, `statistics.like_count` on
Instagram, `link_attachment.link`); flattened names with '_' are read too.
Reach: reactions/likes, shares, comments, views; the owner becomes a
pseudonym. The cursor is the newest creation time read: a later export only
brings what is newer (rows of that same second again: ingest ignores repeats).
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from factbridge.backends.connectors.cursors import TimeCursor
from factbridge.backends.connectors.files import post_from_mapping
from factbridge.errors import InputError
from factbridge.models import Post, Quarantined
from factbridge.text.dates import parse_date

FIELDS: dict[str, tuple[str, ...]] = {
    "id": ("id", "post_id"),
    "text": ("text", "caption", "message", "description"),
    "created_at": ("creation_time", "created_time", "creation_date"),
    "owner": ("post_owner.id", "post_owner_id", "owner.id", "creator.id", "post_owner.username"),
    "likes": ("statistics.reaction_count", "statistics.like_count", "reaction_count", "like_count", "statistics_reaction_count", "statistics_like_count"),
    "shares": ("statistics.share_count", "share_count", "statistics_share_count"),
    "comments": ("statistics.comment_count", "comment_count", "statistics_comment_count"),
    "views": ("statistics.views", "statistics.view_count", "views", "view_count", "statistics_views"),
    "followers": ("post_owner.followers_count", "post_owner.page_size", "followers_count"),
    "link": ("link_attachment.link", "link_attachment_link", "link", "url"),
    "language": ("lang", "language"),
}


def _pick(row: Mapping[str, Any], names: tuple[str, ...]) -> Any:
    return next((row[n] for n in names if row.get(n) not in (None, "")), None)


def _column(row: Mapping[str, Any], key: str) -> str:
    """The export's own column name for a field (what a quarantine record names)."""
    names = FIELDS.get({"created_at": "created_at", "author": "owner", "urls": "link"}.get(key, key), ())
    return next((n for n in names if row.get(n) not in (None, "")), names[0] if names else key)


class MetaContentLibraryConnector:
    name = "meta-content-library"

    def __init__(self, path: str, platform: str = "", pseudonymize: Callable[[str, str], str] | None = None) -> None:
        if platform and platform not in {"facebook", "instagram"}:
            raise ValueError("platform must be facebook or instagram")
        self.path, self.platform = Path(path), platform
        self.pseudonymize = pseudonymize or (lambda p, v: f"{p}:{v}")

    def fetch(self, cursor: str | None = None) -> tuple[list[Post | Quarantined], str | None]:
        source = str(self.path)
        if not self.path.is_file():
            raise InputError("no such file", source=source)
        try:
            reader = csv.DictReader(io.StringIO(self.path.read_text(encoding="utf-8-sig")))
        except UnicodeDecodeError as exc:
            raise InputError(f"not UTF-8 text (byte {exc.start})", source=source) from exc
        columns = set(reader.fieldnames or [])
        if not columns & set(FIELDS["id"]) or not columns & set(FIELDS["text"]):
            raise InputError("not a Content Library export: needs an id and a text column", source=source, line=1)
        platform = self.platform or ("instagram" if columns & {"statistics.like_count", "like_count", "caption"} else "facebook")
        items: list[Post | Quarantined] = []
        position = TimeCursor(cursor)
        for row in reader:
            line = reader.line_num
            if None in row:
                items.append(Quarantined(source=source, line=line, reason="more cells than header columns", raw=json.dumps(row, ensure_ascii=False, default=str)[:2000]))
                continue
            created_raw = _pick(row, FIELDS["created_at"])
            try:
                created = parse_date(created_raw)
            except ValueError as exc:
                items.append(Quarantined(source=source, line=line, field="creation_time", reason=str(exc), raw=json.dumps(row, ensure_ascii=False)[:2000]))
                continue
            stamp = created.isoformat() if created else None
            row_id = str(_pick(row, FIELDS["id"]) or "")
            if position.seen(stamp, row_id):
                continue
            position.advance(stamp, row_id)
            owner = _pick(row, FIELDS["owner"])
            link = _pick(row, FIELDS["link"])
            mapped = {
                "id": f"{platform}:{_pick(row, FIELDS['id'])}" if _pick(row, FIELDS["id"]) else None,
                "platform": platform, "author": self.pseudonymize(platform, str(owner)) if owner else "",
                "created_at": created_raw, "text": _pick(row, FIELDS["text"]), "urls": [link] if link else None,
                "likes": _pick(row, FIELDS["likes"]), "shares": _pick(row, FIELDS["shares"]), "comments": _pick(row, FIELDS["comments"]),
                "views": _pick(row, FIELDS["views"]), "followers": _pick(row, FIELDS["followers"]), "language": _pick(row, FIELDS["language"]),
            }
            try:
                items.append(post_from_mapping({k: v for k, v in mapped.items() if v is not None}, source, line, platform))
            except InputError as exc:
                items.append(Quarantined(source=source, line=line, field=_column(row, exc.field or ""), reason=exc.reason, raw=json.dumps(row, ensure_ascii=False)[:2000]))
        return items, position.dump()
