"""The extraction batch job: documents -> chunks -> records in DuckDB, resumable.

Each run is one invocation (a row in ``runs``). A chunk's result is stored under its
extraction key -- chunk id plus the configuration hash (schema, prompt template, model,
decoding, strategy, chunking) -- so re-running unchanged inputs reuses stored results
and makes no LLM calls, and a run that died is finished by the next one.

A response cache (``llm_cache``) is keyed by the chunk's text rather than its place: the
same text under the same prompt template, schema, model and decoding -- in another
document or another run -- reuses the stored response, from which the strategy rebuilds
the records (``Strategy.rebuild``); ``--refresh`` bypasses both.

Stages, in order: read and clean the documents (``ingest``), chunk them (``chunk``), extract
and ground each chunk (``strategies``), store each chunk's result (``store``), then merge the
run's records into one entity per thing (``merge``).

How the chunks are run is the engine's business (``--engine``, ``pipeline/engines/``): ``local``
runs them in this process -- remote providers ``--concurrency`` requests at once in worker
threads, the main thread alone writing to DuckDB, many chunks per transaction; ``ray`` reads,
chunks and extracts on the workers of a Ray cluster and commits their results in bulk. Both
share everything here: validation, the stored results and cache (``Batch``), the run's rows.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import time
import uuid
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from pipeline.chunk import chunk_document
from pipeline.core.errors import PipelineError
from pipeline.core.schema import DEFAULT_SCHEMA, Schema, load_schema
from pipeline.core.types import Chunk, Document
from pipeline.ingest import read_documents
from pipeline.interrupt import Aborted, CtrlC, abortable, interruptible
from pipeline.merge import merge_document, record_key
from pipeline.providers import Provider, get_provider
from pipeline.retry import RetryPolicy
from pipeline.store import Store
from pipeline.strategies import ChunkOutcome, Context, Strategy, default_strategy, get_strategy
from pipeline.strategies.base import Records
from pipeline.strategies.fill import with_fill

if TYPE_CHECKING:
    from pipeline.store.bulk import ResultRows


@dataclass
class ExtractConfig:
    schema: str = DEFAULT_SCHEMA
    model: str = "local"
    strategy: str | None = None
    prompt: str | None = None
    max_chunk_tokens: int = 384
    overlap: int = 1
    max_retries: int = 2
    reground: bool = True
    refresh: bool = False
    # complete records after the strategy: rules and model ranking (strategies/fill.py); per-field
    # method overrides ("<type>.<field>": rule | rank | majority | off), for measuring
    fill: bool = True
    fill_methods: dict[str, str] | None = None
    max_tokens: int | None = None
    # local model: how a JSON schema constrains decoding (llguidance | gbnf)
    constraint: str = "llguidance"
    # remote (OpenAI-compatible) providers
    base_url: str | None = None
    response_format: str = "json_schema"
    fold_system: bool = False
    concurrency: int = 1
    timeout: float = 60.0
    max_attempts: int = 5
    max_seconds: float = 300.0
    # how the chunks run: local (this process) | ray (a Ray cluster; see pipeline/engines/)
    engine: str = "local"
    ray_address: str | None = None
    workers: int | None = None

    def retry_policy(self) -> RetryPolicy:
        try:
            return RetryPolicy(
                max_retries=self.max_retries,
                max_attempts=self.max_attempts,
                max_seconds=self.max_seconds,
                timeout=self.timeout,
            )
        except ValidationError as exc:
            err = exc.errors()[0]
            raise PipelineError(
                f"invalid retry option {err['loc'][0]}: {err['msg']}",
                "see `pipeline extract --help` for the allowed values",
            ) from None

    def provider_options(self) -> dict[str, Any]:
        return {
            "base_url": self.base_url,
            "response_format": self.response_format,
            "fold_system": self.fold_system,
            "constraint": self.constraint,
        }


@dataclass
class RunSummary:
    run_id: str
    status: str
    documents: int = 0
    chunks: int = 0
    chunks_extracted: int = 0
    chunks_reused: int = 0
    chunks_cached: int = 0
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
    fingerprint = {
        "schema_hash": schema_hash,
        "prompt_hash": prompt_hash,
        "model": provider.model_id,
        "decoding": provider.decoding,
        "strategy": strategy,
        "max_chunk_tokens": cfg.max_chunk_tokens,
        "overlap": cfg.overlap,
    }
    if strategy == "direct" and not cfg.reground:
        fingerprint["reground"] = False
    if provider.settings:
        fingerprint["provider_settings"] = provider.settings
    return fingerprint


def digest(obj: Any, n: int = 16) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True).encode()).hexdigest()[:n]


@dataclass
class Job:
    """What every chunk of a run is extracted with: built once by the driver, and once by
    each Ray worker from the same ``ExtractConfig`` (``prepare_job``)."""

    schema: Schema
    provider: Provider
    strategy: Strategy
    ctx: Context
    fingerprint: dict[str, Any]
    config_hash: str
    #: requests in flight at once (per worker): 1 for an in-process model
    concurrency: int

    @property
    def chunking(self) -> str:
        """The chunking configuration's key: chunk boundaries are stored under it."""
        cfg = self.fingerprint
        return digest({"max": cfg["max_chunk_tokens"], "overlap": cfg["overlap"], "tokens": self.provider.tokenizer_id})


def prepare_job(config: ExtractConfig, schema: Schema, provider: Provider | None = None) -> Job:
    """Check the options and build the provider, strategy and context of a run."""
    if config.concurrency < 1:
        raise PipelineError(f"--concurrency {config.concurrency} is not a positive number", "pass 1 or more")
    if config.max_chunk_tokens < 4:
        raise PipelineError(f"--max-chunk-tokens {config.max_chunk_tokens} is too small", "pass 4 or more")
    retry = config.retry_policy()
    provider = provider or get_provider(config.model, **config.provider_options())
    if config.max_tokens is not None:
        provider.decoding = {**provider.decoding, "max_tokens": config.max_tokens}
    strategy = get_strategy(default_strategy(config.strategy, provider, schema, config.prompt))
    strategy = with_fill(strategy, schema, provider, enabled=config.fill, methods=config.fill_methods)
    ctx = Context(provider=provider, schema=schema, retry=retry, reground=config.reground)
    prompt_hash = ctx.prompt_hash = strategy.prepare(ctx, config.prompt)
    if not strategy.uses_model and config.prompt:
        raise PipelineError(f"--prompt is not used by the {strategy.name!r} strategy", "leave --prompt out")
    fingerprint = config_fingerprint(config, provider, schema.hash, prompt_hash, strategy.name)
    return Job(
        schema=schema,
        provider=provider,
        strategy=strategy,
        ctx=ctx,
        fingerprint=fingerprint,
        config_hash=digest(fingerprint),
        concurrency=config.concurrency if provider.remote else 1,
    )


def run_extract(
    paths: Sequence[str | Path],
    *,
    db: str | Path,
    config: ExtractConfig,
    provider: Provider | None = None,
    console: Console | None = None,
    progress: bool = True,
) -> RunSummary:
    """Extract every document under ``paths`` into ``db``. Bad input fails before any write:
    documents, schema, prompt, provider and chunking are all checked before the database opens.
    Ctrl-C stops the job between chunks: the run is marked interrupted and ``Interrupted`` is
    raised after what was finished is stored."""
    from pipeline.engines import get_engine

    t0 = time.perf_counter()
    console = console or Console(stderr=True)
    schema = load_schema(config.schema)
    engine = get_engine(config, provider)
    # the local engine reads the documents first (bad input before bad options, as always);
    # a remote engine reads them on its workers, which need the checked options
    docs = read_documents(paths, schema.domain.cleaning) if engine.reads_here else None
    job = prepare_job(config, schema, provider)
    provider, strategy, ctx, prompt_hash = job.provider, job.strategy, job.ctx, job.ctx.prompt_hash
    fingerprint, config_hash, concurrency = job.fingerprint, job.config_hash, job.concurrency

    with interruptible() as stop, engine:
        ctx.stop = stop
        chunking = job.chunking
        with stop.abortable():  # nothing is written while the documents are chunked (the model loads)
            docs, chunks_by_doc = engine.prepare(paths, docs, job, db)
        all_chunks = [c for d in docs for c in chunks_by_doc[d.doc_id]]
        stop.check()
        with Store(db) as store:
            store.ensure_record_tables(schema)
            store.mark_stale_runs()
            store.upsert_documents(docs, all_chunks, chunking)
            run_id = new_run_id()
            store.start_run(
                run_id,
                {
                    "model": provider.model_id,
                    "strategy": strategy.name,
                    "schema_name": schema.name,
                    "schema_spec": schema.spec,
                    "schema_hash": schema.hash,
                    "prompt_hash": prompt_hash,
                    "config": {
                        **fingerprint,
                        "paths": [str(p) for p in paths],
                        "provider": provider.describe(),
                        "retry": ctx.retry.model_dump(),
                        "concurrency": concurrency,
                        **engine.describe(),
                    },
                    "config_hash": config_hash,
                    "pid": os.getpid(),
                },
                docs,
            )
            summary = RunSummary(run_id=run_id, status="running", documents=len(docs), chunks=len(all_chunks))
            summary.warnings = [*schema.warnings, *(w for d in docs for w in d.warnings), *engine.warnings]
            if config.concurrency > 1 and not provider.remote:
                summary.warnings.append(
                    f"--concurrency {config.concurrency} ignored: {provider.model_id} runs in-process"
                )
            batch = Batch(
                store=store,
                run_id=run_id,
                ctx=ctx,
                strategy=strategy,
                config=config,
                config_hash=config_hash,
                summary=summary,
                docs={d.doc_id: d for d in docs},
            )
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
                    batch.advance = lambda chunk: bar.update(task, advance=1, doc=chunk.doc_id)
                    with contextlib.suppress(CtrlC):  # a chunk's generation aborted: that chunk is not stored
                        engine.extract(batch, all_chunks, concurrency)
                if not stop():
                    status = "completed" if summary.chunks_failed == 0 else "completed_with_failures"
            except PipelineError:
                status = "failed"
                raise
            finally:
                batch.flush()  # what finished before a stop or an error is kept
                summary.status = status
                summary.seconds = round(time.perf_counter() - t0, 2)
                finish(store, summary, schema, docs)
            store.ensure_views(schema)
        stop.check(run_id)
    return summary


def chunk_documents(docs: Sequence[Document], db: str | Path, job: Job) -> dict[str, list[Chunk]]:
    """Each document's chunks: as stored by an earlier run under the same chunking (no tokenizer
    load), else cut now. The database is only read here, so bad input still leaves it untouched."""
    stored = stored_chunks(docs, db, job.chunking)
    return {d.doc_id: stored.get((d.doc_id, d.sha256)) or cut(d, job) for d in docs}


def cut(doc: Document, job: Job) -> list[Chunk]:
    """``doc``'s chunks under the run's token budget and overlap."""
    cfg = job.fingerprint
    stop, tokens = job.ctx.stop, job.provider.count_tokens

    def count(text: str) -> int:
        # Ctrl-C inside the model's tokenizer only sets the flag (llama_cpp code is treated as a
        # C callback): seen here, so that a long document's chunking stops at once
        if stop():
            raise Aborted
        return tokens(text)

    return chunk_document(doc, count, cfg["max_chunk_tokens"], cfg["overlap"])


def stored_chunks(docs: Sequence[Document], db: str | Path, chunking: str) -> dict[tuple[str, str], list[Chunk]]:
    """The chunks an earlier run stored for ``docs`` under ``chunking`` (read-only)."""
    if not Path(db).is_file():
        return {}
    try:
        with Store(db, read_only=True) as store:
            return store.chunked([(d.doc_id, d.sha256) for d in docs], chunking)
    except PipelineError:  # not (yet) a database this version reads: chunk everything
        return {}


def finish(store: Store, summary: RunSummary, schema: Schema, docs: Sequence[Document]) -> None:
    """Close the run: counts, its merged records (finished runs), its status and totals."""
    records = store.run_records(summary.run_id, schema, include_ungrounded=True)
    summary.records = count_records(records, schema)
    if summary.status != "interrupted":
        store.write_entities(summary.run_id, merged_entities(records, summary.run_id, schema, docs))
    store.finish_run(
        summary.run_id,
        summary.status,
        {
            "n_chunks": summary.chunks,
            "n_chunks_failed": summary.chunks_failed,
            "n_chunks_reused": summary.chunks_reused,
            "n_chunks_cached": summary.chunks_cached,
            "n_calls": summary.calls,
            "tokens_in": summary.tokens_in,
            "tokens_out": summary.tokens_out,
            "seconds": summary.seconds,
        },
    )


#: the local engine commits its results in one transaction per this many chunks or seconds
FLUSH_CHUNKS = 256
FLUSH_SECONDS = 1.0


@dataclass
class Batch:
    """The chunks of one run and what every engine shares about them: the run's rows, the
    stored results and cached responses (``prefetch``, ``reuse``), each chunk's keys, and the
    write of one outcome (``write``). Only the thread that made it touches the database."""

    store: Store
    run_id: str
    ctx: Context
    strategy: Strategy
    config: ExtractConfig
    config_hash: str
    summary: RunSummary
    docs: dict[str, Document]
    advance: Callable[[Chunk], Any] = lambda chunk: None
    #: looked up once per run (``prefetch``): stored extractions and cached responses
    done: set[str] = field(default_factory=set)
    cached: set[str] = field(default_factory=set)
    #: results written but not committed yet (``flush``), the chunks reused, and the responses
    #: of those results by cache key (a chunk with the same text is served from them)
    pending: ResultRows | None = None
    links: list[tuple[str, str, str, str]] = field(default_factory=list)
    fresh: dict[str, Any] = field(default_factory=dict)
    last_flush: float = field(default_factory=time.monotonic)

    def prefetch(self, chunks: Sequence[Chunk]) -> None:
        """One query each instead of two per chunk; ``write`` adds what this run caches."""
        if not self.config.refresh:
            self.done = self.store.completed_extractions([self.extraction_key(c) for c in chunks])
            self.cached = self.store.cached_keys([self.cache_key(c) for c in chunks])

    def extraction_key(self, chunk: Chunk) -> str:
        return digest({"chunk": chunk.chunk_id, "config": self.config_hash}, 24)

    def cache_key(self, chunk: Chunk) -> str:
        """Same chunk text, prompt template, schema, model and decoding -> same response."""
        return digest({"text": chunk.content_hash, **self.cache_basis}, 32)

    @property
    def cache_basis(self) -> dict[str, Any]:
        return cache_basis(self.ctx, self.strategy)

    def reuse(self, chunk: Chunk) -> bool:
        """Serve ``chunk`` without an LLM call: its stored result, or a cached response."""
        if self.config.refresh:
            return False
        key = self.extraction_key(chunk)
        if key in self.done:
            self.links.append((self.run_id, chunk.chunk_id, key, "reused"))
            self.summary.chunks_reused += 1
            self.advance(chunk)
            return True
        cache_key = self.cache_key(chunk)
        response = self.fresh.get(cache_key)
        if response is None and cache_key in self.cached:
            response = self.store.cached_response(cache_key)
        if response is None:
            return False
        with abortable(self.ctx.stop):  # rebuilding reads the document (seconds for a long one)
            records = rebuild(self.strategy, response, chunk, self.docs[chunk.doc_id], self.ctx)
        if records is None:
            return False
        self._add(
            run_id=self.run_id,
            chunk=chunk,
            extraction_key=key,
            config_hash=self.config_hash,
            status="ok",
            error=None,
            calls=[],
            records=records,
            response=response,
            outcome="cached",
        )
        self.summary.chunks_cached += 1
        self.advance(chunk)
        return True

    def write(self, chunk: Chunk, outcome: ChunkOutcome) -> None:
        ok = outcome.status == "ok"
        cache_key = self.cache_key(chunk) if ok else None
        cache = {"cache_key": cache_key, **self.cache_basis} if cache_key else None
        self._add(
            run_id=self.run_id,
            chunk=chunk,
            extraction_key=self.extraction_key(chunk),
            config_hash=self.config_hash,
            status="ok" if ok else "failed",
            error=outcome.error,
            calls=outcome.calls,
            records=outcome.records,
            response=outcome.response,
            cache=cache,
        )
        if cache_key is not None:
            self.cached.add(cache_key)
            if outcome.response is not None:
                self.fresh[cache_key] = outcome.response
        self.count(outcome.calls, ok)
        self.advance(chunk)

    def _add(self, **result: Any) -> None:
        if self.pending is None:
            from pipeline.store.bulk import ResultRows

            self.pending = ResultRows(self.ctx.schema)
        self.pending.add(**result)

    def flush(self) -> None:
        """Commit the results written since the last flush in one transaction (what
        ``Store.write_chunk_result`` would have done for each in turn)."""
        if self.pending is not None and self.pending.chunks:
            self.store.write_chunk_results(self.pending.to_arrow(), self.ctx.schema)
        if self.links:
            self.store.link_run_chunks(self.links)
        self.pending, self.links = None, []
        self.fresh.clear()
        self.last_flush = time.monotonic()

    def flush_if_due(self) -> None:
        """``flush`` once ``FLUSH_CHUNKS`` results wait or the oldest may have waited
        ``FLUSH_SECONDS``: a commit per chunk cost 18 ms (14% of a 1 MB document's time),
        and a crash loses at most the last fraction of a second (the rerun does it again)."""
        waiting = (self.pending.chunks if self.pending is not None else 0) + len(self.links)
        if waiting and (waiting >= FLUSH_CHUNKS or time.monotonic() - self.last_flush >= FLUSH_SECONDS):
            self.flush()

    def count(self, calls: Sequence[dict[str, Any]], ok: bool) -> None:
        """Add one extracted (or failed) chunk and its attempts to the run's totals."""
        s = self.summary
        s.calls += len(calls)
        s.calls_failed += sum(1 for c in calls if c["status"] != "ok")
        s.tokens_in += sum(c["tokens_in"] for c in calls)
        s.tokens_out += sum(c["tokens_out"] for c in calls)
        s.llm_seconds += sum(c["latency_s"] for c in calls)
        if ok:
            s.chunks_extracted += 1
        else:
            s.chunks_failed += 1


def cache_basis(ctx: Context, strategy: Strategy) -> dict[str, Any]:
    """What a cached response depends on besides the chunk's text."""
    p = ctx.provider
    return {
        "prompt": ctx.prompt_hash,
        "schema": ctx.schema_hash,
        "strategy": strategy.name,
        "model": p.model_id,
        "decoding": p.decoding,
        "settings": p.settings,
        "reground": ctx.reground,
    }


def rebuild(strategy: Strategy, response: Any, chunk: Chunk, doc: Document, ctx: Context) -> Records | None:
    """The records of a cached response, grounded in ``doc``; None when the response is not
    this strategy's shape (the chunk is then extracted)."""
    try:
        return strategy.rebuild(response, chunk, doc, ctx)
    except (ValidationError, KeyError, TypeError, ValueError):
        return None


def merged_entities(
    records: dict[str, dict[str, list[dict[str, Any]]]], run_id: str, schema: Schema, docs: Sequence[Document]
) -> list[dict[str, Any]]:
    """The run's grounded records merged per document: one entity per real-world thing."""
    texts = {d.doc_id: d.text for d in docs}
    out: list[dict[str, Any]] = []
    for doc_id, per_type in records.items():
        grounded = {name: [r for r in rows if r.get("grounded")] for name, rows in per_type.items()}
        for rt_name, rows in merge_document(schema, grounded, texts.get(doc_id)).items():
            rt = schema.record_type(rt_name)
            for rec in rows:
                label = " · ".join(str(rec.get(k)) for k in rt.key_fields if rec.get(k) not in (None, ""))
                out.append(
                    {
                        "entity_id": digest(
                            [run_id, doc_id, rt_name, list(record_key(rt, rec)), rec["mentions"][0]["record_id"]], 24
                        ),
                        "doc_id": doc_id,
                        "record_type": rt_name,
                        "label": label,
                        "fields": {f: rec.get(f) for f in rt.value_fields},
                        "first_start": rec.get("evidence_start"),
                        "mentions": rec["mentions"],
                    }
                )
    return out


def count_records(records: dict[str, dict[str, list[dict[str, Any]]]], schema: Schema) -> dict[str, int]:
    counts: Counter[str] = Counter()
    for per_type in records.values():
        for name, rows in per_type.items():
            counts[name] += len(rows)
    return {rt.name: counts.get(rt.name, 0) for rt in schema.record_types}
