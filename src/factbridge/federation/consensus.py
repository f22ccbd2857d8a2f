"""Cross-border consensus: two desks that checked the same claim independently, and whether they agree.

When a partner's fact-check (or its correction) is accepted, its claim is matched against our
library with our own matcher (its calibrated "match" decision says "same claim"). A match with
one of our own published verdicts, or with another partner's, is recorded in the
"federation_consensus" collection and on the partner's fact-check (`raw.federation.consensus`):
`agree` when both verdicts fall in the same class of the rating scale (false-ish 1-2, mixed 3,
true-ish 4-5), a disagreement otherwise, which is worth an editor's look. Nothing of ours is
changed: the mark is on the partner's record, and decided_by names the rule and the matcher.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from factbridge.federation.identity import now_iso
from factbridge.federation.records import CONSENSUS as CONSENSUS
from factbridge.federation.records import ConsensusMark, ConsensusMarks
from factbridge.models import FactCheck, Post

DECIDED_BY = "federation-consensus-1"


def verdict_class(rating_value: float | None) -> str | None:
    if rating_value is None:
        return None
    return "false" if rating_value <= 2 else "true" if rating_value >= 4 else "mixed"


def _desk(fc: FactCheck) -> str:
    fed = (fc.raw or {}).get("federation") or {}
    return str(fed.get("desk") or fc.publisher or "")


def _independent(partner_fc: FactCheck, other: FactCheck) -> bool:
    """Our own published verdict, or another partner's: not the same desk's."""
    if other.source_format == "factbridge":
        return True
    ours, theirs = (partner_fc.raw or {}).get("federation") or {}, (other.raw or {}).get("federation") or {}
    return other.source_format == "federation" and theirs.get("partner") != ours.get("partner")


def find_consensus(services: Any, org: str, factcheck_ids: Sequence[str]) -> list[ConsensusMark]:
    """Record, for each partner fact-check, the independent verdict on the same claim (if any)."""
    from factbridge.pipeline.prepare import prepare_post

    storage = services.storage
    from factbridge.pipeline.withdrawals import withdrawal_of

    # a withdrawn verdict agrees or differs with nobody any more (its earlier marks stay on it)
    fcs = [fc for fc in storage.get_factchecks(org, list(dict.fromkeys(factcheck_ids))).values()
           if fc.source_format == "federation" and withdrawal_of(fc) is None]
    if not fcs:
        return []
    matcher = services.matcher(org)
    queries = [prepare_post(Post(id=fc.id, text=fc.claim, language=fc.language), services.languages) for fc in fcs]
    found: list[ConsensusMark] = []
    updated: list[FactCheck] = []
    for fc, result in zip(fcs, matcher.match_posts(queries, with_factchecks=True), strict=True):
        marks: list[ConsensusMark] = []
        for cand in result.candidates:
            other = cand.factcheck
            if other is None or cand.decision != "match" or other.id == fc.id or not _independent(fc, other):
                continue
            theirs, ours = verdict_class(fc.rating_value), verdict_class(other.rating_value)
            mark = ConsensusMark(
                partner_factcheck=fc.id,
                other_factcheck=other.id,
                other_desk=_desk(other),
                partner_rating=fc.rating,
                other_rating=other.rating,
                agree=theirs is not None and theirs == ours,
                fused_score=round(cand.fused_score, 4),
                decided_by=f"{DECIDED_BY}+{cand.decided_by}",
                at=now_iso(),
            )
            marks.append(mark)
            ConsensusMarks(storage).put(org, [mark])
        fed = dict((fc.raw or {}).get("federation") or {})
        if marks or fed.get("consensus"):
            fed["consensus"] = [m.to_doc() for m in marks]
            updated.append(fc.model_copy(update={"raw": {**fc.raw, "federation": fed}}))
        found.extend(marks)
    if updated:
        storage.upsert_factchecks(org, updated)
    return found


def consensus_note(fc: FactCheck) -> str:
    """", cross-border consensus with Vietnamese Desk" (or a disagreement), for labels; "" when none."""
    stored = ((fc.raw or {}).get("federation") or {}).get("consensus") or []
    marks = [ConsensusMark.from_doc(m) for m in stored if isinstance(m, Mapping)]
    agreeing = sorted({m.other_desk for m in marks if m.agree})
    differing = sorted({f"{m.other_desk} ({m.other_rating})" for m in marks if not m.agree})
    note = ""
    if agreeing:
        note += f"; cross-border consensus with {', '.join(agreeing)}"
    if differing:
        note += f"; verdict differs from {', '.join(differing)}"
    return note
