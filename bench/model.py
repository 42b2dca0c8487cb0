"""Model items: engine vs pipeline, constrained-decoding cost, cached rerun."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import duckdb
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


ENGINES = ("llguidance", "gbnf", "free")


def _replay(
    provider: RecordingLocal, calls: list[dict[str, Any]], *, engine: str, max_tokens: int | None = None
) -> tuple[float, int, int, list[str]]:
    """Run the calls straight on llama.cpp under one constraint engine; returns
    (seconds, prompt tokens, completion tokens, outputs). ``gbnf`` is llama-cpp-python's
    grammar, ``llguidance`` the pipeline's mask, ``free`` no constraint."""
    llama = provider.llama
    secs, tin, tout, texts = 0.0, 0, 0, []
    for c in calls:
        kw = dict(c["kwargs"])
        if engine == "llguidance":
            kw = provider.constrained(kw)  # what the pipeline itself sends (provider.constraint is llguidance)
        elif engine == "free":
            kw.pop("response_format", None)
        if max_tokens is not None:
            kw["max_tokens"] = max_tokens
        t0 = time.perf_counter()
        out = llama.create_chat_completion(**kw)
        secs += time.perf_counter() - t0
        tin += out["usage"]["prompt_tokens"]
        tout += out["usage"]["completion_tokens"]
        texts.append(out["choices"][0]["message"]["content"] or "")
    return secs, tin, tout, texts


def _valid(texts: list[str], calls: list[dict[str, Any]]) -> int:
    """Outputs that parse as JSON objects holding every top-level key their schema requires."""
    n = 0
    for text, c in zip(texts, calls, strict=True):
        schema = (c["kwargs"].get("response_format") or {}).get("schema") or {}
        try:
            value = json.loads(text)
        except ValueError:
            continue
        n += isinstance(value, dict) and all(k in value for k in schema.get("required", []))
    return n


def _snippet(doc: Path, out: Path) -> Path:
    """The first sentence-rich line of the first document: the few-shot prompts of item 2."""
    first = sorted(doc.glob("*.txt"))[0] if doc.is_dir() else doc
    line = next(ln for ln in first.read_text(encoding="utf-8").splitlines() if len(ln) > 120)
    out.write_text(line[: line.find(". ") + 1 if ". " in line else None] + "\n", encoding="utf-8")
    return out


def model_items(
    doc: Path, db: Path, max_calls: int, *, strategy: str = "direct", max_tokens: int = 1024
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    provider = RecordingLocal(constraint="llguidance")
    t0 = time.perf_counter()
    provider.schema_constraint({"type": "object"})  # loads the model and builds llguidance's token table
    startup = time.perf_counter() - t0
    cfg = ExtractConfig(strategy=strategy, max_tokens=max_tokens)
    t0 = time.perf_counter()
    s1 = run_extract([doc], db=db, config=cfg, provider=provider, progress=False)
    wall1 = time.perf_counter() - t0
    calls = provider.log
    if not calls:
        raise RuntimeError(f"strategy {strategy!r} made no model calls on {doc.name}: nothing to measure")
    out: list[dict[str, Any]] = []
    # 1. engine vs pipeline: replay every call (same order, same messages, same constraint) on the raw engine
    llama = provider.llama
    llama.reset()
    raw_s, raw_in, raw_out, _ = _replay(provider, calls, engine="llguidance")
    llama.reset()
    pre_s, pre_in, _, _ = _replay(provider, calls, engine="free", max_tokens=1)
    tokens = s1.tokens_in + s1.tokens_out
    pipe_tps = tokens / wall1
    raw_tps = (raw_in + raw_out) / raw_s
    ratio = pipe_tps / raw_tps
    cold = tokens / (wall1 + startup)
    out.append(
        result(
            f"1. engine vs pipeline ({doc.name}/, --strategy {strategy}, {len(calls)} calls)"
            if doc.is_dir()
            else f"1. engine vs pipeline ({doc.name}, --strategy {strategy}, {len(calls)} calls)",
            "pipeline >= 0.9x raw",
            f"pipeline {pipe_tps:.0f} tok/s end-to-end vs raw {raw_tps:.0f} tok/s = {ratio:.2f}x "
            f"(cold, model load + token table included: {cold / raw_tps:.2f}x; "
            f"raw prompt ~{pre_in / pre_s:.0f} tok/s, raw generation {raw_out / max(raw_s - pre_s, 1e-9):.0f} tok/s)",
            ratio >= 0.9,
            startup_s=round(startup, 2),
            pipeline_wall_s=round(wall1, 2),
            pipeline_tokens_in=s1.tokens_in,
            pipeline_tokens_out=s1.tokens_out,
            pipeline_llm_seconds=round(sum(c["s"] for c in calls), 2),
            raw_seconds=round(raw_s, 2),
            raw_tokens_in=raw_in,
            raw_tokens_out=raw_out,
            raw_prompt_only_seconds=round(pre_s, 2),
            note="tok/s = (prompt + completion tokens) / wall; pipeline wall = run_extract with the model already "
            "loaded (reading, cleaning, chunking, instructor validation, grounding, re-asks, DuckDB writes); raw = "
            "llama.create_chat_completion with the exact folded messages, constraint and decoding the pipeline "
            "sent; generation tok/s = completion tokens / (full replay - prompt-only replay), approximate",
        )
    )
    # 2. constrained decoding cost: the few-shot prompts of one sentence, each engine, same max_tokens
    provider.log = []
    few = _snippet(doc, db.parent / "snippet.txt")
    run_extract([few], db=db.parent / "fewshot.duckdb", config=ExtractConfig(strategy="fewshot"), provider=provider,
                progress=False)  # fmt: skip
    sub = provider.log[:max_calls]
    llama.reset()
    p_s, _, _, _ = _replay(provider, sub, engine="free", max_tokens=1)
    per: dict[str, dict[str, Any]] = {}
    for engine in ENGINES:
        llama.reset()
        secs, _, toks, texts = _replay(provider, sub, engine=engine)
        per[engine] = {
            "s_per_token": (secs - p_s) / max(toks, 1),
            "tokens": toks,
            "seconds": round(secs, 3),
            "valid_json": _valid(texts, sub) if engine != "free" else None,
        }
    free = per["free"]["s_per_token"]
    r = {e: per[e]["s_per_token"] / free if free > 0 else float("nan") for e in ENGINES}
    out.append(
        result(
            f"2. constrained decoding cost ({len(sub)} few-shot prompts of the pipeline, one sentence)",
            "<= 1.2x s/token",
            f"llguidance {per['llguidance']['s_per_token'] * 1000:.1f} ms/token = {r['llguidance']:.2f}x free "
            f"({per['llguidance']['valid_json']}/{len(sub)} valid, {per['llguidance']['tokens']} tok); llama.cpp gbnf "
            f"{per['gbnf']['s_per_token'] * 1000:.1f} ms/token = {r['gbnf']:.2f}x "
            f"({per['gbnf']['valid_json']}/{len(sub)} valid, {per['gbnf']['tokens']} tok); "
            f"free {free * 1000:.1f} ms/token ({per['free']['tokens']} tok)",
            r["llguidance"] <= 1.2,
            engines={
                e: {**v, "s_per_token": round(v["s_per_token"], 5), "ratio": round(r[e], 3)} for e, v in per.items()
            },
            prompt_only_seconds=round(p_s, 3),
            snippet=few.read_text(encoding="utf-8").strip(),
            note="per-token time excludes prompt processing (prompt-only replay subtracted); the pipeline uses "
            "llguidance (--constraint gbnf switches back); valid = parses, required top-level keys present "
            "(an output cut by max_tokens is not valid)",
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
    try:
        cli = _cli_rerun(doc, db, cfg)
    except RuntimeError as exc:
        cli = {"error": str(exc)[-300:], "calls": -1, "wall_s": float("nan")}
    met = s.calls == 0 and wall < 2
    return result(
        f"3. cached rerun of {doc.name} (same DB)",
        "0 calls, < 2 s",
        f"in-process (model loaded): {s.calls} calls, {wall:.2f} s, {s.chunks_reused}/{s.chunks} chunks reused"
        + (f"; `pipeline extract` in a fresh process: {cli['calls']} calls, {cli['wall_s']:.2f} s" if cli else ""),
        met,
        calls=s.calls,
        wall_s=round(wall, 3),
        cli=cli,
        rerun_chunks_failed=s.chunks_failed,
        note="target judged on the in-process rerun; the fresh process also pays Python start-up and imports "
        "(about 1 s, mostly openai) and the model load (its tokenizer sizes the chunks)",
    )


def _cli_rerun(doc: Path, db: Path, cfg: ExtractConfig) -> dict[str, Any] | None:
    """``pipeline extract`` run again as a user would: a new process on the same database."""
    if not isinstance(cfg.strategy, str) or cfg.model != "local":
        return None
    args = [str(doc), "--db", str(db), "--strategy", cfg.strategy, "--quiet"]
    if cfg.max_tokens is not None:
        args += ["--max-tokens", str(cfg.max_tokens)]
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "pipeline", "extract", *args], capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise RuntimeError(f"cached rerun CLI failed ({proc.returncode}): {proc.stderr[-300:]}")
    con = duckdb.connect(str(db), read_only=True)
    try:
        row = con.execute("SELECT n_calls FROM runs ORDER BY started_at DESC LIMIT 1").fetchone()
    finally:
        con.close()
    return {"calls": int(row[0]) if row else -1, "wall_s": round(wall, 3)}


def quick_cached(doc: Path, db: Path) -> dict[str, Any]:
    p = EmptyProvider()
    cfg = ExtractConfig()
    run_extract([doc], db=db, config=cfg, provider=p, progress=False)
    r = cached_rerun(doc, db, cfg, p)
    r["item"] += " [quick: no-model stub provider]"
    return r
