"""The partner registry: one document per partner desk in the "federation_partners" collection.

A partner has a name (ours for it), the base URL of its deployment, its organisation id there,
its key ring (the pinned key and what it endorsed or revoked since), what we send it and what we
accept from it (kinds of item), and whether we push to it. Our cursor in its feed and the outcome
of the last syncs are kept apart (federation.sync), so that a sync does not rewrite the audited
registry.
Removing a partner only deactivates it: its history (and the items it gave us) stays.
Every change is written with its audit entry in one transaction.
"""

from __future__ import annotations

from collections.abc import Sequence

from factbridge.backends.storage.base import Storage
from factbridge.errors import Conflict, InputError, NotFound
from factbridge.federation.feed import KINDS
from factbridge.federation.identity import KeyRing, now_iso
from factbridge.federation.records import PARTNERS as PARTNERS
from factbridge.federation.records import Partner, PartnerRecords
from factbridge.workflow.audit import AuditLog

MAX_REFUSALS_KEPT = 50


def parse_kinds(text: str, field: str) -> list[str]:
    kinds = [k.strip().lower() for k in text.split(",") if k.strip()]
    for k in kinds:
        if k not in KINDS:
            raise InputError(f"unknown kind '{k}' (kinds: {', '.join(KINDS)})", field=field)
    return list(dict.fromkeys(kinds))


def _name(name: str) -> str:
    name = name.strip().lower()
    if not name or not all(c.isalnum() or c in "-_" for c in name) or len(name) > 40:
        raise InputError("a partner name is 1-40 letters, digits, '-' or '_'", field="name")
    return name


def _url(url: str) -> str:
    url = url.strip().rstrip("/")
    if not url.lower().startswith(("http://", "https://")):
        raise InputError("the partner URL must start with http:// or https://", field="url")
    return url


class Partners:
    def __init__(self, storage: Storage, org: str) -> None:
        self.storage = storage
        self.org = org
        self.audit = AuditLog(storage)
        self.records = PartnerRecords(storage)

    def find(self, name: str) -> Partner | None:
        name = _name(name)
        return self.records.get(self.org, [name]).get(name)

    def get(self, name: str) -> Partner:
        partner = self.find(name)
        if partner is None:
            raise NotFound(f"no partner '{name}' (see `factbridge partners list`)")
        return partner

    def all(self, active_only: bool = False) -> list[Partner]:
        partners = list(self.records.iter(self.org))
        return [p for p in partners if p.active] if active_only else partners

    def by_remote_org(self, remote_org: str) -> list[Partner]:
        return [p for p in self.all(active_only=True) if p.org == remote_org]

    def save(self, actor: str, action: str, before: Partner | None, after: Partner) -> Partner:
        self.audit.append(self.org, actor, action, PARTNERS, after.name, before.to_doc() if before else None, after.to_doc(),
                          records=[(PARTNERS, self.records.rows([after]))])
        return after

    def add(self, actor: str, name: str, url: str, key: str, remote_org: str = "", send: Sequence[str] = KINDS,
            accept: Sequence[str] = KINDS, push: bool = False) -> Partner:
        name = _name(name)
        existing = self.find(name)
        if existing and existing.active:
            raise Conflict(f"partner '{name}' exists already")
        ring = KeyRing.pinned(key)
        partner = Partner(name=name, url=_url(url), org=(remote_org or name).strip(), keys=ring.keys, send=list(send), accept=list(accept),
                          push=push, active=True, added_at=now_iso(), removed_at=None)
        # (re-adding a removed partner keeps our cursor in its feed: see federation.sync)
        return self.save(actor, "federation.partner.add", existing, partner)

    def remove(self, actor: str, name: str) -> Partner:
        partner = self.get(name)
        return self.save(actor, "federation.partner.remove", partner, partner.with_(active=False, removed_at=now_iso()))

    def revoke_key(self, actor: str, name: str, key_id: str, reason: str) -> Partner:
        partner = self.get(name)
        if key_id not in partner.keys:
            raise NotFound(f"partner '{name}' has no key {key_id} (keys: {', '.join(partner.keys)})")
        keys = dict(partner.keys)
        keys[key_id] = keys[key_id] | {"status": "revoked", "revoked_at": now_iso(), "reason": reason or "revoked by us"}
        return self.save(actor, "federation.partner.revoke_key", partner, partner.with_(keys=keys))
