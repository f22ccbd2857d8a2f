"""Public reports go through the one processing path: stored and queued in the request, their
stages run by the server's background consumer, one batch at a time. Twelve reports sent at
once (in four languages, Khmer among them) each get their narrative, with no failure."""

from __future__ import annotations

import logging
import threading
from pathlib import Path

import pytest
from webenv import ORG_A, csrf_of, make_env, web_settings

from factbridge.pipeline.work import FAILURES

TEXTS = [
    "Les antennes 5G propagent le coronavirus, partagez vite",
    "5G towers spread the virus, share before they delete it",
    "Sóng 5G lây lan virus corona, hãy chia sẻ ngay",
    "ប៉មទូរស័ព្ទ 5G ចម្លងមេរោគកូរ៉ូណា សូមចែករំលែក",
    "Le gouvernement cache la vérité sur l'eau du robinet",
    "Nước máy bị nhiễm độc, đừng uống nữa",
    "ក្រសួងសុខាភិបាល ព្រមានអំពីវ៉ាក់សាំងក្លែងក្លាយ",
    "Vaccine contains microchips, doctors confirm",
    "Les élections ont été truquées dans trois provinces",
    "Giá xăng sẽ tăng gấp đôi từ tuần sau",
    "ទឹកជំនន់ធំនឹងមកដល់ភ្នំពេញនៅសប្តាហ៍ក្រោយ",
    "Bridge collapse video is from another country",
]


def test_twelve_concurrent_public_reports_each_get_their_narrative(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    import khmercut

    khmercut.tagger = None  # as in a fresh server: the first Khmer reports open the tagger together
    env = make_env(tmp_path, public_rate_limit="100/600")
    try:
        storage = env.services.storage
        before = {p.id for p in storage.iter_posts(ORG_A)}
        errors: list[BaseException] = []
        statuses: list[int] = []
        barrier = threading.Barrier(len(TEXTS))

        def send(text: str) -> None:
            try:
                visitor = env.client()
                token = csrf_of(visitor.get(f"/public/{ORG_A}/report").text)
                barrier.wait(timeout=30)
                statuses.append(visitor.post(f"/public/{ORG_A}/report", data={"csrf_token": token, "text": text}).status_code)
            except BaseException as exc:  # noqa: BLE001 - collected and asserted below
                errors.append(exc)

        with caplog.at_level(logging.WARNING):
            threads = [threading.Thread(target=send, args=(t,)) for t in TEXTS]
            for t in threads:
                t.start()
            for t in threads:
                t.join(timeout=120)
            processor = getattr(env.app.state, "processor", None)
            assert processor is not None, "the server consumes the in-process queue in a background thread"
            assert processor.wait_idle(120)
        assert not errors, errors
        assert statuses == [200] * len(TEXTS)
        reports = [p for p in storage.iter_posts(ORG_A) if p.id not in before]
        assert sorted(p.text for p in reports) == sorted(TEXTS)
        ids = [p.id for p in reports]
        members = storage.get_docs(ORG_A, "narrative_members", ids)
        assert set(members) == set(ids), "every report joined or started a narrative"
        assert set(storage.get_docs(ORG_A, "queue", ids)) == set(ids), "and has its triage entry"
        assert storage.count_docs(ORG_A, FAILURES) == 0
        assert env.app.state.processor.report.count("done") >= 1
        logged = "\n".join(r.getMessage() for r in caplog.records)
        assert "KeyError" not in logged and "tagger is not opened" not in logged
    finally:
        env.close()
        env.services.close()



def test_server_start_sweeps_posts_left_without_stages(tmp_path: Path) -> None:
    """Posts stored by a process that died before their stages ran are finished when the server starts."""
    from factbridge.demo import sample_dir
    from factbridge.pipeline.ingest import read_file
    from factbridge.pipeline.process import backlog
    from factbridge.services import Services
    from factbridge.web.app import create_app

    with Services(web_settings(tmp_path)) as services:
        posts, _ = read_file(sample_dir() / "posts.jsonl", services.languages)
        services.storage.upsert_posts(services.settings.org, posts)  # stored, never queued: as after a kill -9
        assert backlog(services, services.settings.org).complete == 0
        app = create_app(services)
        assert app.state.processor.wait_idle(120)
        after = backlog(services, services.settings.org)
        assert after.posts == len(posts) and after.complete == len(posts)
