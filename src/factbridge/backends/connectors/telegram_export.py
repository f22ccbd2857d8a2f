"""Telegram channel exports made with Telegram Desktop (Export chat history -> JSON: result.json).

Options: `path` (result.json, or the export folder). Each message of type
"message" with text becomes a post: id `telegram:<channel id>:<message id>`,
the sender (`from_id`) and the origin of a forward (`forwarded_from`) as
pseudonyms, reactions summed as likes, views and forwards when the export has
them, links from the text and its entities. The cursor is the last message id
read, so a newer export of the same channel only brings the new messages.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from factbridge.errors import InputError
from factbridge.models import Engagement, Post, Quarantined
from factbridge.text.dates import parse_date


def _flatten(text: Any) -> tuple[str, list[str]]:
    """Telegram writes text as a string or a list of strings and entity objects."""
    if isinstance(text, str):
        return text, []
    parts, urls = [], []
    for part in text or []:
        if isinstance(part, str):
            parts.append(part)
        elif isinstance(part, dict):
            parts.append(str(part.get("text", "")))
            if part.get("type") == "link":
                urls.append(str(part.get("text", "")))
            elif part.get("type") == "text_link" and part.get("href"):
                urls.append(str(part["href"]))
    return "".join(parts), urls


class TelegramExportConnector:
    name = "telegram-export"

    def __init__(self, path: str, pseudonymize: Callable[[str, str], str] | None = None) -> None:
        self.path = Path(path)
        if self.path.is_dir():
            self.path = self.path / "result.json"
        self.pseudonymize = pseudonymize or (lambda platform, value: f"{platform}:{value}")

    def fetch(self, cursor: str | None = None) -> tuple[list[Post | Quarantined], str | None]:
        source = str(self.path)
        if not self.path.is_file():
            raise InputError("no such file", source=source)
        try:
            data = json.loads(self.path.read_text(encoding="utf-8-sig"))
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise InputError(f"not a Telegram Desktop JSON export: {exc}", source=source) from exc
        if not isinstance(data, dict) or not isinstance(data.get("messages"), list):
            raise InputError("not a Telegram Desktop export (no 'messages' list)", source=source, field="messages")
        channel = str(data.get("id") or data.get("name") or self.path.parent.name)
        after = int(cursor) if cursor and cursor.isdigit() else 0
        items: list[Post | Quarantined] = []
        last = after
        for n, message in enumerate(data["messages"], start=1):
            if not isinstance(message, dict) or message.get("type") != "message":
                continue
            mid = message.get("id")
            if not isinstance(mid, int):
                items.append(Quarantined(source=source, line=n, field="id", reason="message without an integer id", raw=json.dumps(message, ensure_ascii=False)[:1000]))
                continue
            if mid <= after:
                continue
            last = max(last, mid)
            text, urls = _flatten(message.get("text"))
            if not text.strip():
                continue  # photos, stickers and service messages without text
            try:
                created = datetime.fromtimestamp(int(message["date_unixtime"]), UTC) if message.get("date_unixtime") else parse_date(message.get("date"))
            except (ValueError, TypeError) as exc:
                items.append(Quarantined(source=source, line=n, field="date", reason=str(exc), raw=json.dumps(message, ensure_ascii=False)[:1000]))
                continue
            reactions = sum(int(r.get("count", 0)) for r in message.get("reactions") or [] if isinstance(r, dict))
            sender = str(message.get("from_id") or f"channel{channel}")
            raw: dict[str, Any] = {"channel": channel, "message_id": mid}
            if message.get("forwarded_from"):
                raw["forwarded_from"] = self.pseudonymize("telegram", str(message["forwarded_from"]))
            if message.get("reply_to_message_id"):
                raw["reply_to"] = f"telegram:{channel}:{message['reply_to_message_id']}"
            items.append(Post(
                id=f"telegram:{channel}:{mid}", platform="telegram", author=self.pseudonymize("telegram", sender), created_at=created,
                text=text, urls=list(dict.fromkeys(urls)), source=source, raw=raw,
                engagement=Engagement(likes=reactions, shares=int(message.get("forwards") or 0), views=int(message.get("views") or 0)),
            ))
        return items, str(last)
