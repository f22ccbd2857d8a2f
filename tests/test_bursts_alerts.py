"""Bursts (Kleinberg), resurfacing debunks, alert storage and webhook delivery to a real local server."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from factbridge.cli import app
from factbridge.models import FactCheck, MatchCandidate, Post
from factbridge.pipeline import bursts
from factbridge.pipeline.alerts import DELIVERIES, WebhookDispatcher, delivery_id
from factbridge.pipeline.narratives import assign_posts
from factbridge.pipeline.records import Alert
from factbridge.services import Services
from factbridge.settings import Settings

T0 = datetime(2026, 3, 1, 0, 0, tzinfo=UTC)
TEXT = "Vaccine causes infertility in young women, claims viral video from clinic"


def test_burst_states_mark_the_spike_only() -> None:
    counts = np.array([1, 0, 1, 1, 0, 1, 0, 12, 15, 9, 1, 0, 1, 0], dtype=float)
    states = bursts.burst_states(counts, baseline=1.0, scale=3.0, gamma=1.0)
    assert states.tolist() == [0] * 7 + [1, 1, 1] + [0] * 4
    assert bursts.burst_states(np.ones(24), 1.0, 3.0, 1.0).sum() == 0


def _posts(prefix: str, start: datetime, n: int, every_min: float) -> list[Post]:
    return [Post(id=f"{prefix}{i}", text=f"{TEXT} {i}", language="en", created_at=start + timedelta(minutes=every_min * i)) for i in range(n)]


def _assign(services: Services, posts: list[Post]) -> dict:
    storage, org = services.storage, services.settings.org
    storage.upsert_posts(org, posts)
    vecs = np.tile(np.eye(16, dtype=np.float32)[0], (len(posts), 1))
    assign_posts(storage, org, posts, vecs, Settings(narrative_threshold=0.9, topic_threshold=0.5).narratives)
    return bursts.bursts_stage(services, org, posts)


def test_burst_alert_with_evidence_then_updated_not_duplicated(hashing_services: Services) -> None:
    quiet = _posts("q", T0, 12, every_min=240)  # one post every four hours for two days
    assert _assign(hashing_services, quiet)["alerts"] == 0
    spike = _posts("s", T0 + timedelta(days=2, hours=1), 20, every_min=2)
    summary = _assign(hashing_services, spike)
    assert summary["alerts"] == 1 and summary["burst"] == 1
    storage, org = hashing_services.storage, hashing_services.settings.org
    (alert_id, alert), = storage.list_docs(org, bursts.ALERTS)
    ev = alert["evidence"]
    assert alert["kind"] == "burst" and ev["posts_in_burst"] == 20
    assert ev["baseline_per_bin"] < 1 and ev["burst_rate_per_bin"] == pytest.approx(ev["baseline_per_bin"] * 3, rel=1e-3)
    assert {p["post_id"] for p in ev["posts"]} == {p.id for p in spike}
    assert sum(c["posts"] for c in ev["counts"]) == 20
    assert alert["decided_by"].startswith(bursts.BURSTS_VERSION)
    more = _posts("t", T0 + timedelta(days=2, hours=1, minutes=45), 15, every_min=1)
    summary = _assign(hashing_services, more)
    assert summary["alerts"] == 0 and summary["updated"] == 1
    (same_id, updated), = storage.list_docs(org, bursts.ALERTS)
    assert same_id == alert_id and updated["evidence"]["posts_in_burst"] == 35


def test_resurfacing_debunk_is_its_own_kind(hashing_services: Services) -> None:
    storage, org = hashing_services.storage, hashing_services.settings.org
    storage.upsert_factchecks(org, [FactCheck(id="fc-infertility", claim=TEXT, rating="False", publisher="Desk", url="https://example.org/fc")])
    first = _posts("a", T0, 10, every_min=3)
    storage.upsert_posts(org, first)
    storage.replace_matches(org, "a0", [MatchCandidate(factcheck_id="fc-infertility", rank=1, fused_score=0.93, decision="match", decided_by="test")])
    _assign(hashing_services, first)
    again = _posts("b", T0 + timedelta(days=6), 12, every_min=4)  # quiet for six days, then back
    summary = _assign(hashing_services, again)
    assert summary["resurfacing"] == 1
    alert = next(d for _, d in storage.list_docs(org, bursts.ALERTS) if d["kind"] == "resurfacing")
    assert alert["evidence"]["quiet_hours_before"] >= 72
    assert alert["evidence"]["debunks"][0]["factcheck_id"] == "fc-infertility"
    assert alert["evidence"]["debunks"][0]["rating"] == "False"


def test_reworded_debunked_claim_resurfacing_in_a_new_narrative(hashing_services: Services) -> None:
    storage, org = hashing_services.storage, hashing_services.settings.org
    storage.upsert_factchecks(org, [FactCheck(id="fc-5g", claim="5G spreads the virus", rating="Faux", publisher="Desk")])
    old = [Post(id=f"o{i}", text=f"5G towers spread the virus {i}", language="en", created_at=T0 + timedelta(minutes=5 * i)) for i in range(6)]
    new = [Post(id=f"n{i}", text=f"Les antennes relais transmettent le virus, partagez {i}", language="fr", created_at=T0 + timedelta(days=10, minutes=3 * i)) for i in range(10)]
    storage.upsert_posts(org, old + new)
    for pid in ("o0", "n0"):
        storage.replace_matches(org, pid, [MatchCandidate(factcheck_id="fc-5g", rank=1, fused_score=0.9, decision="match", decided_by="test")])
    params = Settings(narrative_threshold=0.9, topic_threshold=0.5).narratives
    assign_posts(storage, org, old, np.tile(np.eye(16, dtype=np.float32)[0], (6, 1)), params)
    assign_posts(storage, org, new, np.tile(np.eye(16, dtype=np.float32)[1], (10, 1)), params)  # another narrative
    summary = bursts.bursts_stage(hashing_services, org, new)
    assert summary["resurfacing"] == 1
    alert = next(d for _, d in storage.list_docs(org, bursts.ALERTS) if d["kind"] == "resurfacing")
    debunk = alert["evidence"]["debunks"][0]
    assert alert["evidence"]["quiet_hours_before"] is None  # the narrative itself is new
    assert debunk["earlier_matched_posts"] == 1 and debunk["quiet_hours_before"] >= 72


class _Receiver:
    """A real HTTP server on 127.0.0.1 answering a scripted list of statuses (then 200)."""

    def __init__(self, statuses: list[int], delay_s: float = 0.0) -> None:
        self.statuses = list(statuses)
        self.delay_s = delay_s
        self.received: list[dict] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's naming
                body = self.rfile.read(int(self.headers["Content-Length"]))
                time.sleep(receiver.delay_s)
                status = receiver.statuses.pop(0) if receiver.statuses else 200
                receiver.received.append({"status": status, "body": json.loads(body), "attempt": self.headers["X-FactBridge-Attempt"], "signature": self.headers.get("X-FactBridge-Signature")})
                self.send_response(status)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver_factory() -> Iterator:
    made: list[_Receiver] = []

    def make(statuses: list[int], delay_s: float = 0.0) -> _Receiver:
        made.append(_Receiver(statuses, delay_s))
        return made[-1]

    yield make
    for r in made:
        r.close()


ALERT = Alert(id="alert-x", kind="burst", summary="", evidence={"posts_in_burst": 9})


def test_webhook_retries_with_backoff_until_delivered(storage, receiver_factory) -> None:  # type: ignore[no-untyped-def]
    receiver = receiver_factory([503, 500])
    dispatcher = WebhookDispatcher(storage, [receiver.url], secret="s3cret", max_attempts=5, backoff_s=0.05, timeout_s=2)
    dispatcher.submit("o", ALERT)
    assert dispatcher.wait_idle(10)
    dispatcher.close()
    assert [r["status"] for r in receiver.received] == [503, 500, 200]
    assert [r["attempt"] for r in receiver.received] == ["1", "2", "3"]
    assert receiver.received[-1]["body"]["alert"]["id"] == "alert-x"
    assert receiver.received[0]["signature"].startswith("sha256=")
    record = storage.get_docs("o", DELIVERIES, [delivery_id("alert-x", receiver.url)])[delivery_id("alert-x", receiver.url)]
    assert record["state"] == "delivered"
    assert [a["status"] for a in record["attempts"]] == [503, 500, 200]
    times = [datetime.fromisoformat(a["at"]) for a in record["attempts"]]
    assert (times[2] - times[1]) >= (times[1] - times[0])  # the delay doubles


def test_webhook_retries_are_bounded_and_recorded(storage, receiver_factory) -> None:  # type: ignore[no-untyped-def]
    receiver = receiver_factory([500] * 10)
    dispatcher = WebhookDispatcher(storage, [receiver.url, "http://127.0.0.1:9/unreachable"], max_attempts=3, backoff_s=0.02, timeout_s=1)
    dispatcher.submit("o", ALERT)
    assert dispatcher.wait_idle(15)
    dispatcher.close()
    assert len(receiver.received) == 3
    records = storage.get_docs("o", DELIVERIES, [delivery_id("alert-x", receiver.url), delivery_id("alert-x", "http://127.0.0.1:9/unreachable")])
    assert {r["state"] for r in records.values()} == {"failed"}
    assert all(len(r["attempts"]) == 3 for r in records.values())
    assert "Error" in records[delivery_id("alert-x", "http://127.0.0.1:9/unreachable")]["attempts"][0]["error"]


def test_slow_webhook_never_blocks_ingest(tmp_path: Path, receiver_factory) -> None:  # type: ignore[no-untyped-def]
    from factbridge.settings import load_settings

    receiver = receiver_factory([], delay_s=1.5)
    settings = load_settings(env={}, overrides={
        "data_dir": str(tmp_path), "storage_url": "sqlite:///:memory:", "embedder": "hashing", "embed_cache": "off",
        "alert_webhooks": receiver.url, "webhook_timeout_s": "5",
    })
    with Services(settings) as services:
        _assign(services, _posts("q", T0, 8, every_min=300))
        started = time.perf_counter()
        summary = _assign(services, _posts("s", T0 + timedelta(days=2), 25, every_min=1))
        took = time.perf_counter() - started
        assert summary["alerts"] == 1
        assert took < 1.0, f"ingest waited for the webhook ({took:.2f} s)"
        assert services.alert_dispatcher.wait_idle(10)
    assert len(receiver.received) == 1 and receiver.received[0]["body"]["alert"]["kind"] == "burst"


def test_burst_becomes_resurfacing_when_its_debunk_arrives_later(tmp_path: Path, receiver_factory) -> None:  # type: ignore[no-untyped-def]
    """The story spread, went quiet, came back (a burst); only then was the debunk imported:
    the re-check re-classifies the alert, records why, and delivers it as a new event of the
    same alert, keeping the first delivery."""
    from factbridge.pipeline.alerts import DELIVERIES, delivery_id
    from factbridge.pipeline.narratives import refresh_factchecks
    from factbridge.settings import load_settings

    receiver = receiver_factory([])
    settings = load_settings(env={}, overrides={
        "data_dir": str(tmp_path), "storage_url": "sqlite:///:memory:", "embedder": "hashing", "embed_cache": "off",
        "alert_webhooks": receiver.url, "webhook_timeout_s": "5",
    })
    with Services(settings) as services:
        storage, org = services.storage, settings.org
        _assign(services, _posts("a", T0, 10, every_min=3))
        summary = _assign(services, _posts("b", T0 + timedelta(days=6), 12, every_min=4))  # quiet for six days, then back
        assert summary["alerts"] == 1 and summary["burst"] == 1
        alert_id, alert = storage.list_docs(org, bursts.ALERTS)[0]  # the latest burst (the first spread raised one too)
        assert alert["evidence"]["debunks"] == [] and {p["post_id"] for p in alert["evidence"]["posts"]} <= {f"b{i}" for i in range(12)}

        storage.upsert_factchecks(org, [FactCheck(id="fc-infertility", claim=TEXT, rating="False", publisher="Desk", url="https://example.org/fc")])
        storage.replace_matches(org, "b3", [MatchCandidate(factcheck_id="fc-infertility", rank=1, fused_score=0.93, decision="match", decided_by="test")])
        changed = refresh_factchecks(storage, org, ["b3"])["changed"]
        outcome = bursts.reclassify_alerts(services, org, changed)
        assert outcome == {"alerts_checked": 1, "reclassified": 1, "updated": 0}
        after = storage.get_docs(org, bursts.ALERTS, [alert_id])[alert_id]
        assert after["kind"] == "resurfacing" and after["evidence"]["debunks"][0]["factcheck_id"] == "fc-infertility"
        assert after["reclassified"][0]["from"] == "burst" and after["reclassified"][0]["to"] == "resurfacing"
        assert after["raised_at"] == alert["raised_at"]
        assert bursts.reclassify_alerts(services, org, changed)["reclassified"] == 0  # nothing new: nothing sent again
        assert services.alert_dispatcher.wait_idle(10)
        first, second = (storage.get_docs(org, DELIVERIES, [delivery_id(key, receiver.url)]) for key in (alert_id, f"{alert_id}#1"))
        assert first[delivery_id(alert_id, receiver.url)]["state"] == "delivered"
        assert second[delivery_id(f"{alert_id}#1", receiver.url)]["state"] == "delivered"
        # every alert, delivery and burst state this flow stored reads back through its record unchanged
        from factbridge.pipeline.records import BURST_STATE, AlertDelivery, BurstState

        for collection, read in ((bursts.ALERTS, Alert.from_doc), (BURST_STATE, BurstState.from_doc),
                                 (DELIVERIES, lambda _, d: AlertDelivery.from_doc(d))):
            stored = storage.list_docs(org, collection, limit=1000)
            assert stored and all(read(i, d).to_doc() == d for i, d in stored), collection
        (delivered,) = AlertDelivery.from_doc(first[delivery_id(alert_id, receiver.url)]).attempts
        assert delivered.ok and delivered.status == 200
    assert [r["body"]["alert"]["kind"] for r in receiver.received] == ["burst", "burst", "resurfacing"]


def test_alerts_cli_lists_alerts(tmp_path: Path) -> None:
    from factbridge.settings import load_settings

    db = tmp_path / "fb.db"
    settings = load_settings(env={}, overrides={"data_dir": str(tmp_path), "storage_url": f"sqlite:///{db}", "embedder": "hashing", "embed_cache": "off"})
    with Services(settings) as services:
        _assign(services, _posts("q", T0, 8, every_min=300))
        _assign(services, _posts("s", T0 + timedelta(days=2), 25, every_min=1))
    runner = CliRunner()
    base = ["--data-dir", str(tmp_path), "--storage-url", f"sqlite:///{db}", "--embedder", "hashing"]
    result = runner.invoke(app, [*base, "alerts"])
    assert result.exit_code == 0, result.output
    assert "Alerts (1 in all)" in result.output
    listed = json.loads(runner.invoke(app, [*base, "alerts", "--json"]).output)
    assert listed[0]["evidence"]["posts_in_burst"] == 25


def test_alerts_show_and_redeliver_read_the_typed_deliveries(tmp_path: Path, receiver_factory) -> None:  # type: ignore[no-untyped-def]
    from factbridge.settings import load_settings

    receiver = receiver_factory([500])  # the first delivery is refused, the next one accepted
    db = tmp_path / "fb.db"
    settings = load_settings(env={}, overrides={"data_dir": str(tmp_path), "storage_url": f"sqlite:///{db}", "embedder": "hashing", "embed_cache": "off",
                                                "alert_webhooks": receiver.url, "webhook_max_attempts": 1, "webhook_timeout_s": "5"})
    with Services(settings) as services:
        _assign(services, _posts("q", T0, 8, every_min=300))
        _assign(services, _posts("s", T0 + timedelta(days=2), 25, every_min=1))
        assert services.alert_dispatcher.wait_idle(10)
        ((alert_id, _),) = services.storage.list_docs(settings.org, bursts.ALERTS)
    runner = CliRunner()
    base = ["--data-dir", str(tmp_path), "--storage-url", f"sqlite:///{db}", "--embedder", "hashing"]
    env = {"FACTBRIDGE_ALERT_WEBHOOKS": receiver.url, "FACTBRIDGE_WEBHOOK_MAX_ATTEMPTS": "1"}
    shown = json.loads(runner.invoke(app, [*base, "alerts", "show", alert_id], env=env).output)
    assert shown["alert"]["id"] == alert_id and [d["state"] for d in shown["deliveries"]] == ["failed"]
    redelivered = runner.invoke(app, [*base, "alerts", "redeliver", "--wait", "10"], env=env)
    assert redelivered.exit_code == 0 and "re-sent 1 alerts" in redelivered.output, redelivered.output
    shown = json.loads(runner.invoke(app, [*base, "alerts", "show", alert_id], env=env).output)
    (delivery,) = shown["deliveries"]
    assert delivery["state"] == "delivered" and [a["status"] for a in delivery["attempts"]] == [500, 200]
    assert runner.invoke(app, [*base, "alerts"], env=env).exit_code == 0  # the table reads the delivery states too
