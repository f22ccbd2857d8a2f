"""New fact-checks reach what was decided without them: matches, narratives' fact-check lists, queue."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from typer.testing import CliRunner

from factbridge.models import FactCheck, Post
from factbridge.pipeline import narratives as narr
from factbridge.pipeline.ingest import embed_posts
from factbridge.pipeline.matching import index_factchecks
from factbridge.pipeline.prepare import prepare_factcheck, prepare_post
from factbridge.pipeline.recheck import recheck_factchecks
from factbridge.pipeline.stages import run_stages
from factbridge.pipeline.triage import QUEUE
from factbridge.services import Services
from factbridge.settings import load_settings

T0 = datetime(2024, 5, 1, 8, 0, tzinfo=UTC)
CLAIM = "The Mekong dam in Laos collapsed and floods will reach Phnom Penh tonight, evacuate now"
OTHER = "The health ministry said 3,200 children were hospitalised with dengue in July"
DEBUNK = FactCheck(id="fc-dam", claim="The Mekong dam in Laos collapsed and floods will reach Phnom Penh tonight", rating="False", language="en")
# Rank fusion with explicit thresholds: with one fact-check in the library, a post ranked first by
# both retrievers scores 2/(60+1) = 0.033 (match); first by one only, 1/61 = 0.016 (none).
MATCHING = {"match_fusion": "rrf", "match_threshold": 0.03, "possible_threshold": 0.02}
FLOOR = 0.3  # hashing-embedder cosines spread low


@pytest.fixture
def services(tmp_path: Path) -> Iterator[Services]:
    settings = load_settings(env={}, overrides={"data_dir": str(tmp_path), "storage_url": "sqlite:///:memory:", "embedder": "hashing", "embed_cache": "off", **MATCHING})
    with Services(settings) as svc:
        yield svc


def _posts(start: int, n: int, text: str, minutes: int = 0) -> list[Post]:
    return [
        prepare_post(Post(id=f"p{start + i}", text=text + ("" if i == 0 else f" #{i}"), language="en", created_at=T0 + timedelta(minutes=minutes + 10 * i), author=f"a{i}"))
        for i in range(n)
    ]


def _ingest(services: Services, posts: list[Post]) -> dict[str, dict[str, object]]:
    org = services.settings.org
    services.storage.upsert_posts(org, posts)
    embed_posts(services.storage, services.embedder, org, posts)
    return run_stages(services, org, posts)


def _narrative_of(services: Services, post_id: str) -> tuple[str, dict]:
    org = services.settings.org
    nid = services.storage.get_docs(org, narr.MEMBERS, [post_id])[post_id]["narrative_id"]
    return nid, services.storage.get_docs(org, narr.NARRATIVES, [nid])[nid]


def _add_factcheck(services: Services, fc: FactCheck) -> None:
    org = services.settings.org
    services.storage.upsert_factchecks(org, [prepare_factcheck(fc, services.languages)])
    index_factchecks(services.storage, services.embedder, org)


@pytest.mark.parametrize("recent_posts", [narr.RECENT_POSTS, 2], ids=["members-listed", "members-from-documents"])
def test_new_factcheck_reaches_narratives_and_queue(services: Services, monkeypatch: pytest.MonkeyPatch, recent_posts: int) -> None:
    # With 2, a narrative's document lists only its last 2 posts: its members come from "narrative_members".
    monkeypatch.setattr(narr, "RECENT_POSTS", recent_posts)
    storage, org = services.storage, services.settings.org
    summary = _ingest(services, _posts(0, 4, CLAIM) + _posts(10, 1, OTHER, minutes=3))
    assert summary["matching"]["note"] == "empty fact-check library"
    nid, doc = _narrative_of(services, "p0")
    assert doc["size"] == 4 and doc["factchecks"] == []
    other_nid, other_doc = _narrative_of(services, "p10")
    assert other_nid != nid
    before = storage.get_docs(org, QUEUE, ["p0", f"narrative:{nid}"])
    assert before["p0"]["components"]["debunked"]["value"] == 0.0
    assert before[f"narrative:{nid}"]["components"]["debunked"]["value"] == 0.0
    seq_before = storage.get_docs(org, narr.STATE, ["state"])["state"]["seq"]

    _add_factcheck(services, DEBUNK)
    report = recheck_factchecks(services, org, ["fc-dam"], floor=FLOOR)

    assert sorted(report.hits["fc-dam"]) == ["p0", "p1", "p2", "p3"]
    assert report.narratives["narratives_changed"] == 1 and report.narratives["changed"] == [nid]
    _, doc = _narrative_of(services, "p0")
    (listed,) = doc["factchecks"]
    assert listed["factcheck_id"] == "fc-dam" and listed["posts"] == 4 and listed["decision"] == "match"
    assert listed["decided_by"] and listed["fused_score"] >= 0.03
    assert _narrative_of(services, "p10")[1]["factchecks"] == other_doc["factchecks"] == []
    assert storage.get_docs(org, narr.STATE, ["state"])["state"]["seq"] == seq_before + 1

    after = storage.get_docs(org, QUEUE, ["p0", "p10", f"narrative:{nid}"])
    debunked = after["p0"]["components"]["debunked"]
    assert debunked["value"] == 1.0 and debunked["evidence"]["factcheck_id"] == "fc-dam"
    assert after["p0"]["decided_by"]["matching"] == listed["decided_by"]
    assert after["p0"]["priority"] > before["p0"]["priority"]
    assert after[f"narrative:{nid}"]["components"]["debunked"]["value"] == 1.0
    assert after[f"narrative:{nid}"]["priority"] > before[f"narrative:{nid}"]["priority"]
    assert after["p10"]["components"]["debunked"]["value"] == 0.0

    # The engine cached in this process saw the refresh: a later copy adds to the list, not to a stale one.
    _ingest(services, _posts(20, 1, CLAIM + " again", minutes=60))
    _, doc = _narrative_of(services, "p20")
    assert doc["id"] == nid and doc["size"] == 5
    assert [(f["factcheck_id"], f["posts"]) for f in doc["factchecks"]] == [("fc-dam", 5)]

    # Nothing changed since: a second re-check rewrites no narrative.
    again = recheck_factchecks(services, org, ["fc-dam"], floor=FLOOR)
    assert again.narratives["narratives_changed"] == 0


def test_another_process_reloads_after_the_refresh(tmp_path: Path) -> None:
    """The refresh writes the narratives' next state with its change entry, so an engine cached
    elsewhere is not used as it was: it reads the refreshed lists."""
    settings = load_settings(env={}, overrides={"data_dir": str(tmp_path), "storage_url": f"sqlite:///{tmp_path / 'db.sqlite'}", "embedder": "hashing", "embed_cache": "off", **MATCHING})
    with Services(settings) as first:
        _ingest(first, _posts(0, 3, CLAIM))
        org = settings.org
        engine = narr._ENGINES[first.storage][org]
        with Services(settings) as second:  # another process: its own storage handle, no cached engine
            _add_factcheck(second, DEBUNK)
            report = recheck_factchecks(second, org, ["fc-dam"], floor=FLOOR)
            assert report.narratives["narratives_changed"] == 1
        stale = narr.NarrativeStore(first.storage).state(org)
        assert stale is not None and not engine.holds(stale)
        _ingest(first, _posts(5, 1, CLAIM + " again", minutes=60))
        current = narr._ENGINES[first.storage][org]
        assert current.holds(narr.NarrativeStore(first.storage).state(org))
        nid = narr.NarrativeMembers(first.storage).get(org, ["p5"])["p5"].narrative_id
        assert {f: c["posts"] for f, c in current.narratives[nid].factchecks.items()} == {"fc-dam": 4}, "the refreshed lists were read"
        _, doc = _narrative_of(first, "p5")
        assert [(f["factcheck_id"], f["posts"]) for f in doc["factchecks"]] == [("fc-dam", 4)]


def test_without_a_queue_none_is_started(services: Services) -> None:
    storage, org = services.storage, services.settings.org
    posts = _posts(0, 2, CLAIM)
    storage.upsert_posts(org, posts)
    embed_posts(storage, services.embedder, org, posts)
    _add_factcheck(services, DEBUNK)
    report = recheck_factchecks(services, org, ["fc-dam"], floor=FLOOR)
    assert sorted(report.rematched) == ["p0", "p1"] and report.queue == {}
    assert report.narratives == {"narratives_checked": 0, "narratives_changed": 0}
    assert storage.count_docs(org, QUEUE) == 0


def test_factchecks_import_command_propagates(tmp_path: Path) -> None:
    from factbridge.cli import app

    posts = tmp_path / "posts.jsonl"
    posts.write_text("\n".join(json.dumps({"id": p.id, "text": p.text, "language": "en", "created_at": p.created_at.isoformat()}) for p in _posts(0, 3, CLAIM)) + "\n", encoding="utf-8")
    library = tmp_path / "factchecks.csv"
    library.write_text(f"claim,rating,url,language\n\"{DEBUNK.claim}\",False,https://example.org/dam,en\n", encoding="utf-8")
    base = ["--data-dir", str(tmp_path), "--embedder", "hashing", "--embed-cache", "off"]
    env = {f"FACTBRIDGE_{k.upper()}": str(v) for k, v in MATCHING.items()}
    runner = CliRunner()
    result = runner.invoke(app, [*base, "ingest", str(posts)], env=env)
    assert result.exit_code == 0, result.output
    result = runner.invoke(app, [*base, "factchecks", "import", str(library)], env=env)
    assert result.exit_code == 0, result.output
    said = " ".join(result.output.split())  # rich wraps long lines
    assert "3 post matches to 1 new fact-checks; 1 narratives' fact-check lists and 4 queue entries refreshed" in said, said
    result = runner.invoke(app, [*base, "queue", "--json"], env=env)
    entries = {e["id"]: e for e in json.loads(result.output)}
    assert entries["p0"]["components"]["debunked"]["value"] == 1.0
