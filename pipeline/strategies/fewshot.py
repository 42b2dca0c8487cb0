"""``fewshot``: one constrained call per record type and unit, values tied to the text.

The examples are the schema package's ``<prompts>/fewshot/<type>.j2`` (built from development
documents, never from eval documents); a schema without them gets a generic prompt per
record type built from its fields. The response model is the record *without* evidence and
each item is grounded by construction (``items.ground_item``).
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any, ClassVar

from pydantic import BaseModel

from pipeline.core.errors import PipelineError
from pipeline.core.schema import RecordType
from pipeline.core.types import Chunk, Document, Span
from pipeline.ground import ground_records
from pipeline.prompting import PromptTemplate, generic_prompt, load_prompt
from pipeline.strategies.base import CallFailed, Calls, ChunkOutcome, Context, Records, Strategy
from pipeline.strategies.items import ground_item, item_model, load_gates, salvage_items, units

#: one unit's answer as stored: the unit's span (document offsets) and the items the model gave
Raw = dict[str, list[dict[str, Any]]]


def folder_hash(folder: Path) -> str:
    digest = hashlib.sha256()
    for path in sorted(folder.iterdir()):
        if path.is_file():
            digest.update(path.name.encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:16]


def add_items(
    records: Records,
    rt: RecordType,
    items: list[dict[str, Any]],
    unit: Span,
    chunk: Chunk,
    doc: Document,
    *,
    evidence_is_unit: bool,
) -> None:
    """Ground each item of one unit's answer and add the new ones to ``records``."""
    text = doc.text[unit.start : unit.end]
    for item in items:
        rec = (
            ground_item(rt, item, chunk.text, chunk, doc, evidence=text)
            if evidence_is_unit
            else ground_item(rt, item, text, chunk, doc)
        )
        if rec is not None and rec not in records[rt.name]:
            records[rt.name].append(rec)


def one_per_document(records: Records, ctx: Context) -> None:
    """A one-per-document type keeps the chunk's first record (merging keeps the document's first)."""
    for rt in ctx.schema.record_types:
        if not rt.many:
            records[rt.name] = records[rt.name][:1]


def finish(
    records: Records, raw: Raw, errors: list[str], calls: Calls, chunk: Chunk, doc: Document, ctx: Context
) -> ChunkOutcome:
    """Ground the records; the chunk failed only if every call of it failed."""
    one_per_document(records, ctx)
    ground_records(records, chunk, doc, ctx.schema)
    if errors and not any(raw.values()):
        return ChunkOutcome(calls=calls.calls, status="failed", error="; ".join(errors))
    return ChunkOutcome(records=records, calls=calls.calls, response={"units": raw, "errors": errors})


class FewShotStrategy(Strategy):
    """One constrained call per record type and unit, with few-shot examples where the schema has them."""

    name = "fewshot"
    max_tokens: ClassVar[int] = 256
    #: ground items against the unit (fewshot) or against the chunk with the unit as evidence (select)
    evidence_is_unit: ClassVar[bool] = False

    def __init__(self) -> None:
        self.folder: Path | None = None
        self.prompts: dict[str, PromptTemplate] = {}

    def prepare(self, ctx: Context, prompt: str | None) -> str:
        """Per record type: ``<folder>/<type>.j2`` where the folder has one, else (no folder
        at all) the generic prompt of the type. A folder without a type's file skips that type."""
        folder = (
            Path(prompt) if prompt else (ctx.schema.domain.prompts / "fewshot" if ctx.schema.domain.prompts else None)
        )
        if prompt and not (folder and folder.is_dir()):
            raise PipelineError(f"few-shot prompt folder {prompt} not found", "pass --prompt DIR with <type>.j2 files")
        self.folder = folder if folder is not None and folder.is_dir() else None
        if self.folder is not None:
            self.prompts = {
                rt.name: load_prompt(self.folder / f"{rt.name}.j2")
                for rt in ctx.schema.record_types
                if (self.folder / f"{rt.name}.j2").is_file()
            }
            return folder_hash(self.folder)
        template = generic_prompt(self.name)
        self.prompts = {rt.name: template for rt in ctx.schema.record_types}
        return template.template_hash

    def render(
        self,
        rt: RecordType,
        text: str,
        ctx: Context,
        options: dict[str, list[str]] | None = None,
        asked: list[str] | None = None,
    ) -> list[Any]:
        """The messages for one unit; ``asked`` names the fields the answer has (default: all)."""
        return self.prompts[rt.name].render(
            text=text, record_type=rt, schema=ctx.schema, options=options or {}, asked=asked or []
        )

    def extract(self, chunk: Chunk, doc: Document, ctx: Context) -> ChunkOutcome:
        calls = Calls(ctx)
        gates = load_gates(self.folder)
        records: Records = {rt.name: [] for rt in ctx.schema.record_types}
        raw: Raw = {}
        errors: list[str] = []
        for rt in ctx.schema.record_types:
            if rt.name not in self.prompts:
                continue  # no examples written for this type: it is not asked
            for span in units(rt, chunk, doc, gates):
                text = doc.text[span.start : span.end]
                try:
                    items = self.ask(calls, item_model(rt), self.render(rt, text, ctx))
                except CallFailed as failure:  # this piece failed after its retries; the others go on
                    errors.append(f"{rt.name}@{span.start}: {calls.describe(failure)}")
                    continue
                raw.setdefault(rt.name, []).append({"unit": [span.start, span.end], "items": items})
                add_items(records, rt, items, span, chunk, doc, evidence_is_unit=self.evidence_is_unit)
        return finish(records, raw, errors, calls, chunk, doc, ctx)

    def ask(self, calls: Calls, model: type[BaseModel], messages: list[Any]) -> list[dict[str, Any]]:
        """The items of one constrained answer; an answer cut off at ``max_tokens`` keeps its
        complete items (raises ``CallFailed`` when nothing usable came back)."""
        try:
            result = calls.structured(model, messages, max_tokens=self.max_tokens)
        except CallFailed as failure:
            kept = salvage_items(model, failure.text) if failure.truncated else None
            if kept is None:
                raise
            return kept
        return [i.model_dump(mode="json") for i in result.items]  # type: ignore[attr-defined]

    def rebuild(self, response: Any, chunk: Chunk, doc: Document, ctx: Context) -> Records:
        records: Records = {rt.name: [] for rt in ctx.schema.record_types}
        for rt in ctx.schema.record_types:
            for answer in response.get("units", {}).get(rt.name, []):
                span = Span(*answer["unit"])
                add_items(records, rt, answer["items"], span, chunk, doc, evidence_is_unit=self.evidence_is_unit)
        one_per_document(records, ctx)
        ground_records(records, chunk, doc, ctx.schema)
        return records
