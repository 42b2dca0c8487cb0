"""The strategy contract: one chunk in, records and the attempts that made them out.

A ``Strategy`` turns one chunk into records (``extract``) and can rebuild the same records
from the response it returned before (``rebuild``), so the batch job serves any strategy's
cached responses without a call. Every request a strategy makes goes through ``Calls``:
instructor with the run's tenacity retry policy, the chunk's time budget, and one logged row
per attempt (``AttemptLog``).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import time
import uuid
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

from pydantic import BaseModel

if TYPE_CHECKING:  # openai and instructor load only when a chunk is sent to a model
    from openai.types.chat import ChatCompletion

from pipeline.core.errors import PipelineError
from pipeline.core.schema import Schema
from pipeline.core.types import Chunk, Document
from pipeline.interrupt import abortable
from pipeline.prompting import Message, messages_hash
from pipeline.providers.base import Provider, Ranked
from pipeline.retry import RetryPolicy

Records = dict[str, list[dict[str, Any]]]
M = TypeVar("M", bound=BaseModel)


@dataclass
class ChunkOutcome:
    """What one chunk produced: records per type (plain dicts), the attempts, the status, and
    the response the strategy can rebuild the records from (cached when the chunk is ok)."""

    records: Records = field(default_factory=dict)
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

    def record(self, status: str, *, started: float, tokens_in: int, tokens_out: int, **extra: Any) -> None:
        """A row for a call made outside instructor (e.g. ranking options by likelihood)."""
        self._t0 = started
        self.calls.append(self._row(status, tokens_in=tokens_in, tokens_out=tokens_out, **extra))

    def _text(self, error: BaseException) -> str:
        return self.provider.redact(str(error))[:500]


def root_cause(exc: BaseException) -> BaseException:
    """The error under instructor's ``InstructorRetryException`` wrapper."""
    from instructor.core.exceptions import InstructorRetryException

    while isinstance(exc, InstructorRetryException) and exc.__cause__ is not None:
        exc = exc.__cause__
    return exc


class CallFailed(Exception):
    """A request failed after its retries (or could not be retried). ``text`` is the last
    response when one came back (an answer cut off at ``max_tokens``), for salvaging."""

    def __init__(self, cause: BaseException, text: str | None, attempts: int) -> None:
        self.cause = cause
        self.text = text
        self.attempts = attempts
        super().__init__(f"{type(cause).__name__}: {cause}")

    @property
    def truncated(self) -> bool:
        from instructor.core.exceptions import IncompleteOutputException

        return isinstance(self.cause, IncompleteOutputException)


@dataclass
class Context:
    provider: Provider
    schema: Schema
    #: hash of every prompt file the strategy uses (set from ``Strategy.prepare``)
    prompt_hash: str = ""
    retry: RetryPolicy = field(default_factory=lambda: RetryPolicy())
    #: re-ask once for records whose evidence or key values are not in the text (``direct``)
    reground: bool = True
    #: set once the user pressed Ctrl-C: an in-process model stops generating, the job stops
    stop: Callable[[], bool] = field(default=lambda: False)
    #: ``schema.hash``, computed once (it renders the JSON schema: tens of ms)
    schema_hash: str = field(init=False)

    def __post_init__(self) -> None:
        self.schema_hash = self.schema.hash


class Calls:
    """The LLM requests of one chunk: one instructor client with the attempt log attached, the
    run's retry policy on every request, and one time budget (``max_seconds``) for them all."""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self.log = AttemptLog(ctx.provider, ctx.schema_hash)
        self.deadline = time.monotonic() + ctx.retry.max_seconds
        self._client: Any = None

    @property
    def client(self) -> Any:
        if self._client is None:
            # the first client imports openai and instructor (~1 s): Ctrl-C may abort that
            with abortable(self.ctx.stop):
                self._client = self.ctx.provider.instructor_client(create=self._create)
            self.log.attach(self._client)
        return self._client

    def _create(self, **kwargs: Any) -> ChatCompletion:
        """``provider.create`` bounded by the chunk's budget: a remote request's timeout, the
        local model's generation stop (also at Ctrl-C)."""
        left = self.deadline - time.monotonic()
        if self.ctx.provider.remote:
            kwargs["timeout"] = max(0.5, min(self.ctx.retry.timeout, left))
        else:
            kwargs["deadline"] = self.deadline
            kwargs["interrupt"] = self.ctx.stop
        return self.ctx.provider.create(**kwargs)

    def structured(self, response_model: type[M], messages: list[Message], *, max_tokens: int | None = None) -> M:
        """One validated answer, re-asked on invalid output and retried on transport errors
        under the retry policy. Raises ``CallFailed``; a key or model error (``PipelineError``),
        which no chunk can get past, propagates."""
        decoding = dict(self.ctx.provider.decoding)
        if max_tokens is not None:
            decoding["max_tokens"] = min(max_tokens, decoding["max_tokens"])
        try:
            result: M = self.client.create(
                response_model=response_model,
                messages=messages,
                max_retries=self.ctx.retry.retrying(),
                **decoding,
            )
        except Exception as exc:
            cause = root_cause(exc)
            if isinstance(cause, PipelineError):
                raise cause from None
            self.log.on_unusable(cause)
            last = self.log.calls[-1] if self.log.calls else {}
            raise CallFailed(cause, last.get("response_text"), len(self.log.calls)) from None
        return result

    def rank(self, prefix: str, options: list[str], *, keep: str = "", note: dict[str, Any] | None = None) -> Ranked:
        """One ranking request (options scored by the model's likelihood, ``Provider.rank``),
        logged as one ``llm_calls`` row like any other call, within the chunk's time budget.
        Raises ``CallFailed`` when the budget is spent, Ctrl-C was pressed or the model failed;
        a ranking error is not retried (the same request would fail the same way). ``note``
        is logged with the scores as the row's ``response_text``."""
        digest = hashlib.sha256(json.dumps([prefix, options]).encode()).hexdigest()[:16]
        started = time.perf_counter()
        if time.monotonic() >= self.deadline or self.ctx.stop():
            cause = TimeoutError("the chunk's time budget (--max-seconds) is spent") if not self.ctx.stop() else None
            raise CallFailed(cause or KeyboardInterrupt("interrupted"), None, len(self.log.calls))
        try:
            ranked = self.ctx.provider.rank(prefix, options, keep=keep)
        except PipelineError:
            raise
        except Exception as exc:  # a model error: this field keeps its value, the chunk goes on
            self.log.record(
                "error",
                started=started,
                tokens_in=0,
                tokens_out=0,
                prompt_hash=digest,
                error_class=type(exc).__name__,
                error=self.log._text(exc),
            )
            raise CallFailed(exc, None, len(self.log.calls)) from None
        shown = {**(note or {}), "options": options, "scores": [round(x, 4) for x in ranked.scores]}
        self.log.record(
            "ok",
            started=started,
            tokens_in=ranked.tokens_in,
            tokens_out=ranked.tokens_out,
            prompt_hash=digest,
            response_text=json.dumps(shown, ensure_ascii=False),
        )
        return ranked

    def describe(self, failure: CallFailed) -> str:
        error = self.ctx.provider.redact(str(failure.cause))[:300]
        return f"{type(failure.cause).__name__}: {error} ({failure.attempts} attempts)"

    @property
    def calls(self) -> list[dict[str, Any]]:
        return self.log.calls


class Strategy(ABC):
    """Turns a chunk into records; ``rebuild`` turns a stored response back into the same records."""

    name: ClassVar[str]
    #: whether ``extract`` calls the model (``rules`` does not)
    uses_model: ClassVar[bool] = True
    #: whether the fill step (``strategies/fill.py``) completes this strategy's records: those
    #: built from candidate spans, whose other fields stay empty or take the nearest span. Where
    #: the model writes whole records (``direct``, ``fewshot``) its values stand
    completed_by_fill: ClassVar[bool] = False

    def prepare(self, ctx: Context, prompt: str | None) -> str:
        """Load prompts; return the hash of every prompt file used ("" for none)."""
        return ""

    @abstractmethod
    def extract(self, chunk: Chunk, doc: Document, ctx: Context) -> ChunkOutcome:
        """Records for one chunk. Raises nothing for model failures: they go in the outcome."""

    @abstractmethod
    def rebuild(self, response: Any, chunk: Chunk, doc: Document, ctx: Context) -> Records:
        """The records ``extract`` made from ``response`` (its ``ChunkOutcome.response``), grounded."""
