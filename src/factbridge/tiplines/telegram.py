"""Telegram tipline: Bot API long polling through python-telegram-bot (no public address needed).

`api_url` is the Bot API base URL (default Telegram's; tests and the demo point it at
`factbridge.testing.botapi`). The library is driven from one private event loop so
the tipline keeps the synchronous `Tipline` contract.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from typing import Any

from factbridge.errors import ConfigError, DependencyMissing, FactBridgeError
from factbridge.linkrisk.urls import extract_urls
from factbridge.tiplines.base import Incoming, Reply

DEFAULT_API_URL = "https://api.telegram.org/bot"


class TelegramTipline:
    name = "telegram"

    def __init__(self, token: str, api_url: str = DEFAULT_API_URL, **_: Any) -> None:
        try:
            import telegram
            from telegram.request import HTTPXRequest
        except ImportError as exc:  # pragma: no cover - depends on the installed extras
            raise DependencyMissing("python-telegram-bot", "sources") from exc
        if not token:
            raise ConfigError("the Telegram tipline needs a bot token: set telegram_token (FACTBRIDGE_TELEGRAM_TOKEN)")
        self._telegram = telegram
        # httpx logs each request URL at INFO, and a Bot API URL contains the token
        logging.getLogger("httpx").setLevel(max(logging.WARNING, logging.getLogger("httpx").getEffectiveLevel()))
        # the library is async: its loop runs in a thread of its own, so polling (in the
        # runner) and sending (follow-ups, from any thread) can overlap
        self._loop = asyncio.new_event_loop()
        self._loop_thread = threading.Thread(target=self._loop.run_forever, name="telegram-loop", daemon=True)
        self._loop_thread.start()
        # long polls hold a connection up to `timeout`; sends use the other pool
        self.bot = telegram.Bot(token, base_url=api_url or DEFAULT_API_URL,
                                request=HTTPXRequest(connection_pool_size=4, read_timeout=10.0),
                                get_updates_request=HTTPXRequest(read_timeout=60.0))
        self._offset: int | None = None
        self._run(self.bot.initialize())

    def _run(self, coro: Any) -> Any:
        try:
            return asyncio.run_coroutine_threadsafe(coro, self._loop).result()
        except self._telegram.error.TelegramError as exc:
            raise FactBridgeError(f"Telegram Bot API: {exc}") from exc

    def poll(self, timeout: float) -> list[Incoming]:
        updates = self._run(self.bot.get_updates(offset=self._offset, timeout=int(max(timeout, 0)), allowed_updates=["message", "callback_query"]))
        now = time.monotonic()
        events: list[Incoming] = []
        for update in updates:
            self._offset = update.update_id + 1
            if update.callback_query is not None:
                cq = update.callback_query
                chat = cq.message.chat.id if cq.message is not None else cq.from_user.id
                events.append(Incoming("telegram", str(cq.from_user.id), str(chat), kind="feedback", callback_id=cq.id, data=cq.data or "", received_at=now))
                continue
            message = update.message
            # private chats only: in a group the bot would answer everyone's messages
            if message is None or message.from_user is None or message.chat.type != "private":
                continue
            text = message.text or message.caption or ""
            urls = [e.url for e in (*(message.entities or ()), *(message.caption_entities or ())) if e.type == "text_link" and e.url]
            origin = message.forward_origin
            if origin is not None and origin.type == "channel" and getattr(origin.chat, "username", None):
                # a forwarded channel post: its public link says where it circulates
                urls.append(f"https://t.me/{origin.chat.username}/{origin.message_id}")
            events.append(Incoming(
                "telegram", str(message.from_user.id), str(message.chat.id), text=text, message_id=str(message.message_id),
                language_hint=message.from_user.language_code, forwarded=message.forward_origin is not None,
                urls=list(dict.fromkeys([*extract_urls(text), *urls])), received_at=now,
            ))
        return events

    def send(self, reply: Reply) -> None:
        if reply.ack_callback:
            self._run(self.bot.answer_callback_query(reply.ack_callback, text=reply.text or None))
            return
        markup = None
        if reply.buttons:
            tg = self._telegram
            markup = tg.InlineKeyboardMarkup([[tg.InlineKeyboardButton(label, callback_data=data) for label, data in reply.buttons]])
        self._run(self.bot.send_message(int(reply.chat_id), reply.text, reply_markup=markup,
                                            link_preview_options=self._telegram.LinkPreviewOptions(is_disabled=True)))

    def close(self) -> None:
        try:
            self._run(self.bot.shutdown())
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._loop_thread.join(timeout=5)
            self._loop.close()
