"""A worker settles its heap after a run of the stages (pipeline/collector.py): what is alive
is frozen out of later collections, cyclic garbage is never kept past the next settling. A
long-running worker reads the Khmer segmenter's model when it starts."""

from __future__ import annotations

import gc
import importlib
import weakref
from collections.abc import Iterator

import pytest

from factbridge.pipeline import collector
from factbridge.pipeline.collector import settle_heap

tokenize = importlib.import_module("factbridge.text.tokenize")  # the package exports a function of that name


class _Cyclic:
    def __init__(self) -> None:
        self.me = self


@pytest.fixture(autouse=True)
def _unsettled() -> Iterator[None]:
    collector._settled_at = None
    yield
    gc.unfreeze()
    collector._settled_at = None


def test_settling_freezes_what_is_alive_and_collects_the_garbage_first() -> None:
    garbage = _Cyclic()
    gone = weakref.ref(garbage)
    del garbage
    kept = _Cyclic()
    assert settle_heap(now=1000.0)
    assert gone() is None  # collected, not frozen
    assert gc.get_freeze_count() > 0
    assert any(o is kept for o in gc.get_objects()) is False  # frozen: out of the collector's generations
    assert kept.me is kept


def test_settling_waits_its_interval_and_then_frees_cyclic_garbage_it_had_frozen() -> None:
    late = _Cyclic()
    assert settle_heap(every_s=600.0, now=1000.0)  # `late` is alive: frozen
    gone = weakref.ref(late)
    del late
    gc.collect()
    assert gone() is not None  # frozen cyclic garbage waits for the next settling
    assert not settle_heap(every_s=600.0, now=1500.0)  # not yet: ten minutes
    assert gone() is not None
    assert settle_heap(every_s=600.0, now=1602.0)
    assert gone() is None


def test_a_long_running_worker_settles_after_its_first_run(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from factbridge.bench.feed import generated_posts
    from factbridge.pipeline.prepare import prepare_post
    from factbridge.pipeline.work import Worker, publish_post_ids, publish_posts
    from factbridge.services import Services
    from factbridge.settings import load_settings

    settings = load_settings(None, overrides={"data_dir": str(tmp_path), "embedder": "hashing", "queue_url": "local://"})
    services = Services(settings)
    try:
        posts = [prepare_post(p) for p in generated_posts(16, "tweet", 0.0, 3) if p.language != "km"]  # no Khmer to segment
        services.storage.upsert_posts("desk", posts)
        publish_posts(services, "desk", posts)
        report = Worker(services).run(once=True)  # draining the queue once (`factbridge ingest`): no settling
        assert report.outcomes and all(o.status == "done" for o in report.outcomes)
        assert collector._settled_at is None
        publish_post_ids(services, "desk", [p.id for p in posts], force=True)
        tokenize._SCORER.clear()  # the Khmer segmenter's model not read yet
        tokenize._segment_khmer.cache_clear()
        report = Worker(services).run(max_batches=1)  # as `factbridge worker` runs
        assert report.outcomes and all(o.status == "done" for o in report.outcomes)
        assert collector._settled_at is not None
        assert gc.get_freeze_count() > 0
        assert tokenize._SCORER and tokenize._SCORER[0] is not None  # read at the start: frozen with the rest
    finally:
        services.close()
