"""The real embedded model (Gemma 3 270M on llama.cpp) end to end on one short chunk."""

from __future__ import annotations

from pathlib import Path

import duckdb
import pytest

from pipeline.batch import ExtractConfig, run_extract
from pipeline.core.schema import load_schema

pytestmark = pytest.mark.model

SCHEMA = """
from pydantic import BaseModel, Field

class Condition(BaseModel):
    name: str = Field(min_length=1, max_length=60, json_schema_extra={"key": True})
    evidence: str = Field(min_length=1, max_length=200)

class Conditions(BaseModel):
    conditions: list[Condition] = Field(default_factory=list, max_length=4)
"""

PROMPT = """## user
List the diseases named in the text.
Text: Rituximab is used in rheumatoid arthritis.
## assistant
{"conditions": [{"name": "rheumatoid arthritis", "evidence": "Rituximab is used in rheumatoid arthritis."}]}
## user
List the diseases named in the text.
Text: {{ text }}
"""


def test_real_model_rows_land_in_duckdb(tmp_path: Path) -> None:
    (tmp_path / "conds.py").write_text(SCHEMA, encoding="utf-8")
    (tmp_path / "conds.j2").write_text(PROMPT, encoding="utf-8")
    doc = tmp_path / "docs" / "mg.txt"
    doc.parent.mkdir()
    doc.write_text("KYV-101 is being tested in patients with myasthenia gravis.\n", encoding="utf-8")
    db = tmp_path / "out.duckdb"
    summary = run_extract(
        [doc],
        db=db,
        config=ExtractConfig(schema=f"{tmp_path / 'conds.py'}:Conditions", prompt=str(tmp_path / "conds.j2")),
        progress=False,
    )
    assert summary.status == "completed" and summary.calls >= 1 and summary.tokens_out > 0
    schema = load_schema(f"{tmp_path / 'conds.py'}:Conditions")
    con = duckdb.connect(str(db), read_only=True)
    rows = con.execute(
        "SELECT name, evidence, grounded, model FROM rec_conditions JOIN llm_calls USING (chunk_id)"
    ).fetchall()
    con.close()
    assert rows, "the model produced no records"
    for name, evidence, _grounded, model in rows:
        schema.model.model_validate({"conditions": [{"name": name, "evidence": evidence}]})
        assert model == "local:gemma-3-270m-q4_k_m"
    assert any(name.lower() == "myasthenia gravis" for name, *_ in rows)
