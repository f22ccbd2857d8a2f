"""`bench scale`: the scale-out path (PostgreSQL + NATS JetStream + N `factbridge worker`
processes) on loopback, with 1, 2, 4 ... workers.

For each worker count: a fresh schema on one embedded PostgreSQL server, a fresh stream
on one Debian nats-server; `factbridge init`, the sample fact-check library, then
`factbridge ingest` of the same generated posts (stored, ids queued), then N workers
started together with `--once` (each stops when no batch is left). Measured:
  posts/s        posts / wall time from the workers' start to the last one's exit
                 (model loading included: the honest figure for a short run)
  CPU-s / post   user + system CPU time of the worker processes per post: it stays flat
                 when workers do not wait on each other (no shared bottleneck); on a
                 2-core machine posts/s cannot grow past 2 workers, CPU-s per post can
                 show whether the extra workers only add waiting
  lock waits     sampled twice a second: sessions of this database waiting on a lock
                 (pg_stat_activity.wait_event_type = 'Lock') and ungranted pg_locks rows
  queue lag      batches waiting in the stream, sampled; the largest and the time the
                 last batch waited before a worker took it (all batches are published
                 before the workers start, so this is the time to drain)
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from factbridge.bench.feed import generated_posts

SAMPLE = Path(__file__).resolve().parent.parent / "data" / "sample" / "factchecks.jsonld"


@dataclass
class ScaleRun:
    workers: int
    posts: int
    wall_s: float = 0.0
    cpu_s: float = 0.0
    lock_waiting_max: int = 0
    lock_waiting_samples: int = 0
    ungranted_locks_max: int = 0
    samples: int = 0
    waiting_batches_max: int = 0
    drained_after_s: float = 0.0
    failed_workers: int = 0
    processed: int = 0
    failures: list[str] = field(default_factory=list)  # per failed worker: its exit status and the end of its log

    @property
    def rate(self) -> float:
        return self.posts / self.wall_s if self.wall_s else 0.0

    @property
    def cpu_per_post(self) -> float:
        return self.cpu_s / self.posts if self.posts else 0.0

    def as_dict(self) -> dict[str, Any]:
        return {
            "workers": self.workers, "posts": self.posts, "processed": self.processed, "wall_s": round(self.wall_s, 2),
            "posts_per_s": round(self.rate, 2), "cpu_s_per_post": round(self.cpu_per_post, 4), "cpu_s": round(self.cpu_s, 1),
            "lock_waiting_max": self.lock_waiting_max, "lock_waiting_share": round(self.lock_waiting_samples / max(1, self.samples), 4),
            "ungranted_locks_max": self.ungranted_locks_max, "waiting_batches_max": self.waiting_batches_max,
            "drained_after_s": round(self.drained_after_s, 2), "failed_workers": self.failed_workers, "failures": self.failures,
        }


@dataclass
class ScaleBench:
    runs: list[ScaleRun] = field(default_factory=list)
    cpus: int = os.cpu_count() or 1
    load: list[float] = field(default_factory=list)


def _cli(args: list[str], env: dict[str, str], check: bool = True) -> subprocess.CompletedProcess[str]:
    out = subprocess.run([sys.executable, "-m", "factbridge", *args], env=env, capture_output=True, text=True, timeout=3600)
    if check and out.returncode != 0:
        raise RuntimeError(f"factbridge {' '.join(args)} failed ({out.returncode}): {out.stderr[-2000:]}")
    return out


def _log_tail(path: Path, lines: int = 6) -> str:
    """The last lines of a worker's log (a traceback ends with its exception), or that it wrote none."""
    try:
        text = path.read_text(encoding="utf-8", errors="replace").strip()
    except OSError as exc:
        return f"(its log could not be read: {exc})"
    return " | ".join(text.splitlines()[-lines:]) if text else "(it wrote nothing to stderr)"


def _sample(run: ScaleRun, queue: Any, url: str, t0: float, stop: threading.Event) -> None:
    """Twice a second: lock waits of this database's sessions, ungranted locks, batches waiting."""
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        while not stop.is_set():
            waiting = conn.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND datname = current_database()"
            ).fetchone()
            ungranted = conn.execute("SELECT count(*) FROM pg_locks WHERE NOT granted").fetchone()
            pending = queue.pending()
            run.samples += 1
            w = int(waiting[0]) if waiting else 0
            run.lock_waiting_max = max(run.lock_waiting_max, w)
            run.lock_waiting_samples += w > 0
            run.ungranted_locks_max = max(run.ungranted_locks_max, int(ungranted[0]) if ungranted else 0)
            run.waiting_batches_max = max(run.waiting_batches_max, pending["waiting"])
            if pending["waiting"] == 0 and not run.drained_after_s:
                run.drained_after_s = time.perf_counter() - t0
            stop.wait(0.5)


def run_scale(
    worker_counts: list[int], n_posts: int, mix: str, batch_size: int, embedder: str, work_dir: Path,
    on_run: Any = None,
) -> ScaleBench:
    import psutil

    from factbridge.backends.queue.nats import NatsQueue
    from factbridge.testing.nats import NatsServer
    from factbridge.testing.postgres import EmbeddedPostgres, PostgresDatabaseFactory

    bench = ScaleBench(load=[round(os.getloadavg()[0], 2)])
    posts_file = work_dir / "posts.jsonl"
    with posts_file.open("w", encoding="utf-8") as handle:
        for post in generated_posts(n_posts, mix, seed=31):
            handle.write(post.model_dump_json(exclude_defaults=True) + "\n")
    (work_dir / "pg").mkdir(parents=True, exist_ok=True)
    pg = EmbeddedPostgres(work_dir / "pg").start()
    nats = NatsServer().start()
    factory = PostgresDatabaseFactory(pg)
    try:
        for k in worker_counts:
            url = factory.new_database()
            queue_url = f"{nats.url}?stream=BENCH{k}&subject=bench.k{k}&consumer=w{k}"
            env = {
                **os.environ, "FACTBRIDGE_STORAGE_URL": url, "FACTBRIDGE_QUEUE_URL": queue_url,
                "FACTBRIDGE_DATA_DIR": str(work_dir / f"data-{k}"), "FACTBRIDGE_EMBED_CACHE": "off",
                "FACTBRIDGE_EMBEDDER": embedder, "FACTBRIDGE_QUEUE_BATCH_SIZE": str(batch_size),
                # each worker gets its share of the cores: oversubscribed OpenMP threads only spin
                "FACTBRIDGE_EMBED_THREADS": str(max(1, bench.cpus // k)), "OMP_NUM_THREADS": str(max(1, bench.cpus // k)),
            }
            _cli(["init"], env)
            _cli(["factchecks", "import", str(SAMPLE)], env)
            _cli(["ingest", str(posts_file)], env)
            run = ScaleRun(workers=k, posts=n_posts)
            queue = NatsQueue(queue_url)
            stop = threading.Event()
            t0 = time.perf_counter()

            # each worker's log goes to a file (a pipe nobody reads would fill and stall it): a
            # failed worker's reason is reported with the run
            logs = [work_dir / f"worker-{k}-{i}.log" for i in range(k)]
            procs = []
            for i, log in enumerate(logs):
                with log.open("wb") as err:
                    procs.append(subprocess.Popen(
                        [sys.executable, "-m", "factbridge", "worker", "--once", "--fetch-timeout", "3", "--json", "--name", f"bench-{k}-{i}"],
                        env=env, stdout=subprocess.PIPE, stderr=err, text=True))
            sampler = threading.Thread(target=_sample, args=(run, queue, url, t0, stop), daemon=True)
            sampler.start()
            handles = [psutil.Process(proc.pid) for proc in procs]
            last = [0.0] * k
            while any(proc.poll() is None for proc in procs):
                for i, handle in enumerate(handles):
                    try:
                        times = handle.cpu_times()
                        last[i] = times.user + times.system + times.children_user + times.children_system
                    except psutil.Error:  # exited between poll and here: keep its last reading
                        pass
                time.sleep(0.2)
            for proc, log in zip(procs, logs, strict=True):
                out, _ = proc.communicate()
                if proc.returncode != 0:
                    run.failed_workers += 1
                    run.failures.append(f"{log.name}: exit {proc.returncode}: {_log_tail(log)}")
                    continue
                with contextlib.suppress(ValueError):
                    run.processed += int(json.loads(out[out.index("{"):]).get("posts", 0))
            cpu = sum(last)
            run.wall_s = time.perf_counter() - t0 - 3.0  # the last worker waits fetch_timeout for nothing before it stops
            run.cpu_s = cpu
            stop.set()
            sampler.join(timeout=5)
            queue.close()
            bench.runs.append(run)
            bench.load.append(round(os.getloadavg()[0], 2))
            if on_run:
                on_run(run)
    finally:
        factory.cleanup()
        nats.stop()
        pg.stop()
    return bench
