"""How one chunk's LLM requests are retried: one tenacity policy handed to instructor.

Two kinds of failure are retried, each with its own bound, and both under one time budget
per chunk:

- transport failures that can succeed on a retry -- timeouts, connection errors, 429 and
  500/502/503/504 -- after an exponential backoff with jitter, or after the server's
  ``Retry-After`` when it sends one; at most ``max_attempts`` requests in a row;
- output that does not parse or validate -- instructor re-asks with the validation error,
  at once; at most ``max_retries`` re-asks.

Everything else (400, 401, 404, a local model error) fails the chunk on the first attempt.
A wait that would end past the chunk's ``max_seconds`` stops instead of sleeping.
"""

from __future__ import annotations

import contextlib
import json
import math
import random
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from tenacity import RetryCallState, Retrying

RETRY_STATUS = frozenset({429, 500, 502, 503, 504})


def is_transient(exc: BaseException | None) -> bool:
    """A transport failure that can succeed when the same request is sent again."""
    import openai

    if isinstance(exc, openai.APIStatusError):
        return exc.status_code in RETRY_STATUS
    return isinstance(exc, openai.APITimeoutError | openai.APIConnectionError)


def is_invalid_output(exc: BaseException | None) -> bool:
    """Output instructor re-asks for: not JSON, or JSON that fails the schema."""
    from instructor.core.exceptions import ResponseParsingError

    return isinstance(exc, ValidationError | json.JSONDecodeError | ResponseParsingError)


def retry_after(exc: BaseException | None) -> float | None:
    """Seconds the server asked us to wait (``Retry-After``/``retry-after-ms``), if any."""
    headers = getattr(getattr(exc, "response", None), "headers", None)
    if headers is None:
        return None
    if ms := headers.get("retry-after-ms"):
        with contextlib.suppress(ValueError):
            return _finite(float(ms) / 1000)
    value = headers.get("retry-after")
    if not value:
        return None
    with contextlib.suppress(ValueError):
        return _finite(float(value))
    try:  # an HTTP date
        return _finite((parsedate_to_datetime(value) - datetime.now(UTC)).total_seconds())
    except (TypeError, ValueError):
        return None


def _finite(seconds: float) -> float | None:
    return max(0.0, seconds) if math.isfinite(seconds) else None


class RetryPolicy(BaseModel):
    """Per-chunk bounds on LLM requests. Part of the run configuration, not of the cache key."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    max_retries: int = Field(default=2, ge=0, description="re-asks when the output does not validate")
    max_attempts: int = Field(default=5, ge=1, description="requests in a row on transport errors (timeouts, 429, 5xx)")
    max_seconds: float = Field(default=300.0, gt=0, description="time budget for one chunk, waits included")
    timeout: float = Field(default=60.0, gt=0, description="seconds one request may take")
    backoff_initial: float = Field(default=0.5, ge=0)
    backoff_max: float = Field(default=30.0, ge=0, description="longest backoff; a longer Retry-After is honoured")

    def retrying(self, *, sleep: Callable[[float], None] | None = None) -> Retrying:
        """A fresh tenacity ``Retrying`` for one chunk, passed to instructor as ``max_retries``."""
        budget = _Budget(self)
        kwargs: dict[str, Any] = {"sleep": sleep} if sleep is not None else {}
        return Retrying(retry=budget.should_retry, wait=budget.wait, stop=budget.stop, reraise=True, **kwargs)


@dataclass
class _Budget:
    """Counts each kind of failure of one chunk; tenacity asks it whether and how long to wait."""

    policy: RetryPolicy
    transport_failures: int = 0  # in a row, since the last response
    reasks: int = 0

    def should_retry(self, state: RetryCallState) -> bool:
        exc = state.outcome.exception() if state.outcome else None
        if is_transient(exc):
            self.transport_failures += 1
            return True
        if is_invalid_output(exc):
            self.transport_failures = 0
            self.reasks += 1
            return True
        return False

    def wait(self, state: RetryCallState) -> float:
        exc = state.outcome.exception() if state.outcome else None
        if not is_transient(exc):
            return 0.0  # a re-ask goes out at once
        asked = retry_after(exc)
        if asked is not None:
            return asked
        p = self.policy
        ceiling = min(p.backoff_max, p.backoff_initial * 2 ** (self.transport_failures - 1))
        return random.uniform(ceiling / 2, ceiling)  # "equal jitter": never zero, never in lockstep

    def stop(self, state: RetryCallState) -> bool:
        p = self.policy
        if self.transport_failures >= p.max_attempts or self.reasks > p.max_retries:
            return True
        elapsed = state.seconds_since_start or 0.0
        return elapsed + state.upcoming_sleep >= p.max_seconds
