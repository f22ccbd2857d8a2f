"""Tiplines: citizens ask in a messenger, FactBridge answers (see docs/sources.md).

`open_tipline(name, settings)` builds a registered messenger (entry points
`factbridge.tiplines`: telegram, zalo); `TiplineRunner` polls it and lets
`desk.TiplineDesk` decide each answer.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from typing import Any

from factbridge.plugins import load_backend
from factbridge.settings import Settings
from factbridge.tiplines.base import Incoming, Reply, Tipline
from factbridge.tiplines.desk import TiplineDesk

__all__ = ["Incoming", "Reply", "Tipline", "TiplineDesk", "TiplineRunner", "open_tipline"]

log = logging.getLogger(__name__)


def open_tipline(name: str, settings: Settings, **overrides: Any) -> Tipline:
    cls = load_backend("factbridge.tiplines", name)
    defaults: dict[str, dict[str, Any]] = {
        "telegram": {"token": settings.telegram_token, "api_url": settings.telegram_api_url},
        "zalo": {"access_token": settings.zalo_access_token, "api_url": settings.zalo_api_url,
                 "oa_secret": settings.zalo_oa_secret, "app_id": settings.zalo_app_id,
                 "host": settings.host, "port": settings.zalo_webhook_port},
    }
    options = dict(defaults.get(name, {}))
    options.update({k: v for k, v in overrides.items() if v is not None})
    tipline: Tipline = cls(**options)
    return tipline


class TiplineRunner:
    """Poll -> decide -> send, then the deferred work (storing questions for the desk), and
    every `followup_every` seconds the follow-ups of pending questions."""

    def __init__(self, tipline: Tipline, desk: TiplineDesk, *, poll_timeout: float = 10.0, followup_every: float = 15.0,
                 on_reply: Callable[[Incoming, Reply, float], None] | None = None) -> None:
        self.tipline = tipline
        self.desk = desk
        self.poll_timeout = poll_timeout
        self.followup_every = followup_every
        self.on_reply = on_reply
        self.handled = 0
        self.errors = 0
        self._last_followup = 0.0
        # storing a question runs the pipeline stages: a thread of its own, so the next
        # citizen's message is not queued behind them
        self._deferred: queue.Queue[Callable[[], None] | None] = queue.Queue()
        self._worker = threading.Thread(target=self._work, name=f"tipline-{tipline.name}-desk", daemon=True)
        self._worker.start()

    def _work(self) -> None:
        while True:
            work = self._deferred.get()
            try:
                if work is None:
                    return
                work()
            except Exception:
                self.errors += 1
                log.exception("tipline %s: storing a question for the desk failed", self.tipline.name)
            finally:
                self._deferred.task_done()

    def drain(self) -> None:
        """Wait until every question handled so far is stored for the desk."""
        self._deferred.join()

    def close(self) -> None:
        self._deferred.put(None)
        self._worker.join(timeout=30)

    def step(self, timeout: float | None = None) -> int:
        events = self.tipline.poll(self.poll_timeout if timeout is None else timeout)
        for event in events:
            try:
                replies, later = self.desk.handle(event)
            except Exception:  # one bad message must not stop the tipline; it is logged with its cause
                self.errors += 1
                log.exception("tipline %s: could not handle a message", self.tipline.name)
                continue
            for work in later:  # queued before the answer goes out: drain() then covers it
                self._deferred.put(work)
            for reply in replies:
                self.tipline.send(reply)
                if self.on_reply:
                    self.on_reply(event, reply, time.monotonic() - event.received_at if event.received_at else 0.0)
            self.handled += 1
        if time.monotonic() - self._last_followup >= self.followup_every:
            self.followups()
        return len(events)

    def followups(self) -> int:
        self._last_followup = time.monotonic()
        replies = self.desk.followups()
        for reply in replies:
            self.tipline.send(reply)
        return len(replies)

    def run(self, stop: threading.Event) -> None:
        try:
            self.desk.warm()
            while not stop.is_set():
                try:
                    self.step()
                except Exception:
                    self.errors += 1
                    log.exception("tipline %s: polling failed; retrying in 2 s", self.tipline.name)
                    stop.wait(2.0)
        finally:
            self.close()

    def start_thread(self, stop: threading.Event) -> threading.Thread:
        thread = threading.Thread(target=self.run, args=(stop,), name=f"tipline-{self.tipline.name}", daemon=True)
        thread.start()
        return thread
