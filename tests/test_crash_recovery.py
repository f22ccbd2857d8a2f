"""Crash recovery: `factbridge ingest` killed with SIGKILL at random points, run again until it
finishes; then every post has every stage recorded exactly once for its content, and each
derived record (check-worthiness, narrative membership, link risk, triage entry) exists
once per post, with narratives counting each member once."""

from __future__ import annotations

import json
import os
import random
import re
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

from factbridge.bench.synthetic_posts import synthetic_posts
from factbridge.demo import sample_dir
from factbridge.pipeline.ingest import import_factcheck_files
from factbridge.pipeline.ledger import COLLECTION as LEDGER
from factbridge.pipeline.ledger import Ledger
from factbridge.pipeline.matching import index_factchecks
from factbridge.pipeline.process import backlog
from factbridge.pipeline.stages import stage_versions
from factbridge.services import Services
from factbridge.settings import load_settings

POSTS = 240
KILLS = 3
MAX_RUNS = 8
BATCH = 30
KILL_BEFORE = POSTS - 2 * BATCH  # so a killed run always leaves batches behind


def _env(tmp_path: Path) -> dict[str, str]:
    return {
        "FACTBRIDGE_DATA_DIR": str(tmp_path / "data"),
        "FACTBRIDGE_STORAGE_URL": f"sqlite:///{tmp_path / 'fb.sqlite'}",
        "FACTBRIDGE_EMBEDDER": "hashing",
        "FACTBRIDGE_EMBED_CACHE": "off",
        "FACTBRIDGE_MATCH_FUSION": "rrf",
        "FACTBRIDGE_QUEUE_LOCAL_BATCH_SIZE": str(BATCH),
        "FACTBRIDGE_QUEUE_WORKER_MERGE": "1",
        "FACTBRIDGE_LOG_LEVEL": "error",
    }


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "factbridge", *args]


def _count(db: Path, sql: str) -> int:
    if not db.exists():
        return 0
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5) as conn:
            return int(conn.execute(sql).fetchone()[0])
    except sqlite3.OperationalError:
        return 0  # schema not there yet


def test_kill_9_during_ingest_then_rerun_finishes_every_stage_once(tmp_path: Path) -> None:
    env = {**os.environ, **_env(tmp_path)}
    db = tmp_path / "fb.sqlite"
    posts, _ = synthetic_posts(POSTS, dim=8, seed=5)
    path = tmp_path / "posts.jsonl"
    with path.open("w", encoding="utf-8") as f:
        for i, p in enumerate(posts):
            row = {"id": p.id, "text": p.text, "author": f"acct-{i % 17}", "platform": "facebook",
                   "created_at": p.created_at.isoformat() if p.created_at else None, "urls": [f"https://news{i % 5}.example.com/a"]}
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
    settings = load_settings(env=_env(tmp_path))
    with Services(settings) as services:
        import_factcheck_files(services.storage, "default", sorted(sample_dir().glob("factchecks*")), services.languages)
        index_factchecks(services.storage, services.embedder, "default")

    rng = random.Random(20261203)
    killed = 0
    left_behind: list[int] = []  # posts missing a stage after each killed run
    queued = "SELECT count(*) FROM docs WHERE collection = 'queue'"  # triage, the last stage, writes it
    for _ in range(MAX_RUNS):
        done = _count(db, queued)
        if done >= KILL_BEFORE:
            break
        # kill once the last stage has finished a random number of posts, while later batches wait
        target = rng.randint(done + 1, KILL_BEFORE)
        proc = subprocess.Popen(_cli("ingest", str(path)), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            deadline = time.monotonic() + 120
            while proc.poll() is None and time.monotonic() < deadline and _count(db, queued) < target:
                time.sleep(0.005)
            if proc.poll() is None:
                proc.send_signal(signal.SIGKILL)
                killed += 1
        finally:
            if proc.poll() is None:
                proc.kill()
            proc.wait(timeout=30)
        with Services(settings) as services:
            left = backlog(services, "default")
        left_behind.append(left.posts - left.complete)
        if killed >= KILLS:
            break
    assert killed >= 1 and any(left_behind), f"no run was killed while its stages ran ({left_behind}): make the data bigger"

    final = subprocess.run(_cli("ingest", str(path)), env=env, capture_output=True, text=True, timeout=300)
    assert final.returncode == 0, final.stdout + final.stderr
    resumed = re.search(r"0 new or changed, (\d+) unchanged, (\d+) resumed", final.stdout)
    # the re-run finishes exactly what the last killed run left without every stage
    assert resumed and int(resumed.group(1)) == POSTS and int(resumed.group(2)) == left_behind[-1], (left_behind, final.stdout)

    with Services(settings) as services:
        pending = backlog(services, "default")
        assert pending.posts == POSTS and pending.complete == POSTS and not any(pending.missing.values())
        storage = services.storage
        ids = {p.id for p in storage.iter_posts("default")}
        assert len(ids) == POSTS
        entries = Ledger(storage).entries("default", list(storage.iter_posts("default")))
        assert all(not e.missing(stage_versions()) for e in entries.values())
        assert storage.count_docs("default", LEDGER) == POSTS
        for collection in ("checkworthiness", "narrative_members", "linkrisk"):
            assert storage.count_docs("default", collection) == POSTS, collection
            assert set(storage.get_docs("default", collection, sorted(ids))) == ids, collection
        queue = storage.get_docs("default", "queue", sorted(ids))
        assert set(queue) == ids and all(d["kind"] == "post" for d in queue.values())
        narratives = [d for _, d in storage.list_docs("default", "narratives", limit=100_000)]
        assert sum(int(d.get("size", 0)) for d in narratives) == POSTS, "each member counted once"
    assert _count(db, "SELECT count(*) FROM pragma_integrity_check WHERE integrity_check = 'ok'") == 1
