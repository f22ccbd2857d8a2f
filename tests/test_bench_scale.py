"""The scale benches run and report what they measure (small sizes, hashing embedder)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from factbridge.bench.feed import LENGTHS, generated_posts
from factbridge.cli import app


def _run(args: list[str], tmp_path: Path) -> str:
    result = CliRunner().invoke(app, ["--data-dir", str(tmp_path), "--embedder", "hashing", *args], env={"FACTBRIDGE_MATCH_FUSION": "rrf"})
    assert result.exit_code == 0, f"{result.output}\n{result.exception!r}"
    return result.output


def _json(output: str) -> dict:  # type: ignore[type-arg]
    return json.loads(output[output.index("\n{") + 1 :] if not output.startswith("{") else output)


@pytest.mark.parametrize("mix", ["tweet", "550"])
def test_generated_posts_have_the_length_mix(mix: str) -> None:
    posts = generated_posts(200, mix, duplicates=0.25, seed=3)
    lo, hi = LENGTHS[mix]
    originals = [p for p in posts if p.text not in {q.text for q in posts[: posts.index(p)]}]
    assert all(lo - 15 <= len(p.text) <= hi + 15 for p in posts)
    assert 0.6 * len(posts) <= len(originals) < len(posts), "about a quarter repeat an earlier post"
    assert {p.language for p in posts} == {"vi", "km", "fr", "en"}
    assert generated_posts(20, mix, seed=3)[5].text == generated_posts(20, mix, seed=3)[5].text, "seeded"


def test_bench_ingest_reports_every_stage_and_the_encoder_alone(tmp_path: Path) -> None:
    data = _json(_run(["bench", "ingest", "--posts", "40", "--mix", "tweet", "--duplicates", "0.3", "--batch", "16", "--json"], tmp_path))
    assert data["posts"] == 40
    assert list(data["stage_s"])[:3] == ["normalise", "store", "embedding"] and "triage" in data["stage_s"]
    assert data["embedded"] + data["reused"] == 40 and data["reused"] >= 5, "repeated posts are not embedded again"
    assert data["posts_per_s"] > 0 and data["encoder_alone_posts_per_s"] > 0
    assert list(data["stage_ms_per_post"])[-1] == "ledger" and set(data["stage_cpu_ms_per_post"]) == set(data["stage_s"])
    assert abs(sum(data["stage_ms_per_post"].values()) - 1000 * data["total_s"] / 40) < 0.1
    assert data["overhead_ms_per_post"] > 0 and data["overhead_cpu_ms_per_post"] > 0, "the hashing encoder costs less than the rest"
    out = _run(["bench", "ingest", "--posts", "20", "--mix", "550"], tmp_path)
    assert "end to end" in out and "encoder alone" in out and "target for 550 posts" in out
    assert "CPU ms/post" in out and "everything but the encoder" in out


def test_bench_match_synthetic_measures_recall_latency_and_memory(tmp_path: Path) -> None:
    data = _json(_run(["bench", "match", "--synthetic", "3000", "--n", "20", "--json"], tmp_path))
    assert data["backend"] == "hnsw" and data["n"] == 3000
    assert data["recall_at_10"] >= 0.98
    assert data["p50_ms"] >= data["search_p50_ms"] > 0, "latency includes embedding the post"
    assert data["rss_mb"] > 0
    exact = _json(_run(["bench", "match", "--synthetic", "500", "--n", "5", "--backend", "exact", "--json"], tmp_path))
    assert exact["recall_at_10"] == 1.0
