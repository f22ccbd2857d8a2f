"""The ingest throughput bench: the whole pipeline on generated posts, timed per stage,
beside the encoder alone on the same texts.

A batch goes the way `factbridge ingest` and `factbridge worker` take it: normalise
(Unicode, language, tokens, links), store, then every registered stage in order
(embedding first: vectors stored once, shared by every later stage), each recorded in
the stage ledger. After each batch the encoder alone encodes the same
posts' texts again, with nothing else around it: what the encoder costs by itself, so
that `1 - pipeline rate / encoder rate` is the pipeline's overhead, and the difference
in milliseconds per post (wall and process CPU) what everything but the encoder costs.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from factbridge.backends.embedders.base import Embedder, EncodesAhead
from factbridge.backends.embedders.cache import CachedEmbedder
from factbridge.models import Post
from factbridge.pipeline.collector import settle_heap
from factbridge.pipeline.prepare import embedding_text, prepare_post
from factbridge.pipeline.stages import StageClock, load_stages, run_stages
from factbridge.text.tokenize import load_segmenter

# What a CPU offers int8 dot products (the onnx-int8 encoder's MatMulInteger), strongest first:
# the ingest targets were set for a VNNI machine (docs/performance.md §1).
_INT8_DOT = (("amx_int8", "AMX"), ("avx512_vnni", "AVX-512 VNNI"), ("avx_vnni", "AVX-VNNI"), ("i8mm", "Arm i8mm"),
             ("asimddp", "Arm dot product"), ("avx2", "none (AVX2 only)"))


def cpu_summary(cpuinfo: str | None = None) -> dict[str, str]:
    """The CPU's model and its int8 dot-product instructions, from /proc/cpuinfo (Linux;
    "unknown" elsewhere), printed beside the ingest bench's rates."""
    if cpuinfo is None:
        try:
            with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as handle:
                cpuinfo = handle.read()
        except OSError:
            cpuinfo = ""
    model, flags = "unknown", set[str]()
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "model name" and model == "unknown":
            model = value.strip()
        elif key.strip() in ("flags", "Features") and not flags:
            flags = set(value.split())
    found = next((name for flag, name in _INT8_DOT if flag in flags), "unknown" if not flags else "none")
    return {"model": model, "int8_dot": found}


@dataclass
class IngestBench:
    posts: int
    stage_s: dict[str, float] = field(default_factory=dict)
    stage_cpu_s: dict[str, float] = field(default_factory=dict)
    embedded: int = 0
    reused: int = 0
    encoder_s: float = 0.0
    encoder_cpu_s: float = 0.0
    encoder_texts: int = 0
    mean_chars: float = 0.0
    load_before: float = 0.0
    load_after: float = 0.0
    ahead: bool = False
    total_s: float = 0.0  # wall time of the batches (the encoder-alone runs excluded)
    total_cpu_s: float = 0.0
    repeats_per_post: float = 0.0  # near-identical stored posts triage found per post (its velocity evidence)
    with_repeats: float = 0.0  # share of the posts with at least one
    # per batch: (posts, wall s, CPU s, encoder-alone s, encoder-alone CPU s)
    batches: list[tuple[int, float, float, float, float]] = field(default_factory=list)

    @property
    def steady(self) -> dict[str, Any] | None:
        """The batches of a sustained feed: with `ahead`, a batch's wall time holds its stages
        and the next batch's encoding, so its steady state is every batch that had its own
        posts encoded ahead (not the first) and encoded a next one as large (not the last,
        nor the one before a short last one): the first batch's lone encoding and the last
        one's stages with nothing to encode beside them happen once per backlog. Compared
        with the encoder alone on the batches encoded in that time. None without `ahead` or
        with fewer than three batches."""
        if not self.ahead or len(self.batches) < 3:
            return None
        size = self.batches[1][0]
        steady = [k for k in range(1, len(self.batches) - 1) if self.batches[k][0] == self.batches[k + 1][0] == size]
        if not steady:
            return None
        posts = sum(self.batches[k][0] for k in steady)
        wall = sum(self.batches[k][1] for k in steady)
        cpu = sum(self.batches[k][2] for k in steady)
        alone = sum(self.batches[k + 1][3] for k in steady)
        alone_cpu = sum(self.batches[k + 1][4] for k in steady)
        return {
            "batches": [k + 1 for k in steady], "of": len(self.batches), "posts": posts, "posts_per_s": round(posts / wall, 2),
            "encoder_alone_posts_per_s": round(posts / alone, 2), "overhead": round(1.0 - alone / wall, 4),
            "overhead_ms_per_post": round(1000.0 * (wall - alone) / posts, 3), "overhead_cpu_ms_per_post": round(1000.0 * (cpu - alone_cpu) / posts, 3),
        }

    @property
    def rate(self) -> float:
        return self.posts / self.total_s if self.total_s else 0.0

    @property
    def encoder_rate(self) -> float:
        return self.encoder_texts / self.encoder_s if self.encoder_s else 0.0

    @property
    def overhead(self) -> float:
        """Share of the encoder-alone rate the pipeline loses (negative: it is faster, by reusing vectors)."""
        return 1.0 - self.rate / self.encoder_rate if self.encoder_rate else 0.0

    @property
    def overhead_ms(self) -> float:
        """Wall milliseconds per post the pipeline spends beyond the encoder alone."""
        return 1000.0 * (self.total_s - self.encoder_s) / self.posts if self.posts else 0.0

    @property
    def overhead_cpu_ms(self) -> float:
        """The same in process CPU time (all threads): less sensitive to other processes' load."""
        return 1000.0 * (self.total_cpu_s - self.encoder_cpu_s) / self.posts if self.posts else 0.0

    def as_dict(self) -> dict[str, Any]:
        ms = 1000.0 / self.posts if self.posts else 0.0
        return {
            "posts": self.posts, "mean_chars": round(self.mean_chars, 1), "stage_s": {k: round(v, 3) for k, v in self.stage_s.items()},
            "stage_ms_per_post": {k: round(v * ms, 3) for k, v in self.stage_s.items()},
            "stage_cpu_ms_per_post": {k: round(v * ms, 3) for k, v in self.stage_cpu_s.items()},
            "total_s": round(self.total_s, 3), "posts_per_s": round(self.rate, 2), "embedded": self.embedded, "reused": self.reused,
            "encoder_alone_posts_per_s": round(self.encoder_rate, 2), "overhead": round(self.overhead, 4),
            "overhead_ms_per_post": round(self.overhead_ms, 3), "overhead_cpu_ms_per_post": round(self.overhead_cpu_ms, 3),
            "load_before": self.load_before, "load_after": self.load_after, "cpus": os.cpu_count(), "cpu": cpu_summary(), "encode_ahead": self.ahead,
            "repeats_per_post": round(self.repeats_per_post, 2), "with_repeats": round(self.with_repeats, 3),
            "steady": self.steady,
        }


class _AloneWordCache:
    """The encoder-alone run's own tokenizer word cache. The ONNX engine's tokenizer remembers
    how it segmented each word; run on the batch the pipeline has just tokenised, the encoder
    alone would find every word remembered and skip the tokenizer's costliest part (~0.5 ms of
    a 550-character post's ~14, ~0.16 of a tweet's ~5). With its own cache, which has seen the
    same texts before (every earlier batch), it tokenises what the pipeline did, as it did."""

    def __init__(self, embedder: Embedder) -> None:
        self._swap: Callable[[dict[str, Any]], dict[str, Any]] | None = getattr(embedder, "swap_word_cache", None)
        self._alone: dict[str, Any] = {}
        if self._swap is not None:  # both start from the same remembered words
            current = self._swap({})
            self._swap(current)
            self._alone = dict(current)

    @contextmanager
    def alone(self) -> Iterator[None]:
        if self._swap is None:
            yield
            return
        pipeline = self._swap(self._alone)
        try:
            yield
        finally:
            self._alone = self._swap(pipeline)


def _warmed_up(services: Any, org: str, warmup: Sequence[Post]) -> tuple[list[Any], StageClock]:
    """The registered stages, run once on `warmup` in another organisation (imports such as
    pandas and scipy, and models, that a running worker has loaded already: not per-post
    costs), and a clock with a row per step of a batch."""
    stages = load_stages()
    if warmup:
        load_segmenter()  # the Khmer CRF model, which the warm-up posts may not need
        warm = [prepare_post(p, services.languages) for p in warmup]
        services.storage.upsert_posts(f"{org}-warmup", warm)
        run_stages(services, f"{org}-warmup", warm, stages=stages)
        settle_heap(every_s=0.0)  # as a worker does after its first run
    names = ["normalise", "store", *(stage.name for stage in stages), "ledger"]
    return stages, StageClock(wall=dict.fromkeys(names, 0.0), cpu=dict.fromkeys(names, 0.0))


def _prepare_and_store(services: Any, org: str, part: Sequence[Post], clock: StageClock) -> list[Post]:
    """A batch normalised and stored, each step on the clock."""
    wall0, cpu0 = time.perf_counter(), time.process_time()
    prepared = [prepare_post(p, services.languages) for p in part]
    clock.add("normalise", wall0, cpu0)
    wall0, cpu0 = time.perf_counter(), time.process_time()
    services.storage.upsert_posts(org, prepared)
    clock.add("store", wall0, cpu0)
    return prepared


def bare_embedder(embedder: Embedder) -> Embedder:
    """The encoder without its cache: the bench times real encoding."""
    return embedder.inner if isinstance(embedder, CachedEmbedder) else embedder


def run_ingest_bench(
    services: Any, org: str, raw: Sequence[Post], batch_size: int = 64, progress: Callable[[int], None] | None = None,
    warmup: Sequence[Post] = (), ahead: bool = True,
) -> IngestBench:
    """Ingest `raw` through every stage in batches, timing each stage, and the encoder alone
    on each batch's texts right after it (so a change of the machine's load hits both alike).
    `warmup` posts go through every stage first, in another organisation, untimed.
    `services.embedder` must be the encoder to time (no embedding cache).

    With `ahead` a batch runs as a worker with the next batch at hand runs it: the next
    batch is stored first and, once this batch's vectors are stored, encoded in the
    background while this batch's later stages run (`run_stages(ahead=...)`); the batch
    after it arrives meanwhile (normalised and stored, as the fetching side of a feed does
    while a worker runs). End to end is then the wall time of the batches, not the sum of
    the stages (they overlap the encoder); before the encoder-alone run the background
    encoding is waited for (counted under "embedding"), so the encoder alone never shares
    the machine with the pipeline."""
    stages, clock = _warmed_up(services, org, warmup)
    result = IngestBench(posts=len(raw), load_before=round(os.getloadavg()[0], 2), ahead=ahead)
    embedder = services.embedder
    words = _AloneWordCache(embedder)

    def prepare(part: Sequence[Post]) -> list[Post]:
        return _prepare_and_store(services, org, part, clock)

    batches = [raw[start : start + batch_size] for start in range(0, len(raw), batch_size)]
    chars = 0
    wall0, cpu0 = time.perf_counter(), time.process_time()
    following = prepare(batches[0]) if batches else []
    after = prepare(batches[1]) if len(batches) > 1 and ahead else []
    for k in range(len(batches)):
        prepared, following = following, after
        # one run of every stage, as a worker runs a batch (one ledger read, one ledger write)
        summary = run_stages(services, org, prepared, stages=stages, clock=clock, ahead=following).get("embedding", {})
        # the batch after next arrives (normalised and stored, as the fetching side of a
        # feed does) while the next one is still being encoded
        after = prepare(batches[k + 2]) if k + 2 < len(batches) and ahead else []
        if following and isinstance(embedder, EncodesAhead):
            settle0, settle_cpu0 = time.perf_counter(), time.process_time()
            embedder.settle()
            clock.add("embedding", settle0, settle_cpu0)
        batch_s, batch_cpu_s = time.perf_counter() - wall0, time.process_time() - cpu0
        result.total_s += batch_s
        result.total_cpu_s += batch_cpu_s
        embedded, reused = summary.get("embedded", 0), summary.get("reused", 0)
        result.embedded += embedded if isinstance(embedded, int) else 0
        result.reused += reused if isinstance(reused, int) else 0
        texts = [embedding_text(p) for p in prepared]
        with words.alone():
            enc0, enc_cpu0 = time.perf_counter(), time.process_time()
            embedder.encode_queries(texts)  # as the pipeline hands them over
            enc_s, enc_cpu_s = time.perf_counter() - enc0, time.process_time() - enc_cpu0
        result.encoder_s += enc_s
        result.encoder_cpu_s += enc_cpu_s
        result.encoder_texts += len(texts)
        result.batches.append((len(prepared), batch_s, batch_cpu_s, enc_s, enc_cpu_s))
        chars += sum(len(p.text) for p in prepared)
        if progress:
            progress(len(prepared))
        wall0, cpu0 = time.perf_counter(), time.process_time()
        if not ahead and k + 1 < len(batches):
            following = prepare(batches[k + 1])
    result.stage_s, result.stage_cpu_s = clock.wall, clock.cpu
    result.mean_chars = chars / max(1, len(raw))
    result.load_after = round(os.getloadavg()[0], 2)
    result.repeats_per_post, result.with_repeats = _repeats(services.storage, org, len(raw))
    return result


def _repeats(storage: Any, org: str, posts: int) -> tuple[float, float]:
    """Mean repeats per post in the triage queue's velocity evidence, and the share of posts
    with any: how much of a copy-paste campaign the feed looked like to triage (its cost grows
    with it). 0, 0 when triage did not run."""
    from factbridge.pipeline.records import TriageQueue

    counts = [e.components["velocity"].evidence.get("repeats", 0) for e in TriageQueue(storage).top(org, posts, "post") if "velocity" in e.components]
    found = [int(c) for c in counts if isinstance(c, int)]
    if not found:
        return 0.0, 0.0
    return sum(found) / len(found), sum(1 for c in found if c) / len(found)


@dataclass
class StageBench:
    """`run_stage_bench`'s figures: process CPU per stage (all threads), the encoder out of the way."""

    posts: int
    stage_cpu_s: dict[str, float]
    total_cpu_s: float
    mean_chars: float
    repeats_per_post: float = 0.0
    with_repeats: float = 0.0

    @property
    def beside_encoder_ms(self) -> float:
        """CPU milliseconds per post of every stage but embedding (here the cache's look-ups):
        what the pipeline adds to the encoder."""
        rest = self.total_cpu_s - self.stage_cpu_s.get("embedding", 0.0)
        return 1000.0 * rest / self.posts if self.posts else 0.0

    def as_dict(self) -> dict[str, Any]:
        ms = 1000.0 / self.posts if self.posts else 0.0
        return {
            "posts": self.posts, "mean_chars": round(self.mean_chars, 1),
            "stage_cpu_ms_per_post": {k: round(v * ms, 3) for k, v in self.stage_cpu_s.items()},
            "total_cpu_ms_per_post": round(self.total_cpu_s * ms, 3), "beside_encoder_cpu_ms_per_post": round(self.beside_encoder_ms, 3),
            "repeats_per_post": round(self.repeats_per_post, 2), "with_repeats": round(self.with_repeats, 3),
        }


def run_stage_bench(
    services: Any, org: str, raw: Sequence[Post], batch_size: int = 1024, progress: Callable[[int], None] | None = None,
    warmup: Sequence[Post] = (),
) -> StageBench:
    """Every stage's process CPU on `raw`, in batches as `run_ingest_bench` runs them but with
    nothing encoded: `services.embedder` answers every text from its embedding cache (the
    caller fills it first). What the stages cost without the encoder's threads beside them on
    the machine: two versions of a stage compared by what they cost, not by wall-clock rates
    that the encoder and the machine's load move (one run is still ~20 % from the next on a
    shared machine: docs/performance.md §5, "Seventh round")."""
    stages, clock = _warmed_up(services, org, warmup)
    cpu0 = time.process_time()
    for start in range(0, len(raw), batch_size):
        part = raw[start : start + batch_size]
        prepared = _prepare_and_store(services, org, part, clock)
        run_stages(services, org, prepared, stages=stages, clock=clock)
        if progress:
            progress(len(part))
    result = StageBench(posts=len(raw), stage_cpu_s=clock.cpu, total_cpu_s=time.process_time() - cpu0,
                        mean_chars=sum(len(p.text) for p in raw) / max(1, len(raw)))
    result.repeats_per_post, result.with_repeats = _repeats(services.storage, org, len(raw))
    return result
