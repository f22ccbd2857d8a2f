"""What `data_dir/indexes` holds, and pruning what no configured embedder reads any more.

The folder keeps, per organisation, kind and embedder, the embedded post and fact-check
indexes (`<kind>-<digest>`: a `.json` naming its segments, each segment's `.usearch` graph and
`.ids.json`, a `.lock`) and the matcher snapshots (`matcher-<digest>.npz`). Their names are
digests, so what each is for is read from it. When the embedder changes (another model, or a
new version of one), the old embedder's files are never read again: ~1 KB a fact-check for a
snapshot and ~1.5 KB a post for an f32 index, which stayed for good. `prune` removes those of
other embedders (derived files only: every vector and document stays in the store, and an
index is rebuilt from it when its embedder is used again), and the temporary files of saves
that never finished, when older than `LEFT_OVER_S`.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import orjson

from factbridge.backends.vectors.hnsw import _saving
from factbridge.pipeline.snapshot import LEFT_OVER_S


@dataclass
class SavedIndex:
    name: str  # the stem: `post-…`, `factcheck-…`, `matcher-….npz`, or a left-over file's name
    kind: str  # "post", "factcheck", "matcher", "left over" or "unreadable"
    embedder: str | None  # the embedder its vectors are from (None: unreadable, or a left-over)
    items: int | None
    files: list[Path] = field(default_factory=list)
    modified: float = 0.0  # newest of its files' modification times
    problem: str = ""  # why it could not be read
    is_index: bool = False  # an embedded index (`<stem>.json` and its segments, saved under `<stem>.lock`)

    @property
    def size(self) -> int:
        total = 0
        for path in self.files:
            with contextlib.suppress(OSError):
                total += path.stat().st_size
        return total


def _stamp(files: Sequence[Path]) -> float:
    times = []
    for path in files:
        with contextlib.suppress(OSError):
            times.append(path.stat().st_mtime)
    return max(times, default=0.0)


def saved_indexes(data_dir: str | Path) -> list[SavedIndex]:
    """Everything in `data_dir/indexes`, one entry per index or snapshot (with all its files) and
    one per file that belongs to none (a save's temporary file, a segment no index names)."""
    folder = Path(data_dir) / "indexes"
    if not folder.is_dir():
        return []
    files = sorted(p for p in folder.iterdir() if p.is_file())
    claimed: set[Path] = set()
    out: list[SavedIndex] = []
    for meta_path in (p for p in files if p.name.endswith(".json") and not p.name.endswith(".ids.json")):
        stem = meta_path.name.removesuffix(".json")
        kind = stem.split("-", 1)[0]
        mine = [meta_path]  # (its empty `.lock` is not counted: it stays, another process may wait on it)
        try:
            meta = json.loads(meta_path.read_text(encoding="utf-8"))
            segments = meta.get("segments") or [{"data": meta.get("data") or stem + ".usearch"}]
            mine += [folder / str(s[key]) for s in segments for key in ("data", "ids") if key in s]
            entry = SavedIndex(stem, kind, str(meta["embedder_id"]), int(meta.get("count", 0)))
        except (OSError, ValueError, KeyError, TypeError) as exc:
            entry = SavedIndex(stem, "unreadable", None, None, problem=f"{type(exc).__name__}: {exc}")
        entry.files = [p for p in dict.fromkeys(mine) if p.exists()]
        entry.modified, entry.is_index = _stamp(entry.files), True
        claimed.update(entry.files)
        out.append(entry)
    for path in (p for p in files if p.name.startswith("matcher-") and p.name.endswith(".npz")):
        try:
            with np.load(path, allow_pickle=False) as archive:
                meta = orjson.loads(memoryview(archive["meta"]))
            entry = SavedIndex(path.name, "matcher", str(meta["embedder"]), int(meta.get("items", 0)), [path])
        except Exception as exc:  # noqa: BLE001 - any damage makes it unreadable, reported as such
            entry = SavedIndex(path.name, "unreadable", None, None, [path], problem=f"{type(exc).__name__}: {exc}")
        entry.modified = _stamp(entry.files)
        claimed.add(path)
        out.append(entry)
    for path in files:
        if path not in claimed and not path.name.endswith(".lock"):
            out.append(SavedIndex(path.name, "left over", None, None, [path], _stamp([path])))
    return out


def prunable(entries: Sequence[SavedIndex], keep: set[str], now: float | None = None) -> list[SavedIndex]:
    """The entries `prune` removes: an index or snapshot of an embedder not in `keep`, and a
    left-over or unreadable file not touched for `LEFT_OVER_S` (a younger one may be a save
    under way in another process)."""
    stale = (time.time() if now is None else now) - LEFT_OVER_S
    return [e for e in entries
            if (e.embedder is not None and e.embedder not in keep) or (e.embedder is None and e.modified < stale)]


def prune(data_dir: str | Path, entries: Sequence[SavedIndex]) -> int:
    """Remove these entries' files (an index's under its save lock, its `.json` first: a reader
    then finds no index, never half of one). Returns the bytes freed."""
    freed = 0
    folder = Path(data_dir) / "indexes"
    for entry in entries:
        size = entry.size
        if entry.is_index:
            stem = folder / entry.name
            with _saving(stem):
                for path in sorted(entry.files, key=lambda p: p.name != stem.name + ".json"):
                    path.unlink(missing_ok=True)
        else:
            for path in entry.files:
                path.unlink(missing_ok=True)
        freed += size
    return freed
