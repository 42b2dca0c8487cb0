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

import re
import typing
import unicodedata
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from functools import lru_cache
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, create_model

from pipeline.candidates import aliases, find, kind_of, value_of
from pipeline.chunk import sentences
from pipeline.core.domain import CandidateKind
from pipeline.core.schema import RecordType, Schema
from pipeline.core.types import Chunk, Document, Span
from pipeline.ground import contains_value, ground_records, is_free_text
from pipeline.strategies.base import CallFailed, Calls, ChunkOutcome, Context, Records
from pipeline.strategies.fewshot import FewShotStrategy, Raw, finish, one_per_document
from pipeline.strategies.items import MAX_ITEMS, ground_item, load_gates, units

#: a candidate with its span in the text it was found in
Found = tuple[str, int, int]


@dataclass(frozen=True)
class FieldSpec:
    """A field filled from candidates of one kind.

    Field declarations (``json_schema_extra``) that shape how ``rules`` builds a record:
    ``candidates`` (the kind), ``candidates_scope`` ("unit", the default, or "chunk"),
    ``primary`` (one record per candidate of this field), ``fallback: "title"`` (when the
    scope holds no candidate, the document's title may supply one: the subject of a news item
    is named there), ``anchor: <kind>`` on the primary (one record per candidate of that kind
    -- a mention of an event, say --, the primary value being the candidate inside it, or null where the
    field allows null) and ``in_anchor`` (the value only from inside the anchor, else null).
    """

    name: str
    kind: CandidateKind
    scope: str  # "unit" (the sentence/line) or "chunk"
    is_list: bool
    is_key: bool
    primary: bool
    fallback: str | None = None
    anchor: CandidateKind | None = None
    in_anchor: bool = False
    nullable: bool = False
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
        anchor = extra.get("anchor")
        specs.append(
            FieldSpec(
                name,
                kind_of(schema, str(extra["candidates"])),
                str(extra.get("candidates_scope", "unit")),
                typing.get_origin(_unwrap(fields[name].annotation)) is list,
                name in keys,
                bool(extra.get("primary")),
                fallback=str(extra["fallback"]) if extra.get("fallback") else None,
                anchor=kind_of(schema, str(anchor)) if anchor else None,
                in_anchor=bool(extra.get("in_anchor")),
                nullable=not fields[name].is_required(),
                implicit=implicit,
            )
        )
    if specs and not any(s.primary for s in specs):
        first_key = next((s for s in specs if s.is_key), None)
        if first_key is not None:
            specs = [s if s is not first_key else replace(s, primary=True) for s in specs]
    return tuple(specs)


def _unwrap(tp: Any) -> Any:
    args = [a for a in typing.get_args(tp) if a is not type(None)]
    return args[0] if typing.get_origin(tp) in (typing.Union, __import__("types").UnionType) and len(args) == 1 else tp


def _is_closed(info: Any) -> bool:
    """A field whose values come from a small closed set (a ``Literal``, a ``bool``)."""
    args = typing.get_args(info.annotation) or (info.annotation,)
    return any(typing.get_origin(a) is Literal or a is bool for a in args)


def positions(cands: list[str], text: str) -> list[Found]:
    """Every place each candidate occurs in ``text`` (any case, not inside a longer word), as
    written there: a name found once ("Acme Rotary Widget" in a title) is also the lower-case
    mention of a later sentence."""
    return list(_positions(tuple(cands), text))


@lru_cache(maxsize=1024)  # a chunk-wide field asks for the same chunk's places once per sentence
def _positions(cands: tuple[str, ...], text: str) -> tuple[Found, ...]:
    norm = unicodedata.normalize("NFC", text).replace("\xa0", " ")
    out: list[Found] = []
    seen: set[tuple[int, int]] = set()
    for c in cands:
        # a letter may not run on ("MG" is not in "MGH"); a glued affiliation number may ("Leandro1")
        before = (r"(?<!\d)" if c[:1].isdigit() else r"(?<![^\W\d_])") if c[:1].isalnum() else ""
        after = (r"(?!\d)" if c[-1:].isdigit() else r"(?![^\W\d_])") if c[-1:].isalnum() else ""
        for m in re.finditer(before + re.escape(c) + after, norm, re.IGNORECASE):
            if (m.start(), m.end()) not in seen:
                seen.add((m.start(), m.end()))
                out.append((m.group(0), m.start(), m.end()))
    return tuple(sorted(out, key=lambda f: f[1]))


def maximal(found: list[Found]) -> list[Found]:
    """Drop candidates whose span lies inside a longer candidate's span."""
    return [
        a
        for a in found
        if not any(b is not a and b[1] <= a[1] and a[2] <= b[2] and (b[2] - b[1]) > (a[2] - a[1]) for b in found)
    ]


#: what may stand between a name and the class phrase that describes it: "XY-08 cordless drill",
#: "the cordless drill (XY-08)", "XY-08, a cordless drill"
APPOSITION_GAP = re.compile(r"[\s,(]{0,3}(?:(?:an?|the|its) )?[\s(]{0,2}")


@lru_cache(maxsize=64)  # per document, not per chunk: sentence splitting is slow
def _ties_class_to_name(kind: CandidateKind, text: str, kept: tuple[Span, ...]) -> bool:
    assert kind.is_class is not None
    for span_kept in kept:
        for span in sentences(text, span_kept):
            sent = unicodedata.normalize("NFC", text[span.start : span.end]).replace("\xa0", " ")
            found = positions(find(kind, sent, text), sent)
            classes = [c for c in found if kind.is_class(c[0])]
            names = [c for c in found if not kind.is_class(c[0])]
            for a in classes:
                for b in names:
                    first, second = (a, b) if a[1] < b[1] else (b, a)
                    if first[2] <= second[1] and APPOSITION_GAP.fullmatch(sent[first[2] : second[1]]):
                        return True
    return False


def ties_class_to_name(kind: CandidateKind, doc: Document) -> bool:
    """Does a sentence of the document's main content put a class phrase of ``kind`` in
    apposition to a specific name? The class phrase then describes that named thing and is no
    record of its own ("XY-08, a cordless drill"; "hammers and saws" are two)."""
    return kind.is_class is not None and _ties_class_to_name(kind, doc.text, tuple(doc.kept))


@lru_cache(maxsize=64)
def _title(text: str, kept: tuple[Span, ...], kind: CandidateKind) -> str | None:
    for span in kept:
        found = find(kind, text[span.start : span.end])
        if found:
            return found[0]
    return None


def document_title(doc: Document, schema: Schema) -> str | None:
    """The document's title: the first title-shaped line of its main content."""
    return _title(doc.text, tuple(doc.kept), kind_of(schema, "title"))


@lru_cache(maxsize=64)
def _named_with_primary(
    text: str, anchor: CandidateKind, primary: CandidateKind, names: CandidateKind
) -> frozenset[str]:
    out: set[str] = set()
    for mention in find(anchor, text, text):
        if find(primary, mention, text):
            out |= {n.casefold() for n in find(names, mention, text)}
    return frozenset(out)


@dataclass
class RulesContext:
    """What ``rules`` knows beyond one unit's candidates: the unit's anchors, the document's
    title and the second names the document gives (see ``FieldSpec``)."""

    unit_len: int
    anchors: list[Found] = field(default_factory=list)
    title: str | None = None
    title_cands: dict[str, list[str]] = field(default_factory=dict)
    document: str = ""
    visible: str = ""  # the text a key value may come from: the chunk (and the title)

    @classmethod
    def of(cls, specs: tuple[FieldSpec, ...], unit: str, title: str | None, doc: Document, chunk: str) -> RulesContext:
        primary = next(s for s in specs if s.primary)
        anchors = positions(find(primary.anchor, unit, doc.text), unit) if primary.anchor is not None else []
        title_cands = {
            s.name: find(s.kind, title, doc.text) for s in specs if title and s.fallback == "title" and not s.is_list
        }
        return cls(len(unit), anchors, title, title_cands, doc.text, chunk + "\n" + (title or ""))

    def can_build(self, rt: RecordType, specs: tuple[FieldSpec, ...], cands: dict[str, list[Found]]) -> bool:
        """Has every key field a candidate (or a way to do without one)?"""
        for s in specs:
            if not s.is_key or cands[s.name] or self.title_cands.get(s.name):
                continue
            if not (s.primary and s.anchor is not None and self.anchors):
                return False
        return True

    def aliases(self, spec: FieldSpec) -> Mapping[str, str]:
        return aliases(spec.kind, self.document) if self.document else {}

    def canonical(self, spec: FieldSpec, value: str) -> str:
        """The first name the document gives the thing ``value`` names, where the text at hand holds it."""
        name = self.aliases(spec).get(value.casefold())
        return name if name is not None and contains_value(name, self.visible) else value

    def named_elsewhere(
        self, specs: tuple[FieldSpec, ...], cands: dict[str, list[Found]], start: int, end: int
    ) -> bool:
        """Does an anchor-bound name inside this anchor (the event's name) appear elsewhere in the
        document in an anchor that holds a primary value? Then this mention is that one."""
        primary = next(s for s in specs if s.primary)
        if primary.anchor is None or not self.document:
            return False
        for s in specs:
            if not s.in_anchor or s.scope != "unit":
                continue
            inside = {c[0].casefold() for c in cands[s.name] if start <= c[1] and c[2] <= end + 2}
            if inside & _named_with_primary(self.document, primary.anchor, primary.kind, s.kind):
                return True
        return False

    def choose(
        self,
        s: FieldSpec,
        found: list[Found],
        anchor: int,
        at: Callable[[FieldSpec, int], int],
        in_unit: Callable[[FieldSpec, Found], bool],
        is_class: Callable[[FieldSpec, str], bool],
    ) -> str | None:
        """The value of a non-primary field: the unit's nearest candidate (a specific name before a
        class phrase), then the title's (``fallback``), then the chunk's nearest; specific names
        of the title or chunk before their class phrases."""
        title = self.title_cands.get(s.name, [])
        kinds = (True, False) if s.kind.is_class is not None else (True,)

        def fits(value: str, specific: bool) -> bool:
            return s.kind.is_class is None or is_class(s, value) != specific

        for specific in kinds:
            near = [c for c in found if fits(c[0], specific) and in_unit(s, c)]
            if near:
                return min(near, key=lambda c: abs(at(s, c[1]) - anchor))[0]
        for specific in kinds:
            named = [t for t in title if fits(t, specific)]
            if named:
                return named[0]
            pool = [c for c in found if fits(c[0], specific)]
            if pool:
                return min(pool, key=lambda c: abs(at(s, c[1]) - anchor))[0]
        return None


def derived_values(specs: tuple[FieldSpec, ...], text: str) -> list[str]:
    """The values that the key fields' candidate spans in ``text`` stand for, where they differ
    from the spans ("Grade III" -> "3"): a key value built from a span is no invention."""
    return [v for s in specs if s.is_key and s.kind.value for c in find(s.kind, text) if (v := s.kind.value(c))]


class CandidateStrategy(FewShotStrategy):
    """``select``: the model picks each candidate field's value among the spans of the text."""

    name = "select"
    uses_model: ClassVar[bool] = True
    completed_by_fill: ClassVar[bool] = True
    max_tokens: ClassVar[int] = 160
    evidence_is_unit = True

    def extract(self, chunk: Chunk, doc: Document, ctx: Context) -> ChunkOutcome:
        calls = Calls(ctx)
        # a gate's cue pattern narrows few-shot calls; candidates already narrow these
        gates = {k: {kk: vv for kk, vv in v.items() if kk != "pattern"} for k, v in load_gates(self.folder).items()}
        records: Records = {rt.name: [] for rt in ctx.schema.record_types}
        raw: Raw = {}
        errors: list[str] = []
        title = document_title(doc, ctx.schema)
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
                        find(s.kind, unit if s.scope == "unit" else chunk.text, doc.text),
                        unit if s.scope == "unit" else chunk.text,
                    )
                    for s in specs
                }
                if not self.uses_model:
                    context = RulesContext.of(specs, unit, title, doc, chunk.text)
                    if not context.can_build(rt, specs, cands):
                        continue
                    items = self.rules(rt, specs, cands, offset, doc, context=context)
                else:
                    if any(not cands[k] for k in rt.key_fields):
                        continue
                    try:
                        items = self.select(calls, rt, specs, cands, unit, ctx)
                    except CallFailed as failure:  # this unit failed after its retries; the others go on
                        errors.append(f"{rt.name}@{span.start}: {calls.describe(failure)}")
                        continue
                raw.setdefault(rt.name, []).append({"unit": [span.start, span.end], "items": items})
                self.add(records, rt, items, span, chunk, doc, title, ctx.schema)
        return finish(records, raw, errors, calls, chunk, doc, ctx)

    def add(
        self,
        records: Records,
        rt: RecordType,
        items: list[dict[str, Any]],
        span: Span,
        chunk: Chunk,
        doc: Document,
        title: str | None,
        schema: Schema,
    ) -> None:
        """``add_items`` for candidates. The text a key value may come from is the chunk, the
        document's title (``fallback``) and the values its spans stand for ("Grade III" is "3")."""
        evidence = doc.text[span.start : span.end]
        seen = "\n".join([chunk.text, title or "", *derived_values(field_specs(rt, schema), chunk.text)])
        for item in items:
            rec = ground_item(rt, item, seen, chunk, doc, evidence=evidence)
            if rec is not None and rec not in records[rt.name]:
                records[rt.name].append(rec)

    def rebuild(self, response: Any, chunk: Chunk, doc: Document, ctx: Context) -> Records:
        records: Records = {rt.name: [] for rt in ctx.schema.record_types}
        title = document_title(doc, ctx.schema)
        for rt in ctx.schema.record_types:
            for answer in response.get("units", {}).get(rt.name, []):
                self.add(records, rt, answer["items"], Span(*answer["unit"]), chunk, doc, title, ctx.schema)
        one_per_document(records, ctx)
        ground_records(records, chunk, doc, ctx.schema)
        return records

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
        options_of = {
            name: list(dict.fromkeys(v for c, _, _ in found if (v := value_of(by_name[name].kind, c))))
            for name, found in cands.items()
        }
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
        context: RulesContext | None = None,
    ) -> list[dict[str, Any]]:
        """One record per primary candidate (or per anchor, where the primary declares one);
        every other field from the nearest candidate -- in the unit first, then the document's
        title where the field allows it, then the chunk -- and keys that are a second name of
        one thing (a brand beside its generic name) written as the first name."""
        ctx = context or RulesContext(unit_len=max((c[2] for c in cands[specs[0].name]), default=0))
        primary = next(s for s in specs if s.primary)

        def at(spec: FieldSpec, pos: int) -> int:
            return pos + offset if spec.scope == "unit" else pos

        def is_class(spec: FieldSpec, value: str) -> bool:
            return spec.kind.is_class is not None and spec.kind.is_class(value)

        def in_unit(spec: FieldSpec, c: Found) -> bool:
            return spec.scope == "unit" or offset <= c[1] < offset + ctx.unit_len

        # (primary value or None, anchor start, anchor end), unit coordinates
        built: list[tuple[str | None, int, int]] = []
        primaries = maximal(cands[primary.name])
        if primary.anchor is not None:
            for _, a_start, a_end in maximal([*ctx.anchors, *primaries]):
                inside = [c for c in primaries if a_start <= c[1] and c[2] <= a_end]
                value = inside[0][0] if inside else None
                if value is None and (not primary.nullable or ctx.named_elsewhere(specs, cands, a_start, a_end)):
                    continue  # a bare mention of a thing the document gives a primary value for elsewhere
                built.append((value, a_start, a_end))
            if any(value is not None for value, _, _ in built):  # in one sentence, bare mentions are the valued one
                built = [b for b in built if b[0] is not None]
        else:
            if primary.kind.is_class is not None and (
                ties_class_to_name(primary.kind, doc) or any(not is_class(primary, c[0]) for c in primaries)
            ):
                # a class phrase is a record only when the document names nothing more specific
                primaries = [c for c in primaries if not is_class(primary, c[0])]
            firsts: dict[str, Found] = {}
            for c in primaries:  # one record per name (its first name in the document): its first mention
                firsts.setdefault(ctx.canonical(primary, c[0]).casefold(), c)
            built = [(value, start, end) for value, start, end in firsts.values()]
        items = []
        for value, start, end in built:
            anchor = at(primary, start)
            named = ctx.canonical(primary, value) if value is not None else None
            item: dict[str, Any] = {primary.name: value_of(primary.kind, named) if named is not None else None}
            for s in specs:
                if s.name == primary.name:
                    continue
                found = [c for c in maximal(cands[s.name]) if value is None or c[0].casefold() != value.casefold()]
                if s.is_list:
                    item[s.name] = [v for v in (value_of(s.kind, c) for c, _, _ in found) if v]
                    continue
                if s.in_anchor:
                    inside = [c for c in found if start <= c[1] - (offset if s.scope == "chunk" else 0) <= end + 2]
                    item[s.name] = value_of(s.kind, inside[0][0]) if inside else None
                    continue
                if s.kind.adjacent:  # must follow the value directly
                    found = [c for c in found if 0 <= c[1] - end <= 3]
                chosen = ctx.choose(s, found, anchor, at, in_unit, is_class)
                item[s.name] = value_of(s.kind, chosen) if chosen is not None else None
                if s.is_key and isinstance(item[s.name], str):
                    item[s.name] = ctx.canonical(s, item[s.name])
            if all(item.get(k.name) or (k is primary and k.anchor is not None) for k in specs if k.is_key):
                items.append(item)
        return items


class RulesStrategy(CandidateStrategy):
    """``rules``: records from candidates by position, no model call."""

    name = "rules"
    uses_model = False

    def prepare(self, ctx: Context, prompt: str | None) -> str:
        super().prepare(ctx, prompt)  # for the gates only; rules send no prompt
        return "no-prompt"
