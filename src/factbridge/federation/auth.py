"""Signed requests: a partner desk proves who is pulling our feed (so it gets its own scope).

The caller signs {"method", "path", "query", "org", "key_id", "date"} (canonical JSON) with its
active key and sends the four headers below. We accept it when the organisation is an active
partner of ours, the key is one we trust for that partner and the date is within
`MAX_SKEW_S` of our clock. A request without the headers is anonymous (public items only);
a request with headers that do not verify is refused with the reason.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from factbridge.errors import NotAuthenticated
from factbridge.federation.identity import Identity, KeyRing, now_iso, sign_body, signature_valid
from factbridge.federation.partners import Partners
from factbridge.federation.records import Partner

H_ORG = "X-FactBridge-Org"
H_KEY = "X-FactBridge-Key"
H_DATE = "X-FactBridge-Date"
H_SIG = "X-FactBridge-Signature"
MAX_SKEW_S = 300.0


def _claims(method: str, path: str, query: str, org: str, key_id: str, date: str) -> dict[str, Any]:
    return {"method": method.upper(), "path": path, "query": query, "org": org, "key_id": key_id, "date": date}


def signed_headers(identity: Identity, org: str, method: str, path: str, query: str = "") -> dict[str, str]:
    key = identity.active()
    date = now_iso()
    return {H_ORG: org, H_KEY: key.key_id, H_DATE: date,
            H_SIG: sign_body(key.private, _claims(method, path, query, org, key.key_id, date))}


def request_partner(partners: Partners, headers: Mapping[str, str], method: str, path: str, query: str) -> Partner | None:
    """The partner who signed this request, None when it is unsigned; NotAuthenticated when the
    signature, key, organisation or date does not hold."""
    org, key_id, date, sig = (headers.get(h.lower(), "") for h in (H_ORG, H_KEY, H_DATE, H_SIG))
    if not (org or key_id or sig):
        return None
    if not (org and key_id and date and sig):
        raise NotAuthenticated(f"a signed request needs all of {H_ORG}, {H_KEY}, {H_DATE} and {H_SIG}")
    try:
        when = datetime.fromisoformat(date)
    except ValueError as exc:
        raise NotAuthenticated(f"{H_DATE} is not an ISO date: {date[:40]!r}") from exc
    if when.tzinfo is None or abs((datetime.now(UTC) - when).total_seconds()) > MAX_SKEW_S:
        raise NotAuthenticated(f"{H_DATE} is more than {int(MAX_SKEW_S)} s away from our clock (or has no time zone)")
    candidates = partners.by_remote_org(org)
    if not candidates:
        raise NotAuthenticated(f"organisation '{org}' is not an active partner of ours")
    for partner in candidates:
        ring = KeyRing(partner.keys)
        if key_id in ring.keys and not ring.trusted(key_id):
            raise NotAuthenticated(f"key {key_id} of '{org}' is revoked")
        if ring.trusted(key_id) and signature_valid(ring.raw(key_id), _claims(method, path, query, org, key_id, date), sig):
            return partner
    raise NotAuthenticated(f"the request signature does not verify with a key we trust for '{org}'")
