"""The stage ledger: per post, which stages ran on which version of its content.

One document per (org, post id) in the `stage_ledger` collection:

    {"post_id": ..., "content_sha": <sha of the stored post>,
     "stages": {"narratives": {"version": "narratives-1", "status": "done", "at": "..."}}}

A post whose content changed (another sha) has had no stage yet: its old entries no
longer count. `Ledger` is the one typed accessor; nothing else reads or writes the
collection. The runner (`factbridge.pipeline.stages.run_stages`) notes each stage in
memory once it stored its outputs and writes the batch's entries once, after its last
stage (and also when a stage raises, so the stages before it are not run again). Every
stage noted has stored its outputs before the write; stages are idempotent, so a crash
before the write repeats the batch's stages for those posts and loses nothing else.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, Literal

from factbridge.backends.storage.base import Storage, content_sha, iter_docs
from factbridge.models import Post

if TYPE_CHECKING:
    from factbridge.pipeline.stages import Stage

COLLECTION = "stage_ledger"
Status = Literal["done", "skipped"]


def post_sha(post: Post) -> str:
    """The content version of a post: the hash the storage compares on upsert."""
    return content_sha(post.model_dump(mode="json"))


@dataclass(frozen=True)
class StageRun:
    version: str
    status: Status
    at: str

    def to_doc(self) -> dict[str, str]:
        return {"version": self.version, "status": self.status, "at": self.at}

    @classmethod
    def from_doc(cls, doc: Mapping[str, Any]) -> StageRun:
        status: Status = "skipped" if doc.get("status") == "skipped" else "done"
        return cls(str(doc.get("version", "")), status, str(doc.get("at", "")))


@dataclass
class LedgerEntry:
    post_id: str
    content_sha: str
    stages: dict[str, StageRun] = field(default_factory=dict)

    def has(self, stage: str, version: str) -> bool:
        run = self.stages.get(stage)
        return run is not None and run.version == version

    def missing(self, versions: Mapping[str, str]) -> list[str]:
        return [name for name, version in versions.items() if not self.has(name, version)]

    def to_doc(self) -> dict[str, Any]:
        return {"post_id": self.post_id, "content_sha": self.content_sha,
                "stages": {name: run.to_doc() for name, run in sorted(self.stages.items())}}

    @classmethod
    def from_doc(cls, post_id: str, doc: Mapping[str, Any]) -> LedgerEntry:
        stages = doc.get("stages")
        runs = {str(k): StageRun.from_doc(v) for k, v in stages.items() if isinstance(v, Mapping)} if isinstance(stages, Mapping) else {}
        return cls(post_id, str(doc.get("content_sha", "")), runs)


@dataclass
class Backlog:
    """Posts of an organisation that miss stages."""

    posts: int = 0
    complete: int = 0
    missing: dict[str, int] = field(default_factory=dict)  # stage -> posts missing it
    incomplete_ids: list[str] = field(default_factory=list)


class Ledger:
    def __init__(self, storage: Storage) -> None:
        self.storage = storage

    def entries(self, org: str, posts: Sequence[Post]) -> dict[str, LedgerEntry]:
        """The entry of each post for its current content (empty when it changed or is new)."""
        docs = self.storage.get_docs(org, COLLECTION, [p.id for p in posts]) if posts else {}
        out: dict[str, LedgerEntry] = {}
        for post in posts:
            sha = post_sha(post)
            doc = docs.get(post.id)
            entry = LedgerEntry.from_doc(post.id, doc) if doc else None
            out[post.id] = entry if entry is not None and entry.content_sha == sha else LedgerEntry(post.id, sha)
        return out

    @staticmethod
    def note(posts: Sequence[Post], stage: Stage, status: Status, at: datetime,
             entries: dict[str, LedgerEntry]) -> list[str]:
        """Note that `stage` ran (or was skipped) on these posts: `entries` (from `entries()`)
        is updated in memory only and the ids of the posts noted are returned, for one
        `save` later (the runner saves once per batch, after every stage stored its outputs,
        or when a stage fails)."""
        run = StageRun(stage.version, status, at.isoformat(timespec="seconds"))
        for post in posts:
            entry = entries.get(post.id)
            if entry is None:
                entry = entries[post.id] = LedgerEntry(post.id, post_sha(post))
            entry.stages[stage.name] = run
        return [p.id for p in posts]

    def save(self, org: str, entries: Mapping[str, LedgerEntry], ids: Iterable[str]) -> int:
        """Write the entries of these posts (each once, in one storage write); the count."""
        rows: list[tuple[str, dict[str, Any], float | None]] = [(pid, entries[pid].to_doc(), None) for pid in dict.fromkeys(ids)]
        if rows:
            self.storage.put_docs(org, COLLECTION, rows)
        return len(rows)

    def incomplete(self, org: str, posts: Iterable[Post], versions: Mapping[str, str], chunk: int = 1000) -> Iterator[tuple[Post, list[str]]]:
        """Each post that misses a stage (at its version, for its current content), with the stages it misses."""
        batch: list[Post] = []
        for post in posts:
            batch.append(post)
            if len(batch) >= chunk:
                yield from self._incomplete(org, batch, versions)
                batch = []
        if batch:
            yield from self._incomplete(org, batch, versions)

    def _incomplete(self, org: str, posts: Sequence[Post], versions: Mapping[str, str]) -> Iterator[tuple[Post, list[str]]]:
        entries = self.entries(org, posts)
        for post in posts:
            missing = entries[post.id].missing(versions)
            if missing:
                yield post, missing

    def backlog(self, org: str, versions: Mapping[str, str], limit_ids: int = 100_000) -> Backlog:
        """How many stored posts of the org miss which stage."""
        out = Backlog(missing={name: 0 for name in versions})
        stored: dict[str, LedgerEntry] = {pid: LedgerEntry.from_doc(pid, doc) for pid, doc in iter_docs(self.storage, org, COLLECTION)}
        for post in self.storage.iter_posts(org):
            out.posts += 1
            entry = stored.get(post.id)
            if entry is None or entry.content_sha != post_sha(post):
                entry = LedgerEntry(post.id, post_sha(post))
            missing = entry.missing(versions)
            if not missing:
                out.complete += 1
                continue
            for name in missing:
                out.missing[name] += 1
            if len(out.incomplete_ids) < limit_ids:
                out.incomplete_ids.append(post.id)
        return out
