"""The work-queue contract: publish batches of work, consume them with explicit acks.

At-least-once delivery, the same in every backend:

- `publish(bodies)` stores JSON-able dicts; each carries its own `id`.
- `fetch(n, timeout_s)` hands out up to n `Delivery`s. One that is neither acked nor
  extended within `ack_wait_s` is delivered again (to any consumer): a worker that
  dies loses nothing.
- `Delivery.attempt` counts deliveries (1 = first). The backend delivers a message at
  most `max_deliveries + 1` times: the extra delivery lets a worker record, as failed,
  a batch whose earlier holders all died before they could say why, so nothing is
  ever dropped silently (factbridge.pipeline.work records failures).
- `ack()` removes it, `nack(delay_s)` asks for redelivery after a delay,
  `extend()` restarts the ack timer (long batches), `discard()` removes it after
  its failure has been recorded.

`in_process` says whether consumers live inside the publishing process (the local
queue: `factbridge ingest` runs the stages itself) or in separate `factbridge worker`
processes (NATS).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol, runtime_checkable
from urllib.parse import urlsplit

from factbridge.errors import ConfigError
from factbridge.plugins import load_backend


@runtime_checkable
class Delivery(Protocol):
    @property
    def body(self) -> dict[str, Any]: ...
    @property
    def attempt(self) -> int: ...
    def ack(self) -> None: ...
    def nack(self, delay_s: float = 0.0) -> None: ...
    def extend(self) -> None: ...
    def discard(self) -> None: ...


@runtime_checkable
class Queue(Protocol):
    name: str
    in_process: bool
    ack_wait_s: float
    max_deliveries: int

    def publish(self, bodies: Sequence[dict[str, Any]]) -> int:
        """Store the bodies (each with an `id`); returns how many were stored (a body whose
        id was published moments ago may be recognised as a duplicate and not stored again)."""
        ...

    def fetch(self, max_count: int = 1, timeout_s: float = 1.0) -> list[Delivery]:
        """Up to max_count deliveries; waits at most timeout_s for the first one."""
        ...

    def pending(self) -> dict[str, int]:
        """{'waiting': not yet delivered, 'in_flight': delivered and not acked}."""
        ...

    def close(self) -> None: ...


def queue_scheme(url: str) -> str:
    """'' and 'local' mean the in-process queue; otherwise the URL's scheme names the backend."""
    text = url.strip()
    if text in {"", "local", "local://"}:
        return "local"
    scheme = urlsplit(text).scheme
    if not scheme:
        raise ConfigError(f"queue_url '{url}': expected local:// or nats://host:port")
    return scheme


def open_queue(url: str, *, ack_wait_s: float = 300.0, max_deliveries: int = 5) -> Queue:
    """The queue backend named by the URL's scheme (entry points in `factbridge.queues`)."""
    if ack_wait_s <= 0:
        raise ConfigError(f"queue_ack_wait_s must be positive, got {ack_wait_s}")
    if max_deliveries < 1:
        raise ConfigError(f"queue_max_deliveries must be at least 1, got {max_deliveries}")
    cls = load_backend("factbridge.queues", queue_scheme(url))
    queue: Queue = cls(url, ack_wait_s=ack_wait_s, max_deliveries=max_deliveries)
    return queue
