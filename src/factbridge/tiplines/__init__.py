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

from factbridge.errors import FactBridgeError
from factbridge.models import Post
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
                 on_reply: Callable[[Incoming, Reply, float], None] | None = None, store_after_s: float = 1.0) -> None:
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
        self._deferred: queue.Queue[Post | None] = queue.Queue()
        self._cpu = threading.Lock()
        self.store_after_s = store_after_s
        self._warm = False
        self._worker = threading.Thread(target=self._work, name=f"tipline-{tipline.name}-desk", daemon=True)
        self._worker.start()

    def _work(self) -> None:
        while True:
            batch = [self._deferred.get()]
            # questions that arrive meanwhile go in together (one run of the stages), once the
            # tipline has been quiet for `store_after_s` (or the batch is full)
            while len(batch) < 200 and batch[-1] is not None:
                try:
                    batch.append(self._deferred.get(timeout=self.store_after_s))
                except queue.Empty:
                    break
            try:
                posts = [p for p in batch if p is not None]
                if posts:
                    # never at the same time as answering: both embed, and two embedding runs
                    # on a small machine slow each other down many times over
                    with self._cpu:
                        self.desk.store(posts)
            except Exception:
                self.errors += 1
                log.exception("tipline %s: storing %d questions for the desk failed", self.tipline.name, len(batch))
            finally:
                for _ in batch:
                    self._deferred.task_done()
            if None in batch:
                return

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
                with self._cpu:
                    replies, later = self.desk.handle(event)
            except Exception:  # one bad message must not stop the tipline; it is logged with its cause
                self.errors += 1
                log.exception("tipline %s: could not handle a message", self.tipline.name)
                continue
            for post in later:  # queued before the answer goes out: drain() then covers it
                self._deferred.put(post)
            for reply in replies:
                if not self._send(reply):
                    continue
                if self.on_reply:
                    self.on_reply(event, reply, time.monotonic() - event.received_at if event.received_at else 0.0)
            self.handled += 1
        if time.monotonic() - self._last_followup >= self.followup_every:
            self.followups()
        return len(events)

    def followups(self) -> int:
        self._last_followup = time.monotonic()
        with self._cpu:
            answers = self.desk.followups()
        sent = 0
        for reply, record in answers:
            if self._send(reply):
                record()  # answered only once it really went out
                sent += 1
        return sent

    def _send(self, reply: Reply) -> bool:
        """One failed send (the messenger refused it, a network error) is logged and counted;
        the other replies still go out."""
        try:
            self.tipline.send(reply)
        except FactBridgeError:
            self.errors += 1
            log.exception("tipline %s: a reply could not be sent", self.tipline.name)
            return False
        return True

    def warm(self) -> None:
        if not self._warm:
            self.desk.warm()
            self._warm = True

    def run(self, stop: threading.Event) -> None:
        try:
            self.warm()
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
