"""Schema-constrained extraction of one chunk, with every LLM attempt logged.

A ``Strategy`` turns one chunk into records. ``direct`` -- one instructor call per chunk
with the whole schema as the response model, re-asked with the validation error when the
output does not validate -- is the path for capable models. Small-model strategies live in
``pipeline/strategies/`` and are chosen by name (``--strategy``).
"""

from __future__ import annotations

import contextlib
import json
import time
import uuid
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, ClassVar

from instructor.core.exceptions import InstructorRetryException
from openai.types.chat import ChatCompletion
from pydantic import BaseModel

from pipeline.core.errors import PipelineError
from pipeline.core.schema import Schema
from pipeline.core.types import Chunk, Document
from pipeline.ground import align, unsupported
from pipeline.prompting import Message, PromptTemplate, load_prompt, messages_hash
from pipeline.providers.base import Provider
from pipeline.retry import RetryPolicy


@dataclass
class ChunkOutcome:
    """What one chunk produced: records per type (plain dicts), the attempts, the status."""

    records: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    calls: list[dict[str, Any]] = field(default_factory=list)
    status: str = "ok"
    error: str | None = None
    response: Any = None


class AttemptLog:
    """Collects one row per LLM attempt through instructor's hooks (retries included)."""

    def __init__(self, provider: Provider, schema_hash: str) -> None:
        self.provider = provider
        self.schema_hash = schema_hash
        self.calls: list[dict[str, Any]] = []
        self._t0 = 0.0
        self._prompt_hash = ""

    def attach(self, client: Any) -> None:
        client.on("completion:kwargs", self.on_kwargs)
        client.on("completion:response", self.on_response)
        client.on("completion:error", self.on_error)
        client.on("parse:error", self.on_parse_error)

    def on_kwargs(self, *args: Any, **kwargs: Any) -> None:
        self._t0 = time.perf_counter()
        self._prompt_hash = messages_hash(kwargs.get("messages", []))

    def _row(self, status: str, **extra: Any) -> dict[str, Any]:
        return {
            "call_id": uuid.uuid4().hex,
            "attempt": len(self.calls) + 1,
            "started_at": datetime.now(UTC).replace(tzinfo=None),
            "latency_s": round(time.perf_counter() - self._t0, 4),
            "model": self.provider.model_id,
            "prompt_hash": self._prompt_hash,
            "schema_hash": self.schema_hash,
            "tokens_in": 0,
            "tokens_out": 0,
            "status": status,
            **extra,
        }

    def on_response(self, response: Any) -> None:
        usage = getattr(response, "usage", None)
        text = None
        with contextlib.suppress(AttributeError, IndexError):
            text = response.choices[0].message.content
        self.calls.append(
            self._row(
                "ok",
                tokens_in=getattr(usage, "prompt_tokens", 0) or 0,
                tokens_out=getattr(usage, "completion_tokens", 0) or 0,
                response_text=text,
            )
        )

    def on_error(self, error: Exception, **_: Any) -> None:
        self.calls.append(self._row("error", error_class=type(error).__name__, error=self._text(error)))

    def on_parse_error(self, error: Exception, **_: Any) -> None:
        if self.calls and self.calls[-1]["status"] == "ok":
            self.calls[-1].update(status="invalid", error_class=type(error).__name__, error=self._text(error))

    def on_unusable(self, error: BaseException) -> None:
        """The last response came back but the chunk still failed on it (e.g. cut off at max_tokens)."""
        if self.calls and self.calls[-1]["status"] == "ok":
            self.calls[-1].update(status="invalid", error_class=type(error).__name__, error=self._text(error))

    def _text(self, error: BaseException) -> str:
        return self.provider.redact(str(error))[:500]


def root_cause(exc: BaseException) -> BaseException:
    """The error under instructor's ``InstructorRetryException`` wrapper."""
    while isinstance(exc, InstructorRetryException) and exc.__cause__ is not None:
        exc = exc.__cause__
    return exc


def records_of(schema: Schema, result: BaseModel) -> dict[str, list[dict[str, Any]]]:
    """Flatten a schema instance into {record_type: [record dict, ...]}."""
    out: dict[str, list[dict[str, Any]]] = {}
    for rt in schema.record_types:
        value = getattr(result, rt.name)
        items = value if rt.many else ([value] if value is not None else [])
        out[rt.name] = [item.model_dump(mode="json") for item in items]
    return out


def ground_records(
    records: dict[str, list[dict[str, Any]]], chunk: Chunk, doc: Document, schema: Schema | None = None
) -> list[str]:
    """Add evidence offsets (document coordinates), alignment method and grounded flag.

    A record is grounded when its evidence is located in the document and quotes words, and
    (given the schema) every free-text key value is a phrase that occurs in its evidence or
    its chunk (``ground.unsupported``). Returns one line per ungrounded record saying why,
    for a re-ask.
    """
    types = {rt.name: rt for rt in schema.record_types} if schema is not None else {}
    problems: list[str] = []
    for name, rows in records.items():
        rt = types.get(name)
        for i, row in enumerate(rows):
            evidence = row.get("evidence") or ""
            a = align(evidence, chunk.text, chunk.start)
            if not a.grounded:  # evidence quoted from elsewhere in the document still counts
                a = align(evidence, doc.text)
            reason = None if a.grounded else f"its evidence {evidence[:120]!r} is not a verbatim quote of the text"
            if reason is None:
                reason = unsupported(rt, row, evidence, chunk.text)
            row.update(
                evidence_start=a.start, evidence_end=a.end, alignment=a.method, grounded=a.grounded and reason is None
            )
            if reason is not None:
                problems.append(f"{name}[{i}]: {reason}")
    return problems


GROUNDING_KEYS = ("evidence_start", "evidence_end", "alignment", "grounded")


def combine_reasked(
    schema: Schema, first: dict[str, list[dict[str, Any]]], second: dict[str, list[dict[str, Any]]]
) -> dict[str, list[dict[str, Any]]]:
    """After a grounding re-ask: the grounded records of both answers (the first answer's
    win on equal keys), then the records still ungrounded, kept flagged, once per key."""
    from pipeline.merge import record_key

    out: dict[str, list[dict[str, Any]]] = {}
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


def response_of(schema: Schema, records: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    """The schema instance (as JSON) that ``records_of`` turns back into ``records``."""
    out: dict[str, Any] = {}
    for rt in schema.record_types:
        rows = [{k: v for k, v in r.items() if k not in GROUNDING_KEYS} for r in records.get(rt.name, [])]
        out[rt.name] = rows if rt.many else (rows[0] if rows else None)
    return schema.model.model_validate(out).model_dump(mode="json")


REGROUND = (
    "Some records in your answer are not supported by the text:\n{problems}\n"
    "Answer again with the same JSON structure. Copy every evidence quote character for character from the "
    "text, use names exactly as the text writes them, and leave out any record the text does not support."
)


@dataclass
class Context:
    provider: Provider
    schema: Schema
    prompt: PromptTemplate | None = None
    #: hash of every prompt file the strategy uses (set by ``Strategy.prepare``' caller)
    prompt_hash: str = ""
    retry: RetryPolicy = field(default_factory=lambda: RetryPolicy())
    #: re-ask once for records whose evidence or key values are not in the text
    reground: bool = True
    #: ``schema.hash``, computed once (it renders the JSON schema: tens of ms)
    schema_hash: str = field(init=False)

    def __post_init__(self) -> None:
        self.schema_hash = self.schema.hash

    @property
    def max_retries(self) -> int:
        """Re-asks when the output does not validate."""
        return self.retry.max_retries


class Strategy(ABC):
    name: ClassVar[str]
    #: prompt used when the user names none: prompts/<schema>/<default_prompt>.j2
    default_prompt: ClassVar[str]

    @abstractmethod
    def extract(self, chunk: Chunk, doc: Document, ctx: Context) -> ChunkOutcome:
        """Records for one chunk. Raises nothing for model failures: they go in the outcome."""

    def prepare(self, ctx: Context, prompt: str | None) -> str:
        """Load the prompt(s) into ``ctx``; return the hash of every prompt file used."""
        ctx.prompt = load_prompt(prompt or f"{ctx.schema.name}/{self.default_prompt}")
        return ctx.prompt.template_hash


class DirectStrategy(Strategy):
    """One schema-constrained instructor call per chunk, for capable models."""

    name = "direct"
    default_prompt = "direct"

    def messages(self, chunk: Chunk, ctx: Context) -> list[Message]:
        assert ctx.prompt is not None, "prepare() loads the prompt"
        return ctx.prompt.render(text=chunk.text, schema=ctx.schema, record_types=ctx.schema.record_types)

    def extract(self, chunk: Chunk, doc: Document, ctx: Context) -> ChunkOutcome:
        log = AttemptLog(ctx.provider, ctx.schema_hash)
        client = ctx.provider.instructor_client(create=timed_create(ctx))
        log.attach(client)
        messages = self.messages(chunk, ctx)
        try:
            result = self._call(client, messages, ctx)
        except Exception as exc:  # retries exhausted or not retryable: recorded, batch goes on
            cause = root_cause(exc)
            if isinstance(cause, PipelineError):  # bad key, unknown model: no chunk can succeed
                raise cause from None
            log.on_unusable(cause)
            error = f"{type(cause).__name__}: {ctx.provider.redact(str(cause))[:300]} ({len(log.calls)} attempts)"
            return ChunkOutcome(calls=log.calls, status="failed", error=error)
        records = records_of(ctx.schema, result)
        problems = ground_records(records, chunk, doc, ctx.schema)
        if problems and ctx.reground:
            records = self._reground(client, log, messages, result, problems, records, chunk, doc, ctx)
        return ChunkOutcome(records=records, calls=log.calls, response=response_of(ctx.schema, records))

    def _call(self, client: Any, messages: list[Message], ctx: Context) -> BaseModel:
        result: BaseModel = client.create(
            response_model=ctx.schema.model,
            messages=messages,
            max_retries=ctx.retry.retrying(),
            **ctx.provider.decoding,
        )
        return result

    def _reground(
        self,
        client: Any,
        log: AttemptLog,
        messages: list[Message],
        result: BaseModel,
        problems: list[str],
        records: dict[str, list[dict[str, Any]]],
        chunk: Chunk,
        doc: Document,
        ctx: Context,
    ) -> dict[str, list[dict[str, Any]]]:
        """One re-ask that names the ungrounded records and why. Whatever it returns is
        grounded again; records still ungrounded are kept, flagged, out of views and scores."""
        follow_up = [
            *messages,
            {"role": "assistant", "content": json.dumps(result.model_dump(mode="json"), ensure_ascii=False)},
            {"role": "user", "content": REGROUND.format(problems="\n".join(f"- {p}" for p in problems[:20]))},
        ]
        try:
            second = self._call(client, follow_up, ctx)
        except Exception as exc:  # the first answer stands; its ungrounded records stay flagged
            cause = root_cause(exc)
            if isinstance(cause, PipelineError):
                raise cause from None
            log.on_unusable(cause)
            return records
        again = records_of(ctx.schema, second)
        ground_records(again, chunk, doc, ctx.schema)
        return combine_reasked(ctx.schema, records, again)


def timed_create(ctx: Context) -> Any:
    """``provider.create`` that gives each request of a remote provider a timeout, cut short
    so the chunk's ``max_seconds`` budget holds for a request that hangs."""
    deadline = time.monotonic() + ctx.retry.max_seconds

    def create(**kwargs: Any) -> ChatCompletion:
        if ctx.provider.remote:
            kwargs["timeout"] = max(0.5, min(ctx.retry.timeout, deadline - time.monotonic()))
        return ctx.provider.create(**kwargs)

    return create


def get_strategy(name: str) -> Strategy:
    from pipeline.strategies import CandidateStrategy, FewShotStrategy, RulesStrategy

    strategies: dict[str, type[Strategy]] = {
        "direct": DirectStrategy,
        "fewshot": FewShotStrategy,
        "select": CandidateStrategy,
        "rules": RulesStrategy,
    }
    if name not in strategies:
        raise PipelineError(f"unknown strategy {name!r}", f"use one of: {', '.join(sorted(strategies))}")
    return strategies[name]()
