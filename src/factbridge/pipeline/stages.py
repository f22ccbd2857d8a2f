"""Post-processing stages run on every batch of newly ingested posts, in order.

Each stage is a function `(services, org, posts) -> dict` (a short summary for
the CLI). Built-in stages are listed here exactly as a third-party stage would
be registered through the `factbridge.stages` entry-point group; a stage that
needs an optional extra that is missing is skipped with a warning, never silently.
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Callable, Sequence
from importlib.metadata import entry_points
from typing import Any

from factbridge.errors import DependencyMissing
from factbridge.models import Post

log = logging.getLogger(__name__)

Stage = Callable[[Any, str, Sequence[Post]], dict[str, Any]]

# Order matters: later stages read what earlier ones stored.
BUILTIN_STAGES: list[tuple[str, str]] = [
    ("matching", "factbridge.pipeline.ingest:matching_stage"),
    ("linkrisk", "factbridge.linkrisk.stage:linkrisk_stage"),
    ("narratives", "factbridge.pipeline.narratives:narratives_stage"),
    ("bursts", "factbridge.pipeline.bursts:bursts_stage"),
    # reads the narrative memberships stored just before
    ("coordination", "factbridge.pipeline.coordination:coordination_stage"),
    ("checkworthiness", "factbridge.pipeline.checkworthiness:checkworthiness_stage"),
    # triage reads what every other stage stored: keep it last.
    ("triage", "factbridge.pipeline.triage:triage_stage"),
]


# Stages that read what every other stage stored run after plugin stages too.
RUN_LAST = ("triage",)


def load_stages() -> list[tuple[str, Stage]]:
    targets = list(BUILTIN_STAGES)
    known = {name for name, _ in targets}
    targets += [(ep.name, ep.value) for ep in entry_points(group="factbridge.stages") if ep.name not in known]
    targets = [t for t in targets if t[0] not in RUN_LAST] + [t for t in targets if t[0] in RUN_LAST]
    stages = []
    for name, target in targets:
        module, _, attr = target.partition(":")
        stages.append((name, getattr(importlib.import_module(module), attr)))
    return stages


def run_stages(services: Any, org: str, posts: Sequence[Post], skip: Sequence[str] = ()) -> dict[str, dict[str, Any]]:
    summary: dict[str, dict[str, Any]] = {}
    if not posts:
        return summary
    for name, stage in load_stages():
        if name in skip:
            continue
        try:
            summary[name] = stage(services, org, posts)
        except DependencyMissing as exc:
            log.warning("stage %s skipped: %s", name, exc)
            summary[name] = {"skipped": str(exc)}
    return summary
