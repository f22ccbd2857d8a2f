"""`factbridge sources add/list/run/remove`, cursors kept between runs, the schedule, and the
one ingest path (loopback server and generated files only)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from test_connectors import _claimreview_page, _rss, _telegram_export
from typer.testing import CliRunner

from factbridge.cli import app
from factbridge.services import Services
from factbridge.sources.registry import (
    add_source,
    due_sources,
    get_source,
    list_sources,
    run_source,
)
from factbridge.testing.loopback import LoopbackSite

ORG = "default"


@pytest.fixture
def site() -> Iterator[LoopbackSite]:
    with LoopbackSite() as s:
        yield s


def _cli(tmp_path: Path, *args: str, code: int = 0) -> str:
    result = CliRunner().invoke(app, ["--storage-url", f"sqlite:///{tmp_path / 'fb.db'}", "--data-dir", str(tmp_path), "--embedder", "hashing",
                                      "--embed-cache", "off", *args], env={"FACTBRIDGE_MATCH_FUSION": "rrf", "COLUMNS": "200"})
    assert result.exit_code == code, f"factbridge {' '.join(args)}:\n{result.output}\n{result.exception!r}"
    return result.output + (str(result.exception) if code else "")


def test_sources_cli_add_list_run_resume_remove(tmp_path: Path, site: LoopbackSite) -> None:
    items = [("a", "Giá xăng tăng mạnh từ ngày mai", "Mon, 02 Nov 2026 08:00:00 GMT")]
    site.routes["/feed.xml"] = lambda q, h: (200, "application/rss+xml", _rss(items))
    _cli(tmp_path, "sources", "add", "tin-nhanh", "rss", "-o", f"url={site.url}/feed.xml", "--interval", "60")
    out = _cli(tmp_path, "sources", "add", "bad", "rss", "-o", f"url={site.url}/feed.xml", "-o", "colour=blue", code=1)
    assert "unknown option(s) colour for connector 'rss'" in out
    first = json.loads(_cli(tmp_path, "sources", "run", "--json"))
    assert first[0]["status"] == "ok" and first[0]["posts_new"] == 1
    items.append(("b", "Bão số 9 đổ bộ miền Trung", "Tue, 03 Nov 2026 09:00:00 GMT"))
    second = json.loads(_cli(tmp_path, "sources", "run", "tin-nhanh", "--json"))
    assert second[0]["posts_new"] == 1 and second[0]["posts_unchanged"] == 0  # resumed after the cursor
    listed = json.loads(_cli(tmp_path, "sources", "list", "--json"))
    assert listed[0]["name"] == "tin-nhanh" and listed[0]["totals"]["posts"] == 2 and listed[0]["totals"]["runs"] == 2
    assert "2026-11-03" in listed[0]["cursor"]
    table = _cli(tmp_path, "sources", "list")
    assert "tin-nhanh" in table and "rss" in table and "ok" in table
    assert "no source to run" in _cli(tmp_path, "sources", "run", "--due")  # ran a moment ago, every 60 s
    _cli(tmp_path, "sources", "remove", "tin-nhanh")
    assert json.loads(_cli(tmp_path, "sources", "list", "--json")) == []
    from factbridge.backends.storage import open_storage

    store = open_storage(f"sqlite:///{tmp_path / 'fb.db'}")
    try:
        assert store.count_posts(ORG) == 2  # removing a source keeps what it brought in
    finally:
        store.close()


def test_webhook_source_prints_its_secret_once(tmp_path: Path) -> None:
    out = _cli(tmp_path, "sources", "add", "partner", "webhook")
    assert "/api/v1/hooks/default/partner" in out and "X-FactBridge-Signature" in out
    listed = json.loads(_cli(tmp_path, "sources", "list", "--json"))
    assert "secret" not in listed[0]


def test_run_source_stores_factchecks_posts_and_cursor_and_records_errors(hashing_services: Services, site: LoopbackSite, tmp_path: Path) -> None:
    services = hashing_services
    site.routes["/sitemap.xml"] = (200, "application/xml", f"""<?xml version="1.0"?><urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">
<url><loc>{site.url}/check/1</loc><lastmod>2026-11-01</lastmod></url><url><loc>{site.url}/check/2</loc><lastmod>2026-11-02</lastmod></url></urlset>""")
    site.routes["/check/1"] = (200, "text/html", _claimreview_page(1, "Bananas cure cancer"))
    site.routes["/check/2"] = (200, "text/html", _claimreview_page(2, "5G towers spread the flu"))
    add_source(services, ORG, "fc-site", "claimreview-sitemap", {"sitemap_url": f"{site.url}/sitemap.xml", "delay_s": 0.0})
    result = run_source(services, ORG, "fc-site")
    assert result["status"] == "ok" and result["factchecks_new"] == 2 and result["pages"] == 1
    assert services.storage.count_factchecks(ORG) == 2
    assert services.storage.vector_shas(ORG, "factcheck", services.embedder.id)  # embedded for matching
    again = run_source(services, ORG, "fc-site")
    assert again["factchecks_new"] == 0 and again["factchecks_updated"] == 0

    export = _telegram_export(tmp_path / "result.json", [
        {"id": 5, "type": "message", "date": "2026-11-01T09:00:00", "from_id": "channel1", "text": "Bananas cure cancer, share now!", "views": 900}])
    add_source(services, ORG, "kenh", "telegram-export", {"path": str(export)})
    result = run_source(services, ORG, "kenh")
    assert result["posts_new"] == 1 and get_source(services.storage, ORG, "kenh").cursor == "5"
    (post,) = [p for p in services.storage.iter_posts(ORG) if p.platform == "telegram"]
    assert post.engagement.views == 900 and post.author.startswith("telegram:") and "channel1" not in post.author
    assert services.storage.matches_for_post(ORG, post.id)  # went through the stages (matching)

    site.routes["/sitemap.xml"] = (200, "text/html", "<html>maintenance</p>")
    broken = run_source(services, ORG, "fc-site")
    assert broken["status"] == "error" and "not a sitemap" in broken["error"] and "/sitemap.xml" in broken["error"]
    site.routes["/sitemap.xml"] = (500, "text/plain", "down")
    failed = run_source(services, ORG, "fc-site")
    doc = get_source(services.storage, ORG, "fc-site")
    assert failed["status"] == "error" and "500" in failed["error"] and doc.last_error == failed["error"]
    assert json.loads(doc.cursor)["done"]  # the cursor survives a failed run

    now = datetime.now(UTC)
    assert due_sources(services.storage, ORG, now) == []
    assert due_sources(services.storage, ORG, now + timedelta(hours=2)) == ["fc-site", "kenh"]
    assert [s.name for s in list_sources(services.storage, ORG)] == ["fc-site", "kenh"]


def test_scheduler_runs_due_sources(hashing_services: Services, tmp_path: Path) -> None:
    import threading

    from factbridge.sources.registry import SourceScheduler

    export = _telegram_export(tmp_path / "result.json", [
        {"id": 1, "type": "message", "date": "2026-11-01T09:00:00", "from_id": "channel1", "text": "Tin mới nhất"}])
    add_source(hashing_services, ORG, "kenh", "telegram-export", {"path": str(export)}, interval_s=3600)
    stop = threading.Event()
    results: list[dict[str, object]] = []
    scheduler = SourceScheduler(hashing_services, None, stop, tick_s=0.05, on_result=lambda r: (results.append(r), stop.set()))
    thread = scheduler.start_thread()
    thread.join(timeout=30)
    assert not thread.is_alive() and [r["name"] for r in results] == ["kenh"] and results[0]["posts_new"] == 1
    assert due_sources(hashing_services.storage, ORG) == []  # not again before its interval


def test_every_source_document_round_trips_through_its_record(hashing_services: Services, tmp_path: Path) -> None:
    from factbridge.sources.records import SOURCES, SourceRecord
    from factbridge.sources.registry import remove_source

    storage = hashing_services.storage
    export = _telegram_export(tmp_path / "result.json", [
        {"id": 1, "type": "message", "date": "2026-11-01T09:00:00", "from_id": "channel1", "text": "Tin mới nhất"}])
    add_source(hashing_services, ORG, "kenh", "telegram-export", {"path": str(export)}, interval_s=600)
    add_source(hashing_services, ORG, "never-run", "telegram-export", {"path": str(export)})
    hook = add_source(hashing_services, ORG, "partner", "webhook", {})
    add_source(hashing_services, ORG, "gone", "webhook", {})
    assert run_source(hashing_services, ORG, "kenh")["posts_new"] == 1
    remove_source(storage, ORG, "gone")
    docs = dict(storage.list_docs(ORG, SOURCES, limit=100, order="id"))
    assert sorted(docs) == ["gone", "kenh", "never-run", "partner"]
    for name, doc in docs.items():
        assert SourceRecord.from_doc(name, doc).to_doc() == doc
    assert "last_summary" in docs["kenh"] and "last_summary" not in docs["never-run"] and "secret" not in docs["kenh"]
    assert docs["gone"]["removed"] is True and docs["gone"]["secret"] is None and docs["partner"]["secret"] == hook.secret
    kenh = get_source(storage, ORG, "kenh")
    assert (kenh.cursor, kenh.totals["posts"], kenh.totals["runs"], kenh.last_status) == ("1", 1, 1, "ok")
    assert [s.name for s in list_sources(storage, ORG)] == ["kenh", "never-run", "partner"] and "secret" not in hook.public()
