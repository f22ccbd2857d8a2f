"""The account and audit commands of issue 10 (item 2 and 3): `users disable` / `enable`,
`users token --expires`, `users tokens list` / `revoke`, `users password` (an admin reset
revokes tokens and sessions), `audit checkpoint` and `audit verify` against it."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest
from typer.testing import CliRunner

from factbridge.cli import app as cli_app
from factbridge.errors import NotAuthenticated
from factbridge.services import Services
from factbridge.settings import load_settings
from factbridge.web.app import accounts_for


def _settings(tmp_path: Path) -> object:
    return load_settings(env={}, overrides={"data_dir": str(tmp_path), "storage_url": f"sqlite:///{tmp_path / 'fb.db'}",
                                            "embedder": "hashing", "embed_cache": "off", "password_hash_time_cost": 1,
                                            "password_hash_memory_kib": 1024})


def test_users_tokens_disable_and_reset_from_the_cli(tmp_path: Path) -> None:
    base = ["--data-dir", str(tmp_path), "--storage-url", f"sqlite:///{tmp_path / 'fb.db'}", "--embedder", "hashing", "--org", "desk"]
    runner = CliRunner(env={"FACTBRIDGE_PASSWORD_HASH_TIME_COST": "1", "FACTBRIDGE_PASSWORD_HASH_MEMORY_KIB": "1024"})

    def run(*args: str, code: int = 0) -> str:
        """`code` -1: any failure (CliRunner calls the app, not `main`, which maps errors to 1 or 2)."""
        out = runner.invoke(cli_app, [*base, *args])
        assert out.exit_code == code if code >= 0 else out.exit_code != 0, out.output
        return out.output

    run("users", "add", "alice", "--role", "editor")
    run("users", "add", "[bold]bob", "--role", "viewer", code=-1)  # refused name; nothing styled
    first = run("users", "token", "alice", "--name", "ci", "--expires", "30d").strip().splitlines()[-1]
    second = run("users", "token", "alice", "--name", "[red]sync[/]").strip().splitlines()[-1]
    listed = json.loads(run("users", "tokens", "list", "--json"))
    assert {t["name"] for t in listed} == {"ci", "[red]sync[/]"} and all(t["expires_at"] for t in listed)
    assert first not in json.dumps(listed) and "[red]sync[/]" in run("users", "tokens", "list")  # shown as text, escaped
    run("users", "token", "alice", "--expires", "yesterday", code=-1)

    with Services(_settings(tmp_path)) as services:  # type: ignore[arg-type]
        accounts = accounts_for(services)
        assert accounts.token_actor(first).username == "alice"
        ci = next(t for t in listed if t["name"] == "ci")["id"]
    assert "revoked" in run("users", "tokens", "revoke", ci[:8])
    run("users", "tokens", "revoke", "zz", code=-1)
    with Services(_settings(tmp_path)) as services:  # type: ignore[arg-type]
        accounts = accounts_for(services)
        with pytest.raises(NotAuthenticated):
            accounts.token_actor(first)
        assert accounts.token_actor(second).username == "alice"
        session, _ = accounts.start_session(accounts.get_user("alice"))

    out = run("users", "disable", "alice")
    assert "1 session(s) ended, 1 API token(s) revoked" in out
    with Services(_settings(tmp_path)) as services:  # type: ignore[arg-type]
        accounts = accounts_for(services)
        for check in (lambda: accounts.token_actor(second), lambda: accounts.session(session),
                      lambda: accounts.authenticate("alice", "whatever-password")):
            with pytest.raises(NotAuthenticated):
                check()
    run("users", "enable", "alice")
    third = run("users", "token", "alice").strip().splitlines()[-1]
    out = run("users", "password", "alice")
    assert "1 API token(s) revoked" in out
    with Services(_settings(tmp_path)) as services, pytest.raises(NotAuthenticated):  # type: ignore[arg-type]
        accounts_for(services).token_actor(third)

    verified = json.loads(run("audit", "verify", "--json"))
    assert all(r["ok"] for r in verified), verified
    assert "signed" in run("audit", "checkpoint")
    # a role raised in the database: verify names it and exits 1
    with sqlite3.connect(tmp_path / "fb.db") as conn:
        conn.execute("UPDATE docs SET doc=json_set(doc, '$.role', 'admin') WHERE collection='users' AND id='alice'")
    problems = json.loads(run("audit", "verify", "--json", code=1))
    assert any("users/alice" in p for r in problems for p in r["problems"])
