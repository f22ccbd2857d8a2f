"""NATS JetStream queue: one stream (work-queue retention: a message leaves it once
acked) and one durable pull consumer that every `factbridge worker` shares, so each
batch goes to one worker at a time and an unacked one comes back after `ack_wait_s`.

URL: nats://host:port[?stream=FACTBRIDGE&subject=factbridge.work&consumer=workers]
(the query names let several deployments or tests share one server).

nats-py is asyncio; FactBridge's pipeline is synchronous. The client runs on its own
event loop in a background thread and every call waits on it with a time limit, so a
stalled server surfaces as a QueueError instead of a hang.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import logging
import re
import threading
from collections.abc import Coroutine, Sequence
from typing import Any, TypeVar
from urllib.parse import parse_qs, urlsplit, urlunsplit

from factbridge.errors import ConfigError, DependencyMissing, InputError, QueueError

log = logging.getLogger(__name__)
T = TypeVar("T")

DEFAULT_STREAM = "FACTBRIDGE"
DEFAULT_SUBJECT = "factbridge.work"
DEFAULT_CONSUMER = "workers"
CALL_TIMEOUT_S = 10.0  # any single request to the server
_NAME = re.compile(r"^[A-Za-z0-9_-]+$")


def _parse(url: str) -> tuple[str, str, str, str]:
    parts = urlsplit(url)
    if parts.scheme != "nats" or not parts.hostname:
        raise ConfigError(f"queue_url '{url}': expected nats://host:port")
    query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
    unknown = set(query) - {"stream", "subject", "consumer"}
    if unknown:
        raise ConfigError(f"queue_url '{url}': unknown option(s) {', '.join(sorted(unknown))} (stream, subject, consumer)")
    stream = query.get("stream", DEFAULT_STREAM)
    consumer = query.get("consumer", DEFAULT_CONSUMER)
    subject = query.get("subject", DEFAULT_SUBJECT)
    for label, value in (("stream", stream), ("consumer", consumer)):
        if not _NAME.match(value):
            raise ConfigError(f"queue_url '{url}': {label} name '{value}' may use only letters, digits, '-' and '_'")
    if not subject or any(c in subject for c in " *>"):
        raise ConfigError(f"queue_url '{url}': subject '{subject}' must be a plain NATS subject")
    server = urlunsplit((parts.scheme, parts.netloc, "", "", ""))
    return server, stream, subject, consumer


class NatsDelivery:
    def __init__(self, queue: NatsQueue, msg: Any, body: dict[str, Any]) -> None:
        self._queue = queue
        self._msg = msg
        self._body = body

    @property
    def body(self) -> dict[str, Any]:
        return self._body

    @property
    def attempt(self) -> int:
        return int(self._msg.metadata.num_delivered)

    def ack(self) -> None:
        # ack_sync: the server confirms, so a batch is never reported done but still queued
        self._queue._call(self._msg.ack_sync(timeout=CALL_TIMEOUT_S))

    def nack(self, delay_s: float = 0.0) -> None:
        self._queue._call(self._msg.nak(delay=delay_s or None))

    def extend(self) -> None:
        self._queue._call(self._msg.in_progress())

    def discard(self) -> None:
        self._queue._call(self._msg.term())


class NatsQueue:
    name = "nats"
    in_process = False

    def __init__(self, url: str, *, ack_wait_s: float = 300.0, max_deliveries: int = 5, connect_timeout_s: float = 5.0) -> None:
        try:
            import nats  # noqa: F401
        except ImportError as exc:
            raise DependencyMissing("nats-py", "nats") from exc
        self.url = url
        self.server, self.stream, self.subject, self.consumer = _parse(url)
        self.ack_wait_s = ack_wait_s
        self.max_deliveries = max_deliveries
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="factbridge-nats", daemon=True)
        self._thread.start()
        self._nc: Any = None
        self._js: Any = None
        self._sub: Any = None
        try:
            self._call(self._connect(connect_timeout_s), timeout_s=connect_timeout_s + CALL_TIMEOUT_S)
        except BaseException:
            self.close()
            raise

    # -- contract -----------------------------------------------------------------------

    def publish(self, bodies: Sequence[dict[str, Any]]) -> int:
        payloads = []
        for body in bodies:
            if not isinstance(body, dict) or not body.get("id"):
                raise InputError("a queue message must be a dict with an 'id'", field="id")
            payloads.append((str(body["id"]), json.dumps(body, ensure_ascii=False).encode()))
        return self._call(self._publish(payloads), timeout_s=CALL_TIMEOUT_S + len(payloads))

    def fetch(self, max_count: int = 1, timeout_s: float = 1.0) -> list[NatsDelivery]:
        msgs = self._call(self._fetch(max_count, timeout_s), timeout_s=timeout_s + CALL_TIMEOUT_S)
        out = []
        for msg in msgs:
            try:
                body = json.loads(msg.data)
            except (UnicodeDecodeError, json.JSONDecodeError) as exc:
                body = {"unreadable": msg.data[:500].decode("utf-8", "replace"), "error": str(exc)}
            out.append(NatsDelivery(self, msg, body if isinstance(body, dict) else {"unreadable": str(body)[:500]}))
        return out

    def pending(self) -> dict[str, int]:
        info = self._call(self._js.consumer_info(self.stream, self.consumer))
        return {"waiting": int(info.num_pending or 0), "in_flight": int(info.num_ack_pending or 0)}

    def close(self) -> None:
        if self._loop.is_closed():
            return
        if self._nc is not None and self._loop.is_running():
            try:
                self._call(self._nc.close(), timeout_s=CALL_TIMEOUT_S)
            except QueueError as exc:
                log.warning("closing the NATS connection: %s", exc)
        self._nc = None
        if self._loop.is_running():
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=CALL_TIMEOUT_S)
        if not self._loop.is_running():
            self._loop.close()

    # -- on the event loop --------------------------------------------------------------

    def _call(self, coro: Coroutine[Any, Any, T], timeout_s: float = CALL_TIMEOUT_S) -> T:
        if self._loop.is_closed():
            coro.close()
            raise QueueError("the NATS queue is closed")
        future = asyncio.run_coroutine_threadsafe(coro, self._loop)
        try:
            return future.result(timeout_s)
        except concurrent.futures.TimeoutError as exc:
            future.cancel()
            raise QueueError(f"NATS at {self.server} did not answer within {timeout_s:.0f} s") from exc
        except QueueError:
            raise
        except Exception as exc:  # nats-py raises its own tree; one readable error at our boundary
            raise QueueError(f"NATS at {self.server}: {type(exc).__name__}: {exc}") from exc

    async def _connect(self, connect_timeout_s: float) -> None:
        import nats
        from nats.js.api import (
            AckPolicy,
            ConsumerConfig,
            RetentionPolicy,
            StorageType,
            StreamConfig,
        )
        from nats.js.errors import NotFoundError

        errors: list[str] = []

        async def on_error(exc: Exception) -> None:
            if self._nc is None:  # still connecting: reported once, below, if it never succeeds
                errors.append(str(exc))
            else:
                log.warning("NATS %s: %s", self.server, exc)

        try:
            self._nc = await asyncio.wait_for(
                nats.connect(
                    servers=[self.server], name="factbridge", connect_timeout=connect_timeout_s,
                    reconnect_time_wait=1, max_reconnect_attempts=60, error_cb=on_error,
                ),
                timeout=connect_timeout_s,
            )
        except (TimeoutError, OSError, nats.errors.Error) as exc:
            last = errors[-1] if errors else f"{type(exc).__name__} {exc}".strip()
            raise QueueError(f"cannot reach NATS at {self.server} within {connect_timeout_s:.0f} s: {last}") from exc
        self._js = self._nc.jetstream(timeout=CALL_TIMEOUT_S)
        try:
            await self._js.stream_info(self.stream)
        except NotFoundError:
            await self._js.add_stream(StreamConfig(
                name=self.stream, subjects=[self.subject], retention=RetentionPolicy.WORK_QUEUE,
                storage=StorageType.FILE, duplicate_window=120.0,
            ))
        config = ConsumerConfig(
            durable_name=self.consumer, ack_policy=AckPolicy.EXPLICIT, ack_wait=self.ack_wait_s,
            # one delivery more than allowed: that one records the batch as failed (see base.py)
            max_deliver=self.max_deliveries + 1, filter_subject=self.subject,
        )
        try:
            await self._js.add_consumer(self.stream, config)
        except nats.js.errors.BadRequestError as exc:
            # another worker created it with other settings; the first one's settings hold
            info = await self._js.consumer_info(self.stream, self.consumer)
            log.warning("consumer %s exists with other settings (%s); using ack_wait %.0f s, max_deliver %s",
                        self.consumer, exc, info.config.ack_wait or 0, info.config.max_deliver)
            self.ack_wait_s = float(info.config.ack_wait or self.ack_wait_s)
            if info.config.max_deliver and info.config.max_deliver > 0:
                self.max_deliveries = int(info.config.max_deliver) - 1
        self._sub = await self._js.pull_subscribe_bind(durable=self.consumer, stream=self.stream)

    async def _publish(self, payloads: list[tuple[str, bytes]]) -> int:
        stored = 0
        for msg_id, data in payloads:
            # Nats-Msg-Id: a publish retried after a lost reply is stored once
            ack = await self._js.publish(self.subject, data, stream=self.stream, headers={"Nats-Msg-Id": msg_id})
            stored += 0 if ack.duplicate else 1
        return stored

    async def _fetch(self, max_count: int, timeout_s: float) -> list[Any]:
        import nats

        try:
            return list(await self._sub.fetch(batch=max_count, timeout=max(timeout_s, 0.05)))
        except nats.errors.TimeoutError:
            return []
