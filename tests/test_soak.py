"""`factbridge bench soak` for ~20 s: mixed ingest, API calls and public reports on loopback,
the worker killed with SIGKILL and restarted; nothing fails, nothing is lost or half-processed."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from factbridge.testing.nats import find_nats_server


def test_soak_twenty_seconds_loses_nothing(tmp_path: object) -> None:
    if find_nats_server() is None:
        pytest.skip("nats-server not installed (apt-get install nats-server)")
    done = subprocess.run(
        [sys.executable, "-m", "factbridge", "bench", "soak", "--minutes", "0.34", "--kill-every", "6", "--posts-per-ingest", "30",
         "--drain-wait", "120", "--json"],
        capture_output=True, text=True, timeout=400,
    )
    figures = json.loads(done.stdout[done.stdout.index("{"):])
    assert done.returncode == 0, (figures, done.stderr[-2000:])
    assert figures["errors"] == 0, figures["error_samples"]
    assert figures["worker_kills"] >= 1 and figures["ingest_runs"] >= 1 and figures["public_reports"] >= 1
    assert figures["requests"] > 20
    assert figures["posts_in"] > 0
    assert figures["posts_stored"] == figures["posts_in"] == figures["posts_fully_processed"]
    assert figures["integrity_check"] == "ok"
