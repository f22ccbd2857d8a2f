"""The per-post costs cut outside the encoder change no result: cached MinHash signatures,
cached word folding and Khmer segmentation, triage's narrative members gathered once."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from factbridge.bench.feed import generated_posts
from factbridge.pipeline import triage
from factbridge.pipeline.collector import collector_paused
from factbridge.pipeline.prepare import prepare_post
from factbridge.pipeline.stages import StageClock, run_stages
from factbridge.services import Services
from factbridge.settings import load_settings
from factbridge.testing.triage import comparable_entries
from factbridge.text import minhash
from factbridge.text.normalize import fold_diacritics
from factbridge.text.tokenize import _segment_khmer, tokenize

ORG = "desk"


def _texts() -> list[str]:
    texts = [p.text for p in generated_posts(120, "mixed", duplicates=0.3, seed=11)]
    return [*texts, "", "abc", "RT @someone: https://t.co/x", "ភាសាខ្មែរ"]


def test_cached_signatures_are_the_computed_ones() -> None:
    texts = _texts()
    expected_sigs, expected_valid = minhash._compute_signatures(texts)
    minhash.SIGNATURE_CACHE.put([minhash.SignatureCache.key(t) for t in texts[:40]], expected_sigs[:40], expected_valid[:40])
    for _ in range(2):  # part cached, then all cached
        sigs, valid = minhash.signatures(texts)
        assert np.array_equal(sigs, expected_sigs) and np.array_equal(valid, expected_valid)
    assert not valid[-4] and not valid[-3], "empty and too short texts still have no signature"
    assert np.array_equal(minhash.near_duplicate_groups(texts), minhash.near_duplicate_groups(list(texts)))
    empty_sigs, empty_valid = minhash.signatures([])
    assert empty_sigs.shape == (0, minhash.NUM_PERM) and empty_valid.shape == (0,)


def test_signature_cache_is_bounded_least_recently_used_out() -> None:
    cache = minhash.SignatureCache(3)
    texts = ["alpha beta gamma", "delta epsilon zeta", "eta theta iota", "kappa lambda mu"]
    sigs, valid = minhash._compute_signatures(texts)
    keys = [minhash.SignatureCache.key(t) for t in texts]
    cache.put(keys[:3], sigs[:3], valid[:3])
    assert cache.get(keys[:1]) == [sigs[0].tobytes()]  # used: now the most recent
    cache.put(keys[3:], sigs[3:], valid[3:])
    assert len(cache) == 3
    assert cache.get([keys[1]]) == [None], "the least recently used one went out"
    assert cache.get([keys[0], keys[3]]) == [sigs[0].tobytes(), sigs[3].tobytes()]


def test_cached_tokenizer_gives_what_it_computes() -> None:
    import khmercut

    run = "ក្រសួងសុខាភិបាលព្រមានអំពីវ៉ាក់សាំងក្លែងក្លាយ"
    _segment_khmer.cache_clear()
    assert list(_segment_khmer(run)) == list(khmercut.tokenize(run)) == list(_segment_khmer(run))
    text = "Không phải ĐÂY là Æther straße " + "é" * 60
    words = tokenize(text)
    assert words == [fold_diacritics(w.lower()) for w in re.findall(r"[^\W_]+", text)]
    assert tokenize(text) == words


def _entries(captured: list[list[Any]]) -> dict[str, dict[str, Any]]:
    return comparable_entries(captured.pop())


def test_triage_queue_is_the_same_without_the_members_repeat_search(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each batch's queue entries, as the stage writes them, against triage gathering every
    narrative member with its repeats (as before) on the same stored state
    (tests/test_triage_members.py: the same against the full recompute in more situations)."""
    captured: list[list[Any]] = []
    write = {"on": True}
    original_put = triage._put

    def put(storage: Any, org: str, entries: Any, *rest: Any) -> None:
        captured.append(list(entries))
        if write["on"]:
            original_put(storage, org, entries, *rest)

    monkeypatch.setattr(triage, "_put", put)
    original = triage.gather_facts
    original_members = triage._narrative_members

    def full(services: Any, org: str, posts: Any, weights: Any, repeats: bool = True, reads: Any = None, fresh: bool = True,
             refresh: bool = False) -> Any:
        return original(services, org, posts, weights, repeats=True, reads=reads, fresh=False, refresh=refresh)

    def every_member_gathered(services: Any, org: str, weights: Any, reads: Any, members: dict[str, list[str]], records_of: Any,
                              fresh: dict[str, Any], stored: Any) -> dict[str, list[Any]]:
        outside = sorted({m for ids in members.values() for m in ids} - fresh.keys())
        posts = list(services.storage.get_posts(org, outside).values())
        gathered = {pid: triage.member_facts(f) for pid, f in full(services, org, posts, weights, reads=reads).items()} if posts else {}
        facts = {**gathered, **fresh}
        return {nid: [facts[m] for m in ids if m in facts] for nid, ids in members.items()}

    settings = load_settings(env={}, overrides={
        "data_dir": str(tmp_path), "storage_url": f"sqlite:///{tmp_path / 'desk.db'}", "embedder": "hashing",
        "embed_cache": "off", "match_fusion": "rrf",
    })
    services = Services(settings)
    try:
        posts = [prepare_post(p) for p in generated_posts(96, "tweet", duplicates=0.4, seed=21)]
        clock = StageClock()
        narratives = outside = 0
        for start in range(0, len(posts), 24):
            batch = posts[start : start + 24]
            services.storage.upsert_posts(ORG, batch)
            monkeypatch.setattr(triage, "gather_facts", original)
            monkeypatch.setattr(triage, "_narrative_members", original_members)
            write["on"] = True
            run_stages(services, ORG, batch, clock=clock)
            fast = _entries(captured)
            monkeypatch.setattr(triage, "gather_facts", full)
            monkeypatch.setattr(triage, "_narrative_members", every_member_gathered)
            write["on"] = False
            triage.triage_posts(services, ORG, batch)
            before = _entries(captured)
            assert fast == before, _diff(fast, before)[:5]
            narratives += sum(1 for i in fast if i.startswith("narrative:"))
            outside += sum(1 for i, d in fast.items() if i.startswith("narrative:") for p in d["post_ids"] if p not in fast)
    finally:
        services.close()
    assert narratives >= 3 and outside, "the fixture makes narratives with members outside their batch"
    assert set(clock.wall) >= {"ledger", "narratives", "triage"} and all(v >= 0 for v in clock.cpu.values())


def _diff(a: Any, b: Any, path: str = "") -> list[str]:
    if isinstance(a, dict) and isinstance(b, dict):
        return [d for k in sorted(set(a) | set(b)) for d in _diff(a.get(k), b.get(k), f"{path}.{k}")]
    return [] if a == b else [f"{path}: {a!r} != {b!r}"]


def test_link_risk_max_scores_are_the_records_own(storage: Any) -> None:
    from factbridge.pipeline.records import LINKRISK, LinkRisks

    docs = [
        ("p1", {"post_id": "p1", "urls": [{"url": "a", "score": 0.123456}, {"url": "b", "score": "0.9"}, "junk"], "decided_by": "rule-1"}),
        ("p2", {"post_id": "p2", "urls": [], "decided_by": None}),
        ("p3", {"post_id": "p3", "urls": [{"url": "c", "score": True}, {"url": "d"}], "decided_by": "rule-2"}),
        ("p4", {"post_id": "p4"}),
    ]
    storage.put_docs(ORG, LINKRISK, [(i, d, None) for i, d in docs])
    ids = ["p1", "p2", "p3", "p4", "missing"]
    records = LinkRisks(storage).get(ORG, ids)
    assert LinkRisks(storage).max_scores(ORG, ids) == {i: (r.max_score, r.decided_by) for i, r in records.items()}
    assert LinkRisks(storage).max_scores(ORG, []) == {}


def test_triage_batch_search_and_shared_reads_write_the_same_queue(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each batch's queue entries as the stage writes them (the batch's repeat searches in one
    call, each narrative read once per run, entries built as records) against the way before:
    one search per post, every narrative read again at each gathering, on the same stored state;
    and every entry is what its stored document reads back as."""
    from factbridge.backends.vectors.base import VectorIndex
    from factbridge.pipeline.records import QueueEntry

    captured: list[list[Any]] = []
    monkeypatch.setattr(triage, "_put", lambda storage, org, entries, *rest: captured.append(list(entries)))
    threshold_search, batch_search = triage.search_above, triage.search_batch
    searches: list[int] = []

    def counted_threshold(index: VectorIndex, queries: Any, k: int, embedder_id: str, min_score: float, within: Any = None, held: Any = None) -> Any:
        searches.append(len(queries))
        return threshold_search(index, queries, k, embedder_id, min_score, within, held=held)

    def counted_batch(index: VectorIndex, queries: Any, k: int, embedder_id: str, min_score: float | None = None, within: Any = None) -> Any:
        searches.append(len(queries))
        return batch_search(index, queries, k, embedder_id, min_score, within)

    def each_search(index: VectorIndex, queries: Any, k: int, embedder_id: str, min_score: float | None = None, within: Any = None,
                    held: Any = None) -> Any:
        return [[(i, s) for i, s in index.search(q, k, embedder_id) if min_score is None or s >= min_score] for q in queries]

    cached = triage.TriageReads.narrative_records

    def reread(self: triage.TriageReads, ids: Any) -> Any:
        self.narratives.clear()
        self.absent.clear()
        self.holds.clear()
        return cached(self, ids)

    settings = load_settings(env={}, overrides={
        "data_dir": str(tmp_path), "storage_url": f"sqlite:///{tmp_path / 'desk.db'}", "embedder": "hashing", "embed_cache": "off",
    })
    services = Services(settings)
    try:
        posts = [prepare_post(p) for p in generated_posts(96, "tweet", duplicates=0.4, seed=23)]
        narratives = repeats = 0
        for start in range(0, len(posts), 24):
            batch = posts[start : start + 24]
            services.storage.upsert_posts(ORG, batch)
            monkeypatch.setattr(triage, "search_above", counted_threshold)
            monkeypatch.setattr(triage, "search_batch", counted_batch)
            monkeypatch.setattr(triage.TriageReads, "narrative_records", cached)
            run_stages(services, ORG, batch)
            written = captured[-1]
            assert all(QueueEntry.from_doc(e.id, e.to_doc()) == e for e in written), "an entry is what its document reads back as"
            fast = _entries(captured)
            monkeypatch.setattr(triage, "search_above", each_search)
            monkeypatch.setattr(triage, "search_batch", each_search)
            monkeypatch.setattr(triage.TriageReads, "narrative_records", reread)
            triage.triage_posts(services, ORG, batch)
            before = _entries(captured)
            assert fast == before, _diff(fast, before)[:5]
            narratives += sum(1 for i in fast if i.startswith("narrative:"))
            repeats += sum(1 for d in fast.values() if d["kind"] == "post" and d["components"]["velocity"]["evidence"]["repeats"])
    finally:
        services.close()
    assert narratives >= 3 and repeats >= 10, "the fixture makes narratives and repeats"
    assert searches and max(searches) > 1, "a batch's repeat searches go in one call"


def test_triage_pauses_the_garbage_collector_only_while_it_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Cyclic collection is off during a triage run (nested runs included), on again after it,
    also when the run fails; a collector someone else turned off stays off."""
    import gc

    seen: list[bool] = []
    monkeypatch.setattr(triage, "_triage_posts", lambda services, org, posts: seen.append(gc.isenabled()) or {"queued_posts": 0})
    assert gc.isenabled()
    with collector_paused():
        triage.triage_posts(None, ORG, [])
        assert not gc.isenabled(), "an inner run ending does not resume collection under an outer one"
    assert seen == [False] and gc.isenabled()

    def failing(services: Any, org: str, posts: Any) -> Any:
        raise RuntimeError("boom")

    monkeypatch.setattr(triage, "_triage_posts", failing)
    with pytest.raises(RuntimeError):
        triage.triage_posts(None, ORG, [])
    assert gc.isenabled(), "a failed run resumes collection"
    gc.disable()
    try:
        with collector_paused():
            pass
        assert not gc.isenabled(), "left off when it was off before"
    finally:
        gc.enable()


def test_minhash_permutations_one_at_a_time_are_the_matrix_ones() -> None:
    """The per-permutation minima (one reused buffer) are the integers of the whole
    (permutations x shingles) matrix computed at once, as signatures were before."""
    rng = np.random.default_rng(31)
    hashes = minhash._mix(rng.integers(0, 2**63 - 1, size=5000, dtype=np.int64).astype(np.uint64))
    first = np.concatenate([[0], np.sort(rng.choice(np.arange(1, 5000), size=40, replace=False))])
    with np.errstate(over="ignore"):
        matrix = (minhash._PERM_A[:, None] * hashes[None, :] + minhash._PERM_B[:, None]) >> np.uint64(32)
    assert np.array_equal(minhash._permuted_minima(hashes, first), np.minimum.reduceat(matrix, first, axis=1))
    texts = _texts()
    sigs, valid = minhash._compute_signatures(texts)
    one_by_one = [minhash._compute_signatures([t]) for t in texts]
    assert np.array_equal(sigs, np.vstack([s for s, _ in one_by_one])) and np.array_equal(valid, np.concatenate([v for _, v in one_by_one]))


def test_canonical_folding_is_the_translation_table() -> None:
    """`canonical` folds đ ø ł ß æ œ with `str.replace` where it used `str.translate`: the same text."""
    table = str.maketrans({"đ": "d", "ø": "o", "ł": "l", "ß": "ss", "æ": "ae", "œ": "oe"})
    texts = [*_texts(), "Đường đi ø Łódź straße ÆSIR œuvre ẞ", "đđ ßß ææ", "no such letters"]
    for text in texts:
        assert minhash._fold_extra(text.lower()) == text.lower().translate(table)


def test_narrative_terms_ranked_once_are_the_two_rankings() -> None:
    """A narrative document's `top_terms` and `terms` come from one ranking: what two calls of
    `Counter.most_common` give, ties (in insertion order) included."""
    from collections import Counter

    from factbridge.pipeline.narratives import Narrative

    rng = np.random.default_rng(5)
    for size in (0, 5, 12, 150, 2000):
        terms = Counter({f"t{int(i)}": int(c) for i, c in zip(rng.permutation(size), rng.integers(1, 6, size=size), strict=True)})
        narrative = Narrative(id="nar-1", vec_sum=np.zeros(4, dtype=np.float32), terms=terms, first_seen=1.77e9, last_seen=1.77e9)
        doc = narrative.to_doc("rule")
        assert doc["top_terms"] == [t for t, _ in terms.most_common(12)]
        assert list(doc["terms"].items()) == terms.most_common(100)
        assert narrative.to_doc("rule", top_terms=150)["top_terms"] == [t for t, _ in terms.most_common(150)]
