"""The fill step: after a strategy built a chunk's records, complete their fields.

A wrapper around any strategy (``with_fill``): the strategy extracts, then ``Filler`` fills
fields by the methods the schema package declares (``Domain.fill``, ``pipeline.core.fill``):
deterministic rules, or the embedded model ranking the allowed values by likelihood
(``Provider.rank``: one shared prompt, the options scored in one batch). Every ranking request
is a logged LLM call (``Calls.rank``: an ``llm_calls`` row, within the chunk's time budget).
A ranked field's margin (best minus second-best score, in nats) goes into the record's
``confidence`` map, stored in the ``confidence`` column of its table.

The decisions are part of the chunk's response (``{"strategy": ..., "fill": [...]}``), so a
cached response rebuilds the same filled records with no call, and the fill's configuration
is part of the run's configuration hash (``prepare``), so changing it re-extracts.

Only strategies that build records from candidate spans (``rules``, ``select``) are completed;
where the model writes whole records (``direct``, ``fewshot``) its values stand. A provider
that cannot rank (a remote model: no logits) gets the rules only. A plain schema without a
fill declaration gets its ``Literal`` fields ranked 0-shot, calibrated.
"""

from __future__ import annotations

import hashlib
import json
import math
import types
import typing
from collections.abc import Mapping
from typing import Any, ClassVar, Literal

from pipeline.candidates import find, kind_of
from pipeline.chunk import sentences
from pipeline.core.errors import SchemaError
from pipeline.core.fill import METHODS, Fill, Judge, Rule
from pipeline.core.schema import RecordType, Schema
from pipeline.core.types import Chunk, Document, Span
from pipeline.providers.base import Provider
from pipeline.strategies.base import CallFailed, Calls, ChunkOutcome, Context, Records, Strategy

NONE = "none"
#: what separates examples; span options end with it (Gemma has one token for it)
SEP = "\n\n"
CONTENT_FREE = "N/A"
#: one decision: record type, record index, the record's key values, field, value, margin (None: no model)
Decision = list[Any]


def literal_values(annotation: Any) -> list[str] | None:
    """The values of a ``Literal[...]`` (optionally ``| None``) annotation of strings, else None."""
    args = typing.get_args(annotation)
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        inner = [a for a in args if a is not type(None)]
        if len(inner) != 1:
            return None
        annotation, args = inner[0], typing.get_args(inner[0])
    if typing.get_origin(annotation) is Literal and args and all(isinstance(a, str) for a in args):
        return [str(a) for a in args]
    return None


def clip(text: str, around: str | None, width: int) -> str:
    """``text`` on one line, cut to about ``width`` characters around the first mention of ``around``."""
    text = " ".join(text.split())
    if len(text) <= width:
        return text
    at = text.casefold().find(around.casefold()) if around else -1
    start = max(0, at - width // 3) if at > 0 else 0
    if start:
        start = text.rfind(" ", 0, start) + 1
    out = text[start : start + width].rsplit(" ", 1)[0]
    return ("... " if start else "") + out + " ..."


def margin(scores: list[float]) -> float:
    """Best minus second-best score (inf for a single option)."""
    if len(scores) < 2:
        return math.inf
    a, b = sorted(scores, reverse=True)[:2]
    return a - b


def _block(judge: Judge, text: str, subject: str, options: list[str] | tuple[str, ...]) -> str:
    lines = [f"Text: {text}"]
    if judge.listing and options:
        lines.append("Options: " + " | ".join(options))
    lines.append(judge.ask.replace("{subject}", subject))
    return "\n".join(lines)


def examples_prefix(judge: Judge) -> str:
    """The header and the few-shot examples: identical in every call for this field (cached)."""
    shots = "".join(f"{_block(judge, s.text, s.subject, s.options)} {s.answer}{SEP}" for s in judge.examples)
    return judge.header + shots


class Filler:
    """Applies a ``Fill`` declaration to a chunk's records (``apply``), or its stored decisions
    to rebuilt records (``replay``)."""

    def __init__(
        self, fill: Fill, schema: Schema, provider: Provider, methods: Mapping[str, str] | None = None
    ) -> None:
        self.schema = schema
        self.provider = provider
        chosen = {**fill.methods, **(methods or {})}
        for name, method in chosen.items():
            if method not in METHODS:
                raise SchemaError(f"fill method {method!r} for {name}", f"use one of: {', '.join(METHODS)}")
        self.methods = chosen
        self.rules: list[Rule] = [r for r in fill.rules if chosen.get(f"{r.record_type}.{r.field}", "rule") == "rule"]
        judges = [j for j in fill.judges if j.record_type in {rt.name for rt in schema.record_types}]
        self.majority = [j for j in judges if chosen.get(j.name) == "majority" and j.majority is not None]
        ranked = [j for j in judges if chosen.get(j.name, "rank") == "rank"]
        ruled = {f"{r.record_type}.{r.field}" for r in self.rules}
        self.judges = [j for j in ranked if j.name not in ruled] if provider.can_rank else []
        for j in self.judges:
            self._options_of(j)  # unknown record types, fields or kinds fail before the run starts
        self._calibration: dict[tuple[str, tuple[str, ...]], list[float]] = {}
        #: (document, type, field, record key) -> (value, margin): a thing judged once per document
        self._memo: dict[tuple[str, str, str, tuple[str, ...]], tuple[Any, float | None]] = {}

    @property
    def active(self) -> bool:
        return bool(self.rules or self.judges or self.majority)

    @property
    def hash(self) -> str:
        """What the fill's output depends on: part of the run's configuration hash."""

        def judge(j: Judge) -> dict[str, Any]:
            return {
                "f": j.name,
                "ask": j.ask,
                "subject": j.subject,
                "options": getattr(j.options, "__qualname__", None),
                "candidates": j.candidates,
                "context": [j.context, j.width],
                "examples": [[s.text, s.subject, s.answer, list(s.options)] for s in j.examples],
                "calibrate": j.calibrate,
                "none": j.none,
                "listing": j.listing,
                "header": j.header,
                "applies": getattr(j.applies, "__qualname__", None),
            }

        blob = {
            "rules": [[r.record_type, r.field, r.fn.__qualname__, r.version] for r in self.rules],
            "judges": [judge(j) for j in self.judges],
            "majority": [[j.name, j.majority] for j in self.majority],
        }
        return hashlib.sha256(json.dumps(blob, sort_keys=True).encode()).hexdigest()[:12]

    # -- options and prompts ---------------------------------------------------------------

    def _options_of(self, judge: Judge) -> list[str] | None:
        """The closed set of a ``Literal`` field; None for a span field."""
        rt = self.schema.record_type(judge.record_type)
        info = rt.model.model_fields.get(judge.field)
        if info is None:
            raise SchemaError(f"fill: {judge.record_type} has no field {judge.field!r}", "fix the Judge declaration")
        if judge.options is not None:
            return None
        if judge.candidates is not None:
            kind_of(self.schema, judge.candidates)
            return None
        values = literal_values(info.annotation)
        if values is None:
            raise SchemaError(
                f"fill: {judge.name} is neither a Literal field nor given options or candidates",
                "declare options= or candidates= on the Judge",
            )
        return values

    def _context(self, judge: Judge, record: dict[str, Any], subject: str | None, chunk: Chunk, doc: Document) -> str:
        if judge.context == "head":
            return clip(doc.cleaned_text[: judge.width * 2], None, judge.width)
        if judge.context == "chunk":
            return clip(chunk.text, subject, judge.width)
        if judge.context == "mentions" and subject:  # every sentence of the chunk that names the subject
            said = [
                doc.text[s.start : s.end]
                for s in sentences(doc.text, Span(chunk.start, chunk.end))
                if subject.casefold() in doc.text[s.start : s.end].casefold()
            ]
            return clip(" ".join(said) or chunk.text, subject, judge.width)
        return clip(str(record.get("evidence") or ""), subject, judge.width)

    def _span_options(self, judge: Judge, record: dict[str, Any], subject: str | None, text: str) -> list[str]:
        if judge.options is not None:
            found = judge.options(record, text)
        else:
            assert judge.candidates is not None
            found = find(kind_of(self.schema, judge.candidates), text)
        skip = (subject or "").casefold()
        return list(dict.fromkeys(o for o in found if o.casefold() != skip))

    # -- applying --------------------------------------------------------------------------

    def apply(self, records: Records, chunk: Chunk, doc: Document, calls: Calls) -> list[Decision]:
        """Fill ``records`` in place; return the decisions (stored with the chunk's response)."""
        decisions: list[Decision] = []
        failed = False
        for rt in self.schema.record_types:
            for i, record in enumerate(records.get(rt.name, [])):
                key = [str(record.get(k)) for k in rt.key_fields]
                chosen: list[tuple[str, Any, float | None]] = []
                for r in self.rules:
                    if r.record_type == rt.name:
                        chosen.append((r.field, r.fn(record, chunk, doc), None))
                for j in self.majority:
                    if j.record_type == rt.name:
                        chosen.append((j.field, j.majority, None))
                for name, value, m in chosen:
                    _set(record, name, value, m)
                for j in self.judges:
                    if j.record_type != rt.name or failed:
                        continue
                    try:
                        got = self._judge(j, rt, record, chunk, doc, calls)
                    except CallFailed:  # budget spent, Ctrl-C or a model error: the rest keep their values
                        failed = True
                        continue
                    if got is not None:
                        _set(record, j.field, *got)
                        chosen.append((j.field, *got))
                decisions.extend([rt.name, i, key, name, value, m] for name, value, m in chosen)
        return decisions

    def _judge(
        self, judge: Judge, rt: RecordType, record: dict[str, Any], chunk: Chunk, doc: Document, calls: Calls
    ) -> tuple[Any, float | None] | None:
        """(value, margin) for one record's field; (None, None) when a field that may be empty
        has no candidate near the subject; None when the judge does not apply."""
        if judge.applies is not None and not judge.applies(record):
            return None
        subject = str(record.get(judge.subject) or "") if judge.subject else ""
        if judge.subject and not subject:
            return None
        memo = (doc.sha256, rt.name, judge.field, tuple(rt.normalize(record.get(k)) for k in rt.key_fields))
        if memo in self._memo:
            return self._memo[memo]
        text = self._context(judge, record, subject or None, chunk, doc)
        closed = self._options_of(judge)
        if closed is not None:
            values, continuations = closed, [f" {v}" for v in closed]
        else:
            spans = self._span_options(judge, record, subject or None, text)
            if not spans and judge.none:
                return None, None  # nothing near the subject to choose: the field is empty
            values = spans + ([NONE] if judge.none else [])
            if len(values) < 2:
                return None  # nothing to choose among: the strategy's value stays
            continuations = [f" {v}{SEP}" for v in values]
        keep = examples_prefix(judge)
        prefix = keep + _block(judge, text, subject, values)
        scores = calls.rank(prefix, continuations, keep=keep, note={"field": judge.name, "subject": subject}).scores
        if judge.calibrate:
            base = self._calibration.get((judge.name, tuple(values)))
            if base is None:
                empty = keep + _block(judge, CONTENT_FREE, CONTENT_FREE if judge.subject else "", values)
                note = {"field": judge.name, "subject": CONTENT_FREE, "calibration": True}
                base = calls.rank(empty, continuations, keep=keep, note=note).scores
                self._calibration[(judge.name, tuple(values))] = base
            scores = [a - b for a, b in zip(scores, base, strict=True)]
        best = max(range(len(values)), key=lambda k: scores[k])
        value = None if values[best] == NONE and closed is None else values[best]
        m = round(margin(scores), 3)
        if value is not None:
            self._memo[memo] = (value, m)
        return value, m

    def replay(self, records: Records, decisions: list[Decision]) -> None:
        """Apply stored decisions to records rebuilt from the same response."""
        for rt_name, i, key, name, value, m in decisions:
            rt = self.schema.record_type(rt_name)
            record = records[rt_name][i]
            if [str(record.get(k)) for k in rt.key_fields] != key:
                raise KeyError(f"{rt_name}[{i}] is not the record the fill decided on")
            _set(record, name, value, m)


def _set(record: dict[str, Any], name: str, value: Any, m: float | None) -> None:
    record[name] = value
    confidence = record.setdefault("confidence", {})
    if m is None or value is None:
        confidence.pop(name, None)
    else:
        confidence[name] = m if math.isfinite(m) else None
    if not confidence:
        del record["confidence"]


def generic_fill(schema: Schema) -> Fill:
    """For a schema without a fill declaration: each non-key ``Literal`` field ranked 0-shot,
    calibrated, in the record's sentence."""
    judges = []
    for rt in schema.record_types:
        subject = rt.key_fields[0] if rt.key_fields else None
        for f in rt.fields:
            info = rt.model.model_fields[f.name]
            values = literal_values(info.annotation)
            if f.is_key or values is None:
                continue
            about = " of {subject}" if subject else ""
            ask = f"Question: What is the {f.name.replace('_', ' ')}{about}? ({', '.join(values)})\nAnswer:"
            judges.append(Judge(rt.name, f.name, ask, subject=subject, calibrate=True))
    return Fill(judges=tuple(judges))


class Filled(Strategy):
    """A strategy followed by the fill step (see the module docstring)."""

    name: ClassVar[str] = "filled"

    def __init__(self, inner: Strategy, filler: Filler) -> None:
        self.inner = inner
        self.filler = filler

    def prepare(self, ctx: Context, prompt: str | None) -> str:
        return f"{self.inner.prepare(ctx, prompt)}+fill:{self.filler.hash}"

    def extract(self, chunk: Chunk, doc: Document, ctx: Context) -> ChunkOutcome:
        calls = Calls(ctx)  # its budget starts now: the strategy's calls and the fill's share it
        outcome = self.inner.extract(chunk, doc, ctx)
        if outcome.status != "ok":
            return outcome
        decisions = self.filler.apply(outcome.records, chunk, doc, calls)
        outcome.calls = [*outcome.calls, *calls.calls]
        for n, call in enumerate(outcome.calls, start=1):
            call["attempt"] = n
        outcome.response = {"strategy": outcome.response, "fill": decisions}
        return outcome

    def rebuild(self, response: Any, chunk: Chunk, doc: Document, ctx: Context) -> Records:
        records = self.inner.rebuild(response["strategy"], chunk, doc, ctx)
        self.filler.replay(records, response["fill"])
        return records


def with_fill(
    strategy: Strategy,
    schema: Schema,
    provider: Provider,
    *,
    enabled: bool = True,
    methods: Mapping[str, str] | None = None,
) -> Strategy:
    """``strategy`` followed by the schema's fill step, when it builds records from candidate
    spans (``Strategy.completed_by_fill``) and there is anything to fill."""
    if not enabled or not strategy.completed_by_fill:
        return strategy
    fill = schema.domain.fill if schema.domain.fill is not None else generic_fill(schema)
    filler = Filler(fill, schema, provider, methods)
    if not filler.active:
        return strategy
    cls = type(
        f"Filled{type(strategy).__name__}", (Filled,), {"name": strategy.name, "uses_model": strategy.uses_model}
    )
    wrapped: Strategy = cls(strategy, filler)
    return wrapped
