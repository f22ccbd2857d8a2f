"""Two processes on one SQLite file: a CLI write while `factbridge serve` (or anyone) holds the
write lock waits and succeeds; it never exits 1 with "database is locked" once the data is
stored (issue 10, "database is locked" item)."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from factbridge.backends.embedders.cache import EmbeddingCache
from factbridge.backends.sqlite_busy import retry_busy
from factbridge.backends.storage.sqlite import SQLiteStorage

HOLDER = """
import sqlite3, sys, time
db = sqlite3.connect(sys.argv[1], isolation_level=None)
db.execute("PRAGMA journal_mode=WAL")  # as SQLiteStorage and EmbeddingCache open them
db.execute("BEGIN IMMEDIATE")          # a long write transaction, as a busy server has
db.execute("INSERT INTO meta VALUES ('holder', 'x')")
cache = sqlite3.connect(sys.argv[2], isolation_level=None)
cache.execute("PRAGMA journal_mode=WAL")
cache.execute("SELECT count(*) FROM embeddings").fetchall()   # the server keeps its cache open
cache.execute("BEGIN IMMEDIATE")
print("holding", flush=True)
time.sleep(float(sys.argv[3]))
db.execute("COMMIT")
cache.execute("COMMIT")
sys.stdin.read()                        # stays open until the test says so
"""


def test_cli_ingest_waits_for_another_process_and_exits_zero(tmp_path: Path) -> None:
    data = tmp_path / "d"
    first = SQLiteStorage(f"sqlite:///{data / 'factbridge.db'}")  # both files exist, as under a running server
    first.migrate()
    first.close()
    EmbeddingCache(data / "embeddings.sqlite").close()
    posts = tmp_path / "p.jsonl"
    posts.write_text("\n".join(json.dumps({"id": f"p{n}", "text": f"Bridge closed in Phnom Penh, post {n}"}) for n in range(5)) + "\n")
    hold_s = 2.0
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(data / "factbridge.db"), str(data / "embeddings.sqlite"), str(hold_s)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "holding"
        started = time.monotonic()
        ingested = subprocess.run(
            [sys.executable, "-m", "factbridge", "--data-dir", str(data), "--embedder", "hashing", "ingest", str(posts)],
            capture_output=True, text=True, timeout=180,
        )
        waited = time.monotonic() - started
    finally:
        assert holder.stdin is not None
        holder.stdin.close()
        holder.wait(timeout=30)
    assert ingested.returncode == 0, ingested.stderr
    assert "locked" not in ingested.stderr and "Traceback" not in ingested.stderr
    assert waited >= hold_s - 0.5  # it did wait for the lock
    store = SQLiteStorage(f"sqlite:///{data / 'factbridge.db'}")
    try:
        assert store.count_posts("default") == 5
        assert len(store.vector_shas("default", "post", "hashing-v1-256")) == 5
    finally:
        store.close()


def test_retry_goes_on_past_one_busy_timeout(tmp_path: Path) -> None:
    path = tmp_path / "x.sqlite"
    setup = sqlite3.connect(path, isolation_level=None)
    setup.execute("PRAGMA journal_mode=WAL")
    setup.execute("CREATE TABLE t (v INTEGER)")
    holder = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    holder.execute("BEGIN IMMEDIATE")
    release = threading.Timer(0.6, lambda: holder.execute("COMMIT"))
    release.start()
    writer = sqlite3.connect(path, isolation_level=None, timeout=0.05)  # one attempt waits 50 ms only
    with pytest.raises(sqlite3.OperationalError, match="locked"):
        writer.execute("BEGIN IMMEDIATE")
    retry_busy(lambda: writer.execute("BEGIN IMMEDIATE"), "test", deadline_s=10)
    writer.execute("INSERT INTO t VALUES (1)")
    writer.execute("COMMIT")
    release.join()
    with pytest.raises(sqlite3.OperationalError, match="locked"):  # a deadline still ends the wait
        holder.execute("BEGIN IMMEDIATE")
        retry_busy(lambda: writer.execute("BEGIN IMMEDIATE"), "test", deadline_s=0.3)
    holder.execute("COMMIT")
    assert setup.execute("SELECT count(*) FROM t").fetchone()[0] == 1


def test_embedding_cache_closes_while_another_process_has_it_open(tmp_path: Path) -> None:
    cache = EmbeddingCache(tmp_path / "e.sqlite")
    cache.put_many("emb", "query", [("sha", np.ones(4, dtype=np.float32))])
    other = sqlite3.connect(tmp_path / "e.sqlite")
    other.execute("SELECT count(*) FROM embeddings").fetchall()
    cache.close()  # used to raise "database is locked" (the journal-mode switch needs the file alone)
    assert other.execute("SELECT count(*) FROM embeddings").fetchone()[0] == 1
    other.close()
    again = EmbeddingCache(tmp_path / "e.sqlite")
    assert list(again.get_many("emb", "query", ["sha"])) == ["sha"]
    again.close()
    assert not (tmp_path / "e.sqlite-wal").exists()  # the last one out leaves one self-contained file
