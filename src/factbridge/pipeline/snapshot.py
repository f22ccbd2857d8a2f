"""A loaded matcher saved in data_dir, so that a process's first matcher reads what changed
since, not the whole library.

Loading a library reads every fact-check's fields, counts every token for BM25 and works out
every group of copies: ~20 s at 300,000 fact-checks (`factbridge bench library`), and every
worker, CLI run or restart pays it. A snapshot keeps what such a load made (the items, BM25's
counts and vocabulary, the groups of copies, the withdrawals, the vectors when they are held
in memory) beside the hashes of the documents and vectors it was made from.

Restoring reads those hashes from the store (`factcheck_shas`, `vector_shas`: two short
columns, no document) and brings the restored matcher up to date (`Matcher.updated`) with
every fact-check whose document or vector hash differs, is new or is gone, and with the
withdrawals made since (`updated` compares those itself). That is what a load would give,
whatever happened to the store meanwhile: other processes' writes, an import, a restore from
an older backup. Stamps are not trusted across processes; hashes are.

A fact-check written while the snapshot's matcher was read (`unknown` in `save`: what the
store reports changed since the stamp read before its hashes) is saved with an empty hash,
so that a restore always reads it again: its state in the snapshot is whichever of its
versions the load happened to read.

The file is `data_dir/indexes/matcher-<digest>.npz`, NumPy's zip of `.npy` arrays (read with
`allow_pickle=False`): columns of texts as UTF-8 and where each text ends, small parts as JSON.
It is written to a temporary file and renamed over the last one, so processes sharing a
data_dir each read a whole one. A file made for another embedder, dense index, centering, BM25
or matcher version is not used (the next save replaces it); a damaged one raises
`SnapshotError` and the caller loads the library.
"""

from __future__ import annotations

import contextlib
import glob
import hashlib
import logging
import os
import threading
import time
import zipfile
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import orjson
from scipy import sparse

from factbridge.backends.vectors.numpy_index import NumpyIndex
from factbridge.errors import FactBridgeError
from factbridge.pipeline.lexical import BM25Index
from factbridge.pipeline.matching import LibraryItem, Matcher, library_version

SNAPSHOT_FORMAT = "factbridge-matcher-snapshot-1"
log = logging.getLogger(__name__)


class SnapshotError(FactBridgeError):
    """A snapshot file that cannot be read back whole (damaged, cut short, inconsistent)."""


def snapshot_path(data_dir: str | Path, org: str, embedder_id: str) -> Path:
    digest = hashlib.sha1(f"{org}\x1f{embedder_id}".encode()).hexdigest()[:16]
    return Path(data_dir) / "indexes" / f"matcher-{digest}.npz"


def identity(matcher: Matcher) -> dict[str, Any]:
    """What a snapshot must have been made for to stand in for this matcher's load."""
    return {
        "format": SNAPSHOT_FORMAT, "org": matcher.org, "embedder": matcher.embedder.id, "dim": matcher.embedder.dim,
        "dense_index": matcher.dense_index, "centering": matcher.centering.version if matcher.centering is not None else None,
        "library": library_version(), "bm25": [matcher.lexical.k1, matcher.lexical.b],
    }


def differing(saved: Mapping[str, str], now: Mapping[str, str]) -> set[str]:
    """Ids whose hash differs between the two maps, or that only one of them has."""
    return {i for i, sha in saved.items() if now.get(i) != sha} | (now.keys() - saved.keys())


def _json(value: Any) -> np.ndarray:
    return np.frombuffer(orjson.dumps(value), dtype=np.uint8)


def _strings(name: str, values: Sequence[str]) -> Iterator[tuple[str, Callable[[], np.ndarray]]]:
    """A column of texts as two members: their UTF-8 joined, and where each ends (in characters):
    read back in a few tenths of a second at 300,000, where a JSON list of rows took seconds."""
    yield f"{name}.text", lambda: np.frombuffer("".join(values).encode("utf-8", "surrogatepass"), dtype=np.uint8)
    yield f"{name}.ends", lambda: np.cumsum(np.fromiter(map(len, values), dtype=np.int64, count=len(values)))


def _read_strings(archive: Any, name: str) -> list[str]:
    text = archive[f"{name}.text"].tobytes().decode("utf-8", "surrogatepass")
    ends = archive[f"{name}.ends"].tolist()
    if (ends[-1] if ends else 0) != len(text):
        raise SnapshotError(f"the texts of {name} do not add up")
    return [text[a:b] for a, b in zip([0, *ends[:-1]], ends, strict=True)]


def _parts(matcher: Matcher, fc_shas: Mapping[str, str], vector_shas: Mapping[str, str]) -> Iterator[tuple[str, Callable[[], np.ndarray]]]:
    """The file's members, each made when it is written."""
    items = matcher.items
    counts = matcher.lexical.counts
    if counts is None or matcher.lexical.ids != [item.id for item in items]:
        raise SnapshotError("the matcher's BM25 rows are not its items")
    yield "meta", lambda: _json({**identity(matcher), "items": len(items)})
    yield from _strings("item.id", [i.id for i in items])
    yield from _strings("item.language", [i.language for i in items])
    yield from _strings("item.title", [i.title for i in items])
    yield from _strings("item.norm_text", [i.norm_text for i in items])
    yield from _strings("item.date", [i.date.isoformat() if i.date else "" for i in items])
    yield from _strings("vocabulary", matcher.lexical.vocabulary)
    yield "counts.data", lambda: counts.data
    yield "counts.indices", lambda: counts.indices
    yield "counts.indptr", lambda: counts.indptr
    # each fact-check's group; a group of copies listed in its order (a group of one is most)
    yield from _strings("group.of", list(matcher._key_of))
    yield "group.key", lambda: np.frombuffer(b"".join(matcher._key_of.values()), dtype=np.uint8).reshape(-1, 16)
    yield "groups", lambda: _json([list(members) for members in matcher._groups.values() if len(members) > 1])
    yield "duplicates", lambda: _json(matcher.duplicates)
    yield "copies", lambda: _json(matcher._copies)
    yield "withdrawn", lambda: _json(sorted(matcher._withdrawn))
    if matcher.dense_index == "memory":
        if matcher.index.ids != [item.id for item in items]:
            raise SnapshotError("the matcher's vectors are not its items")
        yield "vectors", lambda: matcher.index.matrix
    yield from _strings("factcheck_sha.id", list(fc_shas))
    yield from _strings("factcheck_sha.value", list(fc_shas.values()))
    yield from _strings("vector_sha.id", list(vector_shas))
    yield from _strings("vector_sha.value", list(vector_shas.values()))


def save(matcher: Matcher, path: Path, fc_shas: Mapping[str, str], vector_shas: Mapping[str, str], unknown: Collection[str] = ()) -> None:
    """Save `matcher`, made from the fact-checks whose document and vector hashes are `fc_shas`
    and `vector_shas` (read before the matcher read the library), except those of `unknown`
    (written while it read: saved with an empty hash, always read again)."""
    if unknown:
        unknown = set(unknown)
        fc_shas = {i: "" if i in unknown else sha for i, sha in fc_shas.items()}
        vector_shas = {i: "" if i in unknown else sha for i, sha in vector_shas.items()}
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f"{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    try:
        with zipfile.ZipFile(temporary, "w", zipfile.ZIP_STORED, allowZip64=True) as archive:
            for name, make in _parts(matcher, fc_shas, vector_shas):
                with archive.open(f"{name}.npy", "w", force_zip64=True) as member:
                    np.lib.format.write_array(member, np.ascontiguousarray(make()), allow_pickle=False)
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)
    _remove_left_overs(path)


# A temporary file older than this is a save that never finished (its process was killed): a
# save of a million fact-checks takes seconds to a minute and writes ~1 GB, which stayed for good.
LEFT_OVER_S = 3600.0


def _remove_left_overs(path: Path) -> None:
    """Remove the temporary files of saves of `path` that never finished (older than
    LEFT_OVER_S; a younger one may be another process's save under way)."""
    stale = time.time() - LEFT_OVER_S
    for old in path.parent.glob(f"{glob.escape(path.name)}.*.tmp"):
        with contextlib.suppress(OSError):  # (another process removed it first)
            if old.stat().st_mtime < stale:
                old.unlink()
                log.info("matcher snapshot: removed %s, left by a save that did not finish", old.name)


def _read_json(archive: Any, name: str) -> Any:
    return orjson.loads(memoryview(archive[name]))


def restore(path: Path, matcher: Matcher, known_vectors: tuple[str, dict[str, str]] | None = None) -> tuple[dict[str, str], dict[str, str]] | None:
    """Fill `matcher` (made with `load=False`: its library empty) from the snapshot at `path`.
    Returns the fact-check document and vector hashes the snapshot was made from, to compare
    with the store's; None when there is no snapshot, or one made for another matcher
    (`identity`). Raises `SnapshotError` when the file cannot be read back whole.
    `known_vectors`: the store's vector stamp and every vector hash read after it, given to
    the stored vector index in place of its first reads (`stored_vector_index`)."""
    if not path.exists():
        return None
    try:
        with np.load(path, allow_pickle=False) as archive:
            meta, wanted = _read_json(archive, "meta"), identity(matcher)
            if {key: meta.get(key) for key in wanted} != wanted:
                return None
            ids = _read_strings(archive, "item.id")
            columns = [_read_strings(archive, f"item.{name}") for name in ("language", "title", "norm_text", "date")]
            vocabulary = _read_strings(archive, "vocabulary")
            counts = sparse.csr_matrix((archive["counts.data"], archive["counts.indices"], archive["counts.indptr"]),
                                       shape=(len(ids), len(vocabulary)))
            key_ids, keys = _read_strings(archive, "group.of"), archive["group.key"]
            copies_of = _read_json(archive, "groups")
            duplicates, copies, withdrawn = _read_json(archive, "duplicates"), _read_json(archive, "copies"), _read_json(archive, "withdrawn")
            vectors = archive["vectors"] if matcher.dense_index == "memory" else None
            fc_shas = dict(zip(_read_strings(archive, "factcheck_sha.id"), _read_strings(archive, "factcheck_sha.value"), strict=True))
            vector_shas = dict(zip(_read_strings(archive, "vector_sha.id"), _read_strings(archive, "vector_sha.value"), strict=True))
    except (OSError, ValueError, KeyError, TypeError, zipfile.BadZipFile, orjson.JSONDecodeError) as exc:
        raise SnapshotError(f"{path}: not a whole matcher snapshot ({type(exc).__name__}: {exc})") from exc
    if len(ids) != meta["items"] or any(len(column) != len(ids) for column in columns) or keys.shape != (len(key_ids), 16) \
            or (vectors is not None and vectors.shape != (len(ids), matcher.embedder.dim)):
        raise SnapshotError(f"{path}: its parts disagree on the library's size")
    try:
        lexical = BM25Index.of(ids, vocabulary, counts, *meta["bm25"])
        items = [LibraryItem(i, language, title, norm_text, datetime.fromisoformat(date) if date else None)
                 for i, language, title, norm_text, date in zip(ids, *columns, strict=True)]
        key_bytes = keys.tobytes()
        key_of = {fc_id: key_bytes[16 * n : 16 * n + 16] for n, fc_id in enumerate(key_ids)}
        groups: dict[bytes, tuple[str, ...]] = {key: (fc_id,) for fc_id, key in key_of.items()}
        for members in copies_of:
            groups[key_of[members[0]]] = tuple(members)
    except (TypeError, ValueError, KeyError, IndexError) as exc:
        raise SnapshotError(f"{path}: not a whole matcher snapshot ({type(exc).__name__}: {exc})") from exc
    matcher.items = items
    matcher._position = {fc_id: n for n, fc_id in enumerate(ids)}
    matcher.lexical = lexical
    matcher._key_of, matcher._groups = key_of, groups
    matcher.duplicates, matcher._copies, matcher._withdrawn = duplicates, copies, set(withdrawn)
    if vectors is not None:
        matcher.index = NumpyIndex.of(matcher.embedder.id, matcher.embedder.dim, ids, vectors)
    else:
        # the stored vector index opened, and brought up to date with the store
        matcher._open_stored([], {}, {}, known_shas=known_vectors if matcher.centering is None else None)
    return fc_shas, vector_shas
