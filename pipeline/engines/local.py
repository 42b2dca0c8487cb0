"""The local engine: every chunk in this process (``--engine local``, the default).

An in-process model takes one chunk at a time in the main thread. Remote requests run in
``concurrency`` worker threads even one at a time, so that the main thread stays free to
notice Ctrl-C within a fraction of a second; it alone writes, one transaction per 256 chunks
or a second (``Batch.flush_if_due``).
Chunks with the same text (the same cache key) are extracted once: the others wait for the
first and are served from the response cache.
"""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from pathlib import Path
from typing import TYPE_CHECKING

from pipeline.core.types import Chunk, Document
from pipeline.engines import Engine
from pipeline.interrupt import abortable
from pipeline.strategies import ChunkOutcome

if TYPE_CHECKING:
    from pipeline.batch import Batch, Job


class LocalEngine(Engine):
    name = "local"

    def prepare(
        self, paths: Sequence[str | Path], docs: list[Document] | None, job: Job, db: str | Path
    ) -> tuple[list[Document], dict[str, list[Chunk]]]:
        from pipeline.batch import chunk_documents
        from pipeline.ingest import read_documents

        if docs is None:
            docs = read_documents(paths, job.schema.domain.cleaning)
        return docs, chunk_documents(docs, db, job)

    def extract(self, batch: Batch, chunks: Sequence[Chunk], concurrency: int) -> None:
        batch.prefetch(chunks)
        batch.store.defer_checkpoints()  # bulk commits (see Store.defer_checkpoints)
        stop = batch.ctx.stop
        if not batch.ctx.provider.remote:  # an in-process model: one chunk at a time, here
            for chunk in chunks:
                if stop():
                    return
                if not batch.reuse(chunk):
                    # nothing is written while a chunk is extracted: Ctrl-C may end it anywhere (the
                    # first chunk of a long document reads all of it: 20-30 s for 1 MB)
                    with abortable(stop):
                        outcome = batch.strategy.extract(chunk, batch.docs[chunk.doc_id], batch.ctx)
                    if stop():
                        return  # the chunk was cut short by Ctrl-C: not stored, the rerun does it
                    batch.write(chunk, outcome)
                batch.flush_if_due()
            batch.flush()
            return
        pool = ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="llm")
        in_flight: dict[Future[ChunkOutcome], Chunk] = {}
        leaders: set[str] = set()  # cache keys with a request in flight
        waiting: dict[str, list[Chunk]] = {}  # chunks whose text is in flight: served from the cache after

        def schedule(chunk: Chunk) -> None:
            if batch.reuse(chunk):
                return
            key = batch.cache_key(chunk)
            if key in leaders:
                waiting.setdefault(key, []).append(chunk)
                return
            leaders.add(key)
            in_flight[pool.submit(batch.strategy.extract, chunk, batch.docs[chunk.doc_id], batch.ctx)] = chunk

        pending = iter(chunks)

        def fill() -> None:
            while len(in_flight) < concurrency and (chunk := next(pending, None)) is not None:
                schedule(chunk)

        try:
            fill()
            while in_flight:
                done, _ = wait(in_flight, timeout=0.2, return_when=FIRST_COMPLETED)
                if stop():
                    return
                batch.flush_if_due()  # also while waiting: what finished is committed soon
                finished = [(fut, in_flight.pop(fut)) for fut in done]
                fill()  # the next requests go out before this main thread writes the results
                for fut, chunk in finished:
                    batch.write(chunk, fut.result())
                    key = batch.cache_key(chunk)
                    leaders.discard(key)
                    for follower in waiting.pop(key, []):
                        schedule(follower)
            batch.flush()
        finally:  # after Ctrl-C, requests still in flight are abandoned, not waited for
            pool.shutdown(wait=not stop(), cancel_futures=True)
