"""Appeals against published verdicts, and public reports of suspicious posts.

Appeals come from anyone through the form on each published fact-check; they
hold the reason and, only if the person wants a reply, a contact. Editors
decide them in the workspace; the outcome (never the reason or contact) is
shown on the public page. An appeal whose outcome is "corrected" must point at
a correction made after the appeal arrived, so the public sees what changed.

Reports ("report a suspicious post") need no account and keep the minimum:
the text, an optional link and platform. They enter the pipeline as posts by
the normal ingest path (prepare, store, embed, stages); the client address is
never stored.
"""

from __future__ import annotations

import secrets
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

from factbridge.backends.storage.base import Expect, Storage
from factbridge.errors import Conflict, InputError, PreconditionFailed
from factbridge.models import Post
from factbridge.workflow.accounts import Actor
from factbridge.workflow.audit import AuditLog, plain
from factbridge.workflow.cases import CaseBook, clean_text, now_iso
from factbridge.workflow.records import APPEALS, Appeal, AppealRecords
from factbridge.workflow.reports import Report, Reports

OUTCOMES = ("upheld", "corrected", "dismissed")
PUBLIC_ACTOR = "public"


def _clean(value: str | None, name: str, limit: int, required: bool = False) -> str:
    return clean_text(value, name, required=required, limit=limit)


class Appeals:
    def __init__(self, storage: Storage, audit: AuditLog, cases: CaseBook) -> None:
        self.storage = storage
        self.audit = audit
        self.cases = cases
        self.records = AppealRecords(storage)

    def get(self, org: str, appeal_id: str) -> Appeal:
        return self.records.one(org, appeal_id)

    def find(self, org: str, status: str | None = None, case_id: str | None = None, limit: int = 500) -> list[Appeal]:
        rows = [a for a in self.records.iter(org) if (not status or a.status == status) and (not case_id or a.case_id == case_id)]
        return rows[:limit]

    def public_outcomes(self, org: str, case_id: str) -> list[dict[str, Any]]:
        return [a.public() for a in reversed(self.find(org, case_id=case_id))]

    def file(self, org: str, case_id: str, reason: str, contact: str = "") -> Appeal:
        self.cases.published(org, case_id)  # only published verdicts can be appealed
        appeal = Appeal(
            id=f"appeal-{secrets.token_hex(6)}",
            case_id=case_id,
            reason=_clean(reason, "reason", 5000, required=True),
            contact=_clean(contact, "contact", 200),
            received_at=now_iso(),
        )
        doc: dict[str, Any] = plain(appeal.to_doc())
        self.audit.append(org, PUBLIC_ACTOR, "appeal.file", APPEALS, appeal.id, None, doc, records=[(APPEALS, self.records.rows([appeal]))])
        return Appeal.from_doc(appeal.id, doc)

    def decide(self, org: str, actor: Actor, appeal_id: str, outcome: str, note: str, version: int | None = None) -> Appeal:
        actor.check("appeal.decide")
        appeal = self.records.one(org, appeal_id)
        if version is not None and appeal.version != int(version):
            raise Conflict(f"appeal '{appeal_id}' changed since you opened it; reload and try again")
        if appeal.status != "received":
            raise Conflict("this appeal has already been decided")
        if outcome not in OUTCOMES:
            raise InputError(f"outcome must be one of {', '.join(OUTCOMES)}", field="outcome")
        if outcome == "corrected":
            case = self.cases.records.one(org, appeal.case_id)
            if not any(c.at >= appeal.received_at for c in case.corrections):
                raise Conflict("record the correction on the case first, then decide the appeal as corrected")
        after = replace(appeal, status="decided", outcome=outcome, outcome_note=_clean(note, "note", 5000, required=True),
                        decided_at=now_iso(), decided_by=actor.username, version=appeal.version + 1)
        doc: dict[str, Any] = plain(after.to_doc())
        try:  # two editors deciding at once (in any processes): the second gets Conflict
            self.audit.append(org, actor.username, "appeal.decide", APPEALS, appeal_id, appeal.to_doc(), doc,
                              records=[(APPEALS, self.records.rows([after]))],
                              expect=[Expect(APPEALS, appeal_id, "version", appeal.version)])
        except PreconditionFailed as exc:
            if exc.key != (org, APPEALS, appeal_id):
                raise
            raise Conflict("this appeal was decided by someone else meanwhile; reload") from exc
        return Appeal.from_doc(appeal_id, doc)


def report_post(services: Any, org: str, text: str, url: str = "", platform: str = "") -> Post:
    """Store a reported post and queue it for the stages through the one processing path
    (`factbridge.pipeline.process.process`): no stage runs in the caller (a web request)."""
    from factbridge.pipeline.prepare import prepare_post
    from factbridge.pipeline.process import process

    body = _clean(text, "text", 5000, required=True)
    link = _clean(url, "url", 2000)
    if link and not link.lower().startswith(("http://", "https://")):
        raise InputError("links must start with http:// or https://", field="url")
    received_at = datetime.now(UTC)
    post = Post(
        id=f"report-{secrets.token_hex(8)}",
        platform=_clean(platform, "platform", 40).lower() or "report",
        created_at=received_at,
        text=body,
        urls=[link] if link else [],
        source="public-report",
    )
    post = prepare_post(post, services.languages)
    Reports(services.storage).put(org, Report(post.id, received_at.isoformat(timespec="seconds"), post.platform))
    AuditLog.in_data_dir(services.storage, services.settings.data_dir).append(org, PUBLIC_ACTOR, "report.receive", "posts", post.id, None,
                                                                          {"platform": post.platform, "language": post.language})
    process(services, org, [post])
    return post
