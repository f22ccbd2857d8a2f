"""Pulling a partner's feed: verify every item, then offer the accepted ones to our library.

For each active partner: read its key statements (`/federation/v1/keys`) into the key ring
(only statements signed by keys we already trust count), then page through its feed after our
cursor. Each item is checked, in this order, and refused with the reason when a check fails:

    form and format  -> "malformed ..."
    organisation     -> the item must be the partner's own
    key              -> unknown (neither pinned nor endorsed by a trusted key) / revoked
    signature        -> the canonical JSON must verify with that key (tampering)
    scope            -> its kind must be one we accept from this partner
    licence, proof   -> a licence, and an audit excerpt showing a second editor's approval

An item at or below the cursor is a replay and is ignored; an item older than the version of the
same fact-check we hold (delivered out of order) is stale and ignored. Accepted and refused items
are recorded, each with its audit entry ("federation.accept" / "federation.refuse").
An accepted fact-check or correction enters our library as `partner/<name>/<case id>` (never
one of our own ids), with its provenance and trust level, and the stored posts near it are
re-matched and re-queued (pipeline.recheck); its claim is looked up in our own verdicts
(federation.consensus). An accepted withdrawal marks our copy withdrawn (pipeline.withdrawals:
kept, no longer matched) and re-checks the posts that matched it, which updates the queue. A narrative or alert is kept as the partner's (federation.crossborder,
which raises "cross-border" alerts), a link verdict joins the partner's link-risk feed
(federation.linkrisk). When a key of the partner is revoked, the items
it signed that we accepted are flagged. A partner that cannot be reached is recorded as offline;
the cursor stays where it was, so the next sync continues from there.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from typing import Any

import httpx

from factbridge.backends.storage.base import Rows, content_sha
from factbridge.errors import InputError
from factbridge.federation.auth import signed_headers
from factbridge.federation.consensus import consensus_note, find_consensus
from factbridge.federation.crossborder import (
    ALERTS,
    PARTNER_NARRATIVES,
    detect_cross_border,
    partner_alert,
)
from factbridge.federation.feed import FORMAT, VERDICT_KINDS
from factbridge.federation.identity import Identity, KeyRing, folder_lock, now_iso, signature_valid
from factbridge.federation.linkrisk import PARTNER_LINKS, rebuild_partner_feed
from factbridge.federation.partners import MAX_REFUSALS_KEPT, Partners
from factbridge.federation.proof import check_proof
from factbridge.federation.records import INBOX as INBOX
from factbridge.federation.records import ITEMS as ITEMS
from factbridge.federation.records import SYNC as SYNC
from factbridge.federation.records import (
    FeedItem,
    HeldItem,
    HeldItems,
    InboxRecord,
    InboxRecords,
    Partner,
    PartnerLink,
    PartnerLinks,
    PartnerNarrative,
    PartnerNarratives,
    Refusal,
    SyncState,
    SyncStates,
)
from factbridge.models import FactCheck
from factbridge.pipeline.withdrawals import WithdrawnList, withdrawal_of
from factbridge.workflow.audit import AuditLog

DECIDED_BY = "factbridge-federation-1"
REQUIRED = ("format", "org", "seq", "kind", "item_id", "issued_at", "licence", "payload", "provenance", "proof", "key_id", "signature")
PAYLOAD_REQUIRED = ("case_id", "claim", "headline", "rating", "url", "org_name", "published_at")
NARRATIVE_REQUIRED = ("narrative_id", "size", "claims")
LINK_REQUIRED = ("link_id", "url", "score", "reasons")
ALERT_REQUIRED = ("alert_id", "kind", "claims")
PAYLOAD_RULES = {"narrative": (NARRATIVE_REQUIRED, "narrative_id"), "linkrisk": (LINK_REQUIRED, "link_id"),
                 "alert": (ALERT_REQUIRED, "alert_id")}


def items_key(partner: str, kind: str, item_id: str) -> str:
    """Key of the version we hold of a partner's item (a fact-check and its corrections share one)."""
    return f"{partner}/{item_id}" if kind in VERDICT_KINDS else f"{partner}/{kind}:{item_id}"


@dataclass
class SyncReport:
    partner: str
    ok: bool = True
    error: str | None = None
    accepted: list[str] = field(default_factory=list)  # our fact-check ids
    refused: list[dict[str, Any]] = field(default_factory=list)  # {seq, item_id, reason}
    replayed: int = 0
    stale: int = 0
    key_changes: list[str] = field(default_factory=list)
    flagged: list[str] = field(default_factory=list)
    rematched: list[str] = field(default_factory=list)
    queue: dict[str, Any] = field(default_factory=dict)
    consensus: list[dict[str, Any]] = field(default_factory=list)  # see federation.consensus
    narratives: list[str] = field(default_factory=list)  # partner narratives received
    links: list[str] = field(default_factory=list)  # partner link-risk verdicts received (URLs)
    partner_alerts: list[str] = field(default_factory=list)  # partner burst alerts received (our alert ids)
    linkrisk: dict[str, Any] = field(default_factory=dict)  # the partner's feed at ours, and the re-scoring
    alerts: list[dict[str, Any]] = field(default_factory=list)  # new cross-border alerts (federation.crossborder)
    withdrawn: list[str] = field(default_factory=list)  # partner fact-checks its desk withdrew (our ids)


def factcheck_id(partner: str, item_id: str) -> str:
    return f"partner/{partner}/{item_id}"


def trust_label(fc: FactCheck) -> str | None:
    """"debunked by Khmer Desk (partner km), verified signature" for a partner's fact-check, else None."""
    fed = (fc.raw or {}).get("federation")
    if not isinstance(fed, dict):
        return None
    withdrawal = withdrawal_of(fc)
    if withdrawal is not None:
        return (f"withdrawn by {fed.get('desk')} (partner {fed.get('partner')}) {str(withdrawal.get('at') or '')[:10]}: "
                f"{withdrawal.get('reason') or 'no reason given'}; {fed.get('trust')}")
    value = fc.rating_value
    verb = "debunked" if value is not None and value <= 2 else "confirmed" if value is not None and value >= 4 else "checked"
    return f"{verb} by {fed.get('desk')} (partner {fed.get('partner')}), {fed.get('trust')}{consensus_note(fc)}"


def check_item(item: Any, partner: Partner, ring: KeyRing) -> str | None:
    """Why this item must be refused, or None when it holds."""
    if not isinstance(item, dict):
        return "malformed: an item is a JSON object"
    missing = [f for f in REQUIRED if f not in item]
    if missing:
        return f"malformed: missing field(s) {', '.join(missing)}"
    if item["format"] != FORMAT:
        return f"unknown format '{item['format']}' (we read {FORMAT})"
    if not isinstance(item["seq"], int) or isinstance(item["seq"], bool):
        return "malformed: seq is not an integer"
    if item["org"] != partner.org:
        return f"item of organisation '{item['org']}' in the feed of '{partner.org}'"
    key_id = str(item["key_id"])
    if key_id not in ring.keys:
        return f"signed by unknown key {key_id} (neither pinned nor endorsed by a key we trust for {partner.name})"
    if not ring.trusted(key_id):
        info = ring.keys[key_id]
        return f"signed by revoked key {key_id} (revoked {info.get('revoked_at') or ''}: {info.get('reason') or 'no reason given'})"
    if not signature_valid(ring.raw(key_id), item, str(item["signature"])):
        return f"signature does not verify with key {key_id}: the item was altered after it was signed"
    if item["kind"] not in partner.accept:
        return f"kind '{item['kind']}' is outside what we accept from {partner.name} ({', '.join(partner.accept) or 'nothing'})"
    if not str(item["licence"]).strip():
        return "no licence"
    payload = item["payload"]
    required, id_field = PAYLOAD_RULES.get(str(item["kind"]), (PAYLOAD_REQUIRED, "case_id"))
    if not isinstance(payload, dict) or [f for f in required if payload.get(f) in (None, "")]:
        return "malformed payload: it needs " + ", ".join(required)
    if payload[id_field] != item["item_id"]:
        return f"malformed payload: its {id_field} is not the item's id"
    if item["kind"] in ("narrative", "alert"):
        return None if isinstance(payload["claims"], list) else "malformed payload: claims is a list"
    if item["kind"] == "linkrisk":
        return None if isinstance(payload["reasons"], list) and isinstance(payload["url"], str) else "malformed payload: url and reasons"
    withdrawn = payload.get("withdrawn")
    if item["kind"] == "withdrawal" and not (isinstance(withdrawn, dict) and withdrawn.get("at") and str(withdrawn.get("reason") or "").strip()):
        return "malformed payload: a withdrawal needs withdrawn.at and withdrawn.reason"
    if item["kind"] != "withdrawal" and withdrawn:
        return f"malformed payload: a '{item['kind']}' item cannot say withdrawn (that is a 'withdrawal' item)"
    try:
        check_proof(item["proof"], str(item["kind"]), str(item["item_id"]))
    except InputError as exc:
        return f"approval proof ({exc.field}): {exc.reason}"
    return None


def partner_factcheck(item: FeedItem, partner: Partner, languages: tuple[str, ...]) -> FactCheck:
    from factbridge.pipeline.prepare import prepare_factcheck
    from factbridge.workflow.cases import published_factcheck

    payload = item.payload
    fc = published_factcheck(payload)
    fed = {
        "partner": partner.name,
        "org": item.org,
        "desk": item.provenance.get("desk") or payload.get("org_name"),
        "seq": item.seq,
        "kind": item.kind,
        "item_id": item.item_id,
        "key_id": item.key_id,
        "licence": item.licence,
        "trust": "verified signature",
        "flag": None,
        "provenance": item.provenance,
        "approved_by_second_editor": True,
        "received_at": now_iso(),
        "decided_by": DECIDED_BY,
    }
    raw: dict[str, Any] = {"federation": fed}
    if item.kind == "withdrawal":  # our copy is marked withdrawn: kept, no longer matched (pipeline/withdrawals.py)
        raw["withdrawn"] = {"at": payload["withdrawn"]["at"], "reason": payload["withdrawn"]["reason"], "by": fed["desk"]}
    fc = fc.model_copy(update={"id": factcheck_id(partner.name, item.item_id), "source_format": "federation", "raw": raw})
    return prepare_factcheck(fc, languages)


class Syncer:
    def __init__(self, services: Any, org: str, identity: Identity, client: httpx.Client | None = None) -> None:
        self.services = services
        self.storage = services.storage
        self.org = org
        self.identity = identity
        self.partners = Partners(self.storage, org)
        self.audit = AuditLog(self.storage)
        self.states = SyncStates(self.storage)
        self.held = HeldItems(self.storage)
        self.client = client or httpx.Client(timeout=services.settings.federation_timeout_s)

    def close(self) -> None:
        self.client.close()

    def state(self, name: str) -> SyncState:
        return self.states.get(self.org, name)

    def _get(self, partner: Partner, path: str, params: dict[str, Any] | None = None) -> Any:
        query = str(httpx.QueryParams(params or {}))
        headers = signed_headers(self.identity, self.org, "GET", path, query)
        response = self.client.get(partner.url + path + (f"?{query}" if query else ""), headers=headers)
        if response.status_code != 200:
            try:
                detail = response.json().get("detail", "")
            except ValueError:
                detail = response.text[:200]
            raise InputError(f"{partner.url}{path} answered HTTP {response.status_code}: {detail}", source=partner.name)
        try:
            return response.json()
        except ValueError as exc:
            raise InputError(f"{partner.url}{path} did not answer JSON", source=partner.name) from exc

    def sync(self, name: str, page: int = 200) -> SyncReport:
        """Pull one partner (one pull of a partner at a time in this deployment: a scheduled sync
        and a push-triggered one wait for each other)."""
        with folder_lock(self.identity, f"sync-{self.org}-{name}"):
            return self._sync(name, page)

    def _sync(self, name: str, page: int) -> SyncReport:
        partner = self.partners.get(name)
        report = SyncReport(partner=partner.name)
        state = self.state(partner.name).with_(last_attempt=now_iso())
        changed: list[str] = []
        try:
            if not partner.active:
                raise InputError(f"partner '{name}' was removed", source=name)
            keys = self._get(partner, "/federation/v1/keys")
            statements = keys.get("statements") if isinstance(keys, dict) else None
            if not isinstance(statements, list):
                raise InputError("the keys answer has no list of statements", source=name, field="statements")
            ring = KeyRing(partner.keys)
            report.key_changes = ring.apply(statements)
            if report.key_changes:
                partner = self.partners.save("federation", "federation.partner.keys", partner, partner.with_(keys=ring.keys))
            report.flagged = self._flag_revoked(partner, ring)
            while True:
                body = self._get(partner, f"/federation/v1/{partner.org}/feed", {"after": state.cursor, "limit": page})
                items = body.get("items") if isinstance(body, dict) else None
                if not isinstance(items, list):
                    raise InputError("the feed answer has no list of items", source=name, field="items")
                items.sort(key=lambda i: i.get("seq", 0) if isinstance(i, dict) and isinstance(i.get("seq"), int) else 0)
                before = state.cursor
                for item in items:
                    state, accepted = self._receive(partner, ring, state, item, report)
                    changed.extend(accepted)
                # saved with the cursor: a crash redoes at most one page, and what was accepted
                # before it is still re-checked by the next sync
                state = state.with_(pending_recheck=sorted({*(state.pending_recheck or []), *changed}))
                self.states.put(self.org, state)
                # a feed that says "more" but does not move us forward would loop for ever
                if not items or not body.get("more") or state.cursor <= before:
                    break
            state = state.with_(last_sync=now_iso(), last_error=None)
        except (httpx.HTTPError, OSError) as exc:
            report.ok = False
            report.error = f"offline: {type(exc).__name__}: {exc}"
        except InputError as exc:
            report.ok = False
            report.error = str(exc)
        state = state.with_(last_error=report.error)
        pending = sorted({*(state.pending_recheck or []), *changed})
        self.states.put(self.org, state.with_(pending_recheck=pending))
        if pending:
            self._recheck(pending, report)
            state = state.with_(pending_recheck=[])
            self.states.put(self.org, state)
        if report.links or report.flagged:
            report.linkrisk = rebuild_partner_feed(self.services, self.org, partner, KeyRing(partner.keys))
        # our narratives change between syncs too: compare them with every partner narrative we hold
        report.alerts = detect_cross_border(self.services, self.org)
        return report

    def _receive(self, partner: Partner, ring: KeyRing, state: SyncState, item: Any, report: SyncReport) -> tuple[SyncState, list[str]]:
        """Take in one item: accepted or refused, recorded with its audit entry. Returns the state
        (cursor and counts moved on) and the fact-checks accepted."""
        seq = item.get("seq") if isinstance(item, dict) else None
        if isinstance(seq, int) and seq <= state.cursor:
            report.replayed += 1
            return state.with_(counts=state.counts.add("replayed")), []
        reason = check_item(item, partner, ring)
        item_id = str(item.get("item_id", "")) if isinstance(item, dict) else ""
        name = partner.name
        held_key = items_key(name, str(item.get("kind")) if isinstance(item, dict) else "", item_id)
        held = self.held.get(self.org, [held_key]).get(held_key)
        if reason is None and held and held.seq >= int(seq or 0):
            report.stale += 1
            return state.with_(counts=state.counts.add("stale")), []
        sha = content_sha(item) if isinstance(item, dict) else None
        inbox_id = f"{name}/{int(seq):012d}" if isinstance(seq, int) else f"{name}/malformed-{sha or 'x'}"
        record = InboxRecord(key=inbox_id, partner=name, seq=seq, kind=item.get("kind") if isinstance(item, dict) else None, item_id=item_id,
                             key_id=item.get("key_id") if isinstance(item, dict) else None, received_at=now_iso(),
                             status="refused" if reason else "accepted", reason=reason, content_sha256=sha)
        writes: list[tuple[str, Rows]] = [(INBOX, InboxRecords.rows([record]))]
        accepted: list[str] = []
        if reason is None:
            received = FeedItem.from_doc(item)  # check_item held: the item has the form of ours, signed
            kind, key_id, seq = received.kind, received.key_id, received.seq
            desk = str(received.provenance.get("desk") or name)
            held_item = HeldItem(key=held_key, partner=name, item_id=item_id, seq=seq, key_id=key_id, kind=kind)
            if kind == "linkrisk":
                link = PartnerLink(key=f"{name}/{item_id}", payload=received.payload, partner=name, desk=desk, seq=seq, key_id=key_id,
                                   received_at=record.received_at)
                writes.append((PARTNER_LINKS, PartnerLinks.rows([link])))
                report.links.append(link.url)
            elif kind == "alert":
                alert = partner_alert(received.payload, name, desk, record.received_at)
                writes.append((ALERTS, [(alert.id, alert.to_doc(), time.time())]))
                report.partner_alerts.append(alert.id)
            elif kind == "narrative":
                narrative = PartnerNarrative(key=f"{name}/{item_id}", payload=received.payload, partner=name, desk=desk, seq=seq,
                                             key_id=key_id, received_at=record.received_at)
                writes.append((PARTNER_NARRATIVES, PartnerNarratives.rows([narrative])))
                report.narratives.append(narrative.key)
            else:
                fc = partner_factcheck(received, partner, self.services.languages)
                self.storage.upsert_factchecks(self.org, [fc])
                held_item = replace(held_item, factcheck_id=fc.id)
                if kind == "withdrawal":  # the matcher's list of withdrawn entries, with the receipt
                    writes.append(WithdrawnList.rows([fc.id], fc.raw["withdrawn"] | {"partner": name}))
                    report.withdrawn.append(fc.id)
                accepted.append(fc.id)
                report.accepted.append(fc.id)
            writes.append((ITEMS, HeldItems.rows([held_item])))
            state = state.with_(counts=state.counts.add("accepted"))
        else:
            refusal = Refusal(seq=seq, item_id=item_id, reason=reason, at=record.received_at)
            report.refused.append(refusal.to_doc())
            state = state.with_(counts=state.counts.add("refused"), refusals=[*state.refusals, refusal][-MAX_REFUSALS_KEPT:])
        self.audit.append(self.org, "federation", "federation.accept" if reason is None else "federation.refuse", INBOX, inbox_id,
                          None, record.to_doc(), records=writes)
        if isinstance(seq, int):
            state = state.with_(cursor=max(state.cursor, seq))
        return state, accepted

    def _flag_revoked(self, partner: Partner, ring: KeyRing) -> list[str]:
        """Flag the items we accepted from a key that is now revoked (they stay, marked)."""
        flagged: list[str] = []
        for held in self.held.iter(self.org):
            if held.partner != partner.name or held.flag or ring.trusted(held.key_id):
                continue
            info = ring.keys.get(held.key_id, {})
            flag = f"signed by key {held.key_id}, revoked {info.get('revoked_at') or ''}: {info.get('reason') or ''}".strip()
            if held.factcheck_id:
                fc = self.storage.get_factcheck(self.org, held.factcheck_id)
                fed = dict(fc.raw.get("federation") or {}) | {"trust": "signed by a key since revoked", "flag": flag}
                self.storage.upsert_factchecks(self.org, [fc.model_copy(update={"raw": {**fc.raw, "federation": fed}})])
            marked = replace(held, flag=flag)
            self.audit.append(self.org, "federation", "federation.flag", ITEMS, held.key, held.to_doc(), marked.to_doc(),
                              records=[(ITEMS, HeldItems.rows([marked]))])
            flagged.append(held.factcheck_id or held.key)
        return flagged

    def _recheck(self, factcheck_ids: list[str], report: SyncReport) -> None:
        from factbridge.pipeline.matching import index_factchecks
        from factbridge.pipeline.recheck import recheck_factchecks

        index_factchecks(self.storage, self.services.embedder, self.org)
        report.consensus = [m.to_doc() for m in find_consensus(self.services, self.org, factcheck_ids)]
        if self.storage.count_posts(self.org):
            outcome = recheck_factchecks(self.services, self.org, factcheck_ids)
            report.rematched = outcome.rematched
            report.queue = outcome.queue
