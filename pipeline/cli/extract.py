"""``pipeline extract``: documents -> chunks -> records in DuckDB."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.table import Table

if TYPE_CHECKING:  # the extraction stack (openai, instructor) loads only when `extract` runs
    from pipeline.batch import RunSummary

DEFAULT_DB = Path("data/pipeline.duckdb")


def extract(
    paths: Annotated[list[Path], typer.Argument(help=".txt, .md or .html files, or folders of them")],
    db: Annotated[Path, typer.Option(help="DuckDB file to write")] = DEFAULT_DB,
    schema: Annotated[
        str | None,
        typer.Option(help="built-in schema name, module:Class or path/file.py:Class [default: the built-in default]"),
    ] = None,
    model: Annotated[str, typer.Option(help="local | local:/path/model.gguf | openai:<name>")] = "local",
    strategy: Annotated[str | None, typer.Option(help="extraction strategy (default: the model's)")] = None,
    prompt: Annotated[str | None, typer.Option(help="prompt name under prompts/ or a .j2 file")] = None,
    max_chunk_tokens: Annotated[int, typer.Option(help="token budget per chunk")] = 384,
    max_tokens: Annotated[int | None, typer.Option(help="output token limit per call (default 1024)")] = None,
    max_retries: Annotated[int, typer.Option(help="re-asks when output does not validate")] = 2,
    reground: Annotated[
        bool, typer.Option(help="re-ask once for records whose evidence or key values are not in the text (direct)")
    ] = True,
    refresh: Annotated[
        bool, typer.Option(help="ignore stored results and cached responses; call the model again")
    ] = False,
    constraint: Annotated[
        str, typer.Option(help="local model: JSON-schema constraint engine, llguidance (fast) | gbnf (llama.cpp)")
    ] = "llguidance",
    base_url: Annotated[
        str | None,
        typer.Option(help="OpenAI-compatible server for openai:<name> [env OPENAI_BASE_URL; default OpenAI]"),
    ] = None,
    response_format: Annotated[
        str, typer.Option(help="json_schema (OpenAI, vLLM) | json_object (llama.cpp servers)")
    ] = "json_schema",
    fold_system: Annotated[
        bool, typer.Option(help="fold system messages into the first user turn (chat templates without one)")
    ] = False,
    concurrency: Annotated[
        int, typer.Option(help="requests in flight at once (remote providers; per worker with --engine ray)")
    ] = 1,
    timeout: Annotated[float, typer.Option(help="seconds one request may take")] = 60.0,
    max_attempts: Annotated[int, typer.Option(help="tries per request on timeouts, 429 and 5xx")] = 5,
    max_seconds: Annotated[float, typer.Option(help="time budget per chunk, retries and waits included")] = 300.0,
    fill: Annotated[
        bool, typer.Option(help="complete records after extraction: rules, and the embedded model ranking values")
    ] = True,
    engine: Annotated[
        str, typer.Option(help="local (this process) | ray (a Ray cluster: see README, 'Scale out with Ray')")
    ] = "local",
    ray_address: Annotated[
        str | None,
        typer.Option(
            help="ray engine: a running cluster's HOST:PORT, or auto [default: start a local Ray on 127.0.0.1]"
        ),
    ] = None,
    workers: Annotated[
        int | None,
        typer.Option(
            help="ray engine: worker processes, each with --concurrency requests [default: the cluster's CPUs]"
        ),
    ] = None,
    quiet: Annotated[bool, typer.Option(help="no progress bar")] = False,
) -> None:
    """Extract records from documents into DuckDB and print a summary."""
    from pipeline.batch import ExtractConfig, run_extract
    from pipeline.core.schema import DEFAULT_SCHEMA

    console = Console(stderr=True)
    logging.getLogger("instructor").addHandler(logging.NullHandler())  # every attempt is in llm_calls
    summary = run_extract(
        paths,
        db=db,
        config=ExtractConfig(
            schema=schema or DEFAULT_SCHEMA,
            model=model,
            strategy=strategy,
            prompt=prompt,
            max_chunk_tokens=max_chunk_tokens,
            max_tokens=max_tokens,
            max_retries=max_retries,
            reground=reground,
            refresh=refresh,
            constraint=constraint,
            base_url=base_url,
            response_format=response_format,
            fold_system=fold_system,
            concurrency=concurrency,
            timeout=timeout,
            max_attempts=max_attempts,
            max_seconds=max_seconds,
            fill=fill,
            engine=engine,
            ray_address=ray_address,
            workers=workers,
        ),
        console=console,
        progress=not quiet,
    )
    print_summary(summary, db, Console())
    if summary.status != "completed":
        raise typer.Exit(code=2)


def print_summary(s: RunSummary, db: Path, console: Console) -> None:
    for w in s.warnings:
        console.print(f"[yellow]warning:[/] {w}")
    table = Table(title=f"run {s.run_id} ({s.status}) -> {db}", show_header=False, title_justify="left")
    table.add_row("documents", str(s.documents))
    table.add_row(
        "chunks",
        f"{s.chunks} ({s.chunks_extracted} extracted, {s.chunks_reused} reused, {s.chunks_cached} from cache, "
        f"{s.chunks_failed} failed)",
    )
    table.add_row("records", ", ".join(f"{k} {v}" for k, v in s.records.items()) or "0")
    table.add_row(
        "LLM calls",
        f"{s.calls} ({s.calls_failed} failed attempts)"
        + (" - all reused" if s.calls == 0 and (s.chunks_reused or s.chunks_cached) else ""),
    )
    table.add_row("tokens", f"{s.tokens_in} in, {s.tokens_out} out ({s.tokens_per_second:.1f} out/s)")
    table.add_row("model seconds", f"{s.llm_seconds:.1f} (in LLM calls)")
    table.add_row("seconds", f"{s.seconds:.1f}")
    console.print(table)
