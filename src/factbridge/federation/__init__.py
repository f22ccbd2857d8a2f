"""Federation: signed sharing between partner desks (see docs/federation.md).

    identity.py   the deployment's Ed25519 keys (in data_dir), key statements, a partner's key ring
    canonical.py  canonical JSON (sorted keys, RFC 8785 style) and base64url
    proof.py      the proof that a second editor approved an item (an audit-chain excerpt)
    feed.py       our organisation's append-only, signed feed (the outbox) and its ClaimReview view
    partners.py   the partner registry: address, pinned keys, scopes, cursor, counts
    sync.py       pulling a partner's feed: verify, then offer accepted items to our library
    consensus.py  two desks' verdicts on one claim: the cross-border consensus mark
    crossborder.py narratives and burst alerts shared; the "cross-border" alert
    linkrisk.py   link-risk verdicts shared; a partner's become a blocklist feed of ours
    push.py       optional push: a signed "pull now" to partners
    auth.py       signed requests (a partner pulling gets its own scope)
    bench.py      `factbridge bench federation`
    records.py    the typed records of every federation collection, one accessor each

A partner can only offer items: accepted items enter our library under ids of their own
(`partner/<name>/...`), they never overwrite our records.
"""
