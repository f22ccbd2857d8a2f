import json
from pathlib import Path

from typer.testing import CliRunner

from factbridge.cli import app
from factbridge.pipeline.ingest import ingest_file

LANGS = ("vi", "km", "fr", "en")


def _write(path: Path, rows: list) -> Path:
    path.write_text("\n".join(r if isinstance(r, str) else json.dumps(r, ensure_ascii=False) for r in rows) + "\n", encoding="utf-8")
    return path


GOOD = [
    {"id": "a", "platform": "facebook", "author": "acct-1", "created_at": "2026-11-01T08:00:00Z", "text": "Vắc xin gây vô sinh ở phụ nữ", "likes": 10, "shares": "3"},
    {"post_id": "b", "content": "ស្ពានមិត្តភាពត្រូវបានបិទ", "timestamp": 1793000000, "engagement": {"likes": 5, "views": 100}},
    {"id": "c", "text": "Les antennes 5G propagent le virus https://example.org/x", "lang": "FR"},
]


def test_bad_rows_are_quarantined_with_line_and_field(storage, tmp_path: Path) -> None:
    path = _write(tmp_path / "posts.jsonl", [GOOD[0], "{not json", {"id": "d"}, GOOD[1], {"id": "e", "text": "x", "created_at": "yesterday-ish"}, {"id": "f", "text": "y", "likes": -1}, GOOD[2], ""])
    out = ingest_file(storage, "org", path, LANGS)
    assert out.report.inserted == 3
    got = [(q.line, q.field) for q in out.report.quarantined]
    assert got == [(2, None), (3, "text"), (5, "created_at"), (6, "likes")]
    assert all(q.source == str(path) for q in out.report.quarantined)
    assert "invalid JSON" in out.report.quarantined[0].reason
    stored = storage.list_quarantine("org")
    assert len(stored) == 4
    b = storage.get_post("org", "b")
    assert b.language == "km" and b.language_source == "detected" and b.engagement.views == 100
    c = storage.get_post("org", "c")
    assert c.language == "fr" and c.language_source == "given" and c.urls == ["https://example.org/x"]
    a = storage.get_post("org", "a")
    assert a.engagement.shares == 3 and a.tokens.split()[:3] == ["vac", "xin", "gay"]


def test_ingest_is_idempotent_and_updates_changed_posts(storage, tmp_path: Path) -> None:
    path = _write(tmp_path / "p.jsonl", GOOD)
    first = ingest_file(storage, "org", path, LANGS)
    second = ingest_file(storage, "org", path, LANGS)
    assert (first.report.inserted, second.report.inserted, second.report.unchanged) == (3, 0, 3)
    assert second.posts == []
    changed = [dict(GOOD[0], likes=99), GOOD[1], GOOD[2]]
    third = ingest_file(storage, "org", _write(tmp_path / "p.jsonl", changed), LANGS)
    assert (third.report.updated, third.report.unchanged) == (1, 2)
    assert storage.count_posts("org") == 3 and storage.count_posts("other") == 0


def test_csv_posts_and_extra_cells(storage, tmp_path: Path) -> None:
    path = tmp_path / "p.csv"
    path.write_text("id,text,likes,created_at\n1,Hello world from Hanoi,3,2026-11-02\n2,Too,many,cells,here\n3,,1,2026-11-02\n", encoding="utf-8")
    out = ingest_file(storage, "org", path, LANGS)
    assert out.report.inserted == 1
    assert [(q.line, q.field) for q in out.report.quarantined] == [(3, None), (4, "text")]


def test_duplicate_ids_in_one_file_are_quarantined(storage, tmp_path: Path) -> None:
    out = ingest_file(storage, "org", _write(tmp_path / "d.jsonl", [GOOD[0], GOOD[0]]), LANGS)
    assert out.report.inserted == 1 and "duplicate id" in out.report.quarantined[0].reason


def test_undecodable_line_is_quarantined_not_the_file(storage, tmp_path: Path) -> None:
    # a line that is not UTF-8 is set aside with its line; the rest of the file goes in
    path = tmp_path / "bin.jsonl"
    path.write_bytes(json.dumps(GOOD[0]).encode() + b"\n\xff\xfe\n" + json.dumps(GOOD[2]).encode() + b"\n")
    out = ingest_file(storage, "org", path, LANGS)
    assert out.report.inserted == 2
    assert [(q.line, q.reason[:12]) for q in out.report.quarantined] == [(2, "not UTF-8 te")]


def test_cli_ingest_reports_and_exit_codes(tmp_path: Path) -> None:
    path = _write(tmp_path / "p.jsonl", [*GOOD, "{bad"])
    runner = CliRunner()
    base = ["--data-dir", str(tmp_path / "d"), "--embedder", "hashing"]
    result = runner.invoke(app, [*base, "ingest", str(path), "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout[result.stdout.index("{"):])
    assert data["files"][0]["inserted"] == 3 and data["files"][0]["quarantined"][0]["line"] == 4
    again = runner.invoke(app, [*base, "ingest", str(path), "--json"])
    assert json.loads(again.stdout[again.stdout.index("{"):])["files"][0]["unchanged"] == 3
    missing = runner.invoke(app, [*base, "ingest", str(tmp_path / "nope.jsonl")])
    assert missing.exit_code != 0
