"""The linkrisk stage, its stored documents, the CLI commands and the eval on small fixtures."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from factbridge.cli import app
from factbridge.errors import InputError
from factbridge.linkrisk.evaluation import (
    benign_false_positives,
    blocklist_recall,
    gather_benign_urls,
    load_lists,
    lookalike_quality,
    read_lookalike_fixture,
)
from factbridge.linkrisk.feeds import parse_feed, store_feed
from factbridge.linkrisk.lookalike import LookalikeDetector
from factbridge.linkrisk.scoring import LinkRiskScorer
from factbridge.linkrisk.stage import COLLECTION, linkrisk_stage, post_links, riskiest_posts
from factbridge.models import Post
from factbridge.pipeline.stages import load_stages, run_stages
from factbridge.services import Services

FIX = Path(__file__).parent / "fixtures" / "linkrisk"


def read_posts() -> list[Post]:
    return [Post(**json.loads(line)) for line in (FIX / "posts.jsonl").read_text(encoding="utf-8").splitlines()]


def test_stage_is_registered() -> None:
    assert "linkrisk" in [stage.name for stage in load_stages()]


def test_post_links_dedupes_by_normal_form() -> None:
    post = Post(id="x", text="see https://example.com/a?utm_source=fb and http://EXAMPLE.com:80/a", urls=["https://example.com/a", "https://vietcombank-uudai", "mailto:a@b.c"])
    links, unparsed = post_links(post)
    assert len(links) == 2  # https and http differ; the utm copy folds into the first
    assert [u["url"] for u in unparsed] == ["https://vietcombank-uudai", "mailto:a@b.c"]


def test_stage_stores_one_doc_per_post(hashing_services: Services) -> None:
    storage = hashing_services.storage
    store_feed(storage, "desk", parse_feed(FIX / "urlhaus.csv", name="urlhaus"))
    posts = read_posts()
    storage.upsert_posts("desk", posts)
    summary = linkrisk_stage(hashing_services, "desk", posts)
    assert summary == {"posts": 7, "links": 7, "flagged_posts": 5, "flagged_links": 5}
    docs = storage.get_docs("desk", COLLECTION, [p.id for p in posts])
    assert set(docs) == {p.id for p in posts}
    vn = docs["vn-1"]
    assert vn["flagged"] and vn["level"] in {"medium", "high"}
    assert vn["urls"][0]["normalized"] == "https://dichvucong-gov.com/dang-ky"
    assert vn["urls"][0]["reasons"][0]["code"].startswith("lookalike_")
    assert vn["decided_by"].startswith("linkrisk-rules v1.0")
    en = docs["en-1"]["urls"][0]
    assert en["feed_hits"][0]["feed"] == "urlhaus" and en["feed_hits"][0]["date"] == "2025-07-19T12:01:07Z"
    ok = docs["ok-1"]
    assert not ok["flagged"] and ok["max_score"] == 0.0 and {u["official"] for u in ok["urls"]} == {"VnExpress", "Government of Viet Nam portal"}
    assert docs["none-1"]["urls"] == [] and docs["none-1"]["max_score"] == 0.0
    ranked = riskiest_posts(storage, "desk", limit=3)
    assert ranked[0].post_id == "en-1"  # feed hit + raw IP: the riskiest
    assert [r.max_score for r in ranked] == sorted((r.max_score for r in ranked), reverse=True)
    assert storage.count_docs("other-desk", COLLECTION) == 0


def test_run_stages_without_matching(hashing_services: Services) -> None:
    posts = read_posts()[:2]
    hashing_services.storage.upsert_posts("desk", posts)
    summary = run_stages(hashing_services, "desk", posts, skip=("matching",))
    assert summary["linkrisk"]["flagged_posts"] == 2


def test_cli_update_check_posts(tmp_path: Path) -> None:
    runner = CliRunner()
    base = ["--data-dir", str(tmp_path), "--storage-url", f"sqlite:///{tmp_path / 'fb.db'}", "--embedder", "hashing", "--embed-cache", "off"]
    result = runner.invoke(app, [*base, "linkrisk", "update", "--feed", str(FIX / "phishtank.json"), "--name", "phishtank", "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)[0]["status"] == "new"
    again = runner.invoke(app, [*base, "linkrisk", "update", "--feed", str(FIX / "phishtank.json"), "--name", "phishtank", "--json"])
    assert json.loads(again.output)[0]["status"] == "unchanged"
    check = runner.invoke(app, [*base, "linkrisk", "check", "--json", "https://vietcombank-uudai.com/dang-nhap?id=7", "javascript:x"])
    assert check.exit_code == 0, check.output
    payload = json.loads(check.output)
    assert payload[0]["feed_hits"][0]["feed"] == "phishtank"
    assert "error" in payload[1]
    table = runner.invoke(app, [*base, "linkrisk", "check", "gov.vn.example.com/login"])
    assert table.exit_code == 0 and "gov.vn" in table.output and "decided_by" in table.output
    text = runner.invoke(app, [*base, "linkrisk", "check", "--text", "--json", "vào hxxp://rnomo[.]vn ngay"])
    assert json.loads(text.output)[0]["host"] == "rnomo.vn"
    ingest = runner.invoke(app, [*base, "ingest", str(FIX / "posts.jsonl"), "--no-match"])
    assert ingest.exit_code == 0, ingest.output
    assert "linkrisk:" in ingest.output
    posts = runner.invoke(app, [*base, "linkrisk", "posts", "--json", "--flagged-only"])
    docs = json.loads(posts.output)
    assert len(docs) == 5 and docs[0]["max_score"] >= docs[-1]["max_score"]
    shown = runner.invoke(app, [*base, "linkrisk", "posts", "--limit", "3"])
    assert shown.exit_code == 0 and "Riskiest posts" in shown.output
    feeds = runner.invoke(app, [*base, "linkrisk", "feeds"])
    assert "phishtank" in feeds.output
    # A new feed re-scores what was stored: en-1's IP link now carries a feed hit.
    update = runner.invoke(app, [*base, "linkrisk", "update", "--feed", str(FIX / "urlhaus.csv"), "--name", "urlhaus", "--json"])
    assert json.loads(update.stdout)[0]["rescored"]["posts"] == 7  # the progress bar goes to stderr
    top = json.loads(runner.invoke(app, [*base, "linkrisk", "posts", "--json", "--limit", "1"]).output)[0]
    assert top["post_id"] == "en-1" and top["urls"][0]["feed_hits"][0]["feed"] == "urlhaus"
    rescore = runner.invoke(app, [*base, "linkrisk", "rescore"])
    assert rescore.exit_code == 0 and "posts 7" in rescore.output
    bad = runner.invoke(app, [*base, "linkrisk", "update", "--feed", str(FIX / "garbage.txt")])
    assert bad.exit_code != 0


def test_eval_on_small_fixtures() -> None:
    detector = LookalikeDetector.from_setting()
    feeds = load_lists(FIX / "eval" / "urls" / "mini")
    [recall] = blocklist_recall(feeds, detector, 0.5)
    assert recall.entries == 6 and recall.lookup_recall == 1.0
    # Held out: both IPs and the GitHub .exe are caught by structure; the plain names and the PDF are not.
    assert recall.held_out_flagged == 3
    assert recall.by_kind["ip"] == {"entries": 2, "held_out_flagged": 2, "lookup_flagged": 2}
    benign = gather_benign_urls(FIX / "eval")
    assert len(benign.urls) == 5  # duplicates, truncated and suffix-less links dropped
    assert benign.dropped == {"duplicate": 1, "truncated": 1, "no public suffix": 1}
    fp = benign_false_positives(benign.urls, LinkRiskScorer(None, detector))
    assert (fp.flagged, fp.urls) == (1, 5) and fp.examples[0]["url"].startswith("http://paypal-login-secure.com")
    rows = read_lookalike_fixture(Path(__file__).parent / "fixtures" / "lookalike_domains.jsonl")
    assert sum(r["label"] == "lookalike" for r in rows) >= 60 and sum(r["label"] == "legit" for r in rows) >= 60
    assert {r["country"] for r in rows} >= {"VN", "KH", "FR"}
    small = lookalike_quality([{"domain": "vietc0mbank.com", "label": "lookalike"}, {"domain": "vnexpress.net", "label": "legit"}, {"domain": "bidvsmartbanking.net", "label": "lookalike"}], detector)
    assert (small.true_positive, small.false_positive, small.false_negative) == (1, 0, 1)
    assert small.precision == 1.0 and small.recall == 0.5


def test_cli_eval_prints_figures() -> None:
    runner = CliRunner()
    result = runner.invoke(app, ["eval", "linkrisk", "--data", str(FIX / "eval" / "urls" / "mini"), "--benign-from", str(FIX / "eval"), "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.output[result.output.index("{"):])
    assert report["blocklists"][0]["held_out_recall"] == 0.5
    assert report["benign"]["fpr"] == 0.2
    assert report["lookalike"]["precision"] >= 0.95


def test_cli_eval_table_and_bench_on_fixtures() -> None:
    runner = CliRunner()
    data = str(FIX / "eval" / "urls" / "mini")
    table = runner.invoke(app, ["eval", "linkrisk", "--data", data, "--benign-from", str(FIX / "eval")])
    assert table.exit_code == 0, table.output
    assert "held-out recall" in table.output and "Benign links" in table.output and "Look-alike detection" in table.output
    bench = runner.invoke(app, ["bench", "linkrisk", "--data", data, "--benign-from", str(FIX / "eval"), "--workers", "1"])
    assert bench.exit_code == 0, bench.output
    assert "URLs/s" in bench.output and "load average" in bench.output


def test_eval_errors_name_the_file(tmp_path: Path) -> None:
    runner = CliRunner()
    missing = runner.invoke(app, ["eval", "linkrisk", "--data", str(tmp_path / "none")])
    assert missing.exit_code != 0 and "blocklist data not found" in str(missing.exception or missing.output)
    bad = tmp_path / "look.jsonl"
    bad.write_text('{"domain": "a.com", "label": "maybe"}\n', encoding="utf-8")
    with pytest.raises(InputError) as info:
        read_lookalike_fixture(bad)
    assert info.value.line == 1 and info.value.field == "label"
