"""The stage contract: every built-in stage passes the conformance suite; the runner orders
stages by declared needs, refuses cycles and unknown needs, and records each post's stages
in the ledger so that a second run repeats nothing."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import pytest

from factbridge.demo import sample_dir
from factbridge.errors import ConfigError
from factbridge.models import Post
from factbridge.pipeline.ingest import import_factcheck_files, read_file
from factbridge.pipeline.ledger import COLLECTION as LEDGER
from factbridge.pipeline.ledger import Ledger
from factbridge.pipeline.matching import index_factchecks
from factbridge.pipeline.stages import (
    FunctionStage,
    StageContext,
    StageSummary,
    load_stages,
    order_stages,
    run_stages,
    stage_versions,
)
from factbridge.plugins import BUILTIN
from factbridge.services import Services
from factbridge.testing.stage_conformance import check_stage

ORG = "conformance"
BUILTIN_STAGES = sorted(BUILTIN["factbridge.stages"])


def _seed(services: Services, org: str = ORG) -> list[Post]:
    sample = sample_dir()
    import_factcheck_files(services.storage, org, sorted(sample.glob("factchecks*")), services.languages)
    index_factchecks(services.storage, services.embedder, org)
    posts: list[Post] = []
    for path in sorted(sample.glob("posts*")):
        posts.extend(read_file(path, services.languages)[0])
    services.storage.upsert_posts(org, posts)
    return posts


@pytest.mark.parametrize("name", BUILTIN_STAGES)
def test_builtin_stage_conforms(name: str, hashing_services: Services) -> None:
    posts = _seed(hashing_services)
    (stage,) = [s for s in load_stages() if s.name == name]
    summary = check_stage(stage, hashing_services, posts, ORG)
    assert isinstance(summary, dict)


def _noop(name: str, needs: tuple[str, ...] = ()) -> FunctionStage:
    def run(ctx: StageContext, org: str, posts: Sequence[Post]) -> StageSummary:
        return {"posts": len(posts)}
    return FunctionStage(name, f"{name}-1", run, needs=needs, writes=(name,))


def test_order_follows_needs_deterministically() -> None:
    stages = [_noop("z"), _noop("b", ("z",)), _noop("a", ("b", "z")), _noop("c")]
    assert [s.name for s in order_stages(stages)] == ["c", "z", "b", "a"]
    assert [s.name for s in order_stages(list(reversed(stages)))] == ["c", "z", "b", "a"]
    names = [s.name for s in load_stages()]
    for stage in load_stages():  # every built-in comes after what it needs
        assert all(names.index(n) < names.index(stage.name) for n in stage.needs), stage.name
    assert names[0] == "embedding" and names[-1] == "triage"


def test_cycle_and_unknown_need_are_clear_errors() -> None:
    with pytest.raises(ConfigError, match="cycle.*a needs b.*b needs a"):
        order_stages([_noop("a", ("b",)), _noop("b", ("a",))])
    with pytest.raises(ConfigError, match="'a' needs unknown stage.*nope"):
        order_stages([_noop("a", ("nope",))])


def test_builtins_are_entry_points_like_plugins() -> None:
    from importlib.metadata import entry_points

    declared = {ep.name: ep.value for ep in entry_points(group="factbridge.stages")}
    assert declared == BUILTIN["factbridge.stages"]


def test_runner_records_the_ledger_and_repeats_nothing(hashing_services: Services) -> None:
    posts = _seed(hashing_services)
    first = run_stages(hashing_services, ORG, posts)
    assert set(first) == set(BUILTIN_STAGES)
    json.dumps(first)
    versions = stage_versions()
    entries = Ledger(hashing_services.storage).entries(ORG, posts)
    assert all(not e.missing(versions) for e in entries.values())
    assert hashing_services.storage.count_docs(ORG, LEDGER) == len(posts)
    assert run_stages(hashing_services, ORG, posts) == {}  # everything ran: nothing to do
    # an edited post has had no stage for its new content
    edited = posts[0].model_copy(update={"text": posts[0].text + " (edited)"})
    hashing_services.storage.upsert_posts(ORG, [edited])
    again = run_stages(hashing_services, ORG, [edited, *posts[1:]])
    assert set(again) == set(BUILTIN_STAGES) and again["checkworthiness"]["scored"] == 1


def test_triage_does_not_score_checkworthiness_itself(hashing_services: Services) -> None:
    posts = _seed(hashing_services)
    summary = run_stages(hashing_services, ORG, posts, skip=("checkworthiness",))
    assert summary["checkworthiness"] == {"skipped": "not asked for"}
    assert hashing_services.storage.count_docs(ORG, "checkworthiness") == 0  # triage did not score them
    entry = hashing_services.storage.get_docs(ORG, "queue", [posts[0].id])[posts[0].id]
    assert entry["decided_by"]["checkworthiness"] == "missing"
    # skipped is recorded: a sweep does not run it behind the user's back
    assert all(not e.missing(stage_versions()) for e in Ledger(hashing_services.storage).entries(ORG, posts).values())


def test_skip_of_unknown_stage_is_refused(hashing_services: Services, tmp_path: Path) -> None:
    posts = _seed(hashing_services)
    with pytest.raises(ConfigError, match="unknown stage"):
        run_stages(hashing_services, ORG, posts, skip=("nope",))


def test_worker_runs_ready_batches_together_and_acks_each(hashing_services: Services) -> None:
    from factbridge.pipeline.work import Worker, publish_post_ids

    posts = _seed(hashing_services)
    published = publish_post_ids(hashing_services, ORG, [p.id for p in posts], batch_size=1)
    assert published["batches"] == len(posts) > 4
    report = Worker(hashing_services, merge=8, fetch_timeout_s=0.0).run(once=True)
    assert sorted(o.batch_id for o in report.outcomes) == sorted(published["batch_ids"])
    assert all(o.status == "done" and o.attempt == 1 for o in report.outcomes)
    assert sum(1 for o in report.outcomes if o.stages) == -(-len(posts) // 8)  # one stage run per merged group
    assert hashing_services.queue.pending() == {"waiting": 0, "in_flight": 0}
    versions = stage_versions()
    assert all(not e.missing(versions) for e in Ledger(hashing_services.storage).entries(ORG, posts).values())
