"""JSON-schema constrained decoding with llguidance, as a llama.cpp logits processor.

llama-cpp-python turns a JSON schema into a GBNF grammar and checks candidate tokens
against it one by one; with Gemma's 262k-token vocabulary that is several times slower
per token than free generation (``python -m bench``, item 2). llguidance computes the
whole allowed-token mask per step in Rust (well under a millisecond here), so the
constraint costs close to nothing. The tokenizer table is built once per model (~1 s).
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import NDArray

from pipeline.core.errors import ProviderError

if TYPE_CHECKING:
    from llguidance._lib import JsonCompileOptions

#: constraint engines the local provider knows; ``gbnf`` is llama-cpp-python's own grammar
ENGINES = ("llguidance", "gbnf")


def tokenizer_for(llama: Any) -> Any:
    """An llguidance tokenizer over the loaded model's vocabulary; end-of-generation tokens
    (``<eos>`` and, for chat models, end-of-turn) may close a finished JSON value.

    The token table is read here (as ``llguidance.llamacpp.lltokenizer_from_vocab`` does, but
    through llama.cpp's current functions, not a deprecated Python alias): 262k tokens take
    ~0.5 s of Python, which Ctrl-C can stop; llguidance's own build after it (~0.8 s of Rust
    holding the GIL) cannot be."""
    import ctypes

    import llama_cpp
    from llguidance import LLTokenizer

    vocab = llama_cpp.llama_model_get_vocab(llama.model)
    eos = [t for t in (llama_cpp.llama_vocab_eos(vocab), llama_cpp.llama_vocab_eot(vocab)) if t >= 0]
    size = 16 * 1024
    buffer = ctypes.create_string_buffer(size + 1)
    special = llama_cpp.LLAMA_TOKEN_ATTR_CONTROL
    user = llama_cpp.LLAMA_TOKEN_ATTR_USER_DEFINED
    to_piece, get_attr = llama_cpp.llama_token_to_piece, llama_cpp.llama_vocab_get_attr
    tokens: list[bytes] = []
    for token in range(llama_cpp.llama_vocab_n_tokens(vocab)):
        n = to_piece(vocab, token, buffer, size, 0, True)
        if n < 0:
            raise ProviderError(f"token {token} of the model does not fit {size} bytes", "use another GGUF model")
        piece = buffer.raw[:n]
        attr = get_attr(vocab, token)
        if attr & special or (attr & user and piece.startswith(b"<") and piece.endswith(b">")):
            piece = b"\xff" + piece  # llguidance's mark of a special token
        tokens.append(piece)
    tokens.extend(b"" for _ in range(llama.n_vocab() - len(tokens)))
    tokenize = ctypes.cast(llama_cpp.llama_cpp._lib.llama_tokenize, ctypes.c_void_p).value
    return LLTokenizer.from_llamacpp(  # type: ignore[attr-defined]
        tokens=tokens, vocab_ptr=vocab, tokenize_fptr=tokenize, eos_token=list(dict.fromkeys(eos)), slices=None
    )


def closed(schema: Any) -> Any:
    """``schema`` with ``additionalProperties: false`` on every object that does not say:
    JSON Schema allows unlisted keys by default, and llguidance honours that, so a small
    model wanders off into keys the schema never named. llama.cpp's grammar and OpenAI's
    strict mode treat objects as closed too."""
    if isinstance(schema, list):
        return [closed(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    out = {k: closed(v) for k, v in schema.items()}
    if "properties" in out and "additionalProperties" not in out:
        out["additionalProperties"] = False
    return out


#: the layout llama.cpp's JSON grammar produces (``{ "a": 1, "b": 2 }`` minus the padding);
#: one fixed layout keeps outputs reproducible
LAYOUT: JsonCompileOptions = {"item_separator": ", ", "key_separator": ": ", "whitespace_flexible": False}


class SchemaConstraint:
    """Logits processor: masks every token the JSON schema does not allow next.

    llama-cpp-python calls it with all tokens in the context (prompt, then each sampled
    token) and the next-token scores; the first call fixes where the prompt ends.
    """

    def __init__(self, tokenizer: Any, schema: dict[str, Any], n_vocab: int) -> None:
        from llguidance import LLMatcher

        grammar = LLMatcher.grammar_from_json_schema(json.dumps(closed(schema)), overrides=LAYOUT)
        self.matcher = LLMatcher(tokenizer, grammar, log_level=0)
        if self.matcher.is_error():
            raise ProviderError(
                f"the JSON schema cannot be compiled for constrained decoding: {self.matcher.get_error()}",
                "simplify the schema, or pass --constraint gbnf",
            )
        self.fed: int | None = None  # tokens consumed so far; None until the first call
        self.mask = np.zeros((n_vocab + 31) // 32, dtype=np.int32)

    def __call__(self, input_ids: NDArray[np.intc], scores: NDArray[np.single]) -> NDArray[np.single]:
        if self.fed is None:
            self.fed = len(input_ids)
        for tok in input_ids[self.fed :]:
            if not self.matcher.consume_token(int(tok)):
                raise ProviderError(
                    f"constrained decoding went off the schema: {self.matcher.get_error()}",
                    "report this with the schema; --constraint gbnf is the fallback",
                )
        self.fed = len(input_ids)
        self.matcher.unsafe_compute_mask_ptr(self.mask.ctypes.data, self.mask.nbytes)
        allowed = np.unpackbits(self.mask.view(np.uint8), bitorder="little")[: len(scores)].astype(bool)
        scores[~allowed] = -np.inf
        return scores
