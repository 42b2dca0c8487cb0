"""Grounding re-ask (``direct``): a record whose evidence is not in the text, or whose key
value does not occur in its evidence or chunk, is re-asked once with the reason; what is
still ungrounded is stored flagged and left out of views and scores."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import duckdb

from pipeline.batch import ExtractConfig, RunSummary, run_extract
from pipeline.store import Store
from tests.conftest import FakeProvider

DOC = "KYV-101 is a CD19 CAR T cell therapy. Kyverna Therapeutics develops KYV-101 for myasthenia gravis."
THERAPY = {"name": "KYV-101", "target": "CD19", "evidence": "KYV-101 is a CD19 CAR T cell therapy."}
BAD_QUOTE = {"name": "Kyverna Therapeutics", "kind": "company", "evidence": "Kyverna makes cell therapies."}
GOOD_QUOTE = {"name": "Kyverna Therapeutics", "kind": "company", "evidence": "Kyverna Therapeutics develops KYV-101"}
# a verbatim quote, but the name is not in it or anywhere in the text: an invented value
INVENTED = {"name": "Novartis", "kind": "company", "evidence": "Kyverna Therapeutics develops KYV-101"}


def run(tmp_path: Path, db: Path, fake: FakeProvider, **cfg: Any) -> RunSummary:
    doc = tmp_path / "docs" / "kyv.txt"
    doc.parent.mkdir(exist_ok=True)
    doc.write_text(DOC, encoding="utf-8")
    return run_extract([doc], db=db, config=ExtractConfig(**cfg), provider=fake, progress=False)


def orgs(db: Path) -> list[tuple[Any, ...]]:
    con = duckdb.connect(str(db), read_only=True)
    try:
        return con.execute("SELECT name, grounded, alignment FROM rec_organizations ORDER BY name").fetchall()
    finally:
        con.close()


def scored(db: Path, include_ungrounded: bool) -> list[str]:
    from pipeline.core.schema import load_schema

    with Store(db) as store:
        run_id = store.resolve_run("latest")
        rows = store.run_records(run_id, load_schema("biomedical"), include_ungrounded=include_ungrounded)
    return sorted(r["name"] for r in rows.get("kyv", {}).get("organizations", []))


def test_ungrounded_record_is_reasked_once_with_the_reason(tmp_path: Path, db: Path) -> None:
    fake = FakeProvider(
        [
            {"therapies": [THERAPY], "organizations": [BAD_QUOTE]},
            {"therapies": [THERAPY], "organizations": [GOOD_QUOTE]},
        ]
    )
    summary = run(tmp_path, db, fake)
    assert (summary.status, summary.calls) == ("completed", 2)
    reask = fake.requests[1]["messages"]
    assert [m["role"] for m in reask[-2:]] == ["assistant", "user"]
    assert (
        "organizations[0]: its evidence 'Kyverna makes cell therapies.' is not a verbatim quote" in reask[-1]["content"]
    )
    assert orgs(db) == [("Kyverna Therapeutics", True, "exact")]
    assert summary.records["therapies"] == 1  # the grounded record of the first answer is kept once


def test_still_ungrounded_is_stored_flagged_and_not_scored(tmp_path: Path, db: Path) -> None:
    answer = {"therapies": [THERAPY], "organizations": [BAD_QUOTE]}
    summary = run(tmp_path, db, FakeProvider([answer, answer]))
    assert summary.calls == 2
    assert orgs(db) == [("Kyverna Therapeutics", False, "none")]
    assert scored(db, include_ungrounded=False) == []
    assert scored(db, include_ungrounded=True) == ["Kyverna Therapeutics"]


def test_key_value_absent_from_the_text_is_ungrounded_even_with_a_real_quote(tmp_path: Path, db: Path) -> None:
    answer = {"therapies": [THERAPY], "organizations": [INVENTED]}
    fake = FakeProvider([answer, answer])
    run(tmp_path, db, fake)
    assert "its name 'Novartis' does not occur in the text" in fake.requests[1]["messages"][-1]["content"]
    assert orgs(db) == [("Novartis", False, "exact")]  # the quote was found; the name was not
    # the evaluator's re-check applies the same rule: it agrees with the stored flag
    from pipeline.core.schema import load_schema
    from pipeline.evaluate import grounding

    with Store(db) as store:
        rows = store.run_records(store.resolve_run("latest"), load_schema("biomedical"), include_ungrounded=True)
    check = grounding(rows, {"kyv": DOC}, load_schema("biomedical"))
    assert (check.grounded, check.total, check.flag_disagrees) == (1, 2, 0)
    assert grounding(rows, {"kyv": DOC}).flag_disagrees == 1  # evidence alone would call Novartis grounded


def test_no_reground_makes_one_call(tmp_path: Path, db: Path) -> None:
    summary = run(tmp_path, db, FakeProvider([{"organizations": [BAD_QUOTE]}]), reground=False)
    assert summary.calls == 1 and orgs(db) == [("Kyverna Therapeutics", False, "none")]


def test_grounded_answer_makes_no_reask(tmp_path: Path, db: Path) -> None:
    summary = run(tmp_path, db, FakeProvider([{"therapies": [THERAPY], "organizations": [GOOD_QUOTE]}]))
    assert summary.calls == 1


def test_failed_reask_keeps_the_first_answer(tmp_path: Path, db: Path) -> None:
    first = {"therapies": [THERAPY], "organizations": [BAD_QUOTE]}
    summary = run(tmp_path, db, FakeProvider([first, "not json", "{", "[]"]), max_retries=2)
    assert summary.status == "completed" and summary.calls == 4
    assert summary.records["therapies"] == 1
    assert orgs(db) == [("Kyverna Therapeutics", False, "none")]


def test_cached_response_reproduces_the_reasked_records(tmp_path: Path, db: Path) -> None:
    fake = FakeProvider(
        [
            {"therapies": [THERAPY], "organizations": [BAD_QUOTE]},
            {"therapies": [THERAPY], "organizations": [GOOD_QUOTE]},
        ]
    )
    run(tmp_path, db, fake)
    other = tmp_path / "docs" / "copy.txt"  # same text in another document: served from the cache
    other.write_text(DOC, encoding="utf-8")
    again = run_extract([other], db=db, config=ExtractConfig(), provider=fake, progress=False)
    assert (again.calls, again.chunks_cached) == (0, 1)
    con = duckdb.connect(str(db), read_only=True)
    rows = con.execute("SELECT name, grounded FROM rec_organizations WHERE doc_id = 'copy'").fetchall()
    con.close()
    assert rows == [("Kyverna Therapeutics", True)]


def test_digit_evidence_and_letterless_names_are_not_support(tmp_path: Path, db: Path) -> None:
    """A zero-shot small model answers names "1", "2" quoting "1": both occur in the text and
    support nothing."""
    digits = {"name": "1", "kind": "company", "evidence": "1"}
    letterless = {"name": "101", "kind": "company", "evidence": "Kyverna Therapeutics develops KYV-101"}
    answer = {"organizations": [digits, letterless]}
    fake = FakeProvider([answer, answer])
    run(tmp_path, db, fake)
    reask = fake.requests[1]["messages"][-1]["content"]
    assert "organizations[0]: its evidence '1' quotes no words" in reask
    assert "organizations[1]: its name '101' has no letters" in reask
    assert orgs(db) == [("1", False, "exact"), ("101", False, "exact")]
    assert scored(db, include_ungrounded=False) == []
