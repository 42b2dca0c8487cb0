"""Merging one document's mentions: equal keys, and abbreviations the text defines."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import duckdb

from pipeline.batch import ExtractConfig, run_extract
from pipeline.core.schema import load_schema
from pipeline.merge import abbreviations, canonical, merge_document
from tests.conftest import FakeProvider

TEXT = (
    "The U.S. Food and Drug Administration (FDA) cleared the application. Patients with "
    "neuromyelitis optica spectrum disorder (NMOSD) were enrolled. The FDA said NMOSD is rare. "
    "CD19 (the B-cell marker) was the target."
)

SCHEMA = load_schema("biomedical")


def rec(name: str, start: int, **kw: Any) -> dict[str, Any]:
    return {"name": name, "evidence": name, "evidence_start": start, "evidence_end": start + len(name), **kw}


def test_abbreviations_map_both_forms_to_the_expansion() -> None:
    aliases = abbreviations(TEXT, SCHEMA.normalize)
    assert aliases["fda"] == "food and drug administration"
    assert aliases["nmosd"] == "neuromyelitis optica spectrum disorder"
    assert "cd19" not in aliases  # a one-word "expansion" is not trusted
    assert canonical("U.S. Food and Drug Administration", aliases, SCHEMA.normalize) == "food and drug administration"
    assert canonical("FDA.", aliases, SCHEMA.normalize) == "food and drug administration"
    assert canonical("Kyverna", aliases, SCHEMA.normalize) == "kyverna"


def test_abbreviation_and_expansion_merge_into_one_record_with_all_mentions() -> None:
    schema = load_schema("biomedical")
    per_type = {
        "organizations": [rec("FDA", 120, kind="regulator"), rec("U.S. Food and Drug Administration", 4)],
        "conditions": [
            rec("neuromyelitis optica spectrum disorder", 80),
            rec("NMOSD", 130, abbreviation="NMOSD"),
            rec("myasthenia gravis", 150),
        ],
    }
    merged = merge_document(schema, per_type, TEXT)
    (org,) = merged["organizations"]
    assert org["name"] == "U.S. Food and Drug Administration"  # the first mention in the document names it
    assert org["kind"] == "regulator" and [m["evidence_start"] for m in org["mentions"]] == [4, 120]
    names = [(c["name"], c.get("abbreviation")) for c in merged["conditions"]]
    assert names == [("neuromyelitis optica spectrum disorder", "NMOSD"), ("myasthenia gravis", None)]


def test_without_the_text_only_equal_keys_merge() -> None:
    schema = load_schema("biomedical")
    per_type = {"organizations": [rec("FDA", 120), rec("Food and Drug Administration", 8), rec("fda", 200)]}
    assert len(merge_document(schema, per_type)["organizations"]) == 2


def test_extract_stores_one_entity_per_thing_with_its_mentions(tmp_path: Path, db: Path) -> None:
    doc = tmp_path / "docs" / "fda.txt"
    doc.parent.mkdir()
    doc.write_text(TEXT, encoding="utf-8")
    answer = {
        "organizations": [
            {"name": "U.S. Food and Drug Administration", "evidence": "The U.S. Food and Drug Administration (FDA)"},
            {"name": "FDA", "kind": "regulator", "evidence": "The FDA said NMOSD is rare."},
        ],
        "conditions": [{"name": "NMOSD", "evidence": "The FDA said NMOSD is rare."}],
    }
    config = ExtractConfig()
    for _ in range(2):  # the second run reuses the stored result: its own entities, no duplicates in the view
        run_extract([doc], db=db, config=config, provider=FakeProvider([answer]), progress=False)
    con = duckdb.connect(str(db), read_only=True)
    try:
        rows = con.execute("SELECT record_type, label, n_mentions, fields->>'kind' FROM all_entities").fetchall()
        mentions = con.execute(
            "SELECT m.evidence_start FROM entity_mentions m JOIN all_entities e USING (entity_id) "
            "WHERE e.record_type = 'organizations' ORDER BY 1"
        ).fetchall()
        runs = con.execute("SELECT count(DISTINCT run_id) FROM entities").fetchone()
    finally:
        con.close()
    assert sorted(rows) == [
        ("conditions", "NMOSD", 1, None),
        ("organizations", "U.S. Food and Drug Administration", 2, "regulator"),
    ]
    assert mentions == [(0,), (TEXT.index("The FDA said"),)] and runs == (2,)
