"""The stage ledger is written once per batch: after the last stage stored its outputs, and
also when a stage raises (the stages before it are recorded and not run again). A process
killed between a stage's outputs and the ledger write records no stage; the next run
repeats the work and ends with the same stored documents as a run that was never killed."""

from __future__ import annotations

import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
import textwrap
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from factbridge.backends.storage.base import Storage
from factbridge.demo import sample_dir
from factbridge.models import Post
from factbridge.pipeline.ingest import import_factcheck_files, read_file
from factbridge.pipeline.ledger import COLLECTION as LEDGER
from factbridge.pipeline.ledger import Ledger
from factbridge.pipeline.matching import index_factchecks
from factbridge.pipeline.stages import (
    FunctionStage,
    PipelineContext,
    Stage,
    StageContext,
    StageSummary,
    load_stages,
    run_stages,
    stage_versions,
)
from factbridge.services import Services
from factbridge.settings import load_settings

ORG = "ledger"
FIXED = datetime(2026, 12, 3, 12, 0, tzinfo=UTC)


class CountingStorage:
    """Counts the ledger writes of the real storage it wraps."""

    def __init__(self, inner: Storage) -> None:
        self.inner = inner
        self.ledger_writes: list[int] = []

    def put_docs(self, org: str, collection: str, rows: Sequence[tuple[str, dict[str, Any], float | None]]) -> None:
        if collection == LEDGER:
            self.ledger_writes.append(len(rows))
        self.inner.put_docs(org, collection, rows)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


class Ctx(PipelineContext):
    def __init__(self, services: Services, storage: Storage) -> None:
        super().__init__(services, clock=lambda: FIXED)
        self._storage = storage

    @property
    def storage(self) -> Storage:
        return self._storage


def _seed(services: Services) -> list[Post]:
    sample = sample_dir()
    import_factcheck_files(services.storage, ORG, sorted(sample.glob("factchecks*")), services.languages)
    index_factchecks(services.storage, services.embedder, ORG)
    posts = read_file(sample / "posts.jsonl", services.languages)[0]
    services.storage.upsert_posts(ORG, posts)
    return posts


def _failing(after: str) -> FunctionStage:
    def boom(ctx: StageContext, org: str, posts: Sequence[Post]) -> StageSummary:
        raise RuntimeError("the stage broke")

    return FunctionStage("zz_failing", "fail-1", boom, needs=(after,))


def _with_stage_after(stages: list[Stage], after: str, extra: Stage) -> list[Stage]:
    at = [s.name for s in stages].index(after) + 1
    return [*stages[:at], extra, *stages[at:]]


def test_one_ledger_write_per_batch(hashing_services: Services) -> None:
    posts = _seed(hashing_services)
    storage = CountingStorage(hashing_services.storage)
    ctx = Ctx(hashing_services, storage)
    summary = run_stages(ctx, ORG, posts)
    assert len(summary) == len(stage_versions()) > 5
    assert storage.ledger_writes == [len(posts)]  # one write of every post's entry, not one per stage
    entries = Ledger(hashing_services.storage).entries(ORG, posts)
    assert all(not e.missing(stage_versions()) for e in entries.values())
    assert {run.at for e in entries.values() for run in e.stages.values()} == {FIXED.isoformat(timespec="seconds")}
    assert run_stages(ctx, ORG, posts) == {} and storage.ledger_writes == [len(posts)]  # nothing to do, nothing written


def test_a_failing_stage_keeps_the_stages_before_it(hashing_services: Services) -> None:
    posts = _seed(hashing_services)
    builtin = load_stages()
    stages = _with_stage_after(builtin, "checkworthiness", _failing("checkworthiness"))
    before = [s.name for s in stages[: [s.name for s in stages].index("zz_failing")]]
    storage = CountingStorage(hashing_services.storage)
    ctx = Ctx(hashing_services, storage)
    with pytest.raises(RuntimeError, match="the stage broke"):
        run_stages(ctx, ORG, posts, stages=stages)
    assert storage.ledger_writes == [len(posts)]
    for entry in Ledger(hashing_services.storage).entries(ORG, posts).values():
        assert sorted(entry.stages) == sorted(before)  # recorded: stored their outputs
        assert entry.stages["checkworthiness"].status == "done"
    # delivered again with the stage fixed: only the failing stage and those after it run
    fixed = [s if s.name != "zz_failing" else FunctionStage("zz_failing", "fail-1", lambda c, o, p: {"ok": len(p)}, needs=("checkworthiness",))
             for s in stages]
    again = run_stages(ctx, ORG, posts, stages=fixed)
    assert set(again).isdisjoint(before) and set(again) == {s.name for s in stages} - set(before)
    assert storage.ledger_writes == [len(posts), len(posts)]
    entries = Ledger(hashing_services.storage).entries(ORG, posts)
    assert all(not e.missing({s.name: s.version for s in fixed}) for e in entries.values())


def test_a_failing_ledger_write_after_a_failing_stage_raises_the_stage_error(hashing_services: Services) -> None:
    posts = _seed(hashing_services)

    class BrokenLedger(CountingStorage):
        def put_docs(self, org: str, collection: str, rows: Sequence[tuple[str, dict[str, Any], float | None]]) -> None:
            if collection == LEDGER:
                raise OSError("disk full")
            self.inner.put_docs(org, collection, rows)

    ctx = Ctx(hashing_services, BrokenLedger(hashing_services.storage))
    stages = _with_stage_after(load_stages(), "embedding", _failing("embedding"))
    with pytest.raises(RuntimeError, match="the stage broke"):
        run_stages(ctx, ORG, posts, stages=stages)
    assert hashing_services.storage.count_docs(ORG, LEDGER) == 0  # nothing recorded: the next run repeats


# -- killed between a stage's outputs and the ledger write -------------------------------

SCRIPT = textwrap.dedent('''
    import os, signal, sys
    from datetime import UTC, datetime
    from factbridge.pipeline.stages import FunctionStage, PipelineContext, load_stages, run_stages
    from factbridge.services import Services
    from factbridge.settings import load_settings

    db, data, org, kill_after = sys.argv[1:5]
    settings = load_settings(env={}, overrides={"data_dir": data, "storage_url": f"sqlite:///{db}", "embedder": "hashing",
                                                "embed_cache": "off", "match_fusion": "rrf"})
    stages = load_stages()
    if kill_after:
        def kill(ctx, org, posts):
            os.kill(os.getpid(), signal.SIGKILL)
        at = [s.name for s in stages].index(kill_after) + 1
        stages = [*stages[:at], FunctionStage("zz_kill", "kill-1", kill, needs=(kill_after,)), *stages[at:]]
    with Services(settings) as services:
        ctx = PipelineContext(services, clock=lambda: datetime(2026, 12, 3, 12, 0, tzinfo=UTC))
        posts = list(services.storage.iter_posts(org))
        summary = run_stages(ctx, org, posts, stages=stages)
        print(",".join(sorted(summary)))
''')


def _store(tmp_path: Path, name: str) -> tuple[Path, Path]:
    db, data = tmp_path / f"{name}.sqlite", tmp_path / name
    settings = load_settings(env={}, overrides={"data_dir": str(data), "storage_url": f"sqlite:///{db}", "embedder": "hashing",
                                                "embed_cache": "off", "match_fusion": "rrf"})
    with Services(settings) as services:
        _seed(services)
    return db, data


def _run(tmp_path: Path, db: Path, data: Path, kill_after: str = "") -> subprocess.CompletedProcess[str]:
    script = tmp_path / "run_stages.py"
    script.write_text(SCRIPT, encoding="utf-8")
    env = {**os.environ, "FACTBRIDGE_LOG_LEVEL": "error", "PYTHONHASHSEED": "0"}  # set order decides ties in top terms
    return subprocess.run([sys.executable, str(script), str(db), str(data), ORG, kill_after], env=env,
                          capture_output=True, text=True, timeout=120)


RANDOM_ID = re.compile(r"\b(nar|top)-[0-9a-f]{20}\b")  # narratives and topics: ids made from their first post and write number
WALL_CLOCK = re.compile(r'"(\w+_at)": ?"[^"]*"')  # some stages stamp with the wall clock (scored_at, raised_at...)
WRITE_TOKEN = re.compile(r'"version": ?"[0-9a-f]{32}"')  # a narrative member summary's token for conditional writes (uuid4)
STATE_TOKEN = re.compile(r'"token": ?"[0-9a-f]{32}"')  # the narrative state's token, new with every write (uuid4)


def dump(db: Path) -> dict[str, Any]:
    """Every stored document the stages write (documents, matches, vectors), by collection;
    narrative and topic ids are named by the order their first member post gives (the comparison does not hang on how ids are made)."""
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
        rows = sorted(conn.execute("SELECT collection, id, sort_key, doc FROM docs WHERE org = ?", (ORG,)))
        matches = sorted(conn.execute("SELECT post_id, factcheck_id, rank, fused_score, decision, decided_by, doc FROM matches WHERE org = ?", (ORG,)))
        vectors = sorted(conn.execute("SELECT kind, item_id, embedder, text_sha, vec FROM vectors WHERE org = ?", (ORG,)))
    names: dict[str, str] = {}

    def mask(text: str, assign: bool = False) -> str:
        def name(m: re.Match[str]) -> str:
            if m.group(0) not in names:
                if not assign:
                    return f"{m.group(1)}-?"
                names[m.group(0)] = f"{m.group(1)}-#{len(names)}"
            return names[m.group(0)]
        return RANDOM_ID.sub(name, text)

    for collection, _, _, doc in rows:  # members are keyed by post id: a stable order
        if collection == "narrative_members":
            mask(doc, assign=True)
    for collection, doc_id, _, doc in sorted(rows, key=lambda r: (r[0], mask(r[1]), mask(r[3]))):
        if collection == "narrative_changes":  # (lists ids in set order: named by the documents they list)
            continue
        mask(doc_id, assign=True)
        mask(doc, assign=True)
    out: dict[str, Any] = {}
    for collection, doc_id, sort_key, doc in rows:
        doc = WRITE_TOKEN.sub('"version": "-"', doc) if collection == "triage_members" else doc
        doc = STATE_TOKEN.sub('"token": "-"', doc) if collection == "narrative_state" else doc
        doc = WALL_CLOCK.sub(r'"\1": "-"', mask(doc))
        if collection == "narrative_changes":  # tokens (uuid4), and the narratives and topics of a write as sets
            change = json.loads(doc)
            doc = json.dumps({**change, "token": "-", "after": "-" if change["after"] else "", "narratives": sorted(change["narratives"]),
                              "topics": sorted(change["topics"])}, sort_keys=True)
        out.setdefault(collection, {})[mask(doc_id)] = (sort_key, doc)
    out["matches"], out["vectors"] = matches, vectors
    return out


@pytest.mark.parametrize("kill_after", ["checkworthiness", "triage"])
def test_killed_before_the_ledger_write_repeats_the_work_and_ends_the_same(tmp_path: Path, kill_after: str) -> None:
    ref_db, ref_data = _store(tmp_path, "reference")
    done = _run(tmp_path, ref_db, ref_data)
    assert done.returncode == 0, done.stderr

    db, data = _store(tmp_path, "killed")
    killed = _run(tmp_path, db, data, kill_after)
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    partial = dump(db)
    assert "checkworthiness" in partial  # the stages before the kill stored their outputs ...
    assert LEDGER not in partial  # ... and none of them is recorded

    again = _run(tmp_path, db, data)
    assert again.returncode == 0, again.stderr
    assert again.stdout.strip() == done.stdout.strip()  # every stage ran again
    reference, result = dump(ref_db), dump(db)
    assert sorted(result) == sorted(reference)
    # (killed after triage, narratives ran twice: its second run found every post placed and wrote nothing)
    for collection in reference:
        assert result[collection] == reference[collection], collection
