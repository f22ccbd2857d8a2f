"""The tipline's typed records (issue 11): every document the desk stores, driven through its
real decision path (`TiplineDesk.handle`, follow-ups, /stop, feedback, the publication hook)
on real SQLite, reads back through its record and writes out unchanged; the follow-up pass
and /stop read the senders' pending lists, never the whole question collection."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from factbridge.backends.storage.base import iter_docs
from factbridge.demo import sample_dir
from factbridge.models import FactCheck
from factbridge.pipeline.ingest import import_factcheck_files
from factbridge.pipeline.matching import index_factchecks
from factbridge.services import Services
from factbridge.settings import load_settings
from factbridge.tiplines.base import Incoming
from factbridge.tiplines.desk import TiplineDesk, notify_published
from factbridge.tiplines.records import (
    BUILT,
    OUTBOX,
    PENDING,
    QUESTIONS,
    REPLIES,
    STATS,
    USERS,
    OutboxEntry,
    PendingQuestions,
    TiplineQuestion,
    TiplineQuestions,
    TiplineReply,
    TiplineStat,
    TiplineUser,
)

ORG = "default"


@pytest.fixture
def services(tmp_path: Path) -> Iterator[Services]:
    settings = load_settings(env={}, overrides={
        "data_dir": str(tmp_path), "storage_url": f"sqlite:///{tmp_path / 'fb.db'}", "embedder": "hashing", "embed_cache": "off",
        "match_fusion": "dense", "match_threshold": 0.6, "possible_threshold": 0.4, "tipline_rate_limit": "1000/60",
        "match_centering": False,
    })
    svc = Services(settings)
    import_factcheck_files(svc.storage, ORG, sorted(sample_dir().glob("factchecks*")), svc.languages)
    index_factchecks(svc.storage, svc.embedder, ORG)
    yield svc
    svc.close()


def ask(desk: TiplineDesk, user: int, text: str, n: int) -> list[Any]:
    replies, posts = desk.handle(Incoming("telegram", str(user), str(user), text=text, message_id=str(n), language_hint="en"))
    desk.store(posts)  # as the runner does once the replies are sent
    return replies


class CountingStorage:
    """The desk's storage, counting the documents each collection hands back."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.read: dict[str, int] = {}

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def get_docs(self, org: str, collection: str, ids: Sequence[str]) -> dict[str, dict[str, Any]]:
        found: dict[str, dict[str, Any]] = self.inner.get_docs(org, collection, ids)
        self.read[collection] = self.read.get(collection, 0) + len(found)
        return found

    def list_docs(self, org: str, collection: str, limit: int = 100, offset: int = 0, order: str = "sort_desc",
                  after: str | None = None) -> list[tuple[str, dict[str, Any]]]:
        rows: list[tuple[str, dict[str, Any]]] = self.inner.list_docs(org, collection, limit, offset, order, after)
        self.read[collection] = self.read.get(collection, 0) + len(rows)
        return rows


def test_every_tipline_document_round_trips_through_its_record(services: Services) -> None:
    desk = TiplineDesk(services, ORG)
    fc = next(f for f in services.storage.iter_factchecks(ORG) if f.language == "en")
    answered = ask(desk, 11, fc.claim, 1)
    assert answered[0].meta["factcheck_id"] == fc.id
    feedback = desk.handle(Incoming("telegram", "11", "11", kind="feedback", data=f"fb:{answered[0].meta['reply_id']}:1", callback_id="c1"))
    assert feedback[0][0].ack_callback == "c1"
    ask(desk, 12, "Uống nước chanh nóng mỗi sáng chữa khỏi bệnh tiểu đường trong một tuần", 2)  # to the desk: pending
    ask(desk, 13, "Nước muối sinh lý pha gừng chữa được bệnh gút trong ba ngày", 3)
    ask(desk, 14, "Nhận tiền hỗ trợ tại http://vietcombank-secure-login.com/verify ngay", 4)  # link warning
    ask(desk, 13, "/stop", 5)  # withdraws 13's question
    services.storage.upsert_factchecks(ORG, [FactCheck(
        id="https://fc.example.vn/chanh", claim="Uống nước chanh nóng mỗi sáng chữa khỏi bệnh tiểu đường trong một tuần",
        rating="Sai", publisher="Kiểm chứng VN", url="https://fc.example.vn/chanh", language="vi")])
    ((reply, sent),) = desk.followups()
    sent()
    assert reply.chat_id == "12"
    question_12 = next(q for q in TiplineQuestions(services.storage).iter(ORG) if q.chat_id is None and q.answered_at)
    notify_published(services.storage, ORG, {"id": "case-1", "source": {"kind": "post", "id": question_12.post_id}}, fc)

    docs = {c: list(iter_docs(services.storage, ORG, c)) for c in (USERS, QUESTIONS, PENDING, REPLIES, STATS, OUTBOX)}
    assert {c: len(d) for c, d in docs.items()} == {USERS: 1, QUESTIONS: 4, PENDING: 3, REPLIES: 3, STATS: 2, OUTBOX: 1}
    for who, doc in docs[USERS]:
        assert TiplineUser.from_doc(who, doc).to_doc() == doc
    questions = {q.id: q for q in (TiplineQuestion.from_doc(i, d) for i, d in docs[QUESTIONS])}
    for qid, doc in docs[QUESTIONS]:
        assert questions[qid].to_doc() == doc
    assert sorted(q.status for q in questions.values()) == ["answered", "answered", "answered", "withdrawn"]
    assert not any(q.waiting for q in questions.values())
    for who, doc in docs[PENDING]:
        if who != BUILT:
            assert PendingQuestions.from_doc(who, doc).to_doc() == doc and doc["questions"] == []
    replies = [TiplineReply.from_doc(i, d) for i, d in docs[REPLIES]]
    for (_, doc), record in zip(docs[REPLIES], replies, strict=True):
        assert record.to_doc() == doc and record.decided_by and record.evidence
    assert sorted(r.kind for r in replies) == ["factcheck", "followup", "link_warning"]
    assert [r.feedback for r in replies if r.kind == "factcheck"] == ["helpful"]
    stats = {s.language: s for s in (TiplineStat.from_doc(d) for _, d in docs[STATS])}
    for _, doc in docs[STATS]:
        assert TiplineStat.from_doc(doc).to_doc() == doc
    assert (stats["en"]["questions"], stats["en"]["helpful"], stats["vi"]["questions"], stats["vi"]["followups"]) == (1, 1, 3, 1)
    ((post_id, outbox_doc),) = docs[OUTBOX]
    assert OutboxEntry.from_doc(post_id, outbox_doc).to_doc() == outbox_doc

    # `factbridge tipline stats` reads the same records
    from typer.testing import CliRunner

    from factbridge.cli import app

    base = ["--data-dir", services.settings.data_dir, "--storage-url", services.settings.storage_url, "--embedder", "hashing"]
    listed = CliRunner().invoke(app, [*base, "tipline", "stats", "--json"])
    assert listed.exit_code == 0, listed.output
    assert sorted((r["language"], r["questions"]) for r in json.loads(listed.stdout)) == [("en", 1), ("vi", 3)]
    table = CliRunner().invoke(app, [*base, "tipline", "stats"], env={"COLUMNS": "200"})
    assert table.exit_code == 0 and "vi" in table.stdout


def test_follow_ups_and_stop_read_the_pending_lists_not_every_question(services: Services) -> None:
    counting = CountingStorage(services.storage)
    services.storage = counting  # type: ignore[misc]
    desk = TiplineDesk(services, ORG)
    fc = next(f for f in counting.inner.iter_factchecks(ORG) if f.language == "en")
    for n in range(40):  # answered at once: never pending
        ask(desk, 100 + n, fc.claim, n)
    ask(desk, 7, "Uống nước chanh nóng mỗi sáng chữa khỏi bệnh tiểu đường trong một tuần", 100)
    ask(desk, 8, "Nước muối sinh lý pha gừng chữa được bệnh gút trong ba ngày", 101)
    ask(desk, 8, "Ăn tỏi sống mỗi ngày giúp miễn nhiễm hoàn toàn với cúm mùa", 102)
    assert services.storage.count_docs(ORG, QUESTIONS) == 43

    counting.read.clear()
    assert desk.followups() == []  # nothing matches yet
    assert counting.read.get(QUESTIONS, 0) == 3  # the three waiting questions, not 43
    assert counting.read.get(PENDING, 0) <= 4  # the non-empty pending lists (and the first empty one)

    counting.read.clear()
    ask(desk, 8, "/stop", 103)
    assert counting.read.get(QUESTIONS, 0) == 2  # sender 8's two questions
    withdrawn = [q for q in TiplineQuestions(counting.inner).iter(ORG) if q.status == "withdrawn"]
    assert len(withdrawn) == 2 and all(q.chat_id is None for q in withdrawn)
    (left,) = TiplineQuestions(counting.inner).waiting(ORG)
    assert left.chat_id == "7"


def test_a_database_from_before_the_index_gets_it_built_once(services: Services) -> None:
    storage = services.storage
    old = TiplineQuestion("q-old", "telegram:abc", "telegram", "vi", "tipline-q-old", "pending", "2026-11-01T08:00:00+00:00", chat_id="77")
    done = TiplineQuestion("q-done", "telegram:abc", "telegram", "vi", "tipline-q-done", "answered", "2026-11-01T09:00:00+00:00")
    storage.put_docs(ORG, QUESTIONS, [(q.id, q.to_doc(), None) for q in (old, done)])  # written without the index
    accessor = TiplineQuestions(storage)
    assert [q.id for q in accessor.waiting(ORG)] == ["q-old"]
    assert storage.get_docs(ORG, PENDING, [BUILT, "telegram:abc"])["telegram:abc"]["questions"] == ["q-old"]
    accessor.put(ORG, [TiplineQuestion(**{**old.__dict__, "status": "answered", "chat_id": None, "answered_at": "2026-11-02T08:00:00+00:00"})])
    assert TiplineQuestions(storage).waiting(ORG) == []
    assert accessor.pending_list(ORG, "telegram:abc") == PendingQuestions("telegram:abc", (), 2)


@pytest.mark.postgres
def test_pending_lists_stay_exact_under_racing_writers_on_postgresql(postgres_url: str) -> None:
    """Two desks (threads, each its own accessor) store questions of the same senders at once:
    the conditional writes on the pending lists make one of them read again, none is lost."""
    import threading

    from factbridge.backends.storage import open_storage

    storage = open_storage(postgres_url)
    storage.migrate()
    try:
        def ask_many(offset: int) -> None:
            accessor = TiplineQuestions(storage)
            for n in range(offset, offset + 30):
                accessor.put(ORG, [TiplineQuestion(f"q{n}", f"telegram:u{n % 3}", "telegram", "vi", f"tipline-q{n}", "pending",
                                                   "2026-11-01T08:00:00+00:00", chat_id=str(n))])

        threads = [threading.Thread(target=ask_many, args=(k * 100,)) for k in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        waiting = TiplineQuestions(storage).waiting(ORG)
        assert sorted(q.id for q in waiting) == sorted(f"q{n}" for k in range(2) for n in range(k * 100, k * 100 + 30))
        accessor = TiplineQuestions(storage)
        accessor.put(ORG, [dataclasses.replace(q, status="withdrawn", chat_id=None) for q in accessor.waiting_of(ORG, "telegram:u0")])
        assert {q.who for q in accessor.waiting(ORG)} == {"telegram:u1", "telegram:u2"}
        for who, doc in storage.list_docs(ORG, PENDING, limit=100):
            if who != BUILT:
                assert PendingQuestions.from_doc(who, doc).to_doc() == doc
    finally:
        storage.close()
