"""What every pipeline stage must do, built-in or plugin (like `storage_conformance`).

    from factbridge.testing.stage_conformance import check_stage
    check_stage(MY_STAGE, services, posts)

`services` is a `StageContext` (e.g. `Services` on in-memory SQLite with the hashing
embedder) whose storage already holds `posts`; the stages this one needs are run first
through the runner. The checks:

- it declares a name, a non-empty version, its needs (registered stages) and what it writes;
- an empty batch returns a JSON-serialisable summary and writes nothing;
- it writes only the collections it declares (documents by collection name, matches as
  "matches", vectors as "vectors:<kind>");
- its summary is JSON-serialisable (the CLI and the worker print and store it);
- running it again on the same posts is idempotent: every collection it declares holds
  exactly the same ids afterwards (no duplicate, nothing new).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from factbridge.backends.storage.base import Expect, Rows, Storage, iter_docs
from factbridge.models import MatchCandidate, Post, Quarantined
from factbridge.pipeline.stages import (
    PipelineContext,
    Stage,
    StageContext,
    load_stages,
    order_stages,
    run_stages,
)


class RecordingStorage:
    """A storage that notes which collections are written, and passes every call on."""

    def __init__(self, inner: Storage) -> None:
        self._inner = inner
        self.written: set[str] = set()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    def put_docs(self, org: str, collection: str, rows: Sequence[tuple[str, dict[str, Any], float | None]]) -> None:
        self.written.add(collection)
        self._inner.put_docs(org, collection, rows)

    def put_docs_batch(self, org: str, writes: Sequence[tuple[str, Rows]], *, expect: Sequence[Expect] = (),
                       other_orgs: Sequence[tuple[str, str, Rows]] = ()) -> None:
        self.written.update(c for c, _ in writes)
        self.written.update(c for _, c, _ in other_orgs)
        self._inner.put_docs_batch(org, writes, expect=expect, other_orgs=other_orgs)

    def replace_matches(self, org: str, post_id: str, candidates: Sequence[MatchCandidate]) -> None:
        self.written.add("matches")
        self._inner.replace_matches(org, post_id, candidates)

    def put_vectors(self, org: str, kind: str, embedder_id: str, rows: Sequence[tuple[str, str, Any]]) -> None:
        self.written.add(f"vectors:{kind}")
        self._inner.put_vectors(org, kind, embedder_id, rows)

    def upsert_posts(self, org: str, posts: Sequence[Post], quarantined: Sequence[Quarantined] = ()) -> Any:
        self.written.add("posts")
        return self._inner.upsert_posts(org, posts, quarantined)

    def upsert_factchecks(self, org: str, items: Sequence[Any]) -> Any:
        self.written.add("factchecks")
        return self._inner.upsert_factchecks(org, items)

    def add_quarantine(self, org: str, rows: Sequence[Quarantined]) -> None:
        self.written.add("quarantine")
        self._inner.add_quarantine(org, rows)


class _RecordingContext(PipelineContext):
    def __init__(self, services: StageContext, storage: RecordingStorage) -> None:
        super().__init__(services)
        self._recording = storage

    @property
    def storage(self) -> Storage:
        recording: Storage = self._recording  # a proxy, duck-typed (Storage is a runtime protocol)
        return recording


def _snapshot(storage: Storage, org: str, stage: Stage, posts: Sequence[Post], embedder_id: str) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for collection in stage.writes:
        if collection == "matches":
            out[collection] = sorted(f"{p.id}|{c.factcheck_id}" for p in posts for c in storage.matches_for_post(org, p.id))
        elif collection.startswith("vectors:"):
            out[collection] = sorted(storage.vector_shas(org, collection.removeprefix("vectors:"), embedder_id))
        else:
            out[collection] = sorted(doc_id for doc_id, _ in iter_docs(storage, org, collection))
    return out


def check_declaration(stage: Stage, registered: Sequence[str] | None = None) -> None:
    assert isinstance(stage.name, str) and stage.name, "a stage has a name"
    assert isinstance(stage.version, str) and stage.version, f"stage {stage.name} declares a version"
    assert isinstance(stage.needs, tuple) and all(isinstance(n, str) for n in stage.needs), f"{stage.name}: needs is a tuple of names"
    assert isinstance(stage.writes, tuple) and stage.writes, f"{stage.name}: writes names the collections it writes"
    assert stage.name not in stage.needs, f"{stage.name} needs itself"
    if registered is not None:
        assert set(stage.needs) <= set(registered), f"{stage.name} needs unregistered stages {set(stage.needs) - set(registered)}"


def check_stage(stage: Stage, services: StageContext, posts: Sequence[Post], org: str = "conformance") -> dict[str, Any]:
    """Run every check on one stage; returns its summary of the first real run."""
    registered = load_stages()
    check_declaration(stage, [s.name for s in registered] + [stage.name])
    by_name = {s.name: s for s in registered}
    by_name[stage.name] = stage
    # what it needs (transitively), in runner order, on the same posts
    wanted: set[str] = set()
    todo = list(stage.needs)
    while todo:
        name = todo.pop()
        if name not in wanted:
            wanted.add(name)
            todo.extend(by_name[name].needs)
    before = order_stages([by_name[n] for n in wanted])
    if before:
        run_stages(services, org, posts, stages=before)

    recording = RecordingStorage(services.storage)
    ctx = _RecordingContext(services, recording)
    empty = stage.run(ctx, org, [])
    json.dumps(empty)
    assert not recording.written, f"{stage.name} wrote {sorted(recording.written)} for an empty batch"

    summary = stage.run(ctx, org, posts)
    assert isinstance(summary, dict), f"{stage.name} returns a dict summary"
    json.dumps(summary)  # serialisable, or this raises
    undeclared = recording.written - set(stage.writes)
    assert not undeclared, f"{stage.name} wrote {sorted(undeclared)}, not declared in writes={stage.writes}"

    embedder_id = services.embedder.id
    first = _snapshot(services.storage, org, stage, posts, embedder_id)
    again = stage.run(ctx, org, posts)
    json.dumps(again)
    second = _snapshot(services.storage, org, stage, posts, embedder_id)
    assert first == second, f"{stage.name} is not idempotent: a second run on the same posts changed the ids in " + \
        ", ".join(c for c in stage.writes if first[c] != second[c])
    return summary
