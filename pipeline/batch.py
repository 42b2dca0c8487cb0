"""The extraction batch job: documents -> chunks -> records in DuckDB, resumable.

Each run is one invocation (a row in ``runs``). A chunk's result is stored under its
extraction key -- chunk id plus the configuration hash (schema, prompt template, model,
decoding, strategy, chunking) -- so re-running unchanged inputs reuses stored results
and makes no LLM calls, and a run that died is finished by the next one.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
import uuid
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from pipeline.chunk import chunk_document
from pipeline.core.schema import load_schema
from pipeline.core.types import Chunk, Document
from pipeline.extract import Context, get_strategy
from pipeline.ingest import read_documents
from pipeline.providers import Provider, get_provider
from pipeline.store.db import Store


@dataclass
class ExtractConfig:
    schema: str = "biomedical"
    model: str = "local"
    strategy: str | None = None
    prompt: str | None = None
    max_chunk_tokens: int = 384
    overlap: int = 1
    max_retries: int = 2
    refresh: bool = False


@dataclass
class RunSummary:
    run_id: str
    status: str
    documents: int = 0
    chunks: int = 0
    chunks_extracted: int = 0
    chunks_reused: int = 0
    chunks_failed: int = 0
    records: dict[str, int] = field(default_factory=dict)
    calls: int = 0
    calls_failed: int = 0
    tokens_in: int = 0
    tokens_out: int = 0
    seconds: float = 0.0
    llm_seconds: float = 0.0
    warnings: list[str] = field(default_factory=list)

    @property
    def tokens_per_second(self) -> float:
        return self.tokens_out / self.llm_seconds if self.llm_seconds else 0.0


def new_run_id() -> str:
    return datetime.now(UTC).strftime("%Y%m%dT%H%M%S") + "-" + uuid.uuid4().hex[:6]


def config_fingerprint(
    cfg: ExtractConfig, provider: Provider, schema_hash: str, prompt_hash: str, strategy: str
) -> dict[str, Any]:
    return {
        "schema_hash": schema_hash,
        "prompt_hash": prompt_hash,
        "model": provider.model_id,
        "decoding": provider.decoding,
        "strategy": strategy,
        "max_chunk_tokens": cfg.max_chunk_tokens,
        "overlap": cfg.overlap,
    }


def digest(obj: Any, n: int = 16) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True).encode()).hexdigest()[:n]


def run_extract(
    paths: Sequence[str | Path],
    *,
    db: str | Path,
    config: ExtractConfig,
    provider: Provider | None = None,
    console: Console | None = None,
    progress: bool = True,
) -> RunSummary:
    """Extract every document under ``paths`` into ``db``. Bad input fails before any write."""
    t0 = time.perf_counter()
    console = console or Console(stderr=True)
    docs = read_documents(paths)
    schema = load_schema(config.schema)
    provider = provider or get_provider(config.model)
    strategy = get_strategy(config.strategy or provider.default_strategy)
    ctx = Context(provider=provider, schema=schema, max_retries=config.max_retries)
    prompt_hash = strategy.prepare(ctx, config.prompt)
    fingerprint = config_fingerprint(config, provider, schema.hash, prompt_hash, strategy.name)
    config_hash = digest(fingerprint)

    with Store(db) as store:
        store.ensure_record_tables(schema)
        store.mark_stale_runs()
        chunks_by_doc: dict[str, list[Chunk]] = {
            d.doc_id: chunk_document(d, provider.count_tokens, config.max_chunk_tokens, config.overlap) for d in docs
        }
        all_chunks = [c for d in docs for c in chunks_by_doc[d.doc_id]]
        store.upsert_documents(docs, all_chunks)
        run_id = new_run_id()
        store.start_run(
            run_id,
            {
                "model": provider.model_id,
                "strategy": strategy.name,
                "schema_name": schema.name,
                "schema_hash": schema.hash,
                "prompt_hash": prompt_hash,
                "config": {
                    **fingerprint,
                    "paths": [str(p) for p in paths],
                    "max_retries": config.max_retries,
                },
                "config_hash": config_hash,
                "pid": os.getpid(),
            },
            docs,
        )
        summary = RunSummary(run_id=run_id, status="running", documents=len(docs), chunks=len(all_chunks))
        summary.warnings = [w for d in docs for w in d.warnings]
        doc_by_id = {d.doc_id: d for d in docs}
        status = "interrupted"
        try:
            with Progress(
                TextColumn("[bold]extract"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("{task.fields[doc]}"),
                TimeElapsedColumn(),
                console=console,
                disable=not progress,
                transient=True,
            ) as bar:
                task = bar.add_task("extract", total=len(all_chunks), doc="")
                for chunk in all_chunks:
                    bar.update(task, doc=chunk.doc_id)
                    _process_chunk(
                        store,
                        run_id,
                        chunk,
                        doc_by_id[chunk.doc_id],
                        ctx,
                        strategy,
                        config,
                        config_hash,
                        summary,
                    )
                    bar.advance(task)
            status = "completed" if summary.chunks_failed == 0 else "completed_with_failures"
        finally:
            summary.status = status
            summary.seconds = round(time.perf_counter() - t0, 2)
            summary.records = _count_records(store, run_id, schema)
            store.finish_run(
                run_id,
                status,
                {
                    "n_chunks": summary.chunks,
                    "n_chunks_failed": summary.chunks_failed,
                    "n_chunks_reused": summary.chunks_reused,
                    "n_calls": summary.calls,
                    "tokens_in": summary.tokens_in,
                    "tokens_out": summary.tokens_out,
                    "seconds": summary.seconds,
                },
            )
        store.ensure_views(schema)
    return summary


def _process_chunk(
    store: Store,
    run_id: str,
    chunk: Chunk,
    doc: Document,
    ctx: Context,
    strategy: Any,
    config: ExtractConfig,
    config_hash: str,
    summary: RunSummary,
) -> None:
    key = digest({"chunk": chunk.chunk_id, "config": config_hash}, 24)
    if not config.refresh and store.completed_extraction(key):
        store.link_run_chunk(run_id, chunk.chunk_id, key, "reused")
        summary.chunks_reused += 1
        return
    outcome = strategy.extract(chunk, doc, ctx)
    store.write_chunk_result(
        run_id=run_id,
        chunk=chunk,
        extraction_key=key,
        config_hash=config_hash,
        schema=ctx.schema,
        status="ok" if outcome.status == "ok" else "failed",
        error=outcome.error,
        calls=outcome.calls,
        records=outcome.records,
        response=outcome.response,
    )
    summary.calls += len(outcome.calls)
    summary.calls_failed += sum(1 for c in outcome.calls if c["status"] != "ok")
    summary.tokens_in += sum(c["tokens_in"] for c in outcome.calls)
    summary.tokens_out += sum(c["tokens_out"] for c in outcome.calls)
    summary.llm_seconds += sum(c["latency_s"] for c in outcome.calls)
    if outcome.status == "ok":
        summary.chunks_extracted += 1
    else:
        summary.chunks_failed += 1


def _count_records(store: Store, run_id: str, schema: Any) -> dict[str, int]:
    records = store.run_records(run_id, schema, include_ungrounded=True)
    counts: Counter[str] = Counter()
    for per_type in records.values():
        for name, rows in per_type.items():
            counts[name] += len(rows)
    return {rt.name: counts.get(rt.name, 0) for rt in schema.record_types}
