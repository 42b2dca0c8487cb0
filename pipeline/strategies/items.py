"""What the small-model strategies share: records asked for without evidence, tied to the text.

A 270M model copies invented strings when asked for them, so ``fewshot`` and ``select`` ask
for the record *without* ``evidence`` (``item_model``), then ground by construction
(``ground_item``): an item whose key values are not all in the text the model saw is dropped,
a free-text non-key value the chunk does not hold is nulled, and the evidence is the sentence
the model read. ``units`` cuts a chunk into the pieces one call sees (sentences by default),
narrowed by the schema package's gates (``<prompts>/fewshot/gates.json``).
"""

from __future__ import annotations

import json
import re
import typing
from functools import cache, lru_cache
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, create_model

from pipeline.chunk import line_of, sentences
from pipeline.core.schema import RecordType
from pipeline.core.types import Chunk, Document, Span
from pipeline.ground import contains_value, is_free_text
from pipeline.salvage import complete_prefix

#: at most this many records of one type per call
MAX_ITEMS = 6
#: evidence longer than this is replaced by the sentence holding the record's first key value
MAX_EVIDENCE = 400


@cache
def item_model(rt: RecordType) -> type[BaseModel]:
    """``{"items": [record without evidence, ...]}`` for one record type."""
    fields: dict[str, Any] = {
        name: (info.annotation, info) for name, info in rt.model.model_fields.items() if name != "evidence"
    }
    item = create_model(f"{rt.model.__name__}Item", __config__=ConfigDict(extra="forbid"), **fields)
    limit = MAX_ITEMS if rt.many else 1
    return create_model(
        f"{rt.model.__name__}Items",
        __config__=ConfigDict(extra="forbid"),
        items=(list[item], Field(default_factory=list, max_length=limit)),  # type: ignore[valid-type]
    )


def salvage_items(response_model: type[BaseModel], text: str | None) -> list[dict[str, Any]] | None:
    """The complete, valid items of an ``{"items": [...]}`` answer cut off mid-way; None if none."""
    data = complete_prefix(text or "")
    raw = data.get("items") if isinstance(data, dict) else None
    if not isinstance(raw, list):
        return None
    (item,) = typing.get_args(response_model.model_fields["items"].annotation)
    kept = []
    for value in raw:
        try:
            kept.append(item.model_validate(value).model_dump(mode="json"))
        except ValidationError:
            continue
    return kept or None


def sentence_with(value: str, chunk: Chunk, doc: Document) -> str | None:
    """The sentence of ``chunk`` that holds ``value`` (folded comparison)."""
    for span in sentences(doc.text, Span(chunk.start, chunk.end)):
        sent = doc.text[span.start : span.end]
        if contains_value(value, sent):
            return sent[:MAX_EVIDENCE]
    return None


def ground_item(
    rt: RecordType, item: dict[str, Any], unit: str, chunk: Chunk, doc: Document, evidence: str | None = None
) -> dict[str, Any] | None:
    """Keep an item only if its key values occur in the text the model saw (``unit``);
    null free-text values the chunk does not support; evidence is the unit's sentence."""
    keys = rt.key_fields
    for k in keys:
        value = item.get(k)
        if value is None and not rt.field(k).required:
            continue  # a nullable key (no phase stated) is a value of its own
        if not isinstance(value, str) or not contains_value(value, unit):
            return None
    out = dict(item)
    for name, info in rt.model.model_fields.items():
        if name == "evidence" or name in keys or not is_free_text(info):
            continue
        value = out.get(name)
        if isinstance(value, list):
            out[name] = [v for v in value if isinstance(v, str) and contains_value(v, chunk.text)]
        elif isinstance(value, str) and not contains_value(value, chunk.text):
            out[name] = None
    evidence = evidence if evidence is not None else unit
    if len(evidence) <= MAX_EVIDENCE:
        out["evidence"] = evidence.strip()
    else:
        first_key = next((item[k] for k in keys if isinstance(item.get(k), str)), None)
        evidence = sentence_with(first_key, chunk, doc) if first_key else None
        if evidence is None:
            return None
        out["evidence"] = evidence
    try:
        return rt.model.model_validate(out).model_dump(mode="json")
    except ValidationError:
        return None


@cache
def load_gates(folder: Path | None) -> dict[str, dict[str, Any]]:
    """``gates.json`` of a few-shot folder: per record type, a cue ``pattern`` a unit must
    match, the ``unit`` (sentence | line | chunk), ``first_chunk_only``, ``exclude_lines``."""
    if folder is None:
        return {}
    path = folder / "gates.json"
    gates: dict[str, dict[str, Any]] = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
    return gates


def units(rt: RecordType, chunk: Chunk, doc: Document, gates: dict[str, dict[str, Any]]) -> list[Span]:
    """The pieces of ``chunk`` one call sees for ``rt``: sentences by default, ``line`` or
    ``chunk`` when the gate says so; only pieces matching the gate's cue pattern."""
    gate = gates.get(rt.name, {})
    if gate.get("first_chunk_only") and chunk.index != 0:
        return []
    if not rt.many and "unit" not in gate:  # one record per document: read the chunk whole
        gate = {**gate, "unit": "chunk"}
    unit = gate.get("unit", "sentence")
    if unit == "chunk":
        pieces = [Span(chunk.start, chunk.end)]
    elif unit == "line":
        pieces = [
            Span(chunk.start + m.start(), chunk.start + m.end()) for m in re.finditer(r"[^\n]*\S[^\n]*", chunk.text)
        ]
    else:
        pieces = list(sentences(doc.text, Span(chunk.start, chunk.end)))
    pattern = gate.get("pattern")
    if pattern:
        cue = re.compile(pattern, re.IGNORECASE | re.MULTILINE)
        pieces = [p for p in pieces if cue.search(doc.text[p.start : p.end])]
    exclude = gate.get("exclude_lines")
    if exclude:  # e.g. reference-list lines, where the spec says organizations are not records
        pieces = [p for p in pieces if not _line_matches(exclude, doc.text, line_of(doc.text, p.start))]
    return pieces


@lru_cache(maxsize=4096)
def _line_matches(pattern: str, text: str, line: tuple[int, int]) -> bool:
    """Does ``pattern`` match the line of ``text`` at ``line`` (asked once per line, not per sentence)?"""
    return re.search(pattern, text[line[0] : line[1]]) is not None
