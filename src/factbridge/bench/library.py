"""`factbridge bench library`: the product's matcher over a large generated fact-check library.

`bench match --synthetic` measures the vector index alone. This measures what a worker does
with a library of N fact-checks stored in SQLite: loading it (every fact-check's fields, the
duplicate groups, BM25, the per-item features, the saved vector index opened), asking before
each batch whether it changed (`Services._library_stamp`), matching posts against it, and
bringing it up to date when a few fact-checks change (`Matcher.updated`).

The library is generated (`generated_factchecks`: vi/km/fr/en titles and claims from the
bench feed's text generator, times over five years, a few publishers) and embedded with the
hashing embedder: the costs of a library this size, not its matching quality (the eval
commands measure that). It is filled once into `data_dir/bench/library-<N>/` and reused;
its vector index is built there at the first load (above `match_memory_max`, the usearch
index kept beside the store). Each measurement runs in a process of its own, so the peak
memory is the load's, not the fill's.
"""

from __future__ import annotations

import multiprocessing
import os
import statistics
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np

from factbridge.bench.feed import _text, generated_posts
from factbridge.bench.match_synthetic import rss_mb
from factbridge.models import FactCheck

LANGS = ("vi", "km", "fr", "en")
PUBLISHERS = ("AFP Fact Check", "Kiểm chứng", "Cambodia Fact Check", "Les Décodeurs", "Snopes")
ORG = "bench"


def generated_factchecks(n: int, seed: int = 41, start: int = 0) -> list[FactCheck]:
    """Fact-checks `start` .. `start + n` of the generated library (raw: not yet prepared). The
    same index always gives the same fact-check, so a library is filled in parts."""
    out: list[FactCheck] = []
    first = datetime(2021, 1, 1, tzinfo=UTC)
    for i in range(start, start + n):
        rng = np.random.default_rng((seed, i))
        lang = LANGS[int(rng.integers(len(LANGS)))]
        out.append(FactCheck(
            id=f"gen-{i:07d}", claim=_text(rng, lang, int(rng.integers(80, 260))), title=_text(rng, lang, int(rng.integers(30, 90))),
            rating=("False", "Misleading", "True")[int(rng.integers(3))], publisher=PUBLISHERS[int(rng.integers(len(PUBLISHERS)))],
            url=f"https://factcheck.example/{i}", language=lang, published_at=first + timedelta(minutes=int(rng.integers(5 * 365 * 24 * 60))),
        ))
    return out


@dataclass
class LibraryBench:
    factchecks: int
    dense_index: str = ""  # "memory" (exact, vectors loaded) or "stored" (the saved vector index)
    filled: int = 0  # fact-checks generated and stored by this run (0: the library was there)
    fill_s: float = 0.0
    index_build_s: float = 0.0  # the first load of a new library: its vector index built and saved
    load_s: float = 0.0  # a worker's first matcher: the library loaded (vector index saved already), no snapshot
    snapshot_save_s: float = 0.0  # then its hashes read and the loaded library saved (pipeline/snapshot.py)
    snapshot_mb: float = 0.0  # the saved library's file
    restore_s: float = 0.0  # a worker's first matcher started from the saved library, nothing changed since
    restore_peak_rss_mb: float = 0.0
    rss_after_restore_mb: float = 0.0
    restore_edited_s: float = 0.0  # ... with `edits` fact-checks edited since the save (read again)
    load_peak_rss_mb: float = 0.0  # the measuring process's peak, the load included
    rss_after_load_mb: float = 0.0  # what the process holds once loaded (a worker's steady memory, before matching)
    items: int = 0
    stamp_ms: float = 0.0  # asking whether the library changed (median)
    cached_ask_ms: float = 0.0  # `services.matcher()` when it did not change (median)
    match_ms_per_post: float = 0.0  # matching posts whose vectors are given (no embedding)
    edits: int = 0  # fact-checks edited (new claim text, re-embedded), then put back as they were
    update_s: float = 0.0  # the cached matcher brought up to date after the edits (`Matcher.updated`)
    update_back_s: float = 0.0  # ... and after they were put back
    posts: int = 0
    load_avg: list[float] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {k: round(v, 3) if isinstance(v, float) else v for k, v in asdict(self).items()}


def library_dir(data_dir: str | Path, n: int) -> Path:
    return Path(data_dir) / "bench" / f"library-{n}"


def _settings(directory: Path, overrides: dict[str, Any]) -> dict[str, Any]:
    return {**overrides, "data_dir": str(directory), "storage_url": f"sqlite:///{directory / 'library.sqlite'}", "embedder": "hashing",
            "embed_cache": "off", "org": ORG, "match_fusion": "rrf"}  # the learned fusion is trained on e5's scores


def fill(directory: Path, n: int, config: str | None, overrides: dict[str, Any], advance: Callable[[int], None] | None = None) -> int:
    """Store the generated library's first `n` fact-checks and their vectors (what is stored
    already is kept: an interrupted fill goes on where it stopped). Returns how many it added."""
    from factbridge.backends.embedders.cache import text_sha
    from factbridge.pipeline.prepare import prepare_factcheck
    from factbridge.services import Services
    from factbridge.settings import load_settings

    directory.mkdir(parents=True, exist_ok=True)
    with Services(load_settings(config, overrides=_settings(directory, overrides))) as services:
        storage, embedder = services.storage, services.embedder
        have = storage.count_factchecks(ORG)
        if advance:
            advance(have)
        for start in range(have, n, 2_000):  # ids in order: what is stored is a prefix
            fcs = [prepare_factcheck(fc, services.languages) for fc in generated_factchecks(min(2_000, n - start), start=start)]
            vectors = embedder.encode_documents([fc.passage for fc in fcs])
            storage.upsert_factchecks(ORG, fcs)
            storage.put_vectors(ORG, "factcheck", embedder.id, [(fc.id, text_sha(fc.passage), v) for fc, v in zip(fcs, vectors, strict=True)])
            if advance:
                advance(len(fcs))
        return max(0, n - have)


def _measure(directory: str, n_posts: int, config: str | None, overrides: dict[str, Any], edits: int = 0) -> dict[str, Any]:
    """In a process of its own: the first matcher (the load), the stamp, a cached ask, matching,
    then `edits` fact-checks edited and put back, the matcher brought up to date after each."""
    from factbridge.pipeline.prepare import embedding_text, prepare_post
    from factbridge.pipeline.snapshot import snapshot_path
    from factbridge.services import Services
    from factbridge.settings import load_settings

    settings = load_settings(config, overrides={**_settings(Path(directory), overrides), "match_snapshot_min": 2**62})  # the load alone
    with Services(settings) as services:
        started = time.perf_counter()
        matcher = services.matcher(ORG)
        load_s = time.perf_counter() - started
        now_mb, peak_mb = rss_mb()
        out: dict[str, Any] = {"load_s": load_s, "load_peak_rss_mb": peak_mb, "rss_after_load_mb": now_mb, "items": len(matcher),
                               "dense_index": matcher.dense_index}
        # what a load adds to save the library for the next process (the product does it after a load)
        path = snapshot_path(directory, ORG, services.embedder.id)
        started = time.perf_counter()
        services._save_snapshot(ORG, matcher, path, services._library_shas(ORG), services._library_stamp(ORG))
        out["snapshot_save_s"] = time.perf_counter() - started
        out["snapshot_mb"] = path.stat().st_size / 1e6 if path.exists() else 0.0
        stamps, asks = [], []
        for _ in range(21):
            started = time.perf_counter()
            services._library_stamp(ORG)
            stamps.append(time.perf_counter() - started)
            started = time.perf_counter()
            assert services.matcher(ORG) is matcher, "the library did not change: the same matcher"
            asks.append(time.perf_counter() - started)
        out["stamp_ms"], out["cached_ask_ms"] = 1000 * statistics.median(stamps), 1000 * statistics.median(asks)
        posts = [prepare_post(p, services.languages) for p in generated_posts(n_posts, "tweet", seed=43)]
        vectors = services.embedder.encode_queries([embedding_text(p) for p in posts])
        matcher.match_vectors(posts[:5], vectors[:5])  # warm
        started = time.perf_counter()
        matcher.match_vectors(posts, vectors)
        out["match_ms_per_post"] = 1000 * (time.perf_counter() - started) / max(1, len(posts))
        if edits:
            out["edits"], out["update_s"], out["update_back_s"] = edits, *_edit_and_put_back(services, matcher, edits)
        return out


def _measure_restore(directory: str, config: str | None, overrides: dict[str, Any], edits: int = 0) -> dict[str, Any]:
    """In a process of its own: the first matcher started from the saved library, after `edits`
    fact-checks were edited in the store (then put back as they were)."""
    from factbridge.services import Services
    from factbridge.settings import load_settings

    with Services(load_settings(config, overrides={**_settings(Path(directory), overrides), "match_snapshot_min": 0})) as services:
        versions = _edited(services.storage.count_factchecks(ORG), edits)
        if edits:
            _store(services, versions[0])
        started = time.perf_counter()
        matcher = services.matcher(ORG)
        restore_s = time.perf_counter() - started
        now_mb, peak_mb = rss_mb()
        if edits:
            _store(services, versions[1])
        return {"restore_s": restore_s, "peak_rss_mb": peak_mb, "rss_mb": now_mb, "items": len(matcher)}


def _edited(size: int, edits: int) -> tuple[list[FactCheck], list[FactCheck]]:
    """`edits` fact-checks from the middle of the library with a corrected claim, and as they were."""
    start = max(0, size // 2 - edits // 2)
    originals = generated_factchecks(edits, start=start)
    return [fc.model_copy(update={"claim": f"{fc.claim} (corrected)", "rating": "Misleading"}) for fc in originals], originals


def _store(services: Any, version: list[FactCheck]) -> None:
    """Fact-checks stored and re-embedded, as an import and `index_factchecks` do."""
    from factbridge.backends.embedders.cache import text_sha
    from factbridge.pipeline.prepare import prepare_factcheck

    fcs = [prepare_factcheck(fc, services.languages) for fc in version]
    services.storage.upsert_factchecks(ORG, fcs)
    vectors = services.embedder.encode_documents([fc.passage for fc in fcs])
    services.storage.put_vectors(ORG, "factcheck", services.embedder.id, [(fc.id, text_sha(fc.passage), v) for fc, v in zip(fcs, vectors, strict=True)])


def _edit_and_put_back(services: Any, matcher: Any, edits: int) -> tuple[float, float]:
    """`edits` fact-checks from the middle of the library given a corrected claim (stored and
    re-embedded, as an import and `index_factchecks` do), the cached matcher brought up to date;
    then the same put back as they were (the library is kept for the next run), and again."""
    size = len(matcher)
    timings = []
    for version in _edited(size, edits):
        _store(services, version)
        started = time.perf_counter()
        updated = services.matcher(ORG)
        timings.append(time.perf_counter() - started)
        assert updated is not matcher, "the library changed: brought up to date"
        matcher = updated
    assert len(matcher) == size, "put back: the library as it was"
    return timings[0], timings[1]


def measure(directory: Path, n_posts: int, config: str | None, overrides: dict[str, Any], edits: int = 0) -> dict[str, Any]:
    """`_measure` in a fresh process (spawned: nothing of this one's memory in its peak), then
    `_measure_restore` in another, with nothing edited and with `edits` edited."""
    with multiprocessing.get_context("spawn").Pool(1) as pool:
        out = pool.apply(_measure, (str(directory), n_posts, config, overrides, edits))
    if not out.get("snapshot_mb"):
        return out
    with multiprocessing.get_context("spawn").Pool(1) as pool:
        unchanged = pool.apply(_measure_restore, (str(directory), config, overrides, 0))
    assert unchanged["items"] == out["items"], "started from the saved library: the library a load gives"
    out.update(restore_s=unchanged["restore_s"], restore_peak_rss_mb=unchanged["peak_rss_mb"], rss_after_restore_mb=unchanged["rss_mb"])
    if edits:
        with multiprocessing.get_context("spawn").Pool(1) as pool:
            out["restore_edited_s"] = pool.apply(_measure_restore, (str(directory), config, overrides, edits))["restore_s"]
    return out


def run(data_dir: str | Path, n: int, n_posts: int, config: str | None, overrides: dict[str, Any], advance: Callable[[int], None] | None = None,
        on_phase: Callable[[str], None] | None = None, edits: int = 100) -> LibraryBench:
    directory = library_dir(data_dir, n)
    result = LibraryBench(factchecks=n, posts=n_posts, load_avg=[round(os.getloadavg()[0], 2)])
    started = time.perf_counter()
    result.filled = fill(directory, n, config, overrides, advance)
    result.fill_s = time.perf_counter() - started if result.filled else 0.0
    indexes = directory / "indexes"
    measured = None
    if not (indexes.is_dir() and any(indexes.iterdir())):  # a new library: its first load may build the vector index
        if on_phase:
            on_phase("loading the library in a fresh process (a large one's vector index is built and saved once)")
        measured = measure(directory, n_posts, config, overrides, min(edits, n))
        if measured["dense_index"] == "stored":  # that load built the index: measure a load that opens it
            result.index_build_s, measured = measured["load_s"], None
    if measured is None:
        if on_phase:
            on_phase("loading the library in a fresh process, then asking, matching and bringing it up to date")
        measured = measure(directory, n_posts, config, overrides, min(edits, n))
    for key, value in measured.items():
        setattr(result, key, value)
    result.load_avg.append(round(os.getloadavg()[0], 2))
    return result
