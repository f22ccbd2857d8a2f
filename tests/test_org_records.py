"""Organisations as typed records (issue 11): `factbridge orgs add` writes through the audit log,
every stored document reads back through `OrgRecord` unchanged (so `audit verify` still holds),
and the workers' list of organisations (`known_orgs`) reads them through `Orgs`."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from factbridge.cli import app
from factbridge.pipeline.process import known_orgs
from factbridge.services import Services
from factbridge.settings import load_settings
from factbridge.workflow.records import ORGS, SYSTEM_ORG, OrgRecord, Orgs


def test_orgs_added_by_the_cli_round_trip_and_are_known_to_workers(tmp_path: Path) -> None:
    base = ["--data-dir", str(tmp_path), "--storage-url", f"sqlite:///{tmp_path / 'fb.db'}", "--embedder", "hashing"]
    runner = CliRunner()
    for org, name in (("desk-vn", "Kiểm chứng VN"), ("desk-kh", "")):
        result = runner.invoke(app, [*base, "orgs", "add", org, *(["--name", name] if name else [])])
        assert result.exit_code == 0, result.output
    assert runner.invoke(app, [*base, "orgs", "add", "desk-vn"]).exit_code != 0  # exists already
    listed = runner.invoke(app, [*base, "orgs", "list"])
    assert listed.exit_code == 0 and "Kiểm chứng VN" in listed.stdout and "desk-kh" in listed.stdout
    audit = runner.invoke(app, [*base, "audit", "verify", "--all"])
    assert audit.exit_code == 0, audit.output

    services = Services(load_settings(env={}, overrides={"data_dir": str(tmp_path), "storage_url": f"sqlite:///{tmp_path / 'fb.db'}",
                                                          "embedder": "hashing"}))
    try:
        stored = services.storage.list_docs(SYSTEM_ORG, ORGS, limit=100, order="id")
        assert [i for i, _ in stored] == ["desk-kh", "desk-vn"]
        assert all(OrgRecord.from_doc(i, d).to_doc() == d for i, d in stored)
        assert [(o.id, o.name) for o in Orgs(services.storage).iter()] == [("desk-kh", "desk-kh"), ("desk-vn", "Kiểm chứng VN")]
        assert known_orgs(services) == [services.settings.org, "desk-kh", "desk-vn"]
    finally:
        services.close()
