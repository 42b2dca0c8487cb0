"""The provider interface: one abstract method, ``create``.

``create`` takes OpenAI chat-completion keyword arguments and returns an OpenAI
``ChatCompletion``. instructor wraps it for schema-constrained, validated extraction, so
the local model, an OpenAI-compatible server and the tests' fake provider all go through
the same code path.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # openai and instructor load (~1 s) only when a request is made
    import instructor
    from openai.types.chat import ChatCompletion


def as_json_object_format(kwargs: dict[str, Any]) -> dict[str, Any]:
    """OpenAI's ``{"type": "json_schema", "json_schema": {"schema": S}}`` -> llama.cpp's
    ``{"type": "json_object", "schema": S}``, the only form llama-cpp-python (and its
    server) turns into a grammar."""
    fmt = kwargs.get("response_format")
    if isinstance(fmt, dict) and fmt.get("type") == "json_schema":
        kwargs = {
            **kwargs,
            "response_format": {"type": "json_object", "schema": fmt["json_schema"]["schema"]},
        }
    return kwargs


@dataclass(frozen=True)
class Ranked:
    """Options scored by the model's likelihood after one prompt (``Provider.rank``)."""

    #: per option, the sum of its tokens' log-probabilities
    scores: list[float]
    #: prompt tokens the model evaluated (a prefix cached from an earlier call costs nothing)
    tokens_in: int
    #: option tokens the model evaluated beyond the prompt (0 when every option is one token)
    tokens_out: int


class Provider(ABC):
    #: ``local:<model>`` / ``openai:<model>``: what is logged with every call
    model_id: str = "unknown"
    #: how instructor asks for structured output (``instructor.Mode``)
    mode: str = "json_schema_mode"
    #: extraction strategy used when the user names none: capable models get ``direct``;
    #: None leaves the choice to the schema package (the embedded model)
    default_strategy: str | None = "direct"
    #: decoding parameters; part of the cache key
    decoding: dict[str, Any]
    #: other options that change what the model is sent (part of the cache key when set)
    settings: dict[str, Any]
    #: a server reached over HTTP: requests may run concurrently and take a ``timeout``
    remote: bool = False
    #: ``rank`` scores options by the model's likelihood (needs the model's logits: in-process)
    can_rank: bool = False

    def __init__(self) -> None:
        self.decoding = {"temperature": 0.0, "max_tokens": 1024, "seed": 0}
        self.settings = {}

    @abstractmethod
    def create(self, **kwargs: Any) -> ChatCompletion:
        """One chat completion, OpenAI-shaped. Raises on transport errors. A remote provider
        gets ``timeout`` (seconds); an in-process one gets ``deadline`` (a ``time.monotonic()``
        value) and ``interrupt`` (a callable, true after Ctrl-C) and stops generating at either,
        as if ``max_tokens`` had been reached."""

    def rank(self, prefix: str, options: Sequence[str], *, keep: str = "") -> Ranked:
        """Score each option (a continuation: begin it with its space) after ``prefix`` by the
        model's likelihood. ``keep`` is a leading part of ``prefix`` worth caching across calls
        (a field's few-shot examples). Only providers with ``can_rank`` implement it."""
        raise NotImplementedError(f"{self.model_id} cannot rank options by likelihood")

    def count_tokens(self, text: str) -> int:
        """Tokens in ``text``; providers with a tokenizer override this."""
        return max(1, len(text) // 4)

    @property
    def tokenizer_id(self) -> str:
        """What ``count_tokens`` counts with: chunk boundaries are cached under it."""
        return "chars/4"

    def describe(self) -> dict[str, Any]:
        """What the run records about this provider (never a secret)."""
        return {}

    def redact(self, text: str) -> str:
        """``text`` with any secret this provider holds masked; error text goes through here."""
        return text

    def instructor_client(self, create: Callable[..., ChatCompletion] | None = None) -> instructor.Instructor:
        import instructor

        mode = instructor.Mode(self.mode)
        patched = instructor.patch(create=create or self.create, mode=mode)
        return instructor.Instructor(client=None, create=patched, mode=mode)

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release resources (model memory, HTTP connections)."""
