"""The usearch index as segments: sealing, search across segments, save / reopen, crash safety."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import factbridge.backends.vectors.hnsw as hnsw_module
from factbridge.backends.vectors.hnsw import HnswIndex
from factbridge.backends.vectors.numpy_index import NumpyIndex
from factbridge.testing.vector_index_conformance import parametrize_vector_index_checks


def _unit(n: int, dim: int, seed: int) -> np.ndarray:
    rows = np.random.default_rng(seed).standard_normal((n, dim)).astype(np.float32)
    return rows / np.linalg.norm(rows, axis=1, keepdims=True)


def _names(stem: Path) -> list[str]:
    return [p.name for p in HnswIndex.saved_files(stem)]


@parametrize_vector_index_checks()
def test_segmented_index_passes_the_vector_index_checks(check) -> None:  # type: ignore[no-untyped-def]
    check(lambda embedder_id, dim: HnswIndex(embedder_id, dim, segment_size=7))


def test_a_full_segment_is_sealed_and_new_vectors_go_to_the_newest() -> None:
    rows = _unit(350, 8, 1)
    index = HnswIndex("emb", 8, segment_size=100)
    index.add([f"p{i}" for i in range(130)], rows[:130], "emb")  # one add spanning a boundary
    assert index.segments == 2
    index.add([f"p{i}" for i in range(130, 350)], rows[130:], "emb")
    assert index.segments == 4 and len(index) == 350
    assert [s.first_key for s in index._segments] == [0, 100, 200, 300]
    assert [s.live for s in index._segments] == [100, 100, 100, 50]
    index.add(["p5"], rows[349:350], "emb")  # replacing a sealed segment's vector: removed there, added to the newest
    assert [s.live for s in index._segments] == [99, 100, 100, 51] and len(index) == 350
    assert index.search(rows[349], 2, "emb")[0][1] == pytest.approx(1.0, abs=1e-5)
    assert {i for i, _ in index.search(rows[349], 2, "emb")} == {"p5", "p349"}


@pytest.mark.parametrize("dtype", ["f32", "f16"])
def test_search_across_segments_equals_exact_search(dtype: str) -> None:
    """Small segments are searched exactly (below EXACT_BELOW): the merge must give exact results."""
    rows = _unit(1000, 16, 2)
    ids = [f"p{i}" for i in range(1000)]
    floats = dict(zip(ids, rows, strict=True))
    index = HnswIndex("emb", 16, dtype=dtype, segment_size=150, rerank=lambda wanted: np.stack([floats[i] for i in wanted]))
    exact = NumpyIndex("emb", 16)
    index.add(ids, rows, "emb")
    exact.add(ids, rows, "emb")
    assert index.segments == 7
    for q in _unit(30, 16, 3):
        got, expected = index.search(q, 10, "emb"), exact.search(q, 10, "emb")
        assert [i for i, _ in got] == [i for i, _ in expected]
        assert [s for _, s in got] == pytest.approx([s for _, s in expected], abs=1e-5), "float scores after the merge"


def test_graph_search_across_segments_keeps_recall() -> None:
    """Segments above EXACT_BELOW answer from their graphs; the merge keeps recall@10 >= 0.98."""
    rows = _unit(9000, 24, 4)
    ids = [str(i) for i in range(9000)]
    index, exact = HnswIndex("emb", 24, segment_size=4500, expansion_search=128), NumpyIndex("emb", 24)
    index.add(ids, rows, "emb")
    exact.add(ids, rows, "emb")
    assert index.segments == 2
    queries = _unit(40, 24, 5)
    hits = sum(len({i for i, _ in index.search(q, 10, "emb")} & {i for i, _ in exact.search(q, 10, "emb")}) for q in queries)
    assert hits / 400 >= 0.98


def test_reopen_after_save_and_sealed_segments_are_written_once(tmp_path: Path) -> None:
    rows = _unit(260, 8, 6)
    stem = tmp_path / "library"
    index = HnswIndex("emb", 8, dtype="f16", segment_size=100)
    index.add([f"p{i}" for i in range(250)], rows[:250], "emb")
    index.save(stem)
    first = _names(stem)
    assert len(first) == 3 and all(stem.with_name(n).exists() for n in first)
    index.add([f"p{i}" for i in range(250, 260)], rows[250:], "emb")  # only the newest changes
    index.save(stem)
    second = _names(stem)
    assert second[:2] == first[:2] and second[2] != first[2], "the sealed segments' files are kept, the newest rewritten"
    assert sorted(p.name for p in tmp_path.glob("library.*usearch")) == sorted(second), "the replaced file is removed"
    loaded = HnswIndex.open(stem, "emb", 8, segment_size=999)
    view = HnswIndex.open(stem, "emb", 8, view=True)
    assert loaded.segments == view.segments == 3 and len(loaded) == len(view) == 260
    assert loaded.segment_size == 100 and loaded.dtype == "f16", "how it was built comes from the file"
    for q in rows[:: 13]:
        assert view.search(q, 5, "emb") == loaded.search(q, 5, "emb") == index.search(q, 5, "emb")
    loaded.add([f"p{i}" for i in range(260, 300)], _unit(40, 8, 7), "emb")  # fills the newest
    assert loaded.segments == 3 and [s.live for s in loaded._segments] == [100, 100, 100]
    loaded.add(["p3"], -rows[3:4], "emb")  # a sealed segment changed (written again on the next save), a fourth started
    assert loaded.segments == 4 and [s.live for s in loaded._segments] == [99, 100, 100, 1]
    loaded.save(stem)
    third = _names(stem)
    assert len(third) == 4 and third[0] != second[0] and third[1] == second[1] and third[2] != second[2]
    again = HnswIndex.open(stem, "emb", 8, view=True)
    assert len(again) == 300 and again.search(-rows[3], 1, "emb")[0][0] == "p3"


def test_a_crash_mid_save_leaves_the_previous_generation_usable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    rows = _unit(500, 8, 8)
    stem = tmp_path / "posts"
    index = HnswIndex("emb", 8, segment_size=100)
    index.add([f"p{i}" for i in range(150)], rows[:150], "emb")
    index.save(stem)
    before = _names(stem)
    index.add([f"p{i}" for i in range(150, 500)], rows[150:], "emb")  # the newest grows, three more segments
    index.add(["p7"], -rows[7:8], "emb")  # and a sealed one changes
    calls = {"n": 0}
    real_fsync = hnsw_module._fsync

    def dies_after_two_files(path: Path) -> None:
        calls["n"] += 1
        if calls["n"] > 2:
            raise OSError("power cut")  # two new segment files written, the rest and the commit never happen
        real_fsync(path)

    monkeypatch.setattr(hnsw_module, "_fsync", dies_after_two_files)
    with pytest.raises(OSError, match="power cut"):
        index.save(stem)
    monkeypatch.undo()
    assert _names(stem) == before, "the .json still names the previous generation"
    for view in (True, False):
        previous = HnswIndex.open(stem, "emb", 8, view=view)
        assert len(previous) == 150 and previous.segments == 2
        assert previous.search(rows[7], 1, "emb")[0][0] == "p7" and previous.search(rows[120], 1, "emb")[0][0] == "p120"
    index.save(stem)  # the next save completes and removes the orphans of the failed one
    after = HnswIndex.open(stem, "emb", 8, view=True)
    assert len(after) == 500 and after.segments == 6 and after.search(-rows[7], 1, "emb")[0][0] == "p7"
    assert sorted(p.name for p in tmp_path.glob("posts.*usearch")) == sorted(_names(stem))


def test_an_index_saved_before_segments_opens_as_one_segment(tmp_path: Path) -> None:
    """usearch-hnsw-1: one `data` file; it opens as one (sealed when full) segment."""
    rows = _unit(120, 8, 9)
    stem = tmp_path / "old"
    index = HnswIndex("emb", 8, segment_size=1000)
    index.add([f"p{i}" for i in range(100)], rows[:100], "emb")
    index.save(stem)
    meta_path = stem.with_name("old.json")
    meta = json.loads(meta_path.read_text())
    [segment] = meta.pop("segments")
    ids_file = stem.with_name(segment["ids"])
    part = json.loads(ids_file.read_text())
    ids_file.unlink()
    meta.update(version="usearch-hnsw-1", data=segment["data"], ids=part["ids"], shas=part["shas"])
    del meta["segment_size"]
    meta_path.write_text(json.dumps(meta))
    opened = HnswIndex.open(stem, "emb", 8, segment_size=100)
    assert opened.segments == 1 and len(opened) == 100 and opened.search(rows[42], 1, "emb")[0][0] == "p42"
    opened.add([f"p{i}" for i in range(100, 120)], rows[100:], "emb")
    assert opened.segments == 2, "the old graph is full at the caller's segment size: sealed"
    opened.save(stem)
    assert json.loads(meta_path.read_text())["version"] == hnsw_module.HNSW_INDEX_VERSION
    assert len(HnswIndex.open(stem, "emb", 8, view=True)) == 120


def test_stored_vector_index_uses_the_segment_size_setting(tmp_path: Path) -> None:
    from factbridge.backends.storage.sqlite import SQLiteStorage
    from factbridge.backends.vectors.selection import VectorIndexTuning, stored_vector_index
    from factbridge.errors import ConfigError

    store = SQLiteStorage(f"sqlite:///{tmp_path / 'db.sqlite'}")
    store.migrate()
    rows = _unit(250, 8, 10)
    store.put_vectors("org", "post", "emb", [(f"p{i}", f"s{i}", v) for i, v in enumerate(rows)])
    index = stored_vector_index(store, "org", "post", "emb", 8, data_dir=tmp_path, tuning=VectorIndexTuning(dtype="f16", segment_size=100))
    assert isinstance(index, HnswIndex) and index.segments == 3
    got = index.search(rows[200], 3, "emb")
    assert got[0] == ("p200", pytest.approx(1.0, abs=1e-6))
    store.close()
    with pytest.raises(ConfigError):
        VectorIndexTuning(segment_size=0)


def test_onnxruntime_imports_after_an_index_was_made() -> None:
    """usearch's native module loaded first made ONNX Runtime's import crash the process (segfault)."""
    import importlib.util
    import subprocess
    import sys

    if importlib.util.find_spec("onnxruntime") is None:
        pytest.skip("ONNX Runtime (the 'fast' extra) is not installed")
    code = "from factbridge.backends.vectors.hnsw import HnswIndex; HnswIndex('e', 4); import onnxruntime; print('ok')"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr[-2000:]


def test_an_index_saved_with_every_id_in_its_json_opens_and_is_saved_per_segment(tmp_path: Path) -> None:
    """usearch-hnsw-2: the segments' files, and every id and hash in the `.json`. It opens as
    it was; its next save writes each segment's ids beside its graph, and the `.json` names them."""
    rows = _unit(260, 8, 10)
    stem = tmp_path / "v2"
    index = HnswIndex("emb", 8, segment_size=100)
    index.add([f"p{i}" for i in range(250)], rows[:250], "emb", shas=[f"s{i}" for i in range(250)])
    index.add(["p5"], -rows[5:6], "emb", shas=["s5b"])  # a replaced vector: its key in the newest segment
    index.save(stem)
    meta_path = stem.with_name("v2.json")
    meta = json.loads(meta_path.read_text())
    ids: list[str | None] = []
    shas: dict[str, str] = {}
    for segment in meta["segments"]:
        part = json.loads(stem.with_name(segment.pop("ids")).read_text())
        ids += part["ids"]
        shas.update(part["shas"])
    meta.update(version="usearch-hnsw-2", ids=ids, shas=shas)
    meta_path.write_text(json.dumps(meta))
    for p in tmp_path.glob("v2.*.ids.json"):
        p.unlink()
    opened = HnswIndex.open(stem, "emb", 8)
    assert len(opened) == 250 and opened.segments == 3 and opened.text_shas == index.text_shas and opened.text_shas["p5"] == "s5b"
    assert opened.search(-rows[5], 1, "emb")[0][0] == "p5" and opened.search(rows[77], 1, "emb")[0][0] == "p77"
    opened.add([f"p{i}" for i in range(250, 260)], rows[250:], "emb")
    opened.save(stem)
    saved = json.loads(meta_path.read_text())
    assert saved["version"] == hnsw_module.HNSW_INDEX_VERSION and "ids" not in saved and "shas" not in saved
    assert all(stem.with_name(s["ids"]).exists() for s in saved["segments"])
    again = HnswIndex.open(stem, "emb", 8)
    assert len(again) == 260 and again._ids == opened._ids and again.text_shas == opened.text_shas


def test_a_save_writes_the_ids_of_the_changed_segments_only(tmp_path: Path) -> None:
    """The `.json` names each segment's ids file and holds no id: a save of a large index with a
    small newest segment writes that segment's ids, not every id."""
    rows = _unit(330, 8, 11)
    stem = tmp_path / "posts"
    index = HnswIndex("emb", 8, segment_size=100)
    index.add([f"p{i}" for i in range(300)], rows[:300], "emb", shas=[f"s{i}" for i in range(300)])
    index.save(stem)
    sealed = {p.name: p.stat().st_mtime_ns for p in tmp_path.glob("posts.*.ids.json")}
    assert len(sealed) == 3
    index.add([f"p{i}" for i in range(300, 330)], rows[300:], "emb", shas=[f"s{i}" for i in range(300, 330)])
    index.save(stem)
    meta = json.loads(stem.with_name("posts.json").read_text())
    assert set(meta) >= {"segments", "count"} and "ids" not in meta and "shas" not in meta and meta["count"] == 330
    now = {p.name: p.stat().st_mtime_ns for p in tmp_path.glob("posts.*.ids.json")}
    assert len(now) == 4 and all(now[name] == mtime for name, mtime in sealed.items()), "the sealed segments' ids are not written again"
    newest = json.loads(stem.with_name(meta["segments"][-1]["ids"]).read_text())
    assert newest == {"first_key": 300, "ids": [f"p{i}" for i in range(300, 330)], "shas": {f"p{i}": f"s{i}" for i in range(300, 330)},
                      "stamps": [None] * 30}  # (added without times)
    stem.with_name(meta["segments"][1]["ids"]).unlink()  # a lost ids file: the set is incomplete, rebuilt from the store
    assert HnswIndex.saved_files(stem) == [] and len(HnswIndex.open(stem, "emb", 8)) == 0
