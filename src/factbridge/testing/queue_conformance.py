"""The conformance suite every Queue backend passes: plain check functions that take
a factory `make(ack_wait_s, max_deliveries) -> Queue`. Every call on one factory must
open the SAME queue (as a second worker process would), empty at the factory's first
call; the caller closes what it opened through `factory.cleanup()` if it has one.

    from factbridge.testing.queue_conformance import parametrize_queue_checks

    @parametrize_queue_checks()
    def test_my_queue(check):
        check(MyQueueFactory())

Waits are bounded: a check never blocks more than a few seconds.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, Protocol

from factbridge.backends.queue.base import Delivery, Queue
from factbridge.errors import InputError

ACK_WAIT_S = 1.0


class QueueFactory(Protocol):
    def __call__(self, ack_wait_s: float = ACK_WAIT_S, max_deliveries: int = 3) -> Queue: ...


def _fetch_one(queue: Queue, timeout_s: float = 5.0) -> Delivery:
    got = queue.fetch(1, timeout_s)
    assert len(got) == 1, f"expected a delivery within {timeout_s} s"
    return got[0]


def check_publish_fetch_ack(make: QueueFactory) -> None:
    queue = make()
    assert queue.fetch(1, 0.1) == []
    assert queue.publish([{"id": "b1", "n": 1}, {"id": "b2", "n": 2}]) == 2
    assert queue.pending()["waiting"] == 2
    first = _fetch_one(queue)
    assert (first.body, first.attempt) == ({"id": "b1", "n": 1}, 1)
    assert queue.pending()["in_flight"] == 1
    first.ack()
    second = _fetch_one(queue)
    assert second.body["id"] == "b2"
    second.ack()
    assert queue.fetch(1, 0.2) == []
    assert queue.pending() == {"waiting": 0, "in_flight": 0}


def check_rejects_message_without_id(make: QueueFactory) -> None:
    queue = make()
    try:
        queue.publish([{"n": 1}])
    except InputError:
        return
    raise AssertionError("a message without an id must be refused")


def check_two_consumers_share_the_work(make: QueueFactory) -> None:
    one, two = make(), make()
    one.publish([{"id": f"m{i}"} for i in range(6)])
    seen: list[str] = []
    for _ in range(3):
        for queue in (one, two):
            delivery = _fetch_one(queue)
            seen.append(delivery.body["id"])
            delivery.ack()
    assert sorted(seen) == [f"m{i}" for i in range(6)], "each message goes to exactly one consumer"
    assert one.fetch(1, 0.2) == [] and two.fetch(1, 0.2) == []


def check_unacked_is_redelivered_to_another_consumer(make: QueueFactory) -> None:
    holder, other = make(), make()
    holder.publish([{"id": "lost"}])
    taken = _fetch_one(holder)
    assert taken.attempt == 1
    # the holder dies without acking: the other consumer gets it after ack_wait
    t0 = time.monotonic()
    again = _fetch_one(other, timeout_s=ACK_WAIT_S + 5)
    assert again.body["id"] == "lost" and again.attempt == 2
    assert time.monotonic() - t0 >= ACK_WAIT_S * 0.5, "redelivered before the ack wait"
    again.ack()
    assert other.fetch(1, ACK_WAIT_S + 0.3) == []


def check_extend_keeps_a_live_batch(make: QueueFactory) -> None:
    worker, other = make(), make()
    worker.publish([{"id": "long"}])
    delivery = _fetch_one(worker)
    for _ in range(4):  # 4 x 0.4 s > ack_wait: only the extensions keep it
        time.sleep(ACK_WAIT_S * 0.4)
        delivery.extend()
    assert other.fetch(1, 0.1) == [], "a batch whose worker is alive must not be handed out"
    delivery.ack()


def check_nack_redelivers_after_delay(make: QueueFactory) -> None:
    queue = make()
    queue.publish([{"id": "again"}])
    first = _fetch_one(queue)
    t0 = time.monotonic()
    first.nack(0.3)
    second = _fetch_one(queue, timeout_s=3.0)
    assert second.attempt == 2 and time.monotonic() - t0 >= 0.25
    second.discard()
    assert queue.fetch(1, 0.5) == []


def check_bounded_deliveries(make: QueueFactory) -> None:
    queue = make(ack_wait_s=ACK_WAIT_S, max_deliveries=2)
    queue.publish([{"id": "poison"}])
    attempts = []
    for _ in range(3):  # max_deliveries + 1: the extra one lets a worker record the failure
        delivery = _fetch_one(queue, timeout_s=3.0)
        attempts.append(delivery.attempt)
        delivery.nack()
    assert attempts == [1, 2, 3]
    assert queue.fetch(1, 0.5) == [], "never delivered more than max_deliveries + 1 times"


QUEUE_CHECKS: list[Callable[[Any], None]] = [
    check_publish_fetch_ack,
    check_rejects_message_without_id,
    check_two_consumers_share_the_work,
    check_unacked_is_redelivered_to_another_consumer,
    check_extend_keeps_a_live_batch,
    check_nack_redelivers_after_delay,
    check_bounded_deliveries,
]


def parametrize_queue_checks(checks: list[Callable[[Any], None]] | None = None) -> Any:
    """`pytest.mark.parametrize("check", ...)` over the suite, one test id per check."""
    import pytest

    chosen = QUEUE_CHECKS if checks is None else checks
    return pytest.mark.parametrize("check", chosen, ids=[c.__name__.removeprefix("check_") for c in chosen])


__all__ = ["QUEUE_CHECKS", "QueueFactory", "parametrize_queue_checks"]
