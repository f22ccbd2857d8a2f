"""Bursts: when a narrative suddenly grows, raise an alert with its evidence.

The method is Kleinberg's two-state burst automaton (Kleinberg 2003, "Bursty and
hierarchical structure in streams", the enumerating version with Poisson counts):
each time bin of a narrative's series is emitted either by a base state with
rate `baseline` or a burst state with rate `scale * baseline`; entering the
burst state costs `gamma * ln(bins)`; the cheapest state sequence (Viterbi) marks
the bursts. The baseline is the narrative's mean rate over its history spread
over at least a week (a young narrative is compared with a rate as if its posts
had come over a week), never below `burst_baseline_floor`.

A burst with at least `burst_min_posts` posts raises an alert of kind "burst".
When the narrative matches a debunked fact-check and either the narrative or
that debunked claim (in any narrative: a reworded version starts a new one) had
been quiet for `resurfacing_quiet_hours` before the burst, the alert's kind is
"resurfacing": a debunked story is spreading again. The same burst seen again in a later batch
updates its alert instead of raising a new one.

Documents: "alerts" (sort key: end of the burst): id, kind, narrative_id,
topic_id, status, raised_at, updated_at, summary, top_terms, evidence
{burst_start, burst_end, counts [{bin, posts}], posts_in_burst,
baseline_per_bin, burst_rate_per_bin, narrative_size, quiet_hours_before,
posts [{post_id, time, method, similarity}], debunks [{factcheck_id, rating,
url, claim, posts, earlier_matched_posts, quiet_hours_before}]}, decided_by;
"narrative_bursts": the last burst per narrative (to update, not repeat, it).
Deliveries to webhooks: see `alerts.py`.
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import numpy as np

from factbridge.backends.storage.base import Storage
from factbridge.models import FactCheck, Post
from factbridge.pipeline import records
from factbridge.pipeline.alerts import store_alerts
from factbridge.pipeline.narratives import _post_time, narrative_sizes, written_narratives
from factbridge.pipeline.records import (
    BURST_STATE,
    DELIVERIES,
    Alert,
    Alerts,
    BurstState,
    BurstStates,
    NarrativeMembers,
    NarrativeRecord,
    Narratives,
)
from factbridge.pipeline.stages import FunctionStage, StageContext, StageSummary
from factbridge.settings import BurstSettings

BURSTS_VERSION = "kleinberg-2state-poisson-1"
ALERTS = records.ALERTS
REFERENCE_BINS_HOURS = 7 * 24  # the baseline spreads a narrative's posts over at least a week
SERIES_DAYS = 14  # bins analysed per narrative: the last two weeks

# Ratings that say a claim is false or misleading (English, French, Vietnamese, Khmer).
_DEBUNK = re.compile(
    r"false|fake|misleading|mislead|incorrect|pants on fire|fabricated|scam|hoax|no evidence|unproven|mostly false|"
    r"faux|trompeur|infond|intox|"
    r"sai|gi\u1ea3|kh\u00f4ng \u0111\u00fang|b\u1ecba \u0111\u1eb7t|"
    r"\u1798\u17b7\u1793\u1796\u17b7\u178f|\u1780\u17bb\u17a0\u1780",
    re.IGNORECASE,
)


def decided_by(p: BurstSettings) -> str:
    return f"{BURSTS_VERSION} (s={p.scale:g}, gamma={p.gamma:g}, bin {p.bin} h, floor {p.baseline_floor:g})"


def burst_states(counts: np.ndarray, baseline: float, scale: float, gamma: float) -> np.ndarray:
    """Viterbi path of the two-state automaton: 1 where a bin is in the burst state."""
    counts = np.asarray(counts, dtype=np.float64)
    n = counts.shape[0]
    if n == 0:
        return np.zeros(0, dtype=np.int8)
    lam0, lam1 = baseline, baseline * scale
    # -log Poisson(x; lam) without the log(x!) term, which both states share.
    cost0 = lam0 - counts * math.log(lam0)
    cost1 = lam1 - counts * math.log(lam1)
    up = gamma * math.log(max(n, 2))
    back = np.zeros((n, 2), dtype=np.int8)
    c0, c1 = cost0[0], cost1[0] + up
    for t in range(1, n):
        stay0, from1 = c0, c1  # into state 0: leaving a burst is free
        n0 = min(stay0, from1) + cost0[t]
        back[t, 0] = 0 if stay0 <= from1 else 1
        enter, stay1 = c0 + up, c1
        n1 = min(enter, stay1) + cost1[t]
        back[t, 1] = 0 if enter < stay1 else 1
        c0, c1 = n0, n1
    states = np.zeros(n, dtype=np.int8)
    states[-1] = 0 if c0 <= c1 else 1
    for t in range(n - 1, 0, -1):
        states[t - 1] = back[t, states[t]]
    return states


def _runs(states: np.ndarray) -> list[tuple[int, int]]:
    """(first, last) bin of each maximal run of burst state."""
    runs: list[tuple[int, int]] = []
    start = None
    for i, s in enumerate(states.tolist()):
        if s and start is None:
            start = i
        elif not s and start is not None:
            runs.append((start, i - 1))
            start = None
    if start is not None:
        runs.append((start, len(states) - 1))
    return runs


def is_debunk(fc: FactCheck | None) -> bool:
    """A fact-check that calls the claim false or misleading; one with no rating at all counts too
    (libraries hold debunks), and its alert says the rating is unknown."""
    from factbridge.pipeline.withdrawals import withdrawal_of

    if fc is None or withdrawal_of(fc) is not None:  # a withdrawn verdict debunks nothing any more
        return False
    if fc.rating_value is not None and fc.rating_value <= 2:
        return True
    if fc.rating:
        return bool(_DEBUNK.search(fc.rating))
    return fc.rating_value is None


def _iso_bin(bin_index: int, bin_hours: int) -> str:
    return datetime.fromtimestamp(bin_index * bin_hours * 3600, tz=UTC).isoformat(timespec="seconds")


def detect_bursts(
    storage: Storage, org: str, narrative_ids: Sequence[str], now: float, params: BurstSettings, since: float | None = None,
    written: Mapping[str, NarrativeRecord | None] | None = None,
) -> list[tuple[Alert, bool]]:
    """Alerts (record, is_new) for bursts of these narratives that reach into [since, now].
    `written`: documents known to be the stored ones (`written_narratives`; None: one too
    small for a burst), read from the store only for the other narratives."""
    written = written or {}
    docs = {nid: written[nid] for nid in narrative_ids if written.get(nid) is not None}
    rest = [nid for nid in narrative_ids if nid not in written]
    # A narrative smaller than a burst can be is skipped without reading its document (most are).
    sizes = narrative_sizes(storage, org, rest) if rest else {}
    wanted = [nid for nid in rest if sizes is None or sizes.get(nid, params.min_posts) >= params.min_posts]
    docs.update(Narratives(storage).get(org, wanted))
    states = BurstStates(storage).get(org, [nid for nid in narrative_ids if nid in docs or nid in wanted])
    now_bin = int(now // 3600) // params.bin
    since_bin = int((since if since is not None else now) // 3600) // params.bin
    out: list[tuple[Alert, bool]] = []
    state_rows: list[BurstState] = []
    for nid in narrative_ids:
        doc = docs.get(nid)
        if doc is None or doc.size < params.min_posts:
            continue
        by_bin: dict[int, int] = {}
        for hour_iso, count in doc.counts_hourly.items():
            hour = int(datetime.fromisoformat(hour_iso + ":00:00+00:00").timestamp() // 3600)
            b = hour // params.bin
            by_bin[b] = by_bin.get(b, 0) + int(count)
        first_bin = min(by_bin)
        start_bin = max(first_bin, now_bin - SERIES_DAYS * 24 // params.bin + 1)
        series = np.array([by_bin.get(b, 0) for b in range(start_bin, now_bin + 1)], dtype=np.float64)
        history_bins = max(now_bin - first_bin + 1, REFERENCE_BINS_HOURS // params.bin)
        baseline = max(params.baseline_floor, float(doc.size) / history_bins)
        marked = burst_states(series, baseline, params.scale, params.gamma)
        previous = states.get(nid)
        for run_first, run_last in _runs(marked):
            b0, b1 = start_bin + run_first, start_bin + run_last
            if b1 < since_bin:
                continue  # an old burst: alerted when it happened
            counts = series[run_first : run_last + 1]
            total = int(counts.sum())
            if total < params.min_posts:
                continue
            same = previous is not None and previous.start_bin <= b0 <= previous.end_bin + 1
            alert_id = previous.alert_id if previous is not None and same else f"alert-{nid}-{b0}"
            quiet_bins = _quiet_before(by_bin, b0)
            alert = _alert(storage, org, alert_id, doc, b0, b1, counts, baseline, quiet_bins, params)
            out.append((alert, not same))
            previous = BurstState(nid, alert_id, previous.start_bin if previous is not None and same else b0, b1)
            state_rows.append(previous)
    BurstStates(storage).put(org, state_rows)
    return out


def _quiet_before(by_bin: dict[int, int], start: int) -> int | None:
    """Bins without posts just before `start`; None when the narrative had no earlier post."""
    earlier = [b for b in by_bin if b < start and by_bin[b] > 0]
    return start - max(earlier) - 1 if earlier else None


def _debunk_history(storage: Storage, org: str, factcheck_id: str, start_ts: float) -> tuple[int, float | None]:
    """(posts matched to the fact-check before `start_ts`, hours from the last of them to `start_ts`)."""
    post_ids = [pid for pid, c in storage.matches_for_factcheck(org, factcheck_id) if c.decision == "match"]
    times = [_post_time(p) for p in storage.get_posts(org, post_ids).values() if p.created_at is not None]
    earlier = [t for t in times if t < start_ts]
    return len(earlier), (round((start_ts - max(earlier)) / 3600.0, 1) if earlier else None)


def _debunks(storage: Storage, org: str, doc: NarrativeRecord, start_ts: float) -> list[dict[str, Any]]:
    """The debunking fact-checks the narrative matches, each with its history before `start_ts`."""
    matched = [f for f in doc.factchecks if f.get("decision") == "match"]
    fcs = storage.get_factchecks(org, [f["factcheck_id"] for f in matched]) if matched else {}
    debunks = []
    for f in matched:
        fc = fcs.get(f["factcheck_id"])
        if not is_debunk(fc):
            continue
        assert fc is not None
        earlier, quiet = _debunk_history(storage, org, fc.id, start_ts)
        debunks.append({
            "factcheck_id": fc.id, "posts": f["posts"], "fused_score": f["fused_score"], "rating": fc.rating or "unknown",
            "url": fc.url, "claim": fc.claim[:300], "earlier_matched_posts": earlier, "quiet_hours_before": quiet,
        })
    return debunks


def _resurfaces(quiet_hours: float | None, debunks: Sequence[dict[str, Any]], params: BurstSettings) -> bool:
    """This narrative went quiet and is back, or the debunked claim it matches went quiet
    (in any narrative: a reworded version starts a new one) and is back here."""
    narrative_back = quiet_hours is not None and quiet_hours >= params.quiet_hours
    claim_back = any(d["quiet_hours_before"] is not None and d["quiet_hours_before"] >= params.quiet_hours for d in debunks)
    return bool(debunks) and (narrative_back or claim_back)


def _alert(
    storage: Storage, org: str, alert_id: str, doc: NarrativeRecord, b0: int, b1: int, counts: np.ndarray,
    baseline: float, quiet_bins: int | None, params: BurstSettings,
) -> Alert:
    start_ts, end_ts = b0 * params.bin * 3600, (b1 + 1) * params.bin * 3600
    posts = [p for p in doc.recent_posts if start_ts <= datetime.fromisoformat(p.time).timestamp() < end_ts]
    debunks = _debunks(storage, org, doc, start_ts)
    quiet_hours = None if quiet_bins is None else quiet_bins * params.bin
    resurfacing = _resurfaces(quiet_hours, debunks, params)
    existing = Alerts(storage).get(org, [alert_id]).get(alert_id)
    now = datetime.now(UTC).isoformat(timespec="seconds")
    return Alert(
        id=alert_id,
        kind="resurfacing" if resurfacing else "burst",
        narrative_id=doc.id,
        topic_id=doc.topic_id,
        status=existing.status if existing else "new",
        raised_at=(existing.raised_at if existing else "") or now,
        updated_at=now,
        summary=doc.representative_text[:280],
        top_terms=list(doc.top_terms),
        evidence={
            "burst_start": _iso_bin(b0, params.bin),
            "burst_end": _iso_bin(b1 + 1, params.bin),
            "counts": [{"bin": _iso_bin(b0 + i, params.bin), "posts": int(c)} for i, c in enumerate(counts.tolist())],
            "posts_in_burst": int(counts.sum()),
            "baseline_per_bin": round(baseline, 4),
            "burst_rate_per_bin": round(baseline * params.scale, 4),
            "narrative_size": doc.size,
            "quiet_hours_before": quiet_hours,
            "posts": [{"post_id": p.post_id, "time": p.time, "method": p.method, "similarity": p.similarity} for p in posts[-50:]],
            "debunks": debunks,
        },
        decided_by=decided_by(params),
        reclassified=list(existing.reclassified) if existing else [],
    )


def bursts_stage(services: StageContext, org: str, posts: Sequence[Post]) -> StageSummary:
    """Stage: look for bursts in the narratives these posts joined; store and deliver alerts."""
    if not posts:
        return {"alerts": 0}
    storage = services.storage
    params = services.settings.bursts
    # The narratives stage's engine, when it holds what is stored, answers without a read.
    view = written_narratives(storage, org, [p.id for p in posts], min_size=params.min_posts)
    if view is None:
        members = NarrativeMembers(storage).get(org, [p.id for p in posts])
        narrative_ids, written = sorted({m.narrative_id for m in members.values()}), None
    else:
        narrative_ids, written = sorted(set(view[0].values())), view[1]
    if not narrative_ids:
        return {"alerts": 0}
    times = [_post_time(p) for p in posts]
    found = detect_bursts(storage, org, narrative_ids, max(times), params, since=min(times), written=written)
    if not found:
        return {"alerts": 0}
    new = [a for a, is_new in found if is_new]
    store_alerts(storage, services.alert_dispatcher, org, [(a, _burst_end(a)) for a, _ in found], deliver=new)
    kinds = {k: sum(1 for a in new if a.kind == k) for k in ("burst", "resurfacing")}
    return {"alerts": len(new), "updated": len(found) - len(new), **kinds}


def _burst_end(alert: Alert) -> float:
    """The sort key of a burst alert: the end of its burst."""
    return datetime.fromisoformat(str(alert.evidence["burst_end"])).timestamp()


def reclassify_alerts(services: Any, org: str, narrative_ids: Sequence[str]) -> dict[str, Any]:
    """After a re-check (fact-checks arrived or changed), look again at the latest burst alert of
    each of these narratives with their new fact-check lists: its debunks are brought up to date,
    and its kind follows ("burst" -> "resurfacing" when it now repeats a debunked claim that had
    gone quiet). A change of kind is recorded on the alert (`reclassified`) and delivered to the
    webhooks as a new event of the same alert; the earlier deliveries are kept."""
    storage = services.storage
    params = services.settings.bursts
    states = BurstStates(storage).get(org, list(narrative_ids))
    alert_of = {nid: state.alert_id for nid, state in states.items() if state.alert_id}
    if not alert_of:
        return {"alerts_checked": 0, "reclassified": 0, "updated": 0}
    alerts = Alerts(storage).get(org, sorted(set(alert_of.values())))
    docs = Narratives(storage).get(org, sorted(alert_of))
    rows: list[tuple[Alert, float | None]] = []
    changed_kind: list[Alert] = []
    now = datetime.now(UTC).isoformat(timespec="seconds")
    for nid, alert_id in sorted(alert_of.items()):
        alert, doc = alerts.get(alert_id), docs.get(nid)
        if alert is None or doc is None:
            continue
        evidence = alert.evidence
        debunks = _debunks(storage, org, doc, datetime.fromisoformat(evidence["burst_start"]).timestamp())
        kind = "resurfacing" if _resurfaces(evidence.get("quiet_hours_before"), debunks, params) else "burst"
        if kind == alert.kind and debunks == evidence.get("debunks", []):
            continue
        updated = dataclasses.replace(alert, kind=kind, updated_at=now, evidence={**evidence, "debunks": debunks})
        if kind != alert.kind:
            updated = dataclasses.replace(updated, reclassified=[*alert.reclassified, {"from": alert.kind, "to": kind, "at": now, "because": "fact-checks re-checked"}])
            changed_kind.append(updated)
        rows.append((updated, _burst_end(updated)))
    if rows:
        store_alerts(storage, services.alert_dispatcher, org, rows, deliver=changed_kind)
    return {"alerts_checked": len(alert_of), "reclassified": len(changed_kind), "updated": len(rows) - len(changed_kind)}


STAGE = FunctionStage(
    "bursts", BURSTS_VERSION, bursts_stage, needs=("narratives",), writes=(ALERTS, BURST_STATE, DELIVERIES),
    doc="bursts in the narratives the posts joined: alerts stored and delivered",
)
