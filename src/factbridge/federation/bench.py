"""`factbridge bench federation`: how fast a desk signs its feed and a partner verifies and takes it in.

Two desks in one process (in-memory SQLite, the hashing embedder, so that the figures are about
signing, proofs, verification and storage rather than the model); the partner reads the feed
through the real web app (ASGI, no network). N published cases are made through the case
workflow (draft, second editor's approval, publication), then timed: putting them into the feed
(sign + audit proof), and one pull of the partner (keys, pages, verification of signature and
proof, storing with audit entries, indexing into the library).
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any


def bench_exchange(items: int, advance: Callable[[int], None] | None = None) -> dict[str, Any]:
    from fastapi.testclient import TestClient

    from factbridge.federation.feed import Outbox
    from factbridge.federation.identity import Identity
    from factbridge.federation.partners import Partners
    from factbridge.federation.sync import Syncer
    from factbridge.services import Services
    from factbridge.settings import load_settings
    from factbridge.web.app import accounts_for, create_app
    from factbridge.workflow.accounts import Actor
    from factbridge.workflow.audit import AuditLog
    from factbridge.workflow.cases import CaseBook, RatingScale

    with tempfile.TemporaryDirectory(prefix="factbridge-bench-fed-") as tmp:
        def desk(org: str) -> Services:
            (Path(tmp) / org).mkdir()
            return Services(load_settings(env={}, overrides={"data_dir": str(Path(tmp) / org), "storage_url": "sqlite:///:memory:",
                                                             "embedder": "hashing", "embed_cache": "off", "match_fusion": "rrf", "org": org}))

        with desk("km") as km, desk("vi") as vi:
            accounts_for(km).add_org("km", "Khmer Desk")
            cases = CaseBook(km.storage, AuditLog(km.storage), RatingScale.parse(km.settings.rating_scale))
            analyst, editor = Actor("analyst", "km", "analyst"), Actor("editor", "km", "editor")
            t0 = time.perf_counter()
            for n in range(items):
                case = cases.open("km", analyst, f"Claim number {n}: the dam on the Mekong broke ({n})", language="en")
                cases.draft_verdict("km", analyst, case.id, "False", "No dam broke.")
                cases.approve("km", editor, case.id)
                cases.publish("km", editor, case.id, "http://km.test", "Khmer Desk")
                if advance:
                    advance(1)
            t1 = time.perf_counter()
            km_identity, vi_identity = Identity(km.settings.data_dir), Identity(vi.settings.data_dir)
            Partners(vi.storage, "vi").add("bench", "km", "http://km.test", km_identity.active().public_text, "km")
            Partners(km.storage, "km").add("bench", "vi", "http://vi.test", vi_identity.active().public_text, "vi")
            fed = Outbox(km.storage, km_identity, "km", "CC-BY-4.0").refresh()
            t2 = time.perf_counter()
            with TestClient(create_app(km), base_url="http://km.test") as client:
                report = Syncer(vi, "vi", vi_identity, client=client).sync("km")
            t3 = time.perf_counter()
    return {
        "items": items,
        "workflow_s": round(t1 - t0, 3),
        "sign_s": round(t2 - t1, 3),
        "signed_per_s": round(len(fed) / (t2 - t1), 1),
        "pull_s": round(t3 - t2, 3),
        "accepted": len(report.accepted),
        "refused": len(report.refused),
        "accepted_per_s": round(len(report.accepted) / (t3 - t2), 1),
        "error": report.error or "",
    }
