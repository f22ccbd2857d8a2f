"""Triage's narrative entries from member summaries and stored entries (not every member
gathered again), its refreshed repeats (not re-indexed, exact copies searched once): the
queue entries are the full recompute's, batch after batch; two writers of one narrative's
summary cannot both win."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from factbridge.bench.feed import generated_posts
from factbridge.models import Engagement, FactCheck, MatchCandidate, Post
from factbridge.pipeline import triage
from factbridge.pipeline.ingest import embed_posts
from factbridge.pipeline.prepare import prepare_post
from factbridge.pipeline.records import (
    QUEUE,
    TRIAGE_MEMBERS,
    MemberFacts,
    NarrativeMemberFacts,
    TriageMembers,
)
from factbridge.pipeline.stages import FunctionStage, load_stages, run_stages
from factbridge.services import Services
from factbridge.settings import load_settings
from factbridge.testing.triage import comparable_entries

ORG = "desk"
T0 = datetime(2026, 3, 1, tzinfo=UTC)


@pytest.fixture
def services(tmp_path: Path) -> Iterator[Services]:
    settings = load_settings(env={}, overrides={
        "data_dir": str(tmp_path), "storage_url": f"sqlite:///{tmp_path / 'desk.db'}", "embedder": "hashing", "embed_cache": "off",
        "match_fusion": "rrf",
    })
    s = Services(settings)
    yield s
    s.close()


def full_recompute(services: Services, org: str, posts: list[Post]) -> dict[str, dict[str, Any]]:
    """The entries of a triage run as the stage computed them before: every narrative member
    outside the run gathered from its stored records, every narrative read from the store
    (not from the narratives engine's last write; nothing written)."""
    REFERENCE["running"] = True
    engine_view = triage.written_narratives
    triage.written_narratives = lambda *args, **kwargs: None  # type: ignore[assignment]
    try:
        return _full_recompute(services, org, posts)
    finally:
        triage.written_narratives = engine_view  # type: ignore[assignment]
        REFERENCE["running"] = False


REFERENCE = {"running": False}


def _full_recompute(services: Services, org: str, posts: list[Post]) -> dict[str, dict[str, Any]]:
    weights = services.settings.triage
    storage = services.storage
    reads = triage.TriageReads(storage, org)
    facts = triage.gather_facts(services, org, posts, weights, reads=reads, fresh=False)  # stored and indexed already
    extra_ids = sorted({r for f in facts.values() for r in f.repeats} - set(facts))
    if extra_ids:
        facts.update(triage.gather_facts(services, org, list(storage.get_posts(org, extra_ids).values()), weights, reads=reads, fresh=False))
    entries = [triage.post_entry(f, weights) for f in facts.values()]
    records = reads.narrative_records(sorted({n for f in facts.values() for n in f.narratives}))
    for nid, record in records.items():
        ids = record.member_ids or [pid for pid, f in facts.items() if nid in f.narratives]
        if max(record.size or len(ids), len(ids)) < triage.MIN_NARRATIVE_POSTS:
            continue
        outside = list(storage.get_posts(org, [m for m in ids if m not in facts]).values())
        if outside:
            facts.update(triage.gather_facts(services, org, outside, weights, repeats=False, reads=reads))
        found = [facts[m] for m in ids if m in facts]
        if found:
            entries.append(triage.narrative_entry(nid, record, found, weights))
    return _docs(entries)


def _docs(entries: list[Any]) -> dict[str, dict[str, Any]]:
    return comparable_entries(entries)


@contextmanager
def captured_puts(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[dict[str, dict[str, Any]]]]:
    """Each triage run's entries as the stage writes them (and writes them)."""
    runs: list[dict[str, dict[str, Any]]] = []
    original = triage._put

    def put(storage: Any, org: str, entries: Any, *rest: Any) -> None:
        runs.append(_docs(list(entries)))
        original(storage, org, entries, *rest)

    monkeypatch.setattr(triage, "_put", put)
    yield runs


def _diff(a: Any, b: Any, path: str = "") -> list[str]:
    if isinstance(a, dict) and isinstance(b, dict):
        return [d for k in sorted(set(a) | set(b)) for d in _diff(a.get(k), b.get(k), f"{path}.{k}")]
    return [] if a == b else [f"{path}: {a!r} != {b!r}"]


def _ingest_in_batches(services: Services, posts: list[Post], size: int, monkeypatch: pytest.MonkeyPatch,
                       between: Any = None, stages: Any = None) -> dict[str, int]:
    """Every stage on each batch; after each, the stage's entries against the full recompute's."""
    seen = {"narratives": 0, "debunked": 0, "risk": 0, "refreshed": 0, "from_summary": 0, "engine_records": 0}
    engine_view = triage.written_narratives

    def counted(*args: Any, **kwargs: Any) -> Any:
        view = engine_view(*args, **kwargs)
        seen["engine_records"] += sum(1 for r in view[1].values() if r is not None) if view is not None else 0
        return view

    monkeypatch.setattr(triage, "written_narratives", counted)
    with captured_puts(monkeypatch) as runs:
        for k, start in enumerate(range(0, len(posts), size)):
            if between is not None:
                between(k)
            batch = posts[start : start + size]
            services.storage.upsert_posts(ORG, batch)
            before = len(runs)
            summaries = TriageMembers(services.storage).get(ORG, [nid for run in runs for nid in (i.removeprefix("narrative:") for i in run)
                                                                  if nid])  # what the run may read
            run_stages(services, ORG, batch, stages=stages)
            assert len(runs) == before + 1
            fast = runs[-1]
            reference = full_recompute(services, ORG, batch)
            assert fast == reference, _diff(fast, reference)[:5]
            seen["narratives"] += sum(1 for i in fast if i.startswith("narrative:"))
            seen["debunked"] += sum(1 for d in fast.values() if d["components"]["debunked"]["value"] > 0)
            seen["risk"] += sum(1 for d in fast.values() if d["components"]["risk"]["value"] > 0)
            seen["refreshed"] += len(set(fast) - {p.id for p in batch} - {i for i in fast if i.startswith("narrative:")})
            seen["from_summary"] += sum(len(s.members) for s in summaries.values())
    return seen


def _posts(n: int, seed: int, duplicates: float) -> list[Post]:
    return generated_posts(n, "tweet", duplicates=duplicates, seed=seed)  # raw: prepared once changed


def test_entries_are_the_full_recompute_with_repeats_narratives_debunks_and_link_risk(services: Services, monkeypatch: pytest.MonkeyPatch) -> None:
    posts = _posts(160, 21, 0.4)
    # a library holding some posts' claims (rated false, one rated true): a copy of one matches
    # it, an edited copy possibly (as a matcher decides; the hashing embedder's scores are no
    # basis for decisions)
    claims = {p.text: f"fc{k}" for k, p in enumerate(posts[:60:6])}
    services.storage.upsert_factchecks(ORG, [FactCheck(id=fid, claim=text, rating="True" if fid == "fc0" else "False") for text, fid in claims.items()])

    def matching(ctx: Any, org: str, batch: Any) -> dict[str, int]:
        for post in batch:
            for text, fid in claims.items():
                if post.text == text or post.text.startswith(text[:-12]):
                    decision = "match" if post.text == text else "possible"
                    ctx.storage.replace_matches(org, post.id, [MatchCandidate(factcheck_id=fid, rank=1, fused_score=0.9, decision=decision, decided_by="matcher-test-1")])
        return {}

    stages = [FunctionStage("matching", "matching-test-1", matching, needs=("embedding",), writes=("matches",)) if s.name == "matching" else s
              for s in load_stages()]
    # posts with a link to a look-alike login page: link risk
    for k in range(0, 160, 9):
        posts[k] = posts[k].model_copy(update={"text": posts[k].text + " http://paypa1-secure-login.example-verify.xyz/account/verify"})

    def library_changes(k: int) -> None:
        if k == 3:  # a fact-check re-rated and another withdrawn between runs, no re-check yet: members' debunks read again
            fcs = services.storage.get_factchecks(ORG, ["fc1", "fc2"])
            services.storage.upsert_factchecks(ORG, [
                fcs["fc1"].model_copy(update={"rating": "True"}),
                fcs["fc2"].model_copy(update={"raw": {**(fcs["fc2"].raw or {}), "withdrawn": {"at": "2026-03-02T00:00:00+00:00", "reason": "test"}}}),
            ])

    seen = _ingest_in_batches(services, [prepare_post(p) for p in posts], 32, monkeypatch, library_changes, stages)
    assert seen["narratives"] >= 5 and seen["debunked"] >= 3 and seen["risk"] >= 3 and seen["refreshed"] >= 10 and seen["from_summary"] >= 10, seen
    assert seen["engine_records"] >= 20, seen  # narratives taken from the engine's last write, as the store has them


def test_a_campaign_of_many_copies(services: Services, monkeypatch: pytest.MonkeyPatch) -> None:
    """Copies past the repeat search's neighbour count: each refresh as the full recompute's;
    the refreshed copies are not put into the index again and exact copies are searched once."""
    monkeypatch.setattr(triage, "REPEAT_NEIGHBOURS", 30)  # saturated with fewer posts
    posts = _posts(150, 5, 0.0)
    original = posts[0].text
    for i in range(1, 150):
        if i % 3:  # two posts in three: a copy, one in four of them edited
            text = original if i % 4 else original[:-12] + f" {i}!!"
            posts[i] = posts[i].model_copy(update={"text": text, "language": posts[0].language})
    rows: list[int] = []

    def counting(search: Any) -> Any:
        def counted(index: Any, queries: Any, *args: Any, **kwargs: Any) -> Any:
            if not REFERENCE["running"]:
                rows.append(len(queries))
            return search(index, queries, *args, **kwargs)

        return counted

    monkeypatch.setattr(triage, "search_above", counting(triage.search_above))  # a batch's new posts
    monkeypatch.setattr(triage, "search_batch", counting(triage.search_batch))  # the posts it refreshes
    seen = _ingest_in_batches(services, [prepare_post(p) for p in posts], 25, monkeypatch)
    assert seen["refreshed"] >= 60 and seen["narratives"] >= 1, seen
    searched = len(posts) + seen["refreshed"]
    assert sum(rows) <= searched / 2, f"a batch's or a refresh's exact copies share one search ({sum(rows)} of {searched})"
    from factbridge.backends.vectors.selection import _KEPT

    (kept,) = [k for key, k in _KEPT[services.storage].items() if key[1] == "post"]
    assert len(kept.index._ids) == len(posts), "each post went into the index once: a refresh does not re-insert it"


def _member(pid: str, score: float = 0.5, **kw: Any) -> MemberFacts:
    return MemberFacts(pid, None, score, True, False, "cw-test", 1.0, 0.0, **kw)


def test_summary_rows_round_trip_and_refuse_other_shapes() -> None:
    m = MemberFacts("p", 1_700_000_000_123_456, 0.81234567, True, False, "cw-1", 12.345, 0.6, {"factcheck_id": "fc", "rating": "False"}, 0.0, exact=False)
    doc = NarrativeMemberFacts("n", "v1", {"p": m}).to_doc()
    assert NarrativeMemberFacts.from_doc("n", doc) == NarrativeMemberFacts("n", "v1", {"p": m})
    doc["members"]["q"] = [1, 2]
    doc["members"]["r"] = ["0.5", True, True, False, "x", 1.0, 0.0, {}, 0.0, None]
    assert set(NarrativeMemberFacts.from_doc("n", doc).members) == {"p"}, "a row of another shape is not read (the member is gathered)"
    assert tuple(Engagement.model_fields) == triage._ENGAGEMENT, "weighted engagement is recomputed from an entry's reach evidence"


def _three_posts(services: Services) -> list[Post]:
    storage = services.storage
    posts = [prepare_post(Post(id=f"m{i}", text=f"The minister said {i}0 schools will close on Monday in the north region", language="en",
                               created_at=T0 + timedelta(minutes=i), engagement=Engagement(likes=10 * i))) for i in range(3)]
    storage.upsert_posts(ORG, posts)
    embed_posts(storage, services.embedder, ORG, posts)
    run_stages(services, ORG, posts, skip=("narratives", "bursts"))
    return posts


def _as_narrative(services: Services, posts: list[Post]) -> None:
    storage = services.storage
    storage.put_docs(ORG, "narratives", [("nar1", {"recent_posts": [[p.id, "", "seed", 1.0] for p in posts], "size": 3, "decided_by": "narratives-test-1"}, 3.0)])
    storage.put_docs(ORG, "narrative_members", [(p.id, {"post_id": p.id, "narrative_id": "nar1", "method": "seed", "decided_by": "narratives-test-1"}, None)
                                                for p in posts])


def _narrative_of_three(services: Services) -> list[Post]:
    posts = _three_posts(services)
    _as_narrative(services, posts)
    return posts


def test_best_member_from_rounded_entries_is_the_exact_one(services: Services, monkeypatch: pytest.MonkeyPatch) -> None:
    """Entries store scores to 4 places: members tied there have their stored scores read."""
    storage = services.storage
    posts = _three_posts(services)
    docs = storage.get_docs(ORG, "checkworthiness", ["m0", "m1"])
    for pid, score in (("m0", 0.912341), ("m1", 0.912349)):  # a score stored with more places (another writer)
        storage.put_docs(ORG, "checkworthiness", [(pid, {**docs[pid], "score": score, "label": "claim"}, score)])
    triage.triage_posts(services, ORG, posts[:2])  # their entries: 0.9123 both
    _as_narrative(services, posts)  # no member summary yet
    with captured_puts(monkeypatch) as runs:
        triage.triage_posts(services, ORG, [posts[2]])
    reference = full_recompute(services, ORG, [posts[2]])
    assert runs[-1] == reference, _diff(runs[-1], reference)[:5]
    assert runs[-1]["narrative:nar1"]["components"]["checkworthiness"]["evidence"]["best_post"] == "m1"
    summary = TriageMembers(storage).get(ORG, ["nar1"])["nar1"]
    assert summary.members["m1"].exact and summary.members["m1"].score == 0.912349 and set(summary.members) == {"m0", "m1", "m2"}


def test_a_member_changed_since_its_summary_is_read_again(services: Services, monkeypatch: pytest.MonkeyPatch) -> None:
    """A member triaged again (its post changed) writes its narrative's summary; a narrative
    with a risk of its own gathers its members."""
    storage = services.storage
    posts = _narrative_of_three(services)
    triage.triage_posts(services, ORG, posts)
    changed = posts[0].model_copy(update={"engagement": Engagement(likes=5000, shares=40)})
    storage.upsert_posts(ORG, [changed])
    run_stages(services, ORG, [changed], skip=("narratives", "bursts"))
    assert TriageMembers(storage).get(ORG, ["nar1"])["nar1"].members["m0"].engagement == 5080.0
    with captured_puts(monkeypatch) as runs:
        triage.triage_posts(services, ORG, [posts[2]])
        assert runs[-1] == full_recompute(services, ORG, [posts[2]])
        doc = storage.get_docs(ORG, "narratives", ["nar1"])["nar1"]
        storage.put_docs(ORG, "narratives", [("nar1", {**doc, "risk": 0.7}, 3.0)])
        triage.triage_posts(services, ORG, [posts[2]])
        assert runs[-1] == full_recompute(services, ORG, [posts[2]])
        assert runs[-1]["narrative:nar1"]["components"]["risk"]["evidence"]["members_max"] == 0.7


@pytest.fixture
def pg_services(tmp_path: Path, postgres_url: str) -> Iterator[Services]:
    settings = load_settings(env={}, overrides={
        "data_dir": str(tmp_path), "storage_url": postgres_url, "embedder": "hashing", "embed_cache": "off", "match_fusion": "rrf",
    })
    s = Services(settings)
    s.storage.migrate()
    yield s
    s.close()


def test_two_writers_of_one_summary_cannot_both_win(services: Services, monkeypatch: pytest.MonkeyPatch) -> None:
    _two_writers(services, monkeypatch)


def test_two_writers_on_postgresql(pg_services: Services, monkeypatch: pytest.MonkeyPatch) -> None:
    m = MemberFacts("p", 1_700_000_000_123_456, 0.81234567891, True, False, "cw-1", 12.345, 0.6, {"factcheck_id": "fc", "rating": "False"}, 1e-7)
    pg_services.storage.put_docs_batch(ORG, [TriageMembers.rows([NarrativeMemberFacts("n", "v1", {"p": m})])])
    assert TriageMembers(pg_services.storage).get(ORG, ["n"])["n"].members["p"] == m, "floats come back exactly from JSONB"
    _two_writers(pg_services, monkeypatch)


def _two_writers(services: Services, monkeypatch: pytest.MonkeyPatch) -> None:
    storage = services.storage
    posts = _narrative_of_three(services)
    triage.triage_posts(services, ORG, posts[:2])
    real = storage.put_docs_batch
    conflicts = {"left": 1}

    def other_worker_first(org: str, writes: Any, **kw: Any) -> None:
        if conflicts["left"] and any(c == TRIAGE_MEMBERS for c, _ in writes):
            conflicts["left"] -= 1  # another worker's summary lands between this run's read and its write
            theirs = NarrativeMemberFacts("nar1", f"theirs-{conflicts['left']}", {"m0": _member("m0", 0.1), "other": _member("other")})
            real(org, [TriageMembers.rows([theirs])])
        real(org, writes, **kw)

    monkeypatch.setattr(storage, "put_docs_batch", other_worker_first)
    changed = posts[2].model_copy(update={"engagement": Engagement(likes=777)})  # this run's facts of m2 are new
    storage.upsert_posts(ORG, [changed])
    triage.triage_posts(services, ORG, [changed])
    summary = TriageMembers(storage).get(ORG, ["nar1"])["nar1"]
    assert not summary.version.startswith("theirs") and summary.members["other"] == _member("other"), "their members are kept"
    assert summary.members["m0"] == _member("m0", 0.1) and summary.members["m2"].engagement == 777.0, "this run's own members are its own"
    assert storage.get_docs(ORG, QUEUE, ["m2", "narrative:nar1"]).keys() == {"m2", "narrative:nar1"}

    conflicts["left"] = triage.PUT_ATTEMPTS  # losing every time: the summary is emptied, the entries are written
    triage.triage_posts(services, ORG, [posts[2]])  # m2's facts differ from the summary's again
    assert TriageMembers(storage).get(ORG, ["nar1"])["nar1"].members == {}
    storage.upsert_posts(ORG, [posts[2]])
    with captured_puts(monkeypatch) as runs:
        triage.triage_posts(services, ORG, [posts[2]])
    assert runs[-1] == full_recompute(services, ORG, [posts[2]])
