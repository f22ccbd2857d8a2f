"""Tiplines against loopback stand-ins only: the bundled Telegram Bot API stand-in (driven by
python-telegram-bot, as in production) and a Zalo OA API stand-in with signed webhook events."""

from __future__ import annotations

import json
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from factbridge.backends.storage.base import iter_docs
from factbridge.demo import sample_dir
from factbridge.models import FactCheck
from factbridge.pipeline.ingest import import_factcheck_files
from factbridge.pipeline.matching import index_factchecks
from factbridge.pseudonyms import Pseudonymizer
from factbridge.services import Services
from factbridge.settings import load_settings
from factbridge.testing.botapi import BotApiClient, BotApiServer
from factbridge.tiplines import TiplineDesk, TiplineRunner, open_tipline
from factbridge.tiplines.desk import tipline_stats
from factbridge.tiplines.records import QUESTIONS, REPLIES, USERS
from factbridge.tiplines.zalo import zalo_signature

ORG = "default"
SCAM = "Nhận tiền hỗ trợ tại http://vietcombank-secure-login.com/verify ngay"


@pytest.fixture
def services(tmp_path: Path) -> Iterator[Services]:
    # the hashing embedder has no tuned thresholds: give it some (a verbatim claim scores ~0.8)
    settings = load_settings(env={}, overrides={
        "data_dir": str(tmp_path), "storage_url": "sqlite:///:memory:", "embedder": "hashing", "embed_cache": "off",
        "match_fusion": "dense", "match_threshold": 0.6, "possible_threshold": 0.4, "tipline_rate_limit": "20/60",
        "match_centering": False,
    })
    svc = Services(settings)
    import_factcheck_files(svc.storage, ORG, sorted(sample_dir().glob("factchecks*")), svc.languages)
    index_factchecks(svc.storage, svc.embedder, ORG)
    yield svc
    svc.close()


@pytest.fixture
def telegram(services: Services) -> Iterator[tuple[BotApiClient, TiplineRunner, BotApiServer]]:
    with BotApiServer() as server:
        tipline = open_tipline("telegram", services.settings, token="123:test", api_url=server.bot_base_url)
        runner = TiplineRunner(tipline, TiplineDesk(services, ORG), poll_timeout=0.5, followup_every=3600)
        runner.warm()
        stop = threading.Event()
        thread = runner.start_thread(stop)
        yield BotApiClient(server.url, timeout=10), runner, server
        stop.set()
        thread.join(10)
        tipline.close()


def _claim(services: Services, language: str = "en") -> FactCheck:
    return next(fc for fc in services.storage.iter_factchecks(ORG) if fc.language == language)


def _ask(client: BotApiClient, user: int, text: str, language_code: str = "en", expect: int = 1) -> list[dict[str, Any]]:
    sent = client.send(user, text, language_code)
    deadline = time.monotonic() + 10
    replies: list[dict[str, Any]] = []
    while len(replies) < expect and time.monotonic() < deadline:
        replies = client.messages(user, after=sent["message_id"], wait=1.0)
    return replies


def test_debunked_claim_is_answered_at_once_with_the_factcheck_and_feedback_buttons(services: Services, telegram: Any) -> None:
    client, runner, server = telegram
    fc = _claim(services)
    replies = _ask(client, 501, fc.claim)
    assert len(replies) == 1, replies
    reply = replies[0]
    assert fc.url in reply["text"] and fc.rating in reply["text"] and fc.publisher in reply["text"]
    assert reply["text"].startswith("This claim has been fact-checked")
    buttons = [b for row in reply["reply_markup"]["inline_keyboard"] for b in row]
    assert [b["text"] for b in buttons] == ["👍 Helpful", "👎 Not helpful"]
    # (the speed target is measured by `factbridge bench tipline`, not here)

    # feedback: the button press is acknowledged and recorded once, with the reply's evidence
    client.press(501, reply["message_id"], buttons[0]["callback_data"])
    deadline = time.monotonic() + 10
    while not server.state.callback_answers and time.monotonic() < deadline:
        time.sleep(0.05)
    assert server.state.callback_answers[0]["text"] == "Thank you for your feedback."
    runner.drain()
    records = dict(iter_docs(services.storage, ORG, REPLIES))
    (record,) = records.values()
    assert record["feedback"] == "helpful" and record["factcheck_id"] == fc.id
    assert "matcher:" in record["decided_by"] and record["evidence"]["fused_score"] >= 0.6
    stats = tipline_stats(services.storage, ORG)
    assert stats[0].language == "en" and stats[0]["questions"] == 1 and stats[0]["answered"] == 1 and stats[0]["helpful"] == 1

    # the question reached the desk as a post with a pseudonymous author, no platform id
    posts = list(services.storage.iter_posts(ORG))
    assert len(posts) == 1 and posts[0].platform == "tipline:telegram"
    # the sender is its keyed pseudonym, never the Telegram id (20 random hex digits may well contain "501")
    assert posts[0].author == Pseudonymizer.for_data_dir(services.settings.data_dir)("telegram", 501) != "telegram:501"
    (question,) = (q for _, q in iter_docs(services.storage, ORG, QUESTIONS))
    assert question["status"] == "answered" and question["chat_id"] is None


def test_answers_in_the_senders_language(services: Services, telegram: Any) -> None:
    client, _, _ = telegram
    fc = FactCheck(id="https://fc.example.fr/5g", claim="Les antennes 5G propagent le virus de la grippe dans les écoles de Lyon.",
                   rating="Faux", publisher="Vérif Lyon", url="https://fc.example.fr/5g", language="fr")
    services.storage.upsert_factchecks(ORG, [fc])
    index_factchecks(services.storage, services.embedder, ORG)
    (reply,) = _ask(client, 502, "Les antennes 5G propagent le virus de la grippe dans les écoles de Lyon", "en")
    assert reply["text"].startswith("Cette affirmation a été vérifiée par Vérif Lyon : Faux.")
    (reply,) = _ask(client, 502, "Có ai biết hôm nay giá xăng bao nhiêu không ạ?", "en")
    assert reply["text"].startswith("Cảm ơn bạn. Chúng tôi chưa có bài kiểm chứng")


def test_scam_link_gets_a_warning(services: Services, telegram: Any) -> None:
    client, runner, _ = telegram
    (reply,) = _ask(client, 503, SCAM, "vi")
    assert reply["text"].startswith("Cảnh báo: đường link vietcombank-secure-login.com")
    assert "vietcombank.com.vn" in reply["text"]
    runner.drain()
    (record,) = (r for _, r in iter_docs(services.storage, ORG, REPLIES))
    assert record["kind"] == "link_warning" and record["decided_by"].startswith("linkrisk") and record["evidence"]["reasons"]


def test_unknown_claim_goes_to_the_desk_and_is_answered_when_a_verdict_is_published(services: Services, telegram: Any) -> None:
    client, runner, _ = telegram
    text = "Uống nước chanh nóng mỗi sáng chữa khỏi bệnh tiểu đường trong một tuần"
    sent = client.send(504, text, "vi", forward_channel="tinnong24h")  # a forwarded channel post
    (reply,) = client.messages(504, after=sent["message_id"], wait=10)
    assert "chuyển cho nhóm kiểm chứng" in reply["text"]
    runner.drain()
    (question,) = (q for _, q in iter_docs(services.storage, ORG, QUESTIONS))
    assert question["status"] == "pending" and question["chat_id"] == "504" and question["forwarded"]
    post = services.storage.get_post(ORG, question["post_id"])
    assert post.urls == ["https://t.me/tinnong24h/12"] and post.raw["forwarded"] is True
    # the desk publishes a verdict on this claim (imported here; the web publication hook is tested below)
    verdict = FactCheck(id="https://fc.example.vn/chanh", claim="Uống nước chanh nóng mỗi sáng chữa khỏi bệnh tiểu đường trong một tuần",
                        rating="Sai", publisher="Kiểm chứng VN", url="https://fc.example.vn/chanh", language="vi")
    services.storage.upsert_factchecks(ORG, [verdict])
    assert runner.followups() == 1
    (update,) = client.messages(504, after=reply["message_id"], wait=5)
    assert update["text"].startswith("Cập nhật về thông tin bạn gửi: Kiểm chứng VN đã đăng bài kiểm chứng: Sai.")
    (question,) = (q for _, q in iter_docs(services.storage, ORG, QUESTIONS))
    assert question["status"] == "answered" and question["chat_id"] is None
    assert runner.followups() == 0  # answered once
    assert tipline_stats(services.storage, ORG)[0]["followups"] == 1


def test_a_published_case_on_a_tipline_question_answers_its_asker(services: Services, telegram: Any) -> None:
    from factbridge.workflow.accounts import Actor
    from factbridge.workflow.audit import AuditLog
    from factbridge.workflow.cases import CaseBook, RatingScale

    client, runner, _ = telegram
    (reply,) = _ask(client, 505, "Bộ Y tế yêu cầu mọi người tiêm mũi vắc-xin thứ năm trước Tết", "vi")
    runner.drain()
    (question,) = (q for _, q in iter_docs(services.storage, ORG, QUESTIONS))
    audit = AuditLog(services.storage)
    book = CaseBook(services.storage, audit, RatingScale.parse(services.settings.rating_scale))
    editor, reviewer = Actor("ed", ORG, "editor"), Actor("rev", ORG, "editor")
    case = book.open(ORG, editor, "Bộ Y tế yêu cầu tiêm mũi thứ năm", source_kind="post", source_id=question["post_id"], language="vi")
    book.add_evidence(ORG, editor, case.id, "link", url="https://moh.gov.vn/thong-bao")
    book.draft_verdict(ORG, editor, case.id, "False", "Bộ Y tế không có yêu cầu này.", headline="Không có yêu cầu tiêm mũi thứ năm", language="vi")
    book.approve(ORG, reviewer, case.id)
    book.publish(ORG, editor, case.id, "https://desk.example.org", "Desk VN")
    assert runner.followups() == 1
    (update,) = client.messages(505, after=reply["message_id"], wait=5)
    assert "Desk VN" in update["text"] and "False" in update["text"] and f"/factchecks/{case.id}" in update["text"]


def test_stop_opts_out_and_rate_limit(services: Services, tmp_path: Path) -> None:
    settings = services.settings.replace(tipline_rate_limit="2/60")
    services.settings = settings  # type: ignore[misc]
    with BotApiServer() as server:
        tipline = open_tipline("telegram", settings, token="123:test", api_url=server.bot_base_url)
        runner = TiplineRunner(tipline, TiplineDesk(services, ORG), poll_timeout=0.5, followup_every=3600)
        stop = threading.Event()
        thread = runner.start_thread(stop)
        client = BotApiClient(server.url, timeout=10)
        try:
            assert _ask(client, 601, "/stop")[0]["text"].startswith("You will receive no more messages")
            sent = client.send(601, "Is it true that the moon is made of cheese?")
            assert client.messages(601, after=sent["message_id"], wait=0.8) == []  # opted out: silence
            assert _ask(client, 601, "/start")[0]["text"].startswith("Hello!")
            users = dict(iter_docs(services.storage, ORG, USERS))
            assert all(":" in k and "601" not in k for k in users)
            assert len(_ask(client, 602, "first question about the weather today")) == 1
            assert len(_ask(client, 602, "second question about the weather today")) == 1
            (limited,) = _ask(client, 602, "third question about the weather today")
            assert limited["text"].startswith("You have sent many messages")
            sent = client.send(602, "fourth question about the weather today")
            assert client.messages(602, after=sent["message_id"], wait=0.8) == []  # warned once, then silence
        finally:
            stop.set()
            thread.join(10)
            tipline.close()
    assert tipline_stats(services.storage, ORG)[0]["rate_limited"] == 2


# -- Zalo ----------------------------------------------------------------------------


class _ZaloApi(BaseHTTPRequestHandler):
    sent: list[dict[str, Any]] = []

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        ok = self.path == "/v3.0/oa/message/cs" and self.headers.get("access_token") == "zalo-token"
        if ok:
            type(self).sent.append(body)
        data = json.dumps({"error": 0, "message": "Success", "data": {"message_id": "m1"}} if ok else {"error": -216, "message": "Access token is invalid"}).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


def _post_event(url: str, event: dict[str, Any], secret: str = "oa-secret") -> int:
    body = json.dumps(event).encode()
    mac = zalo_signature("app-1", body, str(event["timestamp"]), secret)
    request = urllib.request.Request(url, data=body, method="POST", headers={"Content-Type": "application/json", "X-ZEvent-Signature": f"mac={mac}"})
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)


def test_zalo_tipline_webhook_signature_reply_and_feedback(services: Services) -> None:
    _ZaloApi.sent = []
    api = ThreadingHTTPServer(("127.0.0.1", 0), _ZaloApi)
    threading.Thread(target=api.serve_forever, daemon=True).start()
    tipline = open_tipline("zalo", services.settings, access_token="zalo-token", oa_secret="oa-secret", app_id="app-1",
                           api_url=f"http://127.0.0.1:{api.server_address[1]}", port=0)
    runner = TiplineRunner(tipline, TiplineDesk(services, ORG), poll_timeout=0.2, followup_every=3600)
    try:
        url = tipline.webhook_url  # type: ignore[attr-defined]
        fc = _claim(services)
        event = {"app_id": "app-1", "event_name": "user_send_text", "sender": {"id": "8431"}, "recipient": {"id": "oa-9"},
                 "message": {"text": fc.claim, "msg_id": "z1"}, "timestamp": str(int(time.time() * 1000))}
        assert _post_event(url, event, secret="wrong") == 401
        assert _post_event(url, event) == 200
        assert runner.step(timeout=5) == 1
        (sent,) = _ZaloApi.sent
        assert sent["recipient"] == {"user_id": "8431"} and fc.url in sent["message"]["text"]
        buttons = sent["message"]["attachment"]["payload"]["buttons"]
        assert [b["type"] for b in buttons] == ["oa.query.hide", "oa.query.hide"]
        press = {**event, "message": {"text": buttons[1]["payload"], "msg_id": "z2"}}
        assert _post_event(url, press) == 200
        assert runner.step(timeout=5) == 1
        assert _ZaloApi.sent[-1]["message"]["text"] == "Thank you for your feedback."
        runner.drain()
        (record,) = (r for _, r in iter_docs(services.storage, ORG, REPLIES))
        assert record["feedback"] == "not_helpful"
        assert all("8431" not in p.author for p in services.storage.iter_posts(ORG))
    finally:
        runner.close()
        tipline.close()
        api.shutdown()
        api.server_close()


def test_tipline_try_command(services: Services, telegram: Any, tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from factbridge.cli import app

    client, runner, server = telegram
    fc = _claim(services)
    result = CliRunner().invoke(app, ["--data-dir", str(tmp_path), "tipline", "try", fc.claim, "--botapi", server.url, "--user-id", "777"],
                                env={"COLUMNS": "300"})
    assert result.exit_code == 0, result.output
    assert fc.url in result.output and "👍 Helpful" in result.output and "answered in" in result.output
    refused = CliRunner().invoke(app, ["--data-dir", str(tmp_path), "tipline", "try", "hello", "--botapi", "http://127.0.0.1:9"])
    assert refused.exit_code != 0 and "make demo" in str(refused.exception)


class _FlakyTipline:
    """Wraps a real tipline; its first send fails as a refused request would."""

    name = "flaky"

    def __init__(self, inner: Any) -> None:
        self.inner, self.failures = inner, 1

    def poll(self, timeout: float) -> Any:
        return self.inner.poll(timeout)

    def send(self, reply: Any) -> None:
        from factbridge.errors import FactBridgeError

        if self.failures:
            self.failures -= 1
            raise FactBridgeError("Telegram Bot API: Forbidden: bot was blocked by the user")
        self.inner.send(reply)

    def close(self) -> None:
        self.inner.close()


def test_a_followup_that_could_not_be_sent_is_tried_again(services: Services) -> None:
    with BotApiServer() as server:
        tipline = _FlakyTipline(open_tipline("telegram", services.settings, token="123:test", api_url=server.bot_base_url))
        tipline.failures = 0
        runner = TiplineRunner(tipline, TiplineDesk(services, ORG), poll_timeout=0.2, followup_every=3600)
        client = BotApiClient(server.url, timeout=10)
        try:
            sent = client.send(808, "Nước dừa tươi chữa khỏi ung thư gan sau ba ngày")
            assert runner.step(timeout=5) == 1
            runner.drain()
            services.storage.upsert_factchecks(ORG, [FactCheck(id="https://fc.example.vn/dua", claim="Nước dừa tươi chữa khỏi ung thư gan sau ba ngày",
                                                               rating="Sai", publisher="KC", url="https://fc.example.vn/dua", language="vi")])
            tipline.failures = 1
            assert runner.followups() == 0 and runner.errors == 1
            (question,) = (q for _, q in iter_docs(services.storage, ORG, QUESTIONS))
            assert question["status"] == "pending" and question["chat_id"] == "808"
            assert runner.followups() == 1
            assert client.messages(808, after=sent["message_id"], wait=2)[-1]["text"].startswith("Cập nhật")
        finally:
            runner.close()
            tipline.close()
