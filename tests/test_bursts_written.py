"""The bursts stage reads the narratives stage's last write from its engine (`written_narratives`)
when the engine holds what is stored: the same memberships, documents and alerts as the reads."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest

from factbridge.models import Post
from factbridge.pipeline import bursts, narratives
from factbridge.pipeline.narratives import NarrativeStore, assign_posts, written_narratives
from factbridge.pipeline.records import NarrativeMembers, Narratives
from factbridge.services import Services
from factbridge.settings import Settings, load_settings

T0 = datetime(2026, 3, 1, 0, 0, tzinfo=UTC)
PARAMS = Settings(narrative_threshold=0.9, topic_threshold=0.5).narratives


def _services(path: Path) -> Services:
    return Services(load_settings(env={}, overrides={
        "data_dir": str(path), "storage_url": "sqlite:///:memory:", "embedder": "hashing", "embed_cache": "off", "match_fusion": "rrf"}))


@pytest.fixture
def two(tmp_path: Path) -> Iterator[tuple[Services, Services]]:
    a, b = _services(tmp_path / "a"), _services(tmp_path / "b")
    yield a, b
    a.close()
    b.close()


def _batches() -> list[list[Post]]:
    """Two stories (vectors 0 and 1): a quiet one; a spike of both, in two batches (its alert
    raised, then updated); an edit of a quiet post delivered again with posts seen before."""
    quiet = [Post(id=f"q{i}", text=f"claim one {i}", language="en", created_at=T0 + timedelta(hours=4 * i)) for i in range(12)]
    spike = [Post(id=f"s{i}", text=f"claim {'one' if i % 4 else 'two'} {i}", language="en",
                  created_at=T0 + timedelta(days=2, hours=1, minutes=i)) for i in range(45)]
    edit = [Post(id="q3", text="claim one, edited", language="en", created_at=T0 + timedelta(hours=12))]
    return [quiet, spike[:25], spike[25:], spike[:2] + edit]


def _vectors(posts: list[Post]) -> np.ndarray:
    return np.stack([np.eye(16, dtype=np.float32)[0 if "one" in p.text else 1] for p in posts])


def _run(services: Services, posts: list[Post]) -> dict:
    storage, org = services.storage, services.settings.org
    storage.upsert_posts(org, posts)
    assign_posts(storage, org, posts, _vectors(posts), PARAMS)
    return bursts.bursts_stage(services, org, posts)


def test_written_narratives_are_what_the_store_holds(hashing_services: Services) -> None:
    storage, org = hashing_services.storage, hashing_services.settings.org
    state_before, records_before = None, {}
    for k, batch in enumerate(_batches()):
        _run(hashing_services, batch)
        ids = [p.id for p in batch] + ["never-seen"]
        view = written_narratives(storage, org, ids, min_size=5)
        assert view is not None
        narrative_of, records = view
        assert narrative_of == {pid: m.narrative_id for pid, m in NarrativeMembers(storage).get(org, ids).items()}
        # a batch of new posts wrote their narratives; one of posts seen before wrote nothing (the
        # store and the engine's last write are as they were)
        state = NarrativeStore(storage).state(org)
        assert bool(records) and (state != state_before) == (k < 3)
        if k == 3:
            assert records.keys() <= records_before.keys()
        state_before, records_before = state, records
        stored = Narratives(storage).get(org, list(records))
        for nid, record in records.items():
            assert record == (stored[nid] if stored[nid].size >= 5 else None)


def test_no_view_when_another_writer_moved_the_store_on(hashing_services: Services) -> None:
    storage, org = hashing_services.storage, hashing_services.settings.org
    _run(hashing_services, _batches()[0])
    store = NarrativeStore(storage)
    state = store.state(org)
    assert state is not None and written_narratives(storage, org, ["q0"]) is not None
    store.bump(org, state)  # as another process's write would
    assert written_narratives(storage, org, ["q0"]) is None
    assert written_narratives(storage, "other-org", ["q0"]) is None  # no engine there


def test_bursts_from_the_engine_store_what_the_reads_stored(two: tuple[Services, Services], monkeypatch: pytest.MonkeyPatch) -> None:
    fast, slow = two
    ids = iter(range(10**6))
    monkeypatch.setattr(narratives, "_new_id", lambda prefix, seed: f"{prefix}-{next(ids):020d}")
    fast_summaries = [_run(fast, batch) for batch in _batches()]
    ids = iter(range(10**6))
    monkeypatch.setattr(bursts, "written_narratives", lambda *a, **k: None)
    slow_summaries = [_run(slow, batch) for batch in _batches()]
    assert fast_summaries == slow_summaries
    assert fast_summaries[1]["alerts"] >= 1 and fast_summaries[2]["updated"] >= 1  # a burst raised, then updated
    for collection in (bursts.ALERTS, bursts.BURST_STATE):
        got = [(i, {k: v for k, v in d.items() if k not in {"raised_at", "updated_at"}})
               for i, d in fast.storage.list_docs(fast.settings.org, collection, limit=1000, order="id")]
        want = [(i, {k: v for k, v in d.items() if k not in {"raised_at", "updated_at"}})
                for i, d in slow.storage.list_docs(slow.settings.org, collection, limit=1000, order="id")]
        assert got == want and got
