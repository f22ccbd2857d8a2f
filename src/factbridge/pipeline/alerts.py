"""Alert delivery to webhooks: HTTP POST of the alert as JSON, off the ingest path.

`submit` only puts the alert on an in-process queue and returns: a background
thread posts it to every configured URL, retries a failed attempt after
`backoff_s`, then twice that, and so on, up to `max_attempts`, and records
every attempt (time, HTTP status or error, duration) in the
"alert_deliveries" collection, so a desk can see what was sent and what was
not. A 4xx answer other than 408/429 is final (the receiver refused the
request; sending it again would not help). Undelivered alerts stay "pending" or
"failed" in storage: `factbridge alerts redeliver` sends them again.

`store_alerts` is the one way alerts are stored and handed to the webhooks (the bursts stage,
re-classification after a re-check, cross-border detection in federation): the records are
`pipeline.records.Alert` and `AlertDelivery`, through `Alerts` and `AlertDeliveries`.
"""

from __future__ import annotations

import dataclasses
import hashlib
import heapq
import hmac
import itertools
import json
import logging
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from factbridge.backends.storage.base import Storage
from factbridge.errors import ConfigError
from factbridge.pipeline.records import DELIVERIES as DELIVERIES  # re-exported: where they were
from factbridge.pipeline.records import (
    Alert,
    AlertDeliveries,
    AlertDelivery,
    Alerts,
    DeliveryAttempt,
)
from factbridge.pipeline.records import delivery_id as delivery_id

log = logging.getLogger(__name__)

USER_AGENT = "factbridge-alerts/1"
_FINAL_STATUSES = frozenset({400, 401, 403, 404, 405, 410, 413, 422})


def parse_webhooks(value: str) -> list[str]:
    urls = [u.strip() for u in value.split(",") if u.strip()]
    for url in urls:
        if not url.startswith(("http://", "https://")):
            raise ConfigError(f"alert_webhooks: '{url}' is not an http(s) URL")
    return urls


def event_keys(alert: Alert) -> list[str]:
    """The events of an alert that were delivered: its raising (the alert id), then each
    re-classification (`<id>#1`, `<id>#2`, ...: a burst found to be a resurfacing debunk)."""
    return [alert.id, *(f"{alert.id}#{n}" for n in range(1, len(alert.reclassified) + 1))]


def event_key(alert: Alert) -> str:
    """The alert's latest event: what a delivery submitted now is about."""
    return event_keys(alert)[-1]


@dataclass(order=True)
class _Job:
    due: float
    seq: int
    org: str = field(compare=False)
    alert: Alert = field(compare=False)
    url: str = field(compare=False)
    attempt: int = field(compare=False, default=1)


class WebhookDispatcher:
    """One background thread delivering alerts; `submit` never blocks on the network."""

    def __init__(
        self,
        storage: Storage,
        urls: Sequence[str],
        *,
        secret: str = "",
        max_attempts: int = 5,
        backoff_s: float = 1.0,
        timeout_s: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if max_attempts < 1:
            raise ConfigError(f"webhook_max_attempts must be at least 1, got {max_attempts}")
        self.storage = storage
        self.deliveries = AlertDeliveries(storage)
        self.urls = list(urls)
        self.secret = secret
        self.max_attempts = max_attempts
        self.backoff_s = backoff_s
        self.timeout_s = timeout_s
        self._clock = clock
        self._heap: list[_Job] = []
        self._seq = itertools.count()
        self._cond = threading.Condition()
        self._busy = 0
        self._closing = False
        self._thread = threading.Thread(target=self._run, name="factbridge-webhooks", daemon=True)
        self._thread.start()

    # -- producer side (the ingest path) ----------------------------------------
    def submit(self, org: str, alert: Alert) -> None:
        # Recorded as pending first, so the record exists before any attempt updates it; a
        # delivery sent again (`alerts redeliver`) keeps the attempts it already had.
        earlier = self.deliveries.get(org, [delivery_id(event_key(alert), url) for url in self.urls])
        self.deliveries.put(org, [AlertDelivery(alert.id, event_key(alert), url, "pending", list(d.attempts) if (d := earlier.get(delivery_id(event_key(alert), url))) else [],
                                                kind=alert.kind) for url in self.urls])
        with self._cond:
            for url in self.urls:
                heapq.heappush(self._heap, _Job(self._clock(), next(self._seq), org, alert, url))
            self._cond.notify()

    def pending(self) -> int:
        with self._cond:
            return len(self._heap) + self._busy

    def wait_idle(self, timeout: float) -> bool:
        """Wait until nothing is queued or in flight; False when the time ran out first."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while self._heap or self._busy:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(min(left, 0.05))
        return True

    def close(self, timeout: float = 10.0) -> None:
        """Finish what can be finished within `timeout`; the rest stays pending in storage."""
        self.wait_idle(timeout)
        with self._cond:
            self._closing = True
            self._cond.notify_all()
        self._thread.join(timeout=self.timeout_s + 1)

    # -- the delivery thread ------------------------------------------------------
    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._closing and (not self._heap or self._heap[0].due > self._clock()):
                    wait = (self._heap[0].due - self._clock()) if self._heap else None
                    self._cond.wait(timeout=max(0.0, wait) if wait is not None else None)
                if self._closing:
                    return
                job = heapq.heappop(self._heap)
                self._busy += 1
            try:
                self._attempt(job)
            except Exception:  # a broken delivery must not kill the thread; it is logged with its trace
                log.exception("webhook delivery of %s to %s failed unexpectedly", job.alert.id, job.url)
            finally:
                with self._cond:
                    self._busy -= 1
                    self._cond.notify_all()

    def _attempt(self, job: _Job) -> None:
        body = json.dumps({"type": "factbridge.alert", "org": job.org, "alert": job.alert.to_doc()}, ensure_ascii=False, default=str).encode("utf-8")
        headers = {"Content-Type": "application/json", "User-Agent": USER_AGENT, "X-FactBridge-Alert": job.alert.id,
                   "X-FactBridge-Event": event_key(job.alert), "X-FactBridge-Attempt": str(job.attempt)}
        if self.secret:
            headers["X-FactBridge-Signature"] = "sha256=" + hmac.new(self.secret.encode(), body, hashlib.sha256).hexdigest()
        request = urllib.request.Request(job.url, data=body, headers=headers, method="POST")
        started = time.perf_counter()
        status: int | None = None
        error = ""
        try:
            with urllib.request.urlopen(request, timeout=self.timeout_s) as response:  # noqa: S310 - configured http(s) URLs only
                status = int(response.status)
        except urllib.error.HTTPError as exc:
            status, error = int(exc.code), f"HTTP {exc.code}"
        except (urllib.error.URLError, TimeoutError, ConnectionError, OSError) as exc:
            error = f"{type(exc).__name__}: {getattr(exc, 'reason', exc)}"
        ok = status is not None and 200 <= status < 300
        final = ok or (status in _FINAL_STATUSES) or job.attempt >= self.max_attempts
        attempt = DeliveryAttempt(job.attempt, datetime.now(UTC).isoformat(timespec="milliseconds"), ok, status, error,
                                  round((time.perf_counter() - started) * 1000, 1))
        did = delivery_id(event_key(job.alert), job.url)
        before = self.deliveries.get(job.org, [did]).get(did) or AlertDelivery(job.alert.id, event_key(job.alert), job.url)
        self.deliveries.put(job.org, [dataclasses.replace(before, attempts=[*before.attempts, attempt],
                                                          state="delivered" if ok else ("failed" if final else "pending"))])
        if not final:
            delay = self.backoff_s * (2 ** (job.attempt - 1))
            with self._cond:
                heapq.heappush(self._heap, _Job(self._clock() + delay, next(self._seq), job.org, job.alert, job.url, job.attempt + 1))
                self._cond.notify()
        elif not ok:
            log.warning("alert %s not delivered to %s after %d attempts: %s", job.alert.id, job.url, job.attempt, error or status)


def dispatcher_from_settings(storage: Storage, settings: Any) -> WebhookDispatcher | None:
    urls = parse_webhooks(settings.alert_webhooks)
    if not urls:
        return None
    return WebhookDispatcher(
        storage, urls, secret=settings.alert_webhook_secret, max_attempts=settings.webhook_max_attempts,
        backoff_s=settings.webhook_backoff_s, timeout_s=settings.webhook_timeout_s,
    )


def undelivered(storage: Storage, org: str, limit: int = 10_000) -> list[AlertDelivery]:
    return AlertDeliveries(storage).undelivered(org, limit)


def store_alerts(storage: Storage, dispatcher: WebhookDispatcher | None, org: str, alerts: Sequence[tuple[Alert, float | None]],
                 deliver: Sequence[Alert] = ()) -> None:
    """Store alerts (with their sort keys) and hand `deliver` (the new alerts, or alerts with a
    new event) to the webhooks: what the bursts stage, re-classification and cross-border
    detection all do, in one place."""
    Alerts(storage).put(org, alerts)
    if dispatcher is not None:
        for alert in deliver:
            dispatcher.submit(org, alert)
