"""Composition root: settings -> chosen backends. Nothing global at import time."""

from __future__ import annotations

import logging
import os
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cached_property
from pathlib import Path
from typing import Any

from factbridge.backends.embedders.base import Embedder, embedder_family
from factbridge.backends.embedders.cache import CachedEmbedder, EmbeddingCache
from factbridge.backends.queue.base import Queue
from factbridge.backends.storage import Storage, open_storage
from factbridge.backends.vectors.selection import VectorIndexTuning
from factbridge.plugins import load_backend
from factbridge.settings import Settings

# A restored library that had this many fact-checks (and a twentieth of it) to read again is saved again
SNAPSHOT_RESAVE_MIN = 1_000


def release_freed_memory() -> bool:
    """Hand the C heap's freed pages back to the system (glibc's `malloc_trim`), after a library
    load: its transient reads are freed, but glibc keeps their pages (~130 MB of a worker holding
    300,000 fact-checks: docs/performance.md §5, "Eleventh round"). False where the C library
    has no such call (musl, macOS): nothing is done."""
    import ctypes
    import ctypes.util

    try:
        trim = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").malloc_trim
    except (OSError, AttributeError):
        return False
    trim(0)
    return True


@dataclass
class Services:
    settings: Settings
    _closers: list[Any] = field(default_factory=list)
    _matchers: dict[str, tuple[tuple[str, int, str], Any]] = field(default_factory=dict)  # org -> (its library's stamp, its matcher)
    _matcher_lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def languages(self) -> tuple[str, ...]:
        return tuple(x.strip() for x in self.settings.languages.split(",") if x.strip())

    @cached_property
    def storage(self) -> Storage:
        Path(self.settings.data_dir).mkdir(parents=True, exist_ok=True)
        storage = open_storage(self.settings.resolved_storage_url)
        self._closers.append(storage)
        fix_period = getattr(storage, "fix_post_period", None)  # PostgreSQL's post vectors by period
        if fix_period is not None:
            fix_period(round(self.settings.vector_period_hours * 3600))
        return storage

    @cached_property
    def embedder(self) -> Embedder:
        s = self.settings
        cls = load_backend("factbridge.embedders", s.embedder)
        if s.embedder == "e5":
            inner = cls(threads=s.embed_threads, batch_size=s.embed_batch, model_path=s.embedder_path or None, max_query_tokens=s.embed_max_tokens, engine=s.embed_engine)
        elif s.embedder == "sentence-transformers":
            inner = cls(model_path=s.embedder_path, batch_size=s.embed_batch)
        else:
            inner = cls()
        cache_path = s.resolved_embed_cache
        if cache_path is None:
            return inner
        seeds: list[Path] = []
        for part in filter(None, s.embed_cache_seed.split(os.pathsep)):
            seed = Path(part)
            seeds.extend(sorted(seed.glob("*.sqlite")) if seed.is_dir() else [seed])
        cache = EmbeddingCache(cache_path, readonly_paths=seeds)
        self._closers.append(cache)
        return CachedEmbedder(inner, cache)

    @cached_property
    def queue(self) -> Queue:
        """The work queue named by queue_url (local: in-process; nats: shared by workers)."""
        from factbridge.backends.queue.base import open_queue

        s = self.settings
        queue = open_queue(s.queue_url, ack_wait_s=s.queue_ack_wait_s, max_deliveries=s.queue_max_deliveries)
        self._closers.append(queue)
        return queue

    @cached_property
    def alert_dispatcher(self):
        """Background webhook delivery of alerts; None when no webhook is configured."""
        from factbridge.pipeline.alerts import dispatcher_from_settings

        dispatcher = dispatcher_from_settings(self.storage, self.settings)
        if dispatcher is not None:
            self._closers.append(dispatcher)
        return dispatcher

    def matcher(self, org: str | None = None, storage: Storage | None = None, embedder: Embedder | None = None):
        """The matcher for one organisation's library.

        With the default storage and embedder it is cached and reused while the
        library is unchanged (`_library_stamp`: a new, edited or withdrawn fact-check
        changes it, another process's import too), so each ingested batch or public
        report does not reload the library. When it changed, the cached matcher is
        brought up to date from what changed since its stamp (`Matcher.updated`: the
        fact-checks written since, read alone) rather than loaded again, which costs by the
        library's size (~24 s at 300,000 fact-checks)."""
        org = org or self.settings.org
        if storage is not None or embedder is not None:
            return self._build_matcher(org, storage, embedder)
        stamp = self._library_stamp(org)
        with self._matcher_lock:
            cached = self._matchers.get(org)
            if cached and cached[0] == stamp:
                return cached[1]
        path = None if cached else self._snapshot_path(org)  # a process's first matcher: where its library is saved
        matcher = self._updated_matcher(org, *cached) if cached else self._restored_matcher(org, stamp, path)
        if matcher is None:
            matcher = self._loaded_matcher(org, stamp, path)
        with self._matcher_lock:
            self._matchers[org] = (stamp, matcher)
        return matcher

    def _library_stamp(self, org: str) -> tuple[str, int, str]:
        """What the library's matcher was built from, asked before each use: the stamps of the
        fact-checks and of their vectors (`factcheck_stamp`, `vector_stamp`: no row read, where
        hashing every stored pair here took ~3 s a batch at 300,000 fact-checks) and the count of
        withdrawn ones (a withdrawal changes no vector)."""
        from factbridge.pipeline.withdrawals import WithdrawnList

        s = self.storage
        return (s.factcheck_stamp(org), WithdrawnList(s).count(org), s.vector_stamp(org, "factcheck", self.embedder.id))

    def _updated_matcher(self, org: str, stamp: tuple[str, int, str], matcher: Any) -> Any:
        """`matcher` (built at `stamp`) with what changed since, or None where it must be
        loaded again: the library crossed `match_memory_max` (the other kind of dense index),
        or the store cannot say what changed since that stamp."""
        s = self.storage
        if self._dense_index(org, s) != matcher.dense_index:
            return None
        written = s.factchecks_changed(org, stamp[0])
        embedded = s.vectors_changed(org, "factcheck", self.embedder.id, stamp[2])
        if written is None or embedded is None:
            return None
        try:
            return matcher.updated({*written, *embedded})
        except Exception:  # a load reads everything again: the answer is right either way
            logging.getLogger(__name__).exception("bringing the matcher of %s up to date failed; loading the library again", org)
            return None

    def _snapshot_path(self, org: str) -> Path | None:
        """Where this organisation's loaded library is saved (pipeline/snapshot.py), when it is
        large enough to be worth it and the storage is not in memory (the file belongs to it)."""
        from factbridge.pipeline.snapshot import snapshot_path

        if ":memory:" in self.settings.resolved_storage_url or self.storage.count_factchecks(org) < self.settings.match_snapshot_min:
            return None
        return snapshot_path(self.settings.data_dir, org, self.embedder.id)

    def _library_shas(self, org: str) -> tuple[dict[str, str], dict[str, str]]:
        return self.storage.factcheck_shas(org), self.storage.vector_shas(org, "factcheck", self.embedder.id)

    def _loaded_matcher(self, org: str, stamp: tuple[str, int, str], path: Path | None) -> Any:
        """The library loaded whole (read after `stamp`), then saved at `path` for the next process."""
        shas = self._library_shas(org) if path is not None else None  # before the load: what it read is at least as new
        matcher = self._build_matcher(org, None, None)
        release_freed_memory()
        if path is not None and shas is not None:
            self._save_snapshot(org, matcher, path, shas, stamp)
        return matcher

    def _restored_matcher(self, org: str, stamp: tuple[str, int, str], path: Path | None) -> Any:
        """A process's first matcher from the library saved at `path`, brought up to date with every
        fact-check whose document or vector hash differs from the store's now; None where there
        is none to use (then the library is loaded). Saved again when much had changed."""
        from factbridge.pipeline import snapshot

        if path is None or not path.exists():
            return None
        log = logging.getLogger(__name__)
        started = time.perf_counter()
        shas = self._library_shas(org)  # read after `stamp`, before what `updated` reads
        try:
            empty = self._build_matcher(org, None, None, load=False)
            saved = snapshot.restore(path, empty, known_vectors=(stamp[2], shas[1]))
            if saved is None:
                log.info("the saved library at %s was made for another matcher; loading the library", path)
                return None
            changed = snapshot.differing(saved[0], shas[0]) | snapshot.differing(saved[1], shas[1])
            matcher = empty.updated(changed)
        except Exception:  # a load reads everything again: the answer is right either way
            log.exception("starting the matcher of %s from its saved library %s failed; loading the library", org, path)
            return None
        log.info("matcher of %s started from %s: %d fact-checks, %d read again, %.1f s", org, path, len(matcher), len(changed),
                 time.perf_counter() - started)
        if len(changed) >= max(SNAPSHOT_RESAVE_MIN, len(matcher) // 20):
            self._save_snapshot(org, matcher, path, shas, stamp)
        return matcher

    def _save_snapshot(self, org: str, matcher: Any, path: Path, shas: tuple[dict[str, str], dict[str, str]], stamp: tuple[str, int, str]) -> None:
        """Save `matcher`, read after `stamp` and `shas`: what was written since `stamp` it may
        hold in any of its versions, so those are saved as unknown (read again by a restore).
        Not saved where the store cannot say what was written; a failed save is logged only."""
        from factbridge.pipeline import snapshot

        written = self.storage.factchecks_changed(org, stamp[0])
        embedded = self.storage.vectors_changed(org, "factcheck", self.embedder.id, stamp[2])
        if written is None or embedded is None:
            return
        try:
            snapshot.save(matcher, path, shas[0], shas[1], unknown={*written, *embedded})
        except (OSError, snapshot.SnapshotError):
            logging.getLogger(__name__).exception("saving the library of %s to %s failed", org, path)

    def centering(self, embedder: Embedder | None = None, wanted: bool | None = None):
        """The shipped per-language centering, when wanted (default: the match_centering
        setting) and estimated on this embedder; otherwise None."""
        from factbridge.pipeline.centering import shipped_centering

        use = self.settings.match_centering if wanted is None else wanted
        return shipped_centering((embedder or self.embedder).id) if use else None

    def _build_matcher(self, org: str, storage: Storage | None, embedder: Embedder | None, load: bool = True):
        from factbridge.pipeline.matching import Matcher, default_reranker_path
        from factbridge.pipeline.reranker import Reranker

        s = self.settings
        embedder = embedder or self.embedder
        reranker = None
        fusion = s.match_fusion
        if fusion == "learned" and not default_reranker_path().exists():
            logging.getLogger(__name__).warning("no re-ranker file at %s; using rank fusion (rrf)", default_reranker_path())
            fusion = "rrf"
        if fusion == "learned":
            reranker = Reranker.load(default_reranker_path())
            if embedder_family(reranker.embedder_id) != embedder_family(embedder.id):
                logging.getLogger(__name__).warning(
                    "no trained re-ranker for embedder %s; using rank fusion (rrf)", embedder.id
                )
                fusion, reranker = "rrf", None
        centering = self.centering(embedder)
        return Matcher(
            storage or self.storage,
            embedder,
            org,
            fusion=fusion,
            reranker=reranker,
            candidates=s.match_candidates,
            top_k=s.match_top_k,
            rrf_k=s.rrf_k,
            match_threshold=s.match_threshold,
            possible_threshold=s.possible_threshold,
            centering=centering,
            dense_index=self._dense_index(org, storage or self.storage),
            index_tuning=VectorIndexTuning.from_settings(s),
            # the saved index belongs to this storage (its file is named by org, kind and embedder only)
            index_dir=None if storage is not None or ":memory:" in s.resolved_storage_url else s.data_dir,
            load=load,
        )

    def _dense_index(self, org: str, storage: Storage) -> str:
        """A large library: its vectors stay in the storage, searched through the vector index
        (pgvector HNSW on PostgreSQL; on SQLite a usearch index saved in data_dir)."""
        s = self.settings
        if s.vector_index != "hnsw":
            return "memory"
        return "stored" if storage.count_factchecks(org) > s.match_memory_max else "memory"

    def link_scorer(self, org: str | None = None, resolve: bool | None = None):
        """Link-risk scorer with this organisation's stored feeds (see factbridge.linkrisk)."""
        from factbridge.linkrisk.stage import scorer_for

        return scorer_for(self, org or self.settings.org, resolve)

    def now(self) -> datetime:
        """The clock stages read (`factbridge.pipeline.stages.StageContext`)."""
        return datetime.now(UTC)

    def close(self) -> None:
        for item in reversed(self._closers):
            item.close()
        self._closers.clear()

    def __enter__(self) -> Services:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
