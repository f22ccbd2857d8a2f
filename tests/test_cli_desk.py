"""CLI after `make demo`: `queue` finds the demo data and fits 80 columns; re-running the
demo keeps its cases."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from rich.console import Console
from typer.testing import CliRunner

from factbridge.cli import app
from factbridge.cli.triage import queue_table
from factbridge.pipeline.triage import COMPONENTS

LONG = ("[bold]Chính phủ hỗ trợ 2 triệu đồng cho mỗi người dân có căn cước công dân gắn chip, đăng ký ngay tại đường link "
        "trước khi hết hạn vào cuối tuần này, chia sẻ cho người thân")


def _entry(i: int) -> tuple[str, dict[str, object]]:
    comps = {c: {"contribution": 0.05 * (k + 1), "evidence": {}} for k, c in enumerate(COMPONENTS)}
    comps["debunked"]["evidence"] = {"factcheck_id": "https://kiemchung.example.org/vi/2026/10/ho-tro-2-trieu-dong-cccd-lua-dao",
                                     "decision": "match", "rating": "Sai"}
    return f"post-{i:04d}", {"kind": "post", "language": "vi", "text": LONG, "priority": 0.9 - i / 100, "components": comps,
                              "gated": i % 5 == 0, "gate_reason": "clearly not a claim (greeting)"}


def test_queue_fits_80_columns_in_three_lines_per_row() -> None:
    entries = [_entry(i) for i in range(20)]
    out = Console(width=80, record=True, color_system=None)
    out.print(queue_table(entries, 479, COMPONENTS))
    text = out.export_text()
    lines = text.splitlines()
    assert max(len(line) for line in lines) <= 80
    assert len(lines) <= 20 * 3 + 6, len(lines)  # title, header, borders
    assert "[bold]" in text  # untrusted text printed as text, not markup
    assert "ho-tro-2-trieu-dong-cccd-lua-dao" in text


def test_queue_after_make_demo_finds_the_demo_data(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    posts = tmp_path / "posts.jsonl"
    posts.write_text(json.dumps({"id": "c", "text": "5G towers spread the coronavirus, share before they delete it", "language": "en"}) + "\n",
                     encoding="utf-8")
    runner = CliRunner()
    opts = ["--embedder", "hashing", "--embed-cache", "off"]
    made = runner.invoke(app, ["--data-dir", ".factbridge/demo", *opts, "ingest", str(posts)])  # what `make demo` leaves behind
    assert made.exit_code == 0, made.output
    found = runner.invoke(app, [*opts, "queue", "--json"])
    assert found.exit_code == 0, found.output
    assert "using the demo data in .factbridge/demo" in found.stderr
    assert [e["id"] for e in json.loads(found.stdout)] == ["c"]
    own = runner.invoke(app, ["--data-dir", ".factbridge", *opts, "queue", "--json"])  # an explicit folder is never replaced
    assert own.exit_code == 0 and json.loads(own.stdout) == [] and "demo data" not in own.stderr


def test_rerunning_the_demo_keeps_its_cases(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from factbridge.services import Services
    from factbridge.settings import load_settings

    monkeypatch.chdir(tmp_path)
    runner = CliRunner()
    opts = ["--embedder", "hashing", "--embed-cache", "off"]
    first = runner.invoke(app, [*opts, "demo"])
    assert first.exit_code == 0, first.output
    assert "demo data: .factbridge/demo" in first.stdout
    settings = load_settings(env={}, overrides={"data_dir": ".factbridge/demo", "embedder": "hashing", "embed_cache": "off"})
    with Services(settings) as services:
        services.storage.put_docs(settings.org, "cases", [("case-kept", {"id": "case-kept", "title": "kept", "status": "open"}, 1.0)])
    again = runner.invoke(app, [*opts, "demo"])
    assert again.exit_code == 0, again.output
    with Services(settings) as services:
        assert "case-kept" in services.storage.get_docs(settings.org, "cases", ["case-kept"])
        assert services.storage.count_posts(settings.org) > 0
