"""Rank a few options by a loaded llama.cpp model's likelihood after one shared prompt prefix.

A 270M base model cannot extract, but it can tell which of a few continuations is most
likely after a short pattern ("Question: What kind of organization is X?\\nAnswer:" then
" company", " hospital", ...). ``Ranker`` owns a second llama.cpp context on the already
loaded model (the weights are shared, the KV cache is its own), with several sequences in
one unified KV cache:

1. the prefix is decoded on sequence 0 with logits for its last token only; its tokens stay
   cached, so the next call that shares a beginning (the same few-shot examples, the same
   sentence) decodes only the new tail. ``pin`` keeps a few prefixes (one per field's
   examples) in store sequences so that calls can alternate between fields;
2. each option's first token is scored from that last row; options of two or more tokens get
   a sequence each (``llama_memory_seq_cp``, which in a unified cache only tags cells) and all
   of them go through ONE ``llama_decode``, with logits only on the rows that predict a next
   option token. Gemma's vocabulary has 262k entries, so a logits row is the expensive unit;
3. the option tokens are removed again; the prefix stays.

Scores are per-option sums of token log-probabilities (log-softmax over the whole vocabulary).
Scores that differ by less than about 0.3 nats are noise: the quantized kernels give slightly
different values when only the split of the prefix into batches changes.
"""

from __future__ import annotations

import ctypes
import math
from collections.abc import Sequence
from typing import Any

import numpy as np

#: sequences of the ranking context: work sequences score options, store sequences keep pins
N_SEQ_MAX = 16
N_PINNED = 4
#: KV cells of the ranking context: pinned few-shot prefixes plus the prefix at work
N_CTX = 8192


def _logsumexp(row: Any) -> float:
    m = float(row.max())
    return m + math.log(float(np.exp(row - m, dtype=np.float32).sum()))


class Ranker:
    """Scores options after a prefix on its own context of a loaded ``llama_cpp.Llama``."""

    def __init__(self, llama: Any, n_ctx: int = N_CTX, n_seq_max: int = N_SEQ_MAX, n_pinned: int = N_PINNED) -> None:
        import llama_cpp
        from llama_cpp import _internals as internals

        self._lc = llama_cpp
        self.llama = llama
        params = llama_cpp.llama_context_default_params()
        src = llama.context_params
        for name in ("n_threads", "n_threads_batch", "n_batch", "n_ubatch"):
            setattr(params, name, getattr(src, name))
        params.n_ctx = n_ctx
        params.n_seq_max = n_seq_max
        params.kv_unified = True  # one cell store: copying a sequence tags cells instead of copying them
        params.swa_full = True  # Gemma 3 has sliding-window layers; a full cache allows rewinding
        params.no_perf = True
        self._ctx = internals.LlamaContext(model=llama._model, params=params, verbose=False)
        self._mem = llama_cpp.llama_get_memory(self._ctx.ctx)
        self.n_ctx = n_ctx
        self.n_batch = int(src.n_batch)
        self.n_vocab = int(llama.n_vocab())
        self._batch = internals.LlamaBatch(n_tokens=self.n_batch, embd=0, n_seq_max=n_seq_max, verbose=False)
        self._work = n_seq_max - n_pinned  # sequences 0.._work-1 work; the rest keep pinned prefixes
        self._stores = list(range(self._work, n_seq_max))
        self._pinned: dict[int, list[int]] = {}
        self._cached: list[int] = []  # the tokens sequence 0 holds, at positions 0..len-1
        self._evaluated = 0  # tokens decoded since the last ``score`` began

    def tokenize(self, text: str, bos: bool) -> list[int]:
        return list(self.llama.tokenize(text.encode("utf-8"), add_bos=bos, special=False))

    def reset(self) -> None:
        """Forget every cached and pinned prefix (after a failed decode)."""
        self._lc.llama_memory_clear(self._mem, True)
        self._pinned.clear()
        self._cached = []

    def _decode(self, rows: Sequence[tuple[int, int, int | Sequence[int], bool]]) -> None:
        """rows: (token, position, its sequence or sequences, whether its logits are wanted)."""
        b = self._batch.batch
        b.n_tokens = len(rows)
        for i, (tok, pos, seqs, want) in enumerate(rows):
            b.token[i] = tok
            b.pos[i] = pos
            seqs = [seqs] if isinstance(seqs, int) else seqs
            b.n_seq_id[i] = len(seqs)
            for k, seq in enumerate(seqs):
                b.seq_id[i][k] = seq
            b.logits[i] = want
        rc = self._lc.llama_decode(self._ctx.ctx, b)
        if rc != 0:
            self.reset()
            raise RuntimeError(f"llama_decode returned {rc} while ranking")
        self._evaluated += len(rows)

    def _row(self, i: int) -> Any:
        ptr = self._lc.llama_get_logits_ith(self._ctx.ctx, i)
        return np.ctypeslib.as_array(ctypes.cast(ptr, ctypes.POINTER(ctypes.c_float)), shape=(self.n_vocab,))

    @staticmethod
    def _common(a: Sequence[int], b: Sequence[int]) -> int:
        n = 0
        for x, y in zip(a, b, strict=False):
            if x != y:
                break
            n += 1
        return n

    def _set_prefix(self, tokens: list[int]) -> Any:
        """Make sequence 0 hold exactly ``tokens``; return the logits row after the last one."""
        if len(tokens) >= self.n_ctx // 2:
            raise ValueError(f"a ranking prompt of {len(tokens)} tokens is too long (at most {self.n_ctx // 2 - 1})")
        common = self._common(self._cached, tokens)
        best = max(self._pinned, key=lambda s: self._common(self._pinned[s], tokens), default=None)
        if best is not None and self._common(self._pinned[best], tokens) > common:  # start from a pinned prefix
            common = self._common(self._pinned[best], tokens)
            self._lc.llama_memory_seq_rm(self._mem, 0, -1, -1)
            self._lc.llama_memory_seq_cp(self._mem, best, 0, 0, common)
            self._cached = self._pinned[best][:common]
        common = min(common, len(tokens) - 1)  # the last token is decoded again for its logits
        self._lc.llama_memory_seq_rm(self._mem, 0, common, -1)
        self._cached = self._cached[:common]
        last: Any = None
        for start in range(common, len(tokens), self.n_batch):
            part = tokens[start : start + self.n_batch]
            self._decode([(t, start + j, 0, start + j == len(tokens) - 1) for j, t in enumerate(part)])
            if start + len(part) == len(tokens):
                last = self._row(len(part) - 1).copy()
        self._cached = list(tokens)
        return last

    def pin(self, prefix: str) -> int:
        """Keep ``prefix`` (one field's few-shot examples) cached in a store sequence, so that
        calls for several fields can alternate without decoding each field's examples again.
        Returns the tokens decoded to do so (0 when it was pinned already)."""
        tokens = self.tokenize(prefix, True)
        if len(tokens) < 2 or any(t == tokens for t in self._pinned.values()):
            return 0
        self._evaluated = 0
        self._set_prefix(tokens)
        slot = next((s for s in self._stores if s not in self._pinned), None)
        if slot is None:  # every store taken: drop the oldest pin
            slot = next(iter(self._pinned))
            del self._pinned[slot]
        self._lc.llama_memory_seq_rm(self._mem, slot, -1, -1)
        self._lc.llama_memory_seq_cp(self._mem, 0, slot, -1, -1)
        self._pinned[slot] = list(tokens)
        return self._evaluated

    def score(self, prefix: str, options: Sequence[str]) -> tuple[list[float], int, int]:
        """(sum of token log-probs of each option after ``prefix``, prompt tokens decoded,
        option tokens decoded). Options are continuations: begin each with the space or
        newline the pattern has."""
        self._evaluated = 0
        ptoks = self.tokenize(prefix, True)
        otoks = [self.tokenize(o, False) for o in options]
        if any(not t for t in otoks):
            raise ValueError("an option tokenizes to nothing")
        last = self._set_prefix(ptoks)
        prompt_tokens = self._evaluated
        p = len(ptoks)
        lse = _logsumexp(last)
        out = [float(last[t[0]]) - lse for t in otoks]
        multi = [i for i, t in enumerate(otoks) if len(t) > 1]
        for g in range(0, len(multi), self._work - 1):
            group = multi[g : g + self._work - 1]
            # one row per distinct option prefix: options that begin alike (" Acme", " Acme
            # Therapeutics") share the rows of their common tokens, decoded once for all of their
            # sequences; each row that predicts a next option token costs a full-vocabulary logits row
            seqs: dict[tuple[int, ...], list[int]] = {}  # option-token prefix -> its sequences
            wanted: dict[tuple[int, ...], list[tuple[int, int]]] = {}  # -> (option, the token it predicts)
            for seq, i in enumerate(group, start=1):
                self._lc.llama_memory_seq_cp(self._mem, 0, seq, -1, -1)
                for j in range(len(otoks[i]) - 1):  # the last option token predicts nothing needed
                    path = tuple(otoks[i][: j + 1])
                    seqs.setdefault(path, []).append(seq)
                    wanted.setdefault(path, []).append((i, otoks[i][j + 1]))
            order = list(seqs)
            try:
                for start in range(0, len(order), self.n_batch):  # one decode unless the options are long
                    part = order[start : start + self.n_batch]
                    self._decode([(path[-1], p + len(path) - 1, seqs[path], True) for path in part])
                    for r, path in enumerate(part):
                        row = self._row(r)
                        norm = _logsumexp(row)
                        for i, tok in wanted[path]:
                            out[i] += float(row[tok]) - norm
            finally:
                for seq in range(1, len(group) + 1):
                    self._lc.llama_memory_seq_rm(self._mem, seq, -1, -1)
        return out, prompt_tokens, self._evaluated - prompt_tokens

    def close(self) -> None:
        self._batch.close()  # type: ignore[no-untyped-call]
        self._ctx.close()  # type: ignore[no-untyped-call]
