"""What the tipline answers: one decision path for every messenger.

A citizen's message is matched against the fact-check library at once:

* a link that the link-risk scorer flags (scam, look-alike of an official site)
  gets a warning;
* a claim matched to a published fact-check ("match" decision) gets the
  fact-check in the sender's language, with "helpful / not" buttons;
* anything else is passed to the desk (stored as a post of platform
  `tipline:<messenger>`, so it reaches triage) and answered later, when a
  matching verdict is published (`followups()`).

Nothing identifying is kept: the sender becomes a keyed-HMAC pseudonym; the
chat id needed to write back later is stored only while a question is pending
and erased once it is answered or the sender opts out (/stop). Every reply
record carries its evidence (scores, reasons) and `decided_by`.

Collections (org-scoped documents, typed in `factbridge.tiplines.records`): tipline_users
(opt-out), tipline_questions (with their index tipline_pending: the follow-up pass reads
only the questions still waiting), tipline_replies (with feedback), tipline_stats (per day
and language), tipline_outbox (verdicts of cases opened on a question).
"""

from __future__ import annotations

import dataclasses
import hashlib
import threading
import time
from collections import defaultdict, deque
from collections.abc import Callable
from datetime import UTC, datetime
from functools import partial
from typing import Any

from factbridge.linkrisk.urls import extract_urls
from factbridge.models import FactCheck, MatchCandidate, Post
from factbridge.pipeline.prepare import prepare_post
from factbridge.pseudonyms import Pseudonymizer
from factbridge.tiplines.base import Incoming, Reply
from factbridge.tiplines.messages import LANGUAGES, say
from factbridge.tiplines.records import (
    REPLIES,
    OutboxEntry,
    TiplineOutbox,
    TiplineQuestion,
    TiplineQuestions,
    TiplineReplies,
    TiplineReply,
    TiplineStat,
    TiplineStats,
    TiplineUser,
    TiplineUsers,
)
from factbridge.tiplines.records import (
    STAT_KEYS as STAT_KEYS,  # re-exported: where it was
)

DECIDED_BY = "tipline-desk/1"


def _now() -> datetime:
    return datetime.now(UTC)


def parse_rate(value: str) -> tuple[int, float]:
    count, _, seconds = value.partition("/")
    return int(count), float(seconds)


class RateLimiter:
    """Sliding window per key: at most `count` events in `seconds` (in memory: one runner
    process per tipline)."""

    def __init__(self, count: int, seconds: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.count, self.seconds, self.clock = count, seconds, clock
        self._hits: dict[str, deque[float]] = defaultdict(deque)
        self._lock = threading.Lock()

    def allow(self, key: str) -> bool:
        now = self.clock()
        with self._lock:
            hits = self._hits[key]
            while hits and now - hits[0] > self.seconds:
                hits.popleft()
            if len(hits) >= self.count:
                return False
            hits.append(now)
            return True


class TiplineDesk:
    def __init__(self, services: Any, org: str, *, pseudonymize: Pseudonymizer | None = None,
                 rate: str | None = None) -> None:
        self.services = services
        self.org = org
        self.storage = services.storage
        self.users = TiplineUsers(self.storage)
        self.questions = TiplineQuestions(self.storage)
        self.replies = TiplineReplies(self.storage)
        self.outbox = TiplineOutbox(self.storage)
        self.pseudonymize = pseudonymize or Pseudonymizer.for_data_dir(services.settings.data_dir)
        count, seconds = parse_rate(rate or services.settings.tipline_rate_limit)
        self.limiter = RateLimiter(count, seconds)
        self._warned_limit: set[str] = set()
        self._lock = threading.Lock()

    def warm(self) -> None:
        """Load the matcher, the link scorer and language identification before the first
        citizen writes (the first answer would otherwise wait for them)."""
        from factbridge.text.langid import load_models

        load_models(LANGUAGES)
        load_models(self.services.languages)
        self.services.link_scorer(self.org)
        # one text per script: Khmer segmentation loads its model on first use
        samples = [prepare_post(Post(id=f"warm-{n}", text=text), self.services.languages)
                   for n, text in enumerate(("warm up the matcher", "khởi động bộ so khớp", "ការពិនិត្យការពិត", "préparer la recherche"))]
        if self.storage.count_factchecks(self.org):
            self.services.matcher(self.org).match_posts(samples)

    # -- incoming ------------------------------------------------------------------
    def handle(self, event: Incoming) -> tuple[list[Reply], list[Post]]:
        """Replies to send now, and the question as a post for the desk, to store once they are
        sent (`store`: it runs the pipeline stages, the citizen does not wait for them)."""
        who = self.pseudonymize(event.platform, event.user_id)
        if event.kind == "feedback":
            return self._feedback(event, who), []
        text = (event.text or "").strip()
        user = self.users.get(self.org, who) or TiplineUser(who)
        command = text.split()[0].lower().split("@")[0] if text.startswith("/") else ""
        language = self._language(text, event.language_hint, user)
        if command == "/stop":
            self.users.put(self.org, TiplineUser(who, opted_out=True, language=language, changed_at=_now().isoformat()))
            self._forget_chats(who)
            return [Reply(event.chat_id, say("stopped", language))], []
        if command and command != "/start":  # /help and the like: say what the tipline does
            return ([] if user.opted_out else [Reply(event.chat_id, say("welcome", language))]), []
        if command == "/start":
            self.users.put(self.org, TiplineUser(who, opted_out=False, language=language, changed_at=_now().isoformat()))
            return [Reply(event.chat_id, say("welcome", language))], []
        if user.opted_out:
            return [], []  # opted out: nothing answered, nothing stored
        if not self.limiter.allow(who):
            self._bump(language, "rate_limited")
            if who in self._warned_limit:
                return [], []
            self._warned_limit.add(who)
            return [Reply(event.chat_id, say("rate_limited", language))], []
        self._warned_limit.discard(who)
        if not text and not event.urls:
            return [Reply(event.chat_id, say("empty", language))], []
        return self._question(event, who, text, language)

    def _language(self, text: str, hint: str | None, user: TiplineUser) -> str:
        from factbridge.text.langid import detect_language

        hint = (hint or "").split("-")[0].lower() or None
        if text and not text.startswith("/"):
            guess = detect_language(text, LANGUAGES)
            if guess.language in LANGUAGES and (guess.confidence >= 0.5 or not hint):
                return guess.language
        if hint in LANGUAGES:
            return hint
        return user.language if user.language in LANGUAGES else "en"

    def _question(self, event: Incoming, who: str, text: str, language: str) -> tuple[list[Reply], list[Post]]:
        asked = _now()
        qid = hashlib.sha256(f"{who}\x00{event.message_id}\x00{text}".encode()).hexdigest()[:24]
        post = Post(id=f"tipline-{qid}", platform=f"tipline:{event.platform}", author=who, created_at=asked, text=text or " ".join(event.urls),
                    urls=list(event.urls), language=None, source=f"tipline:{event.platform}", raw={"forwarded": event.forwarded})
        post = prepare_post(post, self.services.languages)
        replies: list[Reply] = []
        records: list[TiplineReply] = []
        warnings = self._link_warnings(post, language)
        for warning_text, evidence in warnings:
            rid = f"{qid}-w{len(records)}"
            records.append(TiplineReply(rid, qid, "link_warning", language, who, evidence, str(evidence.get("decided_by", "")), asked.isoformat()))
            replies.append(Reply(event.chat_id, warning_text, self._buttons(rid, language), reply_to=event.message_id, meta={"reply_id": rid}))
        candidate = self._best_match(post)
        status = "answered" if candidate or warnings else "pending"
        if candidate is not None:
            assert candidate.factcheck is not None
            rid = f"{qid}-f"
            records.append(TiplineReply(rid, qid, "factcheck", language, who, _evidence(candidate), f"{DECIDED_BY}; {candidate.decided_by}",
                                        asked.isoformat(), factcheck_id=candidate.factcheck_id))
            replies.append(Reply(event.chat_id, _factcheck_text("factcheck", candidate.factcheck, language), self._buttons(rid, language),
                                 reply_to=event.message_id, meta={"reply_id": rid, "factcheck_id": candidate.factcheck_id}))
        elif not warnings:
            replies.append(Reply(event.chat_id, say("to_desk", language), reply_to=event.message_id, meta={"reply_id": ""}))
        question = TiplineQuestion(
            qid, who, event.platform, language, post.id, status, asked.isoformat(), forwarded=event.forwarded,
            # the chat id is what lets us write back later: kept only while pending
            chat_id=event.chat_id if status == "pending" else None,
            latency_ms=round((time.monotonic() - event.received_at) * 1000, 1) if event.received_at else None)
        self.questions.put(self.org, [question], also=[(REPLIES, TiplineReplies.rows(records))] if records else [])
        self._bump(language, "questions")
        self._bump(language, "answered" if candidate else "to_desk" if not warnings else "warned")
        if warnings and candidate:
            self._bump(language, "warned")
        return replies, [post]

    def store(self, posts: list[Post]) -> None:
        """Store questions as posts and run the stages on them (triage sees what citizens ask)."""
        from factbridge.sources.ingest import ingest_items

        if posts:
            ingest_items(self.services, self.org, posts, source=posts[0].source)

    def _best_match(self, post: Post) -> MatchCandidate | None:
        if not self.storage.count_factchecks(self.org):
            return None
        result = self.services.matcher(self.org).match_posts([post], with_factchecks=True)[0]
        best = result.best
        if best is None or best.decision != "match" or best.factcheck is None:
            return None
        return best

    def _link_warnings(self, post: Post, language: str) -> list[tuple[str, dict[str, Any]]]:
        urls = list(dict.fromkeys([*extract_urls(post.text), *post.urls]))
        if not urls:
            return []
        scorer = self.services.link_scorer(self.org)
        out = []
        for risk in scorer.score_many(urls):
            if isinstance(risk, Exception) or not risk.flagged:
                continue
            reasons = [say("lookalike", language, official=str(r.evidence.get("target") or risk.official or ""))
                       if r.category == "lookalike" else say("risky", language) for r in risk.reasons]
            text = say("link_warning", language, host=risk.unicode_host or risk.host, reasons="; ".join(dict.fromkeys(reasons)))
            out.append((text, {"url": risk.normalized, "score": round(risk.score, 4), "level": risk.level,
                               "reasons": [r.as_dict() for r in risk.reasons], "decided_by": risk.decided_by}))
        return out

    def _buttons(self, reply_id: str, language: str) -> list[tuple[str, str]]:
        return [(say("helpful", language), f"fb:{reply_id}:1"), (say("not_helpful", language), f"fb:{reply_id}:0")]

    def _feedback(self, event: Incoming, who: str) -> list[Reply]:
        kind, _, rest = event.data.partition(":")
        reply_id, _, value = rest.rpartition(":")
        record = self.replies.get(self.org, [reply_id]).get(reply_id) if kind == "fb" else None
        if record is None or record.who != who or value not in {"0", "1"}:
            return [Reply(event.chat_id, "", ack_callback=event.callback_id)]
        language = record.language
        first = record.feedback is None
        feedback = "helpful" if value == "1" else "not_helpful"
        self.replies.put(self.org, [record.with_feedback(feedback, _now().isoformat())])
        if first:
            self._bump(language, feedback)
        return [Reply(event.chat_id, say("thanks_feedback", language), ack_callback=event.callback_id)]

    # -- follow-ups: answers once a verdict is published ----------------------------
    def followups(self) -> list[tuple[Reply, Callable[[], None]]]:
        """Answers to pending questions that a fact-check now matches (a verdict published on
        the workspace, or imported), each with what to record once it is sent: the question
        is then answered (never again) and its chat id erased."""
        from factbridge.pipeline.matching import index_factchecks

        pending = self.questions.waiting(self.org)  # the pending lists and these questions only
        if not pending or not self.storage.count_factchecks(self.org):
            return []
        index_factchecks(self.storage, self.services.embedder, self.org)  # verdicts published since
        posts = self.storage.get_posts(self.org, [q.post_id for q in pending])
        outbox = self.outbox.get(self.org, [q.post_id for q in pending])
        ready = [(q, posts[q.post_id]) for q in pending if q.post_id in posts]
        if not ready:
            return []
        results = self.services.matcher(self.org).match_posts([p for _, p in ready], with_factchecks=True)
        replies: list[tuple[Reply, Callable[[], None]]] = []
        for (question, post), result in zip(ready, results, strict=True):
            published = outbox.get(post.id)
            fc: FactCheck | None = None
            evidence: dict[str, Any]
            if published:  # a case opened on this very question was published
                fc = FactCheck.model_validate(published.factcheck)
                evidence = {"case_id": published.case_id, "link": "case opened on the question"}
                decided_by = f"{DECIDED_BY}; case"
            elif result.best and result.best.decision == "match" and result.best.factcheck:
                fc = result.best.factcheck
                evidence = _evidence(result.best)
                decided_by = f"{DECIDED_BY}; {result.best.decided_by}"
            if fc is None:
                continue
            language = question.language
            rid = f"{question.id}-u"
            assert question.chat_id is not None  # waiting questions have one
            reply = Reply(question.chat_id, _factcheck_text("followup", fc, language), self._buttons(rid, language), meta={"reply_id": rid, "factcheck_id": fc.id})
            record = TiplineReply(rid, question.id, "followup", language, question.who, evidence, decided_by, "", factcheck_id=fc.id)
            replies.append((reply, partial(self._followup_sent, question, record)))
        return replies

    def _followup_sent(self, question: TiplineQuestion, record: TiplineReply) -> None:
        now = _now().isoformat()
        answered = dataclasses.replace(question, status="answered", chat_id=None, answered_at=now)
        self.questions.put(self.org, [answered], also=[(REPLIES, TiplineReplies.rows([dataclasses.replace(record, sent_at=now)]))])
        self._bump(record.language, "followups")

    # -- records ---------------------------------------------------------------------
    def _forget_chats(self, who: str) -> None:
        """/stop: the sender's waiting questions are withdrawn and their chat ids erased (read
        through the sender's pending list, not a scan of every question)."""
        withdrawn = [dataclasses.replace(q, chat_id=None, status="withdrawn") for q in self.questions.waiting_of(self.org, who)]
        if withdrawn:
            self.questions.put(self.org, withdrawn)

    def _bump(self, language: str, key: str, day: str | None = None) -> None:
        bump_stat(self.storage, self.org, language, key, day, self._lock)


def bump_stat(storage: Any, org: str, language: str, key: str, day: str | None = None, lock: threading.Lock | None = None) -> None:
    stats = TiplineStats(storage)
    with lock or threading.Lock():
        stats.put(org, stats.get(org, day or _now().date().isoformat(), language).bumped(key))


def tipline_stats(storage: Any, org: str, days: int = 14) -> list[TiplineStat]:
    """Per day and language, newest day first: the rows of the latest `days` days with any."""
    return TiplineStats(storage).latest(org, days)


def _evidence(candidate: MatchCandidate) -> dict[str, Any]:
    return {"factcheck_id": candidate.factcheck_id, "fused_score": round(candidate.fused_score, 4), "decision": candidate.decision,
            "dense": candidate.dense.model_dump(), "lexical": candidate.lexical.model_dump()}


def _factcheck_text(key: str, fc: FactCheck, language: str) -> str:
    return say(key, language, publisher=fc.publisher or "?", rating=fc.rating or "?", claim=(fc.title or fc.claim)[:300], url=fc.url or "")


def notify_published(storage: Any, org: str, case: dict[str, Any], factcheck: FactCheck) -> int:
    """Publication hook: a case opened on a tipline question was published; its asker gets the
    verdict at the next follow-up pass. Returns how many questions it answers."""
    source = case.get("source") or {}
    if source.get("kind") != "post" or not str(source.get("id", "")).startswith("tipline-"):
        return 0
    TiplineOutbox(storage).put(org, OutboxEntry(str(source["id"]), str(case["id"]), factcheck.model_dump(mode="json")))
    return 1
