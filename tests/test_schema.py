from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from pipeline.core.errors import SchemaError
from pipeline.core.schema import load_schema

SPEC_TYPES = [
    "article", "people", "organizations", "conditions", "therapies",
    "regulatory_events", "trials", "outcomes", "funding", "citations",
]  # fmt: skip
SPEC_KEYS = {
    "article": ["title"],
    "people": ["name"],
    "organizations": ["name"],
    "conditions": ["name"],
    "therapies": ["name"],
    "regulatory_events": ["agency", "action", "therapy"],
    "trials": ["therapy", "phase"],
    "outcomes": ["therapy", "finding"],
    "funding": ["funder"],
    "citations": ["title"],
}


def test_biomedical_follows_spec() -> None:
    schema = load_schema("biomedical")
    assert [rt.name for rt in schema.record_types] == SPEC_TYPES
    assert {rt.name: rt.key_fields for rt in schema.record_types} == SPEC_KEYS
    assert all("evidence" in rt.model.model_fields for rt in schema.record_types)
    assert schema.record_type("article").many is False
    assert schema.record_type("therapies").many is True


def test_strings_are_bounded_in_json_schema() -> None:
    defs = load_schema("biomedical").json_schema["$defs"]
    for name, model in defs.items():
        for field, prop in model["properties"].items():
            options = prop.get("anyOf", [prop])
            for o in options:
                if o.get("type") == "string" and "enum" not in o:
                    assert "maxLength" in o or "pattern" in o, f"{name}.{field} is unbounded"


def test_validation_rejects_bad_values() -> None:
    model = load_schema("biomedical").model
    ok = model.model_validate(
        {"trials": [{"therapy": "Descartes-08", "phase": "3", "evidence": "phase 3 AURORA trial"}]}
    )
    assert ok.trials[0].phase == "3"  # type: ignore[attr-defined]
    with pytest.raises(ValidationError):
        model.model_validate({"trials": [{"therapy": "X", "phase": "three", "evidence": "e"}]})
    with pytest.raises(ValidationError):
        model.model_validate({"article": {"title": "T", "published": "Jan 2025", "evidence": "T"}})
    with pytest.raises(ValidationError):
        model.model_validate({"people": [{"name": "A", "evidence": "A", "unknown": 1}]})


def test_user_schema_from_file(tmp_path: Path) -> None:
    path = tmp_path / "invoices.py"
    path.write_text(
        "from pydantic import BaseModel, Field\n"
        "class Item(BaseModel):\n    sku: str\n    qty: int | None = None\n    evidence: str\n"
        "class Invoice(BaseModel):\n    items: list[Item] = Field(default_factory=list)\n",
        encoding="utf-8",
    )
    schema = load_schema(f"{path}:Invoice")
    (rt,) = schema.record_types
    assert rt.name == "items" and rt.key_fields == ["sku"]
    assert {f.name: f.sql_type for f in rt.fields} == {
        "sku": "VARCHAR",
        "qty": "BIGINT",
        "evidence": "VARCHAR",
    }


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("nonesuch", "unknown schema 'nonesuch'"),
        ("no_such_module_xyz:Model", "failed to import: ModuleNotFoundError"),
        ("schemas.biomedical:Nope", "has no pydantic model named 'Nope'"),
    ],
)
def test_bad_schema_names(spec: str, message: str) -> None:
    with pytest.raises(SchemaError, match=message):
        load_schema(spec)


def test_schema_module_that_raises_on_import(tmp_path: Path) -> None:
    path = tmp_path / "broken.py"
    path.write_text("raise RuntimeError('boom at import')\n", encoding="utf-8")
    with pytest.raises(SchemaError, match="failed to import: RuntimeError: boom at import"):
        load_schema(f"{path}:X")


def test_plain_schema_gets_defaults_with_warnings(tmp_path: Path) -> None:
    """No evidence field: one is added. No key marks: the required text fields are the keys."""
    path = tmp_path / "drugs.py"
    path.write_text(
        "from pydantic import BaseModel\n"
        "class DrugEvent(BaseModel):\n    drug: str\n    event: str\n    dose: str | None = None\n"
        "class DrugEvents(BaseModel):\n    events: list[DrugEvent] = []\n",
        encoding="utf-8",
    )
    schema = load_schema(f"{path}:DrugEvents")
    (rt,) = schema.record_types
    assert schema.name == "drug_events" and rt.name == "events"
    assert rt.key_fields == ["drug", "event"] and "evidence" in rt.model.model_fields
    assert schema.warnings == (
        "events: no 'evidence' field, one was added (a verbatim quote grounds each record)",
        'events: no key marks, keyed on drug, event (mark keys with Field(json_schema_extra={"key": True}))',
    )
    ok = schema.model.model_validate({"events": [{"drug": "a", "event": "b", "evidence": "a b"}]})
    assert ok.events[0].evidence == "a b"  # type: ignore[attr-defined]
    # a record model given as the schema is one record type of its own
    single = load_schema(f"{path}:DrugEvent")
    assert [rt.name for rt in single.record_types] == ["drug_event"] and single.record_types[0].many
