"""The gold sets are traceable: every gold string value occurs in its document.

Three sets follow the same format: the seed set (``evals/docs`` + ``evals/gold``), the
development set (``evals/dev/...``) and development set 2 (``evals/dev2/docs`` + ``evals/dev2/gold``).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from pipeline.core.normalize import normalize
from pipeline.core.schema import load_schema
from pipeline.evaluate import load_gold

ROOT = Path(__file__).resolve().parents[1]
# Each gold set: a folder holding docs/ and gold/. Seed ids stay the bare doc_id; others are prefixed.
SETS = {"": ROOT / "evals", "dev": ROOT / "evals" / "dev", "dev2": ROOT / "evals" / "dev2"}
GOLD = [(prefix, path) for prefix, base in SETS.items() for path in sorted((base / "gold").glob("*.json"))]
# Fields whose values the spec normalizes (ISO dates, enums, digits), so they need not occur verbatim.
NORMALIZED_FIELDS = {"published", "date", "article_type", "kind", "phase", "status", "year"}
# Spec: role "author" is how authors are labelled even where the text only lists them.
CONVENTIONAL_VALUES = {("role", "author")}


def alternatives(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def occurs(value: str, text: str) -> bool:
    return normalize(value) in normalize(text)


def test_gold_files_exist_for_every_eval_doc() -> None:
    for prefix, base in SETS.items():
        docs = {p.stem for p in (base / "docs").glob("*.txt")}
        gold = {p.stem for pre, p in GOLD if pre == prefix}
        assert docs, f"no documents in {base / 'docs'}"
        assert gold == docs, f"{base}: gold files and documents differ"


@pytest.mark.parametrize(("prefix", "path"), GOLD, ids=[f"{pre}-{p.stem}" if pre else p.stem for pre, p in GOLD])
def test_gold_follows_schema_and_occurs_in_text(prefix: str, path: Path) -> None:
    gold = json.loads(path.read_text(encoding="utf-8"))
    assert gold["doc_id"] == path.stem
    text = (SETS[prefix] / "docs" / f"{gold['doc_id']}.txt").read_text(encoding="utf-8")
    schema = load_schema("biomedical")
    assert set(gold["records"]) == {rt.name for rt in schema.record_types}
    assert len(gold["records"]["article"]) == 1
    untraceable = []
    for rtype, records in gold["records"].items():
        rt = schema.record_type(rtype)
        fields = {f.name for f in rt.fields} - {"evidence"}
        for rec in records:
            assert set(rec) - {"optional"} <= fields, f"{rtype}: unknown fields {set(rec) - fields}"
            nullable = {f.name for f in rt.fields if not f.required}  # spec: a trial's phase may be null
            for key in rt.key_fields:
                if rec.get(key) is None and key in nullable:
                    continue
                assert rec.get(key) not in (None, "", []), f"{rtype}: key field {key} empty"
            for name, value in rec.items():
                if name in NORMALIZED_FIELDS or name == "optional" or value is None:
                    continue
                items = value if name == "indications" else [value]
                for item in items:
                    options = [o for o in alternatives(item) if isinstance(o, str)]
                    if not options or any((name, o) in CONVENTIONAL_VALUES for o in options):
                        continue
                    if not any(occurs(o, text) for o in options):
                        untraceable.append(f"{rtype}.{name}={options}")
    assert untraceable == []


@pytest.mark.parametrize("prefix", list(SETS), ids=[p or "seed" for p in SETS])
def test_gold_set_loads_in_the_scorer(prefix: str) -> None:
    gold = load_gold(load_schema("biomedical"), SETS[prefix] / "gold")
    assert set(gold.docs) == {p.stem for pre, p in GOLD if pre == prefix}
