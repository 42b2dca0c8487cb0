"""Extraction strategies for small models (the embedded 270M model's default: ``fewshot``).

A 270M base model cannot fill a 10-type schema in one call, and copies invented strings
when asked to. ``fewshot`` narrows every call and ties every value to the text:

1. One call per record type, with hand-written few-shot examples from
   ``prompts/<schema>/fewshot/<type>.j2`` (built from the development documents, never
   from the eval documents).
2. The response model is the record type *without* ``evidence``: the model only names
   values, the strings are length-bounded and the list is short (grammar-constrained).
3. Grounding by construction: a record whose key values do not all occur in the chunk is
   dropped (never invented); a non-key string that does not occur in the chunk is set to
   null (enum-like fields -- Literal types and pattern-checked dates/phases -- are kept);
   the evidence is the sentence of the chunk holding the first key value.
4. Cheap gates (``prompts/<schema>/fewshot/gates.json``): a regular expression a chunk must
   match for a type to be asked at all, and ``first_chunk_only`` for document-level types.
   Gates are generic cue words ("phase", "trial"), never document-specific strings.
"""

from __future__ import annotations

import hashlib
import json
import re
import typing
from functools import cache
from pathlib import Path
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError, create_model

from pipeline.chunk import sentences
from pipeline.core.errors import PipelineError
from pipeline.core.schema import RecordType
from pipeline.core.types import Chunk, Document, Span
from pipeline.extract import AttemptLog, ChunkOutcome, Context, Strategy, ground_records
from pipeline.ground import contains_value
from pipeline.prompting import PROMPTS_DIR, load_prompt

MAX_ITEMS = 6


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


def _is_free_text(info: Any) -> bool:
    """A plain string field (not an enum, not a pattern-checked code such as a date)."""
    ann = info.annotation
    args = typing.get_args(ann) or (ann,)
    if any(typing.get_origin(a) is typing.Literal for a in args):
        return False
    if any(getattr(m, "pattern", None) for m in info.metadata):
        return False
    return str in args or any(typing.get_origin(a) is list for a in args)


def sentence_with(value: str, chunk: Chunk, doc: Document) -> str | None:
    """The sentence of ``chunk`` that holds ``value`` (folded comparison)."""
    for span in sentences(doc.text, Span(chunk.start, chunk.end)):
        sent = doc.text[span.start : span.end]
        if contains_value(value, sent):
            return sent[:400]
    return None


def ground_item(rt: RecordType, item: dict[str, Any], unit: str, chunk: Chunk, doc: Document) -> dict[str, Any] | None:
    """Keep an item only if its key values occur in the text the model saw (``unit``);
    null free-text values the chunk does not support; evidence is the unit's sentence."""
    keys = rt.key_fields
    for k in keys:
        value = item.get(k)
        if not isinstance(value, str) or not contains_value(value, unit):
            return None
    out = dict(item)
    for name, info in rt.model.model_fields.items():
        if name == "evidence" or name in keys or not _is_free_text(info):
            continue
        value = out.get(name)
        if isinstance(value, list):
            out[name] = [v for v in value if isinstance(v, str) and contains_value(v, chunk.text)]
        elif isinstance(value, str) and not contains_value(value, chunk.text):
            out[name] = None
    if len(unit) <= 400:
        out["evidence"] = unit.strip()
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
def _gates(folder: Path) -> dict[str, dict[str, Any]]:
    path = folder / "gates.json"
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}


def units(rt: RecordType, chunk: Chunk, doc: Document, gates: dict[str, dict[str, Any]]) -> list[Span]:
    """The pieces of ``chunk`` one call sees for ``rt``: sentences by default, ``line`` or
    ``chunk`` when the gate says so; only pieces matching the gate's cue pattern."""
    gate = gates.get(rt.name, {})
    if gate.get("first_chunk_only") and chunk.index != 0:
        return []
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
    return pieces


class FewShotStrategy(Strategy):
    """One constrained call per record type with few-shot examples; values tied to the text."""

    name = "fewshot"
    default_prompt = "fewshot"
    max_tokens: ClassVar[int] = 256
    folder: Path = PROMPTS_DIR

    def prepare(self, ctx: Context, prompt: str | None) -> str:
        folder = Path(prompt) if prompt else PROMPTS_DIR / ctx.schema.name / "fewshot"
        if not folder.is_dir():
            raise PipelineError(f"few-shot prompt folder {folder} not found", "pass --prompt DIR with <type>.j2 files")
        self.folder = folder
        digest = hashlib.sha256()
        for path in sorted(folder.iterdir()):
            digest.update(path.name.encode() + b"\0" + path.read_bytes())
        return digest.hexdigest()[:16]

    def extract(self, chunk: Chunk, doc: Document, ctx: Context) -> ChunkOutcome:
        log = AttemptLog(ctx.provider, ctx.schema.hash)
        client = ctx.provider.instructor_client()
        log.attach(client)
        gates = _gates(self.folder)
        records: dict[str, list[dict[str, Any]]] = {rt.name: [] for rt in ctx.schema.record_types}
        raw: dict[str, Any] = {}
        errors: list[str] = []
        for rt in ctx.schema.record_types:
            path = self.folder / f"{rt.name}.j2"
            if not path.is_file():
                continue  # no examples written for this type: it is not asked
            prompt = load_prompt(str(path))
            decoding = {
                **ctx.provider.decoding,
                "max_tokens": min(self.max_tokens, ctx.provider.decoding["max_tokens"]),
            }
            for span in units(rt, chunk, doc, gates):
                text = doc.text[span.start : span.end]
                try:
                    result = client.create(
                        response_model=item_model(rt),
                        messages=prompt.render(text=text),  # type: ignore[arg-type]
                        max_retries=ctx.max_retries,
                        **decoding,
                    )
                except Exception as exc:  # this piece failed after its retries; the others go on
                    errors.append(f"{rt.name}@{span.start}: {type(exc).__name__}: {str(exc)[:200]}")
                    continue
                items = [i.model_dump(mode="json") for i in result.items]  # type: ignore[attr-defined]
                raw.setdefault(rt.name, []).extend(items)
                for item in items:
                    rec = ground_item(rt, item, text, chunk, doc)
                    if rec is not None and rec not in records[rt.name]:
                        records[rt.name].append(rec)
        ground_records(records, chunk, doc)
        if errors and not raw:
            return ChunkOutcome(calls=log.calls, status="failed", error="; ".join(errors))
        return ChunkOutcome(records=records, calls=log.calls, response={"items": raw, "errors": errors})
