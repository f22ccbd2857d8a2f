"""Narratives: near-duplicates, semantic joins, topics, evidence, incremental reload; PHEME quality."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from factbridge.cli import app
from factbridge.models import Post
from factbridge.pipeline import narratives as narr
from factbridge.pipeline.centering import shipped_centering
from factbridge.pipeline.ingest import embed_posts, ingest_file
from factbridge.pipeline.stages import run_stages
from factbridge.services import Services
from factbridge.settings import Settings
from factbridge.text import minhash

T0 = datetime(2026, 3, 1, 8, 0, tzinfo=UTC)


def test_minhash_near_duplicates_across_scripts_and_tone_marks() -> None:
    texts = [
        "RT @someone: Breaking: gunman takes hostages in Sydney cafe http://t.co/x",
        "Breaking: gunman takes hostages in Sydney cafe!!",
        "Bộ Y tế khẳng định không có vắc xin gây vô sinh",
        "Bo Y te khang dinh khong co vac xin gay vo sinh",  # typed without tone marks
        "ក្រសួងសុខាភិបាលបញ្ជាក់ថាវ៉ាក់សាំងមិនបង្កឲ្យគ្មានកូនទេ",
        "ក្រសួងសុខាភិបាល បញ្ជាក់ថា វ៉ាក់សាំង មិនបង្កឲ្យគ្មានកូនទេ",  # same Khmer text, spaced
        "The central bank raised interest rates by half a point today",
    ]
    sigs, valid = minhash.signatures(texts)
    assert valid.all()
    for a, b in ((0, 1), (2, 3), (4, 5)):
        assert minhash.jaccard_estimate(sigs[a], sigs[b]) >= 0.7
    assert minhash.jaccard_estimate(sigs[0], sigs[6]) < 0.2
    groups = minhash.near_duplicate_groups(texts, threshold=0.7)
    assert groups[0] == groups[1] and groups[2] == groups[3] and groups[4] == groups[5]
    assert len(set(groups.tolist())) == 4


def test_band_index_lookup_and_merge() -> None:
    index = minhash.BandIndex()
    keys = np.arange(120_000, dtype=np.uint64).reshape(-1, 4) * np.uint64(7919)
    index.add(keys, np.repeat(np.arange(keys.shape[0]), 4).reshape(-1, 4))
    found = index.lookup(keys[[0, 5, 29_999]])
    assert found[:, 0].tolist() == [0, 5, 29_999]
    assert (index.lookup(np.array([[3, 5]], dtype=np.uint64)) == -1).all()
    index.add(keys[:2], np.full((2, 4), 77))  # known keys are not added again
    assert index.lookup(keys[:1])[0, 0] == 0


def _write_posts(path: Path, rows: list[dict]) -> Path:
    path.write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in rows), encoding="utf-8")
    return path


def _ingest(services: Services, path: Path) -> dict:
    org = services.settings.org
    outcome = ingest_file(services.storage, org, path, services.languages)
    embed_posts(services.storage, services.embedder, org, outcome.posts)
    return run_stages(services, org, outcome.posts)


STORIES = [
    "Police confirm hostages held inside the Lindt cafe in Martin Place Sydney",
    "Plane crashed in the French Alps, all passengers feared dead, says airline",
    "Vaccine causes infertility in young women, claims viral video from clinic",
]


def _rows(start: int, n: int, story: int, when: datetime, step_min: int = 5) -> list[dict]:
    rows = []
    for i in range(n):
        text = STORIES[story] + ("" if i % 3 == 0 else f" #{['breaking', 'news', 'update'][i % 3]} {i}")
        rows.append({"id": f"p{start + i}", "author": f"acct{i % 7}", "created_at": (when + timedelta(minutes=step_min * i)).isoformat(), "text": text, "language": "en"})
    return rows


def test_stage_assigns_posts_with_evidence_and_topics(hashing_services: Services, tmp_path: Path) -> None:
    rows = _rows(0, 6, 0, T0) + _rows(100, 4, 1, T0 + timedelta(hours=1))
    summary = _ingest(hashing_services, _write_posts(tmp_path / "a.jsonl", rows))
    assert summary["narratives"]["assigned"] == 10
    storage, org = hashing_services.storage, hashing_services.settings.org
    members = storage.get_docs(org, narr.MEMBERS, [r["id"] for r in rows])
    assert len({members[f"p{i}"]["narrative_id"] for i in range(6)}) == 1
    assert members["p0"]["narrative_id"] != members["p100"]["narrative_id"]
    joined = members["p1"]
    assert joined["method"] == "near-duplicate" and 0.5 <= joined["similarity"] <= 1.0
    assert joined["neighbour"] == "p0" and joined["decided_by"].startswith(narr.NARRATIVES_VERSION)
    assert members["p0"]["method"] == "seed"
    doc = storage.get_docs(org, narr.NARRATIVES, [joined["narrative_id"]])[joined["narrative_id"]]
    assert doc["size"] == 6 and doc["languages"] == {"en": 6}
    assert "lindt" in doc["top_terms"] and doc["representative"]["post_id"].startswith("p")
    assert sum(doc["counts_hourly"].values()) == 6 and doc["first_seen"].startswith("2026-03-01T08:00")
    topic = storage.get_docs(org, narr.TOPICS, [doc["topic_id"]])[doc["topic_id"]]
    assert joined["narrative_id"] in topic["narratives"]
    # Growing now: the sort key orders by decayed count.
    listed = storage.list_docs(org, narr.NARRATIVES, limit=5)
    assert listed[0][1]["size"] == 6


def test_reingest_and_cold_reload_continue_the_same_narratives(hashing_services: Services, tmp_path: Path) -> None:
    path = _write_posts(tmp_path / "a.jsonl", _rows(0, 5, 2, T0))
    _ingest(hashing_services, path)
    storage, org = hashing_services.storage, hashing_services.settings.org
    before = storage.get_docs(org, narr.NARRATIVES, [d for d, _ in storage.list_docs(org, narr.NARRATIVES)])
    _ingest(hashing_services, path)  # unchanged posts: nothing to assign, counts unchanged
    assert storage.get_docs(org, narr.NARRATIVES, list(before)) == before
    narr._ENGINES.clear()  # as a new process would: the engine is rebuilt from storage
    _ingest(hashing_services, _write_posts(tmp_path / "b.jsonl", _rows(50, 2, 2, T0 + timedelta(days=1))))
    members = storage.get_docs(org, narr.MEMBERS, ["p0", "p50", "p51"])
    assert members["p50"]["narrative_id"] == members["p0"]["narrative_id"]
    nid = members["p0"]["narrative_id"]
    assert storage.get_docs(org, narr.NARRATIVES, [nid])[nid]["size"] == 7


def test_narratives_cli_lists_and_shows(hashing_services: Services, tmp_path: Path) -> None:
    db = tmp_path / "fb.db"
    path = _write_posts(tmp_path / "a.jsonl", _rows(0, 4, 0, T0) + _rows(10, 3, 1, T0))
    base = ["--data-dir", str(tmp_path), "--storage-url", f"sqlite:///{db}", "--embedder", "hashing", "--embed-cache", "off"]
    runner = CliRunner()
    result = runner.invoke(app, [*base, "ingest", str(path)], env={"FACTBRIDGE_MATCH_FUSION": "rrf"})
    assert result.exit_code == 0, result.output
    result = runner.invoke(app, [*base, "narratives", "--json"])
    assert result.exit_code == 0, result.output
    listed = json.loads(result.output)
    assert sorted(d["size"] for d in listed) == [3, 4]
    result = runner.invoke(app, [*base, "narratives", "show", listed[0]["id"]])
    assert result.exit_code == 0 and "near-duplicate" in result.output
    result = runner.invoke(app, [*base, "narratives", "topics"])
    assert result.exit_code == 0 and "Topics" in result.output


def test_unknown_embedder_needs_thresholds(hashing_services: Services) -> None:
    from factbridge.errors import ConfigError

    with pytest.raises(ConfigError, match="narrative_threshold"):
        narr.resolve_thresholds(hashing_services.settings.narratives, "st:some-model@abc")


def test_factcheck_matches_are_kept_on_the_narrative(storage) -> None:  # type: ignore[no-untyped-def]
    from factbridge.models import MatchCandidate

    posts = [Post(id=f"m{i}", text=STORIES[2], created_at=T0 + timedelta(minutes=i), language="en") for i in range(3)]
    storage.upsert_posts("o", posts)
    storage.replace_matches("o", "m1", [MatchCandidate(factcheck_id="fc1", rank=1, fused_score=0.9, decision="match", decided_by="t")])
    vecs = np.tile(np.eye(8, dtype=np.float32)[0], (3, 1))
    narr.assign_posts(storage, "o", posts, vecs, Settings(narrative_threshold=0.9, topic_threshold=0.5).narratives)
    (nid, doc), = storage.list_docs("o", narr.NARRATIVES)
    assert doc["factchecks"][0]["factcheck_id"] == "fc1" and doc["factchecks"][0]["posts"] == 1


@pytest.mark.quality
@pytest.mark.model
def test_pheme_grouping_quality(shared_data: Path, e5_embedder) -> None:  # type: ignore[no-untyped-def]
    from factbridge.eval.narratives import evaluate_grouping, load_pheme
    from factbridge.pipeline.prepare import embedding_text, prepare_post

    posts, events = load_pheme(shared_data / "rumours" / "pheme")
    posts = [prepare_post(p) for p in posts]
    vectors = e5_embedder.encode_queries([embedding_text(p) for p in posts])  # all from the committed cache
    from factbridge.settings import load_settings

    settings = load_settings(env={})
    centering = shipped_centering(e5_embedder.id) if settings.narrative_centering else None
    assert centering is not None, "the package ships per-language centering for e5"
    params = narr.resolve_thresholds(settings.narratives, e5_embedder.id, centering)
    vectors = centering.apply(vectors, [p.language for p in posts], "query")
    report = evaluate_grouping(posts, events, vectors, params)
    topics, narratives = report["levels"]["topics"], report["levels"]["narratives"]
    print(report)
    assert topics["ari"] >= 0.70
    assert narratives["purity"] >= 0.95
    assert topics["ari"] == pytest.approx(PHEME_TOPICS_ARI, abs=0.02)
    assert narratives["purity"] == pytest.approx(PHEME_NARRATIVES_PURITY, abs=0.01)
    assert narratives["groups"] == pytest.approx(PHEME_NARRATIVES, rel=0.1)
    # Meaning alone (no time limits) must reach the target too: time helps, it does not do the work.
    meaning_only = replace(params, topic_max_gap_hours=float("inf"), semantic_max_gap_hours=float("inf"))
    report = evaluate_grouping(posts, events, vectors, meaning_only)
    print(report)
    assert report["levels"]["topics"]["ari"] == pytest.approx(PHEME_MEANING_ONLY_TOPICS_ARI, abs=0.03)
    assert report["levels"]["narratives"]["purity"] >= 0.95


# Measured with `factbridge eval narratives --data ../shared/data/rumours/pheme` (e5, calibrated thresholds).
# The same in every run since narrative and topic ids (and so the order of topic merges) come from
# the data: 0.9526 (random ids gave 0.955-0.958 by run).
PHEME_TOPICS_ARI = 0.9526
PHEME_NARRATIVES_PURITY = 1.0
PHEME_NARRATIVES = 429
PHEME_MEANING_ONLY_TOPICS_ARI = 0.945


def test_vectors_come_from_the_embedding_cache_when_there_is_one(tmp_path: Path) -> None:
    from factbridge.settings import load_settings

    settings = load_settings(env={}, overrides={"data_dir": str(tmp_path), "storage_url": "sqlite:///:memory:", "embedder": "hashing", "embed_cache": str(tmp_path / "emb.sqlite"), "match_fusion": "rrf"})
    with Services(settings) as services:
        _ingest(services, _write_posts(tmp_path / "a.jsonl", _rows(0, 4, 0, T0)))
        posts = list(services.storage.get_posts(settings.org, ["p0", "p1", "p2", "p3"]).values())
        found, from_cache = narr.post_vectors(services.storage, settings.org, services.embedder, posts)
        ids, stored = services.storage.load_vectors(settings.org, "post", services.embedder.id)
        order = [ids.index(p.id) for p in found]
        assert len(found) == 4 and np.allclose(from_cache, stored[order], atol=2e-3)  # float16 cache


@pytest.mark.model
def test_khmer_and_vietnamese_posts_of_one_story_share_a_topic(e5_embedder, storage) -> None:  # type: ignore[no-untyped-def]
    """With per-language centering a Khmer post and a Vietnamese post of the same story meet;
    Khmer posts of different stories do not merge just because they are Khmer."""
    from factbridge.backends.connectors.files import read_posts
    from factbridge.pipeline.prepare import embedding_text, prepare_post
    from factbridge.settings import load_settings

    wanted = {"p-0003", "p-0004", "p-0010", "p-0011", "p-0018", "p-0025", "p-0026"}
    sample = Path(narr.__file__).resolve().parent.parent / "data" / "sample" / "posts.jsonl"
    posts = [prepare_post(p) for p in read_posts(sample) if isinstance(p, Post) and p.id in wanted]
    assert len(posts) == len(wanted)
    settings = load_settings(env={})
    centering = shipped_centering(e5_embedder.id) if settings.narrative_centering else None
    vectors = centering.apply(e5_embedder.encode_queries([embedding_text(p) for p in posts]), [p.language for p in posts], "query")
    storage.upsert_posts("o", posts)
    narr.assign_posts(storage, "o", posts, vectors, narr.resolve_thresholds(settings.narratives, e5_embedder.id, centering))
    members = storage.get_docs("o", narr.MEMBERS, [p.id for p in posts])
    topic = {pid: storage.get_docs("o", narr.NARRATIVES, [m["narrative_id"]])[m["narrative_id"]]["topic_id"] for pid, m in members.items()}
    assert topic["p-0003"] == topic["p-0004"]  # the Lao dam, vi and km
    assert topic["p-0025"] == topic["p-0026"]  # the singer's death, vi and km
    assert topic["p-0010"] == topic["p-0011"]  # the border closing, vi and km
    assert topic["p-0018"] not in {topic["p-0004"], topic["p-0026"], topic["p-0011"]}  # a Khmer sale ad stays apart
