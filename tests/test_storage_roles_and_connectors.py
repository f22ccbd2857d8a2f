"""The storage contract split by role, and connectors loaded through their entry-point registry
(issue 11: "the storage contract split by role and the unused parts wired or removed")."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

import pytest
from typer.testing import CliRunner

from factbridge import plugins
from factbridge.backends.connectors.base import Connector, fetch_items, open_connector
from factbridge.backends.storage.base import ROLES, PostStore, Storage, UpsertResult
from factbridge.cli import app
from factbridge.errors import ConfigError
from factbridge.models import Post, Quarantined
from factbridge.pipeline.ingest import ingest_file


class PagedConnector:
    """A third-party style connector: two pages behind a cursor."""

    name = "paged"
    pages = {None: (["p1", "p2"], "page-2"), "page-2": (["p3"], None)}

    def __init__(self, location: str | Path, platform: str = "", limits: object = None) -> None:
        self.location = str(location)
        self.platform = platform

    def fetch(self, cursor: str | None = None) -> tuple[list[Post | Quarantined], str | None]:
        ids, following = self.pages[cursor]
        return [Post(id=i, text=f"post {i} from {self.location}", platform=self.platform) for i in ids], following


def _utc(t: datetime | None) -> datetime | None:
    return None if t is None else (t.replace(tzinfo=UTC) if t.tzinfo is None else t.astimezone(UTC))


class PostsOnly:
    """Only the PostStore role: enough for ingest_file."""

    def __init__(self) -> None:
        self.posts: dict[str, Post] = {}
        self.quarantined: list[Quarantined] = []

    def upsert_posts(self, org: str, posts: Sequence[Post], quarantined: Sequence[Quarantined] = ()) -> UpsertResult:
        self.posts.update({p.id: p for p in posts})
        self.quarantined.extend(quarantined)
        return UpsertResult(inserted=[p.id for p in posts])

    def get_post(self, org: str, post_id: str) -> Post:
        return self.posts[post_id]

    def get_posts(self, org: str, ids: Sequence[str]) -> dict[str, Post]:
        return {i: self.posts[i] for i in ids if i in self.posts}

    def post_times(self, org: str, ids: Sequence[str]) -> dict[str, datetime | None]:
        return {i: _utc(self.posts[i].created_at) for i in ids if i in self.posts}

    def list_posts(self, org: str, limit: int = 100, offset: int = 0) -> list[Post]:
        return list(self.posts.values())[offset : offset + limit]

    def iter_posts(self, org: str, batch_size: int = 1000):  # type: ignore[no-untyped-def]
        yield from self.posts.values()

    def count_posts(self, org: str) -> int:
        return len(self.posts)

    def changed_posts(self, org: str, cursor: str = "") -> tuple[list[Post], str]:
        return list(self.posts.values()), "all"  # everything every time: the protocol allows posts to come again


@pytest.fixture
def paged_registered(monkeypatch: pytest.MonkeyPatch) -> None:
    real = plugins.available

    def available(group: str) -> dict[str, str]:
        found = real(group)
        return {**found, "paged": f"{__name__}:PagedConnector"} if group == "factbridge.connectors" else found

    monkeypatch.setattr(plugins, "available", available)


def test_storage_is_every_role_and_a_caller_can_need_one() -> None:
    assert all(role in Storage.__mro__ for role in ROLES)
    store = PostsOnly()
    assert isinstance(store, PostStore) and not isinstance(store, Storage)


def test_ingest_needs_only_the_post_role(tmp_path: Path) -> None:
    path = tmp_path / "p.jsonl"
    path.write_text(json.dumps({"id": "a", "text": "The bridge is closed"}) + "\n{bad\n", encoding="utf-8")
    store = PostsOnly()
    out = ingest_file(store, "org", path, ("en",))
    assert list(store.posts) == ["a"] and [q.line for q in store.quarantined] == [2]
    assert out.report.inserted == 1


def test_connectors_come_from_the_registry(tmp_path: Path, paged_registered: None) -> None:
    connector = open_connector("paged", "somewhere", platform="forum")
    assert isinstance(connector, Connector)
    assert [p.id for p in fetch_items(connector) if isinstance(p, Post)] == ["p1", "p2", "p3"]
    with pytest.raises(ConfigError, match="no connectors backend named 'nope'"):
        open_connector("nope", "x")


def test_cli_ingest_with_a_connector(tmp_path: Path, paged_registered: None) -> None:
    base = ["--data-dir", str(tmp_path / "d"), "--embedder", "hashing"]
    runner = CliRunner()
    # a CSV export with a .txt name: by its name it would be read as JSON Lines
    export = tmp_path / "export.txt"
    export.write_text("id,text\n1,The bridge is closed\n2,Vaccines cause infertility\n", encoding="utf-8")
    by_name = runner.invoke(app, [*base, "ingest", str(export), "--no-match", "--json"])
    assert by_name.exit_code == 0, by_name.output
    assert json.loads(by_name.stdout[by_name.stdout.index("{"):])["files"][0]["inserted"] == 0
    as_csv = runner.invoke(app, [*base, "ingest", "--connector", "csv", str(export), "--no-match", "--json"])
    assert as_csv.exit_code == 0, as_csv.output
    assert json.loads(as_csv.stdout[as_csv.stdout.index("{"):])["files"][0]["inserted"] == 2
    paged = runner.invoke(app, [*base, "ingest", "--connector", "paged", "feed://x", "--platform", "forum", "--no-match", "--json"])
    assert paged.exit_code == 0, paged.output
    assert json.loads(paged.stdout[paged.stdout.index("{"):])["files"][0]["inserted"] == 3
    unknown = runner.invoke(app, [*base, "ingest", "--connector", "nope", str(export)])
    assert isinstance(unknown.exception, ConfigError)
