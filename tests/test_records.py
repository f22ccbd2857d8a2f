"""Typed records of the shared collections: what the stages store reads back into the
record unchanged, and the workspace reads the records, never guessing field names."""

from __future__ import annotations

import ast
from dataclasses import fields
from pathlib import Path

from factbridge.demo import sample_dir
from factbridge.models import Post
from factbridge.pipeline import records
from factbridge.pipeline.ingest import import_factcheck_files, read_file
from factbridge.pipeline.matching import index_factchecks
from factbridge.pipeline.records import (
    Alert,
    Alerts,
    CheckworthinessRecord,
    CheckworthinessScores,
    LinkRiskRecord,
    LinkRisks,
    NarrativeRecord,
    Narratives,
    QueueEntry,
    TopicRecord,
)
from factbridge.pipeline.stages import run_stages
from factbridge.services import Services
from factbridge.web import pipeline_views as pv

ORG = "records"


def _processed(services: Services) -> list[Post]:
    sample = sample_dir()
    import_factcheck_files(services.storage, ORG, sorted(sample.glob("factchecks*")), services.languages)
    index_factchecks(services.storage, services.embedder, ORG)
    posts: list[Post] = []
    for path in sorted(sample.glob("posts*")):
        posts.extend(read_file(path, services.languages)[0])
    services.storage.upsert_posts(ORG, posts)
    run_stages(services, ORG, posts)
    return posts


def test_what_the_stages_store_reads_back_unchanged(hashing_services: Services) -> None:
    posts = _processed(hashing_services)
    storage = hashing_services.storage
    ids = [p.id for p in posts]

    cw = storage.get_docs(ORG, records.CHECKWORTHINESS, ids)
    assert len(cw) == len(posts)
    for pid, doc in cw.items():
        assert CheckworthinessRecord.from_doc(pid, doc).to_doc() == doc
    assert CheckworthinessScores(storage).get(ORG, ids[:3]).keys() == set(ids[:3])

    links = storage.get_docs(ORG, records.LINKRISK, ids)
    assert any(d["urls"] for d in links.values()), "the sample has posts with links"
    for pid, doc in links.items():
        record = LinkRiskRecord.from_doc(pid, doc)
        assert {k: v for k, v in record.to_doc().items() if k != "max_score"} == {k: v for k, v in doc.items() if k != "max_score"}
        assert record.max_score == doc["max_score"] and record.level == doc["level"]
    assert set(LinkRisks(storage).get(ORG, ids)) == set(links)

    queue = storage.list_docs(ORG, records.QUEUE, limit=1000)
    assert queue
    for entry_id, doc in queue:
        assert QueueEntry.from_doc(entry_id, doc).to_doc() == doc

    # Narratives and topics carry the stage's working state too: every field the records
    # read is one the stage writes, with its value.
    narratives = storage.list_docs(ORG, records.NARRATIVES, limit=1000)
    assert narratives
    stored_keys = set().union(*(d.keys() for _, d in narratives))
    read = {f.name for f in fields(NarrativeRecord)} - {"representative_post_id", "representative_text", "representative_language", "merged_into", "risk"}
    assert read <= stored_keys | {"recent_posts"}, read - stored_keys
    for nid, doc in narratives:
        record = NarrativeRecord.from_doc(nid, doc)
        assert (record.size, record.top_terms, record.counts_daily) == (doc["size"], doc["top_terms"], doc["counts_daily"])
        assert record.representative_post_id == doc["representative"]["post_id"] and record.post_ids
        assert record.decided_by.startswith("narratives-")
        # the public view is the stored document without the stage's working state
        assert record.to_doc() == {k: v for k, v in doc.items() if k not in {"terms", "vector_sum", "rep_vector"}}
    assert {n.id for n in Narratives(storage).hottest(ORG)} == {nid for nid, d in narratives if not d.get("merged_into")}
    for tid, doc in storage.list_docs(ORG, records.TOPICS, limit=1000):
        if not doc.get("merged_into"):
            topic = TopicRecord.from_doc(tid, doc)
            assert (topic.size, topic.narratives, topic.label) == (doc["size"], doc["narratives"], doc["label"])
            assert topic.to_doc() == {k: v for k, v in doc.items() if k != "vector_sum"}

    for alert_id, doc in storage.list_docs(ORG, records.ALERTS, limit=1000):
        assert Alert.from_doc(alert_id, doc).to_doc() == doc


def test_alert_record_keeps_fields_of_other_kinds(storage) -> None:  # type: ignore[no-untyped-def]
    partner = {"id": "p-1", "kind": "partner", "summary": "s", "status": "new", "raised_at": "2026-01-01T00:00:00+00:00",
               "updated_at": "2026-01-01T00:00:00+00:00", "narrative_id": None, "topic_id": "", "top_terms": ["a"],
               "evidence": {"posts": [{"post_id": "x1"}]}, "decided_by": "partner-1", "partner": "desk-b"}
    alert = Alert.from_doc("p-1", partner)
    assert alert.extra == {"partner": "desk-b"} and alert.post_ids == ["x1"] and alert.to_doc() == partner
    Alerts(storage).put("o", [(alert, 1.0)])
    assert Alerts(storage).recent("o") == [alert]
    (row,) = pv.alerts(storage, "o")
    assert (row["kind"], row["title"], row["post_ids"], row["decided_by"]) == ("partner", "s", ["x1"], "partner-1")


def test_workspace_views_name_each_field_once() -> None:
    """No `doc.get("a") or doc.get("b")` and no lookup helper trying several names."""
    source = (Path(pv.__file__)).read_text(encoding="utf-8")
    tree = ast.parse(source)
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef):
            assert node.name != "first", "a helper that tries several field names"
        if isinstance(node, ast.BoolOp) and isinstance(node.op, ast.Or):
            keys = [
                v.args[0].value for v in node.values
                if isinstance(v, ast.Call) and isinstance(v.func, ast.Attribute) and v.func.attr == "get"
                and v.args and isinstance(v.args[0], ast.Constant)
            ]
            feed_display = set(keys) == {"threat", "kind"}  # a feed hit has both: the threat, else the list's kind
            assert len(keys) < 2 or feed_display, f"line {node.lineno}: guesses between {keys}"
