"""The triage queue: gate, ordering, explanations, velocity, debunks, risk and narratives."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from typer.testing import CliRunner

from factbridge.models import Engagement, FactCheck, MatchCandidate, Post
from factbridge.pipeline.ingest import embed_posts
from factbridge.pipeline.narratives import NarrativeStore
from factbridge.pipeline.prepare import prepare_post
from factbridge.pipeline.records import (
    CheckworthinessRecord,
    LinkRiskRecord,
    LinkRisks,
    LinkRiskUrl,
)
from factbridge.pipeline.stages import load_stages, run_stages
from factbridge.pipeline.triage import (
    COMPONENTS,
    QUEUE,
    PostFacts,
    list_queue,
    post_entry,
    reach_value,
    repeat_rate,
    triage_posts,
    velocity_value,
)
from factbridge.services import Services
from factbridge.settings import load_settings

ORG = "desk"
T0 = datetime(2024, 5, 1, 8, 0, tzinfo=UTC)

CLAIM = "The health ministry said 3,200 children were hospitalised with dengue in July, up 40% on last year."
OTHER_CLAIM = "Drinking hot lemon water every morning cures cancer, Japanese doctors have proved."
GREETING = "Good morning everyone, have a lovely Sunday!"
OPINION = "I think this is the best pizza I have ever had, so good!"
JOKE = "lol my dog just stole my sandwich again haha"


def make_post(pid: str, text: str, minutes: int = 0, **engagement: int) -> Post:
    return prepare_post(Post(id=pid, text=text, language="en", created_at=T0 + timedelta(minutes=minutes), engagement=Engagement(**engagement)))


def ingest(services: Services, posts: list[Post], stages: bool = True) -> dict[str, dict[str, object]]:
    services.storage.upsert_posts(ORG, posts)
    embed_posts(services.storage, services.embedder, ORG, posts)
    return run_stages(services, ORG, posts) if stages else {}


def queue_ids(services: Services) -> list[str]:
    return [i for i, _ in list_queue(services.storage, ORG, limit=100)]


def test_triage_is_registered_last() -> None:
    names = [stage.name for stage in load_stages()]
    assert names[-1] == "triage"
    assert names.index("checkworthiness") > names.index("embedding") and names.index("narratives") > names.index("matching")


def test_gate_keeps_non_claims_below_claims_whatever_their_reach(hashing_services: Services) -> None:
    posts = [
        make_post("greeting", GREETING, shares=1_000_000, likes=5_000_000, views=90_000_000),
        make_post("opinion", OPINION, shares=800_000, likes=2_000_000),
        make_post("joke", JOKE, shares=500_000, likes=900_000),
        make_post("claim", CLAIM, likes=3),
    ]
    summary = ingest(hashing_services, posts)
    assert summary["triage"]["queued_posts"] == 4
    order = queue_ids(hashing_services)
    assert order[0] == "claim"
    docs = dict(list_queue(hashing_services.storage, ORG, limit=10))
    for pid in ("greeting", "opinion", "joke"):
        assert docs[pid]["gated"] is True, docs[pid]["components"]["checkworthiness"]
        assert "not a claim" in docs[pid]["gate_reason"]
        # Their reach is still shown: the gate does not hide evidence.
        assert docs[pid]["components"]["reach"]["value"] > 0.9
    assert docs["claim"]["gated"] is False


def test_entry_explains_itself(hashing_services: Services) -> None:
    ingest(hashing_services, [make_post("c1", CLAIM, likes=120, shares=30)])
    doc = hashing_services.storage.get_docs(ORG, QUEUE, ["c1"])["c1"]
    assert set(doc["components"]) == set(COMPONENTS)
    contributions = sum(c["contribution"] for c in doc["components"].values())
    assert contributions == pytest.approx(doc["priority"], abs=2e-3)
    for comp in doc["components"].values():
        assert {"value", "weight", "contribution", "evidence"} <= set(comp)
    assert doc["decided_by"]["triage"].startswith("triage-1")
    assert doc["decided_by"]["checkworthiness"].startswith("checkworthiness-stack-")
    # The hashing embedder is not the model's: the text-only head decided, and says so.
    assert "(text;" in doc["decided_by"]["checkworthiness"]
    cw = hashing_services.storage.get_docs(ORG, "checkworthiness", ["c1"])["c1"]
    assert cw["label"] == "claim" and cw["features"]["numbers"] > 0 and cw["contributions"]
    assert doc["components"]["reach"]["evidence"]["likes"] == 120


def test_resurfacing_a_debunked_false_claim_ranks_high(hashing_services: Services) -> None:
    storage = hashing_services.storage
    storage.upsert_factchecks(ORG, [FactCheck(id="fc1", claim=OTHER_CLAIM, rating="False"), FactCheck(id="fc2", claim=CLAIM, rating="True")])
    ingest(hashing_services, [make_post("plain", CLAIM.replace("3,200", "3,100")), make_post("debunked", OTHER_CLAIM)], stages=False)
    storage.replace_matches(ORG, "debunked", [MatchCandidate(factcheck_id="fc1", rank=1, fused_score=0.9, decision="match", decided_by="matcher-test-1")])
    triage_posts(hashing_services, ORG, list(storage.get_posts(ORG, ["plain", "debunked"]).values()))
    docs = storage.get_docs(ORG, QUEUE, ["plain", "debunked"])
    debunk = docs["debunked"]["components"]["debunked"]
    assert debunk["value"] == 1.0
    assert debunk["evidence"]["factcheck_id"] == "fc1" and debunk["evidence"]["rating"] == "False"
    assert docs["debunked"]["decided_by"]["matching"] == "matcher-test-1"
    assert docs["debunked"]["priority"] > docs["plain"]["priority"]
    assert queue_ids(hashing_services)[0] == "debunked"
    # A post repeating a claim the desk rated true is less urgent than a resurfacing false one.
    storage.replace_matches(ORG, "plain", [MatchCandidate(factcheck_id="fc2", rank=1, fused_score=0.9, decision="match", decided_by="matcher-test-1")])
    triage_posts(hashing_services, ORG, [storage.get_post(ORG, "plain")])
    assert storage.get_docs(ORG, QUEUE, ["plain"])["plain"]["components"]["debunked"]["value"] == 0.5


def test_velocity_counts_repeats_per_hour_and_refreshes_older_copies(hashing_services: Services) -> None:
    ingest(hashing_services, [make_post("first", CLAIM, minutes=0), make_post("lonely", OTHER_CLAIM, minutes=0)])
    before = hashing_services.storage.get_docs(ORG, QUEUE, ["first"])["first"]
    assert before["components"]["velocity"]["value"] == 0.0
    copies = [make_post(f"copy{i}", CLAIM, minutes=10 * i) for i in range(1, 13)]
    ingest(hashing_services, copies)
    after = hashing_services.storage.get_docs(ORG, QUEUE, ["first", "copy12", "lonely"])
    # The older post's entry was refreshed when its copies arrived.
    assert after["first"]["components"]["velocity"]["evidence"]["repeats"] == 12
    assert after["first"]["components"]["velocity"]["value"] > before["components"]["velocity"]["value"]
    assert after["copy12"]["components"]["velocity"]["evidence"]["per_hour"] == pytest.approx(12 / 24, abs=1e-3)
    assert after["lonely"]["components"]["velocity"]["value"] == 0.0


def test_post_vectors_are_read_once_across_batches(hashing_services: Services) -> None:
    """Repeat detection keeps an index of the stored post vectors between batches: a later
    batch adds its own posts, not the table; a changed text replaces its vector."""
    from factbridge.backends.vectors.selection import stored_vector_index

    storage, embedder_id = hashing_services.storage, hashing_services.embedder.id
    ingest(hashing_services, [make_post(f"p{i}", f"{CLAIM} ({i})", minutes=i) for i in range(6)], stages=False)
    reads: list[int] = []
    original = storage.load_vectors
    storage.load_vectors = lambda org, kind, emb, ids=None: reads.append(len(ids) if ids is not None else -1) or original(org, kind, emb, ids=ids)  # type: ignore[method-assign]
    dim = hashing_services.embedder.dim
    first = stored_vector_index(storage, ORG, "post", embedder_id, dim)
    assert len(first) == 6 and reads == [6]
    assert stored_vector_index(storage, ORG, "post", embedder_id, dim) is first and reads == [6]  # nothing new: nothing read
    ingest(hashing_services, [make_post("p6", CLAIM, minutes=7)], stages=False)
    edited = make_post("p0", OTHER_CLAIM, minutes=0)
    ingest(hashing_services, [edited], stages=False)
    index = stored_vector_index(storage, ORG, "post", embedder_id, dim, fresh_ids=["p6", "p0"])
    assert index is first and len(index) == 7 and reads == [6, 2]
    top = index.search(hashing_services.embedder.encode_queries([OTHER_CLAIM])[0], 1, embedder_id)
    assert top[0][0] == "p0" and top[0][1] > 0.99
    assert len(stored_vector_index(storage, "another-org", "post", embedder_id, dim)) == 0
    # a full comparison with the stored hashes (as after resync_s) finds nothing more to read
    assert len(stored_vector_index(storage, ORG, "post", embedder_id, dim, resync_s=0)) == 7


def test_a_batch_vectors_are_read_once_by_triage(hashing_services: Services) -> None:
    """Triage reads the batch's vectors for its searches and hands them to the post index
    (not read a second time to be added); the repeats are what the index then answers."""
    from factbridge.backends.vectors.selection import stored_vector_index
    from factbridge.pipeline.triage import gather_facts

    storage, embedder_id = hashing_services.storage, hashing_services.embedder.id
    ingest(hashing_services, [make_post(f"p{i}", f"{CLAIM} ({i})", minutes=i) for i in range(3)], stages=False)
    stored_vector_index(storage, ORG, "post", embedder_id, hashing_services.embedder.dim)  # opened: the later batch is fresh
    batch = [make_post(f"q{i}", f"{CLAIM} ({i})", minutes=10 + i) for i in range(2)] + [make_post("lonely", OTHER_CLAIM, minutes=12)]
    ingest(hashing_services, batch, stages=False)
    reads: list[list[str]] = []
    original = storage.load_vectors
    storage.load_vectors = lambda org, kind, emb, ids=None: reads.append(sorted(ids or [])) or original(org, kind, emb, ids=ids)  # type: ignore[method-assign]
    posts = list(storage.get_posts(ORG, [p.id for p in batch]).values())
    facts = gather_facts(hashing_services, ORG, posts, hashing_services.settings.triage)
    assert reads == [["lonely", "q0", "q1"]]
    assert len(stored_vector_index(storage, ORG, "post", embedder_id, hashing_services.embedder.dim)) == 6
    assert sorted(facts["q0"].repeats) == ["p0", "p1", "p2", "q1"] and facts["lonely"].repeats == []


def test_refreshed_repeats_are_gathered_with_the_batch(hashing_services: Services) -> None:
    """`gather_facts(refresh=True)`: the batch's facts, then those of the stored posts it
    repeats (near copies and posts matched to the same fact-check), the same as gathering the
    repeats apart afterwards (`fresh=False`), with every collection read once for both."""
    from factbridge.pipeline.triage import TriageReads, gather_facts

    storage, weights = hashing_services.storage, hashing_services.settings.triage
    storage.upsert_factchecks(ORG, [FactCheck(id="fc1", claim=CLAIM, rating="False", url="https://fc.example/1", language="en")])
    stored = [make_post(f"p{i}", f"{CLAIM} ({i})", minutes=i, likes=i) for i in range(3)] + [make_post("m0", OTHER_CLAIM, minutes=1)]
    ingest(hashing_services, stored)
    storage.replace_matches(ORG, "m0", [MatchCandidate(factcheck_id="fc1", rank=1, decision="match", fused_score=0.9, decided_by="test")])
    batch = [make_post("q0", f"{CLAIM} (0)", minutes=10), make_post("q1", OTHER_CLAIM, minutes=11)]
    ingest(hashing_services, batch, stages=False)
    storage.replace_matches(ORG, "q1", [MatchCandidate(factcheck_id="fc1", rank=1, decision="match", fused_score=0.8, decided_by="test")])
    posts = list(storage.get_posts(ORG, ["q0", "q1"]).values())

    reads: list[str] = []
    original = storage.get_docs
    storage.get_docs = lambda org, coll, ids: reads.append(coll) or original(org, coll, ids)  # type: ignore[method-assign]
    together = gather_facts(hashing_services, ORG, posts, weights, reads=TriageReads(storage, ORG), refresh=True)  # the batch into the index
    storage.get_docs = original  # type: ignore[method-assign]
    apart_reads = TriageReads(storage, ORG)
    apart = gather_facts(hashing_services, ORG, posts, weights, reads=apart_reads, fresh=False)  # indexed already
    extra = sorted({r for f in apart.values() for r in f.repeats} - apart.keys())
    apart.update(gather_facts(hashing_services, ORG, list(storage.get_posts(ORG, extra).values()), weights, reads=apart_reads, fresh=False))

    assert list(together) == list(apart) == ["q0", "q1", *extra]
    assert {"p0", "m0"} <= set(extra)  # a near copy and a post matched to the same fact-check
    assert together == apart
    assert "q0" in together["p0"].repeats  # the refreshed post sees the new copy
    assert reads.count("checkworthiness") == 1
    assert [post_entry(f, weights).to_doc() | {"updated_at": ""} for f in together.values()] == \
        [post_entry(f, weights).to_doc() | {"updated_at": ""} for f in apart.values()]


def test_repeats_come_from_the_index_within_the_window(hashing_services: Services) -> None:
    """Copies older than the velocity window are not repeats, however similar."""
    old = [make_post(f"old{i}", CLAIM, minutes=-60 * 24 * 5 - i) for i in range(3)]
    recent = [make_post(f"new{i}", CLAIM, minutes=i) for i in range(3)]
    ingest(hashing_services, old + recent)
    docs = hashing_services.storage.get_docs(ORG, QUEUE, ["new2", "old0"])
    assert sorted(docs["new2"]["components"]["velocity"]["evidence"]["examples"]) == ["new0", "new1"]
    assert sorted(docs["old0"]["components"]["velocity"]["evidence"]["examples"]) == ["old1", "old2"]


def test_a_copy_without_a_time_is_a_repeat_within_any_window(hashing_services: Services) -> None:
    """A copy without a time is a repeat whatever the window (nothing places it outside), while a
    timed copy outside the window is not: a search whose hits are not all timed tests them one
    by one; an untimed post repeats every copy."""
    timed = [make_post(f"t{i}", CLAIM, minutes=i) for i in range(2)]
    old = make_post("old", CLAIM, minutes=-60 * 24 * 5)
    untimed = prepare_post(Post(id="nt", text=CLAIM, language="en", created_at=None))
    ingest(hashing_services, [old, *timed, untimed])
    docs = hashing_services.storage.get_docs(ORG, QUEUE, ["t1", "nt", "old"])
    examples = {pid: sorted(doc["components"]["velocity"]["evidence"]["examples"]) for pid, doc in docs.items()}
    assert examples == {"t1": ["nt", "t0"], "nt": ["old", "t0", "t1"], "old": ["nt"]}


def test_only_a_post_without_a_time_is_searched_over_all_times(hashing_services: Services, monkeypatch: pytest.MonkeyPatch) -> None:
    """A batch with one post of no known time searches everything for that post alone: the
    others are still searched in their window (a search of everything walks every segment of
    the embedded index, every period of PostgreSQL's), and find the same repeats."""
    import factbridge.pipeline.triage as triage

    other = "Officials deny that the Mekong bridge in Kratie collapsed during Tuesday's flood."
    ingest(hashing_services, [make_post("old", CLAIM, minutes=-60 * 24 * 5), make_post("t0", CLAIM, minutes=0),
                              make_post("o0", other, minutes=0)])
    calls: list[tuple[int, object]] = []
    real = triage.search_above

    def spy(index, queries, k, embedder_id, min_score, within=None, held=None):  # type: ignore[no-untyped-def]
        calls.append((len(queries), within))
        return real(index, queries, k, embedder_id, min_score, within, held=held)

    monkeypatch.setattr(triage, "search_above", spy)
    ingest(hashing_services, [make_post("t1", CLAIM, minutes=2), prepare_post(Post(id="nt", text=other, language="en", created_at=None))])
    assert sorted((n, within is None) for n, within in calls) == [(1, False), (1, True)], calls
    docs = hashing_services.storage.get_docs(ORG, QUEUE, ["t1", "nt"])
    examples = {pid: sorted(doc["components"]["velocity"]["evidence"]["examples"]) for pid, doc in docs.items()}
    assert examples == {"t1": ["t0"], "nt": ["o0"]}


def test_repeat_rate_uses_the_window() -> None:
    post = make_post("a", CLAIM, minutes=0)
    inside = [make_post(f"b{i}", CLAIM, minutes=30 * i) for i in range(1, 5)]
    old = [make_post("old", CLAIM, minutes=-60 * 48)]
    assert repeat_rate(post, inside + old, window_hours=24) == pytest.approx(4 / 24)
    assert repeat_rate(post, [], window_hours=24) == 0.0


def test_entry_numbers_are_floats_at_4_places_and_stamped_now() -> None:
    """An entry stores each component's value and contribution and its priority as floats
    rounded to 4 places (an integer score too: `1.0`, never `1`), and `updated_at` is the
    second it was made, in UTC."""
    weights = load_settings(env={"FACTBRIDGE_TRIAGE_WEIGHT_RISK": "2"}).triage
    cw = CheckworthinessRecord("p1", 1, "claim", 0.5, "text", "cw-test", contributions={"numbers": 0.25})
    facts = PostFacts(post=make_post("p1", CLAIM, likes=7, shares=2), checkworthiness=cw, debunked=(0.6, {"factcheck_id": "f1"}),
                      repeats=["p2"], rate_per_hour=0.123456789, risk=(0.333333333, {"source": "linkrisk:p1"}))
    before = datetime.now(UTC).replace(microsecond=0)
    doc = post_entry(facts, weights).to_doc()
    after = datetime.now(UTC)
    values = {"checkworthiness": 1.0, "reach": reach_value(7 + 2 * 2.0, weights.reach_scale),
              "velocity": velocity_value(0.123456789, weights.velocity_scale), "debunked": 0.6, "risk": 0.333333333}
    total = sum(weights.weight(c) for c in COMPONENTS)
    for c in COMPONENTS:
        comp = doc["components"][c]
        assert type(comp["value"]) is float and comp["value"] == round(values[c], 4)
        assert type(comp["contribution"]) is float and comp["contribution"] == round(weights.weight(c) * values[c] / total, 4)
    assert doc["priority"] == round(sum(weights.weight(c) * values[c] for c in COMPONENTS) / total, 4)
    assert json.dumps(doc["components"]["checkworthiness"]["value"]) == "1.0"
    assert doc["components"]["risk"]["evidence"] == {"source": "linkrisk:p1"}
    stamp = datetime.fromisoformat(doc["updated_at"])
    assert stamp.utcoffset() == timedelta(0) and stamp.microsecond == 0 and before <= stamp <= after


def test_weights_are_settings(tmp_path: Path) -> None:
    overrides = {"data_dir": str(tmp_path), "storage_url": "sqlite:///:memory:", "embedder": "hashing", "embed_cache": "off"}
    posts = [make_post("viral", OTHER_CLAIM, shares=50_000), make_post("quiet", CLAIM, likes=1)]
    orders = {}
    for name, weights in {"reach": {"triage_weight_reach": 1.0, "triage_weight_checkworthiness": 0.0}, "cw": {"triage_weight_reach": 0.0}}.items():
        with Services(load_settings(env={}, overrides={**overrides, **weights})) as services:
            ingest(services, posts)
            orders[name] = queue_ids(services)
            doc = services.storage.get_docs(ORG, QUEUE, ["viral"])["viral"]
            assert f"reach={weights['triage_weight_reach']}" in doc["decided_by"]["triage"]
    assert orders["reach"][0] == "viral"
    assert load_settings(env={"FACTBRIDGE_TRIAGE_WEIGHT_RISK": "0.5"}).triage.risk == 0.5


def test_risk_signals_and_narratives_when_present(hashing_services: Services) -> None:
    storage = hashing_services.storage
    posts = [make_post("n1", CLAIM, likes=10), make_post("n2", OTHER_CLAIM, likes=20, minutes=5), make_post("solo", OTHER_CLAIM.replace("cancer", "diabetes"))]
    storage.upsert_posts(ORG, posts)
    embed_posts(storage, hashing_services.embedder, ORG, posts)
    # Without the narratives stage first; then its records are stored as that stage stores them.
    summary = run_stages(hashing_services, ORG, posts, skip=("narratives", "bursts"))
    assert summary["triage"]["queued_narratives"] == 0  # no narratives stored yet
    # As the link-risk and narrative stages would store them:
    link = LinkRiskUrl(url="http://x.test/login", score=0.8, level="high", flagged=True, decided_by="linkrisk-test-2")
    LinkRisks(storage).put(ORG, [LinkRiskRecord(post_id="n1", urls=[link], decided_by="linkrisk-test-2", scored_at="", level="high")])
    storage.put_docs(ORG, "narratives", [("nar1", {"representative": {"post_id": "n1", "text": "Health scares"}, "recent_posts": [["n1", "", "seed", 1.0], ["n2", "", "semantic", 0.9]],
                                                   "risk": 0.4, "decided_by": "narratives-test-1"}, 2.0)])
    storage.put_docs(ORG, "narrative_members", [(p, {"post_id": p, "narrative_id": "nar1", "method": "seed", "decided_by": "narratives-test-1"}, None)
                                                for p in ("n1", "n2")])
    summary = {"triage": triage_posts(hashing_services, ORG, posts)}
    assert summary["triage"]["queued_narratives"] == 1
    docs = storage.get_docs(ORG, QUEUE, ["n1", "n2", "solo", "narrative:nar1"])
    assert docs["n1"]["components"]["risk"]["value"] == 0.8
    assert docs["n1"]["decided_by"]["risk"] == "linkrisk-test-2"
    assert docs["n2"]["components"]["risk"]["evidence"]["source"] == "narrative:nar1"
    assert docs["solo"]["components"]["risk"]["value"] == 0.0
    narrative = docs["narrative:nar1"]
    assert narrative["kind"] == "narrative" and narrative["post_ids"] == ["n1", "n2"] and narrative["title"] == "Health scares"
    assert narrative["components"]["reach"]["evidence"]["weighted_engagement"] == 30.0
    assert narrative["decided_by"]["narrative"] == "narratives-test-1"
    assert [i for i, _ in list_queue(storage, ORG, kind="narrative")] == ["narrative:nar1"]


def test_absent_signals_are_said_not_guessed(hashing_services: Services) -> None:
    ingest(hashing_services, [make_post("p", CLAIM)])
    doc = hashing_services.storage.get_docs(ORG, QUEUE, ["p"])["p"]
    assert doc["components"]["risk"]["evidence"] == {"note": "no risk signal stored"}
    assert doc["components"]["debunked"]["evidence"] == {"note": "no stored match to a fact-check"}


def test_queue_command(tmp_path: Path) -> None:
    from factbridge.cli import app

    posts = tmp_path / "posts.jsonl"
    rows = [
        {"id": "g", "text": GREETING, "language": "en", "shares": 900000, "created_at": "2024-05-01T08:00:00Z"},
        {"id": "c", "text": CLAIM, "language": "en", "likes": 5, "created_at": "2024-05-01T09:00:00Z"},
    ]
    posts.write_text("\n".join(json.dumps(r) for r in rows) + "\n", encoding="utf-8")
    base = ["--data-dir", str(tmp_path), "--embedder", "hashing", "--embed-cache", "off"]
    runner = CliRunner()
    result = runner.invoke(app, [*base, "ingest", str(posts)])
    assert result.exit_code == 0, result.output
    result = runner.invoke(app, [*base, "queue", "--json"])
    assert result.exit_code == 0, result.output
    entries = json.loads(result.output)
    assert [e["id"] for e in entries] == ["c", "g"]
    assert entries[1]["gated"] is True
    table = runner.invoke(app, [*base, "queue", "--limit", "5"])
    assert table.exit_code == 0 and "gated" in table.output
    bad = runner.invoke(app, [*base, "queue", "--kind", "cases"])
    assert bad.exit_code != 0


def test_narratives_stage_schema(hashing_services: Services) -> None:
    """Documents as the narratives stage writes them: a member doc per post, hourly counts."""
    storage = hashing_services.storage
    posts = [make_post("m1", CLAIM, likes=10), make_post("m2", CLAIM.replace("July", "June"), likes=5, minutes=30)]
    ingest(hashing_services, posts)
    hourly = {f"2024-05-01T{h:02d}": 12 for h in range(0, 9)}
    storage.put_docs(ORG, "narratives", [("n-7", {"id": "n-7", "size": 108, "counts_hourly": hourly, "top_terms": ["dengue", "children"],
                                                  "representative": {"post_id": "m1", "text": CLAIM}, "recent_posts": [["m1", "2024-05-01T08:00:00+00:00", "minhash", 1.0], ["m2", "2024-05-01T08:30:00+00:00", "semantic", 0.9]],
                                                  "decided_by": "narratives-1"}, 6.0)])
    storage.put_docs(ORG, "narrative_members", [(p.id, {"post_id": p.id, "narrative_id": "n-7"}, None) for p in posts])
    store = NarrativeStore(storage)
    state = store.state(ORG)
    assert state is not None
    store.bump(ORG, state)  # written as another process's narratives stage would: this process's engine no longer holds the store
    summary = triage_posts(hashing_services, ORG, posts)
    assert summary["queued_narratives"] == 1
    docs = storage.get_docs(ORG, QUEUE, ["m1", "narrative:n-7"])
    velocity = docs["m1"]["components"]["velocity"]
    assert velocity["evidence"]["source"] == "narrative:n-7"
    assert velocity["evidence"]["per_hour"] == pytest.approx((12 * 9 - 1) / 24, abs=1e-3)
    assert docs["m1"]["narratives"] == ["n-7"]
    narrative = docs["narrative:n-7"]
    assert narrative["title"] == CLAIM and narrative["post_ids"] == ["m1", "m2"]
    assert narrative["components"]["reach"]["evidence"]["size"] == 108
    assert narrative["components"]["velocity"]["evidence"]["source"] == "counts_hourly"


def test_with_the_real_narratives_stage(hashing_services: Services) -> None:
    copies = [make_post(f"r{i}", CLAIM, minutes=5 * i, shares=i) for i in range(6)]
    summary = ingest(hashing_services, copies)
    assert "narratives" in summary and summary["triage"]["queued_narratives"] >= 1
    narratives = list_queue(hashing_services.storage, ORG, kind="narrative")
    assert narratives and narratives[0][1]["components"]["velocity"]["value"] > 0
    post = hashing_services.storage.get_docs(ORG, QUEUE, ["r5"])["r5"]
    assert post["narratives"] and post["components"]["velocity"]["evidence"]["repeats"] == 5


def test_gate_in_languages_without_training_data(hashing_services: Services) -> None:
    def post(pid: str, text: str, language: str, **engagement: int) -> Post:
        return prepare_post(Post(id=pid, text=text, language=language, created_at=T0, engagement=Engagement(**engagement)))

    posts = [
        post("km-greeting", "អរុណសួស្ដីបងប្អូនទាំងអស់គ្នា សូមឱ្យមានសំណាងល្អពេញមួយថ្ងៃ 🙏", "km", shares=2_000_000),
        post("vi-greeting", "Chào buổi sáng cả nhà, chúc mọi người một ngày vui vẻ!", "vi", shares=1_000_000),
        post("fr-opinion", "J'adore ce restaurant, franchement le meilleur de Lyon.", "fr", likes=900_000),
        post("vi-claim", "Bộ Y tế cho biết 3.200 trẻ em nhập viện vì sốt xuất huyết trong tháng 7, tăng 40%.", "vi", likes=2),
        post("km-claim", "ក្រសួងសុខាភិបាលបានប្រកាសថា មានអ្នកឆ្លងជំងឺគ្រុនឈាមចំនួន ១២០០ នាក់ក្នុងខែមិថុនា។", "km", likes=1),
    ]
    ingest(hashing_services, posts)
    order = queue_ids(hashing_services)
    assert set(order[:2]) == {"vi-claim", "km-claim"}
    docs = hashing_services.storage.get_docs(ORG, QUEUE, ["km-greeting", "vi-greeting", "fr-opinion", "vi-claim", "km-claim"])
    assert [docs[p]["gated"] for p in ("km-greeting", "vi-greeting", "fr-opinion")] == [True, True, True]
    assert not docs["vi-claim"]["gated"] and not docs["km-claim"]["gated"]
