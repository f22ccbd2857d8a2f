"""Narratives: the parts of a document kept between saves (term ranking, stored recent posts,
topic term sums) give the documents a computation from scratch gives."""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from factbridge.backends.embedders.hashing import HashingEmbedder
from factbridge.models import Post
from factbridge.pipeline import narratives as narr
from factbridge.pipeline.prepare import embedding_text, prepare_post
from factbridge.settings import Settings

T0 = datetime(2026, 3, 1, 8, 0, tzinfo=UTC)


def _from_scratch(n: narr.Narrative) -> narr.Narrative:
    return replace(n, ranked=None, recent_doc=None, rep_doc=None)


def _topic_doc_from_scratch(topic: narr.Topic, narratives: dict[str, narr.Narrative], rule: str) -> dict[str, object]:
    terms: Counter[str] = Counter()
    for nid in topic.narratives:
        terms.update(narratives[nid].terms)
    doc = topic.to_doc(narratives, rule)
    top = [t for t, _ in terms.most_common(12)]
    return {**doc, "top_terms": top, "label": " · ".join(top[:5])}


def test_summed_terms_keep_the_sums_and_the_key_order_of_counter_update() -> None:
    small = narr.Narrative(id="a", vec_sum=np.zeros(2, dtype=np.float32), terms=Counter({"rain": 1, "flood": 2, "dam": 1}))
    large = narr.Narrative(id="b", vec_sum=np.zeros(2, dtype=np.float32), terms=Counter({"dam": 900, "river": 1}))
    later = narr.Narrative(id="c", vec_sum=np.zeros(2, dtype=np.float32), terms=Counter({"bridge": 3, "rain": 4, "flood": 1}))
    ones = narr.Narrative(id="d", vec_sum=np.zeros(2, dtype=np.float32), terms=Counter({"levee": 1, "dam": 1, "rain": 1}))
    for order in ([small, large, later, ones], [large, ones, later, small], [ones, later, small, large], [ones, ones, small]):
        expected: Counter[str] = Counter()
        for n in order:
            expected.update(n.terms)
        summed = narr.summed_terms(order)
        assert list(summed.items()) == list(expected.items())
        for k in (1, 3, 12):
            assert narr.top_counts(summed, k) == expected.most_common(k)


def test_summed_languages_and_a_hundred_ranked_terms_match_counter() -> None:
    rng = np.random.default_rng(3)
    narratives = [
        narr.Narrative(id=f"n{i}", vec_sum=np.zeros(2, dtype=np.float32), languages=Counter({lang: int(rng.integers(1, 4)) for lang in langs}))
        for i, langs in enumerate([["vi", "en"], ["km"], ["en", "fr", "vi"], [], ["fr", "km"]])
    ]
    expected: Counter[str] = Counter()
    for n in narratives:
        expected.update(n.languages)
    summed = narr.summed_languages(narratives)
    assert list(summed.items()) == list(expected.items())
    doc = narr.Topic(id="t", vec_sum=np.zeros(2, dtype=np.float32), narratives=[n.id for n in narratives], first_seen=T0.timestamp(), last_seen=T0.timestamp()).to_doc({n.id: n for n in narratives}, "r")
    assert list(doc["languages"].items()) == expected.most_common()
    for keys in (5, 150, 1999, 2500):  # the sort below and above the heap's threshold, many ties
        terms = Counter({f"w{i}": int(c) for i, c in enumerate(rng.integers(1, 6, size=keys))})
        assert narr.top_counts(terms, 100) == terms.most_common(100)
        assert narr.Narrative(id="x", vec_sum=np.zeros(2, dtype=np.float32), terms=terms).ranked_terms() == terms.most_common(100)


def test_recent_posts_and_ranking_follow_every_new_member() -> None:
    n = narr.Narrative(id="nar-x", vec_sum=np.zeros(2, dtype=np.float32))
    rule = "rule-1"
    base = T0.timestamp()
    for i in range(2 * narr.RECENT_POSTS + 30):  # past the trim of the in-memory list
        n.add_recent((f"p{i}", base + 60 * i, "semantic", 0.9))
        n.terms.update([f"t{i % 7}", f"u{i % 13}"])
        n.ranked = None
        n.size += 1
        n.first_seen, n.last_seen = base, base + 60 * i
        if i % 97 == 0 or i > 2 * narr.RECENT_POSTS:
            doc = n.to_doc(rule)
            assert doc == _from_scratch(n).to_doc(rule)
            assert doc["recent_posts"][-1][0] == f"p{i}" and len(doc["recent_posts"]) == min(i + 1, narr.RECENT_POSTS)
    # a narrative read back from its document continues it the same way
    again = narr.Narrative.from_doc(n.to_doc(rule))
    again.add_recent(("p-next", base + 10**6, "seed", 1.0))
    n.add_recent(("p-next", base + 10**6, "seed", 1.0))
    assert again.to_doc(rule)["recent_posts"] == n.to_doc(rule)["recent_posts"]


def test_engine_documents_equal_documents_computed_from_scratch() -> None:
    """Batches of related posts through one engine: after each batch every touched narrative's
    and topic's document is the one a computation from scratch gives."""
    stories = [
        "flood waters reach the river bank near the old bridge in the city",
        "the health ministry says the vaccine does not cause infertility",
        "power cut across the capital after the storm hit the grid",
        "bank raises interest rates by half a point to fight inflation",
    ]
    posts = []
    for i in range(96):
        story = stories[i % len(stories)]
        extra = " ".join(f"w{(i * 7 + k) % 23}" for k in range(i % 5))
        posts.append(prepare_post(Post(id=f"p{i}", platform="twitter", text=f"{story} {extra} report {i % 3}",
                                       created_at=T0 + timedelta(minutes=9 * i), language="en")))
    vectors = HashingEmbedder().encode_queries([embedding_text(p) for p in posts])
    vectors = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    params = narr.resolve_thresholds(Settings().narratives, "hashing-v1-256", None)
    engine = narr.NarrativeEngine(params, int(vectors.shape[1]))
    rule = narr.decided_by(params)
    multi = 0
    for start in range(0, len(posts), 16):
        _, touched, touched_topics = engine.assign(posts[start : start + 16], vectors[start : start + 16])
        for nid in touched:
            n = engine.narratives[nid]
            assert n.to_doc(rule) == _from_scratch(n).to_doc(rule)
        for tid in touched_topics & engine.topics.keys():
            topic = engine.topics[tid]
            multi += len(topic.narratives) > 1
            assert topic.to_doc(engine.narratives, rule) == _topic_doc_from_scratch(topic, engine.narratives, rule)
    assert multi and any(n.size > 4 for n in engine.narratives.values())  # the sums and rankings were exercised
    ids = [*engine.narratives, *engine.topics]
    assert len(set(ids)) == len(ids) and all(re.fullmatch(r"(nar|top)-[0-9a-f]{20}", i) for i in ids)


def _story_posts(prefix: str, start: datetime, n: int, every_min: float) -> list[Post]:
    text = "Vaccine causes infertility in young women, claims viral video from clinic"
    return [Post(id=f"{prefix}{i}", text=f"{text} {i}", language="en", created_at=start + timedelta(minutes=every_min * i)) for i in range(n)]


def test_narrative_sizes_come_from_a_current_engine_only(storage) -> None:  # type: ignore[no-untyped-def]
    params = Settings(narrative_threshold=0.9, topic_threshold=0.5).narratives
    assert narr.narrative_sizes(storage, "org", ["nar-x"]) is None  # no engine in this process
    posts = _story_posts("a", T0, 6, 10) + [Post(id="lone", text="the bridge over the river closed for repairs", language="en", created_at=T0)]
    vecs = np.zeros((len(posts), 16), dtype=np.float32)
    vecs[:6, 0] = 1.0
    vecs[6, 1] = 1.0
    narr.assign_posts(storage, "org", posts, vecs, params)
    stored = {m.narrative_id for m in narr.NarrativeStore(storage).members("org")}
    docs = narr.NarrativeStore(storage).documents("org", sorted(stored))
    sizes = narr.narrative_sizes(storage, "org", [*sorted(stored), "nar-unknown"])
    assert sizes == {nid: doc["size"] for nid, doc in docs.items()} and sorted(sizes.values()) == [1, 6]
    # another process wrote since (the stored sequence number moved on): the documents are read
    store = narr.NarrativeStore(storage)
    store.bump("org", store.state("org"))  # type: ignore[arg-type]
    assert narr.narrative_sizes(storage, "org", sorted(stored)) is None


def test_bursts_read_only_narratives_big_enough_for_a_burst(hashing_services, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from factbridge.pipeline import bursts, records

    storage, org = hashing_services.storage, hashing_services.settings.org
    params = Settings(narrative_threshold=0.9, topic_threshold=0.5).narratives
    read: list[list[str]] = []
    real_get = records.Narratives.get

    def spy(self, org_: str, ids):  # type: ignore[no-untyped-def]
        read.append(list(ids))
        return real_get(self, org_, ids)

    monkeypatch.setattr(bursts.Narratives, "get", spy)

    def run(posts: list[Post], axis: int) -> dict[str, object]:
        storage.upsert_posts(org, posts)
        vecs = np.zeros((len(posts), 16), dtype=np.float32)
        vecs[:, axis] = 1.0
        narr.assign_posts(storage, org, posts, vecs, params)
        return bursts.bursts_stage(hashing_services, org, posts)

    run(_story_posts("q", T0, 12, 240), 0)
    spike = _story_posts("s", T0 + timedelta(days=2, hours=1), 20, 2)
    lone = [Post(id="lone", text="the bridge over the river closed for repairs", language="en", created_at=T0 + timedelta(days=2, hours=1))]
    read.clear()
    summary = run(spike, 0)
    assert summary["alerts"] == 1 and summary["burst"] == 1
    small = run(lone, 1)
    assert small == {"alerts": 0}
    lone_nid = narr.NarrativeMembers(storage).get(org, ["lone"])["lone"].narrative_id
    assert read and all(lone_nid not in ids for ids in read)  # its document was never read
    # without a current engine every narrative's document is read, and the same alert stands
    store = narr.NarrativeStore(storage)
    store.bump(org, store.state(org))  # type: ignore[arg-type]
    read.clear()
    assert bursts.detect_bursts(storage, org, [lone_nid], (T0 + timedelta(days=2, hours=2)).timestamp(), hashing_services.settings.bursts) == []
    assert read == [[lone_nid]]


def test_an_engine_loaded_while_another_process_writes_loads_again(tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """Another worker's batch is saved between this engine's read of the narratives and its read
    of their members: the members then name a narrative it never read (a KeyError in the next
    assignment; CI's two-worker test hit it once). The state read before and after differ, so
    the engine is loaded again and holds both; a store written during every load is a Conflict
    (the batch is retried), never a half-read engine."""
    import pytest

    from factbridge.backends.storage.sqlite import SQLiteStorage
    from factbridge.errors import Conflict, PreconditionFailed

    url = f"sqlite:///{tmp_path / 'db.sqlite'}"
    mine, theirs = SQLiteStorage(url), SQLiteStorage(url)  # two processes' connections to one store
    mine.migrate()
    params = Settings(narrative_threshold=0.9, topic_threshold=0.5).narratives

    stories = ["Vaccine causes infertility in young women, claims viral video", "The dam upstream broke and the city will flood tonight",
               "Banks will freeze every account on Monday, says a forwarded message", "Salt water cures the virus, a doctor says in a clip"]

    def batch(prefix: str, axis: int) -> tuple[list[Post], np.ndarray]:
        posts = [Post(id=f"{prefix}{i}", text=f"{stories[axis]} {i}", language="en", created_at=T0 + timedelta(minutes=10 * i)) for i in range(4)]
        vecs = np.zeros((4, 16), dtype=np.float32)
        vecs[:, axis] = 1.0
        return posts, vecs

    narr.assign_posts(mine, "org", *batch("a", 0), params)
    narr._ENGINES.pop(mine, None)  # a fresh process: its engine is loaded from the store
    real_members = narr.NarrativeStore.members
    writes = {"left": 1, "done": 0}

    def members_after_a_write(self: narr.NarrativeStore, org: str) -> list[narr.NarrativeMembership]:
        if self.storage is mine and writes["left"]:
            writes["left"] -= 1
            writes["done"] += 1
            narr._ENGINES.pop(theirs, None)
            narr.assign_posts(theirs, "org", *batch(f"b{writes['done']}-", 1 + writes["left"] % 3), params)  # the other worker's batch
        return real_members(self, org)

    monkeypatch.setattr(narr.NarrativeStore, "members", members_after_a_write)
    engine = narr.engine_for(mine, "org", params, 16)
    stored = {m.narrative_id for m in real_members(narr.NarrativeStore(mine), "org")}
    assert stored <= engine.narratives.keys() and len(stored) == 2, "loaded again: both workers' narratives"
    assert engine.seq == narr.NarrativeStore(mine).state("org").seq  # type: ignore[union-attr]
    narr.assign_posts(mine, "org", *batch("c", 0), params)  # joins a known narrative: no KeyError

    monkeypatch.setattr(narr.NarrativeStore, "members", real_members)
    # Two workers' engines at the same number, both batches joining one narrative: the second
    # write is refused whole (it would have stored the narrative without the first one's posts),
    # and the batch's next attempt, on an engine loaded since, holds both.
    narr._ENGINES.pop(theirs, None)
    ours, other = narr.engine_for(mine, "org", params, 16), narr.engine_for(theirs, "org", params, 16)
    assert ours.seq == other.seq
    narr.assign_posts(mine, "org", *batch("d", 0), params)
    posts, vecs = batch("e", 0)  # the other worker checked its engine before that write
    assignments, touched, topics = other.assign(posts, vecs)
    before = narr.NarrativeStore(mine).state("org")
    with pytest.raises(PreconditionFailed):
        other.save(theirs, "org", posts, assignments, touched, topics)
    assert narr.NarrativeStore(mine).state("org") == before and not narr.NarrativeMembers(mine).get("org", [p.id for p in posts])
    assert narr.narrative_sizes(theirs, "org", sorted(other.narratives)) is None, "not current: the documents are read"
    narr.assign_posts(theirs, "org", posts, vecs, params)  # the batch's next attempt
    story = narr.NarrativeMembers(mine).get("org", ["a0"])["a0"].narrative_id
    assert narr.NarrativeStore(mine).documents("org", [story])[story]["size"] == 16  # a, c, d and e: four posts each

    # assign_posts assigns again itself when another worker's batch is saved during its assignment
    real_hits, written = narr.factcheck_hits, []

    def hits_after_their_batch(storage, org, ids):  # type: ignore[no-untyped-def]
        if storage is mine and not written:
            written.append(1)
            narr.assign_posts(theirs, "org", *batch("f", 0), params)
        return real_hits(storage, org, ids)

    monkeypatch.setattr(narr, "factcheck_hits", hits_after_their_batch)
    narr.assign_posts(mine, "org", *batch("g", 0), params)
    monkeypatch.setattr(narr, "factcheck_hits", real_hits)
    assert written and narr.NarrativeStore(mine).documents("org", [story])[story]["size"] == 24
    engine = narr._ENGINES[mine]["org"]
    assert engine.holds(narr.NarrativeStore(mine).state("org")) and engine.narratives[story].size == 24
    again = narr.engine_for(theirs, "org", params, 16)
    assert {m.narrative_id for m in real_members(narr.NarrativeStore(mine), "org")} <= again.narratives.keys()

    # a refresh of fact-check lists (after a recheck) that another worker's batch is saved during
    # computes them again over what that batch wrote, never the document it read before
    from factbridge.models import MatchCandidate

    mine.replace_matches("org", "a0", [MatchCandidate(factcheck_id="fc-1", rank=1, fused_score=0.9, decision="match", decided_by="test")])
    real_members_of, batches = narr.narrative_member_ids, []

    def members_of_after_their_batch(storage, org, docs):  # type: ignore[no-untyped-def]
        if not batches:
            batches.append(1)
            narr.assign_posts(theirs, "org", *batch("h", 0), params)
        return real_members_of(storage, org, docs)

    monkeypatch.setattr(narr, "narrative_member_ids", members_of_after_their_batch)
    refreshed = narr.refresh_factchecks(mine, "org", ["a0"])
    monkeypatch.setattr(narr, "narrative_member_ids", real_members_of)
    doc = narr.NarrativeStore(mine).documents("org", [story])[story]
    assert batches and refreshed["changed"] == [story] and doc["size"] == 28 and [f["factcheck_id"] for f in doc["factchecks"]] == ["fc-1"]

    # A write during the load: the engine catches up from there (only what changed is read again).
    # A write during every read, the load's and each catch-up's: Conflict, the batch is retried.
    real_documents = narr.NarrativeStore.documents

    def documents_after_a_write(self: narr.NarrativeStore, org: str, ids):  # type: ignore[no-untyped-def]
        members_after_a_write(self, org)
        return real_documents(self, org, ids)

    monkeypatch.setattr(narr.NarrativeStore, "members", members_after_a_write)
    narr._ENGINES.pop(mine, None)
    writes["left"] = 1
    loaded = narr.engine_for(mine, "org", params, 16)
    assert loaded.holds(narr.NarrativeStore(mine).state("org")) and not writes["left"]
    fresh = narr.NarrativeEngine(params, 16)
    fresh.load(mine, "org")
    _same_engines(loaded, fresh)
    monkeypatch.setattr(narr.NarrativeStore, "documents", documents_after_a_write)
    narr._ENGINES.pop(mine, None)
    writes["left"] = narr.LOAD_ATTEMPTS
    with pytest.raises(Conflict, match="changed while they were read"):
        narr.engine_for(mine, "org", params, 16)
    assert not writes["left"]
    mine.close()
    theirs.close()


def _stored_equals_engine(storage, org: str, engine: narr.NarrativeEngine) -> None:  # type: ignore[no-untyped-def]
    """Every narrative's and live topic's stored document is the engine's, and an engine loaded
    from the store puts every narrative in the topic the writer has it in."""
    rule = narr.decided_by(engine.params)
    stored = dict(narr.iter_docs(storage, org, narr.NARRATIVES))
    assert stored.keys() == engine.narratives.keys()
    for nid, n in engine.narratives.items():
        assert stored[nid] == n.to_doc(rule), nid
    topics = dict(narr.NarrativeStore(storage).topic_documents(org))
    for tid, t in engine.topics.items():
        assert topics[tid] == t.to_doc(engine.narratives, rule), tid
    assert {tid for tid, doc in topics.items() if doc.get("merged_into") is None} == engine.topics.keys()
    loaded = narr.NarrativeEngine(engine.params, engine.dim)
    loaded.load(storage, org)
    assert not loaded._repaired and not loaded._unplaced
    assert {nid: n.topic for nid, n in loaded.narratives.items()} == {nid: n.topic for nid, n in engine.narratives.items()}
    assert {tid: (sorted(t.narratives), t.size) for tid, t in loaded.topics.items()} == {tid: (sorted(t.narratives), t.size) for tid, t in engine.topics.items()}


def _drifting_stream(n: int, dim: int = 8, seed: int = 5) -> tuple[list[Post], np.ndarray]:
    """Posts around a few stories whose directions drift towards each other: narratives start in
    topics of their own and the topics merge, some into topics no batch touched."""
    rng = np.random.default_rng(seed)
    centers = np.eye(dim, dtype=np.float32)[:5] + 0.35
    posts, vecs = [], []
    for i in range(n):
        k = int(rng.integers(0, 5))
        drift = min(1.0, i / n * 1.6)
        v = centers[k] * (1 - drift) + centers.mean(axis=0) * drift + rng.normal(0, 0.12, dim).astype(np.float32)
        vecs.append(v / np.linalg.norm(v))
        posts.append(Post(id=f"p{i:04d}", text=f"story {k} told again {i} {rng.integers(0, 10**6)}", language="en", created_at=T0 + timedelta(minutes=7 * i)))
    return posts, np.stack(vecs).astype(np.float32)


def test_the_store_after_every_batch_is_what_the_engine_holds(storage) -> None:  # type: ignore[no-untyped-def]
    """A topic merge moves the narratives of the topic merged away: their documents named it and
    the topic that took it in kept its old document when no batch touched it, so the next process
    to load (a restart, another worker) put those narratives in a topic it did not have (a
    KeyError at their next post). Every batch's store now loads into the engine that wrote it."""
    params = Settings(narrative_threshold=0.97, topic_threshold=0.8).narratives
    posts, vecs = _drifting_stream(240)
    merges = 0
    for start in range(0, len(posts), 12):
        narr.assign_posts(storage, "org", posts[start : start + 12], vecs[start : start + 12], params)
        engine = narr._ENGINES[storage]["org"]
        _stored_equals_engine(storage, "org", engine)
        merges = sum(len(t.merged) for t in engine.topics.values())
    assert merges >= 3, merges
    # a topic a batch grew towards a bigger one that no batch touched merges into it
    w, x = [0.5, 0.866, 0.0], [0.8, 0.577, 0.164]
    steps = [("u", [[1.0, 0.0, 0.0]] * 3), ("w", [w]), ("x", [x])]
    words = {"u": "the river dam broke upstream", "w": "ministers resign over budget vote", "x": "heavy snowfall closes mountain pass"}
    other = Settings(narrative_threshold=0.97, topic_threshold=0.6).narratives
    for name, rows in steps:
        batch = [Post(id=f"{name}{i}", text=f"{words[name]} {i}", language="en", created_at=T0 + timedelta(minutes=i)) for i in range(len(rows))]
        narr.assign_posts(storage, "other", batch, np.asarray(rows, dtype=np.float32), other)
        _stored_equals_engine(storage, "other", narr._ENGINES[storage]["other"])
    (kept,) = narr._ENGINES[storage]["other"].topics.values()
    assert kept.size == 5 and len(kept.merged) == 1 and "u0" in str(narr.NarrativeStore(storage).documents("other", kept.narratives))
    narr._ENGINES.pop(storage)  # a restart: a post joins every narrative of a merged-away topic
    more, more_vecs = _drifting_stream(60, seed=6)
    more = [p.model_copy(update={"id": f"q{p.id}", "created_at": p.created_at + timedelta(days=1)}) for p in more]
    narr.assign_posts(storage, "org", more, more_vecs, params)
    _stored_equals_engine(storage, "org", narr._ENGINES[storage]["org"])


@pytest.mark.parametrize("memory_days", [0.0, 365.0], ids=["keep-all", "horizon"])
def test_a_store_written_before_merges_wrote_the_moved_narratives_is_repaired_at_load(storage, memory_days, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """What the old merge left: the narratives of the topic merged away name it, and the topic
    that took it in (untouched by the batch) kept its old document. A load puts them back in it
    by the `merged_into` chain (a narrative whose chain ends nowhere is placed as a new one is),
    and the next batch writes them. A load within a horizon follows the chains from its members'
    narratives, without reading every topic."""
    params = replace(Settings(narrative_threshold=0.97, topic_threshold=0.6).narratives, memory_days=memory_days)
    texts = ["the river dam broke upstream"] * 3 + ["ministers resign over budget vote", "heavy snowfall closes mountain pass"]
    rows = [[1.0, 0.0, 0.0, 0.0]] * 3 + [[0.5, 0.866, 0.0, 0.0], [0.8, 0.577, 0.164, 0.0]]
    for i, (text, row) in enumerate(zip(texts, rows, strict=True)):
        post = Post(id=f"p{i}", text=f"{text} {i}", language="en", created_at=T0 + timedelta(minutes=i))
        narr.assign_posts(storage, "org", [post], np.asarray([row], dtype=np.float32), params)
    engine = narr._ENGINES[storage].pop("org")
    (kept,) = engine.topics.values()
    dropped = kept.merged[0]["topic_id"]
    members = narr.NarrativeMembers(storage).get("org", ["p0", "p3", "p4"])
    home, moved = members["p0"].narrative_id, [members["p3"].narrative_id, members["p4"].narrative_id]
    assert moved[0] != moved[1] and home not in moved
    # the damage: the kept topic's document as before the merge, the moved narratives naming the old topic
    store = narr.NarrativeStore(storage)
    docs = store.documents("org", [home, *moved])
    kept_doc = dict(store.topic_documents("org"))[kept.id]
    before = {**kept_doc, "narratives": [home], "size": 3, "vector_sum": narr._encode_vec(narr._decode_vec(docs[home]["vector_sum"]))}
    storage.put_docs("org", narr.TOPICS, [(kept.id, before, None)])
    storage.put_docs("org", narr.NARRATIVES, [(moved[0], {**docs[moved[0]], "topic_id": dropped}, None), (moved[1], {**docs[moved[1]], "topic_id": "top-000000000000"}, None)])

    if memory_days:
        for every in ("topic_documents", "live_topics", "narratives"):
            monkeypatch.setattr(narr.NarrativeStore, every, lambda *a: pytest.fail("a load within a horizon read every document"))
    loaded = narr.NarrativeEngine(params, 4)
    loaded.load(storage, "org")
    monkeypatch.undo()
    assert loaded.narratives[moved[0]].topic == kept.id and loaded._unplaced == [moved[1]]
    assert loaded._repaired == set(moved) and loaded.narratives[moved[1]].topic == ""
    restored = loaded.topics[kept.id]
    assert restored.size == 4 and sorted(restored.narratives) == sorted([home, moved[0]])
    # the next batch (its post joins the first story) places the unplaced one and writes all three
    narr.assign_posts(storage, "org", [Post(id="p5", text="the river dam broke upstream again", language="en", created_at=T0 + timedelta(minutes=9))],
                      np.asarray([[1.0, 0.0, 0.0, 0.0]], dtype=np.float32), params)
    after = narr._ENGINES[storage]["org"]
    _stored_equals_engine(storage, "org", after)
    assert {after.narratives[nid].topic for nid in moved} <= after.topics.keys()
    assert sum(t.size for t in after.topics.values()) == sum(n.size for n in after.narratives.values()) == 6
    assert sorted(nid for t in after.topics.values() for nid in t.narratives) == sorted(after.narratives)


def _same_engines(a: narr.NarrativeEngine, b: narr.NarrativeEngine) -> None:
    """Two engines that hold the same store: narratives (their documents), topics, every post's
    narrative and signature, the centroid and topic rows."""
    rule = narr.decided_by(a.params)
    assert (a.seq, a.token) == (b.seq, b.token)
    assert {nid: n.to_doc(rule) for nid, n in a.narratives.items()} == {nid: n.to_doc(rule) for nid, n in b.narratives.items()}
    assert {tid: (sorted(t.narratives), t.size, t.vec_sum.tobytes()) for tid, t in a.topics.items()} == \
        {tid: (sorted(t.narratives), t.size, t.vec_sum.tobytes()) for tid, t in b.topics.items()}
    for e in (a, b):
        assert sorted(e._post_row) == sorted(a._post_row) and len(e._post_ids) == len(e._post_row)
    for pid in a._post_row:
        ra, rb = a._post_row[pid], b._post_row[pid]
        assert a._post_narrative[ra] == b._post_narrative[rb] and a._has_sig[ra] == b._has_sig[rb] and (a._sigs[ra] == b._sigs[rb]).all()
    for nid in a.narratives:
        assert np.array_equal(a._centroids[a._row[nid]], b._centroids[b._row[nid]]) and a._last_seen[a._row[nid]] == b._last_seen[b._row[nid]]
    for tid in a.topics:
        assert np.array_equal(a._topic_centroids[a._topic_row[tid]], b._topic_centroids[b._topic_row[tid]])
        assert np.array_equal(a._topic_window[a._topic_row[tid]], b._topic_window[b._topic_row[tid]])


def test_an_engine_behind_another_workers_writes_catches_up_from_their_change_entries(tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """Two workers taking turns: each one's engine is behind the other's last write, and reads
    only what that write changed (its members, narratives, topics), never everything stored; it
    then holds what an engine loaded from scratch holds. An engine that cannot (assigned posts it
    never stored, too far behind, an entry overwritten) is loaded again."""
    from factbridge.backends.storage.sqlite import SQLiteStorage

    url = f"sqlite:///{tmp_path / 'db.sqlite'}"
    mine, theirs = SQLiteStorage(url), SQLiteStorage(url)
    mine.migrate()
    params = Settings(narrative_threshold=0.97, topic_threshold=0.8).narratives
    loads: list[int] = []
    real_load = narr.NarrativeEngine.load

    def counted_load(self: narr.NarrativeEngine, storage, org: str) -> None:  # type: ignore[no-untyped-def]
        loads.append(1)
        real_load(self, storage, org)

    monkeypatch.setattr(narr.NarrativeEngine, "load", counted_load)
    posts, vecs = _drifting_stream(240)
    copies = {}
    for i, start in enumerate(range(0, len(posts), 12)):
        storage = (mine, theirs)[i % 2]
        chunk, chunk_vecs = posts[start : start + 12], vecs[start : start + 12]
        if i >= 2:  # a copy of a post the other worker stored in its last batch: found by the signature caught up
            earlier = posts[start - 12]
            copies[f"copy{i}"] = earlier.id
            chunk = [*chunk, Post(id=f"copy{i}", text=earlier.text, language="en", created_at=chunk[-1].created_at)]
            chunk_vecs = np.vstack([chunk_vecs, vecs[start - 12]])
        narr.assign_posts(storage, "org", chunk, chunk_vecs, params)
        fresh = narr.NarrativeEngine(params, 8)
        real_load(fresh, mine, "org")
        _same_engines(narr._ENGINES[storage]["org"], fresh)
    assert len(loads) == 2, "each worker loaded once, at its first batch"
    assert sum(len(t.merged) for t in narr._ENGINES[mine]["org"].topics.values()) >= 3  # merges crossed over
    found = narr.NarrativeMembers(mine).get("org", [*copies, *copies.values()])
    assert all(found[c].method == "near-duplicate" and found[c].neighbour == o and found[c].narrative_id == found[o].narrative_id for c, o in copies.items())

    # a topic both engines hold is merged away by one worker's batch: the other's is retired too
    w, x = [0.5, 0.866, 0.0], [0.8, 0.577, 0.164]
    steps = [("the river dam broke upstream", [[1.0, 0.0, 0.0]] * 3), ("ministers resign over budget vote", [w]), ("heavy snowfall closes mountain pass", [x])]
    other = Settings(narrative_threshold=0.97, topic_threshold=0.6).narratives
    for i, (text, rows) in enumerate(steps):
        batch = [Post(id=f"t{i}-{k}", text=f"{text} {k}", language="en", created_at=T0 + timedelta(minutes=i)) for k in range(len(rows))]
        narr.assign_posts((mine, theirs)[i % 2], "other", batch, np.asarray(rows, dtype=np.float32), other)
    dropped = {tid for tid, doc in narr.NarrativeStore(mine).topic_documents("other") if doc.get("merged_into")}
    assert len(dropped) == 1 and dropped <= narr._ENGINES[theirs]["other"].topics.keys()
    loads.clear()
    caught_up = narr.engine_for(theirs, "other", other, 3)
    assert not loads and not dropped & caught_up.topics.keys()
    fresh = narr.NarrativeEngine(other, 3)
    real_load(fresh, mine, "other")
    _same_engines(caught_up, fresh)

    # an engine with posts assigned and not stored (its write failed) is loaded again
    ours = narr._ENGINES[mine]["org"]
    ours.assign(posts[:0], vecs[:0])
    narr.assign_posts(theirs, "org", *_drifting_stream(3, seed=8), params)
    loads.clear()
    assert narr.engine_for(mine, "org", params, 8) is not ours and len(loads) == 1
    # further behind than the entries kept, or an entry overwritten: loaded again
    for behind, tamper in ((narr.CATCH_UP_MAX + 1, False), (2, True)):
        ours = narr._ENGINES[mine]["org"]
        store = narr.NarrativeStore(theirs)
        for _ in range(behind):
            store.bump("org", store.state("org"))  # type: ignore[arg-type]
        if tamper:
            slot = narr._change_slot(store.state("org").seq)  # type: ignore[union-attr]
            entry = theirs.get_docs("org", narr.CHANGES, [slot])[slot]
            theirs.put_docs("org", narr.CHANGES, [(slot, {**entry, "after": "0" * 32}, None)])
        loads.clear()
        assert narr.engine_for(mine, "org", params, 8) is not ours and len(loads) == 1
        fresh = narr.NarrativeEngine(params, 8)
        real_load(fresh, theirs, "org")
        _same_engines(narr._ENGINES[mine]["org"], fresh)
    mine.close()
    theirs.close()


def _days_of_stories(days: int, per_story: int = 4, dim: int = 32) -> list[tuple[list[Post], np.ndarray]]:
    """A batch a day of three stories of that day (their own directions and words: no story
    crosses days), so topics go quiet after their day."""
    rng = np.random.default_rng(11)
    batches = []
    for d in range(days):
        posts, vecs = [], []
        for k in range(3):
            axis = (3 * d + k) % dim
            words = " ".join(f"w{d}x{k}y{j}" for j in range(8))
            for i in range(per_story):
                v = np.eye(dim, dtype=np.float32)[axis] + rng.normal(0, 0.05, dim).astype(np.float32)
                vecs.append(v / np.linalg.norm(v))
                posts.append(Post(id=f"d{d}-{k}-{i}", text=f"{words} number {i} {rng.integers(0, 10**6)}", language="en",
                                  created_at=T0 + timedelta(days=d, hours=k, minutes=7 * i)))
        batches.append((posts, np.stack(vecs)))
    return batches


def _partition(storage, org: str) -> set[frozenset[str]]:  # type: ignore[no-untyped-def]
    groups: dict[str, set[str]] = {}
    for m in narr.NarrativeStore(storage).members(org):
        groups.setdefault(m.narrative_id, set()).add(m.post_id)
    return {frozenset(g) for g in groups.values()}


def test_an_engine_with_a_memory_horizon_keeps_only_what_is_within_it(tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """`narrative_memory_days`: the engine keeps the members within it of the newest post and the
    topics active within it (with their narratives); the store keeps everything. The same stream
    gives the same narratives as an engine that keeps everything, except for a copy of a post
    older than the horizon (a new narrative); a post seen before keeps its narrative although
    its member was dropped; a load keeps what is within the horizon; a catch-up that reads a
    narrative whose topic it dropped (a worker keeping everything joined it) brings both back."""
    from factbridge.backends.storage.sqlite import SQLiteStorage

    bounded_url = f"sqlite:///{tmp_path / 'bounded.sqlite'}"
    bounded, kept_all, other = SQLiteStorage(bounded_url), SQLiteStorage(f"sqlite:///{tmp_path / 'all.sqlite'}"), SQLiteStorage(bounded_url)
    bounded.migrate()
    kept_all.migrate()
    base = Settings(narrative_threshold=0.9, topic_threshold=0.8).narratives
    params = replace(base, memory_days=2.0)
    batches = _days_of_stories(10)
    for d, (posts, vecs) in enumerate(batches):
        narr.assign_posts(bounded, "org", posts, vecs, params)
        narr.assign_posts(kept_all, "org", posts, vecs, base)
        engine = narr._ENGINES[bounded]["org"]
        times = engine._post_times[: len(engine._post_ids)]
        assert (times >= engine.cutoff).all() and all(t.last_seen >= engine.cutoff for t in engine.topics.values())
        if d >= 4:  # about the last three days (dropped in steps of 3 hours)
            assert 24 <= len(engine._post_ids) <= 36 and len(engine._post_ids) < (d + 1) * 12
            assert {nid for t in engine.topics.values() for nid in t.narratives} == engine.narratives.keys()
        assert _partition(bounded, "org") == _partition(kept_all, "org")
    full = narr._ENGINES[kept_all]["org"]
    assert len(full._post_ids) == 120 and engine.cutoff > (T0 + timedelta(days=6)).timestamp()

    # a copy of a day-0 post: a new narrative here, the old one's where everything is kept
    old = batches[0][0][0]
    copy = [Post(id="copy", text=old.text, language="en", created_at=T0 + timedelta(days=9, hours=5))]
    copy_vec = batches[0][1][:1]
    narr.assign_posts(bounded, "org", copy, copy_vec, params)
    narr.assign_posts(kept_all, "org", copy, copy_vec, base)
    here, there = narr.NarrativeMembers(bounded).get("org", ["copy"])["copy"], narr.NarrativeMembers(kept_all).get("org", ["copy"])["copy"]
    assert (here.method, there.method, there.neighbour) == ("seed", "near-duplicate", old.id)
    # a post seen before, delivered again: it keeps its narrative (its member was dropped from memory)
    before = narr.NarrativeMembers(bounded).get("org", [old.id])[old.id]
    summary = narr.assign_posts(bounded, "org", [old], copy_vec, params)
    assert summary["assigned"] == 0 and narr.NarrativeMembers(bounded).get("org", [old.id])[old.id] == before
    assert narr.written_narratives(bounded, "org", [old.id]) is not None
    assert narr.written_narratives(bounded, "org", [old.id])[0] == {old.id: before.narrative_id}  # type: ignore[index]

    # a load keeps what is within the horizon of the newest member, and reads only the topics
    # and narratives active within it (not the ten days' topics)
    read: list[str] = []
    real_topics, real_narratives = narr.NarrativeStore.topic_documents_of, narr.NarrativeStore.documents

    def topics_read(self, org, ids):  # type: ignore[no-untyped-def]
        read.extend(ids)
        return real_topics(self, org, ids)

    def narratives_read(self, org, ids):  # type: ignore[no-untyped-def]
        read.extend(ids)
        return real_narratives(self, org, ids)

    monkeypatch.setattr(narr.NarrativeStore, "topic_documents_of", topics_read)
    monkeypatch.setattr(narr.NarrativeStore, "documents", narratives_read)
    for every in ("topic_documents", "live_topics", "narratives"):
        monkeypatch.setattr(narr.NarrativeStore, every, lambda *a: pytest.fail("a load within a horizon read every document"))
    loaded = narr.NarrativeEngine(params, 32)
    loaded.load(bounded, "org")
    monkeypatch.undo()
    assert len(read) == len(set(read)) == len(loaded.topics) + len(loaded.narratives), "each kept topic and narrative read once, nothing else"
    assert loaded.cutoff == loaded.newest - 2 * 86400 and loaded.newest == (T0 + timedelta(days=9, hours=5)).timestamp()
    stored_times = {m.post_id: narr._parse_iso(m.time) for m in narr.NarrativeStore(bounded).members("org")}
    assert sorted(loaded._post_row) == sorted(pid for pid, ts in stored_times.items() if ts >= loaded.cutoff)
    assert loaded.topics.keys() == {t.id for t in narr.NarrativeStore(bounded).live_topics("org") if t.last_seen >= loaded.cutoff}
    assert {nid for t in loaded.topics.values() for nid in t.narratives} == loaded.narratives.keys()

    # a worker that keeps everything joins a day-0 narrative; the bounded engine reads it back with its topic
    narr._ENGINES.pop(other, None)
    late = [Post(id="late", text=batches[0][0][1].text + " again", language="en", created_at=T0 + timedelta(days=9, hours=6))]
    narr.assign_posts(other, "org", late, batches[0][1][1:2], base)
    joined = narr.NarrativeMembers(bounded).get("org", ["late", batches[0][0][1].id])
    assert joined["late"].narrative_id == joined[batches[0][0][1].id].narrative_id and joined["late"].method == "near-duplicate"
    dropped = joined["late"].narrative_id
    assert dropped not in engine.narratives
    caught = narr.engine_for(bounded, "org", params, 32)
    assert caught is engine and dropped in caught.narratives and caught.narratives[dropped].topic in caught.topics
    assert {nid for t in caught.topics.values() for nid in t.narratives} <= caught.narratives.keys()
    # a refresh of a dropped narrative's fact-check list (a recheck in another process) writes
    # the narrative alone: read back, it brings its topic and the topic's narratives back
    from factbridge.models import MatchCandidate

    day1 = batches[1][0][0].id
    refreshed = narr.NarrativeMembers(bounded).get("org", [day1])[day1].narrative_id
    assert refreshed not in caught.narratives
    other.replace_matches("org", day1, [MatchCandidate(factcheck_id="fc-1", rank=1, fused_score=0.9, decision="match", decided_by="test")])
    assert narr.refresh_factchecks(other, "org", [day1])["changed"] == [refreshed]
    assert narr.engine_for(bounded, "org", params, 32) is caught and refreshed in caught.narratives
    assert caught.narratives[refreshed].topic in caught.topics and caught.narratives[refreshed].factchecks.keys() == {"fc-1"}
    assert {nid for t in caught.topics.values() for nid in t.narratives} <= caught.narratives.keys()
    later = [Post(id="next", text="an unrelated story days later", language="en", created_at=T0 + timedelta(days=12))]
    narr.assign_posts(bounded, "org", later, batches[1][1][:1], params)  # and drops them again once quiet that long, without a KeyError
    _stored = narr.NarrativeStore(bounded).documents("org", [dropped])[dropped]
    assert _stored["size"] == 5 and dropped not in narr._ENGINES[bounded]["org"].narratives
    for storage in (bounded, kept_all, other):
        storage.close()


def test_only_the_narratives_and_topics_active_in_time_are_compared_and_the_choices_stay_the_same(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """A long-running engine compares a chunk only with the narratives active within the gap of
    its oldest post, and a new narrative only with the time-compatible topics: the same
    narratives and topics as comparing with all of them (then masking), at a cost that does not
    grow with what went quiet."""
    import itertools

    params = Settings(narrative_threshold=0.97, topic_threshold=0.8).narratives
    batches = _days_of_stories(30, dim=16)
    real = narr._rows_where

    def run(restrict: bool) -> tuple[list[tuple[str, ...]], list[bool]]:
        ids, gathered = itertools.count(), []

        def rows_where(mask):  # type: ignore[no-untyped-def]
            rows = real(mask) if restrict else None
            gathered.append(rows is not None)
            return rows

        monkeypatch.setattr(narr, "_new_id", lambda prefix, seed: f"{prefix}-{next(ids):020d}")
        monkeypatch.setattr(narr, "_rows_where", rows_where)
        engine = narr.NarrativeEngine(params, 16)
        out = []
        for posts, vecs in batches:
            assignments, _, _ = engine.assign(posts, vecs)
            out += [(a.post_id, a.narrative_id, a.method, a.neighbour, engine.narratives[a.narrative_id].topic) for a in assignments]
        return out, gathered

    runs = [run(True)[0], run(False)[0]]
    gathered = run(True)[1]
    assert sum(gathered) > len(gathered) / 2, "most comparisons gathered the active rows only (a quarter or fewer)"
    assert runs[0] == runs[1] and len({r[1] for r in runs[0]}) > 30


def test_an_assignment_that_fails_half_way_leaves_an_engine_that_is_loaded_again(storage, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """An exception in the middle of an assignment (some narratives updated in memory, nothing
    stored): the engine no longer counts as holding the store, and the next batch runs on an
    engine loaded from it, not on the half-updated one."""
    import pytest

    params = Settings(narrative_threshold=0.9, topic_threshold=0.5).narratives
    posts = _story_posts("a", T0, 6, 10)
    vecs = np.zeros((6, 16), dtype=np.float32)
    vecs[:, 0] = 1.0
    narr.assign_posts(storage, "org", posts[:3], vecs[:3], params)
    engine = narr._ENGINES[storage]["org"]
    real, calls = narr.NarrativeEngine._add_member, []

    def fails_at_the_second(self, *args):  # type: ignore[no-untyped-def]
        calls.append(1)
        if len(calls) == 2:
            raise RuntimeError("disk full")
        return real(self, *args)

    monkeypatch.setattr(narr.NarrativeEngine, "_add_member", fails_at_the_second)
    with pytest.raises(RuntimeError, match="disk full"):
        narr.assign_posts(storage, "org", posts[3:], vecs[3:], params)
    monkeypatch.setattr(narr.NarrativeEngine, "_add_member", real)
    assert not engine.holds(narr.NarrativeStore(storage).state("org"))
    narr.assign_posts(storage, "org", posts[3:], vecs[3:], params)
    again = narr._ENGINES[storage]["org"]
    assert again is not engine
    nid = narr.NarrativeMembers(storage).get("org", ["a0"])["a0"].narrative_id
    assert again.narratives[nid].size == 6 == narr.NarrativeStore(storage).documents("org", [nid])[nid]["size"], "the first post of the failed try counted once"


_SAME_RUN = """
import json, sys
sys.path.insert(0, sys.argv[1])
from test_narratives_save import _drifting_stream, narr, Settings
params = Settings(narrative_threshold=0.97, topic_threshold=0.8).narratives
posts, vecs = _drifting_stream(240)
engine = narr.NarrativeEngine(params, 8)
out = []
for start in range(0, len(posts), 12):
    assignments, _, _ = engine.assign(posts[start : start + 12], vecs[start : start + 12])
    out += [(a.post_id, a.narrative_id, a.method, engine.narratives[a.narrative_id].topic) for a in assignments]
topics = {tid: (sorted(t.narratives), [(m["topic_id"], m["cosine"]) for m in t.merged]) for tid, t in engine.topics.items()}
print(json.dumps({"assigned": out, "topics": topics}, sort_keys=True))
"""


def test_the_same_stream_gives_the_same_narratives_topics_and_ids_in_every_run(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """Narrative and topic ids come from their first post (or narrative) and the write number,
    not from chance: two runs of one stream, in processes with different string hashing (set
    orders), give the same ids, the same topic merges in the same order and the same topics.
    With random ids the merges, taken in id order, differed by run (PHEME topic ARI 0.955-0.958).
    A new id that is already held (the same post twice in a batch) is made again."""
    import json
    import os
    import subprocess
    import sys
    from pathlib import Path

    script = tmp_path / "same_run.py"
    script.write_text(_SAME_RUN, encoding="utf-8")
    runs = [
        subprocess.run([sys.executable, str(script), str(Path(__file__).parent)], env={**os.environ, "PYTHONHASHSEED": seed},
                       capture_output=True, text=True, timeout=120, check=True).stdout
        for seed in ("1", "2")
    ]
    assert runs[0] == runs[1]
    topics = json.loads(runs[0])["topics"]
    assert sum(len(merged) for _, merged in topics.values()) >= 3, "merges were made, in the same order"
    engine = narr.NarrativeEngine(Settings().narratives, 8)
    engine.seq = 7
    first = engine._fresh_id("nar", "p1")
    assert re.fullmatch(r"nar-[0-9a-f]{20}", first) and first == narr._new_id("nar", "7\x1fp1")
    engine.narratives[first] = narr.Narrative(id=first, vec_sum=np.zeros(8, dtype=np.float32))
    assert engine._fresh_id("nar", "p1") == narr._new_id("nar", "7\x1fp1\x1f1") != first
    assert engine._fresh_id("top", "p1") == narr._new_id("top", "7\x1fp1"), "a topic id is checked against the topics held"


@pytest.mark.parametrize("memory_days", [0.0, 365.0], ids=["keep-all", "horizon"])
def test_a_refused_write_is_taken_back_and_caught_up_not_loaded_again(tmp_path, monkeypatch, memory_days) -> None:  # type: ignore[no-untyped-def]
    """Another worker's batch is stored while this worker assigns its own: this worker's write
    is refused, its assignment is taken back (the narratives and topics it changed read as
    stored now, the rest cut back to where it started) and the engine catches up from the other
    write's change entry, instead of loading everything again. After every batch the engine
    equals a fresh load of the store and the store equals the engine, over a stream whose topics
    merge (both workers' merges taken back and redone)."""
    from factbridge.backends.storage.sqlite import SQLiteStorage

    url = f"sqlite:///{tmp_path / 'db.sqlite'}"
    mine, theirs = SQLiteStorage(url), SQLiteStorage(url)
    mine.migrate()
    params = replace(Settings(narrative_threshold=0.97, topic_threshold=0.8).narratives, memory_days=memory_days)
    loads: list[int] = []
    taken: list[bool] = []
    real_load, real_save, real_take_back = narr.NarrativeEngine.load, narr.NarrativeEngine.save, narr.NarrativeEngine.take_back
    theirs_next: list[tuple[list[Post], np.ndarray]] = []

    def counted_load(self, storage, org):  # type: ignore[no-untyped-def]
        loads.append(1)
        real_load(self, storage, org)

    def save_after_theirs(self, storage, *args):  # type: ignore[no-untyped-def]
        if storage is mine and theirs_next:  # the other worker's batch lands during this assignment
            narr.assign_posts(theirs, "org", *theirs_next.pop(), params)
        real_save(self, storage, *args)

    def counted_take_back(self, storage, org):  # type: ignore[no-untyped-def]
        taken.append(real_take_back(self, storage, org))
        return taken[-1]

    monkeypatch.setattr(narr.NarrativeEngine, "load", counted_load)
    monkeypatch.setattr(narr.NarrativeEngine, "save", save_after_theirs)
    monkeypatch.setattr(narr.NarrativeEngine, "take_back", counted_take_back)
    posts, vecs = _drifting_stream(285)
    rounds = range(0, len(posts), 15)
    for r in rounds:  # the other worker's 3 posts land during this worker's 12 (which touch more narratives)
        theirs_next.append((posts[r : r + 3], vecs[r : r + 3]))
        # (with a post too short for a signature first: the rows it takes back are taken again by others)
        short = Post(id=f"short{r}", text="ok", language="en", created_at=posts[r].created_at)
        loads.clear()
        narr.assign_posts(mine, "org", [short, *posts[r + 3 : r + 15]], vecs[r + 2 : r + 15], params)
        assert not theirs_next and loads == ([1, 1] if r == 0 else []), "after the first batches, nothing loaded again"
        engine = narr._ENGINES[mine]["org"]
        fresh = narr.NarrativeEngine(params, 8)
        real_load(fresh, mine, "org")
        _same_engines(engine, fresh)
        _stored_equals_engine(mine, "org", engine)
        _band_index_holds_its_rows(engine)
        assert not narr.NarrativeMembers(mine).get("org", [short.id])[short.id].minhash, "no signature of a post taken back"
    assert taken == [True] * len(rounds), "every batch of this worker was refused once and taken back"
    assert sum(len(t.merged) for t in engine.topics.values()) >= 3  # merges, taken back and made again
    assert sorted(m.post_id for m in narr.NarrativeStore(mine).members("org")) == sorted([*(p.id for p in posts), *(f"short{r}" for r in rounds)])


def _band_index_holds_its_rows(engine: narr.NarrativeEngine) -> None:
    """Every key of the engine's LSH index names a member row whose signature has that key, and
    every member with a signature is found under each of its keys (taken-back rows leave none)."""
    from factbridge.text import minhash

    index = engine._index
    keys, items = np.concatenate([index._keys, index._delta_keys]), np.concatenate([index._items, index._delta_items])
    assert (items < len(engine._post_ids)).all()
    assert (minhash.band_keys(engine._sigs[items]) == keys[:, None]).any(axis=1).all()
    rows = np.flatnonzero(engine._has_sig[: len(engine._post_ids)])
    assert (index.lookup(minhash.band_keys(engine._sigs[rows])) >= 0).all()


def test_a_narrative_of_one_post_and_its_topic_hold_one_array_for_their_sums(storage) -> None:  # type: ignore[no-untyped-def]
    """Most narratives of a real feed are one post, in a topic of their own: the narrative's sum,
    its representative's vector and the topic's sum are then one array (three 1.5 KB copies
    before), in the engine that made them and in one loaded from the store; a second post makes
    the narrative's sum a new array and leaves the first post's values where they belong."""
    params = Settings(narrative_threshold=0.9, topic_threshold=0.5).narratives
    posts = _story_posts("a", T0, 2, 10)
    vecs = np.zeros((2, 16), dtype=np.float32)
    vecs[:, 0] = 1.0
    vecs[1, 1] = 0.1
    vecs[1] /= np.linalg.norm(vecs[1])
    for engine_of in ("running", "loaded"):
        narr._ENGINES.pop(storage, None)
        org = f"org-{engine_of}"
        narr.assign_posts(storage, org, posts[:1], vecs[:1], params)
        engine = narr._ENGINES[storage][org]
        if engine_of == "loaded":
            engine = narr.NarrativeEngine(params, 16)
            engine.load(storage, org)
        (n,), (t,) = engine.narratives.values(), engine.topics.values()
        assert n.rep_vec is n.vec_sum and t.vec_sum is n.vec_sum and n.vec_sum.tobytes() == vecs[0].tobytes()
    narr.assign_posts(storage, "org-running", posts[1:], vecs[1:], params)
    engine = narr._ENGINES[storage]["org-running"]
    (n,), (t,) = engine.narratives.values(), engine.topics.values()
    assert n.size == 2 and n.vec_sum is not t.vec_sum and np.allclose(n.vec_sum, vecs[0] + vecs[1]) and np.allclose(t.vec_sum, n.vec_sum)
    assert n.rep_vec is not n.vec_sum
    _stored_equals_engine(storage, "org-running", engine)


def test_a_write_that_failed_otherwise_is_taken_back_too(storage, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """A write that fails for another reason (the database gone, a lock timeout): the batch fails
    and the queue retries it, on an engine that took the assignment back and catches up, not on
    one loaded again; a write that landed although the call failed is read back from its change
    entry. When the store cannot be read either, the engine stays dirty and is loaded again."""
    import pytest

    params = Settings(narrative_threshold=0.9, topic_threshold=0.5).narratives
    posts, vecs = _drifting_stream(36)
    narr.assign_posts(storage, "org", posts[:12], vecs[:12], params)
    engine = narr._ENGINES[storage]["org"]
    real_save, real_load, loads = narr.NarrativeEngine.save, narr.NarrativeEngine.load, []

    def lost(self, *args):  # type: ignore[no-untyped-def]
        raise RuntimeError("server closed the connection unexpectedly")

    def landed(self, *args):  # type: ignore[no-untyped-def]
        real_save(self, *args)
        raise RuntimeError("server closed the connection unexpectedly")  # (after the commit)

    monkeypatch.setattr(narr.NarrativeEngine, "load", lambda self, s, o: (loads.append(1), real_load(self, s, o)))
    for failing, batch in ((lost, slice(12, 24)), (landed, slice(24, 36))):
        monkeypatch.setattr(narr.NarrativeEngine, "save", failing)
        loads.clear()
        with pytest.raises(RuntimeError, match="closed the connection"):
            narr.assign_posts(storage, "org", posts[batch], vecs[batch], params)
        assert not engine.dirty
        monkeypatch.setattr(narr.NarrativeEngine, "save", real_save)
        narr.assign_posts(storage, "org", posts[batch], vecs[batch], params)  # the queue's retry
        assert narr._ENGINES[storage]["org"] is engine and not loads
        fresh = narr.NarrativeEngine(params, 8)
        real_load(fresh, storage, "org")
        _same_engines(engine, fresh)
        _stored_equals_engine(storage, "org", engine)
    assert sorted(m.post_id for m in narr.NarrativeStore(storage).members("org")) == sorted(p.id for p in posts)
    # the store unreadable too: the engine stays dirty, and the next batch loads it again
    monkeypatch.setattr(narr.NarrativeEngine, "save", lost)
    monkeypatch.setattr(narr.NarrativeStore, "documents", lambda *a: (_ for _ in ()).throw(RuntimeError("server closed the connection unexpectedly")))
    more, more_vecs = _drifting_stream(3, seed=9)
    with pytest.raises(RuntimeError):
        narr.assign_posts(storage, "org", [p.model_copy(update={"id": f"x{p.id}"}) for p in more], more_vecs, params)
    assert engine.dirty


@pytest.mark.parametrize("memory_days", [0.0, 0.2], ids=["keep-all", "horizon"])
def test_workers_assigning_at_once_leave_a_consistent_store(tmp_path, memory_days) -> None:  # type: ignore[no-untyped-def]
    """Three workers (threads, each with its own storage handle and engine) take the batches of
    one stream as a queue hands them out, at the same time, over one store: refused writes are
    taken back and assigned again, a batch refused four times is given back and taken again.
    Afterwards every post has one membership, every narrative's size is its members' count,
    every narrative is in exactly one live topic that lists it, and a topic's size is its
    narratives' sum."""
    import threading
    from collections import Counter as Count

    from factbridge.backends.storage.sqlite import SQLiteStorage
    from factbridge.errors import Conflict

    url = f"sqlite:///{tmp_path / 'db.sqlite'}"
    SQLiteStorage(url).migrate()
    stores = [SQLiteStorage(url) for _ in range(3)]
    params = replace(Settings(narrative_threshold=0.97, topic_threshold=0.8).narratives, memory_days=memory_days)
    posts, vecs = _drifting_stream(480)  # 7 minutes apart: 56 hours, so a horizon of 0.2 days drops
    queue = [(posts[s : s + 12], vecs[s : s + 12]) for s in range(0, len(posts), 12)]
    lock, errors = threading.Lock(), []

    def worker(storage) -> None:  # type: ignore[no-untyped-def]
        while True:
            with lock:
                if not queue:
                    return
                batch = queue.pop(0)
            try:
                narr.assign_posts(storage, "org", *batch, params)
            except Conflict:
                with lock:
                    queue.append(batch)  # given back: the queue delivers it again
            except Exception as exc:  # noqa: BLE001 (reported below)
                errors.append(exc)
                return

    threads = [threading.Thread(target=worker, args=(s,)) for s in stores]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not errors and not any(t.is_alive() for t in threads)
    store = narr.NarrativeStore(stores[0])
    members = store.members("org")
    assert sorted(m.post_id for m in members) == sorted(p.id for p in posts)
    sizes = Count(m.narrative_id for m in members)
    docs = dict(narr.iter_docs(stores[0], "org", narr.NARRATIVES))
    assert {nid: d["size"] for nid, d in docs.items()} == dict(sizes)
    topics = {tid: d for tid, d in store.topic_documents("org") if d.get("merged_into") is None}
    assert sorted(nid for t in topics.values() for nid in t["narratives"]) == sorted(docs)
    for tid, t in topics.items():
        assert t["size"] == sum(docs[nid]["size"] for nid in t["narratives"]) and all(docs[nid]["topic_id"] == tid for nid in t["narratives"])
    for s in stores:
        s.close()


def _crowded_topics(batches: int = 8, per_batch: int = 120, dim: int = 16, directions: int = 40) -> list[tuple[list[Post], np.ndarray]]:
    """Batches of many small stories around a few dozen directions, close in time: most posts
    start a narrative, which joins a topic made earlier (often one made in the same batch), and
    topics merge. Around hundreds of directions, most narratives start a topic of their own."""
    rng = np.random.default_rng(23)
    centres = rng.normal(size=(directions, dim)).astype(np.float32)
    out = []
    for b in range(batches):
        posts, vecs = [], []
        for i in range(per_batch):
            v = centres[int(rng.integers(0, directions))] + rng.normal(0, 0.35, dim).astype(np.float32)
            vecs.append(v / np.linalg.norm(v))
            posts.append(Post(id=f"b{b}-{i}", text=f"post {b} {i} {rng.integers(0, 10**9)} words {rng.integers(0, 10**9)}", language="en",
                              created_at=T0 + timedelta(hours=6 * b, minutes=i)))
        out.append((posts, np.stack(vecs)))
    return out


@pytest.mark.parametrize("k", [1, 8])
@pytest.mark.parametrize(("directions", "topic_threshold"), [(40, 0.55), (2000, 0.7)], ids=["topics-joined", "topics-of-their-own"])
def test_a_batchs_topic_choices_from_one_shortlist_are_those_of_comparing_each_with_every_topic(monkeypatch, k, directions, topic_threshold) -> None:  # type: ignore[no-untyped-def]
    """A batch's new narratives choose their topics, and its touched topics their merges, from
    one product over the topics (`_TopicShortlist`, the highest `SHORTLIST_K` of each, the rows
    changed within the batch compared again): the same topics, joins and merges as comparing
    each with every topic; with one row shortlisted, most of its queries fall back to that. Where
    most new narratives start a topic of their own, those topics' merges ask their narratives'
    shortlist again."""
    import itertools

    params = Settings(narrative_threshold=0.95, topic_threshold=topic_threshold).narratives
    batches = _crowded_topics(directions=directions)
    monkeypatch.setattr(narr, "SHORTLIST_K", k)
    real_best = narr.NarrativeEngine._best_topic

    def run(shortlist: bool) -> tuple[list[tuple[str, ...]], list[tuple[str, str, float]], dict[str, int]]:
        ids, calls = itertools.count(), {"every row": 0, "shortlist": 0, "merge asked again": 0}
        real_only = narr.NarrativeEngine._only_its_narrative

        def only_its_narrative(self, topic):  # type: ignore[no-untyped-def]
            again = real_only(self, topic)
            calls["merge asked again"] += again
            return again

        def best_topic(self, *args, **kwargs):  # type: ignore[no-untyped-def]
            calls["every row"] += 1
            return real_best(self, *args, **kwargs)

        real_short = narr._TopicShortlist.best

        def short_best(self, *args, **kwargs):  # type: ignore[no-untyped-def]
            calls["shortlist"] += 1
            return real_short(self, *args, **kwargs)

        monkeypatch.setattr(narr, "_new_id", lambda prefix, seed: f"{prefix}-{next(ids):020d}")
        monkeypatch.setattr(narr, "SHORTLIST_MIN_TOPICS", 0 if shortlist else 10**9)
        monkeypatch.setattr(narr.NarrativeEngine, "_best_topic", best_topic)
        monkeypatch.setattr(narr._TopicShortlist, "best", short_best)
        monkeypatch.setattr(narr.NarrativeEngine, "_only_its_narrative", only_its_narrative)
        engine = narr.NarrativeEngine(params, 16)
        out = []
        for posts, vecs in batches:
            assignments, _, _ = engine.assign(posts, vecs)
            out += [(a.post_id, a.narrative_id, a.method, engine.narratives[a.narrative_id].topic) for a in assignments]
        merges = sorted((t.id, m["topic_id"], m["cosine"]) for t in engine.topics.values() for m in t.merged)
        return out, merges, calls

    with_list, every = run(True), run(False)
    assert with_list[0] == every[0] and with_list[1] == every[1]
    topics = {r[3] for r in every[0]}
    assert len(topics) > 20 and len({r[1] for r in every[0]}) > 300 and len(every[1]) > 5, "many narratives, topics and merges"
    assert every[2]["shortlist"] == 0 and with_list[2]["shortlist"] > 500
    if k == 8:  # a shortlisted row rarely changes: few queries compared with every row
        assert with_list[2]["every row"] < with_list[2]["shortlist"] / 10
    else:
        assert with_list[2]["every row"] > 10
    assert with_list[2]["merge asked again"] > (400 if directions == 2000 else 5), "new topics' merges asked their narratives' shortlist"


def test_a_chunk_is_compared_with_the_active_narratives_in_blocks_of_posts_with_the_same_choices(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """A chunk's similarities to the active narratives are computed a block of posts at a time
    (a chunk against a million active rows would be a gigabyte at once): the same choices, and
    the same similarities but for float32 rounding, whatever the block."""
    import itertools

    params = Settings(narrative_threshold=0.95, topic_threshold=0.55).narratives
    batches = _crowded_topics(batches=4)

    def run(block: int) -> list[tuple[str, str, str, float]]:
        ids = itertools.count()
        monkeypatch.setattr(narr, "_new_id", lambda prefix, seed: f"{prefix}-{next(ids):020d}")
        monkeypatch.setattr(narr, "_SIMILARITY_BLOCK", block)
        engine = narr.NarrativeEngine(params, 16)
        return [(a.post_id, a.narrative_id, a.method, a.similarity) for posts, vecs in batches for a in engine.assign(posts, vecs)[0]]

    whole, rows = run(1 << 24), run(1)  # (1: a post at a time)
    assert [a[:3] for a in whole] == [a[:3] for a in rows] and sum(a[2] == "semantic" for a in whole) > 50
    # (a product of one row rounds in another order than one of many: the last bits of a float32)
    assert np.allclose([a[3] for a in whole], [a[3] for a in rows], rtol=0, atol=1e-6)
