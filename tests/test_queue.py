"""Work queue: the conformance suite on both backends, and scale-out processing with a
real nats-server (ingest publishes; `factbridge worker` processes share the durable
consumer; failures are recorded, never dropped). The hashing embedder keeps it fast."""

from __future__ import annotations

import itertools
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from factbridge.backends.queue.base import open_queue, queue_scheme
from factbridge.backends.queue.local import LocalQueue
from factbridge.cli import app
from factbridge.errors import ConfigError
from factbridge.pipeline.records import QueueFailure
from factbridge.pipeline.work import (
    FAILURES,
    WorkBatch,
    Worker,
    list_failures,
    make_batches,
    publish_posts,
    retry_failures,
)
from factbridge.services import Services
from factbridge.settings import load_settings
from factbridge.testing.queue_conformance import parametrize_queue_checks

SAMPLE = Path(__file__).resolve().parent.parent / "src" / "factbridge" / "data" / "sample"
_streams = itertools.count()


def _stream_url(server: Any, **params: str) -> str:
    n = next(_streams)
    query = {"stream": f"T{os.getpid()}_{n}", "subject": f"fbtest.{os.getpid()}.{n}", "consumer": "workers", **params}
    return server.url + "?" + "&".join(f"{k}={v}" for k, v in query.items())


class LocalFactory:
    def __init__(self) -> None:
        self.queue: LocalQueue | None = None

    def __call__(self, ack_wait_s: float = 1.0, max_deliveries: int = 3) -> LocalQueue:
        if self.queue is None:
            self.queue = LocalQueue(ack_wait_s=ack_wait_s, max_deliveries=max_deliveries)
        return self.queue


class NatsFactory:
    """Each call is a new connection (a new worker) to the same stream and consumer."""

    def __init__(self, server: Any) -> None:
        self.url = _stream_url(server)
        self.opened: list[Any] = []

    def __call__(self, ack_wait_s: float = 1.0, max_deliveries: int = 3) -> Any:
        queue = open_queue(self.url, ack_wait_s=ack_wait_s, max_deliveries=max_deliveries)
        self.opened.append(queue)
        return queue

    def cleanup(self) -> None:
        for queue in self.opened:
            queue.close()


@parametrize_queue_checks()
def test_local_queue_conformance(check: Any) -> None:
    check(LocalFactory())


@pytest.mark.nats
@parametrize_queue_checks()
def test_nats_queue_conformance(check: Any, nats_server: Any) -> None:
    factory = NatsFactory(nats_server)
    try:
        check(factory)
    finally:
        factory.cleanup()


def test_queue_url_chooses_the_backend() -> None:
    assert [queue_scheme(u) for u in ("", "local", "local://", "nats://127.0.0.1:4222")] == ["local", "local", "local", "nats"]
    assert isinstance(open_queue(""), LocalQueue)
    with pytest.raises(ConfigError, match="queue_url"):
        queue_scheme("127.0.0.1:4222")
    with pytest.raises(ConfigError, match="backend named 'kafka'"):
        open_queue("kafka://x")
    with pytest.raises(ConfigError, match="unknown option"):
        open_queue("nats://127.0.0.1:4222?streem=X")
    with pytest.raises(ConfigError, match="max_deliveries"):
        open_queue("local://", max_deliveries=0)


def test_batches_split_and_validate() -> None:
    batches = make_batches("desk", [f"p{i}" for i in range(10)] + ["p0"], 4, skip=["matching"])
    assert [len(b.post_ids) for b in batches] == [4, 4, 2]
    assert WorkBatch.from_body(batches[0].to_body()) == batches[0]
    with pytest.raises(Exception, match="post_ids"):
        WorkBatch.from_body({**batches[0].to_body(), "post_ids": []})


def test_local_queue_keeps_ingest_in_process(tmp_path: Path) -> None:
    runner = CliRunner()
    base = ["--data-dir", str(tmp_path), "--embedder", "hashing", "--embed-cache", "off"]
    result = runner.invoke(app, [*base, "ingest", str(SAMPLE / "posts.jsonl"), "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout[result.stdout.index("{"):])
    assert "published" not in data and {"triage", "checkworthiness"} <= set(data["stages"])
    worker = runner.invoke(app, [*base, "worker", "--once"])
    assert worker.exit_code != 0 and "shared queue" in str(worker.exception)


# -- scale-out with a real nats-server -----------------------------------------------------


def _env(tmp_path: Path, queue_url: str, **extra: str) -> dict[str, str]:
    env = {
        "FACTBRIDGE_DATA_DIR": str(tmp_path / "data"),
        "FACTBRIDGE_STORAGE_URL": f"sqlite:///{tmp_path / 'fb.db'}",
        "FACTBRIDGE_EMBEDDER": "hashing",
        "FACTBRIDGE_EMBED_CACHE": "off",
        "FACTBRIDGE_MATCH_FUSION": "rrf",
        "FACTBRIDGE_QUEUE_URL": queue_url,
        "FACTBRIDGE_QUEUE_BATCH_SIZE": "8",
        "FACTBRIDGE_QUEUE_ACK_WAIT_S": "30",
        "FACTBRIDGE_QUEUE_RETRY_DELAY_S": "0.05",
        "FACTBRIDGE_QUEUE_WORKER_MERGE": "1",  # one batch per fetch: these tests follow batches between workers
    }
    env.update(extra)
    return env


def _services(env: dict[str, str]) -> Services:
    return Services(load_settings(env=env))


def _worker_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "factbridge", "worker", *args]


@pytest.mark.nats
def test_ingest_publishes_and_two_workers_process_each_batch_once(tmp_path: Path, nats_server: Any) -> None:
    # small batches: enough of them that the second worker joins before the first is done
    env = _env(tmp_path, _stream_url(nats_server), FACTBRIDGE_QUEUE_BATCH_SIZE="4")
    runner = CliRunner()
    imported = runner.invoke(app, ["factchecks", "import", str(SAMPLE / "factchecks.jsonld")], env=env)
    assert imported.exit_code == 0, imported.output
    result = runner.invoke(app, ["ingest", str(SAMPLE / "posts.jsonl"), "--json"], env=env)
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout[result.stdout.index("{"):])
    published = data["published"]
    assert data["stages"] == {} and published["batches"] >= 4
    with _services(env) as services:
        post_ids = [p.id for p in services.storage.iter_posts("default")]
        assert published["posts"] == len(post_ids)
        assert services.storage.count_docs("default", "queue") == 0, "ingest must not run the stages itself"

    # two worker processes share the durable consumer
    procs = [subprocess.Popen(_worker_cmd("--once", "--json", "--name", f"w{i}", "--fetch-timeout", "3"),
                              env={**os.environ, **env}, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for i in (1, 2)]
    reports, logs = [], []
    for proc in procs:
        out, err = proc.communicate(timeout=90)
        assert proc.returncode == 0, err
        reports.append(json.loads(out[out.index("{"):]))
        logs.append(err)
    runs = [b["id"] for r in reports for b in r["batches"]]
    not_done_once = [b for r in reports for b in r["batches"] if not (b["status"] == "done" and b["attempt"] == 1)]
    assert not not_done_once, "; ".join(f"{b['id']} attempt {b['attempt']}: {b['status']} {b.get('error') or ''}" for b in not_done_once) \
        + "\n" + "\n".join(f"worker {n + 1}'s log:\n{err[-6000:]}" for n, err in enumerate(logs))  # the failed attempt's traceback
    assert sorted(runs) == sorted(published["batch_ids"]), "every batch processed, none twice"
    assert all(r["done"] > 0 for r in reports), f"both workers took work: {[r['done'] for r in reports]}"

    with _services(env) as services:
        assert services.queue.pending() == {"waiting": 0, "in_flight": 0}
        storage = services.storage
        for collection in ("queue", "checkworthiness"):
            assert set(storage.get_docs("default", collection, post_ids)) == set(post_ids), collection
        assert services.storage.count_docs("default", FAILURES) == 0
        # re-ingesting the same file changes nothing and queues nothing
        again = runner.invoke(app, ["ingest", str(SAMPLE / "posts.jsonl"), "--json"], env=env)
        assert "published" not in json.loads(again.stdout[again.stdout.index("{"):])
        # a redelivered batch changes nothing: running the same batch twice leaves the same documents
        # (compared after one run on the complete store: a batch processed while other workers were
        # still adding posts saw fewer repeats, so its velocity may legitimately rise afterwards)
        again_posts = list(storage.get_posts("default", post_ids[:4]).values())
        snapshots = []
        for _ in range(2):
            publish_posts(services, "default", again_posts)
            report = Worker(services, fetch_timeout_s=2.0).run(once=True)
            assert report.count("done") == 1
            snapshots.append({c: storage.get_docs("default", c, post_ids) for c in ("queue", "checkworthiness")})
        for collection in snapshots[0]:
            for pid in post_ids:
                old, new = dict(snapshots[0][collection][pid]), dict(snapshots[1][collection][pid])
                for volatile in ("scored_at", "updated_at", "computed_at"):
                    old.pop(volatile, None)
                    new.pop(volatile, None)
                assert old == new, (collection, pid)


@pytest.fixture
def nats_services(tmp_path: Path, nats_server: Any) -> Iterator[tuple[dict[str, str], Services]]:
    env = _env(tmp_path, _stream_url(nats_server), FACTBRIDGE_QUEUE_ACK_WAIT_S="1", FACTBRIDGE_QUEUE_MAX_DELIVERIES="3")
    services = _services(env)
    yield env, services
    services.close()


def _ingest_sample(services: Services, n: int) -> list[Any]:
    from factbridge.pipeline.ingest import ingest_file

    posts = ingest_file(services.storage, "default", SAMPLE / "posts.jsonl", services.languages).posts[:n]
    assert len(posts) == n
    return posts


@pytest.mark.nats
def test_batch_of_a_dead_worker_goes_to_another(nats_services: tuple[dict[str, str], Services]) -> None:
    env, services = nats_services
    posts = _ingest_sample(services, 5)
    published = publish_posts(services, "default", posts)
    dying = open_queue(services.settings.queue_url, ack_wait_s=1.0, max_deliveries=3)
    taken = dying.fetch(1, 5.0)
    assert [d.body["id"] for d in taken] == published["batch_ids"]
    dying.close()  # the worker dies holding the batch, without ack

    report = Worker(services, fetch_timeout_s=4.0).run(max_batches=1, once=True)
    [outcome] = report.outcomes
    assert (outcome.batch_id, outcome.attempt, outcome.status) == (published["batch_ids"][0], 2, "done")
    ids = [p.id for p in posts]
    assert set(services.storage.get_docs("default", "queue", ids)) == set(ids)
    assert services.queue.pending() == {"waiting": 0, "in_flight": 0}


@pytest.mark.nats
def test_failing_batch_is_recorded_after_max_deliveries(nats_services: tuple[dict[str, str], Services], tmp_path: Path) -> None:
    env, services = nats_services
    posts = _ingest_sample(services, 3)
    published = publish_posts(services, "default", posts)
    # a misconfigured worker: same queue, another (empty) database — the batch fails every time
    wrong = _services({**env, "FACTBRIDGE_STORAGE_URL": f"sqlite:///{tmp_path / 'other.db'}"})
    try:
        report = Worker(wrong, fetch_timeout_s=4.0).run(max_batches=3, once=True)
        assert [o.status for o in report.outcomes] == ["retry", "retry", "failed"]
        assert [o.attempt for o in report.outcomes] == [1, 2, 3]
        assert wrong.queue.fetch(1, 1.5) == [], "a failed batch leaves the queue"
        [failure] = list_failures(wrong, "default")
        assert failure.id == published["batch_ids"][0] and failure.attempts == 3
        assert "NotFound" in failure.error and "not in this worker's storage" in failure.error
        assert len(failure.errors) == 3 and failure.post_ids == [p.id for p in posts]

        listed = CliRunner().invoke(app, ["batches", "failed", "--json"], env={**env, "FACTBRIDGE_STORAGE_URL": wrong.settings.storage_url})
        assert listed.exit_code == 0 and published["batch_ids"][0] in listed.stdout
        table = CliRunner().invoke(app, ["batches", "failed"], env={**env, "FACTBRIDGE_STORAGE_URL": wrong.settings.storage_url, "COLUMNS": "300"})
        assert table.exit_code == 0 and "Failed batches (1)" in table.stdout and "NotFound" in table.stdout

        # after the fix (the right database), `batches retry` publishes it again and it succeeds
        [again] = retry_failures(wrong, "default")
        assert list_failures(wrong, "default") == []
        [record] = list_failures(wrong, "default", include_resolved=True)
        assert (record.status, record.retried_as) == ("retried", again)
        for batch_id, doc in wrong.storage.list_docs("default", FAILURES):  # every stored document round-trips
            assert QueueFailure.from_doc(batch_id, doc).to_doc() == doc
    finally:
        wrong.close()
    report = Worker(services, fetch_timeout_s=4.0).run(max_batches=1, once=True)
    assert [(o.batch_id, o.status) for o in report.outcomes] == [(again, "done")]


@pytest.mark.nats
def test_batch_whose_holders_all_died_is_recorded(nats_services: tuple[dict[str, str], Services]) -> None:
    env, services = nats_services
    publish_posts(services, "default", _ingest_sample(services, 2))
    for _ in range(3):  # max_deliveries holders, each dies without a word
        holder = open_queue(services.settings.queue_url, ack_wait_s=1.0, max_deliveries=3)
        assert len(holder.fetch(1, 5.0)) == 1
        holder.close()
    report = Worker(services, fetch_timeout_s=4.0).run(max_batches=1, once=True)
    [outcome] = report.outcomes
    assert (outcome.status, outcome.attempt) == ("failed", 4)
    [failure] = list_failures(services, "default")
    assert "not acknowledged after 3 deliveries" in failure.error


@pytest.mark.nats
def test_worker_stops_gracefully_on_sigterm(tmp_path: Path, nats_server: Any) -> None:
    env = _env(tmp_path, _stream_url(nats_server), FACTBRIDGE_QUEUE_BATCH_SIZE="2")
    with _services(env) as services:
        total = publish_posts(services, "default", _ingest_sample(services, 20))["batches"]
    proc = subprocess.Popen(_worker_cmd("--json", "--fetch-timeout", "0.5"), env={**os.environ, **env},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        assert proc.stderr is not None
        line = proc.stderr.readline()
        while not line.startswith("done") and line and time.monotonic() < deadline:
            line = proc.stderr.readline()
        assert line.startswith("done"), line
        proc.send_signal(signal.SIGTERM)  # mid-run: the current batch finishes, no new one starts
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)
    assert proc.returncode == 0, err
    report = json.loads(out[out.index("{"):])
    assert "SIGTERM" in err and all(b["status"] == "done" for b in report["batches"])
    assert 1 <= report["done"] < total, (report["done"], total)
    with _services(env) as services:
        # the batches it had taken ahead (queue_lookahead) were handed back: the server
        # counts them in flight until they are delivered again, at once
        pending = services.queue.pending()
        assert pending["waiting"] + pending["in_flight"] == total - report["done"], pending
        rest = Worker(services, fetch_timeout_s=2.0).run(once=True)
        assert [o.status for o in rest.outcomes] == ["done"] * (total - report["done"])
        assert services.queue.pending() == {"waiting": 0, "in_flight": 0}


@pytest.mark.nats
def test_queue_status_and_requeue_commands(nats_services: tuple[dict[str, str], Services]) -> None:
    env, services = nats_services
    posts = _ingest_sample(services, 6)
    runner = CliRunner()
    requeued = runner.invoke(app, ["batches", "requeue", posts[0].id, posts[1].id], env=env)
    assert requeued.exit_code == 0 and "queued 2 posts in 1 batches" in requeued.stdout
    assert runner.invoke(app, ["batches", "requeue", "no-such-post"], env=env).exit_code != 0
    everything = runner.invoke(app, ["batches", "requeue", "--all"], env=env)
    stored = services.storage.count_posts("default")
    assert everything.exit_code == 0 and f"queued {stored} posts in {-(-stored // 8)} batches" in everything.stdout
    status = runner.invoke(app, ["batches", "status", "--json"], env=env)
    assert json.loads(status.stdout) == {"waiting": 1 + -(-stored // 8), "in_flight": 0, "failed": 0}
    report = Worker(services, fetch_timeout_s=2.0).run(once=True)
    assert report.count("done") == 1 + -(-stored // 8)
    ids = [p.id for p in services.storage.iter_posts("default")]
    assert set(services.storage.get_docs("default", "queue", ids)) == set(ids)


def test_ingest_refuses_to_store_when_the_queue_is_unreachable(tmp_path: Path) -> None:
    env = _env(tmp_path, "nats://127.0.0.1:9?stream=NOPE")
    result = CliRunner().invoke(app, ["ingest", str(SAMPLE / "posts.jsonl")], env=env)
    assert result.exit_code != 0 and "cannot reach NATS" in str(result.exception)
    with _services({**env, "FACTBRIDGE_QUEUE_URL": "local://"}) as services:
        assert services.storage.count_posts("default") == 0, "nothing stored that could not be queued"
