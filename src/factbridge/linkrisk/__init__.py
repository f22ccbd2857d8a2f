"""Link risk: phishing, malware and look-alike domains in posts.

Modules: `urls` (extraction incl. defanged/obfuscated/full-width forms,
normalisation, shorteners), `feeds` (blocklist formats, storage, in-memory
index), `lookalike` (protected domains, homoglyphs, typos, added words,
swapped suffixes, subdomain tricks), `scoring` (score 0..1 with reasons),
`resolve` (optional, SSRF-guarded following of shortened links), `stage`
(the pipeline stage), `evaluation` (``factbridge eval linkrisk``).

Collections written (document API, every call org-scoped):

``linkrisk`` — one document per post, id = post id, sort key = ``max_score``::

    {
      "post_id": "p1",
      "max_score": 0.96,                # highest link score in the post, 0..1
      "level": "high",                  # none < 0.2 <= low < 0.5 <= medium < 0.8 <= high
      "flagged": true,                  # any link with score >= linkrisk_flag_threshold
      "flagged_urls": 1,
      "urls": [                         # riskiest first
        {
          "url": "hxxps://vietcombank-uudai[.]com/dang-nhap",   # as found in the post
          "normalized": "https://vietcombank-uudai.com/dang-nhap",
          "host": "vietcombank-uudai.com", "unicode_host": "vietcombank-uudai.com",
          "registered_domain": "vietcombank-uudai.com",
          "score": 0.8, "level": "high", "flagged": true,
          "reasons": [{"code": "lookalike_added_words", "category": "lookalike",
                       "weight": 0.75, "detail": "...", "evidence": {...}}, ...],
          "feed_hits": [{"feed": "urlhaus", "date": "2025-07-19T12:11:28Z",
                         "kind": "url", "matched": "...", "threat": "..."}],
          "official": null,             # owner name when the host is an official domain
          "shortener": false,
          "decided_by": "linkrisk-rules v1.0; protected 114:...; feeds urlhaus@2025-07-19",
          "resolution": null            # hops of a followed short link, when resolution is on
        }
      ],
      "unparsed": [{"url": "...", "reason": "..."}],   # link-like strings that are not web links
      "decided_by": "linkrisk-rules v1.0; ...",
      "scored_at": "2026-11-29T10:00:00Z"
    }

``linkrisk_feeds`` and ``linkrisk_feed_entries`` — stored blocklists (see `feeds`).
"""

from factbridge.linkrisk.scoring import RULES_VERSION, RULESET, LinkRiskScorer, UrlRisk
from factbridge.linkrisk.stage import COLLECTION, linkrisk_stage, riskiest_posts, score_post
from factbridge.linkrisk.urls import extract_urls, normalize_url

__all__ = [
    "COLLECTION", "RULESET", "RULES_VERSION", "LinkRiskScorer", "UrlRisk", "extract_urls", "linkrisk_stage",
    "normalize_url", "riskiest_posts", "score_post",
]
