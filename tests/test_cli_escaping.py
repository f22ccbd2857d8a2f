"""Untrusted text in CLI output: Rich markup, OSC 8 links and control characters from posts,
fact-checks, narratives, alerts, URLs, account names and error messages are shown as plain
text; nothing crashes and nothing styles the terminal (issue 10, item 10)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from factbridge.backends.storage.sqlite import SQLiteStorage
from factbridge.cli import app
from factbridge.console import clean, esc

MARKUP = "[/] [bold red]PWNED[/bold red] [link=https://evil.example]click[/link] :skull:"
OSC8 = "\x1b]8;;https://evil.example\x1b\\here\x1b]8;;\x1b\\ \x1b[31mred\x1b[0m \x07"
HOSTILE = f"Vaccines cause infertility {MARKUP} {OSC8} [/"


def _run(base: list[str], *args: str) -> str:
    result = CliRunner().invoke(app, [*base, *args])
    assert result.exit_code == 0, (args, result.output, result.exception)
    out = result.output
    assert "\x1b" not in out and "\x07" not in out, f"control characters reached the terminal from {args}"
    assert "💀" not in out, f"emoji code expanded in {args}"
    return out


@pytest.fixture
def wide(monkeypatch: pytest.MonkeyPatch) -> None:
    # wide enough that table cells do not wrap: the hostile strings stay on one line
    from factbridge import console as module

    for con in (module.console, module.err_console):
        monkeypatch.setattr(con, "_width", 1000)


@pytest.fixture
def hostile_dir(tmp_path: Path, wide: None) -> list[str]:
    posts = tmp_path / "posts.jsonl"
    rows = [
        {"id": f"p[/]{n}", "author": "[bold]acct[/bold]", "created_at": f"2026-11-01T0{n}:00:00Z",
         "text": f"{HOSTILE} number {n}", "urls": [f"http://bit.ly/[/]{n}"]}
        for n in range(4)
    ]
    posts.write_text("\n".join(json.dumps(r) for r in rows) + '\n{"id": "[/]bad", "text": ""}\n', encoding="utf-8")
    factchecks = tmp_path / "fc.csv"
    factchecks.write_text(f'id,claim,rating,publisher\nfc[/]1,"{HOSTILE}",[red]False[/red],[/]Pub\n', encoding="utf-8")
    base = ["--data-dir", str(tmp_path / "d"), "--embedder", "hashing"]
    _run(base, "factchecks", "import", str(factchecks))
    _run(base, "ingest", str(posts))
    store = SQLiteStorage(f"sqlite:///{tmp_path / 'd' / 'factbridge.db'}")
    try:
        evidence = {"burst_start": "2026-11-01T00:00:00", "burst_end": "2026-11-01T04:00:00", "posts_in_burst": 4, "baseline_per_bin": 0.1}
        alert = {"id": "alert[/]1", "kind": "burst", "narrative_id": "n[/]x", "evidence": evidence, "summary": HOSTILE}
        store.put_docs("default", "alerts", [("alert[/]1", alert, 1.0)])
    finally:
        store.close()
    return base


def test_every_listing_shows_hostile_text_literally(hostile_dir: list[str]) -> None:
    base = hostile_dir
    shown = clean(HOSTILE)  # what a reader sees: the markup as written, the controls gone
    for args in (["queue"], ["narratives"], ["linkrisk", "posts"], ["match", HOSTILE], ["alerts"]):
        out = _run(base, *args)
        # the queue fits 80 columns: its entry line is cut after the first characters of the markup
        assert MARKUP[:12 if args == ["queue"] else 30] in out, args
    first = json.loads(_run(base, "narratives", "--json"))[0]["id"]
    assert shown[:60] in _run(base, "narratives", "show", first)
    _run(base, "narratives", "topics")
    _run(base, "factchecks", "list")
    assert "alert[/]1" in _run(base, "alerts") and "n[/]x" in _run(base, "alerts")
    assert "p[/]0" in _run(base, "linkrisk", "posts")
    match = _run(base, "match", HOSTILE)
    assert "[red]False[/red]" in match and "[/]Pub" in match
    quarantine = _run(base, "quarantine")
    assert "missing or empty text" in quarantine
    listing = _run(base, "factchecks", "list")
    assert "[/]Pub" in listing and "[red]False[/red]" in listing and "fc[/]1" in listing


def test_error_messages_from_main_are_escaped(tmp_path: Path) -> None:
    missing = tmp_path / "[bold red]x[/]" / "\x1b]8;;https://evil\x1b\\nope.jsonl"
    done = subprocess.run(
        [sys.executable, "-m", "factbridge", "--data-dir", str(tmp_path / "d"), "--embedder", "hashing", "ingest", str(missing)],
        capture_output=True, text=True, timeout=120, env={"PATH": "/usr/bin:/bin", "COLUMNS": "200", "FORCE_COLOR": "1"},
    )
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr and "/[bold red]x[/]/]8;;https:/evil\\nope.jsonl: no such file" in done.stderr
    assert done.stderr.count("\x1b") == 2  # the colour of "error:" and its reset, nothing from the path


def test_helpers() -> None:
    assert clean("a\x1b[31mb\x9bc\u202ed\te\nf") == "a[31mbcd\te\nf"
    assert esc("[/] [b]x[/b]") == "\\[/] \\[b]x\\[/b]"
