"""A user's own schema with no setup: generic prompts, derived bounds, cut-off answers kept,
every strategy served from the cache, ``pipeline schema check``; and the core names no domain."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from pipeline.batch import ExtractConfig, RunSummary, run_extract
from pipeline.cli.main import _register, app
from pipeline.core.schema import load_schema
from pipeline.providers.bounds import MAX_EVIDENCE, MAX_RECORDS, MAX_STRING, MAX_VALUES, bounded
from pipeline.salvage import complete_prefix
from tests.conftest import Cut, FakeProvider
from tests.test_extract_store import rows

ROOT = Path(__file__).resolve().parents[1]
DRUG_SCHEMA = """
from pydantic import BaseModel, Field


class DrugEvent(BaseModel):
    \"\"\"An adverse event a patient had on a drug.\"\"\"

    drug: str = Field(description="the drug as named")
    event: str = Field(description="the adverse event")
    dose: str | None = Field(default=None, description="the dose, as written")


class DrugEvents(BaseModel):
    events: list[DrugEvent] = []
"""
SENTENCE = "A 54-year-old woman developed severe hepatitis after taking 500 mg of amoxicillin daily."


def user_schema(tmp_path: Path) -> str:
    path = tmp_path / "drugs.py"
    path.write_text(DRUG_SCHEMA, encoding="utf-8")
    return f"{path}:DrugEvents"


def docs(tmp_path: Path, texts: dict[str, str]) -> Path:
    folder = tmp_path / "docs"
    folder.mkdir(exist_ok=True)
    for name, text in texts.items():
        (folder / f"{name}.txt").write_text(text, encoding="utf-8")
    return folder


def extract(folder: Path, db: Path, fake: FakeProvider, **cfg: Any) -> RunSummary:
    return run_extract([folder], db=db, config=ExtractConfig(**cfg), provider=fake, progress=False)


def test_core_names_no_domain() -> None:
    """The issue's check: no domain word anywhere in pipeline/."""
    found = subprocess.run(
        [
            "grep",
            "-rniwE",
            "--include=*.py",
            "--include=*.j2",
            "therapy|therapies|CAR-T|FDA|lupus|CD19",
            str(ROOT / "pipeline"),
        ],
        capture_output=True,
        text=True,
    )
    assert found.stdout == ""


def test_bounds_are_added_only_where_missing() -> None:
    schema = load_schema("biomedical").json_schema
    out = bounded(
        {
            "type": "object",
            "properties": {
                "events": {"type": "array", "items": {"$ref": "#/$defs/E"}},
                "tags": {"type": "array", "items": {"type": "string"}},
                "kept": {"type": "array", "maxItems": 3, "items": {"type": "string", "maxLength": 5}},
            },
            "$defs": {
                "E": {
                    "type": "object",
                    "properties": {
                        "drug": {"type": "string"},
                        "evidence": {"type": "string"},
                        "kind": {"type": "string", "enum": ["a", "b"]},
                        "day": {"anyOf": [{"type": "string", "pattern": "^[0-9]+$"}, {"type": "null"}]},
                    },
                }
            },
        }
    )
    assert out["properties"]["events"]["maxItems"] == MAX_RECORDS
    assert out["properties"]["tags"] == {
        "type": "array",
        "items": {"type": "string", "maxLength": MAX_STRING},
        "maxItems": MAX_VALUES,
    }
    assert out["properties"]["kept"] == {"type": "array", "maxItems": 3, "items": {"type": "string", "maxLength": 5}}
    props = out["$defs"]["E"]["properties"]
    assert props["drug"]["maxLength"] == MAX_STRING and props["evidence"]["maxLength"] == MAX_EVIDENCE
    assert "maxLength" not in props["kind"] and "maxLength" not in props["day"]["anyOf"][0]
    assert bounded(schema) == schema  # the biomedical schema bounds everything itself


def test_complete_prefix_keeps_only_whole_objects() -> None:
    assert complete_prefix('{"a": [{"x": 1}, {"x": 2}]}') == {"a": [{"x": 1}, {"x": 2}]}
    assert complete_prefix('{"a": [{"x": 1}, {"x": "tw') == {"a": [{"x": 1}]}
    assert complete_prefix('{"a": [{"x": 1}, {"x": "a } b", "y": 2}, {"x": ') == {
        "a": [{"x": 1}, {"x": "a } b", "y": 2}]
    }
    assert complete_prefix('{"a": [{"x": "\\"}') is None
    assert complete_prefix("not json") is None


def test_a_cut_off_answer_keeps_its_complete_records(tmp_path: Path, db: Path) -> None:
    """direct: the model ran into max_tokens inside its third record; two are kept, one is dropped."""
    folder = docs(tmp_path, {"s": SENTENCE})
    whole = {"drug": "amoxicillin", "event": "severe hepatitis", "dose": "500 mg", "evidence": SENTENCE}
    text = json.dumps({"events": [whole, {**whole, "event": "hepatitis"}]})[:-2] + ', {"drug": "amoxi'
    fake = FakeProvider([Cut(text)])
    summary = extract(folder, db, fake, schema=user_schema(tmp_path), strategy="direct", reground=False)
    assert (summary.status, summary.calls, summary.chunks_failed) == ("completed", 1, 0)
    assert rows(db, "SELECT event, grounded FROM rec_events ORDER BY event") == [
        ("hepatitis", True),
        ("severe hepatitis", True),
    ]
    assert rows(db, "SELECT status, error_class FROM llm_calls") == [("invalid", "IncompleteOutputException")]


def test_user_schema_runs_with_a_generic_prompt_and_candidates(tmp_path: Path, db: Path) -> None:
    """select on a plain schema: the prompt is built from the schema, and each key field is an
    enum of the sentence's phrases, so the model can only pick words of the text."""
    folder = docs(tmp_path, {"s": SENTENCE})
    fake = FakeProvider([{"items": [{"drug": "amoxicillin", "event": "severe hepatitis"}]}])
    summary = extract(folder, db, fake, schema=user_schema(tmp_path), strategy="select")
    assert summary.status == "completed" and summary.records == {"events": 1}
    request = fake.requests[0]
    prompt = request["messages"][-1]["content"]
    assert "drug: the drug as named" in prompt and "event: the adverse event" in prompt and SENTENCE in prompt
    item = request["response_format"]["json_schema"]["schema"]["$defs"]["DrugEventChoice"]["properties"]
    assert "amoxicillin" in item["drug"]["enum"] and "severe hepatitis" in item["event"]["enum"]
    # the key fields are asked; a plain schema's other text fields are not (no guessing, no runaway)
    assert set(item) == {"drug", "event"} and "dose:" not in prompt
    assert rows(db, "SELECT drug, event, dose, evidence, grounded FROM events") == [
        ("amoxicillin", "severe hepatitis", None, SENTENCE, True)
    ]
    assert rows(db, "SELECT schema_name FROM runs") == [("drug_events",)]


@pytest.mark.parametrize("strategy", ["direct", "fewshot", "select"])
def test_every_strategy_is_served_from_the_cache(tmp_path: Path, db: Path, strategy: str) -> None:
    """The same text in a second document (and a second run) is rebuilt from the cached
    response: no call, the same records."""
    folder = docs(tmp_path, {"a": SENTENCE, "b": SENTENCE})
    answer: dict[str, Any] = (
        {"events": [{"drug": "amoxicillin", "event": "severe hepatitis", "evidence": SENTENCE}]}
        if strategy == "direct"
        else {"items": [{"drug": "amoxicillin", "event": "severe hepatitis"}]}
    )
    fake = FakeProvider([answer])
    first = extract(folder, db, fake, schema=user_schema(tmp_path), strategy=strategy, reground=False)
    assert (first.calls, first.chunks_extracted, first.chunks_cached) == (1, 1, 1)
    again = extract(folder, db, FakeProvider(), schema=user_schema(tmp_path), strategy=strategy, reground=False)
    assert (again.calls, again.chunks_reused) == (0, 2)
    got = rows(db, "SELECT doc_id, drug, event, grounded FROM events ORDER BY doc_id")
    assert got == [("a", "amoxicillin", "severe hepatitis", True), ("b", "amoxicillin", "severe hepatitis", True)]


def test_every_strategy_call_goes_through_the_retry_policy(tmp_path: Path, db: Path) -> None:
    """fewshot/select calls are retried on transport errors like direct's (they used to get
    instructor's bare retry count)."""
    import httpx
    import openai

    def unavailable() -> openai.APIStatusError:
        request = httpx.Request("POST", "http://127.0.0.1/v1/chat/completions")
        return openai.InternalServerError("busy", response=httpx.Response(503, request=request), body=None)

    folder = docs(tmp_path, {"s": SENTENCE})
    fake = FakeProvider([unavailable(), {"items": [{"drug": "amoxicillin", "event": "severe hepatitis"}]}])
    summary = extract(folder, db, fake, schema=user_schema(tmp_path), strategy="select")
    assert summary.status == "completed" and summary.records == {"events": 1}
    assert rows(db, "SELECT status, error_class FROM llm_calls ORDER BY attempt") == [
        ("error", "InternalServerError"),
        ("ok", None),
    ]


def test_schema_check_reports_what_the_pipeline_will_do(tmp_path: Path) -> None:
    _register()
    spec = tmp_path / "nokeys.py"
    spec.write_text(
        DRUG_SCHEMA.replace("class DrugEvents", "class Shelf").replace("events:", "order:"), encoding="utf-8"
    )
    result = CliRunner().invoke(app, ["schema", "check", f"{spec}:Shelf"], terminal_width=200)
    out = result.output
    assert result.exit_code == 0, out
    assert "schema shelf" in out and "order (many per document) -> view order" in out
    assert re.search(r"│ drug\s+│ VARCHAR │ key │ yes\s+│ \+maxLength=160 │ phrase", out)
    assert "strategy: embedded model select; OpenAI-compatible direct" in out
    assert "prompt direct: generic (pipeline/templates/prompts/direct.j2)" in out
    assert "note: order: no key marks, keyed on drug, event" in out
    assert "no 'evidence' field, one was added" in out
    bad = CliRunner().invoke(app, ["schema", "check", f"{spec}:Nope"])
    assert bad.exit_code == 1 and "has no pydantic model named 'Nope'" in str(bad.exception)


def test_a_field_named_like_a_sql_keyword_is_stored_and_queried(tmp_path: Path, db: Path) -> None:
    path = tmp_path / "orders.py"
    path.write_text(
        "from pydantic import BaseModel, Field\n"
        "class Line(BaseModel):\n    order: str = Field(json_schema_extra={'key': True})\n"
        "    select: int | None = None\n    evidence: str\n"
        "class Orders(BaseModel):\n    lines: list[Line] = []\n",
        encoding="utf-8",
    )
    folder = docs(tmp_path, {"o": "Order No.12 ships 3 units. Order No.34 ships 5 units."})
    fake = FakeProvider(
        [
            {
                "lines": [
                    {"order": "Order No.12", "select": 3, "evidence": "Order No.12 ships 3 units."},
                    {"order": "Order No.34", "select": 5, "evidence": "Order No.34 ships 5 units."},
                ]
            }
        ]
    )
    summary = extract(folder, db, fake, schema=f"{path}:Orders", strategy="direct")
    assert summary.status == "completed"
    assert rows(db, 'SELECT "order", "select" FROM lines ORDER BY 1') == [("Order No.12", 3), ("Order No.34", 5)]
    # two orders that differ only in their number stay two things
    assert rows(db, "SELECT count(*) FROM all_entities") == [(2,)]
