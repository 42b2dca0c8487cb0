"""``pipeline extract``: documents -> chunks -> records in DuckDB."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from pipeline.batch import ExtractConfig, RunSummary, run_extract

DEFAULT_DB = Path("data/pipeline.duckdb")


def extract(
    paths: Annotated[list[Path], typer.Argument(help=".txt, .md or .html files, or folders of them")],
    db: Annotated[Path, typer.Option(help="DuckDB file to write")] = DEFAULT_DB,
    schema: Annotated[str, typer.Option(help="built-in schema name or module:Class")] = "biomedical",
    model: Annotated[str, typer.Option(help="local | local:/path/model.gguf | openai:<name>")] = "local",
    strategy: Annotated[str | None, typer.Option(help="extraction strategy (default: the model's)")] = None,
    prompt: Annotated[str | None, typer.Option(help="prompt name under prompts/ or a .j2 file")] = None,
    max_chunk_tokens: Annotated[int, typer.Option(help="token budget per chunk")] = 384,
    max_retries: Annotated[int, typer.Option(help="re-asks when output does not validate")] = 2,
    refresh: Annotated[bool, typer.Option(help="ignore stored results and call the model again")] = False,
    quiet: Annotated[bool, typer.Option(help="no progress bar")] = False,
) -> None:
    """Extract records from documents into DuckDB and print a summary."""
    console = Console(stderr=True)
    summary = run_extract(
        paths,
        db=db,
        config=ExtractConfig(
            schema=schema,
            model=model,
            strategy=strategy,
            prompt=prompt,
            max_chunk_tokens=max_chunk_tokens,
            max_retries=max_retries,
            refresh=refresh,
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
        f"{s.chunks} ({s.chunks_extracted} extracted, {s.chunks_reused} reused, {s.chunks_failed} failed)",
    )
    table.add_row("records", ", ".join(f"{k} {v}" for k, v in s.records.items()) or "0")
    table.add_row(
        "LLM calls",
        f"{s.calls} ({s.calls_failed} failed attempts)" + (" - all reused" if s.calls == 0 and s.chunks_reused else ""),
    )
    table.add_row("tokens", f"{s.tokens_in} in, {s.tokens_out} out ({s.tokens_per_second:.1f} out/s)")
    table.add_row("seconds", f"{s.seconds:.1f}")
    console.print(table)
