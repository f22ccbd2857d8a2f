"""Optional push: tell partners that our feed has new items, so they pull at once.

A push is a signed POST (see federation.auth) to the partner's
`/federation/v1/<its org>/inbox` with `{"from": <our org>, "head": <our last seq>}`. It carries no
item: the partner answers 202 and pulls our feed as usual (verifying everything), so a push can
never make a partner accept anything it would not accept from a pull. Only partners added with
`--push` are notified; a failed push is recorded in the partner's sync state and changes nothing
else (the partner's own schedule pulls the items anyway).
"""

from __future__ import annotations

import httpx

from factbridge.backends.storage.base import Storage
from factbridge.federation.auth import signed_headers
from factbridge.federation.identity import Identity, now_iso
from factbridge.federation.partners import Partners
from factbridge.federation.records import PUSHES as PUSHES
from factbridge.federation.records import PushOutcome, PushOutcomes


def push_to_partners(storage: Storage, org: str, identity: Identity, head: int, client: httpx.Client) -> list[PushOutcome]:
    outcomes = []
    for partner in Partners(storage, org).all(active_only=True):
        if not partner.push or not partner.send:
            continue
        path = f"/federation/v1/{partner.org}/inbox"
        at = now_iso()
        try:
            response = client.post(partner.url + path, headers=signed_headers(identity, org, "POST", path, ""), json={"from": org, "head": head})
            outcome = PushOutcome(partner=partner.name, head=head, at=at, status=response.status_code,
                                  error=response.text[:300] if response.status_code >= 400 else None)
        except httpx.HTTPError as exc:
            outcome = PushOutcome(partner=partner.name, head=head, at=at, status=None, error=f"offline: {type(exc).__name__}: {exc}")
        PushOutcomes(storage).put(org, outcome)
        outcomes.append(outcome)
    return outcomes
