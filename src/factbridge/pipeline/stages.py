"""The stage contract and the runner.

A stage is an object with a `name`, a `version`, the names of the stages whose outputs it
reads (`needs`), the collections it writes (`writes`) and
`run(ctx, org, posts) -> StageSummary`. `ctx` is a narrow `StageContext` (storage,
settings, the embedder and the matcher built lazily, a clock, a logger), never the whole
composition root.

Every stage, built-in or third-party, is registered the same way: an entry point in the
`factbridge.stages` group whose value is a `Stage` object (the built-ins are declared in
pyproject.toml, mirrored in `factbridge.plugins.BUILTIN`). The runner orders them by
their declared needs (a deterministic topological order: among stages whose needs are
met, the name decides); an unknown need or a cycle is a clear `ConfigError`.

The runner records, per post and content version, which stages ran (the stage ledger,
`factbridge.pipeline.ledger`, written once per batch), and runs a stage only on the
posts that miss it: a batch delivered again after a crash finishes what is missing and
repeats nothing. A stage that needs an optional extra that is missing is skipped with a
warning, never silently, and recorded as skipped (so it is not retried on every sweep).
"""

from __future__ import annotations

import importlib
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Protocol, TypeAlias, runtime_checkable

from factbridge.errors import ConfigError, DependencyMissing
from factbridge.models import Post

if TYPE_CHECKING:
    from factbridge.backends.embedders.base import Embedder
    from factbridge.backends.storage.base import Storage
    from factbridge.pipeline.alerts import WebhookDispatcher as AlertDispatcher
    from factbridge.pipeline.centering import LanguageCentering as Centering
    from factbridge.pipeline.matching import Matcher
    from factbridge.settings import Settings

log = logging.getLogger(__name__)

GROUP = "factbridge.stages"

JSONValue: TypeAlias = "str | int | float | bool | None | list[JSONValue] | dict[str, JSONValue]"
StageSummary: TypeAlias = "dict[str, JSONValue]"


@runtime_checkable
class StageContext(Protocol):
    """What a stage may use. `factbridge.services.Services` provides it; so does
    `PipelineContext` (built from it), which is what the runner hands to stages."""

    @property
    def storage(self) -> Storage: ...
    @property
    def settings(self) -> Settings: ...
    @property
    def embedder(self) -> Embedder: ...
    @property
    def alert_dispatcher(self) -> AlertDispatcher | None: ...
    def matcher(self, org: str | None = None) -> Matcher: ...
    def centering(self, embedder: Embedder | None = None, wanted: bool | None = None) -> Centering | None: ...
    def now(self) -> datetime: ...


@runtime_checkable
class Stage(Protocol):
    name: str
    version: str
    needs: tuple[str, ...]
    writes: tuple[str, ...]

    def run(self, ctx: StageContext, org: str, posts: Sequence[Post]) -> StageSummary: ...


StageFunction: TypeAlias = Callable[[StageContext, str, Sequence[Post]], StageSummary]


@dataclass
class StageClock:
    """Seconds spent per stage by `run_stages` (wall clock and process CPU, all threads),
    for the benches; the ledger's reads and writes are counted under "ledger"."""

    wall: dict[str, float] = field(default_factory=dict)
    cpu: dict[str, float] = field(default_factory=dict)

    def add(self, name: str, wall0: float, cpu0: float) -> None:
        self.wall[name] = self.wall.get(name, 0.0) + time.perf_counter() - wall0
        self.cpu[name] = self.cpu.get(name, 0.0) + time.process_time() - cpu0


@dataclass(frozen=True)
class FunctionStage:
    """A stage made of a plain function (what the built-ins are)."""

    name: str
    version: str
    fn: StageFunction = field(repr=False, compare=False)
    needs: tuple[str, ...] = ()
    writes: tuple[str, ...] = ()
    doc: str = ""

    def run(self, ctx: StageContext, org: str, posts: Sequence[Post]) -> StageSummary:
        return self.fn(ctx, org, posts)


class PipelineContext:
    """The narrow context the runner gives stages: it reads what it offers from the
    services lazily (an embedder is only loaded by a stage that asks for it)."""

    def __init__(self, services: StageContext, clock: Callable[[], datetime] | None = None) -> None:
        self._services = services
        self._clock = clock or (lambda: datetime.now(UTC))
        self.log = logging.getLogger("factbridge.stages")

    @property
    def storage(self) -> Storage:
        return self._services.storage

    @property
    def settings(self) -> Settings:
        return self._services.settings

    @property
    def embedder(self) -> Embedder:
        return self._services.embedder

    @property
    def alert_dispatcher(self) -> AlertDispatcher | None:
        return self._services.alert_dispatcher

    def matcher(self, org: str | None = None) -> Matcher:
        return self._services.matcher(org)

    def centering(self, embedder: Embedder | None = None, wanted: bool | None = None) -> Centering | None:
        return self._services.centering(embedder, wanted)

    def now(self) -> datetime:
        return self._clock()


def stage_context(services: StageContext) -> PipelineContext:
    return services if isinstance(services, PipelineContext) else PipelineContext(services)


# -- registry ----------------------------------------------------------------------------


def stage_targets() -> dict[str, str]:
    """name -> 'module:attribute' of every registered stage (built-ins included)."""
    from factbridge.plugins import available

    return available(GROUP)


def _load(name: str, target: str) -> Stage:
    module, _, attr = target.partition(":")
    try:
        obj = getattr(importlib.import_module(module), attr)
    except (ImportError, AttributeError) as exc:
        raise ConfigError(f"stage '{name}' ({target}) cannot be loaded: {exc}") from exc
    for member in ("name", "version", "needs", "writes", "run"):
        if not hasattr(obj, member):
            raise ConfigError(f"stage '{name}' ({target}) is not a Stage: it has no '{member}'")
    if obj.name != name:
        raise ConfigError(f"stage registered as '{name}' ({target}) calls itself '{obj.name}'")
    if not obj.version:
        raise ConfigError(f"stage '{name}' ({target}) has no version")
    stage: Stage = obj
    return stage


def order_stages(stages: Sequence[Stage]) -> list[Stage]:
    """Topological order by `needs`: deterministic (ready stages by name), a cycle or an
    unknown need is a ConfigError that names them."""
    by_name: dict[str, Stage] = {}
    for stage in stages:
        if stage.name in by_name:
            raise ConfigError(f"two stages are named '{stage.name}'")
        by_name[stage.name] = stage
    for stage in stages:
        unknown = [n for n in stage.needs if n not in by_name]
        if unknown:
            raise ConfigError(f"stage '{stage.name}' needs unknown stage(s) {', '.join(unknown)} (have: {', '.join(sorted(by_name))})")
    done: list[Stage] = []
    placed: set[str] = set()
    remaining = dict(by_name)
    while remaining:
        ready = sorted(n for n, s in remaining.items() if all(d in placed for d in s.needs))
        if not ready:
            raise ConfigError(f"stages {', '.join(sorted(remaining))} need each other in a cycle: "
                              + "; ".join(f"{n} needs {', '.join(s.needs)}" for n, s in sorted(remaining.items())))
        name = ready[0]
        done.append(remaining.pop(name))
        placed.add(name)
    return done


def load_stages() -> list[Stage]:
    """Every registered stage, in the order the runner runs them."""
    return order_stages([_load(name, target) for name, target in sorted(stage_targets().items())])


# -- the runner --------------------------------------------------------------------------


def run_stages(services: StageContext, org: str, posts: Sequence[Post], skip: Sequence[str] = (),
               force: bool = False, stages: Sequence[Stage] | None = None, clock: StageClock | None = None,
               ahead: Sequence[Post] = ()) -> dict[str, StageSummary]:
    """Run every stage on the posts that have not had it (at its version, for their
    current content); `force` runs them all again. The stage ledger is written once per
    batch, after the last stage stored its outputs, with every stage that ran (and also
    when a stage raises, with those before it): a crash before that write repeats the
    batch's stages on these posts (they are idempotent) and never records a stage whose
    outputs were not stored. A stage in `skip` is recorded as skipped for these posts,
    so a later sweep does not run it behind the user's back.
    `clock` (benches) collects the time of each stage and of the ledger.

    `ahead`: the next batch's posts, already stored. As this batch's stages start, the
    texts the next batch will have to encode go to the encoder in the background
    (`pipeline.ingest.prefetch_post_embeddings`; not those of this batch), so that the next
    batch is encoded while this batch's stages run: they hold the interpreter, the encoder
    does not. (When this batch's own texts are still being encoded ahead, the background
    thread finishes them first, and this batch's embedding stage helps.)"""
    from factbridge.pipeline.ledger import Ledger, Status

    summary: dict[str, StageSummary] = {}
    if not posts:
        return summary
    ctx = stage_context(services)
    ledger = Ledger(ctx.storage)
    chosen = list(stages) if stages is not None else load_stages()
    known = {s.name for s in chosen}
    unknown = sorted(set(skip) - known)
    if unknown:
        raise ConfigError(f"cannot skip unknown stage(s) {', '.join(unknown)} (have: {', '.join(sorted(known))})")
    if ahead and "embedding" in known and "embedding" not in skip:
        _encode_ahead(ctx, org, ahead, clock, besides=posts)
    wall0, cpu0 = time.perf_counter(), time.process_time()
    entries = ledger.entries(org, posts)
    if clock is not None:
        clock.add("ledger", wall0, cpu0)
    noted: list[str] = []  # posts whose entry gained a stage since the last write
    try:
        for stage in chosen:
            todo = list(posts) if force else [p for p in posts if not entries[p.id].has(stage.name, stage.version)]
            if not todo:
                continue
            if stage.name in skip:
                noted += ledger.note(todo, stage, "skipped", ctx.now(), entries)
                summary[stage.name] = {"skipped": "not asked for"}
                continue
            status: Status
            wall0, cpu0 = time.perf_counter(), time.process_time()
            try:
                summary[stage.name] = stage.run(ctx, org, todo)
                status = "done"
            except DependencyMissing as exc:
                log.warning("stage %s skipped: %s", stage.name, exc)
                summary[stage.name] = {"skipped": str(exc)}
                status = "skipped"
            if clock is not None:
                clock.add(stage.name, wall0, cpu0)
            wall0, cpu0 = time.perf_counter(), time.process_time()
            noted += ledger.note(todo, stage, status, ctx.now(), entries)
            if clock is not None:
                clock.add("ledger", wall0, cpu0)
    except BaseException as failure:
        # the stages before the failing one stored their outputs: record them, so that the
        # batch delivered again starts at the failing stage (the failure is what is raised)
        try:
            ledger.save(org, entries, noted)
        except Exception as exc:  # noqa: BLE001 - those stages run again next time: idempotent
            log.warning("could not record the stages that ran before %s: %s: %s", type(failure).__name__, type(exc).__name__, exc)
        raise
    wall0, cpu0 = time.perf_counter(), time.process_time()
    ledger.save(org, entries, noted)  # one write per batch, after every stage stored its outputs
    if clock is not None:
        clock.add("ledger", wall0, cpu0)
    return summary


def _encode_ahead(ctx: StageContext, org: str, posts: Sequence[Post], clock: StageClock | None, besides: Sequence[Post]) -> None:
    from factbridge.pipeline.ingest import prefetch_post_embeddings

    wall0, cpu0 = time.perf_counter(), time.process_time()
    try:
        prefetch_post_embeddings(ctx.storage, ctx.embedder, org, posts, ctx.settings.embed_near_duplicate, besides=besides)
    except Exception as exc:  # noqa: BLE001 - only a head start: the next batch embeds what is missing itself
        log.warning("could not start encoding the next batch ahead: %s: %s", type(exc).__name__, exc)
    if clock is not None:
        clock.add("embedding", wall0, cpu0)


def stage_versions(stages: Sequence[Stage] | None = None) -> Mapping[str, str]:
    return {s.name: s.version for s in (stages if stages is not None else load_stages())}
