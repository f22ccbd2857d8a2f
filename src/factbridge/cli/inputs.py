"""`factbridge bench input`: reading and storing a posts file, with hostile rows in it.

Prints throughput, what was quarantined and how much peak memory the run added: the
figure that shows rows are bounded (a 50 MB post must cost no more than a short one).
"""

from __future__ import annotations

import json
import resource
import tempfile
import time
from pathlib import Path
from typing import Annotated

import typer

from factbridge.backends.connectors.reading import InputLimits
from factbridge.cli.app import _state, bench_app
from factbridge.console import console, esc


def _peak_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def write_bench_file(path: Path, posts: int, huge_mb: int, seed: int = 7) -> None:
    """`posts` ordinary posts (the synthetic bench words), then one post of `huge_mb` MB of
    text and a few hostile rows (deep nesting, 1e999, a lone surrogate, an object id)."""
    from factbridge.bench.synthetic_posts import synthetic_posts

    items, _ = synthetic_posts(posts, dim=8, seed=seed)
    with path.open("w", encoding="utf-8") as handle:
        for post in items:
            row = {"id": post.id, "author": post.author, "created_at": post.created_at.isoformat() if post.created_at else None, "text": post.text}
            handle.write(json.dumps(row, ensure_ascii=False) + "\n")
        if huge_mb:
            handle.write('{"id": "huge", "text": "')
            chunk = "v" * 1_000_000
            for _ in range(huge_mb):
                handle.write(chunk)
            handle.write('"}\n')
        handle.write('{"id": "deep", "text": "x", "extra": ' + "[" * 50_000 + "]" * 50_000 + "}\n")
        handle.write('{"id": "inf", "text": "x", "likes": 1e999}\n')
        handle.write('{"id": "surrogate", "text": "broken \\ud800"}\n')
        handle.write('{"id": {"an": "object"}, "text": "object id"}\n')


@bench_app.command("input")
def bench_ingest(
    ctx: typer.Context,
    file: Annotated[Path | None, typer.Option(help="Posts file to read (default: a generated one).")] = None,
    posts: Annotated[int, typer.Option(help="Ordinary posts in the generated file.")] = 5000,
    huge_mb: Annotated[int, typer.Option(help="Size of the one huge post in the generated file, MB (0: none).")] = 50,
) -> None:
    """Ingest speed and memory on a file with hostile rows (in-memory SQLite; no embedding)."""
    from factbridge.backends.storage.sqlite import SQLiteStorage
    from factbridge.pipeline.ingest import ingest_file

    services = _state(ctx).services()
    limits = InputLimits.from_settings(services.settings)
    with tempfile.TemporaryDirectory() as tmp:
        path = file or Path(tmp) / "bench-posts.jsonl"
        if file is None:
            write_bench_file(path, posts, huge_mb)
        size_mb = path.stat().st_size / 1e6
        storage = SQLiteStorage("sqlite:///:memory:")
        storage.migrate()
        try:
            # the language and Khmer models load on first use: warm them before measuring
            warm = Path(tmp) / "warm.jsonl"
            write_bench_file(warm, 20, 0, seed=1)
            ingest_file(storage, "warm", warm, services.languages, limits=limits)
            before = _peak_mib()
            started = time.perf_counter()
            outcome = ingest_file(storage, services.settings.org, path, services.languages, limits=limits)
            elapsed = time.perf_counter() - started
            grown = _peak_mib() - before
        finally:
            storage.close()
    report = outcome.report
    rows = report.inserted + report.updated + report.unchanged + len(report.quarantined)
    console.print(f"file: {esc(path.name)}, {size_mb:,.1f} MB, {rows:,} rows")
    console.print(f"stored {report.inserted:,} posts, quarantined {len(report.quarantined):,} rows in {elapsed:.2f} s: "
                  f"[bold]{rows / elapsed:,.0f} rows/s[/] (read, checked, normalised, stored; no embedding)")
    for q in report.quarantined[:8]:
        console.print(f"  quarantined line {q.line} field {esc(q.field or '-')}: {esc(q.reason[:100])}")
    console.print(f"peak memory grew by [bold]{grown:,.0f} MiB[/] during the ingest (peak {_peak_mib():,.0f} MiB for the process; "
                  f"limits: row {limits.max_row_bytes:,} bytes, text {limits.max_text_chars:,} characters, depth {limits.max_depth})")
