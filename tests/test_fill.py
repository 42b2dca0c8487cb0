"""The fill step (``pipeline/strategies/fill.py``): records built by ``rules`` completed by
rules and by the model ranking options. A fake ranking provider stands in for the model; the
last test ranks with the real embedded model."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import pytest
from pydantic import BaseModel, Field

from pipeline.batch import ExtractConfig, RunSummary, run_extract
from pipeline.core.fill import Fill, Judge, Rule
from pipeline.core.schema import describe, load_schema
from pipeline.core.types import Chunk, Document, Span
from pipeline.evaluate import evaluate
from pipeline.merge import merge_document
from pipeline.providers.base import Ranked
from pipeline.score import GoldRecord, band, score
from pipeline.strategies.fill import Filler, clip, examples_prefix, generic_fill, literal_values, margin
from tests.conftest import FakeProvider
from tests.test_extract_store import rows

DOC = (
    "Acme Therapeutics Wins FDA Fast Track for XY-08\n\n"
    "Published: January 30, 2025\n\n"
    "The FDA granted Fast Track designation to XY-08 for lupus nephritis. "
    "Acme Therapeutics develops XY-08 with Beta University. "
    "Acme Therapeutics will launch a Phase 2 trial of XY-08 in lupus nephritis.\n"
)


class FakeRanker(FakeProvider):
    """Ranks like a model would: the option named in ``answers`` for the item whose prompt tail
    (after the cached examples) holds the key (the longest such key) scores 0, the others
    -3, -3.5, ...; a content-free item (calibration) scores every option 0."""

    model_id = "fake:ranker"
    can_rank = True

    def __init__(self, answers: dict[str, str], fail: BaseException | None = None) -> None:
        super().__init__()
        self.answers = answers
        self.fail = fail
        self.ranked: list[tuple[str, list[str], str]] = []

    def rank(self, prefix: str, options: Sequence[str], *, keep: str = "") -> Ranked:
        self.ranked.append((prefix, list(options), keep))
        if self.fail is not None:
            raise self.fail
        tail = prefix[len(keep) :]
        if "Text: N/A" in tail:
            return Ranked(scores=[0.0] * len(options), tokens_in=len(tail.split()), tokens_out=0)
        item = tail.rsplit("Text:", 1)[-1]
        keys = sorted((k for k in self.answers if k in item), key=len, reverse=True)  # the most specific key
        wanted = self.answers[keys[0]] if keys else None
        scores = [0.0 if o.strip() == wanted else -3.0 - 0.5 * i for i, o in enumerate(options)]
        return Ranked(scores=scores, tokens_in=len(tail.split()), tokens_out=sum(len(o.split()) for o in options))


ANSWERS = {"Acme Therapeutics?": "company", "FDA?": "regulator", "Beta University?": "university", "XY-08?": "none"}


def run(tmp: Path, db: Path, provider: FakeProvider, text: str = DOC, name: str = "acme", **cfg: Any) -> RunSummary:
    folder = tmp / "docs"
    folder.mkdir(exist_ok=True)
    (folder / f"{name}.txt").write_text(text, encoding="utf-8")
    cfg.setdefault("strategy", "rules")
    return run_extract([folder], db=db, config=ExtractConfig(**cfg), provider=provider, progress=False)


def test_model_ranks_organization_kinds_and_every_request_is_a_logged_call(tmp_path: Path, db: Path) -> None:
    fake = FakeRanker(ANSWERS)
    summary = run(tmp_path, db, fake)
    assert summary.status == "completed"
    kinds = dict(rows(db, "SELECT name, kind FROM organizations"))
    assert kinds["FDA"] == "regulator" and kinds["Acme Therapeutics"] == "company"
    assert kinds["Beta University"] == "university"
    # one llm_calls row per ranking request (items and the calibration), with tokens and the scores
    calls = rows(db, "SELECT status, tokens_in, tokens_out, prompt_hash, response_text FROM llm_calls")
    assert len(calls) == len(fake.ranked) == summary.calls > 0
    assert all(c[0] == "ok" and c[1] > 0 and c[3] for c in calls)
    logged = [json.loads(c[4]) for c in calls]
    assert {x["field"] for x in logged} >= {"organizations.kind"}
    assert all(len(x["options"]) == len(x["scores"]) for x in logged)
    assert sum(x.get("calibration", False) for x in logged if x["field"] == "organizations.kind") == 1
    # the examples are the cached part of every organization-kind prompt
    org = [r for r in fake.ranked if "What kind of organization" in r[0]]
    assert org and all(r[2] and r[0].startswith(r[2]) and "Answer: company" in r[2] for r in org)
    # the margin is stored with the field, per record, and shown in the views
    conf = dict(rows(db, "SELECT name, CAST(confidence->>'kind' AS DOUBLE) FROM organizations"))
    assert conf["FDA"] == pytest.approx(3.0)  # best (0) minus second best (-3), calibration subtracts 0
    filtered = rows(db, "SELECT name FROM organizations WHERE CAST(confidence->>'kind' AS DOUBLE) >= 2")
    assert {r[0] for r in filtered} == {"FDA", "Acme Therapeutics", "Beta University"}


def test_rules_fill_deterministic_fields_without_a_call(tmp_path: Path, db: Path) -> None:
    fake = FakeRanker(ANSWERS)
    run(tmp_path, db, fake)
    assert rows(db, "SELECT published, article_type, confidence FROM article") == [("2025-01-30", "news", None)]
    assert rows(db, "SELECT DISTINCT status FROM trials") == [("planned",)]  # "will launch"
    assert not any("Published" in r[0] and "article" in r[0] for r in fake.ranked)


def test_span_field_ranked_among_candidates_with_none(tmp_path: Path, db: Path) -> None:
    fake = FakeRanker({**ANSWERS, "develops XY-08?": "Acme Therapeutics"})
    run(tmp_path, db, fake)
    dev = [r for r in fake.ranked if "Which company or institution develops XY-08" in r[0]]
    assert dev, "the developer is ranked among the chunk's organizations"
    assert " none\n\n" in dev[0][1] and " Acme Therapeutics\n\n" in dev[0][1]
    assert rows(db, "SELECT DISTINCT developer FROM therapies") == [("Acme Therapeutics",)]


def test_rerun_and_cached_response_make_no_call_and_give_the_same_records(tmp_path: Path, db: Path) -> None:
    first = run(tmp_path, db, FakeRanker(ANSWERS))
    before = rows(db, "SELECT name, kind, confidence FROM organizations ORDER BY name")
    again = FakeRanker(ANSWERS)
    second = run(tmp_path, db, again)
    assert first.calls > 0 and second.calls == 0 and again.ranked == [] and second.chunks_reused == first.chunks
    # the same text in another document: served from the response cache, the fill replayed
    other = FakeRanker({})
    third = run(tmp_path, db, other, name="copy")
    assert third.calls == 0 and other.ranked == [] and third.chunks_cached >= 1
    copy = rows(db, "SELECT name, kind, confidence FROM rec_organizations WHERE doc_id = 'copy' ORDER BY name")
    assert copy == before


def test_fill_configuration_is_part_of_the_configuration_hash(tmp_path: Path, db: Path) -> None:
    run(tmp_path, db, FakeRanker(ANSWERS))
    fake = FakeRanker(ANSWERS)
    summary = run(tmp_path, db, fake, fill_methods={"organizations.kind": "majority"})
    assert summary.chunks_reused == 0 and summary.chunks_extracted == summary.chunks
    assert not [r for r in fake.ranked if "What kind of organization" in r[0]]
    assert {r[0] for r in rows(db, "SELECT kind FROM organizations")} == {"hospital"}  # the declared majority
    off = run(tmp_path, db, FakeRanker(ANSWERS), fill=False)
    assert off.calls == 0 and {r[0] for r in rows(db, "SELECT kind FROM organizations")} == {None}


def test_a_provider_without_logits_gets_the_rules_only(tmp_path: Path, db: Path) -> None:
    plain = FakeProvider()  # can_rank is False, as for a remote model
    summary = run(tmp_path, db, plain)
    assert summary.calls == 0 and plain.requests == []
    assert rows(db, "SELECT published FROM article") == [("2025-01-30",)]
    assert {r[0] for r in rows(db, "SELECT kind FROM organizations")} == {None}


def test_a_ranking_error_is_logged_and_the_chunk_keeps_its_records(tmp_path: Path, db: Path) -> None:
    summary = run(tmp_path, db, FakeRanker(ANSWERS, fail=RuntimeError("llama_decode returned 1")))
    assert summary.status == "completed" and summary.chunks_failed == 0
    calls = rows(db, "SELECT status, error_class, error FROM llm_calls")
    assert calls == [("error", "RuntimeError", "llama_decode returned 1")]  # the fill stops at the first error
    assert rows(db, "SELECT count(DISTINCT name) FROM organizations")[0][0] == 3


def test_time_budget_stops_the_fill(tmp_path: Path, db: Path) -> None:
    fake = FakeRanker(ANSWERS)
    summary = run(tmp_path, db, fake, max_seconds=0.0001)
    assert summary.status == "completed" and fake.ranked == [] and summary.calls == 0


def test_direct_strategy_is_not_filled(tmp_path: Path, db: Path) -> None:
    fake = FakeRanker(ANSWERS)
    fake.push({"organizations": [{"name": "FDA", "kind": "funder", "evidence": "The FDA granted"}]})
    run(tmp_path, db, fake, strategy="direct", reground=False)
    assert rows(db, "SELECT kind FROM organizations") == [("funder",)] and fake.ranked == []


def test_eval_reports_accuracy_by_confidence_band(tmp_path: Path, db: Path) -> None:
    run(tmp_path, db, FakeRanker({**ANSWERS, "Beta University?": "hospital"}))
    gold = tmp_path / "gold"
    gold.mkdir()
    records: dict[str, Any] = {name: [] for name in (rt.name for rt in load_schema("biomedical").record_types)}
    records["organizations"] = [
        {"name": "FDA", "kind": "regulator"},
        {"name": "Acme Therapeutics", "kind": "company"},
        {"name": "Beta University", "kind": "university"},
    ]
    (gold / "acme.json").write_text(json.dumps({"doc_id": "acme", "records": records}), encoding="utf-8")
    report = evaluate(db=db, gold_dir=gold, docs_dir=tmp_path / "docs")
    bands = report.per_field_confidence["organizations"]["kind"]
    # every fake margin is 3 to 3.5 nats: one band, 2 of 3 right (Beta University is no hospital)
    assert {k: (v.correct, v.total) for k, v in bands.items()} == {"2-4": (2, 3)}
    assert "article" not in report.per_field_confidence  # no field of it was ranked


# -- units -------------------------------------------------------------------------------------


def test_margin_band_clip_and_literal_values() -> None:
    assert margin([-1.0, -4.0, -2.5]) == pytest.approx(1.5)
    assert [band(x) for x in (None, 0.2, 1.0, 3.9, 7)] == ["no margin", "<1", "1-2", "2-4", ">=4"]
    assert literal_values(Literal["a", "b"] | None) == ["a", "b"] and literal_values(str | None) is None
    text = "word " * 200 + "Acme Therapeutics develops it. " + "word " * 200
    clipped = clip(text, "Acme Therapeutics", 120)
    assert "Acme Therapeutics" in clipped and len(clipped) < 140


def test_merge_keeps_the_margin_of_the_value_it_takes() -> None:
    schema = load_schema("biomedical")
    per_type = {
        "organizations": [
            {"name": "FDA", "kind": None, "evidence": "a", "evidence_start": 0},
            {"name": "FDA", "kind": "regulator", "confidence": {"kind": 2.5}, "evidence": "b", "evidence_start": 5},
            {"name": "FDA", "kind": "company", "confidence": {"kind": 9.0}, "evidence": "c", "evidence_start": 9},
        ]
    }
    merged = merge_document(schema, per_type)["organizations"]
    assert merged[0]["kind"] == "regulator" and merged[0]["confidence"] == {"kind": 2.5}


def test_score_bands_per_field() -> None:
    schema = load_schema("biomedical")
    preds = {
        "d": {
            "organizations": [
                {"name": "FDA", "kind": "regulator", "confidence": {"kind": 5.0}},
                {"name": "Acme", "kind": "hospital", "confidence": {"kind": 0.4}},
                {"name": "Beta", "kind": "company"},
            ]
        }
    }
    gold = {
        "d": {
            "organizations": [
                GoldRecord(0, {"name": "FDA", "kind": "regulator"}),
                GoldRecord(1, {"name": "Acme", "kind": "company"}),
                GoldRecord(2, {"name": "Beta", "kind": "company"}),
            ]
        }
    }
    card = score(schema, preds, gold, "lenient")
    bands = card.per_field_confidence["organizations"]["kind"]
    assert {k: (v.correct, v.total) for k, v in bands.items()} == {">=4": (1, 1), "<1": (0, 1), "no margin": (1, 1)}


def test_replay_refuses_decisions_about_other_records() -> None:
    schema = load_schema("biomedical")
    filler = Filler(Fill(), schema, FakeRanker({}))
    records = {"organizations": [{"name": "FDA", "kind": None}]}
    filler.replay(records, [["organizations", 0, ["FDA"], "kind", "regulator", 2.0]])
    assert records["organizations"][0] == {"name": "FDA", "kind": "regulator", "confidence": {"kind": 2.0}}
    with pytest.raises(KeyError):
        filler.replay(records, [["organizations", 0, ["EMA"], "kind", "regulator", 2.0]])


def test_generic_fill_ranks_literal_fields_of_a_plain_schema() -> None:
    class Deal(BaseModel):
        buyer: str = Field(json_schema_extra={"key": True})
        status: Literal["agreed", "completed"] | None = None
        evidence: str

    class Deals(BaseModel):
        deals: list[Deal] = []

    fill = generic_fill(describe(Deals))
    assert [(j.name, j.subject, j.calibrate) for j in fill.judges] == [("deals.status", "buyer", True)]
    assert "agreed, completed" in fill.judges[0].ask and examples_prefix(fill.judges[0]) == ""


def test_rule_declarations_reach_the_filler() -> None:
    def shout(record: dict[str, Any], chunk: Chunk, doc: Document) -> str:
        return str(record["name"]).upper()

    schema = load_schema("biomedical")
    fill = Fill(rules=(Rule("organizations", "kind", shout),), judges=(Judge("organizations", "kind", "Kind:"),))
    filler = Filler(fill, schema, FakeRanker({}))
    assert filler.rules and not filler.judges  # a rule wins over a judge of the same field
    ranked = Filler(fill, schema, FakeRanker({}), {"organizations.kind": "rank"})
    assert ranked.judges and not ranked.rules
    assert ranked.hash != filler.hash


# -- the biomedical rules and option generators --------------------------------------------------


def _doc(text: str) -> Document:
    return Document(doc_id="d", path="d.txt", format="txt", text=text, kept=[Span(0, len(text))])


def test_publication_date_rule() -> None:
    from schemas.biomedical.fill import published

    chunk = Chunk("d", "x", 0, 0, 1, "", 1)
    assert published({}, chunk, _doc("Title Of The Piece Here\nJane Roe | Issue: March 2025 | January 30, 2025\n")) == (
        "2025-01-30"  # the most precise date of the dated line, not the issue month
    )
    assert published({}, chunk, _doc("Title\nLast updated: November 14, 2014\nFirst received: October 1, 2009\n")) == (
        "2009-10-01"  # an update date is never the publication date; "first received" says which
    )
    assert published({}, chunk, _doc("Study\n. 2025 Aug 8;6(8):100676.\ndoi: 10.1/x. Epub 2025 Apr 29.\n")) == (
        "2025-04-29"
    )
    assert published({}, chunk, _doc("A headline without any date\nBody text.\n")) is None


def test_citation_year_and_identifier_rules() -> None:
    from schemas.biomedical.fill import citation_year, doi, pmid

    chunk = Chunk("d", "x", 0, 0, 1, "", 1)
    line = "4. Shapiro SC. CAR-T cells in 2019: closer than we think? The Rheumatologist. 2024 Jul;18(7)."
    assert (
        citation_year({"evidence": line, "title": "CAR-T cells in 2019: closer than we think?"}, chunk, _doc(""))
        == 2024
    )
    head = _doc("Title\nMed. 2025 Aug 8. doi: 10.1016/j.medj.2025.100676. Epub 2025 Apr 29. PMID: 40345678\n")
    assert doi({}, chunk, head) == "10.1016/j.medj.2025.100676"
    assert pmid({}, chunk, head) == "40345678"


def test_affiliation_marker_rule() -> None:
    from schemas.biomedical.fill import affiliation

    text = (
        "Maria Leandro1, Ruth Pepper2, Ben Parker3 and Ann Other1, 1University College London, London, "
        "United Kingdom, 2Department of Medicine, University of Oxford, Oxford, UK, 3Manchester Royal Infirmary, "
        "Manchester, United Kingdom\n"
    )
    chunk = Chunk("d", "x", 0, 0, 1, "", 1)
    doc = _doc(text)
    assert affiliation({"name": "Maria Leandro"}, chunk, doc) == "University College London"
    assert affiliation({"name": "Ruth Pepper"}, chunk, doc) == "University of Oxford"  # the sub-unit is skipped
    assert affiliation({"name": "Ben Parker"}, chunk, doc) == "Manchester Royal Infirmary"
    assert affiliation({"name": "Nobody Here", "affiliation": "X"}, chunk, doc) == "X"


def test_role_options_and_article_type_rule() -> None:
    from schemas.biomedical.fill import article_type, role_options

    said = "“It works,” said Jane Roe, MD, director of the department of neurology at Acme University in Ohio."
    options = role_options({"name": "Jane Roe"}, said)
    assert "director of the department of neurology" in options and "author" not in options
    assert role_options({"name": "Jane Roe"}, "Jane Roe1, John Doe2, Ann Other3") == ["author"]
    assert role_options({"name": "Jane Roe"}, "Jane Roe et al. Med.") == ["author"]
    chunk = Chunk("d", "x", 0, 0, 1, "", 1)
    assert article_type({}, chunk, _doc("Big News\nSOMEWHERE, Sept. 1, 2024 (GLOBE NEWSWIRE) -- Acme today\n")) == (
        "press_release"
    )
    assert article_type({}, chunk, _doc("Study of X\nClinicalTrials.gov Identifier:\nNCT01006616\n")) == "trial_record"
    assert article_type({}, chunk, _doc("Drug approved\nThe agency approved it today.\n")) == "news"
