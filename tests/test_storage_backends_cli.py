"""The same CLI run gives the same results on SQLite and on PostgreSQL; entry points
match the built-in registry."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from factbridge.backends.storage import open_storage
from factbridge.cli import app
from factbridge.plugins import BUILTIN

REPO = Path(__file__).resolve().parent.parent
SAMPLE = REPO / "src" / "factbridge" / "data" / "sample"


def test_entry_points_equal_builtin_registry() -> None:
    declared = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["entry-points"]
    assert declared == BUILTIN, "pyproject.toml entry points and factbridge.plugins.BUILTIN must stay identical"


def _run(args: list[str], storage_url: str, data_dir: Path) -> str:
    result = CliRunner().invoke(
        app,
        ["--storage-url", storage_url, "--data-dir", str(data_dir), "--embedder", "hashing", "--embed-cache", "off", *args],
        env={"FACTBRIDGE_MATCH_FUSION": "rrf"},
    )
    assert result.exit_code == 0, f"factbridge {' '.join(args)} failed:\n{result.output}\n{result.exception!r}"
    return result.output


def _json_output(output: str) -> object:
    # the progress bar may share the captured output; the JSON document starts on its own line
    start = min(i for i in (output.find("\n{"), output.find("\n[")) if i >= 0) if not output.startswith(("{", "[")) else -1
    return json.loads(output[start + 1 :])


def _pipeline(storage_url: str, data_dir: Path) -> dict[str, object]:
    _run(["init"], storage_url, data_dir)
    _run(["factchecks", "import", str(SAMPLE / "factchecks.jsonld")], storage_url, data_dir)
    ingest: dict[str, Any] = _json_output(_run(["ingest", "--json", str(SAMPLE / "posts.jsonl")], storage_url, data_dir))  # type: ignore[assignment]
    matched = _json_output(_run(["match", "--json", "Vắc xin Covid-19 gây vô sinh"], storage_url, data_dir))
    store = open_storage(storage_url)
    try:
        posts = sorted(p.id for p in store.iter_posts("default"))
        stored_matches = {p: [c.model_dump(mode="json") for c in store.matches_for_post("default", p)] for p in posts}
        counts = (store.count_factchecks("default"), store.count_posts("default"), len(store.list_quarantine("default")))
    finally:
        store.close()
    for summary in ingest.get("stages", {}).values():
        for timing in ("seconds", "posts_per_s"):  # wall-clock figures differ from run to run
            summary.pop(timing, None)
    for f in ingest["files"]:
        f["source"] = Path(f["source"]).name
        for q in f["quarantined"]:
            q["source"] = Path(q["source"]).name
    return {"ingest": ingest, "match": matched, "stored_matches": stored_matches, "counts": counts}


@pytest.mark.postgres
def test_cli_gives_the_same_results_on_postgres_and_sqlite(postgres_url: str, tmp_path: Path) -> None:
    on_sqlite = _pipeline(f"sqlite:///{tmp_path / 'cli.db'}", tmp_path / "sqlite")
    on_postgres = _pipeline(postgres_url, tmp_path / "pg")
    assert on_sqlite["counts"][0] > 0 and on_sqlite["counts"][1] > 0  # type: ignore[index]
    assert any(on_sqlite["stored_matches"].values()), "the sample should produce matches"  # type: ignore[attr-defined]
    assert on_postgres == on_sqlite


@pytest.mark.postgres
def test_open_storage_and_init_on_postgres(postgres_url: str, tmp_path: Path) -> None:
    from factbridge.backends.storage.base import SCHEMA_VERSION
    from factbridge.backends.storage.postgres import PostgresStorage

    store = open_storage(postgres_url)
    try:
        assert isinstance(store, PostgresStorage) and store.schema_version() == SCHEMA_VERSION
    finally:
        store.close()
    out = " ".join(_run(["init"], postgres_url, tmp_path).split())
    assert f"schema v{SCHEMA_VERSION}" in out and "post vectors by periods of 168 h (0 so far" in out
    alias = "postgres" + postgres_url.removeprefix("postgresql")
    store = open_storage(alias)
    try:
        assert store.schema_version() == SCHEMA_VERSION
    finally:
        store.close()


def test_missing_psycopg_gives_a_friendly_error(monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    from factbridge.backends.storage import postgres
    from factbridge.errors import DependencyMissing

    monkeypatch.setitem(sys.modules, "psycopg", None)  # makes `import psycopg` fail
    with pytest.raises(DependencyMissing, match=r"pip install 'factbridge\[postgres\]'"):
        postgres.PostgresStorage("postgresql://localhost/x")
