"""``direct``: one schema-constrained call per chunk, the path for capable models.

The response model is the whole schema; output that does not validate is re-asked with the
validation error. Records whose evidence or key values are not in the text are re-asked once
with the reasons (``reground``); what is still ungrounded is kept, flagged. An answer cut off
at ``max_tokens`` keeps its complete records (``salvage``) instead of losing the chunk.
"""

from __future__ import annotations

import json
from typing import Any

from pydantic import BaseModel, ValidationError

from pipeline.core.schema import Schema
from pipeline.core.types import Chunk, Document
from pipeline.ground import GROUNDING_KEYS, ground_records
from pipeline.merge import record_key
from pipeline.prompting import Message, PromptTemplate, schema_prompt
from pipeline.salvage import complete_prefix
from pipeline.strategies.base import CallFailed, Calls, ChunkOutcome, Context, Records, Strategy

REGROUND = "reground.j2"


def records_of(schema: Schema, result: BaseModel) -> Records:
    """Flatten a schema instance into {record_type: [record dict, ...]}."""
    out: Records = {}
    for rt in schema.record_types:
        value = getattr(result, rt.name)
        items = value if rt.many else ([value] if value is not None else [])
        out[rt.name] = [item.model_dump(mode="json") for item in items]
    return out


def response_of(schema: Schema, records: Records) -> dict[str, Any]:
    """The schema instance (as JSON) that ``records_of`` turns back into ``records``."""
    out: dict[str, Any] = {}
    for rt in schema.record_types:
        rows = [{k: v for k, v in r.items() if k not in GROUNDING_KEYS} for r in records.get(rt.name, [])]
        out[rt.name] = rows if rt.many else (rows[0] if rows else None)
    return schema.model.model_validate(out).model_dump(mode="json")


def salvage(schema: Schema, text: str | None) -> Records | None:
    """The complete, valid records of an answer cut off mid-way, or None if it holds none.

    The answer is cut after its last complete JSON object (``complete_prefix``), so a record
    being written when the output stopped is dropped whole, never kept with a field missing."""
    data = complete_prefix(text or "")
    if not isinstance(data, dict):
        return None
    out: Records = {}
    for rt in schema.record_types:
        value = data.get(rt.name)
        items = value if isinstance(value, list) else ([value] if isinstance(value, dict) else [])
        kept = []
        for item in items if rt.many else items[:1]:
            try:
                kept.append(rt.model.model_validate(item).model_dump(mode="json"))
            except ValidationError:
                continue
        out[rt.name] = kept
    return out if any(out.values()) else None


def combine_reasked(schema: Schema, first: Records, second: Records) -> Records:
    """After a grounding re-ask: the grounded records of both answers (the first answer's
    win on equal keys), then the records still ungrounded, kept flagged, once per key."""
    out: Records = {}
    for rt in schema.record_types:
        rows: list[dict[str, Any]] = []
        seen: set[tuple[str, ...]] = set()
        candidates = [r for r in first.get(rt.name, []) if r.get("grounded")]
        candidates += [r for r in second.get(rt.name, []) if r.get("grounded")]
        candidates += [r for r in second.get(rt.name, []) if not r.get("grounded")]
        candidates += [r for r in first.get(rt.name, []) if not r.get("grounded")]
        for row in candidates:
            key = record_key(rt, row)
            if key not in seen:
                seen.add(key)
                rows.append(row)
        out[rt.name] = rows if rt.many else rows[:1]
    return out


class DirectStrategy(Strategy):
    """One schema-constrained instructor call per chunk, for capable models."""

    name = "direct"

    def __init__(self) -> None:
        self.prompt: PromptTemplate | None = None
        self.reask: PromptTemplate | None = None

    def prepare(self, ctx: Context, prompt: str | None) -> str:
        self.prompt = schema_prompt(ctx.schema, "direct", prompt)
        self.reask = schema_prompt(ctx.schema, "reground", None)
        return self.prompt.template_hash + self.reask.template_hash

    def messages(self, chunk: Chunk, ctx: Context) -> list[Message]:
        assert self.prompt is not None, "prepare() loads the prompt"
        return self.prompt.render(text=chunk.text, schema=ctx.schema, record_types=ctx.schema.record_types)

    def extract(self, chunk: Chunk, doc: Document, ctx: Context) -> ChunkOutcome:
        calls = Calls(ctx)
        messages = self.messages(chunk, ctx)
        try:
            result = calls.structured(ctx.schema.model, messages)
        except CallFailed as failure:
            records = salvage(ctx.schema, failure.text) if failure.truncated else None
            if records is None:
                return ChunkOutcome(calls=calls.calls, status="failed", error=calls.describe(failure))
        else:
            records = records_of(ctx.schema, result)
        problems = ground_records(records, chunk, doc, ctx.schema)
        if problems and ctx.reground:
            records = self._reground(calls, messages, records, problems, chunk, doc, ctx)
        return ChunkOutcome(records=records, calls=calls.calls, response=response_of(ctx.schema, records))

    def rebuild(self, response: Any, chunk: Chunk, doc: Document, ctx: Context) -> Records:
        records = records_of(ctx.schema, ctx.schema.model.model_validate(response))
        ground_records(records, chunk, doc, ctx.schema)
        return records

    def _reground(
        self,
        calls: Calls,
        messages: list[Message],
        records: Records,
        problems: list[str],
        chunk: Chunk,
        doc: Document,
        ctx: Context,
    ) -> Records:
        """One re-ask that names the ungrounded records and why. Whatever it returns is
        grounded again; records still ungrounded are kept, flagged, out of views and scores."""
        assert self.reask is not None, "prepare() loads the prompt"
        answer = json.dumps(response_of(ctx.schema, records), ensure_ascii=False)
        follow_up = [
            *messages,
            {"role": "assistant", "content": answer},
            *self.reask.render(problems=problems[:20]),
        ]
        try:
            second = calls.structured(ctx.schema.model, follow_up)
        except CallFailed:  # the first answer stands; its ungrounded records stay flagged
            return records
        again = records_of(ctx.schema, second)
        ground_records(again, chunk, doc, ctx.schema)
        return combine_reasked(ctx.schema, records, again)
