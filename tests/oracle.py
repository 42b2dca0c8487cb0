"""A test-only provider that knows the answers: the pipeline's own ceiling.

``OracleProvider`` answers each chunk (the ``direct`` strategy sends one per request) with the
gold records whose key values all occur in that chunk, each with the chunk's sentence that
holds its first key value as evidence. Whatever the scores lose after that is lost by the
pipeline itself: chunking, grounding, merging and scoring.

Gold values may list several wordings of one thing ("Descartes-08" / "mRNA CAR T cell
therapy"). ``consistent=True`` names each thing with one wording throughout the document (the
first of its wordings the document holds; a record is given in the chunks that hold it): what
the pipeline loses. ``consistent=False`` takes, in each chunk, the first wording that chunk
holds, as a model reading one chunk at a time would: a thing named two ways in two chunks then
becomes two records that merging cannot join (unless one is an abbreviation the document
defines for the other), and the second counts as spurious.
"""

from __future__ import annotations

import json
from typing import Any

from openai.types.chat import ChatCompletion

from pipeline.chunk import sentences
from pipeline.core.schema import Schema
from pipeline.core.types import Span
from pipeline.evaluate import GoldSet
from pipeline.ground import contains_value
from pipeline.providers.base import Provider
from tests.conftest import completion

TEXT_START = 'Text:\n"""\n'
TEXT_END = '\n"""'


def first(value: Any) -> Any:
    """A gold value's first alternative (lists of alternatives nest)."""
    return first(value[0]) if isinstance(value, list) and value else value


class OracleProvider(Provider):
    model_id = "oracle:gold"

    def __init__(self, schema: Schema, texts: dict[str, str], gold: GoldSet, *, consistent: bool = True) -> None:
        super().__init__()
        self.schema = schema
        self.texts = texts
        self.gold = gold
        self.consistent = consistent

    def create(self, **kwargs: Any) -> ChatCompletion:
        content = kwargs["messages"][-1]["content"]
        chunk = content[content.index(TEXT_START) + len(TEXT_START) : content.rindex(TEXT_END)]
        doc_id = next(d for d, text in self.texts.items() if chunk in text)
        answer: dict[str, Any] = {}
        for rt in self.schema.record_types:
            rows = []
            for g in self.gold.docs.get(doc_id, {}).get(rt.name, []):
                if g.optional:
                    continue
                row = self.record(rt, g.values, chunk, self.texts[doc_id])
                if row is not None:
                    rows.append(row)
            answer[rt.name] = rows if rt.many else (rows[0] if rows else None)
        return completion(json.dumps(answer))

    def record(self, rt: Any, values: dict[str, Any], chunk: str, document: str) -> dict[str, Any] | None:
        row: dict[str, Any] = {}
        for k in rt.key_fields:
            options = values.get(k) if isinstance(values.get(k), list) else [values.get(k)]
            if options == [None]:
                row[k] = None
                continue
            if self.consistent:  # the document's first wording, or none
                options = [next((o for o in options if isinstance(o, str) and contains_value(o, document)), None)]
            found = next((o for o in options if isinstance(o, str) and contains_value(o, chunk)), None)
            if found is None:
                return None  # a key value this chunk does not hold: the oracle cannot quote it
            row[k] = found
        for f in rt.value_fields:
            if f not in row:
                value = values.get(f)
                row[f] = [first(v) for v in value] if rt.field(f).is_list and value else first(value)
        anchor = next((row[k] for k in rt.key_fields if isinstance(row[k], str)), None)
        row["evidence"] = self.sentence(anchor, chunk) if anchor else chunk.split("\n")[0]
        return row

    @staticmethod
    def sentence(value: str, chunk: str, limit: int = 400) -> str:
        """The sentence holding ``value``; a longer one is cut to ``limit`` characters around
        the value at word boundaries (evidence is "one sentence or less")."""
        for span in sentences(chunk, Span(0, len(chunk))):
            sent = chunk[span.start : span.end]
            if contains_value(value, sent):
                if len(sent) <= limit:
                    return sent
                at = max(0, sent.casefold().find(value.casefold()))
                start = max(0, min(at - limit // 4, len(sent) - limit))
                window = sent[start : start + limit]
                return window[
                    window.find(" ") + 1 if start else 0 : window.rfind(" ") if start + limit < len(sent) else None
                ]
        return value
