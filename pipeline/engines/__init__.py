"""Engines: where the chunks of a run are read, cut and extracted. Chosen with ``--engine``.

- ``local`` (``engines/local.py``, the default): this process. An in-process model takes one
  chunk at a time; a remote provider keeps ``--concurrency`` requests in flight in worker
  threads. Each chunk's result commits in its own transaction as it arrives.
- ``ray`` (``engines/ray_engine.py``): the workers of a Ray cluster (``--workers`` actors,
  each loading the model or client once) read and chunk the documents, then extract and
  ground the chunks, ``--concurrency`` requests in flight per worker; the driver, the only
  writer, commits their results in bulk. ``ray`` is imported only on this path.

Both run the same job (``batch.Job``) through the same ``batch.Batch`` (stored results, the
response cache, the run's rows), so the same input and configuration give the same records.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Self

from pipeline.core.errors import PipelineError
from pipeline.core.types import Chunk, Document

if TYPE_CHECKING:
    from pipeline.batch import Batch, ExtractConfig, Job
    from pipeline.providers import Provider

ENGINES = ("local", "ray")


class Engine(ABC):
    name: ClassVar[str]
    #: the documents are read in this process before the options are checked (``local``)
    reads_here: ClassVar[bool] = True

    def __init__(self) -> None:
        #: notes for the run's summary
        self.warnings: list[str] = []

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release what the engine started (a local Ray cluster)."""

    @abstractmethod
    def prepare(
        self, paths: Sequence[str | Path], docs: list[Document] | None, job: Job, db: str | Path
    ) -> tuple[list[Document], dict[str, list[Chunk]]]:
        """The documents (read here already when ``reads_here``) and each one's chunks. Bad
        input raises before anything is written; the database is only read."""

    @abstractmethod
    def extract(self, batch: Batch, chunks: Sequence[Chunk], concurrency: int) -> None:
        """Extract every chunk and store each result through ``batch``/``batch.store``;
        stop early, leaving whole chunks only, once ``batch.ctx.stop`` is set."""

    def describe(self) -> dict[str, Any]:
        """What the run records about the engine (``runs.config``)."""
        return {}


def get_engine(config: ExtractConfig, provider: Provider | None = None) -> Engine:
    """The engine ``config.engine`` names, its options checked (nothing started yet)."""
    if config.engine not in ENGINES:
        raise PipelineError(f"unknown engine {config.engine!r}", f"use one of: {', '.join(ENGINES)}")
    if config.engine == "local":
        for option, value in (("--ray-address", config.ray_address), ("--workers", config.workers)):
            if value is not None:
                raise PipelineError(
                    f"{option} is an option of the ray engine", f"add --engine ray or leave {option} out"
                )
        from pipeline.engines.local import LocalEngine

        return LocalEngine()
    if provider is not None:
        raise PipelineError(
            "the ray engine builds its provider from --model on each worker",
            "pass the model by name (ExtractConfig.model)",
        )
    from pipeline.engines.ray_engine import RayEngine

    return RayEngine(config)
