"""`factbridge indexes list` / `prune`: what data_dir/indexes holds, by embedder, and removing
the files of embedders no longer configured (and saves that never finished), never those in
use, never a vector or document of the store."""

from __future__ import annotations

import json
import os
import random
import time
from pathlib import Path

import numpy as np
from test_matcher_snapshot import LANGS, _fc, _services
from test_matcher_update import ORG
from typer.testing import CliRunner

from factbridge.backends.embedders.hashing import HashingEmbedder
from factbridge.backends.vectors.hnsw import HnswIndex
from factbridge.backends.vectors.selection import index_path
from factbridge.cli import app
from factbridge.pipeline import snapshot
from factbridge.pipeline.matching import index_factchecks
from factbridge.pipeline.prepare import prepare_factcheck
from factbridge.pipeline.saved_indexes import prunable, saved_indexes


def _index(data_dir: Path, kind: str, embedder_id: str, n: int, seed: int) -> Path:
    rows = np.random.default_rng(seed).standard_normal((n, 8)).astype(np.float32)
    index = HnswIndex(embedder_id, 8, segment_size=max(2, n // 2))  # two segments
    index.add([f"{kind}{i}" for i in range(n)], rows, embedder_id)
    stem = index_path(data_dir, ORG, kind, embedder_id)
    index.save(stem)
    return stem


def _cli(tmp_path: Path, *args: str) -> dict:  # type: ignore[type-arg]
    result = CliRunner().invoke(app, ["--data-dir", str(tmp_path), "--embedder", "hashing", "--embed-cache", "off",
                                      "--storage-url", f"sqlite:///{tmp_path / 'db.sqlite'}", "indexes", *args, "--json"])
    assert result.exit_code == 0, result.output
    return json.loads(result.output)  # type: ignore[no-any-return]


def test_indexes_are_listed_by_embedder_and_only_other_embedders_are_pruned(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'db.sqlite'}"
    rng = random.Random(3)
    fcs = [prepare_factcheck(_fc(rng, n), LANGS) for n in range(30)]
    old = HashingEmbedder(dim=64)
    with _services(tmp_path, url, match_snapshot_min=0) as services:  # a deployment on an embedder since replaced
        services.__dict__["embedder"] = old
        services.storage.upsert_factchecks(ORG, fcs)
        index_factchecks(services.storage, old, ORG)
        services.matcher(ORG)  # saves its snapshot
    with _services(tmp_path, url, match_snapshot_min=0) as services:  # and now
        current = services.embedder.id
        index_factchecks(services.storage, services.embedder, ORG)
        services.matcher(ORG)
    assert current != old.id
    _index(tmp_path, "post", current, 40, 1)
    old_posts = _index(tmp_path, "post", old.id, 30, 2)
    folder = tmp_path / "indexes"
    (folder / "matcher-0123.npz.abc.tmp").write_bytes(b"x" * 100)  # a save killed half-way, long ago
    os.utime(folder / "matcher-0123.npz.abc.tmp", (time.time() - 7200, time.time() - 7200))
    (folder / "post-fresh.json.tmp").write_bytes(b"{}")  # one under way now
    (folder / "post-broken.json").write_text("{not json", encoding="utf-8")

    listed = _cli(tmp_path, "list")
    assert listed["embedder"] == current
    by = {(e["kind"], e["embedder"]): e for e in listed["entries"]}
    assert by[("matcher", current)]["items"] == 30 and by[("matcher", current)]["state"] == "in use"
    assert by[("matcher", old.id)]["state"] == "another embedder"
    assert by[("post", current)]["items"] == 40 and by[("post", old.id)]["items"] == 30
    assert by[("post", old.id)]["files"] == 5  # .json, two segments' .usearch and .ids.json
    assert by[("post", old.id)]["bytes"] == sum(p.stat().st_size for p in folder.glob(old_posts.name + "*") if not p.name.endswith(".lock"))
    assert {e["name"] for e in listed["entries"] if e["kind"] == "left over"} == {"matcher-0123.npz.abc.tmp", "post-fresh.json.tmp"}
    [broken] = [e for e in listed["entries"] if e["kind"] == "unreadable"]
    assert broken["name"] == "post-broken" and "JSONDecodeError" in broken["problem"]

    dry = _cli(tmp_path, "prune")
    assert sorted(e["name"] for e in dry["would_remove"]) == sorted([
        snapshot.snapshot_path(tmp_path, ORG, old.id).name, old_posts.name, "matcher-0123.npz.abc.tmp"]), "the broken file is new: kept"
    assert dry["bytes_freed"] == 0 and snapshot.snapshot_path(tmp_path, ORG, old.id).exists()

    kept = _cli(tmp_path, "prune", "--keep", old.id)
    assert [e["name"] for e in kept["would_remove"]] == ["matcher-0123.npz.abc.tmp"]

    done = _cli(tmp_path, "prune", "--yes")
    assert done["bytes_freed"] == sum(int(e["bytes"]) for e in done["removed"]) > 0
    assert not snapshot.snapshot_path(tmp_path, ORG, old.id).exists()
    assert not [p for p in folder.glob(old_posts.name + "*") if not p.name.endswith(".lock")]
    after = {(e["kind"], e["embedder"]) for e in _cli(tmp_path, "list")["entries"]}
    assert after == {("matcher", current), ("post", current), ("left over", None), ("unreadable", None)}
    # what stays is read as before: the current index and snapshot, and every vector in the store
    assert len(HnswIndex.open(index_path(tmp_path, ORG, "post", current), current, 8)) == 40
    with _services(tmp_path, url, match_snapshot_min=0) as services:
        assert len(services.matcher(ORG).items) == 30 and snapshot.snapshot_path(tmp_path, ORG, current).exists()
        assert len(services.storage.load_vectors(ORG, "factcheck", old.id)[0]) == 30


def test_an_old_unreadable_file_is_pruned_a_new_one_is_not(tmp_path: Path) -> None:
    folder = tmp_path / "indexes"
    folder.mkdir()
    (folder / "post-broken.json").write_text("{not json", encoding="utf-8")
    (folder / "matcher-x.npz").write_bytes(b"not a zip")
    entries = saved_indexes(tmp_path)
    assert {e.kind for e in entries} == {"unreadable"}
    assert prunable(entries, set()) == []
    assert {e.name for e in prunable(entries, set(), now=time.time() + 7200)} == {"post-broken", "matcher-x.npz"}
    assert saved_indexes(tmp_path / "nowhere") == []
