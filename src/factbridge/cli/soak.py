"""`factbridge bench soak`: minutes of mixed load on loopback while the worker is killed.

It starts, in a fresh folder: nats-server (JetStream) on 127.0.0.1, `factbridge serve` and
`factbridge worker` against one SQLite file, then keeps going for `--minutes`:

- `factbridge ingest` of a new file of synthetic posts every few seconds;
- API calls with a bearer token (queue, posts, one post, alerts, cases; opening cases);
- public reports through the form (CSRF token and cookie, as a browser sends them);
- `kill -9` of the worker at random moments, and a new worker started in its place.

At the end it lets the last worker finish, then prints: requests, errors (any failed
request other than the documented 409 and 429), posts in, posts fully processed (every
stage recorded in the stage ledger for their current content), and SQLite's
`PRAGMA integrity_check`. It exits 1 unless errors = 0, every post in is stored and fully
processed, and the database is intact.
"""

from __future__ import annotations

import json
import os
import random
import re
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from factbridge.cli.app import bench_app
from factbridge.console import console, err_console

ORG = "soak"
USER = "soak-editor"
ALLOWED = {409, 429}  # documented: version conflicts, rate limits
_CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


@dataclass
class SoakReport:
    seconds: float = 0.0
    requests: int = 0
    errors: int = 0
    allowed: int = 0  # 409/429 answers
    posts_in: int = 0
    posts_stored: int = 0
    posts_processed: int = 0
    worker_kills: int = 0
    ingests: int = 0
    reports: int = 0
    integrity: str = ""
    error_samples: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)  # the ingest thread counts too

    @property
    def ok(self) -> bool:
        return (self.errors == 0 and self.posts_stored == self.posts_in and self.posts_processed == self.posts_in
                and self.integrity == "ok")

    def error(self, what: str) -> None:
        with self.lock:
            self.errors += 1
            if len(self.error_samples) < 20:
                self.error_samples.append(what)

    def as_dict(self) -> dict[str, Any]:
        return {"seconds": round(self.seconds, 1), "requests": self.requests, "errors": self.errors, "allowed_409_429": self.allowed,
                "posts_in": self.posts_in, "posts_stored": self.posts_stored, "posts_fully_processed": self.posts_processed,
                "worker_kills": self.worker_kills, "ingest_runs": self.ingests, "public_reports": self.reports,
                "integrity_check": self.integrity, "ok": self.ok, "error_samples": self.error_samples}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "factbridge", *args]


class Soak:
    def __init__(self, folder: Path, minutes: float, seed: int, embedder: str, posts_per_ingest: int, kill_every_s: float) -> None:
        self.folder = folder
        self.deadline_s = minutes * 60.0
        self.rng = random.Random(seed)
        self.ingest_rng = random.Random(seed + 1)  # the ingest thread's own
        self.posts_per_ingest = posts_per_ingest
        self.kill_every_s = kill_every_s
        self.report = SoakReport()
        self.port = _free_port()
        self.db = folder / "soak.sqlite"
        self.env: dict[str, str] = {}
        self.embedder = embedder
        self.procs: list[subprocess.Popen[bytes]] = []
        self.worker: subprocess.Popen[bytes] | None = None
        self.token = ""
        self._ids = 0

    # -- set-up ----------------------------------------------------------------------
    def start(self, nats_url: str) -> None:
        from factbridge.cli.web import ensure_org
        from factbridge.demo import sample_dir
        from factbridge.pipeline.ingest import import_factcheck_files
        from factbridge.pipeline.matching import index_factchecks
        from factbridge.services import Services
        from factbridge.settings import load_settings
        from factbridge.web.app import accounts_for

        self.env = {
            "FACTBRIDGE_DATA_DIR": str(self.folder / "data"), "FACTBRIDGE_STORAGE_URL": f"sqlite:///{self.db}",
            "FACTBRIDGE_QUEUE_URL": nats_url, "FACTBRIDGE_ORG": ORG, "FACTBRIDGE_EMBEDDER": self.embedder,
            "FACTBRIDGE_EMBED_CACHE": "off" if self.embedder == "hashing" else str(self.folder / "emb.sqlite"),
            "FACTBRIDGE_MATCH_FUSION": "rrf", "FACTBRIDGE_QUEUE_ACK_WAIT_S": "8", "FACTBRIDGE_QUEUE_RETRY_DELAY_S": "1",
            "FACTBRIDGE_QUEUE_MAX_DELIVERIES": "20", "FACTBRIDGE_QUEUE_BATCH_SIZE": "16",
            "FACTBRIDGE_PUBLIC_RATE_LIMIT": "100000/60", "FACTBRIDGE_HOST": "127.0.0.1", "FACTBRIDGE_PORT": str(self.port),
            "FACTBRIDGE_LOG_LEVEL": "warning",
        }
        with Services(load_settings(env=self.env)) as services:
            import_factcheck_files(services.storage, ORG, sorted(sample_dir().glob("factchecks*")), services.languages)
            index_factchecks(services.storage, services.embedder, ORG)
            accounts = accounts_for(services)
            ensure_org(accounts, ORG, "Soak desk")
            accounts.add_user(USER, "soak-password-0123456789", ORG, "editor")
            self.token = accounts.create_token(USER, "soak")
        log = (self.folder / "serve.log").open("ab")
        self.procs.append(subprocess.Popen(_cli("serve"), env={**os.environ, **self.env}, stdout=log, stderr=log))
        self._start_worker()
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    return
            except OSError:
                time.sleep(0.2)
        raise RuntimeError(f"the server did not listen on 127.0.0.1:{self.port} within 120 s (see {self.folder / 'serve.log'})")

    def _start_worker(self) -> None:
        log = (self.folder / "worker.log").open("ab")
        self.worker = subprocess.Popen(_cli("worker", "--fetch-timeout", "0.5"), env={**os.environ, **self.env}, stdout=log, stderr=log)

    def kill_worker(self) -> None:
        if self.worker is not None and self.worker.poll() is None:
            self.worker.send_signal(signal.SIGKILL)
            self.worker.wait(timeout=30)
            self.report.worker_kills += 1
        self._start_worker()

    def stop(self) -> None:
        for proc in [*self.procs, *([self.worker] if self.worker else [])]:
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(timeout=10)

    # -- load ------------------------------------------------------------------------
    def ingest(self) -> None:
        from factbridge.bench.synthetic_posts import synthetic_posts

        n = self.posts_per_ingest
        posts, _ = synthetic_posts(n, dim=8, seed=self.ingest_rng.randrange(1 << 30))
        path = self.folder / f"posts-{self.report.ingests:04d}.jsonl"
        with path.open("w", encoding="utf-8") as f:
            for p in posts:
                self._ids += 1
                f.write(json.dumps({"id": f"soak-{self._ids}", "text": p.text, "author": f"acct-{self.ingest_rng.randrange(40)}", "platform": "facebook",
                                    "created_at": p.created_at.isoformat() if p.created_at else None}, ensure_ascii=False) + "\n")
        done = subprocess.run(_cli("ingest", str(path), "--json"), env={**os.environ, **self.env}, capture_output=True, text=True, timeout=300)
        with self.report.lock:
            self.report.ingests += 1
        if done.returncode != 0:
            self.report.error(f"ingest {path.name} exit {done.returncode}: {done.stderr.strip()[-300:]}")
            return
        with self.report.lock:
            self.report.posts_in += n

    def api_calls(self, client: Any) -> None:
        headers = {"Authorization": f"Bearer {self.token}"}
        paths = ["/api/v1/queue?limit=20", "/api/v1/posts?limit=20", "/api/v1/alerts", "/api/v1/cases", "/api/v1/narratives", "/api/v1/me"]
        for path in self.rng.sample(paths, 3):
            self._request(client, "GET", path, headers=headers)
        posts = self._request(client, "GET", "/api/v1/posts?limit=5", headers=headers)
        items = posts.json().get("items", []) if posts is not None and posts.status_code == 200 else []
        if items:
            post_id = items[self.rng.randrange(len(items))]["id"]
            self._request(client, "GET", f"/api/v1/posts/{post_id}/matches", headers=headers)
            if self.rng.random() < 0.3:
                self._request(client, "POST", "/api/v1/cases", headers=headers,
                              json={"claim": "", "source_kind": "post", "source_id": post_id})

    def public_report(self, client: Any) -> None:
        form = self._request(client, "GET", f"/public/{ORG}/report")
        if form is None or form.status_code != 200:
            return
        match = _CSRF.search(form.text)
        if not match:
            self.report.error("report form without a CSRF token")
            return
        text = self.rng.choice(["5G towers spread the virus, share now", "Nước máy bị nhiễm độc, đừng uống",
                                "ក្រសួងសុខាភិបាល ព្រមានអំពីវ៉ាក់សាំងក្លែងក្លាយ", "Les élections ont été truquées"])
        sent = self._request(client, "POST", f"/public/{ORG}/report", data={"csrf_token": match.group(1), "text": f"{text} #{self.report.reports}"})
        if sent is not None and sent.status_code == 200:
            with self.report.lock:
                self.report.reports += 1
                self.report.posts_in += 1

    def _request(self, client: Any, method: str, path: str, **kwargs: Any) -> Any:
        import httpx

        self.report.requests += 1
        try:
            response = client.request(method, path, **kwargs)
        except httpx.HTTPError as exc:
            self.report.error(f"{method} {path}: {type(exc).__name__}: {exc}")
            return None
        if response.status_code in ALLOWED:
            self.report.allowed += 1
        elif response.status_code >= 400:
            self.report.error(f"{method} {path}: HTTP {response.status_code} {response.text[:200]}")
        return response

    # -- the run ---------------------------------------------------------------------
    def _ingest_loop(self, started: float) -> None:
        # its own thread: an ingest takes seconds, and the API and reports keep coming meanwhile
        while time.monotonic() - started < self.deadline_s:
            self.ingest()
            time.sleep(self.ingest_rng.uniform(1.0, 4.0))

    def run(self, on_tick: Any = None) -> SoakReport:
        import httpx

        started = time.monotonic()
        next_kill = started + self.rng.uniform(0.3, 1.0) * self.kill_every_s
        ingests = threading.Thread(target=self._ingest_loop, args=(started,), name="soak-ingest", daemon=True)
        ingests.start()
        with httpx.Client(base_url=f"http://127.0.0.1:{self.port}", timeout=60.0) as client:
            while time.monotonic() - started < self.deadline_s:
                self.api_calls(client)
                self.public_report(client)
                if time.monotonic() >= next_kill:
                    self.kill_worker()
                    next_kill = time.monotonic() + self.rng.uniform(0.5, 1.5) * self.kill_every_s
                if on_tick:
                    on_tick(time.monotonic() - started)
                time.sleep(self.rng.uniform(0.05, 0.3))
        ingests.join(timeout=600)
        self.report.seconds = time.monotonic() - started
        return self.report

    def finish(self, wait_s: float) -> SoakReport:
        """Let the (last) worker finish the backlog, then count and check."""
        from factbridge.pipeline.process import backlog
        from factbridge.services import Services
        from factbridge.settings import load_settings

        deadline = time.monotonic() + wait_s
        with Services(load_settings(env={**self.env, "FACTBRIDGE_QUEUE_URL": "local://"})) as services:
            while True:
                b = backlog(services, ORG)
                if b.complete == b.posts or time.monotonic() > deadline:
                    break
                if self.worker is None or self.worker.poll() is not None:
                    self._start_worker()
                time.sleep(2.0)
            self.report.posts_stored = b.posts
            self.report.posts_processed = b.complete
            if b.complete < b.posts:
                missing = {k: v for k, v in b.missing.items() if v}
                err_console.print(f"[yellow]after {wait_s:.0f} s: posts missing stages: {escape(str(missing))}[/]")
        self.stop()
        with sqlite3.connect(f"file:{self.db}?mode=ro", uri=True) as conn:
            rows = conn.execute("PRAGMA integrity_check").fetchall()
        self.report.integrity = "; ".join(str(r[0]) for r in rows)
        return self.report


@bench_app.command("soak")
def soak(
    minutes: Annotated[float, typer.Option(help="How long the mixed load runs.")] = 10.0,
    seed: Annotated[int, typer.Option(help="Random seed (load mix and kill times).")] = 7,
    embedder: Annotated[str, typer.Option(help="Embedder for server and workers (hashing: no model; e5: the bundled one).")] = "hashing",
    posts_per_ingest: Annotated[int, typer.Option(help="Posts in each ingested file.")] = 40,
    kill_every: Annotated[float, typer.Option(help="Mean seconds between kill -9 of the worker.")] = 20.0,
    drain_wait: Annotated[float, typer.Option(help="Seconds the last worker gets to finish after the load stops.")] = 180.0,
    folder: Annotated[Path | None, typer.Option(help="Keep the database and logs here (default: a temporary folder, removed).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the figures as JSON.")] = False,
) -> None:
    """Mixed ingest + API + public reports on 127.0.0.1 with random kill -9 of the worker; prints
    requests, errors, posts in, posts fully processed and the SQLite integrity check."""
    from factbridge.console import progress_bar
    from factbridge.testing.nats import NatsServer

    tmp = None
    if folder is None:
        tmp = tempfile.TemporaryDirectory(prefix="factbridge-soak-")
        folder = Path(tmp.name)
    folder.mkdir(parents=True, exist_ok=True)
    nats = NatsServer().start()
    run = Soak(folder, minutes, seed, embedder, posts_per_ingest, kill_every)
    try:
        run.start(nats.url)
        with progress_bar("soak (seconds)", int(minutes * 60)) as advance:
            done = [0]

            def tick(elapsed: float) -> None:
                step = int(elapsed) - done[0]
                if step > 0:
                    advance(step)
                    done[0] += step
            run.run(tick)
        report = run.finish(drain_wait)
    finally:
        run.stop()
        nats.stop()
        if tmp is not None:
            tmp.cleanup()
    figures = report.as_dict()
    if as_json:
        console.print_json(json.dumps(figures))
    else:
        table = Table(title=f"Soak: {report.seconds / 60:.1f} min on 127.0.0.1 ({escape(embedder)} embedder)")
        table.add_column("figure")
        table.add_column("value", justify="right")
        for key in ("requests", "errors", "allowed_409_429", "posts_in", "posts_stored", "posts_fully_processed",
                    "worker_kills", "ingest_runs", "public_reports", "integrity_check"):
            table.add_row(key, escape(str(figures[key])))
        console.print(table)
        for sample in report.error_samples:
            err_console.print(f"[red]error[/] {escape(sample)}")
    if not report.ok:
        raise typer.Exit(1)
