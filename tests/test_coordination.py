"""Coordinated sharing: the method on a hand-made table, planted groups in synthetic background,
the real CooRTweet sets, bad input and the CLI."""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from factbridge.bench.synthetic import generate_shares, planted_precision_recall
from factbridge.cli import app
from factbridge.errors import InputError
from factbridge.pipeline.coordination import (
    detect_coordination,
    read_shares,
    shares_from_frame,
)
from factbridge.settings import Settings

T = 1_700_000_000


def _frame() -> pd.DataFrame:
    rows = []
    # a, b and c share four links within ten seconds of each other, each time.
    for k in range(4):
        for j, acc in enumerate("abc"):
            rows.append({"account_id": acc, "timestamp": T + 3600 * k + 3 * j, "url": f"https://x.example/{k}", "hashtag": ""})
    # d shares the same links an hour later: not coordinated.
    for k in range(4):
        rows.append({"account_id": "d", "timestamp": T + 3600 * k + 1800, "url": f"https://x.example/{k}", "hashtag": ""})
    # e and f share one hashtag together once: a coincidence.
    rows += [{"account_id": "e", "timestamp": T, "url": "", "hashtag": "#news"}, {"account_id": "f", "timestamp": T + 5, "url": "", "hashtag": "#news"}]
    return pd.DataFrame(rows)


def test_coordinated_accounts_form_one_network_with_evidence() -> None:
    table = shares_from_frame(_frame(), "hand-made")
    result = detect_coordination(table, Settings(coordination_window_s=60, coordination_min_participation=3, coordination_edge_percentile=90).coordination)
    assert len(result.networks) == 1
    net = result.networks[0]
    assert net.accounts == ["a", "b", "c"]
    assert net.edge_count == 3 and {e["weight"] for e in net.edges} == {4}
    assert {o["object"] for o in net.objects} == {f"url:https://x.example/{k}" for k in range(4)}
    assert all(o["accounts"] == 3 and o["last_share"] - o["first_share"] <= 6 for o in net.objects)
    assert "window 60 s" in result.decided_by


def test_planted_groups_in_background_activity() -> None:
    synthetic = generate_shares(100_000, groups=6, seed=3)
    table = shares_from_frame(synthetic.frame, "synthetic")
    result = detect_coordination(table, Settings().coordination)
    found = {a for n in result.networks for a in n.accounts}
    precision, recall = planted_precision_recall(synthetic.planted_accounts, found)
    print(f"planted accounts {len(synthetic.planted_accounts)}: precision {precision:.3f} recall {recall:.3f}")
    assert precision == pytest.approx(PLANTED_PRECISION, abs=0.02)
    assert recall == pytest.approx(PLANTED_RECALL, abs=0.05)


PLANTED_PRECISION = 1.0
PLANTED_RECALL = 1.0


def test_german_elections_set(shared_data: Path) -> None:
    path = shared_data / "coordination" / "coortweet" / "german_elections.csv"
    started = time.perf_counter()
    result = detect_coordination(read_shares(path), Settings().coordination)
    took = time.perf_counter() - started
    print(f"german_elections: {len(result.networks)} networks, {result.coordinated_accounts} accounts in {took:.2f} s")
    assert result.shares == 122_047 and result.accounts == 58_317
    assert len(result.networks) == GERMAN_NETWORKS and result.coordinated_accounts == GERMAN_ACCOUNTS
    assert all(len(n.accounts) >= 2 and n.objects for n in result.networks)
    assert took < 30  # the target (5 s on an idle 2-core machine) is measured by the CLI; this guards regressions


GERMAN_NETWORKS = 127
GERMAN_ACCOUNTS = 479


def test_missing_columns_and_bad_rows(tmp_path: Path) -> None:
    bad = tmp_path / "bad.csv"
    bad.write_text("user_name,url\nx,http://a\n", encoding="utf-8")
    with pytest.raises(InputError) as err:
        read_shares(bad)
    assert "account" in str(err.value) and "bad.csv" in str(err.value)
    rows = tmp_path / "rows.csv"
    rows.write_text(f"account_id,timestamp,url\na,{T},u1\n,{T},u1\nb,yesterday-ish,u1\nc,{T + 2},u1\n", encoding="utf-8")
    table = read_shares(rows)
    assert table.skipped_count == 2
    assert [(line, field) for line, field, _ in table.skipped] == [(3, "account_id"), (4, "timestamp")]
    assert len(table) == 2


def test_coordination_cli_on_a_file(tmp_path: Path) -> None:
    path = tmp_path / "shares.csv"
    _frame().to_csv(path, index=False)
    result = CliRunner().invoke(app, ["--data-dir", str(tmp_path), "coordination", "--input", str(path), "--min-participation", "3"])
    assert result.exit_code == 0, result.output
    assert "1 networks, 3 accounts" in result.output and "time taken" in result.output


def test_large_components_split_into_louvain_communities() -> None:
    from factbridge.pipeline.coordination import louvain

    # Two 6-cliques joined by one weak link: one component, two communities.
    edges = [(a, b) for a in range(6) for b in range(a + 1, 6)] + [(a, b) for a in range(6, 12) for b in range(a + 1, 12)] + [(5, 6)]
    src, dst = (np.array(x) for x in zip(*edges, strict=True))
    labels = louvain(12, src, dst, np.ones(len(edges)))
    assert len(set(labels[:6].tolist())) == 1 and len(set(labels[6:].tolist())) == 1 and labels[0] != labels[11]
    rows = []
    for group, members in enumerate(("abcdef", "ghijkl")):
        for k in range(4):
            rows += [{"account_id": m, "timestamp": T + 3600 * (k + 10 * group) + j, "url": f"u{group}-{k}"} for j, m in enumerate(members)]
    rows += [{"account_id": a, "timestamp": T + 99_999 + 3600 * k + j, "url": f"bridge-{k}"} for k in range(4) for j, a in enumerate("fg")]
    table = shares_from_frame(pd.DataFrame(rows), "two groups")
    whole = detect_coordination(table, Settings(coordination_split_above=0).coordination)
    split = detect_coordination(table, Settings(coordination_split_above=8).coordination)
    assert [len(n.accounts) for n in whole.networks] == [12]
    assert sorted(len(n.accounts) for n in split.networks) == [6, 6]
    assert all(n.component_size == 12 and n.links_to_other_communities == 1 for n in split.networks)


# --------------------------------------------------------------------------- linked to narratives


def _campaign_posts() -> list:  # type: ignore[type-arg]
    """Three accounts post the same story with the same link within seconds, four times
    (four links); a fourth account posts the story once, an hour later; others chat."""
    from datetime import UTC, datetime, timedelta

    from factbridge.models import Post
    from factbridge.pipeline.prepare import prepare_post

    start = datetime(2026, 11, 2, 8, 0, tzinfo=UTC)
    posts = []
    for k in range(4):
        for j, account in enumerate(("acct-a", "acct-b", "acct-c")):
            posts.append(Post(id=f"c{k}{j}", author=account, created_at=start + timedelta(hours=k, seconds=4 * j), language="en",
                              text=f"5G towers spread the virus, doctors confirm! Read before it is deleted https://news-{k}.example/5g #truth"))
    posts.append(Post(id="late", author="acct-d", created_at=start + timedelta(hours=1, minutes=30), language="en",
                      text="5G towers spread the virus, doctors confirm! Read before it is deleted https://news-1.example/5g #truth"))
    posts += [Post(id=f"x{i}", author=f"acct-x{i}", created_at=start + timedelta(minutes=7 * i), language="en", text=f"Lovely weather in Hanoi today, day {i}")
              for i in range(5)]
    return [prepare_post(p) for p in posts]


def test_stage_links_coordinated_accounts_to_their_narrative(hashing_services) -> None:  # type: ignore[no-untyped-def]
    from factbridge.pipeline.coordination import NARRATIVE_COORDINATION
    from factbridge.pipeline.ingest import embed_posts
    from factbridge.pipeline.narratives import MEMBERS
    from factbridge.pipeline.stages import run_stages
    from factbridge.web.pipeline_views import narrative

    services, org = hashing_services, "o"
    posts = _campaign_posts()
    services.storage.upsert_posts(org, posts)
    embed_posts(services.storage, services.embedder, org, posts)
    summary = run_stages(services, org, posts)
    assert summary["coordination"]["networks"] == 1 and summary["coordination"]["coordinated_accounts"] == 3
    assert summary["coordination"]["narratives_linked"] >= 1
    member_of = {pid: doc["narrative_id"] for pid, doc in services.storage.get_docs(org, MEMBERS, [p.id for p in posts]).items()}
    linked = services.storage.get_docs(org, NARRATIVE_COORDINATION, [member_of["c00"]])[member_of["c00"]]
    assert {a["account"] for a in linked["accounts"]} == {"acct-a", "acct-b", "acct-c"}  # not acct-d: an hour late
    assert all(a["posts"] >= 1 and a["post_ids"] for a in linked["accounts"])
    assert linked["networks"][0]["shared_objects"] and "window" in linked["decided_by"]
    item = narrative(services.storage, org, member_of["c00"])
    assert [a["account"] for a in item["accounts"]] == ["acct-a", "acct-b", "acct-c"]
    assert not services.storage.get_docs(org, NARRATIVE_COORDINATION, [member_of["x0"]])  # chatter: nothing linked
    from factbridge.pipeline.records import NarrativeCoordination

    assert NarrativeCoordination.from_doc(member_of["c00"], linked).to_doc() == linked

    # Re-running over the same store changes nothing; when the network disappears
    # (stricter settings), the narrative's record is emptied, not left stale.
    run_stages(services, org, posts[:1])
    assert services.storage.get_docs(org, NARRATIVE_COORDINATION, [member_of["c00"]])[member_of["c00"]]["accounts"] == linked["accounts"]
    services.settings = dataclasses.replace(services.settings, coordination_min_participation=9)
    assert run_stages(services, org, posts[:1], force=True)["coordination"]["networks"] == 0
    assert services.storage.get_docs(org, NARRATIVE_COORDINATION, [member_of["c00"]])[member_of["c00"]]["accounts"] == []
    assert narrative(services.storage, org, member_of["c00"])["accounts"] == []
    # every stored document, linked then emptied, reads back through its record unchanged
    from factbridge.pipeline.records import NarrativeCoordination, NarrativeCoordinations

    stored = services.storage.list_docs(org, NARRATIVE_COORDINATION, limit=1000)
    assert stored and all(NarrativeCoordination.from_doc(i, d).to_doc() == d for i, d in stored)
    assert NarrativeCoordinations(services.storage).linked(org) == []


def test_stage_steps_aside_for_large_stores(hashing_services) -> None:  # type: ignore[no-untyped-def]
    from factbridge.pipeline.coordination import coordination_stage

    posts = _campaign_posts()
    hashing_services.storage.upsert_posts("o", posts)
    hashing_services.settings = dataclasses.replace(hashing_services.settings, coordination_stage_max_posts=5)
    assert "coordination --store" in coordination_stage(hashing_services, "o", posts)["skipped"]
    anonymous = posts[0].model_copy(update={"author": ""})  # a public report has no account
    assert "nothing new to coordinate" in coordination_stage(hashing_services, "o", [anonymous])["skipped"]


def test_coordination_cli_store_links_stored_posts(tmp_path: Path) -> None:
    from factbridge.pipeline.ingest import embed_posts
    from factbridge.pipeline.narratives import narratives_stage
    from factbridge.services import Services
    from factbridge.settings import load_settings

    settings = load_settings(env={}, overrides={"data_dir": str(tmp_path), "embedder": "hashing", "embed_cache": "off"})
    services = Services(settings)
    posts = _campaign_posts()
    services.storage.upsert_posts(settings.org, posts)
    embed_posts(services.storage, services.embedder, settings.org, posts)
    narratives_stage(services, settings.org, posts)
    services.close()
    base = ["--data-dir", str(tmp_path), "--embedder", "hashing", "--embed-cache", "off", "coordination"]
    result = CliRunner().invoke(app, [*base, "--store"])
    assert result.exit_code == 0, result.output
    assert "linked to narratives: 1 narrative(s)" in result.output
    refused = CliRunner().invoke(app, [*base, "--store", "--input", str(tmp_path / "x.csv")])
    assert refused.exit_code != 0 and "--store" in refused.output
