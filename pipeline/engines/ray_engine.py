"""The Ray engine (``--engine ray``): the run's documents read, chunked and extracted by the
workers of a Ray cluster; their results committed by this process, the only writer.

Workers are Ray actors (``Worker``). Each builds the run's job from the same
``ExtractConfig`` as the driver -- loading the model, or creating the HTTP client, once --
and checks that its configuration hash is the driver's. A worker keeps ``--concurrency``
requests in flight in a thread pool.

1. ``prepare``: the driver lists the input files (a missing path fails at once); workers
   read and clean each file and cut it into chunks. Any bad input raises its one-line error
   before the database is opened, as with the local engine. Chunk boundaries an earlier run
   stored are kept, as ``batch.chunk_documents`` does.
2. ``extract``: the driver serves what needs no model call -- stored results ("reused"), as
   the local engine does -- and sends the rest as tasks of at most ``--concurrency`` chunks
   of one document (a cached response travels with its chunk and the worker rebuilds the
   records from it). A worker returns its task's rows as Arrow tables
   (``store.bulk.ResultRows``). The driver buffers them and commits every ~1 s or 256 chunks
   in one transaction (``Store.write_chunk_results``): exactly one extraction per key.
   Chunks with the same text as one in flight wait for it and are then served from the
   response cache, as in the local engine.

Faults: a worker process that dies is restarted by Ray, and its tasks in flight are retried
(up to ``TASK_RETRIES`` times; their chunks are extracted again, since nothing of an
unfinished task was committed). A task that still fails stores its chunks as failed -- the
run ends ``completed_with_failures`` and a rerun retries them -- so a document that kills
its worker every time cannot loop forever. A killed driver loses only its uncommitted
buffer: the rerun marks the run interrupted and does only the missing chunks. Ctrl-C
commits what has arrived and stops; the local cluster is shut down.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections import deque
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pipeline.core.errors import PipelineError
from pipeline.core.types import Chunk, Document
from pipeline.engines import Engine
from pipeline.engines.ray_cluster import Cluster, parse_address

if TYPE_CHECKING:
    import pyarrow as pa

    from pipeline.batch import Batch, ExtractConfig, Job

#: Ray's retries of a task whose worker process died (each on the restarted worker)
TASK_RETRIES = 2
#: commit the buffered results once this many chunks or seconds have gathered
FLUSH_CHUNKS = 256
FLUSH_SECONDS = 1.0
#: seconds the workers may take to start (import the project, build the job)
START_TIMEOUT = 180.0

#: one chunk of a task: (chunk, extraction key, cache key, cached response or None)
Item = tuple[Chunk, str, str, Any]


class Worker:
    """One Ray actor. Builds the run's job once, then reads documents and extracts chunks."""

    def __init__(self, config: ExtractConfig, threads: int | None, cwd: str) -> None:
        from pipeline.batch import cache_basis, prepare_job
        from pipeline.core.schema import load_schema
        from pipeline.providers import get_provider

        # the driver's working folder: relative input, schema and prompt paths mean the same here
        # (a worker process hosts this actor alone)
        if os.path.isdir(cwd):
            os.chdir(cwd)
        options = config.provider_options()
        if threads:
            options["n_threads"] = threads  # the in-process model's share of this machine's cores
        #: a failure to build the job (a schema or model missing on this node), raised by ``ready``
        self.error: PipelineError | None = None
        try:
            self.job = prepare_job(config, load_schema(config.schema), get_provider(config.model, **options))
        except PipelineError as exc:
            self.error = exc
            return
        self.basis = cache_basis(self.job.ctx, self.job.strategy)
        # an in-process model takes one chunk at a time: reading (its tokenizer) included
        self.pool = ThreadPoolExecutor(max_workers=self.job.concurrency, thread_name_prefix="llm")
        # one document at a time per worker, as the local engine reads (the PDF reader process,
        # trafilatura): workers read in parallel with each other
        self.reading = threading.Lock()

    def ready(self, config_hash: str) -> int:
        if self.error is not None:
            raise self.error
        if self.job.config_hash != config_hash:
            raise PipelineError(
                "a Ray worker's configuration differs from the driver's (another version of the project, "
                "the schema or the model on that node?)",
                "install the same project, schema and model files on every node",
            )
        return os.getpid()

    def read(self, path: str) -> tuple[Document, list[Chunk]]:
        return self.pool.submit(self._read, path).result()

    def _read(self, path: str) -> tuple[Document, list[Chunk]]:
        from pipeline.batch import cut
        from pipeline.ingest import read_document

        with self.reading:
            doc = read_document(Path(path), self.job.schema.domain.cleaning)
            return doc, cut(doc, self.job)

    def extract(
        self, doc: Document, items: list[Item], run_id: str, config_hash: str
    ) -> tuple[dict[str, pa.Table], list[dict[str, Any]]]:
        """The task's results as Arrow tables, and per chunk what the driver counts."""
        from pipeline.store.bulk import ResultRows

        futures = [self.pool.submit(self._one, doc, item) for item in items]
        rows = ResultRows(self.job.schema)
        stats = []
        for (chunk, key, cache_key, _), future in zip(items, futures, strict=True):
            result = future.result()
            rows.add(run_id=run_id, chunk=chunk, extraction_key=key, config_hash=config_hash, **result)
            calls = [{k: c[k] for k in ("status", "tokens_in", "tokens_out", "latency_s")} for c in result["calls"]]
            outcome = result.get("outcome") or ("extracted" if result["status"] == "ok" else "failed")
            stats.append({"extraction_key": key, "cache_key": cache_key, "outcome": outcome, "calls": calls})
        return rows.to_arrow(), stats

    def _one(self, doc: Document, item: Item) -> dict[str, Any]:
        from pipeline.batch import rebuild

        chunk, _, cache_key, response = item
        job = self.job
        if response is not None:
            records = rebuild(job.strategy, response, chunk, doc, job.ctx)
            if records is not None:
                return {
                    "status": "ok",
                    "error": None,
                    "calls": [],
                    "records": records,
                    "response": response,
                    "outcome": "cached",
                }
        outcome = job.strategy.extract(chunk, doc, job.ctx)
        ok = outcome.status == "ok"
        return {
            "status": "ok" if ok else "failed",
            "error": outcome.error,
            "calls": outcome.calls,
            "records": outcome.records,
            "response": outcome.response,
            "cache": {"cache_key": cache_key, **self.basis} if ok else None,
        }


class RayEngine(Engine):
    name = "ray"
    reads_here = False

    def __init__(self, config: ExtractConfig) -> None:
        super().__init__()
        if config.workers is not None and config.workers < 1:
            raise PipelineError(f"--workers {config.workers} is not a positive number", "pass 1 or more")
        if config.ray_address is not None:
            parse_address(config.ray_address)  # the form only: the cluster is reached later
        self.config = config
        self.cluster: Cluster | None = None
        self.actors: list[Any] = []
        self.workers = 0
        self.config_hash = ""

    # -- the cluster and its workers -----------------------------------------------------------

    def start(self, job: Job) -> None:
        n = self.config.workers
        self.cluster = Cluster(self.config.ray_address, cpus=n)
        self.cluster.__enter__()
        ray = self.cluster.ray
        if self.cluster.swept:
            self.warnings.append(
                f"stopped {len(self.cluster.swept)} process(es) left by a killed earlier run's local Ray"
            )
        cpus = self.cluster.cpus
        n = n or max(1, cpus)
        if n > cpus:
            raise PipelineError(
                f"--workers {n} is more than the {cpus} CPUs of {self.cluster.describe()}",
                f"pass --workers {cpus} or fewer, or add nodes",
            )
        # an in-process model: each worker gets its share of this machine's cores
        threads = max(1, (os.cpu_count() or 1) // n) if self.cluster.own and not job.provider.remote else None
        actor = ray.remote(Worker).options(
            num_cpus=1,
            max_restarts=-1,
            max_task_retries=TASK_RETRIES,
            max_concurrency=3 * job.concurrency + 2,
        )
        self.actors = [actor.remote(self.config, threads, os.getcwd()) for _ in range(n)]
        self.workers = n
        self.config_hash = job.config_hash
        refs = [a.ready.remote(job.config_hash) for a in self.actors]
        deadline = time.monotonic() + START_TIMEOUT
        pending = list(refs)
        while pending:  # in short waits: Ctrl-C is handled between them
            _, pending = ray.wait(pending, num_returns=len(pending), timeout=0.2)
            if pending and time.monotonic() > deadline:
                raise PipelineError(
                    f"{len(pending)} of {n} Ray workers did not start in {START_TIMEOUT:.0f} s",
                    "check that the project is installed on every node (see the Ray logs)",
                )
        for ref in refs:
            try:
                self.get(ref)
            except ray.exceptions.RayError as exc:  # the worker process failed to start
                said = [line for line in str(exc).strip().splitlines() if line.strip()]
                raise PipelineError(
                    f"a Ray worker could not start: {said[-1].strip() if said else type(exc).__name__}",
                    "check that the project, schema and model files are installed on every node (see the Ray logs)",
                ) from None

    def get(self, ref: Any) -> Any:
        """``ray.get``, with a worker's own error (bad input, a refused key) raised as itself."""
        ray = self.ray
        try:
            return ray.get(ref)
        except ray.exceptions.RayTaskError as exc:
            cause = exc.cause
            if isinstance(cause, PipelineError):
                raise cause from None
            raise

    @property
    def ray(self) -> Any:
        assert self.cluster is not None
        return self.cluster.ray

    def close(self) -> None:
        if self.cluster is not None:
            if not self.cluster.own:  # a cluster we leave running: end our workers now
                for actor in self.actors:
                    with contextlib.suppress(Exception):  # already gone
                        self.ray.kill(actor)
            self.actors = []
            self.cluster.close()
            self.cluster = None

    def describe(self) -> dict[str, Any]:
        return {"engine": "ray", "workers": self.workers, "ray_address": self.config.ray_address or "local"}

    # -- 1. read and chunk -----------------------------------------------------------------------

    def prepare(
        self, paths: Sequence[str | Path], docs: list[Document] | None, job: Job, db: str | Path
    ) -> tuple[list[Document], dict[str, list[Chunk]]]:
        from pipeline.batch import stored_chunks
        from pipeline.ingest import check_documents, input_files

        files, notes = input_files(paths)  # a missing path fails before the cluster starts
        self.start(job)
        read = self.map_ordered("read", [str(f) for f in files])
        docs = check_documents([d for d, _ in read], notes)
        stored = stored_chunks(docs, db, job.chunking)
        return docs, {
            d.doc_id: stored.get((d.doc_id, d.sha256)) or chunks for d, (_, chunks) in zip(docs, read, strict=True)
        }

    def map_ordered(self, method: str, args: list[Any]) -> list[Any]:
        """``actor.<method>(arg)`` for every arg over the workers, a few in flight each; the
        results in the order of ``args``. The first error is raised."""
        ray = self.ray
        out: list[Any] = [None] * len(args)
        todo = deque(enumerate(args))
        in_flight: dict[Any, tuple[int, int]] = {}
        load = [0] * len(self.actors)
        while todo or in_flight:
            while todo:
                i = min(range(len(self.actors)), key=load.__getitem__)
                if load[i] >= 4:
                    break
                index, arg = todo.popleft()
                in_flight[getattr(self.actors[i], method).remote(arg)] = (i, index)
                load[i] += 1
            ready, _ = ray.wait(list(in_flight), num_returns=1, timeout=0.2)  # Ctrl-C between waits
            for ref in ready:
                i, index = in_flight.pop(ref)
                load[i] -= 1
                try:
                    out[index] = self.get(ref)
                except ray.exceptions.RayError as exc:
                    if isinstance(exc, ray.exceptions.RayTaskError):
                        raise
                    raise PipelineError(
                        f"{args[index]}: the Ray worker reading it died {TASK_RETRIES + 1} times ({type(exc).__name__})",
                        "check the file (remove it from the inputs to go on without it)",
                    ) from None
        return out

    # -- 2. extract ------------------------------------------------------------------------------

    def extract(self, batch: Batch, chunks: Sequence[Chunk], concurrency: int) -> None:
        _Driver(self, batch, concurrency).run(chunks)


class _Driver:
    """The extract phase's loop: dispatch tasks, gather results, commit them in bulk."""

    def __init__(self, engine: RayEngine, batch: Batch, concurrency: int) -> None:
        from pipeline.store.bulk import pyarrow

        self.pa = pyarrow()
        self.engine = engine
        self.ray = engine.ray
        self.batch = batch
        self.store = batch.store
        self.store.defer_checkpoints()  # bulk commits (see Store.defer_checkpoints)
        self.task_size = concurrency
        #: chunks in flight per worker: the pool's ``concurrency`` plus the next tasks queued
        self.cap = 3 * concurrency
        self.load = [0] * len(engine.actors)
        self.tasks: deque[tuple[str, list[Item]]] = deque()
        self.in_flight: dict[Any, tuple[int, str, list[Item]]] = {}
        self.leaders: set[str] = set()  # cache keys being extracted
        self.followers: dict[str, list[Chunk]] = {}  # chunks waiting for a leader's response
        self.doc_refs: dict[str, tuple[Any, int]] = {}  # a document in the object store, and its tasks
        self.buffer: list[dict[str, pa.Table]] = []
        self.buffered = 0
        self.links: list[tuple[str, str, str, str]] = []  # reused chunks to link to the run
        self.settled: list[tuple[str, bool]] = []  # (cache key, ok) of leaders in the buffer
        self.seen: set[str] = set()  # extraction keys this run has stored or buffered
        self.last_flush = time.monotonic()

    def run(self, chunks: Sequence[Chunk]) -> None:
        batch = self.batch
        batch.prefetch(chunks)
        groups = self.by_document(chunks)
        more = True
        stop = batch.ctx.stop
        try:
            while not stop():
                while more and len(self.tasks) < 4 * len(self.load):
                    group = next(groups, None)
                    more = group is not None
                    if group is not None:
                        self.plan(group)
                self.dispatch()
                if not self.in_flight:
                    if self.buffered or self.links:
                        self.flush()  # frees the chunks waiting for a leader
                        continue
                    if not self.tasks and not more:
                        break
                    continue
                ready, _ = self.ray.wait(list(self.in_flight), num_returns=1, timeout=0.2)
                for ref in ready:
                    self.gather(ref)
                if self.buffered >= FLUSH_CHUNKS or time.monotonic() - self.last_flush >= FLUSH_SECONDS:
                    self.flush()
        finally:  # Ctrl-C or an error: what has arrived is whole chunks, and is kept
            self.flush()

    @staticmethod
    def by_document(chunks: Sequence[Chunk]) -> Iterator[list[Chunk]]:
        group: list[Chunk] = []
        for chunk in chunks:
            if group and chunk.doc_id != group[0].doc_id:
                yield group
                group = []
            group.append(chunk)
        if group:
            yield group

    def plan(self, chunks: list[Chunk]) -> None:
        """Serve what needs no worker; queue the rest as tasks (at most ``task_size`` chunks)."""
        batch = self.batch
        refresh = batch.config.refresh
        todo: list[Item] = []
        hits: list[int] = []
        for chunk in chunks:
            key = batch.extraction_key(chunk)
            if not refresh and key in batch.done:
                self.links.append((batch.run_id, chunk.chunk_id, key, "reused"))
                batch.summary.chunks_reused += 1
                batch.advance(chunk)
                continue
            cache_key = batch.cache_key(chunk)
            if not refresh and cache_key in batch.cached:
                hits.append(len(todo))
            elif cache_key in self.leaders:
                self.followers.setdefault(cache_key, []).append(chunk)
                continue
            else:
                self.leaders.add(cache_key)
            todo.append((chunk, key, cache_key, None))
        if hits:
            responses = self.store.cached_responses([todo[i][2] for i in hits])
            for i in hits:
                chunk, key, cache_key, _ = todo[i]
                todo[i] = (chunk, key, cache_key, responses.get(cache_key))
        for start in range(0, len(todo), self.task_size):
            self.tasks.append((chunks[0].doc_id, todo[start : start + self.task_size]))

    def dispatch(self) -> None:
        actors = self.engine.actors
        while self.tasks:
            i = min(range(len(actors)), key=self.load.__getitem__)
            if self.load[i] >= self.cap:
                return
            doc_id, items = self.tasks.popleft()
            ref, n = self.doc_refs.get(doc_id) or (self.ray.put(self.batch.docs[doc_id]), 0)
            self.doc_refs[doc_id] = (ref, n + 1)
            task = actors[i].extract.remote(ref, items, self.batch.run_id, self.batch.config_hash)
            self.in_flight[task] = (i, doc_id, items)
            self.load[i] += len(items)

    def gather(self, ref: Any) -> None:
        i, doc_id, items = self.in_flight.pop(ref)
        self.load[i] -= len(items)
        ref_doc, n = self.doc_refs[doc_id]
        if n > 1:
            self.doc_refs[doc_id] = (ref_doc, n - 1)
        else:
            del self.doc_refs[doc_id]
        ray = self.ray
        try:
            tables, stats = self.engine.get(ref)
        except ray.exceptions.RayTaskError:
            raise
        except ray.exceptions.RayError as exc:  # the worker died on every try
            if self.batch.ctx.stop():  # Ctrl-C reached the local cluster too: not stored, the rerun does it
                return
            tables, stats = self.failed(items, exc)
        keys = [s["extraction_key"] for s in stats]
        if self.seen.intersection(keys):  # a result delivered twice: its chunks are stored already
            return
        self.seen.update(keys)
        self.buffer.append(tables)
        self.buffered += len(stats)
        batch = self.batch
        for (chunk, *_), s in zip(items, stats, strict=True):
            if s["outcome"] == "cached":
                batch.summary.chunks_cached += 1
            else:
                batch.count(s["calls"], s["outcome"] == "extracted")
                if s["cache_key"] in self.leaders:
                    self.settled.append((s["cache_key"], s["outcome"] == "extracted"))
            batch.advance(chunk)

    def failed(self, items: list[Item], exc: Exception) -> tuple[dict[str, pa.Table], list[dict[str, Any]]]:
        """The task's chunks as failed: its worker process died on every try."""
        from pipeline.store.bulk import ResultRows

        rows = ResultRows(self.batch.ctx.schema)
        error = f"{type(exc).__name__}: the Ray worker process died on this chunk's task ({TASK_RETRIES + 1} tries)"
        stats = []
        for chunk, key, cache_key, _ in items:
            rows.add(
                run_id=self.batch.run_id,
                chunk=chunk,
                extraction_key=key,
                config_hash=self.batch.config_hash,
                status="failed",
                error=error,
                calls=[],
                records={},
                response=None,
            )
            stats.append({"extraction_key": key, "cache_key": cache_key, "outcome": "failed", "calls": []})
        return rows.to_arrow(), stats

    def flush(self) -> None:
        """Commit the buffered results in one transaction, then free their followers."""
        if self.buffer:
            names = {name for tables in self.buffer for name in tables}
            merged = {
                name: self.pa.concat_tables([t[name] for t in self.buffer if name in t]) for name in sorted(names)
            }
            self.store.write_chunk_results(merged, self.batch.ctx.schema)
        if self.links:
            self.store.link_run_chunks(self.links)
        self.buffer, self.buffered, self.links = [], 0, []
        self.last_flush = time.monotonic()
        settled, self.settled = self.settled, []
        waiting: list[Chunk] = []
        for cache_key, ok in settled:
            self.leaders.discard(cache_key)
            if ok:
                self.batch.cached.add(cache_key)
            waiting += self.followers.pop(cache_key, [])
        for group in self.by_document(sorted(waiting, key=lambda c: (c.doc_id, c.index))):
            self.plan(group)
