from pathlib import Path

import pytest

from factbridge.errors import InputError
from factbridge.models import FactCheck, Quarantined
from factbridge.pipeline.ingest import import_factcheck_files
from factbridge.pipeline.library import read_factchecks

FIX = Path(__file__).parent / "fixtures" / "factchecks"


def _split(items):
    items = list(items)
    good = [i for i in items if isinstance(i, FactCheck)]
    bad = [i for i in items if isinstance(i, Quarantined)]
    return good, bad


def test_claimreview_graph_and_type_list() -> None:
    good, bad = _split(read_factchecks(FIX / "claimreview_graph.json"))
    assert [g.id for g in good] == ["https://check.example.org/a", "https://check.example.org/b"]
    a, b = good
    assert a.rating == "False" and a.rating_value == 1.0 and a.publisher == "Example Check"
    assert a.claimant == "A. Poster" and a.claim_date and a.claim_date.year == 2020
    assert a.title == "Hot water does not cure COVID-19" and a.language == "en"
    assert b.language == "fr" and b.rating == "Faux" and b.publisher == "Example Check"
    assert a.raw["url"] == "https://check.example.org/a"  # the raw record is kept
    assert not bad


def test_claimreview_embedded_in_html_quarantines_broken_block() -> None:
    good, bad = _split(read_factchecks(FIX / "page.html"))
    assert len(good) == 1 and good[0].language == "vi" and good[0].claim == "Vắc xin gây vô sinh"
    assert len(bad) == 1 and bad[0].line == 6 and "invalid JSON-LD" in bad[0].reason


def test_google_factcheck_response() -> None:
    good, bad = _split(read_factchecks(FIX / "google.json"))
    assert len(good) == 1
    fc = good[0]
    assert fc.publisher == "Cambodia Check" and fc.rating == "មិនពិត" and fc.language == "km"
    assert fc.claimant == "Facebook posts" and fc.url == "https://check.example.kh/bridge"
    assert len(bad) == 1 and bad[0].field == "claims[1].text"


def test_csv_with_column_mapping_names_bad_rows() -> None:
    mapping = {"claim": "Claim", "rating": "Verdict", "publisher": "Publisher", "url": "Link", "language": "Lang", "published_at": "Date"}
    good, bad = _split(read_factchecks(FIX / "mapped.csv", mapping=mapping))
    assert [g.claim for g in good] == ["Floods closed every school in Hanoi"]
    assert good[0].id == "https://a.example.org/1" and good[0].published_at and good[0].published_at.month == 10
    assert [(b.line, b.field) for b in bad] == [(3, "Claim"), (4, "Date")]


def test_csv_without_claim_column_explains_the_mapping() -> None:
    good, bad = _split(read_factchecks(FIX / "mapped.csv"))
    assert not good and "--map claim=COLUMN" in bad[0].reason


def test_unknown_file_and_format_are_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="no such file"):
        list(read_factchecks(tmp_path / "missing.json"))
    with pytest.raises(InputError, match="unknown format"):
        list(read_factchecks(FIX / "google.json", fmt="xml"))


def test_checkthat_formats(shared_data: Path) -> None:
    tsv = shared_data / "claim_retrieval" / "clef2020_t2_en" / "verified_claims.docs.tsv"
    good, bad = _split(read_factchecks(tsv))
    # 10,389 lines, but 14 claims hold a quoted line break: read as lines, 28 rows seem
    # to lack a title; read as TSV they are 14 whole claims, every one with its title.
    assert len(good) == 10375 and not bad
    assert sum("\n" in g.claim for g in good) == 14 and all(g.title for g in good)
    jsonl = shared_data / "claim_retrieval" / "clef2022_2a_en" / "vclaims.jsonl"
    good, bad = _split(read_factchecks(jsonl))
    assert len(good) == 14231 and not bad
    assert good[0].published_at is not None and good[0].publisher == "Snopes"


def test_import_is_an_upsert(storage, tmp_path: Path) -> None:
    report, changed = import_factcheck_files(storage, "org1", [FIX / "claimreview_graph.json"], ("en", "fr"))
    assert (report.inserted, report.updated, report.unchanged) == (2, 0, 0) and len(changed) == 2
    report, changed = import_factcheck_files(storage, "org1", [FIX / "claimreview_graph.json"], ("en", "fr"))
    assert (report.inserted, report.updated, report.unchanged) == (0, 0, 2) and changed == []
    edited = tmp_path / "edited.json"
    edited.write_text((FIX / "claimreview_graph.json").read_text().replace('"False"', '"Mostly false"'))
    report, changed = import_factcheck_files(storage, "org1", [edited], ("en", "fr"))
    assert (report.inserted, report.updated, report.unchanged) == (0, 1, 1) and changed == ["https://check.example.org/a"]
    assert storage.get_factcheck("org1", "https://check.example.org/a").rating == "Mostly false"
    assert storage.count_factchecks("org2") == 0
