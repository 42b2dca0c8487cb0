"""Candidate generators (the biomedical package's and the generic ones) and the
candidate-constrained strategies (no model)."""

from __future__ import annotations

from pathlib import Path

import duckdb

from pipeline.batch import ExtractConfig, run_extract
from pipeline.candidates import GENERIC_KINDS, aliases, find, values
from schemas.biomedical.candidates import KINDS, is_generic_therapy
from tests.conftest import FakeProvider


def candidates(kind: str, text: str) -> list[str]:
    return find({**GENERIC_KINDS, **KINDS}[kind], text)


def values_of(kind: str, text: str) -> list[str]:
    return values({**GENERIC_KINDS, **KINDS}[kind], text)


TEXT = (
    "The FDA granted Fast Track designation to SC291 in lupus nephritis. "
    "B cells drive disease in many autoimmune diseases, including rheumatoid arthritis. "
    "“We are pleased,” said Dhaval Patel, MD, PhD, of Sana Biotechnology. "
    "The Phase 2 trial is an open-label study called KYSA-6 of KYV-101."
)


def test_generators_find_spans_of_the_text() -> None:
    conditions = set(candidates("condition", TEXT))
    assert {"lupus nephritis", "rheumatoid arthritis"} <= conditions
    assert not conditions & {"autoimmune diseases", "drive disease", "many autoimmune diseases"}  # umbrella classes
    assert candidates("therapy", TEXT) == ["SC291", "KYV-101"]  # KYSA-6 is the trial's name
    assert candidates("person", TEXT) == ["Dhaval Patel"]
    assert candidates("agency", TEXT) == ["FDA"]
    assert "Fast Track designation" in candidates("action", TEXT)
    assert candidates("phase", TEXT) == ["Phase 2"] and values_of("phase", TEXT) == ["2"]
    assert values_of("date", "Published Jan 4, 2023; updated 2024 Mar 10.") == ["2023-01-04", "2024-03-10"]
    assert is_generic_therapy("CAR T cells") and not is_generic_therapy("ARI-0001")


def test_rules_strategy_is_grounded_and_never_calls_the_model(tmp_path: Path) -> None:
    doc = tmp_path / "docs" / "sana.txt"
    doc.parent.mkdir()
    doc.write_text(TEXT + "\n", encoding="utf-8")
    fake = FakeProvider()  # any call would fail: it has no queued output
    db = tmp_path / "r.duckdb"
    summary = run_extract([doc], db=db, config=ExtractConfig(strategy="rules"), provider=fake, progress=False)
    assert summary.status == "completed" and summary.calls == 0 and fake.requests == []
    con = duckdb.connect(str(db), read_only=True)
    conditions = [r[0] for r in con.execute("SELECT name FROM rec_conditions ORDER BY name").fetchall()]
    events = con.execute("SELECT agency, action, therapy FROM rec_regulatory_events").fetchall()
    ungrounded = sum(
        con.execute(f"SELECT count(*) FROM rec_{t} WHERE NOT grounded").fetchone()[0]  # type: ignore[index]
        for t in ("conditions", "therapies", "people", "regulatory_events", "trials")
    )
    con.close()
    assert conditions == ["lupus nephritis", "rheumatoid arthritis"]  # maximal spans; no umbrella class
    assert ("FDA", "Fast Track designation", "SC291") in events
    assert ungrounded == 0


def test_numbered_affiliation_list_gives_one_organization_per_piece() -> None:
    text = (
        "Ann Smith1, Bo Li2 and Cy Ode3, 1Northfield University and Northfield University Hospital, Leeds, "
        "United Kingdom, 2Eastgate Royal Infirmary, York, United Kingdom, 3Acme Therapeutics, Basel, Switzerland"
    )
    orgs = candidates("organization", text)
    assert orgs == [
        "Northfield University",
        "Northfield University Hospital",
        "Eastgate Royal Infirmary",
        "Acme Therapeutics",
    ]  # no "Leeds", no "University and Northfield University Hospital"
    assert "Cy Ode" in candidates("person", text)  # the last author, after "and"
    assert candidates("condition", text) == []


def test_funders_need_a_funding_statement() -> None:
    assert candidates("funder", "The IND application from Kyverna Therapeutics was cleared by the FDA.") == []
    assert candidates("funder", "This work was supported by the Acme Foundation (G-12).") == ["Acme Foundation"]


def test_condition_with_a_parenthesized_abbreviation_inside() -> None:
    found = candidates("condition", "It targets antineutrophil cytoplasmic antibody (ANCA)-associated vasculitis.")
    assert "antineutrophil cytoplasmic antibody (ANCA)-associated vasculitis" in found
    assert "4 infections" not in candidates("condition", "In total, 4 infections were seen.")


def test_two_word_cell_therapy_names_and_codes() -> None:
    text = "Obecabtagene autoleucel (obe-cel) was given; AQP-4 antibodies fell; KYV-101 was dosed."
    assert candidates("therapy", text) == ["Obecabtagene autoleucel", "obe-cel", "KYV-101"]
    assert aliases(KINDS["therapy"], text) == {"obe-cel": "Obecabtagene autoleucel"}  # one therapy, two names


def test_verb_with_its_object_is_an_action_and_bullets_are_not_titles() -> None:
    text = "The FDA has cleared an investigational new drug (IND) application from Acme."
    assert "cleared an investigational new drug (IND) application" in candidates("action", text)
    assert candidates("title", "• View and print all your favorites\nA Trial of KYV-101 in Myasthenia Gravis") == [
        "A Trial of KYV-101 in Myasthenia Gravis"
    ]


def test_class_phrase_is_no_therapy_once_a_sentence_ties_it_to_a_product(tmp_path: Path) -> None:
    from pipeline.ingest import read_document
    from pipeline.strategies.candidates import ties_class_to_name

    def doc(text: str) -> bool:
        path = tmp_path / "d.txt"
        path.write_text(text, encoding="utf-8")
        return ties_class_to_name(KINDS["therapy"], read_document(path))

    assert doc("The patient received ARI-0001 CAR-T cells in March. She recovered well.\n")
    # a product of another class elsewhere does not make the CAR-T therapy a mere description
    assert not doc("Rituximab had failed before. The child then received CD19 CAR-T cells.\n")

    def therapies(text: str) -> list[str]:
        path = tmp_path / "docs" / "t.txt"
        path.parent.mkdir(exist_ok=True)
        path.write_text(text, encoding="utf-8")
        db = tmp_path / f"t{len(text)}.duckdb"
        cfg = ExtractConfig(strategy="rules")
        run_extract([path], db=db, config=cfg, provider=FakeProvider(), progress=False)
        con = duckdb.connect(str(db), read_only=True)
        try:
            return [r[0] for r in con.execute("SELECT name FROM rec_therapies WHERE grounded ORDER BY name").fetchall()]
        finally:
            con.close()

    tied = (
        "The patient received ARI-0001 CAR-T cells in March. Later, CAR-T cells were given again to a second child.\n"
    )
    assert "CAR-T cells" not in therapies(tied) and "ARI-0001" in therapies(tied)
    alone = "Rituximab had failed before. Later, CD19 CAR-T cells were given to the child with lupus nephritis.\n"
    assert any("CAR-T" in t for t in therapies(alone))


def test_a_verb_inside_a_hyphenated_word_starts_no_finding() -> None:
    assert candidates("finding", "We tested CT103A, a self-developed BCMA-targeting CAR construct.") == []
    assert candidates("finding", "Seven patients developed infections, but none were severe.") == ["infections"]


def test_select_asks_for_no_more_items_than_distinct_key_candidates() -> None:
    """The 270M model repeated one person until max_tokens cut the JSON, losing the unit."""
    from types import SimpleNamespace
    from typing import Any

    from pipeline.core.schema import load_schema
    from pipeline.strategies import field_specs
    from pipeline.strategies.candidates import CandidateStrategy

    schema = load_schema("biomedical")
    rt = schema.record_type("people")
    specs = field_specs(rt, schema)
    seen: dict[str, Any] = {}

    class Calls:
        def structured(self, response_model: Any, messages: Any, **_: Any) -> Any:
            seen["schema"] = response_model.model_json_schema()
            return response_model(items=[])

    strategy = CandidateStrategy()
    strategy.render = lambda *args, **kwargs: []  # type: ignore[method-assign]
    for names, limit in ([["Peter Maag", "Peter Maag"], 1], [["A Bee", "C Dee", "E Eff"], 3]):
        cands = {s.name: [] for s in specs} | {"name": [(n, i * 20, i * 20 + len(n)) for i, n in enumerate(names)]}
        strategy.select(Calls(), rt, specs, cands, "", SimpleNamespace())  # type: ignore[arg-type]
        assert seen["schema"]["properties"]["items"]["maxItems"] == limit


RELATIONS = (
    "Velmora Gains EMA Panel Support for Chronic Kidney Disease\n\n"
    "Novacor Biologics’ Velmora (zentafimab) has received a positive opinion from the Committee for Medicinal "
    "Products for Human Use (CHMP) of the European Medicines Agency (EMA). "
    "The recommendation follows data from the Phase III ORION-4 trial, which showed that zentafimab "
    "significantly slowed kidney function decline in adults with chronic kidney disease. "
    "In addition, the global ORION-4 study met its goals, and the ORION-5 study evaluated a monthly dosing schedule. "
    "The drug reduced the risk of dialysis by 31% compared to placebo.\n"
)


def rules_records(tmp_path: Path, text: str, table: str, columns: str) -> list[tuple[object, ...]]:
    path = tmp_path / "docs" / "d.txt"
    path.parent.mkdir(exist_ok=True)
    path.write_text(text, encoding="utf-8")
    db = tmp_path / f"r{abs(hash(text)) % 10_000}.duckdb"
    if not db.exists():
        run_extract([path], db=db, config=ExtractConfig(strategy="rules"), provider=FakeProvider(), progress=False)
    con = duckdb.connect(str(db), read_only=True)
    try:
        return con.execute(f"SELECT DISTINCT {columns} FROM {table} WHERE grounded ORDER BY ALL").fetchall()
    finally:
        con.close()


def test_trials_are_mentions_with_or_without_a_phase(tmp_path: Path) -> None:
    """A trial mention is a record; its phase (Roman numerals as digits) and name are read inside
    it; an unphased mention of a named trial the document gives a phase for is that trial."""
    trials = rules_records(tmp_path, RELATIONS, "trials", "therapy, phase, name")
    assert trials == [("Velmora", "3", "ORION-4"), ("Velmora", None, "ORION-5")]


def test_second_names_and_the_title_give_the_therapy(tmp_path: Path) -> None:
    """A brand given with its generic name is one therapy; a result whose sentence names no
    therapy ("The drug reduced ...") takes the one the title names."""
    assert rules_records(tmp_path, RELATIONS, "therapies", "name") == [("Velmora",)]
    outcomes = rules_records(tmp_path, RELATIONS, "outcomes", "therapy, finding")
    assert ("Velmora", "significantly slowed kidney function decline") in outcomes
    assert ("Velmora", "reduced the risk of dialysis by 31% compared to placebo") in outcomes


def test_any_regulator_and_its_actions(tmp_path: Path) -> None:
    events = rules_records(tmp_path, RELATIONS, "regulatory_events", "agency, action, therapy")
    assert [(a in {"CHMP", "Committee for Medicinal Products for Human Use"}, *rest) for a, *rest in events] == [
        (True, "positive opinion", "Velmora")
    ]
    # a decision verb counts only with a regulator as its agent
    assert "approved" not in candidates("action", "The drug is already approved in Mexico.")
    assert candidates("action", "The FDA has approved the drug.") == ["approved"]
    assert candidates("action", "The CHMP recommended a conditional marketing authorisation.") == [
        "conditional marketing authorisation"
    ]
    assert values_of("phase", "a Phase Ib/IIa study and a phase 3 trial") == ["1b/2a", "3"]


def test_a_result_restated_later_is_one_finding() -> None:
    from schemas.biomedical.candidates import findings_in

    doc = (
        "• The vaccine showed 61.2% efficacy after two doses.\n"
        "After 4.5 years, two doses demonstrated 61.2% vaccine efficacy in preventing infection.\n"
        "No new safety concerns were identified. It is thought that the drug will reduce relapses.\n"
    )
    lines = doc.splitlines()
    find = findings_in(doc)
    assert find(lines[0]) == ["61.2% efficacy"]
    assert find(lines[1]) == []  # the same figure: the summary bullet already reported it
    assert find(lines[2]) == ["No new safety concerns"]  # and no result from a supposition
