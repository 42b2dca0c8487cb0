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
import unicodedata
from dataclasses import dataclass
from functools import cache, lru_cache
from pathlib import Path
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, create_model

from pipeline.candidates import candidates, is_generic_therapy
from pipeline.chunk import sentences
from pipeline.core.errors import PipelineError
from pipeline.core.schema import RecordType
from pipeline.core.types import Chunk, Document, Span
from pipeline.extract import AttemptLog, ChunkOutcome, Context, Strategy, ground_records
from pipeline.ground import contains_value, is_free_text
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


def sentence_with(value: str, chunk: Chunk, doc: Document) -> str | None:
    """The sentence of ``chunk`` that holds ``value`` (folded comparison)."""
    for span in sentences(doc.text, Span(chunk.start, chunk.end)):
        sent = doc.text[span.start : span.end]
        if contains_value(value, sent):
            return sent[:400]
    return None


def ground_item(
    rt: RecordType, item: dict[str, Any], unit: str, chunk: Chunk, doc: Document, evidence: str | None = None
) -> dict[str, Any] | None:
    """Keep an item only if its key values occur in the text the model saw (``unit``);
    null free-text values the chunk does not support; evidence is the unit's sentence."""
    keys = rt.key_fields
    for k in keys:
        value = item.get(k)
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
    if len(evidence) <= 400:
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
    exclude = gate.get("exclude_lines")
    if exclude:  # e.g. reference-list lines, where the spec says organizations are not records
        skip = re.compile(exclude)
        pieces = [p for p in pieces if not skip.search(_line_of(doc.text, p.start))]
    return pieces


def _line_of(text: str, pos: int) -> str:
    start = text.rfind("\n", 0, pos) + 1
    end = text.find("\n", pos)
    return text[start : end if end >= 0 else len(text)]


def finish(
    records: dict[str, list[dict[str, Any]]],
    raw: dict[str, Any],
    errors: list[str],
    log: AttemptLog,
    chunk: Chunk,
    doc: Document,
    ctx: Context,
) -> ChunkOutcome:
    """Ground the records; the chunk failed only if every call of it failed."""
    ground_records(records, chunk, doc, ctx.schema)
    if errors and not raw:
        return ChunkOutcome(calls=log.calls, status="failed", error="; ".join(errors))
    return ChunkOutcome(records=records, calls=log.calls, response={"items": raw, "errors": errors})


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
        return finish(records, raw, errors, log, chunk, doc, ctx)


# -- candidate-constrained strategies ---------------------------------------------------


@dataclass(frozen=True)
class FieldSpec:
    """A schema field that declares ``json_schema_extra={"candidates": kind, ...}``."""

    name: str
    kind: str
    scope: str  # "unit" (the sentence/line) or "chunk"
    is_list: bool
    is_key: bool
    primary: bool


@cache
def field_specs(rt: RecordType) -> tuple[FieldSpec, ...]:
    keys = set(rt.key_fields)
    specs = []
    for name, info in rt.model.model_fields.items():
        extra = info.json_schema_extra if isinstance(info.json_schema_extra, dict) else {}
        kind = extra.get("candidates")
        if isinstance(kind, str):
            is_list = typing.get_origin(info.annotation) is list
            scope = str(extra.get("candidates_scope", "unit"))
            specs.append(FieldSpec(name, kind, scope, is_list, name in keys, bool(extra.get("primary"))))
    return tuple(specs)


def _positions(cands: list[str], text: str) -> list[tuple[str, int, int]]:
    norm = unicodedata.normalize("NFC", text).replace("\xa0", " ")
    out = []
    for c in cands:
        at = norm.find(c)
        if at >= 0:
            out.append((c, at, at + len(c)))
    return out


def _maximal(found: list[tuple[str, int, int]]) -> list[tuple[str, int, int]]:
    """Drop candidates whose span lies inside a longer candidate's span."""
    return [
        a
        for a in found
        if not any(b is not a and b[1] <= a[1] and a[2] <= b[2] and (b[2] - b[1]) > (a[2] - a[1]) for b in found)
    ]


@lru_cache(maxsize=64)  # per document, not per chunk: sentence splitting is slow
def _names_a_product(text: str, kept: tuple[Span, ...]) -> bool:
    for span_kept in kept:
        for span in sentences(text, span_kept):
            found = candidates("therapy", text[span.start : span.end])
            if any(is_generic_therapy(c) for c in found) and any(not is_generic_therapy(c) for c in found):
                return True
    return False


def names_a_product(doc: Document) -> bool:
    """Does the document tie a therapy class phrase to a named product? True when one
    sentence of the main content holds both ("Descartes-08, an mRNA CAR T cell therapy"):
    the class phrase then describes that product and is not a therapy of its own (spec:
    a class phrase is the name only "when no product is named")."""
    return _names_a_product(doc.text, tuple(doc.kept))


class CandidateStrategy(Strategy):
    """``select``: per unit and record type, the model fills the record with every
    candidate-declaring field constrained to an enum of spans found in the text.
    ``rules`` (ablation, no model): one record per primary-key candidate, other fields from
    the nearest candidates -- the baseline ``select`` must beat to earn its calls."""

    name = "select"
    default_prompt = "fewshot"
    use_model: ClassVar[bool] = True
    max_tokens: ClassVar[int] = 160
    folder: Path = PROMPTS_DIR

    def prepare(self, ctx: Context, prompt: str | None) -> str:
        folder = Path(prompt) if prompt else PROMPTS_DIR / ctx.schema.name / "fewshot"
        if not self.use_model and not folder.is_dir():
            self.folder = folder  # rules need no prompts; gates.json there is optional
            return "no-prompt"
        return FewShotStrategy.prepare(self, ctx, prompt)  # type: ignore[arg-type]

    def extract(self, chunk: Chunk, doc: Document, ctx: Context) -> ChunkOutcome:
        log = AttemptLog(ctx.provider, ctx.schema.hash)
        client = ctx.provider.instructor_client() if self.use_model else None
        if client is not None:
            log.attach(client)
        gates = {k: {kk: vv for kk, vv in v.items() if kk != "pattern"} for k, v in _gates(self.folder).items()}
        records: dict[str, list[dict[str, Any]]] = {rt.name: [] for rt in ctx.schema.record_types}
        raw: dict[str, Any] = {}
        errors: list[str] = []
        for rt in ctx.schema.record_types:
            specs = field_specs(rt)
            if not specs or not all(any(s.name == k for s in specs) for k in rt.key_fields):
                continue  # this type's key fields declare no candidates: nothing to select from
            path = self.folder / f"{rt.name}.j2"
            for span in units(rt, chunk, doc, gates):
                unit = doc.text[span.start : span.end]
                offset = span.start - chunk.start
                cands = {
                    s.name: _positions(
                        candidates(s.kind, unit if s.scope == "unit" else chunk.text),
                        unit if s.scope == "unit" else chunk.text,
                    )
                    for s in specs
                }
                if any(not cands[k] for k in rt.key_fields):
                    continue
                if client is None:
                    items = self._rules(rt, specs, cands, offset, names_a_product(doc))
                else:
                    if not path.is_file():
                        continue
                    try:
                        items = self._select(client, rt, specs, cands, load_prompt(str(path)).render(text=unit), ctx)
                    except Exception as exc:  # this unit failed after its retries; the others go on
                        errors.append(f"{rt.name}@{span.start}: {type(exc).__name__}: {str(exc)[:200]}")
                        continue
                raw.setdefault(rt.name, []).extend(items)
                for item in items:
                    rec = ground_item(rt, item, chunk.text, chunk, doc, evidence=unit)
                    if rec is not None and rec not in records[rt.name]:
                        records[rt.name].append(rec)
            if not rt.many:  # one per chunk; merging keeps the document's first
                records[rt.name] = records[rt.name][:1]
        return finish(records, raw, errors, log, chunk, doc, ctx)

    def _select(
        self,
        client: Any,
        rt: RecordType,
        specs: tuple[FieldSpec, ...],
        cands: dict[str, list[tuple[str, int, int]]],
        messages: list[Any],
        ctx: Context,
    ) -> list[dict[str, Any]]:
        fields: dict[str, Any] = {}
        by_name = {s.name: s for s in specs}
        for name, info in rt.model.model_fields.items():
            if name == "evidence":
                continue
            spec = by_name.get(name)
            options = tuple(dict.fromkeys(c for c, _, _ in cands.get(name, [])))
            if spec is None:
                fields[name] = (info.annotation, info)
            elif spec.is_key:
                fields[name] = (Literal[options], ...)
            elif not options:
                fields[name] = (list[str] if spec.is_list else None, [] if spec.is_list else None)
            elif spec.is_list:
                fields[name] = (list[Literal[options]], Field(default_factory=list, max_length=6))  # type: ignore[valid-type]
            else:
                fields[name] = (Literal[options] | None, None)
        item = create_model(f"{rt.model.__name__}Choice", __config__=ConfigDict(extra="forbid"), **fields)
        # no more records than distinct primary-key candidates: a small model otherwise repeats
        # one item until max_tokens cuts the JSON and the whole unit is lost
        keys = [s for s in specs if s.is_key]
        primary = next((s for s in keys if s.primary), keys[0])
        distinct = len({c for c, _, _ in cands.get(primary.name, [])})
        limit = max(1, min(MAX_ITEMS, distinct)) if rt.many else 1
        model = create_model(
            f"{rt.model.__name__}Choices",
            __config__=ConfigDict(extra="forbid"),
            items=(list[item], Field(default_factory=list, max_length=limit)),  # type: ignore[valid-type]
        )
        decoding = {**ctx.provider.decoding, "max_tokens": min(self.max_tokens, ctx.provider.decoding["max_tokens"])}
        result = client.create(response_model=model, messages=messages, max_retries=ctx.max_retries, **decoding)
        return [i.model_dump(mode="json") for i in result.items]

    @staticmethod
    def _rules(
        rt: RecordType,
        specs: tuple[FieldSpec, ...],
        cands: dict[str, list[tuple[str, int, int]]],
        offset: int,
        named: bool = False,
    ) -> list[dict[str, Any]]:
        keys = [s for s in specs if s.is_key]
        primary = next((s for s in keys if s.primary), keys[0])

        def at(spec: FieldSpec, pos: int) -> int:
            return pos + offset if spec.scope == "unit" else pos

        end_of_unit = max((c[2] for c in cands[primary.name]), default=0)
        items = []
        primaries = _maximal(cands[primary.name])
        if primary.kind == "therapy" and (named or any(not is_generic_therapy(c[0]) for c in primaries)):
            # spec: a class phrase is a therapy only when the document names no product
            primaries = [c for c in primaries if not is_generic_therapy(c[0])]
        for value, start, end in primaries:
            anchor = at(primary, start)
            item: dict[str, Any] = {primary.name: value}
            for s in specs:
                if s.name == primary.name:
                    continue
                found = [c for c in _maximal(cands[s.name]) if c[0].casefold() != value.casefold()]
                if s.is_list:
                    item[s.name] = [c for c, _, _ in found]
                    continue
                if s.kind in {"abbreviation", "grant_id", "credentials"}:  # must follow the value directly
                    found = [c for c in found if 0 <= c[1] - end <= 3]
                if s.kind == "therapy":  # spec: a product name or code beats a class phrase
                    specific = [c for c in found if not is_generic_therapy(c[0])]
                    in_unit = [c for c in specific if s.scope == "unit" or offset <= c[1] < offset + (end_of_unit or 0)]
                    found = in_unit or specific or found
                if not found:
                    item[s.name] = None
                    continue
                item[s.name] = min(found, key=lambda c: abs(at(s, c[1]) - anchor))[0]
            if all(item.get(k.name) for k in keys):
                items.append(item)
        return items


class RulesStrategy(CandidateStrategy):
    name = "rules"
    use_model = False
