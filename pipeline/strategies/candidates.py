"""Candidate-based strategies: records built from spans of the text.

Fields declare a candidate kind (``json_schema_extra={"candidates": kind}``; see
``pipeline.candidates``). A field of a plain schema that declares none, in a record type
whose fields declare none, gets the generic ``phrase`` kind, so every schema works.

``select``: per unit and record type, the model fills the record with every candidate field
constrained to an enum of the spans found in the text: it can choose, but not invent.
``rules`` (no model): one record per candidate of the primary key field, the other fields
from the nearest candidates -- the baseline ``select`` must beat to earn its calls.
"""

from __future__ import annotations

import typing
import unicodedata
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, create_model

from pipeline.candidates import find, kind_of
from pipeline.chunk import sentences
from pipeline.core.domain import CandidateKind
from pipeline.core.schema import RecordType, Schema
from pipeline.core.types import Chunk, Document, Span
from pipeline.ground import is_free_text
from pipeline.strategies.base import CallFailed, Calls, ChunkOutcome, Context, Records
from pipeline.strategies.fewshot import FewShotStrategy, Raw, add_items, finish
from pipeline.strategies.items import MAX_ITEMS, load_gates, units

#: a candidate with its span in the text it was found in
Found = tuple[str, int, int]


@dataclass(frozen=True)
class FieldSpec:
    """A field filled from candidates of one kind."""

    name: str
    kind: CandidateKind
    scope: str  # "unit" (the sentence/line) or "chunk"
    is_list: bool
    is_key: bool
    primary: bool
    #: the generic ``phrase`` kind given to a plain schema's text field (the record type declares no kinds)
    implicit: bool = False


def field_specs(rt: RecordType, schema: Schema) -> tuple[FieldSpec, ...]:
    """The candidate fields of ``rt``: those declaring a kind, or -- where the record type
    declares none -- every free-text field, with the generic ``phrase`` kind."""
    keys = set(rt.key_fields)
    fields = {name: info for name, info in rt.model.model_fields.items() if name != "evidence"}
    declared = {
        name: info.json_schema_extra
        for name, info in fields.items()
        if isinstance(info.json_schema_extra, dict) and isinstance(info.json_schema_extra.get("candidates"), str)
    }
    implicit = not declared
    if implicit:
        declared = {name: {"candidates": "phrase"} for name, info in fields.items() if is_free_text(info)}
    specs = []
    for name, extra in declared.items():
        specs.append(
            FieldSpec(
                name,
                kind_of(schema, str(extra["candidates"])),
                str(extra.get("candidates_scope", "unit")),
                typing.get_origin(_unwrap(fields[name].annotation)) is list,
                name in keys,
                bool(extra.get("primary")),
                implicit,
            )
        )
    if specs and not any(s.primary for s in specs):
        first_key = next((s for s in specs if s.is_key), None)
        if first_key is not None:
            specs = [s if s is not first_key else _primary(s) for s in specs]
    return tuple(specs)


def _primary(spec: FieldSpec) -> FieldSpec:
    return FieldSpec(spec.name, spec.kind, spec.scope, spec.is_list, spec.is_key, True, spec.implicit)


def _unwrap(tp: Any) -> Any:
    args = [a for a in typing.get_args(tp) if a is not type(None)]
    return args[0] if typing.get_origin(tp) in (typing.Union, __import__("types").UnionType) and len(args) == 1 else tp


def _is_closed(info: Any) -> bool:
    """A field whose values come from a small closed set (a ``Literal``, a ``bool``)."""
    args = typing.get_args(info.annotation) or (info.annotation,)
    return any(typing.get_origin(a) is Literal or a is bool for a in args)


def positions(cands: list[str], text: str) -> list[Found]:
    norm = unicodedata.normalize("NFC", text).replace("\xa0", " ")
    out = []
    for c in cands:
        at = norm.find(c)
        if at >= 0:
            out.append((c, at, at + len(c)))
    return out


def maximal(found: list[Found]) -> list[Found]:
    """Drop candidates whose span lies inside a longer candidate's span."""
    return [
        a
        for a in found
        if not any(b is not a and b[1] <= a[1] and a[2] <= b[2] and (b[2] - b[1]) > (a[2] - a[1]) for b in found)
    ]


@lru_cache(maxsize=64)  # per document, not per chunk: sentence splitting is slow
def _ties_class_to_name(kind: CandidateKind, text: str, kept: tuple[Span, ...]) -> bool:
    assert kind.is_class is not None
    for span_kept in kept:
        for span in sentences(text, span_kept):
            found = find(kind, text[span.start : span.end])
            if any(kind.is_class(c) for c in found) and any(not kind.is_class(c) for c in found):
                return True
    return False


def ties_class_to_name(kind: CandidateKind, doc: Document) -> bool:
    """Does one sentence of the document's main content hold both a class phrase and a
    specific name of ``kind``? The class phrase then describes that named thing and is no
    record of its own ("XY-08, an mRNA vaccine": "mRNA vaccine" names no second thing)."""
    return kind.is_class is not None and _ties_class_to_name(kind, doc.text, tuple(doc.kept))


class CandidateStrategy(FewShotStrategy):
    """``select``: the model picks each candidate field's value among the spans of the text."""

    name = "select"
    uses_model: ClassVar[bool] = True
    max_tokens: ClassVar[int] = 160
    evidence_is_unit = True

    def extract(self, chunk: Chunk, doc: Document, ctx: Context) -> ChunkOutcome:
        calls = Calls(ctx)
        # a gate's cue pattern narrows few-shot calls; candidates already narrow these
        gates = {k: {kk: vv for kk, vv in v.items() if kk != "pattern"} for k, v in load_gates(self.folder).items()}
        records: Records = {rt.name: [] for rt in ctx.schema.record_types}
        raw: Raw = {}
        errors: list[str] = []
        for rt in ctx.schema.record_types:
            specs = field_specs(rt, ctx.schema)
            if not specs or not all(any(s.name == k for s in specs) for k in rt.key_fields):
                continue  # this type's key fields have no candidates: nothing to select from
            if self.uses_model and rt.name not in self.prompts:
                continue
            for span in units(rt, chunk, doc, gates):
                unit = doc.text[span.start : span.end]
                offset = span.start - chunk.start
                cands = {
                    s.name: positions(
                        find(s.kind, unit if s.scope == "unit" else chunk.text),
                        unit if s.scope == "unit" else chunk.text,
                    )
                    for s in specs
                }
                if any(not cands[k] for k in rt.key_fields):
                    continue
                if not self.uses_model:
                    items = self.rules(rt, specs, cands, offset, doc)
                else:
                    try:
                        items = self.select(calls, rt, specs, cands, unit, ctx)
                    except CallFailed as failure:  # this unit failed after its retries; the others go on
                        errors.append(f"{rt.name}@{span.start}: {calls.describe(failure)}")
                        continue
                raw.setdefault(rt.name, []).append({"unit": [span.start, span.end], "items": items})
                add_items(records, rt, items, span, chunk, doc, evidence_is_unit=True)
        return finish(records, raw, errors, calls, chunk, doc, ctx)

    def select(
        self,
        calls: Calls,
        rt: RecordType,
        specs: tuple[FieldSpec, ...],
        cands: dict[str, list[Found]],
        unit: str,
        ctx: Context,
    ) -> list[dict[str, Any]]:
        fields: dict[str, Any] = {}
        by_name = {s.name: s for s in specs}
        options_of = {name: list(dict.fromkeys(c for c, _, _ in found)) for name, found in cands.items()}
        plain = any(s.implicit for s in specs)
        for name, info in rt.model.model_fields.items():
            if name == "evidence":
                continue
            spec = by_name.get(name)
            options = tuple(options_of.get(name, []))
            if plain and not (spec is not None and spec.is_key) and not _is_closed(info):
                # a plain schema's other text and number fields are not asked: every phrase of
                # the sentence as an option for each made a small model write for minutes, and
                # a number it writes freely is a guess
                continue
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
        primary = next(s for s in specs if s.primary)
        cap = min(MAX_ITEMS, primary.kind.per_unit or MAX_ITEMS)
        limit = max(1, min(cap, len(options_of.get(primary.name, [])))) if rt.many else 1
        model: type[BaseModel] = create_model(
            f"{rt.model.__name__}Choices",
            __config__=ConfigDict(extra="forbid"),
            items=(list[item], Field(default_factory=list, max_length=limit)),  # type: ignore[valid-type]
        )
        return self.ask(calls, model, self.render(rt, unit, ctx, options_of, list(fields)))

    @staticmethod
    def rules(
        rt: RecordType,
        specs: tuple[FieldSpec, ...],
        cands: dict[str, list[Found]],
        offset: int,
        doc: Document,
    ) -> list[dict[str, Any]]:
        primary = next(s for s in specs if s.primary)

        def at(spec: FieldSpec, pos: int) -> int:
            return pos + offset if spec.scope == "unit" else pos

        def is_class(spec: FieldSpec, value: str) -> bool:
            return spec.kind.is_class is not None and spec.kind.is_class(value)

        end_of_unit = max((c[2] for c in cands[primary.name]), default=0)
        items = []
        primaries = maximal(cands[primary.name])
        if primary.kind.is_class is not None and (
            ties_class_to_name(primary.kind, doc) or any(not is_class(primary, c[0]) for c in primaries)
        ):
            # a class phrase is a record only when the document names nothing more specific
            primaries = [c for c in primaries if not is_class(primary, c[0])]
        for value, start, end in primaries:
            anchor = at(primary, start)
            item: dict[str, Any] = {primary.name: value}
            for s in specs:
                if s.name == primary.name:
                    continue
                found = [c for c in maximal(cands[s.name]) if c[0].casefold() != value.casefold()]
                if s.is_list:
                    item[s.name] = [c for c, _, _ in found]
                    continue
                if s.kind.adjacent:  # must follow the value directly
                    found = [c for c in found if 0 <= c[1] - end <= 3]
                if s.kind.is_class is not None:  # a specific name beats a class phrase
                    specific = [c for c in found if not is_class(s, c[0])]
                    in_unit = [c for c in specific if s.scope == "unit" or offset <= c[1] < offset + (end_of_unit or 0)]
                    found = in_unit or specific or found
                if not found:
                    item[s.name] = None
                    continue
                item[s.name] = min(found, key=lambda c: abs(at(s, c[1]) - anchor))[0]
            if all(item.get(k.name) for k in specs if k.is_key):
                items.append(item)
        return items


class RulesStrategy(CandidateStrategy):
    """``rules``: records from candidates by position, no model call."""

    name = "rules"
    uses_model = False

    def prepare(self, ctx: Context, prompt: str | None) -> str:
        super().prepare(ctx, prompt)  # for the gates only; rules send no prompt
        return "no-prompt"
