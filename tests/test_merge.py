"""Merging one document's mentions: equal keys, and abbreviations the text defines."""

from __future__ import annotations

from typing import Any

from pipeline.core.schema import load_schema
from pipeline.merge import abbreviations, canonical, merge_document

TEXT = (
    "The U.S. Food and Drug Administration (FDA) cleared the application. Patients with "
    "neuromyelitis optica spectrum disorder (NMOSD) were enrolled. The FDA said NMOSD is rare. "
    "CD19 (the B-cell marker) was the target."
)


def rec(name: str, start: int, **kw: Any) -> dict[str, Any]:
    return {"name": name, "evidence": name, "evidence_start": start, "evidence_end": start + len(name), **kw}


def test_abbreviations_map_both_forms_to_the_expansion() -> None:
    aliases = abbreviations(TEXT)
    assert aliases["fda"] == "food and drug administration"
    assert aliases["nmosd"] == "neuromyelitis optica spectrum disorder"
    assert "cd19" not in aliases  # a one-word "expansion" is not trusted
    assert canonical("U.S. Food and Drug Administration", aliases) == "food and drug administration"
    assert canonical("FDA.", aliases) == "food and drug administration"
    assert canonical("Kyverna", aliases) == "kyverna"


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
