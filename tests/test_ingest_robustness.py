"""Hostile and careless input files: every bad row is quarantined with file, line, field and
reason, the rest of the file goes in, and memory stays bounded (issue 10, items 6 and 7)."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

from typer.testing import CliRunner

from factbridge.backends.connectors.files import read_posts
from factbridge.backends.connectors.reading import InputLimits
from factbridge.cli import app
from factbridge.models import Post, Quarantined
from factbridge.pipeline.ingest import import_factcheck_files, ingest_file

LANGS = ("vi", "km", "fr", "en")


def _post(pid: str, text: str = "Vaccines cause infertility, a viral post says") -> str:
    return json.dumps({"id": pid, "text": text})


def _quarantined(items: list[Post | Quarantined]) -> list[tuple[int | None, str | None, str]]:
    return [(q.line, q.field, q.reason) for q in items if isinstance(q, Quarantined)]


def test_hostile_json_rows_are_quarantined_and_the_rest_goes_in(storage, tmp_path: Path) -> None:
    lines = [
        _post("a"),
        '{"id": "deep", "text": "x", "extra": ' + "[" * 100_000 + "]" * 100_000 + "}",
        '{"id": "nest", "text": "x", "extra": ' + "[" * 30 + "]" * 30 + "}",
        '{"id": "inf", "text": "x", "likes": 1e999}',
        '{"id": "surrogate", "text": "broken \\ud800 text"}',
        _post("huge", "x" * 2_000_000),
        '{"id": {"nested": 1}, "text": "object id"}',
        '{"id": [1, 2], "text": "list id"}',
        '{"id": true, "text": "boolean id"}',
        '{"id": "big", "text": "x", "shares": "1e999"}',
        _post("b"),
        _post("long", "y" * 150_000),
        _post(7),  # type: ignore[arg-type]
    ]
    path = tmp_path / "hostile.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    out = ingest_file(storage, "org", path, LANGS)
    assert sorted(storage.get_posts("org", ["a", "b", "7"])) == ["7", "a", "b"]
    assert out.report.inserted == 3
    got = {q.line: (q.field, q.reason) for q in out.report.quarantined}
    assert sorted(got) == [2, 3, 4, 5, 6, 7, 8, 9, 10, 12]
    assert "nested deeper" in got[2][1] and "nested deeper" in got[3][1]
    assert got[4] == ("likes", "number out of range (inf)")
    assert got[5][0] == "text" and "lone surrogate U+D800" in got[5][1]
    assert "row longer than 1,000,000 bytes" in got[6][1]
    assert got[7] == ("id", "an id must be a string or an integer, not an object")
    assert got[8] == ("id", "an id must be a string or an integer, not a list")
    assert got[9] == ("id", "an id must be a string or an integer, not a boolean")
    assert got[10][0] == "shares" and "not a count" in got[10][1]
    assert got[12][0] == "text" and "150,000 characters, more than 100,000" in got[12][1]
    assert all(q.source == str(path) for q in out.report.quarantined)
    assert len(storage.list_quarantine("org")) == 10  # stored with the posts, in the same transaction


def test_limits_come_from_settings(storage, tmp_path: Path) -> None:
    path = tmp_path / "p.jsonl"
    path.write_text(_post("a", "short text here") + "\n" + _post("b", "z" * 500) + "\n", encoding="utf-8")
    out = ingest_file(storage, "org", path, LANGS, limits=InputLimits(max_row_bytes=400, max_text_chars=100))
    assert out.report.inserted == 1 and [q.line for q in out.report.quarantined] == [2]


def test_duplicate_post_ids_name_both_lines(tmp_path: Path) -> None:
    path = tmp_path / "d.jsonl"
    path.write_text("\n".join([_post("a"), _post("b"), _post("a", "a second, different text")]) + "\n", encoding="utf-8")
    items = list(read_posts(path))
    assert [p.id for p in items if isinstance(p, Post)] == ["a", "b"]
    assert _quarantined(items) == [(3, "id", "duplicate id 'a' in the same file (first on line 1)")]


def test_csv_huge_field_and_unterminated_quote_do_not_swallow_rows(storage, tmp_path: Path) -> None:
    path = tmp_path / "posts.csv"
    rows = [
        "id,text,likes",
        "1,First post about the bridge,3",
        "2," + "x" * 11_000_000 + ",1",  # an 11 MB field
        "3,Third post about vaccines,1",
        '4,"This quote never closes,2',
        "5,Fifth post still arrives,1",
        '6,"A real field with a line break',
        'inside it, closed here",1',
        "7,Seventh post,1",
    ]
    path.write_text("\n".join(rows) + "\n", encoding="utf-8")
    out = ingest_file(storage, "org", path, LANGS)
    assert sorted(storage.get_posts("org", [str(n) for n in range(1, 8)])) == ["1", "3", "5", "6", "7"]
    assert storage.get_post("org", "6").text == "A real field with a line break\ninside it, closed here"
    got = {q.line: q.reason for q in out.report.quarantined}
    assert sorted(got) == [3, 5]
    assert "longer than 1,000,000 bytes" in got[3]
    assert got[5].startswith("unterminated quote")


def test_csv_unterminated_quote_in_the_last_column_at_the_end(storage, tmp_path: Path) -> None:
    path = tmp_path / "tail.csv"
    path.write_text('id,likes,text\n1,2,"never closed\n2,3,still a row\n3,4,and another\n', encoding="utf-8")
    out = ingest_file(storage, "org", path, LANGS)
    assert sorted(storage.get_posts("org", ["1", "2", "3"])) == ["2", "3"]
    assert [(q.line, q.reason[:19]) for q in out.report.quarantined] == [(2, "unterminated quote:")]


def test_factcheck_import_quarantines_duplicates_bad_ids_and_hostile_rows(storage, tmp_path: Path) -> None:
    jsonl = tmp_path / "vclaims.jsonl"
    rows = [
        {"vclaim_id": "v1", "vclaim": "The moon is made of cheese", "title": "Moon"},
        {"vclaim_id": "v2", "vclaim": "5G spreads the virus", "title": "5G"},
        {"vclaim_id": "v1", "vclaim": "A different claim under the same id", "title": "Other"},
        {"vclaim_id": {"x": 1}, "vclaim": "Object id", "title": "x"},
        {"vclaim_id": ["a"], "vclaim": "List id", "title": "x"},
    ]
    jsonl.write_text(
        "\n".join(json.dumps(r) for r in rows)
        + '\n{"vclaim_id": "v3", "vclaim": "bad \\udc00", "title": "t"}\n{"vclaim_id": "v4", "vclaim": "x", "rating": 1e999}\n'
        + '{"vclaim_id": "v5", "vclaim": ' + "[" * 50_000 + "]" * 50_000 + "}\n",
        encoding="utf-8",
    )
    report, changed = import_factcheck_files(storage, "org", [jsonl], LANGS)
    assert sorted(changed) == ["v1", "v2"]
    assert storage.get_factcheck("org", "v1").claim == "The moon is made of cheese"  # the first one is kept
    got = {q.line: (q.field, q.reason) for q in report.quarantined}
    assert sorted(got) == [3, 4, 5, 6, 7, 8]
    assert got[3][0] == "id" and got[3][1].startswith(f"duplicate id 'v1' in this import (first read at {jsonl}:1)")
    assert got[4] == ("vclaim_id", "an id must be a string or an integer, not an object")
    assert got[5] == ("vclaim_id", "an id must be a string or an integer, not a list")
    assert "lone surrogate" in got[6][1] and "out of range" in got[7][1] and "nested deeper" in got[8][1]

    # the same id in a second file of the same import, and a ClaimReview whose url is an object
    csv_file = tmp_path / "more.csv"
    csv_file.write_text('id,claim,rating\nv2,Again 5G,False\nv9,"Unclosed quote,False\nv10,Fine claim,False\n', encoding="utf-8")
    review = tmp_path / "review.json"
    review.write_text(json.dumps({"@type": "ClaimReview", "claimReviewed": "x", "url": {"a": 1}}), encoding="utf-8")
    report, changed = import_factcheck_files(storage, "org", [jsonl, csv_file, review], LANGS)
    got2 = [(Path(q.source).name, q.line, q.field, q.reason) for q in report.quarantined[6:]]
    assert got2 == [
        ("more.csv", 2, "id", f"duplicate id 'v2' in this import (first read at {jsonl}:2); the first one is kept"),
        ("more.csv", 3, None, "unterminated quote: the quoted field opened here never closes"),
        ("review.json", None, "url", "'url' must be a string, not dict"),
    ]
    assert "v10" in changed and "v9" not in changed
    assert storage.get_factcheck("org", "v2").claim == "5G spreads the virus"


def test_cli_ingest_of_a_hostile_file_exits_zero(tmp_path: Path) -> None:
    path = tmp_path / "h.jsonl"
    path.write_text("\n".join([_post("a"), '{"id": "n", "text": "x", "likes": 1e999}', "[" * 10_000, _post("b")]) + "\n", encoding="utf-8")
    result = CliRunner().invoke(app, ["--data-dir", str(tmp_path / "d"), "--embedder", "hashing", "ingest", str(path), "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout[result.stdout.index("{"):])
    assert data["files"][0]["inserted"] == 2 and [q["line"] for q in data["files"][0]["quarantined"]] == [2, 3]


MEMORY_PROBE = textwrap.dedent(
    """
    import resource, sys
    from factbridge.backends.storage.sqlite import SQLiteStorage
    from factbridge.pipeline.ingest import ingest_file, import_factcheck_files
    storage = SQLiteStorage("sqlite:///:memory:")
    storage.migrate()
    ingest_file(storage, "warm", sys.argv[3], ("en",))  # the language models load on first use
    import_factcheck_files(storage, "warm", [sys.argv[4]], ("en",))
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    out = ingest_file(storage, "org", sys.argv[1], ("en",))
    report, _ = import_factcheck_files(storage, "org", [sys.argv[2]], ("en",))
    after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(out.report.inserted, len(out.report.quarantined), report.inserted, len(report.quarantined), (after - before) // 1024)
    """
)


def test_a_huge_row_costs_bounded_memory(tmp_path: Path) -> None:
    # 20 MB keeps the test quick; held whole (as bytes and text) it alone would add 40 MB
    posts = tmp_path / "big.jsonl"
    factchecks = tmp_path / "big_fc.csv"
    big = "v" * 20_000_000
    with posts.open("w", encoding="utf-8") as handle:
        handle.write(_post("a") + "\n")
        handle.write(json.dumps({"id": "huge", "text": big}) + "\n")
        handle.write(_post("b") + "\n")
    with factchecks.open("w", encoding="utf-8") as handle:
        handle.write("id,claim\nf1,A claim\n")
        handle.write(f"f2,{big}\n")
        handle.write("f3,Another claim\n")
    del big
    warm = tmp_path / "warm.jsonl"
    warm.write_text(_post("w") + "\n", encoding="utf-8")
    warm_fc = tmp_path / "warm.csv"
    warm_fc.write_text("id,claim\nw1,A claim\nw2,Another claim\n", encoding="utf-8")
    args = [str(posts), str(factchecks), str(warm), str(warm_fc)]
    done = subprocess.run([sys.executable, "-c", MEMORY_PROBE, *args], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    inserted, quarantined, fc_inserted, fc_quarantined, grown_mib = map(int, done.stdout.split())
    assert (inserted, quarantined, fc_inserted, fc_quarantined) == (2, 1, 2, 1)
    assert grown_mib < 15, f"peak memory grew by {grown_mib} MiB reading a 20 MB row"


def test_bench_ingest_prints_its_figures(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["--data-dir", str(tmp_path / "d"), "--embedder", "hashing", "bench", "input", "--posts", "30", "--huge-mb", "2"])
    assert result.exit_code == 0, result.output
    out = " ".join(result.output.split())
    assert "stored 30 posts, quarantined 5 rows" in out and "rows/s" in out and "peak memory grew by" in out
    assert "row longer than 1,000,000 bytes" in out and "lone surrogate" in out


def test_storage_refuses_unencodable_text_and_writes_nothing(storage) -> None:
    import pytest

    from factbridge.errors import InputError

    with pytest.raises(InputError, match="lone surrogate U\\+D800"):
        storage.upsert_posts("org", [Post(id="ok", text="fine"), Post(id="bad", text="broken \ud800")])
    assert storage.count_posts("org") == 0


def test_a_csv_field_above_the_csv_module_default_is_read(storage, tmp_path: Path) -> None:
    path = tmp_path / "long.csv"
    path.write_text("id,text,note\n1,Short text,Z" + "z" * 150_000 + "\n2,Second,x\n", encoding="utf-8")
    # csv's own limit is 131,072 characters by default; the row limits decide instead
    out = ingest_file(storage, "org", path, LANGS, limits=InputLimits(max_row_bytes=600_000, max_text_chars=200_000))
    assert out.report.inserted == 2 and not out.report.quarantined
    assert storage.get_post("org", "1").raw["note"].startswith("Zzz")
