"""JSON-schema constrained decoding on the embedded model: llguidance (the default) and
llama.cpp's GBNF grammar both keep the output inside the schema."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from pydantic import BaseModel, Field

from pipeline.batch import ExtractConfig, config_fingerprint
from pipeline.core.errors import ProviderError
from pipeline.providers.guidance import closed
from pipeline.providers.local import LocalProvider


class Drug(BaseModel):
    name: str = Field(max_length=40)
    disease: str = Field(max_length=40)


class Drugs(BaseModel):
    drugs: list[Drug] = Field(max_length=3)


ASK = [
    {
        "role": "user",
        "content": "Text: Rituximab is used in rheumatoid arthritis. KYV-101 is tested in myasthenia gravis.\n"
        "List drugs with the disease as JSON.",
    }
]


def schema_format(model: type[BaseModel]) -> dict[str, Any]:
    return {"type": "json_schema", "json_schema": {"name": model.__name__, "schema": model.model_json_schema()}}


def test_closed_forbids_unlisted_keys_unless_the_schema_says() -> None:
    schema = Drugs.model_json_schema()
    out = closed(schema)
    assert out["additionalProperties"] is False
    assert out["$defs"]["Drug"]["additionalProperties"] is False
    assert "additionalProperties" not in schema  # the caller's schema is not modified
    open_map = {"type": "object", "properties": {"a": {"type": "string"}}, "additionalProperties": True}
    assert closed(open_map)["additionalProperties"] is True


def test_constraint_engine_is_part_of_the_cache_key() -> None:
    fast, grammar = LocalProvider(), LocalProvider(constraint="gbnf")
    cfg = ExtractConfig()
    assert fast.constraint == "llguidance"
    assert config_fingerprint(cfg, fast, "s", "p", "direct") != config_fingerprint(cfg, grammar, "s", "p", "direct")
    with pytest.raises(ProviderError, match="unknown constraint engine 'xml'"):
        LocalProvider(constraint="xml")


@pytest.fixture(scope="module")
def providers() -> Iterator[dict[str, LocalProvider]]:
    made = {engine: LocalProvider(constraint=engine) for engine in ("llguidance", "gbnf")}
    yield made
    for p in made.values():
        p.close()


@pytest.mark.model
def test_unconstrained_model_does_not_answer_in_json(providers: dict[str, LocalProvider]) -> None:
    """The premise of the other cases: left free, this base model just echoes the prompt."""
    out = providers["llguidance"].create(messages=ASK, max_tokens=40, temperature=0.0)
    with pytest.raises(ValueError):
        json.loads(out.choices[0].message.content or "")


@pytest.mark.model
@pytest.mark.parametrize("engine", ["llguidance", "gbnf"])
def test_constrained_output_validates(providers: dict[str, LocalProvider], engine: str) -> None:
    out = providers[engine].create(messages=ASK, response_format=schema_format(Drugs), max_tokens=200, temperature=0.0)
    choice = out.choices[0]
    assert choice.finish_reason == "stop", choice.message.content
    value = json.loads(choice.message.content or "")
    Drugs.model_validate(value, strict=True)
    assert set(value) == {"drugs"} and all(set(d) == {"name", "disease"} for d in value["drugs"])
    assert {"name": "Rituximab", "disease": "rheumatoid arthritis"} in value["drugs"]


@pytest.mark.model
def test_both_engines_agree_under_greedy_decoding(providers: dict[str, LocalProvider]) -> None:
    """Same schema, same prompt, temperature 0: the fast engine changes speed, not answers."""
    answers = [
        json.loads(
            p.create(messages=ASK, response_format=schema_format(Drugs), max_tokens=200).choices[0].message.content
            or ""
        )
        for p in providers.values()
    ]
    assert answers[0] == answers[1]


@pytest.mark.model
def test_enum_and_length_limits_hold(providers: dict[str, LocalProvider]) -> None:
    class Verdict(BaseModel):
        answer: str = Field(json_schema_extra={"enum": ["yes", "no"]})
        reason: str = Field(max_length=12)

    ask = [{"role": "user", "content": "Is rituximab a drug? Answer as JSON."}]
    out = providers["llguidance"].create(messages=ask, response_format=schema_format(Verdict), max_tokens=60)
    value = json.loads(out.choices[0].message.content or "")
    assert value["answer"] in {"yes", "no"} and len(value["reason"]) <= 12
