"""The scorer on small hand-computed fixtures (pure functions, no database)."""

from __future__ import annotations

from typing import Any

import pytest

from pipeline.core.normalize import normalize
from pipeline.core.schema import load_schema
from pipeline.evaluate import parse_gold
from pipeline.score import (
    FieldScore,
    GoldItem,
    GoldRecord,
    MicroScores,
    PredItem,
    Scores,
    compare,
    list_similarity,
    prf,
    score,
)

SCHEMA = load_schema("biomedical")
TYPES = [rt.name for rt in SCHEMA.record_types]

GOLD_D1: dict[str, list[dict[str, Any]]] = {
    "therapies": [
        {"name": "KYV-101", "target": "CD19", "indications": [["myasthenia gravis", "MG"]]},
        {"name": "Descartes-08", "target": None, "indications": []},
    ],
    "conditions": [
        {"name": ["systemic lupus erythematosus", "SLE"]},
        {"name": "myasthenia gravis", "abbreviation": "MG"},
        {"name": "autoimmune diseases", "optional": True},
    ],
    "regulatory_events": [
        {"agency": "FDA", "action": "Rare Pediatric Disease Designation", "therapy": "Descartes-08", "date": "2025-01"}
    ],
}
# what a perfect system predicts for GOLD_D1: first alternatives, optional record left out
PERFECT_D1: dict[str, list[dict[str, Any]]] = {
    "therapies": [
        {"record_id": "t1", "name": "KYV-101", "target": "CD19", "indications": ["myasthenia gravis"]},
        {"record_id": "t2", "name": "Descartes-08", "target": None, "indications": []},
    ],
    "conditions": [
        {"record_id": "c1", "name": "systemic lupus erythematosus", "abbreviation": None},
        {"record_id": "c2", "name": "myasthenia gravis", "abbreviation": "MG"},
    ],
    "regulatory_events": [
        {
            "record_id": "r1",
            "agency": "FDA",
            "action": "Rare Pediatric Disease Designation",
            "therapy": "Descartes-08",
            "indication": None,
            "date": "2025-01",
        }
    ],
}
ACTIVE = ["conditions", "therapies", "regulatory_events"]


def gold_doc(records: dict[str, list[dict[str, Any]]], doc_id: str = "d1") -> dict[str, list[GoldRecord]]:
    """Parse like a gold file, every other record type empty."""
    return parse_gold(SCHEMA, {"doc_id": doc_id, "records": {t: records.get(t, []) for t in TYPES}}, f"{doc_id}.json")


def one_type(name: str, preds: list[dict[str, Any]], golds: list[dict[str, Any]], mode: str = "lenient") -> Scores:
    card = score(SCHEMA, {"d": {name: preds}}, {"d": gold_doc({name: golds}, "d")}, mode)  # type: ignore[arg-type]
    return card.per_type[name]


def perfect_scores(tp: int) -> Scores:
    return Scores(precision=1.0, recall=1.0, f1=1.0, tp=tp, fp=0, fn=0)


# -- normalization -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("infection.4", "infection"),
        ("patients.3\u20135", "patients"),
        ("Infection [4]", "infection"),
        ("infection[4, 5]", "infection"),
        ("\u201cCD19\u201d", "cd19"),
        ("ARI-0001", "ari-0001"),
        ("CD19", "cd19"),
        ("Anti\u2013CD19  CAR\u00a0T.", "anti-cd19 car t"),
        ("\uff2b\uff39\uff36-101", "kyv-101"),
        (None, ""),
    ],
)
def test_normalize(raw: Any, expected: str) -> None:
    assert SCHEMA.normalize(raw) == expected  # the biomedical package strips citation markers


def test_generic_normalize_keeps_numbers_and_merges_number_forms() -> None:
    assert normalize("Order No.12") == "order no.12" and normalize("Order No.34") == "order no.34"
    assert normalize("infection.4") == "infection.4"  # citation markers are a schema package's rule
    assert normalize(683000000.0) == normalize(683000000) == "683000000"


# -- counting conventions ------------------------------------------------------------------


def test_prf_conventions() -> None:
    assert prf(0, 0, 0) == Scores(precision=1.0, recall=1.0, f1=1.0, tp=0, fp=0, fn=0)
    assert prf(0, 0, 3) == Scores(precision=1.0, recall=0.0, f1=0.0, tp=0, fp=0, fn=3)  # no predictions
    assert prf(0, 2, 0) == Scores(precision=0.0, recall=1.0, f1=0.0, tp=0, fp=2, fn=0)  # no gold
    assert prf(3, 1, 2) == Scores(precision=0.75, recall=0.6, f1=2 * 0.75 * 0.6 / 1.35, tp=3, fp=1, fn=2)


# -- whole-document scenarios --------------------------------------------------------------


def test_perfect_prediction_is_one_everywhere() -> None:
    card = score(SCHEMA, {"d1": PERFECT_D1}, {"d1": gold_doc(GOLD_D1)}, "strict")
    assert card.micro == MicroScores(
        precision=1.0, recall=1.0, f1=1.0, tp=5, fp=0, fn=0, undergeneration=0.0, overgeneration=0.0
    )
    assert card.macro_f1 == 1.0
    assert {t: card.per_type[t] for t in ACTIVE} == {
        "conditions": perfect_scores(2),
        "therapies": perfect_scores(2),
        "regulatory_events": perfect_scores(1),
    }
    stated = {(t, f): fs for t, fields in card.per_field.items() for f, fs in fields.items() if fs.total}
    assert stated == {
        ("therapies", "name"): FieldScore(accuracy=1.0, correct=2.0, total=2),
        ("therapies", "target"): FieldScore(accuracy=1.0, correct=1.0, total=1),  # Descartes-08: both null
        ("therapies", "indications"): FieldScore(accuracy=1.0, correct=1.0, total=1),
        ("conditions", "name"): FieldScore(accuracy=1.0, correct=2.0, total=2),
        ("conditions", "abbreviation"): FieldScore(accuracy=1.0, correct=1.0, total=1),
        **{
            ("regulatory_events", f): FieldScore(accuracy=1.0, correct=1.0, total=1)
            for f in ("agency", "action", "therapy", "date")
        },
    }
    d1 = card.documents["d1"]
    assert all(not d1[t].missed and not d1[t].spurious and not d1[t].absorbed for t in TYPES)
    assert d1["conditions"].found == [
        GoldItem(gold_index=0, key={"name": ["systemic lupus erythematosus", "SLE"]}, record_id="c1", similarity=100.0),
        GoldItem(gold_index=1, key={"name": "myasthenia gravis"}, record_id="c2", similarity=100.0),
    ]


def test_empty_prediction_has_recall_zero_and_precision_one() -> None:
    card = score(SCHEMA, {}, {"d1": gold_doc(GOLD_D1)}, "lenient")
    assert card.micro == MicroScores(
        precision=1.0, recall=0.0, f1=0.0, tp=0, fp=0, fn=5, undergeneration=1.0, overgeneration=0.0
    )
    assert card.per_type["conditions"] == Scores(precision=1.0, recall=0.0, f1=0.0, tp=0, fp=0, fn=2)
    assert card.macro_f1 == 0.0
    assert [g.gold_index for g in card.documents["d1"]["conditions"].missed] == [0, 1]  # optional one is not missed


def test_record_order_does_not_change_scores() -> None:
    reversed_preds = {t: [dict(reversed(r.items())) for r in reversed(rs)] for t, rs in PERFECT_D1.items()}
    extra = {"record_id": "x", "name": "lupus", "abbreviation": None}
    extra2 = {"record_id": "y", "name": "cytokine release syndrome", "abbreviation": "CRS"}
    forward = {**PERFECT_D1, "conditions": [*PERFECT_D1["conditions"], extra, extra2]}
    backward = {**reversed_preds, "conditions": [extra2, extra, *reversed_preds["conditions"]]}
    gold = {"d1": gold_doc(GOLD_D1)}
    for mode in ("lenient", "strict"):
        a = score(SCHEMA, {"d1": forward}, gold, mode)  # type: ignore[arg-type]
        b = score(SCHEMA, {"d1": backward}, gold, mode)  # type: ignore[arg-type]
        assert a.model_dump() == b.model_dump()
        assert a.per_type["conditions"].fp == 2


def test_ties_do_not_depend_on_record_order() -> None:
    # in lenient mode both predictions match the gold record at 100; which one pairs decides target's accuracy
    golds = [{"name": "CD19 CAR-T", "target": "CD19"}]
    preds = [{"name": "CD19 CAR T", "target": "CD20"}, {"name": "CD19 CAR-T", "target": "CD19"}]
    cards = [
        score(SCHEMA, {"d": {"therapies": p}}, {"d": gold_doc({"therapies": golds}, "d")}, "lenient")
        for p in (preds, preds[::-1])
    ]
    assert cards[0].model_dump() == cards[1].model_dump()
    assert cards[0].per_type["therapies"] == Scores(precision=0.5, recall=1.0, f1=2 / 3, tp=1, fp=1, fn=0)


def test_assignment_maximizes_matches_not_first_come() -> None:
    # p1 matches both gold records, p2 only the first: greedy p1->g1 would find one, optimal finds two
    golds = [{"name": "abcdefghij"}, {"name": "abcdefghijkl"}]
    preds = [{"name": "abcdefghij"}, {"name": "abcdefghijx"}]
    assert one_type("conditions", preds, golds) == perfect_scores(2)
    assert one_type("conditions", preds[::-1], golds) == perfect_scores(2)


def test_alternatives_and_optional_records() -> None:
    preds = {
        "therapies": [{"name": "kyv-101", "target": "CD19", "indications": ["MG", "lupus"]}],
        "conditions": [
            {"record_id": "c1", "name": "SLE"},  # second alternative of gold 0
            {"record_id": "c3", "name": "Autoimmune diseases."},  # absorbed by the optional gold record
        ],
    }
    card = score(SCHEMA, {"d1": preds}, {"d1": gold_doc(GOLD_D1)}, "strict")
    assert card.per_type["conditions"] == Scores(precision=1.0, recall=0.5, f1=2 / 3, tp=1, fp=0, fn=1)
    assert card.per_type["therapies"] == Scores(precision=1.0, recall=0.5, f1=2 / 3, tp=1, fp=0, fn=1)
    conditions = card.documents["d1"]["conditions"]
    assert conditions.absorbed == [
        GoldItem(gold_index=2, key={"name": "autoimmune diseases"}, record_id="c3", similarity=100.0)
    ]
    assert [g.gold_index for g in conditions.missed] == [1]
    # indications: gold [["myasthenia gravis", "MG"]] vs ["MG", "lupus"]: Dice 2*1/(1+2)
    assert card.per_field["therapies"]["indications"] == FieldScore(
        accuracy=round(2 / 3, 6), correct=round(2 / 3, 6), total=1
    )
    # missing the optional record is not missed either
    without = score(SCHEMA, {"d1": {"conditions": preds["conditions"][:1]}}, {"d1": gold_doc(GOLD_D1)}, "strict")
    assert without.per_type["conditions"] == card.per_type["conditions"]


def test_required_gold_wins_over_optional() -> None:
    # p matches both the optional and the required gold record; it must count as found
    golds = [{"name": "cd19 car-t", "optional": True}, {"name": "CD19 CAR-T"}]
    assert one_type("therapies", [{"name": "CD19 CAR-T"}], golds) == perfect_scores(1)


def test_strict_and_lenient_at_the_threshold() -> None:
    gold = [{"name": "Ofatumumab"}]
    at_threshold = [{"name": "ofatumumeb"}]  # one letter of ten: fuzz.ratio == 90.0 exactly
    below = [{"name": "ofatumumebs"}]  # fuzz.ratio == 85.7
    miss = Scores(precision=0.0, recall=0.0, f1=0.0, tp=0, fp=1, fn=1)
    assert one_type("therapies", at_threshold, gold, "lenient") == perfect_scores(1)
    assert one_type("therapies", at_threshold, gold, "strict") == miss
    assert one_type("therapies", below, gold, "lenient") == miss
    assert one_type("therapies", [{"name": "“OFATUMUMAB.”"}], gold, "strict") == perfect_scores(1)
    # hyphens read as spaces in lenient mode only
    assert one_type("therapies", [{"name": "CD19 CAR T"}], [{"name": "CD19 CAR-T"}], "lenient") == perfect_scores(1)
    assert one_type("therapies", [{"name": "CD19 CAR T"}], [{"name": "CD19 CAR-T"}], "strict") == miss


def test_lenient_never_matches_different_numbers() -> None:
    # fuzz.ratio("kyv-101", "kyv-1010") is 93.3, above the threshold, but the numbers differ
    assert one_type("therapies", [{"name": "KYV-1010"}], [{"name": "KYV-101"}]).tp == 0
    assert one_type("therapies", [{"name": "KYV 101"}], [{"name": "KYV-101"}]).tp == 1
    assert one_type("therapies", [{"name": "CT104A"}], [{"name": "CT103A"}]).tp == 0


def test_every_key_field_must_match() -> None:
    gold = [{"agency": "FDA", "action": "Fast Track designation", "therapy": "SC291"}]
    wrong_therapy = [{"agency": "FDA", "action": "Fast Track designation", "therapy": "SC262"}]
    assert one_type("regulatory_events", wrong_therapy, gold).tp == 0
    assert one_type("regulatory_events", [{**gold[0], "agency": "U.S. FDA"}], gold).tp == 0
    assert one_type("regulatory_events", [{**gold[0], "action": "fast-track designation"}], gold).tp == 1


def test_a_null_key_matches_only_null() -> None:
    # spec: a trial with no stated phase is a record with phase null; null matches only null
    gold = [{"therapy": "SC291", "phase": None, "name": "GLEAM"}]
    assert one_type("trials", [{"therapy": "SC291", "phase": None}], gold).tp == 1
    assert one_type("trials", [{"therapy": "SC291"}], gold).tp == 1
    assert one_type("trials", [{"therapy": "SC291", "phase": "1"}], gold).tp == 0
    assert one_type("trials", [{"therapy": "SC291", "phase": None}], [{"therapy": "SC291", "phase": "1"}]).tp == 0


def test_one_spurious_record_lowers_precision_exactly() -> None:
    preds = {**PERFECT_D1, "conditions": [*PERFECT_D1["conditions"], {"record_id": "c9", "name": "lupus nephritis"}]}
    card = score(SCHEMA, {"d1": preds}, {"d1": gold_doc(GOLD_D1)}, "lenient")
    assert card.micro == MicroScores(
        precision=5 / 6, recall=1.0, f1=10 / 11, tp=5, fp=1, fn=0, undergeneration=0.0, overgeneration=1 / 6
    )
    assert card.per_type["conditions"] == Scores(precision=2 / 3, recall=1.0, f1=0.8, tp=2, fp=1, fn=0)
    assert card.macro_f1 == pytest.approx((0.8 + 1.0 + 1.0) / 3)
    assert card.documents["d1"]["conditions"].spurious == [
        PredItem(record_id="c9", key={"name": "lupus nephritis"}, evidence=None)
    ]


def test_wrong_field_values_score_per_field() -> None:
    preds = {
        **PERFECT_D1,
        "therapies": [{"name": "KYV-101", "target": "CD20", "indications": []}, PERFECT_D1["therapies"][1]],
    }
    card = score(SCHEMA, {"d1": preds}, {"d1": gold_doc(GOLD_D1)}, "lenient")
    assert card.per_type["therapies"] == perfect_scores(2)  # only key fields decide the pairing
    assert card.per_field["therapies"]["target"] == FieldScore(accuracy=0.0, correct=0.0, total=1)
    assert card.per_field["therapies"]["indications"] == FieldScore(accuracy=0.0, correct=0.0, total=1)
    assert card.per_field["therapies"]["modality"] == FieldScore(accuracy=None, correct=0.0, total=0)


def test_gold_document_missing_from_predictions_is_all_missed() -> None:
    gold = {"d1": gold_doc(GOLD_D1), "d2": gold_doc({"therapies": [{"name": "SC291"}]}, "d2")}
    card = score(SCHEMA, {"d1": PERFECT_D1}, gold, "lenient")
    assert card.per_type["therapies"] == Scores(precision=1.0, recall=2 / 3, f1=0.8, tp=2, fp=0, fn=1)
    assert card.documents["d2"]["therapies"].missed == [GoldItem(gold_index=0, key={"name": "SC291"})]
    assert (card.micro.tp, card.micro.fn) == (5, 1)


def test_list_similarity() -> None:
    assert list_similarity([], [], "strict") == 100.0
    assert list_similarity(["a"], [], "strict") == 0.0
    assert list_similarity(["SLE", "MG"], [["lupus", "sle"], "mg"], "strict") == 100.0
    assert list_similarity(["MG", "MG."], [["lupus", "sle"], "mg"], "strict") == pytest.approx(100 * 2 / 3)


def test_compare_lists_flips() -> None:
    gold = {"d1": gold_doc(GOLD_D1)}
    a = score(SCHEMA, {"d1": PERFECT_D1}, gold, "lenient")
    b_preds = {**PERFECT_D1, "conditions": PERFECT_D1["conditions"][:1]}
    b = score(SCHEMA, {"d1": b_preds}, gold, "lenient")
    c = compare(a, b, "A", "B")
    assert c.gained == []
    assert [f.model_dump() for f in c.lost] == [
        {"doc_id": "d1", "record_type": "conditions", "gold_index": 1, "key": {"name": "myasthenia gravis"}}
    ]
    assert c.per_type["conditions"].model_dump() == {"a": 1.0, "b": 2 / 3, "delta": 2 / 3 - 1.0}
    assert compare(b, a, "B", "A").gained == c.lost
