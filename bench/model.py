"""Model items: engine vs pipeline, constrained-decoding cost, cached rerun."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from openai.types.chat import ChatCompletion

from bench.items import result
from pipeline.batch import ExtractConfig, run_extract
from pipeline.providers.base import Provider, as_json_object_format
from pipeline.providers.local import LocalProvider, fold_system_messages


class RecordingLocal(LocalProvider):
    """The pipeline's own local provider, keeping each call's exact kwargs and timing."""

    def __init__(self, **kw: Any) -> None:
        super().__init__(**kw)
        self.log: list[dict[str, Any]] = []

    def create(self, **kwargs: Any) -> ChatCompletion:
        t0 = time.perf_counter()
        out = super().create(**dict(kwargs))
        sent = as_json_object_format(dict(kwargs))
        sent.pop("model", None)
        sent["messages"] = fold_system_messages(sent["messages"])
        u = out.usage
        self.log.append(
            {
                "kwargs": sent,
                "s": time.perf_counter() - t0,
                "in": u.prompt_tokens if u else 0,
                "out": u.completion_tokens if u else 0,
            }
        )
        return out


class EmptyProvider(Provider):
    """No model: every call answers an empty item list (for --quick)."""

    model_id = "bench:empty"
    default_strategy = "fewshot"

    def __init__(self) -> None:
        super().__init__()
        self.calls = 0

    def create(self, **kwargs: Any) -> ChatCompletion:
        self.calls += 1
        return ChatCompletion.model_validate(
            {
                "id": "x",
                "object": "chat.completion",
                "created": 0,
                "model": "empty",
                "choices": [
                    {"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": '{"items": []}'}}
                ],
                "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
            }
        )


def _replay(
    llama: Any, calls: list[dict[str, Any]], *, grammar: bool, max_tokens: int | None = None
) -> tuple[float, int, int]:
    """Run the calls straight on llama.cpp; returns (seconds, prompt tokens, completion tokens)."""
    secs, tin, tout = 0.0, 0, 0
    for c in calls:
        kw = dict(c["kwargs"])
        if not grammar:
            kw.pop("response_format", None)
        if max_tokens is not None:
            kw["max_tokens"] = max_tokens
        t0 = time.perf_counter()
        out = llama.create_chat_completion(**kw)
        secs += time.perf_counter() - t0
        tin += out["usage"]["prompt_tokens"]
        tout += out["usage"]["completion_tokens"]
    return secs, tin, tout


def model_items(doc: Path, db: Path, max_calls: int) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    provider = RecordingLocal()
    cfg = ExtractConfig()
    t0 = time.perf_counter()
    s1 = run_extract([doc], db=db, config=cfg, provider=provider, progress=False)
    wall1 = time.perf_counter() - t0
    calls = provider.log
    out: list[dict[str, Any]] = []
    # 1. engine vs pipeline: replay every call (same order, same kwargs incl. grammar) on the raw engine
    llama = provider.llama
    llama.reset()
    raw_s, raw_in, raw_out = _replay(llama, calls, grammar=True)
    llama.reset()
    pre_s, pre_in, _ = _replay(llama, calls, grammar=False, max_tokens=1)
    pipe_tps = (s1.tokens_in + s1.tokens_out) / wall1
    raw_tps = (raw_in + raw_out) / raw_s
    ratio = pipe_tps / raw_tps
    out.append(
        result(
            f"1. engine vs pipeline ({doc.name}, {len(calls)} calls)",
            "pipeline >= 0.9x raw",
            f"pipeline {pipe_tps:.1f} tok/s end-to-end vs raw {raw_tps:.1f} tok/s = {ratio:.2f}x "
            f"(raw prompt ~{pre_in / pre_s:.0f} tok/s, raw generation {raw_out / max(raw_s - pre_s, 1e-9):.1f} tok/s)",
            ratio >= 0.9,
            pipeline_wall_s=round(wall1, 2),
            pipeline_tokens_in=s1.tokens_in,
            pipeline_tokens_out=s1.tokens_out,
            pipeline_llm_seconds=round(sum(c["s"] for c in calls), 2),
            raw_seconds=round(raw_s, 2),
            raw_tokens_in=raw_in,
            raw_tokens_out=raw_out,
            raw_prompt_only_seconds=round(pre_s, 2),
            note="tok/s = (prompt + completion tokens) / wall; raw = llama.create_chat_completion with the exact "
            "folded messages, response_format and decoding the pipeline sent; generation tok/s = completion tokens / "
            "(full replay - prompt-only replay), approximate",
        )
    )
    # 2. constrained decoding cost on the first calls
    sub = calls[:max_calls]
    llama.reset()
    g_s, _, g_out = _replay(llama, sub, grammar=True)
    llama.reset()
    p_s, _, _ = _replay(llama, sub, grammar=True, max_tokens=1)
    llama.reset()
    f_s, _, f_out = _replay(llama, sub, grammar=False)
    g_spt = (g_s - p_s) / max(g_out, 1)
    f_spt = (f_s - p_s) / max(f_out, 1)
    r = g_spt / f_spt if f_spt > 0 else float("nan")
    out.append(
        result(
            f"2. constrained decoding cost ({len(sub)} pipeline prompts, same max_tokens)",
            "<= 1.2x s/token",
            f"grammar {g_spt * 1000:.1f} ms/token ({g_out} tok) vs free {f_spt * 1000:.1f} ms/token ({f_out} tok) = {r:.2f}x",
            r <= 1.2,
            grammar_seconds=round(g_s, 3),
            free_seconds=round(f_s, 3),
            prompt_only_seconds=round(p_s, 3),
            note="per-token time excludes prompt processing (prompt-only replay subtracted)",
        )
    )
    provider.log = []
    cached = cached_rerun(doc, db, cfg, provider)
    provider.close()
    return [*out, cached], {"first_run_wall_s": round(wall1, 2), "calls": len(calls)}


def cached_rerun(doc: Path, db: Path, cfg: ExtractConfig, provider: Provider) -> dict[str, Any]:
    t0 = time.perf_counter()
    s = run_extract([doc], db=db, config=cfg, provider=provider, progress=False)
    wall = time.perf_counter() - t0
    return result(
        f"3. cached rerun of {doc.name} (second run_extract, same DB, provider already loaded)",
        "0 calls, < 2 s",
        f"{s.calls} calls, {wall:.2f} s, {s.chunks_reused}/{s.chunks} chunks reused",
        s.calls == 0 and wall < 2,
        calls=s.calls,
        wall_s=round(wall, 3),
    )


def quick_cached(doc: Path, db: Path) -> dict[str, Any]:
    p = EmptyProvider()
    cfg = ExtractConfig()
    run_extract([doc], db=db, config=cfg, provider=p, progress=False)
    r = cached_rerun(doc, db, cfg, p)
    r["item"] += " [quick: no-model stub provider]"
    return r
