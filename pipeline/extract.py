"""Schema-constrained extraction of one chunk, with every LLM attempt logged.

A ``Strategy`` turns one chunk into records. ``direct`` -- one instructor call per chunk
with the whole schema as the response model, re-asked with the validation error when the
output does not validate -- is the path for capable models. Small-model strategies live in
``pipeline/strategies/`` and are chosen by name (``--strategy``).
"""

from __future__ import annotations

import contextlib
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
from pipeline.ground import align
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


def ground_records(records: dict[str, list[dict[str, Any]]], chunk: Chunk, doc: Document) -> None:
    """Add evidence offsets (document coordinates), alignment method and grounded flag."""
    for rows in records.values():
        for row in rows:
            a = align(row.get("evidence") or "", chunk.text, chunk.start)
            if not a.grounded:  # evidence quoted from elsewhere in the document still counts
                a = align(row.get("evidence") or "", doc.text)
            row.update(evidence_start=a.start, evidence_end=a.end, alignment=a.method, grounded=a.grounded)


@dataclass
class Context:
    provider: Provider
    schema: Schema
    prompt: PromptTemplate | None = None
    #: hash of every prompt file the strategy uses (set by ``Strategy.prepare``' caller)
    prompt_hash: str = ""
    retry: RetryPolicy = field(default_factory=lambda: RetryPolicy())
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
        try:
            result = client.create(
                response_model=ctx.schema.model,
                messages=self.messages(chunk, ctx),  # type: ignore[arg-type]
                max_retries=ctx.retry.retrying(),
                **ctx.provider.decoding,
            )
        except Exception as exc:  # retries exhausted or not retryable: recorded, batch goes on
            cause = root_cause(exc)
            if isinstance(cause, PipelineError):  # bad key, unknown model: no chunk can succeed
                raise cause from None
            log.on_unusable(cause)
            error = f"{type(cause).__name__}: {ctx.provider.redact(str(cause))[:300]} ({len(log.calls)} attempts)"
            return ChunkOutcome(calls=log.calls, status="failed", error=error)
        records = records_of(ctx.schema, result)
        ground_records(records, chunk, doc)
        return ChunkOutcome(records=records, calls=log.calls, response=result.model_dump(mode="json"))


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
